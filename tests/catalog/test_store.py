"""Tests for modelplex.catalog.store: lookup, listing, parameters, deprecation, cost, limits, overlays."""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from typing import Any

import pytest

from modelplex.catalog import (
    Catalog,
    CostBreakdown,
    ModelDeprecatedWarning,
    ModelSpec,
    ParameterIssue,
    ProviderSpec,
    TokenLimitCheck,
)
from modelplex.errors import CatalogError, ConfigError, UnknownModelError
from modelplex.types import Usage


def spec(model_id: str, **fields: Any) -> ModelSpec:
    fields.setdefault("context_window", 128_000)
    return ModelSpec(id=model_id, provider=model_id.split("/", 1)[0], **fields)


@pytest.fixture
def catalog() -> Catalog:
    models = [
        spec("openai/gpt-4o", family="gpt-4o", aliases=("gpt-4o-latest",), max_output_tokens=16_384,
             capabilities={"tool_calling", "vision", "json_mode", "structured_output", "streaming"},
             pricing={"input_per_mtok": 2.5, "output_per_mtok": 10.0, "cached_input_per_mtok": 1.25}),
        spec("openai/gpt-4o-mini", family="gpt-4o", max_output_tokens=16_384,
             capabilities={"tool_calling", "json_mode"}, pricing={"input_per_mtok": 0.15, "output_per_mtok": 0.6}),
        spec("openai/o3-mini", family="o3", context_window=200_000, max_output_tokens=100_000,
             capabilities={"reasoning", "tool_calling", "structured_output"},
             supported_params=frozenset({"max_tokens", "tools", "reasoning_effort", "response_format"}),
             param_mappings={"max_tokens": "max_completion_tokens"},
             pricing={"input_per_mtok": 1.1, "output_per_mtok": 4.4, "reasoning_per_mtok": 5.0}),
        spec("azure/gpt-4o", family="gpt-4o", max_output_tokens=16_384),
        spec("anthropic/claude-sonnet-4-5", family="claude-sonnet", context_window=200_000,
             max_output_tokens=64_000, capabilities={"tool_calling", "vision", "reasoning"},
             default_params={"max_tokens": 4096},
             pricing={"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.3,
                      "cache_write_per_mtok": 3.75}),
        spec("openai/gpt-3.5-turbo-16k", family="gpt-3.5", context_window=16_385,
             deprecation={"deprecated": True, "date": "2024-06-01", "replacement": "openai/gpt-4o-mini"}),
        spec("openai/text-embedding-3-small", mode="embedding", context_window=8191,
             pricing={"input_per_mtok": 0.02}),
        spec("groq/llama-3.1-8b-instant", context_window=8192, max_output_tokens=8192),
    ]
    providers = [
        ProviderSpec(name="openai", protocol="openai"),
        ProviderSpec(name="azure", protocol="azure"),
        ProviderSpec(name="anthropic", protocol="anthropic", profile={"a": 1, "b": 2}),
    ]
    return Catalog(models, providers)


# ------------------------------------------------------------------------------------- lookup


def test_get_by_id_alias_bare_name_and_case(catalog: Catalog) -> None:
    assert catalog.get("openai/gpt-4o").id == "openai/gpt-4o"
    assert catalog.get("gpt-4o-latest").id == "openai/gpt-4o"
    assert catalog.get("claude-sonnet-4-5").id == "anthropic/claude-sonnet-4-5"
    assert catalog.get("OpenAI/GPT-4o-Mini").id == "openai/gpt-4o-mini"
    assert catalog.get("GPT-4O-LATEST").id == "openai/gpt-4o"
    assert catalog.get("Llama-3.1-8B-Instant").id == "groq/llama-3.1-8b-instant"


def test_ambiguous_bare_name_names_the_candidates(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError) as info:
        catalog.get("gpt-4o")
    assert info.value.suggestions == ["azure/gpt-4o", "openai/gpt-4o"]
    assert info.value.model == "gpt-4o"
    assert catalog.find("gpt-4o") is None


def test_unknown_model_suggests_close_matches(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError) as info:
        catalog.get("openai/gpt-4o-mnii")
    assert info.value.suggestions[0] == "openai/gpt-4o-mini"
    assert "did you mean" in str(info.value)
    with pytest.raises(UnknownModelError) as info2:
        catalog.get("claude-sonet-4-5")
    assert "anthropic/claude-sonnet-4-5" in info2.value.suggestions
    assert isinstance(info2.value, KeyError) and isinstance(info2.value, CatalogError)


