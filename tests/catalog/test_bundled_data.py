"""The bundled catalog data (``src/modelplex/catalog/data/*.yaml``) checked as data.

Owns: schema validation of every file (read directly with ``yaml.safe_load``, independent of the loader),
catalog-wide integrity (unique ids and aliases, deprecation chains that end at a live model, embedding
shape, provenance), provider wiring facts, agreement with LiteLLM's public price/context map, and the
presence of every model the seed documents name.

Must not touch: the network, the loader (``catalog.loader`` has its own tests), or any file it checks.
Deliberate differences from LiteLLM live in ``KNOWN_DIFFERENCES`` with a reason each.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelplex.catalog import schema
from modelplex.catalog.schema import ModelSpec, Pricing, ProviderSpec

DATA_DIR = Path(schema.__file__).resolve().parent / "data"
AS_OF = dt.date(2026, 11, 21)
REL_TOL = 1e-6

EXPECTED_PROVIDERS = {
    "openai", "azure", "anthropic", "gemini", "bedrock", "groq", "openrouter", "siliconflow", "deepseek",
    "together", "fireworks", "mistral", "ollama", "vllm",
}

# LiteLLM names a model "<prefix><wire name>"; providers absent here have no LiteLLM entries to compare.
LITELLM_PREFIX: dict[str, str] = {
    "openai": "",
    "anthropic": "",
    "bedrock": "",
    "azure": "azure/",
    "gemini": "gemini/",
    "groq": "groq/",
    "deepseek": "deepseek/",
    "openrouter": "openrouter/",
    "mistral": "mistral/",
    "together": "together_ai/",
    "fireworks": "fireworks_ai/",
    "ollama": "ollama/",
}

KNOWN_DIFFERENCES: dict[str, str] = {
    "azure/gpt-35-turbo": (
        "LiteLLM's azure/gpt-35-turbo entry still carries the 4,097-token window of the retired 0301 version; "
        "0125, the last version Azure served, had a 16,385-token window"
    ),
}

# (seed document, model as the seed names it, catalog id it resolves to, live on 2026-11-21?)
SEED_MODELS: tuple[tuple[str, str, str, bool], ...] = (
    ("dynamic-model-routing.md", "llama-3.1-8b-instant", "groq/llama-3.1-8b-instant", False),
    ("dynamic-model-routing.md", "llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile", False),
    ("dynamic-model-routing.md", "llama-3.1-70b-versatile", "groq/llama-3.1-70b-versatile", False),
    ("dynamic-model-routing.md", "mixtral-8x7b-32768", "groq/mixtral-8x7b-32768", False),
    ("flexible-model-selection.md", "gpt-4o", "openai/gpt-4o", False),
    ("flexible-model-selection.md", "gpt-4o-mini", "openai/gpt-4o-mini", False),
    ("flexible-model-selection.md", "claude-sonnet-4-20250514", "anthropic/claude-sonnet-4-20250514", False),
    ("flexible-model-selection.md", "claude-opus-4-1-20250805", "anthropic/claude-opus-4-1-20250805", False),
    ("flexible-model-selection.md", "text-embedding-3-small", "openai/text-embedding-3-small", True),
    ("flexible-model-selection.md", "text-embedding-3-large", "openai/text-embedding-3-large", True),
    ("flexible-model-selection.md", "gpt-3.5-turbo", "openai/gpt-3.5-turbo", False),
    ("flexible-model-selection.md", "gpt-4", "openai/gpt-4", False),
    ("flexible-model-selection.md", "claude-3-haiku-20240307", "anthropic/claude-3-haiku-20240307", False),
    ("flexible-model-selection.md", "claude-3-sonnet-20240229", "anthropic/claude-3-sonnet-20240229", False),
    ("llm-model-registry-system.md", "gpt-4o (Azure)", "azure/gpt-4o", True),
    ("llm-model-registry-system.md", "gpt-4o-mini (Azure)", "azure/gpt-4o-mini", True),
    ("llm-model-registry-system.md", "gpt-4-turbo (Azure)", "azure/gpt-4-turbo", False),
    ("llm-model-registry-system.md", "gpt-4 (Azure)", "azure/gpt-4", False),
    ("llm-model-registry-system.md", "gpt-3.5-turbo (Azure)", "azure/gpt-35-turbo", False),
    ("llm-model-registry-system.md", "gpt-3.5-turbo-16k (Azure)", "azure/gpt-35-turbo-16k", False),
    ("llm-model-registry-system.md", "GPT-4.1 (Azure)", "azure/gpt-4.1", True),
    ("llm-model-registry-system.md", "GPT-4.1 mini (Azure)", "azure/gpt-4.1-mini", True),
    ("llm-model-registry-system.md", "claude-3-5-sonnet (Bedrock)",
     "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", False),
    ("llm-model-registry-system.md", "claude-3-opus (Bedrock)", "bedrock/anthropic.claude-3-opus-20240229-v1:0",
     False),
    ("llm-model-registry-system.md", "claude-3-sonnet (Bedrock)", "bedrock/anthropic.claude-3-sonnet-20240229-v1:0",
     False),
    ("llm-model-registry-system.md", "claude-3-haiku (Bedrock)", "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
     False),
    ("llm-model-registry-system.md", "gemini-1.5-pro", "gemini/gemini-1.5-pro", False),
    ("llm-model-registry-system.md", "gemini-1.5-flash", "gemini/gemini-1.5-flash", False),
    ("llm-model-registry-system.md", "gemini-pro", "gemini/gemini-pro", False),
    ("llm-model-registry-system.md", "gemini-pro-vision", "gemini/gemini-pro-vision", False),
    ("model-management-and-factory.md", "openai/gpt-4o (OpenRouter)", "openrouter/openai/gpt-4o", False),
    ("model-management-and-factory.md", "openai/gpt-4o-mini (OpenRouter)", "openrouter/openai/gpt-4o-mini", False),
    ("model-management-and-factory.md", "anthropic/claude-3.5-sonnet", "openrouter/anthropic/claude-3.5-sonnet",
     False),
    ("model-management-and-factory.md", "anthropic/claude-3-opus", "openrouter/anthropic/claude-3-opus", False),
    ("model-management-and-factory.md", "deepseek/deepseek-chat (OpenRouter)", "openrouter/deepseek/deepseek-chat",
     True),
    ("model-management-and-factory.md", "google/gemini-pro-1.5", "openrouter/google/gemini-pro-1.5", False),
    ("model-management-and-factory.md", "meta-llama/llama-3.1-405b-instruct",
     "openrouter/meta-llama/llama-3.1-405b-instruct", True),
    ("model-management-and-factory.md", "deepseek-ai/DeepSeek-V3", "siliconflow/deepseek-ai/DeepSeek-V3", False),
    ("model-management-and-factory.md", "deepseek-ai/DeepSeek-Chat (no such SiliconFlow id)",
     "siliconflow/deepseek-ai/DeepSeek-V3", False),
    ("model-management-and-factory.md", "Qwen/Qwen2.5-72B-Instruct", "siliconflow/Qwen/Qwen2.5-72B-Instruct", False),
    ("model-management-and-factory.md", "Qwen/Qwen2.5-32B-Instruct", "siliconflow/Qwen/Qwen2.5-32B-Instruct", False),
    ("model-management-and-factory.md", "01-ai/Yi-1.5-34B-Chat", "siliconflow/01-ai/Yi-1.5-34B-Chat", False),
    ("model-management-and-factory.md", "THUDM/glm-4-9b-chat", "siliconflow/THUDM/glm-4-9b-chat", False),
    ("model-management-and-factory.md", "meta-llama/Llama-3.1-70B-Instruct (SiliconFlow)",
     "siliconflow/meta-llama/Meta-Llama-3.1-70B-Instruct", False),
    ("model-management-and-factory.md", "o1", "openai/o1", False),
    ("model-management-and-factory.md", "GPT-4-turbo", "openai/gpt-4-turbo", False),
    ("model-management-and-factory.md", "Claude 3.5 Sonnet (Anthropic direct)", "anthropic/claude-3-5-sonnet-20241022",
     False),
    ("model-management-and-factory.md", "Claude 3 Opus (Anthropic direct)", "anthropic/claude-3-opus-20240229", False),
    ("resume-lm-model-abstraction-layer.md", "groq/llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile", False),
    ("resume-lm-model-abstraction-layer.md", "groq/llama-3.1-8b-instant", "groq/llama-3.1-8b-instant", False),
    ("resume-lm-model-abstraction-layer.md", "groq/gemma2-9b-it", "groq/gemma2-9b-it", False),
    ("resume-lm-model-abstraction-layer.md", "groq/llama3-70b-8192", "groq/llama3-70b-8192", False),
    ("resume-lm-model-abstraction-layer.md", "groq/llama3-8b-8192", "groq/llama3-8b-8192", False),
    ("resume-lm-model-abstraction-layer.md", "openrouter/anthropic/claude-3-5-sonnet",
     "openrouter/anthropic/claude-3.5-sonnet", False),
    ("resume-lm-model-abstraction-layer.md", "openrouter/meta-llama/llama-3-70b-instruct",
     "openrouter/meta-llama/llama-3-70b-instruct", True),
)


# ---------------------------------------------------------------------- loading (independent of the loader)


def _data_files() -> list[Path]:
    return sorted(DATA_DIR.glob("*.yaml"))


def _load(path: Path) -> tuple[ProviderSpec, list[ModelSpec]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(doc) == {"provider", "models"}, f"{path.name}: top-level keys must be provider and models"
    provider = ProviderSpec.model_validate(doc["provider"])
    models = []
    for entry in doc["models"] or []:
        if "provider" in entry:
            assert entry["provider"] == provider.name, f"{path.name}: {entry['id']} names another provider"
        models.append(ModelSpec.model_validate({**entry, "provider": provider.name}))
    return provider, models


@pytest.fixture(scope="module")
def catalog() -> dict[str, tuple[ProviderSpec, list[ModelSpec]]]:
    return {path.stem: _load(path) for path in _data_files()}


@pytest.fixture(scope="module")
def models_by_id(catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]]) -> dict[str, ModelSpec]:
    return {spec.id: spec for _, specs in catalog.values() for spec in specs}


def _all_models(catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]]) -> Iterator[ModelSpec]:
    for _, specs in catalog.values():
        yield from specs


# ---------------------------------------------------------------------- fact agreement helpers


def litellm_key(spec: ModelSpec) -> str | None:
    """The key LiteLLM's map uses for this model, or ``None`` when LiteLLM has no such provider."""
    prefix = LITELLM_PREFIX.get(spec.provider)
    return None if prefix is None else prefix + spec.api_model


