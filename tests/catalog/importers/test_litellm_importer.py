"""Tests for modelplex.catalog.importers.litellm, on a real-data excerpt and on the full shared map."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from modelplex.catalog import Catalog, ModelSpec, ProviderSpec, load_catalog
from modelplex.catalog.importers import FORMATS, ImportResult, import_litellm, write_overlay
from modelplex.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "litellm_sample.json"
AS_OF = dt.date(2026, 11, 1)


@pytest.fixture
def sample() -> ImportResult:
    return import_litellm(SAMPLE, as_of=AS_OF, base=Catalog(providers=[ProviderSpec(name="openai", protocol="openai"),
                                                                  ProviderSpec(name="deepseek", protocol="openai")]))


def by_id(result: ImportResult) -> dict[str, dict]:
    return {m["id"]: m for m in result.models}


def test_sample_ids_and_skips(sample: ImportResult) -> None:
    assert sorted(by_id(sample)) == [
        "anthropic/claude-sonnet-4-5",
        "azure/eu/gpt-4.1",
        "azure/gpt-4.1",
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "bedrock/us-east-1/anthropic.claude-v2:1",
        "dashscope/qwen-flash",
        "deepseek/deepseek-chat",
        "fireworks/nomic-ai/nomic-embed-text-v1.5",
        "gemini/gemini-2.5-flash",
        "ollama/codellama",
        "openai/gpt-4o",
        "openai/o3-pro",
        "openai/text-embedding-3-small",
        "replicate/openai/gpt-4o",
    ]
    assert sample.skipped == {
        "completion_endpoint_only": 1,   # babbage-002
        "duplicate_id": 2,               # deepseek-chat twice, gemini-2.5-flash via Vertex
        "fine_tune_template": 1,         # ft:gpt-3.5-turbo
        "mode:image_generation": 1,
        "no_token_pricing": 1,           # perplexity preset
        "price_bracket": 1,              # together-ai-up-to-4b
        "provisioned_throughput": 1,     # bedrock 1-month commitment
    }
    assert sample.filled == {"context_window_from_same_model": 2, "price_from_first_tier": 1}
    assert sample.source == "litellm" and sample.as_of == AS_OF and sample.origin == str(SAMPLE)
    for entry in sample.models:
        ModelSpec.model_validate(entry)
        assert entry["source"] == "litellm" and entry["as_of"] == "2026-11-01"


def test_gpt_4o(sample: ImportResult) -> None:
    gpt = by_id(sample)["openai/gpt-4o"]
    assert gpt["context_window"] == 128_000 and gpt["max_output_tokens"] == 16_384
    assert gpt["pricing"] == {"input_per_mtok": 2.5, "output_per_mtok": 10.0, "cached_input_per_mtok": 1.25}
    assert gpt["family"] == "gpt-4o" and gpt["tokenizer"] == "o200k_base"
    assert {"tool_calling", "parallel_tool_calls", "vision", "json_mode", "structured_output", "streaming",
            "system_messages", "prompt_caching", "pdf_input"} <= set(gpt["capabilities"])
    assert gpt["input_modalities"] == ["image", "pdf", "text"]
    assert "deprecation" not in gpt and "category" not in gpt


def test_claude_prices_and_deprecation_date_in_future(sample: ImportResult) -> None:
    claude = by_id(sample)["anthropic/claude-sonnet-4-5"]
    assert claude["pricing"]["cached_input_per_mtok"] == 0.3
    assert claude["pricing"]["cache_write_per_mtok"] == 3.75
    assert claude["deprecation"] == {"deprecated": False, "date": "2026-11-30"}
    later = by_id(import_litellm(SAMPLE, as_of=dt.date(2026, 12, 1), base=Catalog()))
    assert later["anthropic/claude-sonnet-4-5"]["deprecation"] == {"deprecated": True, "date": "2026-11-30"}
    assert by_id(sample)["deepseek/deepseek-chat"]["deprecation"]["deprecated"] is True


def test_duplicates_prefer_own_platform_and_prefixed_keys(sample: ImportResult) -> None:
    models = by_id(sample)
    # gemini/gemini-2.5-flash (Gemini API) wins over the Vertex entry "gemini-2.5-flash" (65535 output)
    assert models["gemini/gemini-2.5-flash"]["max_output_tokens"] == 65_536
    assert models["gemini/gemini-2.5-flash"]["category"] == "reasoning"
    assert models["gemini/gemini-2.5-flash"]["pricing"]["reasoning_per_mtok"] == 2.5
    # "deepseek/deepseek-chat" wins over "deepseek-chat": it states a cache-write price of 0
    assert models["deepseek/deepseek-chat"]["pricing"]["cache_write_per_mtok"] == 0.0


def test_regions_endpoints_and_modes(sample: ImportResult) -> None:
    models = by_id(sample)
    eu = models["azure/eu/gpt-4.1"]
    assert eu["wire_name"] == "gpt-4.1" and eu["api_requirements"] == {"region": "eu"}
    v2 = models["bedrock/us-east-1/anthropic.claude-v2:1"]
    assert v2["wire_name"] == "anthropic.claude-v2:1" and v2["api_requirements"] == {"region": "us-east-1"}
    assert v2["family"] == "claude-v2"
    assert models["bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"]["family"] == "claude-3-5-sonnet"
    assert "wire_name" not in models["bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"]
    assert models["openai/o3-pro"]["api_requirements"] == {"endpoint": "responses"}
    llama = models["ollama/codellama"]
    assert llama["api_requirements"] == {"endpoint": "completions"} and "completion" in llama["capabilities"]
    emb = models["openai/text-embedding-3-small"]
    assert emb["mode"] == "embedding" and emb["embedding_dimensions"] == 1536
    assert emb["output_modalities"] == ["embedding"] and "max_output_tokens" not in emb
    assert models["fireworks/nomic-ai/nomic-embed-text-v1.5"]["pricing"]["input_per_mtok"] == 0.008


def test_filled_facts(sample: ImportResult) -> None:
    models = by_id(sample)
    # replicate/openai/gpt-4o states no window: the vendor's own entry (openai/gpt-4o) supplies it
    assert models["replicate/openai/gpt-4o"]["context_window"] == 128_000
    assert models["replicate/openai/gpt-4o"]["max_output_tokens"] == 16_384
    # azure/eu/gpt-4.1 takes azure/gpt-4.1's window
    assert models["azure/eu/gpt-4.1"]["context_window"] == models["azure/gpt-4.1"]["context_window"]
    # dashscope/qwen-flash has only tiered prices: the first tier is the base price
    assert models["dashscope/qwen-flash"]["pricing"] == {"input_per_mtok": 0.05, "output_per_mtok": 0.4}


def test_provider_entries(sample: ImportResult) -> None:
    providers = {p["name"]: p for p in sample.providers}
    assert providers["openai"] == {"name": "openai", "protocol": "openai"}
    assert providers["anthropic"] == {"name": "anthropic", "protocol": "anthropic"}
    assert providers["deepseek"] == {"name": "deepseek", "protocol": "openai"}
    assert providers["replicate"] == {"name": "replicate", "protocol": "openai", "display_name": "Replicate"}
    assert set(providers) == {m["provider"] for m in sample.models}
    overlay = sample.to_overlay()
    assert overlay["providers"]["replicate"] == {"protocol": "openai", "display_name": "Replicate"}
    assert overlay["models"] == sample.models


def test_provider_filter() -> None:
    only = import_litellm(SAMPLE, as_of=AS_OF, providers=["azure"], base=Catalog())
    assert sorted(by_id(only)) == ["azure/eu/gpt-4.1", "azure/gpt-4.1"]
    assert only.skipped["provider_filtered"] == 14  # 16 candidates, duplicates included
    assert [p["name"] for p in only.providers] == ["azure"]


def test_sources_gz_text_and_dict(tmp_path: Path) -> None:
    raw = SAMPLE.read_bytes()
    gz = tmp_path / "map.json.gz"
    gz.write_bytes(gzip.compress(raw))
    data = json.loads(raw)
    reference = import_litellm(SAMPLE, as_of=AS_OF, base=Catalog()).models
    assert import_litellm(gz, as_of=AS_OF, base=Catalog()).models == reference
    assert import_litellm(str(gz), as_of=AS_OF, base=Catalog()).models == reference
    assert import_litellm(data, as_of=AS_OF, base=Catalog()).models == reference
    assert import_litellm(raw.decode(), as_of=AS_OF, base=Catalog()).models == reference
    assert FORMATS["litellm"] is import_litellm


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        import_litellm(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"gpt-4o": {', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        import_litellm(broken)
    assert info.value.file == str(broken) and "invalid JSON at line 1" in str(info.value)
    with pytest.raises(ConfigError, match="JSON object"):
        import_litellm([1, 2, 3])


def test_overlay_round_trip(sample: ImportResult, tmp_path: Path) -> None:
    path = write_overlay(sample, tmp_path / "out" / "litellm.yaml")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# modelplex catalog overlay imported from litellm")
    cat = load_catalog(overlays=[path], bundled=False)
    assert len(cat) == len(sample.models)
    gpt = cat.get("openai/gpt-4o")
    assert gpt.pricing.input_per_mtok == 2.5 and gpt.source == "litellm" and gpt.as_of == AS_OF
    assert cat.get("azure/eu/gpt-4.1").api_model == "gpt-4.1"
    assert cat.provider("replicate").base_url is None
    assert cat.get("anthropic/claude-sonnet-4-5").deprecation.date == dt.date(2026, 11, 30)


# ------------------------------------------------------------------------------------- the real map


def test_full_shared_map(litellm_map_path: Path, tmp_path: Path) -> None:
    result = import_litellm(litellm_map_path, as_of=dt.date(2026, 11, 15))
    assert len(result.models) > 3000
    ids = [m["id"] for m in result.models]
    assert len(ids) == len(set(ids))
    specs = [ModelSpec.model_validate(m) for m in result.models]
    modes = {s.mode for s in specs}
    assert modes == {"chat", "embedding"}
    assert sum(s.mode == "embedding" for s in specs) > 100
    gpt = next(s for s in specs if s.id == "openai/gpt-4o")
    assert (gpt.context_window, gpt.max_output_tokens) == (128_000, 16_384)
    assert (gpt.pricing.input_per_mtok, gpt.pricing.output_per_mtok) == (2.5, 10.0)
    assert gpt.has("tool_calling") and gpt.has("vision") and gpt.has("json_mode")
    providers = {p["name"] for p in result.providers}
    assert {"openai", "azure", "anthropic", "gemini", "bedrock", "together", "fireworks", "mistral"} <= providers
    assert providers == {s.provider for s in specs}
    # prices are per million tokens without float noise
    assert all(len(repr(s.pricing.input_per_mtok).split(".")[-1]) <= 6 for s in specs)

    path = write_overlay(result, tmp_path / "litellm.yaml")
    cat = load_catalog(overlays=[path], bundled=False)
    assert len(cat) == len(result.models)
    assert cat.get("openai/gpt-4o").pricing.output_per_mtok == 10.0
    assert cat.cost("openai/gpt-4o", 1_000_000, 1_000_000).total_usd == pytest.approx(12.5)
    assert len(cat.list(provider="bedrock", include_deprecated=True)) > 100


def test_json_overlay_round_trip(sample: ImportResult, tmp_path: Path) -> None:
    path = write_overlay(sample, tmp_path / "litellm.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["import"]["models"] == len(sample.models)
    assert document["import"]["skipped"] == sample.skipped
    cat = load_catalog(overlays=[path], bundled=False)
    yaml_cat = load_catalog(overlays=[write_overlay(sample, tmp_path / "litellm.yaml")], bundled=False)
    assert [m.model_dump() for m in cat] == [m.model_dump() for m in yaml_cat]


def test_reconcile_keeps_curated_fields() -> None:
    curated = ModelSpec(
        id="openai/gpt-4o", provider="openai", family="gpt-4o-curated", display_name="GPT-4o",
        aliases=("omni",), context_window=100_000, max_output_tokens=4096, category="comprehensive", quality=88,
        capabilities={"audio_input", "tool_calling"}, api_requirements={"max_tokens_param": "max_tokens"},
        supported_params=frozenset({"temperature", "max_tokens"}),
        deprecation={"deprecated": True, "replacement": "openai/gpt-5", "date": "2027-01-01"},
        pricing={"input_per_mtok": 9.0, "output_per_mtok": 9.0})
    base = Catalog([curated], [ProviderSpec(name="openai", protocol="openai", base_url="https://example.test/v1")])
    result = import_litellm(SAMPLE, as_of=AS_OF, base=base)
    assert result.matched_base == 1
    entry = by_id(result)["openai/gpt-4o"]
    assert entry["family"] == "gpt-4o-curated" and entry["display_name"] == "GPT-4o"
    assert entry["category"] == "comprehensive" and entry["supported_params"] == ["max_tokens", "temperature"]
    assert entry["deprecation"] == {"deprecated": True, "date": "2027-01-01", "replacement": "openai/gpt-5"}
    merged = base.with_overlay(result.models, result.providers, source="litellm")
    gpt = merged.get("omni")
    # prices refreshed from the map ...
    assert (gpt.pricing.input_per_mtok, gpt.pricing.output_per_mtok) == (2.5, 10.0)
    # ... curation kept, limits included (the map says 128,000 / 16,384)
    assert (gpt.context_window, gpt.max_input_tokens, gpt.max_output_tokens) == (100_000, None, 4096)
    assert (entry["context_window"], entry["max_output_tokens"]) == (100_000, 4096)
    assert gpt.family == "gpt-4o-curated" and gpt.quality == 88 and gpt.aliases == ("omni",)
    assert {"audio_input", "vision", "tool_calling"} <= gpt.capabilities
    assert gpt.api_requirements == {"max_tokens_param": "max_tokens"}
    assert gpt.deprecation.replacement == "openai/gpt-5"
    assert merged.provider("openai").base_url == "https://example.test/v1"


def test_import_over_the_bundled_catalog(litellm_map_path: Path) -> None:
    """The default base is the bundled catalog: refreshing it from the map keeps its curation."""
    bundled = load_catalog()
    result = import_litellm(litellm_map_path, as_of=dt.date(2026, 11, 15))
    merged = load_catalog([result.to_overlay()])
    assert len(merged) >= len(result.models)
    for spec in bundled:
        after = merged.get(spec.id)
        assert (after.family, after.category, after.aliases) == (spec.family, spec.category, spec.aliases)
        assert after.deprecation.replacement == spec.deprecation.replacement
        assert spec.capabilities - {"long_context"} <= after.capabilities
    for provider in bundled.providers():
        assert merged.provider(provider.name) == provider


# ------------------------------------------------------------------------------------- limits


def _entry(max_input: int, max_output: int | None, price: float, provider: str = "openai") -> dict:
    entry = {"litellm_provider": provider, "mode": "chat", "max_input_tokens": max_input,
             "max_tokens": max_output or max_input, "input_cost_per_token": price,
             "output_cost_per_token": price * 8}
    if max_output is not None:
        entry["max_output_tokens"] = max_output
    return entry


LIMITS_MAP = {
    # LiteLLM records GPT-5's input cap, not its 400,000 window (272,000 input + 128,000 output)
    "gpt-5": _entry(272_000, 128_000, 1.25e-6),
    "gpt-5-2025-08-07": _entry(272_000, 128_000, 1.25e-6),
    # the stale 4,097 window of the retired 0301 version (KNOWN_DIFFERENCES in test_bundled_data.py)
    "azure/gpt-35-turbo": _entry(4097, 4096, 5e-7, provider="azure"),
    # no max_output_tokens: max_tokens repeats the window
    "together_ai/openai/gpt-oss-120b": _entry(131_072, None, 1.5e-7, provider="together_ai"),
    "together_ai/openai/gpt-oss-20b": _entry(131_072, None, 5e-8, provider="together_ai"),
}


def _curated(model_id: str, window: int, output: int, *, family: str, max_input: int | None = None) -> ModelSpec:
    return ModelSpec(id=model_id, provider=model_id.split("/", 1)[0], family=family, context_window=window,
                     max_input_tokens=max_input, max_output_tokens=output,
                     pricing={"input_per_mtok": 9.0, "output_per_mtok": 9.0})


LIMITS_BASE = Catalog([
    _curated("openai/gpt-5", 400_000, 128_000, family="gpt-5", max_input=272_000),
    _curated("azure/gpt-35-turbo", 16_385, 4096, family="gpt-35-turbo"),
    _curated("together/openai/gpt-oss-120b", 131_072, 32_768, family="gpt-oss"),
])


def test_import_keeps_curated_limits_and_refreshes_prices() -> None:
    result = import_litellm(LIMITS_MAP, as_of=AS_OF, base=LIMITS_BASE)
    assert result.matched_base == 3
    models = by_id(result)
    gpt5 = models["openai/gpt-5"]
    assert (gpt5["context_window"], gpt5["max_input_tokens"], gpt5["max_output_tokens"]) == (400_000, 272_000, 128_000)
    assert models["azure/gpt-35-turbo"]["context_window"] == 16_385          # not LiteLLM's stale 4,097
    assert "max_input_tokens" not in models["azure/gpt-35-turbo"]
    assert models["together/openai/gpt-oss-120b"]["max_output_tokens"] == 32_768   # not the 131,072 window
    assert gpt5["pricing"] == {"input_per_mtok": 1.25, "output_per_mtok": 10.0}
    merged = LIMITS_BASE.with_overlay(result.models, result.providers, source="litellm")
    for spec in LIMITS_BASE:
        after = merged.get(spec.id)
        assert (after.context_window, after.max_input_tokens, after.max_output_tokens) == (
            spec.context_window, spec.max_input_tokens, spec.max_output_tokens), spec.id
        assert after.pricing.input_per_mtok != 9.0, spec.id
    # standalone (no base), the map's own figures are imported as documented
    alone = by_id(import_litellm(LIMITS_MAP, as_of=AS_OF, base=Catalog()))
    assert (alone["openai/gpt-5"]["context_window"], alone["openai/gpt-5"]["max_output_tokens"]) == (272_000, 128_000)
    assert alone["azure/gpt-35-turbo"]["context_window"] == 4097


def test_a_snapshot_takes_its_curated_siblings_window() -> None:
    result = import_litellm(LIMITS_MAP, as_of=AS_OF, base=LIMITS_BASE)
    snapshot = by_id(result)["openai/gpt-5-2025-08-07"]
    assert (snapshot["context_window"], snapshot["max_input_tokens"], snapshot["max_output_tokens"]) == (
        400_000, 272_000, 128_000)
    assert result.filled["context_window_from_curated_family"] == 1
    # a sibling with other limits, or a family with no input cap, is left as the map states it
    other = by_id(import_litellm({**LIMITS_MAP, "gpt-5-2025-08-07": _entry(1_050_000, 128_000, 1.25e-6)},
                                 as_of=AS_OF, base=LIMITS_BASE))["openai/gpt-5-2025-08-07"]
    assert other["context_window"] == 1_050_000 and "max_input_tokens" not in other
    oss20 = by_id(result)["together/openai/gpt-oss-20b"]
    assert (oss20["context_window"], oss20["max_output_tokens"]) == (131_072, 131_072) and "max_input_tokens" not in oss20


def test_the_real_map_leaves_bundled_limits_alone(litellm_map_path: Path, tmp_path: Path) -> None:
    """Applying an import of the shared map over the bundled catalog changes no bundled model's window,
    input cap or output limit (GPT-5's 400,000/272,000, azure/gpt-35-turbo's 16,385, Together's output
    limits), while prices still come from the map."""
    bundled = load_catalog()
    result = import_litellm(litellm_map_path, as_of=dt.date(2026, 11, 15))
    merged = load_catalog(overlays=[write_overlay(result, tmp_path / "litellm.json")])
    changed = {}
    for spec in bundled:
        after = merged.get(spec.id)
        before_limits = (spec.context_window, spec.max_input_tokens, spec.max_output_tokens)
        after_limits = (after.context_window, after.max_input_tokens, after.max_output_tokens)
        if after_limits != before_limits:
            changed[spec.id] = (before_limits, after_limits)
    assert not changed, json.dumps(changed, indent=1)
    gpt5 = merged.get("openai/gpt-5")
    assert (gpt5.context_window, gpt5.max_input_tokens, gpt5.input_limit) == (400_000, 272_000, 272_000)
    assert merged.get("openai/gpt-6-astra").context_window == 1_050_000
    assert merged.get("azure/gpt-35-turbo").context_window == 16_385
    assert merged.get("together/openai/gpt-oss-120b").max_output_tokens == 32_768
    # prices are still refreshed: every matched model carries the map's prices
    standalone = by_id(import_litellm(litellm_map_path, as_of=dt.date(2026, 11, 15), base=Catalog()))
    refreshed = [spec.id for spec in bundled if spec.id in standalone]
    assert len(refreshed) >= 90
    for model_id in refreshed:
        prices = standalone[model_id]["pricing"]
        after = merged.get(model_id).pricing
        assert (after.input_per_mtok, after.output_per_mtok) == (prices["input_per_mtok"], prices["output_per_mtok"])