def test_container_protocol(catalog: Catalog) -> None:
    assert "openai/gpt-4o" in catalog
    assert "gpt-4o-latest" in catalog
    assert "nope/model" not in catalog
    assert catalog.get("openai/gpt-4o") in catalog
    assert len(catalog) == 8
    ids = [m.id for m in catalog]
    assert ids == sorted(ids)
    assert [m.id for m in catalog.models()] == ids


# ------------------------------------------------------------------------------------- listing


def test_list_filters(catalog: Catalog) -> None:
    assert [m.id for m in catalog.list(provider="openai")] == [
        "openai/gpt-4o", "openai/gpt-4o-mini", "openai/o3-mini", "openai/text-embedding-3-small"]
    assert catalog.list(provider="openai", include_deprecated=True)[0].id == "openai/gpt-3.5-turbo-16k"
    assert [m.id for m in catalog.list(family="gpt-4o")] == ["azure/gpt-4o", "openai/gpt-4o", "openai/gpt-4o-mini"]
    assert [m.id for m in catalog.list(capability="reasoning")] == ["anthropic/claude-sonnet-4-5", "openai/o3-mini"]
    assert [m.id for m in catalog.list(mode="embedding")] == ["openai/text-embedding-3-small"]
    assert [m.id for m in catalog.list(provider="openai", capability="vision")] == ["openai/gpt-4o"]
    assert catalog.list(provider="nobody") == []
    assert len(catalog.list()) == 7
    assert len(catalog.list(include_deprecated=True)) == 8
    # long_context is derived by the schema and indexed
    assert "groq/llama-3.1-8b-instant" not in {m.id for m in catalog.list(capability="long_context")}


def test_families_and_providers(catalog: Catalog) -> None:
    fams = catalog.families()
    assert list(fams) == ["claude-sonnet", "gpt-3.5", "gpt-4o", "o3"]
    assert [m.id for m in fams["gpt-4o"]] == ["azure/gpt-4o", "openai/gpt-4o", "openai/gpt-4o-mini"]
    assert [p.name for p in catalog.providers()] == ["anthropic", "azure", "openai"]
    assert catalog.provider("anthropic").protocol == "anthropic"
    with pytest.raises(CatalogError, match="known providers: anthropic, azure, openai"):
        catalog.provider("groq")


def test_add_replaces_and_reindexes(catalog: Catalog) -> None:
    v0 = catalog.version
    catalog.add(spec("openai/gpt-4o", family="gpt-4o-new", aliases=("omni",), max_output_tokens=4096))
    assert catalog.version == v0 + 1
    assert catalog.get("omni").max_output_tokens == 4096
    assert catalog.find("gpt-4o-latest") is None  # the old alias went with the old entry
    assert "openai/gpt-4o" not in {m.id for m in catalog.list(family="gpt-4o")}
    assert [m.id for m in catalog.list(family="gpt-4o-new")] == ["openai/gpt-4o"]
    assert len(catalog) == 8
    with pytest.raises(CatalogError, match="already in the catalog"):
        catalog.add(spec("openai/gpt-4o"), replace=False)
    catalog.add(spec("mistral/mistral-small"))
    assert catalog.version == v0 + 2
    assert catalog.get("mistral-small").provider == "mistral"
    catalog.add_provider(ProviderSpec(name="mistral", protocol="openai"))
    assert catalog.version == v0 + 3
    assert catalog.provider("mistral").protocol == "openai"


def test_copy_is_independent(catalog: Catalog) -> None:
    clone = catalog.copy()
    clone.add(spec("x/y"))
    assert "x/y" in clone and "x/y" not in catalog


# ------------------------------------------------------------------------------------- parameters


def test_param_mapping_uses_protocol_and_model_overrides(catalog: Catalog) -> None:
    claude = catalog.param_mapping("anthropic/claude-sonnet-4-5")
    assert claude["stop"] == "stop_sequences"
    assert claude["n"] is None
    assert claude["max_tokens"] == "max_tokens"
    o3 = catalog.param_mapping("openai/o3-mini")
    assert o3["max_tokens"] == "max_completion_tokens"
    assert o3["temperature"] is None  # narrowed by supported_params
    assert catalog.param_mapping(catalog.get("openai/gpt-4o"))["temperature"] == "temperature"
    # a provider without a spec: protocol openai
    assert catalog.protocol_of("groq/llama-3.1-8b-instant") == "openai"
    assert catalog.protocol_of("anthropic/claude-sonnet-4-5") == "anthropic"