def _same_price(ours: float, per_token: float) -> bool:
    return math.isclose(ours, per_token * 1e6, rel_tol=REL_TOL, abs_tol=1e-12)


def disagreements(spec: ModelSpec, entry: dict[str, Any]) -> list[str]:
    """Facts where the spec and a LiteLLM entry disagree: input window and per-token prices."""
    problems: list[str] = []
    window = entry.get("max_input_tokens")
    if isinstance(window, int) and spec.input_limit != window:
        problems.append(f"input window {spec.input_limit} != litellm {window}")
    p = spec.pricing
    checks: tuple[tuple[str, float | None, str], ...] = (
        ("input", p.input_per_mtok, "input_cost_per_token"),
        ("output", p.output_per_mtok if spec.mode == "chat" else None, "output_cost_per_token"),
        ("cached input", p.cached_input_per_mtok, "cache_read_input_token_cost"),
    )
    for label, ours, field in checks:
        theirs = entry.get(field)
        if ours is None or not isinstance(theirs, (int, float)):
            continue
        if not _same_price(ours, float(theirs)):
            problems.append(f"{label} {ours}/Mtok != litellm {float(theirs) * 1e6:.6g}/Mtok")
    return problems


def _litellm_map(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    assert isinstance(data, dict) and len(data) > 1000
    return data


# ---------------------------------------------------------------------- schema and integrity


def test_every_expected_provider_has_a_file() -> None:
    assert {p.stem for p in _data_files()} == EXPECTED_PROVIDERS


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: p.stem)
def test_file_validates_against_schema(path: Path) -> None:
    provider, models = _load(path)
    assert provider.name == path.stem
    assert provider.display_name
    for spec in models:
        assert spec.id.startswith(f"{provider.name}/")
        assert spec.family and spec.display_name


