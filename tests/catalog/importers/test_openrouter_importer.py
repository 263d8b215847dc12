"""Tests for modelplex.catalog.importers.openrouter, on a realistic /api/v1/models fixture."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from modelplex.catalog import Catalog, ModelSpec, ProviderSpec, load_catalog
from modelplex.catalog.importers import FORMATS, ImportResult, import_openrouter, write_overlay
from modelplex.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openrouter_models.json"
AS_OF = dt.date(2026, 3, 1)


@pytest.fixture
def result() -> ImportResult:
    return import_openrouter(FIXTURE, as_of=AS_OF, base=Catalog())


def by_id(res: ImportResult) -> dict[str, dict]:
    return {m["id"]: m for m in res.models}


def test_ids_and_skips(result: ImportResult) -> None:
    assert sorted(by_id(result)) == [
        "openrouter/anthropic/claude-3.5-sonnet",
        "openrouter/deepseek/deepseek-r1",
        "openrouter/google/gemini-2.0-flash-001",
        "openrouter/meta-llama/llama-3.1-8b-instruct:free",
        "openrouter/openai/gpt-4o-mini",
        "openrouter/openai/text-embedding-3-small",
    ]
    assert result.skipped == {"variable_pricing": 1}  # openrouter/auto
    assert result.source == "openrouter" and result.as_of == AS_OF
    for entry in result.models:
        spec = ModelSpec.model_validate(entry)
        assert spec.provider == "openrouter" and spec.source == "openrouter" and spec.as_of == AS_OF
    assert FORMATS["openrouter"] is import_openrouter


def test_claude_entry(result: ImportResult) -> None:
    spec = ModelSpec.model_validate(by_id(result)["openrouter/anthropic/claude-3.5-sonnet"])
    assert spec.api_model == "anthropic/claude-3.5-sonnet"
    assert spec.display_name == "Anthropic: Claude 3.5 Sonnet"
    assert (spec.context_window, spec.max_output_tokens) == (200_000, 8192)
    assert spec.pricing.input_per_mtok == 3.0 and spec.pricing.output_per_mtok == 15.0
    assert spec.pricing.cached_input_per_mtok == 0.3 and spec.pricing.cache_write_per_mtok == 3.75
    assert spec.pricing.reasoning_per_mtok is None  # "internal_reasoning": "0" means not separately priced
    assert {"tool_calling", "vision", "pdf_input", "prompt_caching", "streaming"} <= spec.capabilities
    assert "json_mode" not in spec.capabilities  # no response_format in supported_parameters
    assert spec.input_modalities == {"text", "image", "pdf"}
    assert spec.supported_params is not None and "top_k" in spec.supported_params
    assert "frequency_penalty" not in spec.supported_params
    assert spec.family == "claude-3.5-sonnet"


def test_capabilities_from_supported_parameters(result: ImportResult) -> None:
    models = {k: ModelSpec.model_validate(v) for k, v in by_id(result).items()}
    mini = models["openrouter/openai/gpt-4o-mini"]
    assert {"json_mode", "structured_output", "web_search", "tool_calling", "vision"} <= mini.capabilities
    assert {"logprobs", "top_logprobs", "seed", "response_format"} <= (mini.supported_params or set())
    r1 = models["openrouter/deepseek/deepseek-r1"]
    assert "reasoning" in r1.capabilities and r1.category == "reasoning"
    assert r1.pricing.reasoning_per_mtok == 2.0
    assert "reasoning_effort" in (r1.supported_params or set())
    free = models["openrouter/meta-llama/llama-3.1-8b-instruct:free"]
    assert free.max_output_tokens == 131_072  # no completion cap: the whole window
    assert free.pricing.input_per_mtok == 0.0 and free.cost_tier == "lowest"
    assert "tool_calling" not in free.capabilities and free.family == "llama-3.1-8b-instruct"
    gem = models["openrouter/google/gemini-2.0-flash-001"]
    assert gem.input_modalities == {"text", "image", "pdf", "audio", "video"}
    assert "audio_input" in gem.capabilities
    assert gem.deprecation.deprecated and gem.deprecation.date == dt.date(2026, 2, 6)
    emb = models["openrouter/openai/text-embedding-3-small"]
    assert emb.mode == "embedding" and emb.output_modalities == {"embedding"}
    assert emb.pricing.input_per_mtok == 0.02 and "embeddings" in emb.capabilities


def test_expiration_in_the_future_is_not_deprecated() -> None:
    early = by_id(import_openrouter(FIXTURE, as_of=dt.date(2026, 1, 1), base=Catalog()))
    assert early["openrouter/google/gemini-2.0-flash-001"]["deprecation"] == {"deprecated": False,
                                                                              "date": "2026-02-06"}


def test_provider_entry_depends_on_what_modelplex_bundles(result: ImportResult) -> None:
    assert result.providers == [{"name": "openrouter", "protocol": "openai", "display_name": "OpenRouter",
                                 "base_url": "https://openrouter.ai/api/v1", "api_key_env": ["OPENROUTER_API_KEY"]}]
    known = import_openrouter(FIXTURE, as_of=AS_OF, base=Catalog(providers=[ProviderSpec(name="openrouter", protocol="openai")]))
    assert known.providers == [{"name": "openrouter", "protocol": "openai"}]


def test_sources_and_shape_errors(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    reference = import_openrouter(FIXTURE, as_of=AS_OF, base=Catalog()).models
    assert import_openrouter(data, as_of=AS_OF, base=Catalog()).models == reference
    assert import_openrouter(data["data"], as_of=AS_OF, base=Catalog()).models == reference
    assert import_openrouter(json.dumps(data), as_of=AS_OF, base=Catalog()).models == reference
    with pytest.raises(ConfigError, match="GET /api/v1/models"):
        import_openrouter({"models": []})
    odd = import_openrouter({"data": [{"id": "x/y"}, "junk", {"context_length": 5}]}, base=Catalog())
    assert odd.models == [] and odd.providers == []
    assert odd.skipped == {"no_context_window": 1, "not_an_object": 1, "no_id": 1}


def test_round_trip_and_parameter_validation(result: ImportResult, tmp_path: Path) -> None:
    path = write_overlay(result, tmp_path / "openrouter.yaml")
    cat = load_catalog(overlays=[path], bundled=False)
    assert len(cat) == 6
    assert cat.provider("openrouter").base_url == "https://openrouter.ai/api/v1"
    assert cat.get("deepseek/deepseek-r1").id == "openrouter/deepseek/deepseek-r1"
    issues = cat.validate_parameters("openrouter/anthropic/claude-3.5-sonnet",
                                     {"frequency_penalty": 0.2, "max_tokens": 9000, "temperature": 0.5})
    assert [(i.param, i.code) for i in issues] == [("frequency_penalty", "unsupported"),
                                                   ("max_tokens", "exceeds_output_limit")]
    assert cat.list(include_deprecated=False, provider="openrouter")[0].id == "openrouter/anthropic/claude-3.5-sonnet"
    assert "openrouter/google/gemini-2.0-flash-001" not in {m.id for m in cat.list()}