def test_default_params_are_a_copy(catalog: Catalog) -> None:
    params = catalog.default_params("anthropic/claude-sonnet-4-5")
    assert params == {"max_tokens": 4096}
    params["max_tokens"] = 1
    assert catalog.default_params("anthropic/claude-sonnet-4-5") == {"max_tokens": 4096}


def test_validate_max_tokens_over_output_limit(catalog: Catalog) -> None:
    issues = catalog.validate_parameters("openai/gpt-4o", {"temperature": 0.7, "max_tokens": 20000,
                                                           "frequency_penalty": 0.5})
    assert issues == [ParameterIssue("max_tokens", "exceeds_output_limit",
                                     "max_tokens 20000 exceeds the model's output limit of 16,384")]
    assert issues[0].to_dict() == {"param": "max_tokens", "code": "exceeds_output_limit",
                                   "message": "max_tokens 20000 exceeds the model's output limit of 16,384"}


def test_validate_value_ranges(catalog: Catalog) -> None:
    codes = {i.param: i.code for i in catalog.validate_parameters(
        "openai/gpt-4o", {"temperature": 2.5, "top_p": 1.5, "n": 0, "presence_penalty": -3,
                          "top_logprobs": 21, "seed": "x", "stop": 5, "logprobs": "yes", "max_tokens": 0})}
    assert codes == {"temperature": "invalid_value", "top_p": "invalid_value", "n": "invalid_value",
                     "presence_penalty": "invalid_value", "top_logprobs": "invalid_value", "seed": "invalid_value",
                     "stop": "invalid_value", "logprobs": "invalid_value", "max_tokens": "invalid_value"}
    ok = catalog.validate_parameters("openai/gpt-4o", {"temperature": 2, "top_p": 0, "n": 2, "stop": ["\n"],
                                                       "seed": 7, "logprobs": True, "top_logprobs": 5,
                                                       "max_tokens": 16384, "user": None, "extra_body": {}})
    assert ok == []
    # booleans are not numbers
    assert catalog.validate_parameters("openai/gpt-4o", {"temperature": True})[0].code == "invalid_value"


def test_validate_temperature_range_follows_protocol(catalog: Catalog) -> None:
    issues = catalog.validate_parameters("anthropic/claude-sonnet-4-5", {"temperature": 1.5})
    assert [(i.param, i.code) for i in issues] == [("temperature", "invalid_value")]
    assert "[0, 1]" in issues[0].message
    assert catalog.validate_parameters("anthropic/claude-sonnet-4-5", {"temperature": 1.0}) == []
    custom = spec("x/custom", api_requirements={"temperature_range": [0, 5]})
    assert catalog.validate_parameters(custom, {"temperature": 4}) == []


def test_validate_unsupported_and_unknown(catalog: Catalog) -> None:
    issues = catalog.validate_parameters("anthropic/claude-sonnet-4-5", {"n": 2, "frobnicate": 1, "stop": ["x"]})
    assert [(i.param, i.code) for i in issues] == [("n", "unsupported"), ("frobnicate", "unsupported")]
    assert "anthropic protocol" in issues[0].message
    assert "unknown parameter 'frobnicate'" in issues[1].message
    o3 = catalog.validate_parameters("openai/o3-mini", {"temperature": 0.2, "max_completion_tokens": 1000})
    assert [(i.param, i.code) for i in o3] == [("temperature", "unsupported")]


def test_validate_capability_dependent_params(catalog: Catalog) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert catalog.validate_parameters("openai/gpt-4o", {"tools": tools}) == []
    no_tools = catalog.validate_parameters("groq/llama-3.1-8b-instant", {"tools": tools})
    assert [(i.param, i.code) for i in no_tools] == [("tools", "unsupported")]
    effort = catalog.validate_parameters("openai/gpt-4o", {"reasoning_effort": "high"})
    assert [(i.param, i.code) for i in effort] == [("reasoning_effort", "unsupported")]
    assert catalog.validate_parameters("openai/o3-mini", {"reasoning_effort": "high"}) == []
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    assert catalog.validate_parameters("openai/gpt-4o", {"response_format": schema}) == []
    mini = catalog.validate_parameters("openai/gpt-4o-mini", {"response_format": schema})
    assert [(i.param, i.code) for i in mini] == [("response_format", "unsupported")]
    assert catalog.validate_parameters("openai/gpt-4o-mini", {"response_format": {"type": "json_object"}}) == []
    bad = catalog.validate_parameters("openai/gpt-4o", {"response_format": {"type": "yaml"}})
    assert [(i.param, i.code) for i in bad] == [("response_format", "invalid_value")]