def test_catalog_size(catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]]) -> None:
    total = sum(len(specs) for _, specs in catalog.values())
    assert 80 <= total <= 150, total


def test_ids_unique_across_files() -> None:
    seen: dict[str, str] = {}
    for path in _data_files():
        _, models = _load(path)
        for spec in models:
            assert spec.id not in seen, f"{spec.id} in {path.name} and {seen[spec.id]}"
            seen[spec.id] = path.name


def test_aliases_unique_and_never_shadow_an_id(models_by_id: dict[str, ModelSpec]) -> None:
    owner: dict[str, str] = {}
    for spec in models_by_id.values():
        for alias in spec.aliases:
            assert alias not in owner, f"alias {alias!r} on {spec.id} and {owner[alias]}"
            assert alias not in models_by_id, f"alias {alias!r} on {spec.id} is another model's id"
            assert alias.strip() == alias and alias, f"bad alias {alias!r} on {spec.id}"
            owner[alias] = spec.id


def _final_replacement(spec: ModelSpec, models_by_id: dict[str, ModelSpec]) -> ModelSpec:
    seen = {spec.id}
    current = spec
    while current.deprecated:
        target = current.deprecation.replacement
        assert target, f"{current.id} is deprecated without a replacement"
        assert target in models_by_id, f"{current.id} -> {target}, which is not in the catalog"
        assert target not in seen, f"replacement cycle through {target}"
        seen.add(target)
        current = models_by_id[target]
    return current