def test_validate_context(catalog: Catalog) -> None:
    issues = catalog.validate_parameters("openai/gpt-4o", {"max_tokens": 16000}, input_tokens=120_000)
    assert [(i.param, i.code) for i in issues] == [("max_tokens", "exceeds_context")]
    assert "128,000" in issues[0].message
    assert catalog.validate_parameters("openai/gpt-4o", {"max_tokens": 8000}, input_tokens=120_000) == []
    over = catalog.validate_parameters("openai/gpt-4o", {}, input_tokens=130_000)
    assert [(i.param, i.code) for i in over] == [("input_tokens", "exceeds_context")]


def test_validate_flags_deprecated_model(catalog: Catalog) -> None:
    issues = catalog.validate_parameters("openai/gpt-3.5-turbo-16k", {"temperature": 0.1})
    assert [(i.param, i.code) for i in issues] == [("model", "deprecated_model")]
    assert "2024-06-01" in issues[0].message and "openai/gpt-4o-mini" in issues[0].message


def test_validate_unknown_model_raises(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError):
        catalog.validate_parameters("nobody/nothing", {})


# ------------------------------------------------------------------------------------- deprecation


def test_migrate_follows_chain_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    cat = Catalog([
        spec("p/a", deprecation={"deprecated": True, "replacement": "p/b", "date": "2025-01-01"}),
        spec("p/b", deprecation={"deprecated": True, "replacement": "p/c"}),
        spec("p/c"),
    ])
    with caplog.at_level(logging.WARNING, logger="modelplex.catalog"), warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert cat.migrate("p/a").id == "p/c"
        assert cat.migrate("p/a").id == "p/c"
        assert cat.migrate("a").id == "p/c"
    deprecations = [w for w in rec if issubclass(w.category, ModelDeprecatedWarning)]
    assert len(deprecations) == 1
    warning = deprecations[0].message
    assert isinstance(warning, ModelDeprecatedWarning) and isinstance(warning, DeprecationWarning)
    assert warning.model == "p/a" and warning.replacement == "p/c"
    assert "migrating to p/c" in str(warning)
    assert sum("p/a is deprecated" in r.getMessage() for r in caplog.records) == 1
    # a second catalog warns again
    with warnings.catch_warnings(record=True) as rec2:
        warnings.simplefilter("always")
        cat.copy().migrate("p/a")
    assert len(rec2) == 1