def test_deprecations_end_at_a_live_model(models_by_id: dict[str, ModelSpec]) -> None:
    deprecated = [s for s in models_by_id.values() if s.deprecated]
    assert len(deprecated) >= 40  # the seeds alone name this many retired models
    for spec in deprecated:
        final = _final_replacement(spec, models_by_id)
        assert not final.deprecated
        assert final.mode == spec.mode, f"{spec.id} -> {final.id} changes mode"
        assert spec.deprecation.date is not None or spec.deprecation.note, f"{spec.id}: no date and no note"


def test_live_models_carry_no_replacement(models_by_id: dict[str, ModelSpec]) -> None:
    for spec in models_by_id.values():
        if not spec.deprecated:
            assert spec.deprecation.replacement is None, spec.id
            assert spec.deprecation.date is None, f"{spec.id}: a date on a live model reads as a retirement"


def test_embedding_models_have_mode_and_dimensions(models_by_id: dict[str, ModelSpec]) -> None:
    embedders = [s for s in models_by_id.values() if s.mode == "embedding"]
    assert len(embedders) >= 10
    for spec in embedders:
        assert spec.embedding_dimensions and spec.embedding_dimensions > 0, spec.id
        assert spec.has("embeddings") and not spec.has("chat"), spec.id
    for spec in models_by_id.values():
        if spec.mode == "chat":
            assert spec.embedding_dimensions is None, spec.id
        if "embedding" in spec.id.split("/")[-1].lower() or "embed" in spec.family:
            assert spec.mode == "embedding", f"{spec.id} looks like an embedding model but is mode chat"


def test_provenance_on_every_entry(models_by_id: dict[str, ModelSpec]) -> None:
    for spec in models_by_id.values():
        assert spec.as_of == AS_OF, spec.id
        assert spec.source and spec.source != "bundled", spec.id


def test_vision_matches_image_input(models_by_id: dict[str, ModelSpec]) -> None:
    for spec in models_by_id.values():
        if spec.mode == "chat":
            assert spec.has("vision") == ("image" in spec.input_modalities), spec.id


def test_quality_and_category_are_set(models_by_id: dict[str, ModelSpec]) -> None:
    for spec in models_by_id.values():
        if spec.mode == "chat":
            assert spec.quality is not None, spec.id


def test_anthropic_protocol_models_default_max_tokens(
    catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]],
) -> None:
    provider, models = catalog["anthropic"]
    assert provider.profile.get("anthropic-version") == "2023-06-01"
    for spec in models:
        assert spec.default_params.get("max_tokens") == 4096, spec.id
        assert spec.api_requirements.get("max_tokens_required") is True, spec.id


def test_openai_reasoning_models_take_max_completion_tokens(models_by_id: dict[str, ModelSpec]) -> None:
    checked = 0
    for spec in models_by_id.values():
        if spec.provider in ("openai", "azure") and spec.has("reasoning"):
            checked += 1
            assert spec.param_mappings.get("max_tokens") == "max_completion_tokens", spec.id
            assert spec.supported_params is not None and "temperature" not in spec.supported_params, spec.id
    assert checked >= 15


def test_models_that_reject_sampling_params_say_so(models_by_id: dict[str, ModelSpec]) -> None:
    for model_id in ("anthropic/claude-opus-4-8", "anthropic/claude-sonnet-5", "gemini/gemini-3.8-flash",
                     "bedrock/anthropic.claude-opus-5-5"):
        supported = models_by_id[model_id].supported_params
        assert supported is not None and "temperature" not in supported and "max_tokens" in supported, model_id


def test_tokenizers_are_known_encodings(models_by_id: dict[str, ModelSpec]) -> None:
    allowed = {None, "o200k_base", "cl100k_base", "o200k_harmony"}
    for spec in models_by_id.values():
        assert spec.tokenizer in allowed, spec.id
    assert models_by_id["openai/gpt-4o"].tokenizer == "o200k_base"
    assert models_by_id["openai/gpt-3.5-turbo"].tokenizer == "cl100k_base"
    assert models_by_id["openai/text-embedding-3-small"].tokenizer == "cl100k_base"


# ---------------------------------------------------------------------- providers


def test_provider_wiring(catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]]) -> None:
    p = {name: prov for name, (prov, _) in catalog.items()}
    assert p["openai"].base_url == "https://api.openai.com/v1"
    assert p["azure"].protocol == "azure" and p["azure"].base_url is None
    assert p["azure"].endpoint_env == "AZURE_OPENAI_ENDPOINT" and p["azure"].api_version
    assert p["azure"].api_key_env == ("AZURE_OPENAI_API_KEY",)
    assert p["anthropic"].base_url == "https://api.anthropic.com"
    assert p["gemini"].api_key_env == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert p["bedrock"].protocol == "bedrock" and p["bedrock"].region_env == ("AWS_REGION", "AWS_DEFAULT_REGION")
    assert p["groq"].base_url == "https://api.groq.com/openai/v1"
    assert p["openrouter"].profile.get("reports_cost") is True
    assert set(p["openrouter"].extra_headers) == {"HTTP-Referer", "X-Title"}
    assert p["siliconflow"].base_url == "https://api.siliconflow.cn/v1"
    assert p["deepseek"].base_url == "https://api.deepseek.com"
    assert p["together"].base_url == "https://api.together.xyz/v1"
    assert p["fireworks"].base_url == "https://api.fireworks.ai/inference/v1"
    assert p["mistral"].base_url == "https://api.mistral.ai/v1"
    assert p["ollama"].base_url == "http://localhost:11434/v1" and not p["ollama"].requires_key
    assert p["vllm"].base_url == "http://localhost:8000/v1" and not p["vllm"].requires_key
    vendors = EXPECTED_PROVIDERS - {"azure", "anthropic", "gemini", "bedrock"}
    for name in vendors:
        assert p[name].protocol == "openai", name
    for name, prov in p.items():
        if prov.requires_key:
            assert prov.api_key_env, name


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "deepseek", "groq", "azure", "bedrock"])
def test_current_lineup_is_live(
    catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]], provider: str,
) -> None:
    live = [s for s in catalog[provider][1] if not s.deprecated and s.mode == "chat"]
    assert any(s.category in ("comprehensive", "reasoning") for s in live), provider
    assert any(s.category == "basic" for s in live) or provider == "deepseek", provider
    assert len({s.cost_tier for s in live}) >= (1 if provider == "deepseek" else 2), provider


@pytest.mark.parametrize("provider", ["openai", "azure", "gemini", "bedrock"])
def test_live_embedding_models(catalog: dict[str, tuple[ProviderSpec, list[ModelSpec]]], provider: str) -> None:
    assert any(s.mode == "embedding" and not s.deprecated for s in catalog[provider][1]), provider