def test_migrate_is_cycle_safe_and_identity_when_not_deprecated() -> None:
    cat = Catalog([
        spec("p/a", deprecation={"deprecated": True, "replacement": "p/b"}),
        spec("p/b", deprecation={"deprecated": True, "replacement": "p/a"}),
        spec("p/c"),
        spec("p/d", deprecation={"deprecated": True, "replacement": "p/missing"}),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cat.migrate("p/a").id == "p/b"
        assert cat.migrate("p/b").id == "p/a"
        assert cat.migrate("p/d").id == "p/d"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cat.migrate("p/c").id == "p/c"


# ------------------------------------------------------------------------------------- cost


def test_cost_breakdown_with_cache_and_reasoning(catalog: Catalog) -> None:
    c = catalog.cost("anthropic/claude-sonnet-4-5", input_tokens=10_000, output_tokens=2_000,
                     cached_tokens=4_000, cache_write_tokens=1_000, reasoning_tokens=500)
    assert isinstance(c, CostBreakdown)
    assert c.input_usd == pytest.approx(5_000 * 3.0 / 1e6)
    assert c.cached_input_usd == pytest.approx(4_000 * 0.3 / 1e6)
    assert c.cache_write_usd == pytest.approx(1_000 * 3.75 / 1e6)
    assert c.output_usd == pytest.approx(1_500 * 15.0 / 1e6)
    assert c.reasoning_usd == pytest.approx(500 * 15.0 / 1e6)  # no reasoning price: output price
    assert c.total_usd == pytest.approx(0.015 + 0.0012 + 0.00375 + 0.0225 + 0.0075)
    assert c.to_dict()["total_usd"] == c.total_usd


def test_cost_reasoning_price_and_fallbacks(catalog: Catalog) -> None:
    o3 = catalog.cost("openai/o3-mini", input_tokens=1_000_000, output_tokens=1_000_000, reasoning_tokens=400_000,
                      cached_tokens=200_000)
    assert o3.input_usd == pytest.approx(0.8 * 1.1)
    assert o3.cached_input_usd == pytest.approx(0.2 * 1.1)  # no cached price: input price
    assert o3.output_usd == pytest.approx(0.6 * 4.4)
    assert o3.reasoning_usd == pytest.approx(0.4 * 5.0)
    gpt = catalog.cost("openai/gpt-4o", 1_000_000, 0, cached_tokens=500_000, cache_write_tokens=100_000)
    assert gpt.cached_input_usd == pytest.approx(0.5 * 1.25)
    assert gpt.cache_write_usd == pytest.approx(0.1 * 2.5)  # no write price: input price
    assert gpt.input_usd == pytest.approx(0.4 * 2.5)


def test_cost_of_usage_matches_cost(catalog: Catalog) -> None:
    model = catalog.get("anthropic/claude-sonnet-4-5")
    usage = Usage(input_tokens=12_345, output_tokens=6_789, cache_read_tokens=2_000, cache_write_tokens=300,
                  reasoning_tokens=1_000)
    expected = catalog.cost(model, 12_345, 6_789, cached_tokens=2_000, reasoning_tokens=1_000,
                            cache_write_tokens=300).total_usd
    assert catalog.cost_of_usage(model, usage) == expected
    assert catalog.cost_of_usage(model, Usage()) == 0.0
    assert catalog.cost_of_usage("openai/gpt-4o", Usage(input_tokens=1_000_000)) == pytest.approx(2.5)


# ------------------------------------------------------------------------------------- limits


def test_check_token_limits(catalog: Catalog) -> None:
    ok = catalog.check_token_limits("openai/gpt-4o", 100_000, max_output_tokens=10_000)
    assert isinstance(ok, TokenLimitCheck)
    assert ok.fits and ok.context_window == 128_000
    assert ok.available_output == min(128_000 - 100_000 - 100, 16_384)
    assert ok.to_dict()["fits"] is True
    near = catalog.check_token_limits("openai/gpt-4o", 120_000)
    assert near.fits and near.available_output == 7_900
    combined = catalog.check_token_limits("openai/gpt-4o", 120_000, max_output_tokens=10_000)
    assert not combined.fits and "context window of 128,000" in combined.reason
    too_big = catalog.check_token_limits("openai/gpt-4o", 128_000)
    assert not too_big.fits and too_big.available_output == 0 and "input limit" in too_big.reason
    out_limit = catalog.check_token_limits("openai/gpt-4o", 1_000, max_output_tokens=20_000)
    assert not out_limit.fits and "output limit of 16,384" in out_limit.reason
    margin = catalog.check_token_limits("openai/gpt-4o", 127_950, safety_margin=0)
    assert margin.fits and margin.available_output == 50


# ------------------------------------------------------------------------------------- overlays


def test_overlay_merges_existing_entries(catalog: Catalog) -> None:
    merged = catalog.with_overlay([{"id": "openai/gpt-4o", "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
                                   {"id": "openai/gpt-4o-mini", "context_window": 32_000}])
    gpt = merged.get("openai/gpt-4o")
    assert gpt.pricing.input_per_mtok == 0.1 and gpt.pricing.cached_input_per_mtok == 1.25
    assert gpt.cost_tier == "lowest"  # re-derived from the new prices
    assert gpt.aliases == ("gpt-4o-latest",) and gpt.max_output_tokens == 16_384
    assert gpt.source == "overlay"
    mini = merged.get("openai/gpt-4o-mini")
    assert "long_context" not in mini.capabilities  # re-derived from the smaller window
    assert "tool_calling" in mini.capabilities
    # the original is unchanged, and the new catalog's version moved on
    assert catalog.get("openai/gpt-4o").pricing.input_per_mtok == 2.5
    assert merged.version > catalog.version


def test_overlay_merges_deprecation_and_adds_new_models(catalog: Catalog) -> None:
    merged = catalog.with_overlay([
        {"id": "openai/gpt-3.5-turbo-16k", "deprecation": {"note": "gone"}},
        {"id": "vllm/llama-3.1-8b", "context_window": 131_072, "source": "mine"},
    ], providers=[{"name": "anthropic", "profile": {"b": 3}}, {"name": "vllm", "protocol": "openai",
                                                              "base_url": "${VLLM_URL}", "requires_key": False}])
    dep = merged.get("openai/gpt-3.5-turbo-16k").deprecation
    assert dep.deprecated and dep.replacement == "openai/gpt-4o-mini" and dep.note == "gone"
    assert dep.date == dt.date(2024, 6, 1)
    new = merged.get("vllm/llama-3.1-8b")
    assert new.provider == "vllm" and new.source == "mine"
    assert merged.provider("anthropic").profile == {"a": 1, "b": 3}
    assert merged.provider("anthropic").protocol == "anthropic"
    assert merged.provider("vllm").base_url == "${VLLM_URL}"


def test_overlay_errors_name_the_key(catalog: Catalog) -> None:
    with pytest.raises(ConfigError) as info:
        catalog.with_overlay([{"id": "openai/gpt-4o"}, {"id": "new/model"}], file="x.yaml")
    assert info.value.key == "models[1].context_window"
    assert info.value.file == "x.yaml"
    assert "required field is missing" in str(info.value)
    with pytest.raises(ConfigError) as info2:
        catalog.with_overlay([{"id": "openai/gpt-4o", "pricing": {"input_per_mtok": -1}}])
    assert info2.value.key == "models[0].pricing.input_per_mtok"
    assert "greater than or equal to 0" in str(info2.value)
    with pytest.raises(ConfigError) as info3:
        catalog.with_overlay([{"id": "openai/gpt-4o", "capabilities": ["telepathy"]}])
    assert info3.value.key == "models[0].capabilities" and "telepathy" in str(info3.value)
    with pytest.raises(ConfigError) as info4:
        catalog.with_overlay([{"id": "openai/gpt-4o", "colour": "red"}])
    assert info4.value.key == "models[0].colour"
    with pytest.raises(ConfigError) as info5:
        catalog.with_overlay(providers=[{"name": "newco"}])
    assert info5.value.key == "providers.newco.protocol"
    with pytest.raises(ConfigError, match="needs an id"):
        catalog.with_overlay([{"context_window": 5}])


def test_overlay_errors_quote_no_provider_value_nor_an_internal_class(catalog: Catalog) -> None:
    with pytest.raises(ConfigError) as info:
        catalog.with_overlay(providers=[{"name": "openai", "base_url": 12345678901234}])
    assert info.value.key == "providers.openai.base_url" and "12345678901234" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        catalog.with_overlay([{"id": "openai/gpt-4o", "pricing": 5}])
    assert str(info.value) == "models[0].pricing: expected a mapping (got 5)"


def test_a_new_provider_that_is_incomplete_is_pointed_at_a_close_known_name(catalog: Catalog) -> None:
    with pytest.raises(ConfigError) as info:
        catalog.with_overlay(providers=[{"name": "opnai", "base_url": "http://127.0.0.1:9/v1"}], file="c.yaml")
    assert str(info.value) == ("c.yaml: providers.opnai.protocol: required field is missing; 'opnai' is not a known "
                               "provider (did you mean 'openai'?)")


# ------------------------------------------------------------------------------------- stats and scale


def test_stats(catalog: Catalog) -> None:
    stats = catalog.stats()
    assert stats["models"] == 8 and stats["providers"] == 3 and stats["deprecated"] == 1
    assert stats["by_provider"] == {"anthropic": 1, "azure": 1, "groq": 1, "openai": 5}
    assert stats["by_mode"] == {"chat": 7, "embedding": 1}
    assert stats["by_capability"]["tool_calling"] == 4
    assert stats["providers_without_spec"] == ["groq"]
    assert sum(stats["by_cost_tier"].values()) == 8


def test_large_catalog_indexes_every_model() -> None:
    specs = [spec(f"p{i % 7}/model-{i}", family=f"fam-{i % 50}") for i in range(5_000)]
    cat = Catalog(specs)
    assert len(cat) == 5_000
    assert len(cat.list(provider="p3")) == len([i for i in range(5_000) if i % 7 == 3])
    assert len(cat.families()) == 50
    assert cat.get("model-4999").id == "p1/model-4999"