# ---------------------------------------------------------------------- seeds


@pytest.mark.parametrize(("seed", "named", "model_id", "live"), SEED_MODELS, ids=[f"{s[0]}:{s[1]}" for s in SEED_MODELS])
def test_seed_model_present(models_by_id: dict[str, ModelSpec], seed: str, named: str, model_id: str,
                            live: bool) -> None:
    assert (Path(__file__).parents[2].parent / "shared" / "seeds").joinpath(seed).name == seed
    spec = models_by_id.get(model_id)
    assert spec is not None, f"{named} from {seed} should be {model_id}"
    assert spec.deprecated is (not live), f"{model_id} should be {'live' if live else 'deprecated'}"


def test_seed_documents_are_all_covered() -> None:
    assert {s[0] for s in SEED_MODELS} == {
        "dynamic-model-routing.md", "flexible-model-selection.md", "llm-model-registry-system.md",
        "model-management-and-factory.md", "resume-lm-model-abstraction-layer.md",
    }


# ---------------------------------------------------------------------- LiteLLM agreement


def test_disagreement_detector_reports_each_fact() -> None:
    spec = ModelSpec(id="openai/x", provider="openai", context_window=1000, max_input_tokens=900,
                     pricing=Pricing(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5))
    same = {"max_input_tokens": 900, "input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6,
            "cache_read_input_token_cost": 5e-7}
    assert disagreements(spec, same) == []
    assert disagreements(spec, {**same, "input_cost_per_token": 2e-6 * (1 + 1e-9)}) == []
    off = {"max_input_tokens": 1000, "input_cost_per_token": 2.5e-6, "output_cost_per_token": 8.1e-6,
           "cache_read_input_token_cost": 4e-7}
    problems = disagreements(spec, off)
    assert len(problems) == 4
    assert problems[0].startswith("input window 900")


def test_litellm_key_naming() -> None:
    def spec(model_id: str) -> ModelSpec:
        return ModelSpec(id=model_id, provider=model_id.split("/")[0], context_window=10)

    assert litellm_key(spec("openai/gpt-4o")) == "gpt-4o"
    assert litellm_key(spec("gemini/gemini-2.5-pro")) == "gemini/gemini-2.5-pro"
    assert litellm_key(spec("groq/openai/gpt-oss-20b")) == "groq/openai/gpt-oss-20b"
    assert litellm_key(spec("bedrock/anthropic.claude-opus-4-8")) == "anthropic.claude-opus-4-8"
    assert litellm_key(spec("azure/gpt-4o")) == "azure/gpt-4o"
    assert litellm_key(spec("deepseek/deepseek-chat")) == "deepseek/deepseek-chat"
    assert litellm_key(spec("siliconflow/Qwen/Qwen3.5-27B")) is None


def test_facts_agree_with_litellm(litellm_map_path: Path, models_by_id: dict[str, ModelSpec]) -> None:
    data = _litellm_map(litellm_map_path)
    mismatches: dict[str, list[str]] = {}
    matched = 0
    for spec in models_by_id.values():
        key = litellm_key(spec)
        entry = data.get(key) if key else None
        if not isinstance(entry, dict):
            continue
        matched += 1
        problems = disagreements(spec, entry)
        if problems and spec.id not in KNOWN_DIFFERENCES:
            mismatches[spec.id] = problems
    assert not mismatches, json.dumps(mismatches, indent=1)
    assert matched >= 90, f"only {matched} bundled models matched a LiteLLM entry"


def test_known_differences_are_real(litellm_map_path: Path, models_by_id: dict[str, ModelSpec]) -> None:
    data = _litellm_map(litellm_map_path)
    for model_id, reason in KNOWN_DIFFERENCES.items():
        assert reason.strip(), model_id
        spec = models_by_id[model_id]
        key = litellm_key(spec)
        assert key is not None and key in data, f"{model_id}: no LiteLLM entry, drop it from KNOWN_DIFFERENCES"
        assert disagreements(spec, data[key]), f"{model_id} now agrees with LiteLLM; drop it from KNOWN_DIFFERENCES"
