"""Seed 001's registry interface over the catalog: metadata, validation, costs, migration, conversion."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelplex.catalog import ModelDeprecatedWarning, load_catalog
from modelplex.compat import registry as seed
from modelplex.compat.registry import LLMProvider, ModelFamily
from modelplex.errors import NoCandidatesError, UnknownModelError, UnsupportedParameterError
from modelplex.router import Router
from modelplex.testing.server import FakeProviderServer

BUNDLED = load_catalog()


@pytest.fixture
async def bundled_router() -> AsyncIterator[Router]:
    """The bundled catalog with no credentials at all: metadata needs none."""
    r = Router.from_config({"accounting": {"sink": "none"}}, catalog=BUNDLED.copy(), env={})
    yield r
    await r.aclose()


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


def cheap_models() -> list[dict[str, Any]]:
    tools = ["tool_calling", "streaming"]
    return [
        {"id": "alpha/no-tools", "context_window": 32_000, "max_output_tokens": 16_000, "capabilities": ["streaming"],
         "pricing": {"input_per_mtok": 0.01, "output_per_mtok": 0.02}},
        {"id": "alpha/short-output", "context_window": 32_000, "max_output_tokens": 4_096, "capabilities": tools,
         "pricing": {"input_per_mtok": 0.02, "output_per_mtok": 0.04}},
        {"id": "alpha/retired", "context_window": 32_000, "max_output_tokens": 16_000, "capabilities": tools,
         "pricing": {"input_per_mtok": 0.01, "output_per_mtok": 0.01},
         "deprecation": {"deprecated": True, "replacement": "beta/json"}},
        {"id": "alpha/mid", "context_window": 32_000, "max_output_tokens": 16_000, "capabilities": tools,
         "pricing": {"input_per_mtok": 0.3, "output_per_mtok": 0.6}},
        {"id": "beta/json", "context_window": 32_000, "max_output_tokens": 16_000,
         "capabilities": [*tools, "json_mode"], "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        {"id": "gamma/unconfigured", "context_window": 32_000, "max_output_tokens": 16_000, "capabilities": tools,
         "pricing": {"input_per_mtok": 0.001, "output_per_mtok": 0.001}},
    ]


@pytest.fixture
async def priced_router(fake: FakeProviderServer) -> AsyncIterator[Router]:
    cfg = {"providers": {p: {"protocol": "openai", "base_url": fake.base_url + "/v1", "api_key": f"sk-{p}"}
                         for p in ("alpha", "beta")},
           "models": cheap_models(), "accounting": {"sink": "none"}}
    cfg["providers"]["gamma"] = {"protocol": "openai", "base_url": fake.base_url + "/v1"}  # no key: disabled
    r = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={})
    yield r
    await r.aclose()


# ----------------------------------------------------------------------------- metadata


def test_metadata_has_the_seed_shape(bundled_router: Router) -> None:
    md = seed.get_model_metadata("gpt-4o", bundled_router)  # the seed's registry is Azure's first
    assert md is not None and md.id == "azure/gpt-4o" and md["provider"] == "azure"
    assert md.max_output_tokens == 16_384 and md.max_context_length == 128_000
    assert md.supports_vision and md.supports_function_calling and md.supports_json_mode
    assert md.cost_per_1k_input_tokens == pytest.approx(0.0025)
    assert md.cost_per_1k_output_tokens == pytest.approx(0.01)
    assert md.parameter_mappings["max_tokens"] == "max_tokens"
    assert md.api_requirements["uses_deployment_name"] is True
    assert md.is_deprecated is False and md.replacement_model is None
    gemini = seed.get_model_metadata("gemini-1.5-pro", bundled_router)
    assert gemini is not None and gemini.parameter_mappings["max_tokens"] == "max_output_tokens"
    assert gemini.parameter_mappings["stop"] == "stop_sequences"
    old = seed.get_model_metadata("gpt-3.5-turbo-16k", bundled_router)
    assert old is not None and old.is_deprecated and old.replacement_model == "azure/gpt-4.1-mini"
    assert old.deprecation_date == "2025-04-30"
    assert seed.get_model_metadata("gpt-0-imaginary", bundled_router) is None
    with pytest.raises(AttributeError):
        _ = md.no_such_field


def test_registry_lookups_by_family_provider_and_parameter(bundled_router: Router) -> None:
    reg = seed.get_model_registry(bundled_router)
    assert reg.get_family_models(ModelFamily.AZURE_GPT_4O) == ["azure/gpt-4o", "azure/gpt-4o-mini"]
    assert reg.get_family_models(ModelFamily.AZURE_GPT_4_1) == ["azure/gpt-4.1"]
    assert reg.get_family_models(ModelFamily.AZURE_GPT_4_1_MINI) == ["azure/gpt-4.1-mini"]
    assert "gemini/gemini-1.5-pro" in reg.get_provider_models(LLMProvider.GEMINI)
    assert all(m.startswith("bedrock/") for m in reg.get_provider_models(LLMProvider.BEDROCK))
    assert reg.get_parameter_mapping("gemini-1.5-pro", "max_tokens") == "max_output_tokens"
    assert reg.get_parameter_mapping("bedrock/anthropic.claude-sonnet-4-6", "frequency_penalty") is None
    assert reg.is_model_supported("gpt-4o") and not reg.is_model_supported("gpt-0-imaginary")


# ----------------------------------------------------------------------------- validation, cost, migration


def test_validate_model_parameters_speaks_the_seed(bundled_router: Router) -> None:
    issues = seed.validate_model_parameters("gpt-4o", {"temperature": 0.7, "max_tokens": 20_000,
                                                       "frequency_penalty": 0.5}, bundled_router)
    assert issues == ["max_tokens 20000 exceeds model limit 16384"]
    assert seed.validate_model_parameters("gpt-4o", {"temperature": 0.7, "max_tokens": 4_000}, bundled_router) == []
    assert seed.validate_model_parameters("bedrock/anthropic.claude-sonnet-4-6", {"frequency_penalty": 0.5},
                                          bundled_router) == [
        "Model bedrock/anthropic.claude-sonnet-4-6 does not support frequency_penalty parameter"]
    assert seed.validate_model_parameters("gpt-4o", {"temperature": 3.5}, bundled_router) == [
        "temperature must be a number in [0, 2], got 3.5"]
    assert seed.validate_model_parameters("gpt-0-imaginary", {}, bundled_router) == [
        "Model gpt-0-imaginary not found in registry"]


def test_cost_and_migration(bundled_router: Router) -> None:
    assert seed.calculate_request_cost("gpt-4o", 1_000, 500, bundled_router) == pytest.approx(
        1_000 * 2.5 / 1e6 + 500 * 10.0 / 1e6)
    with pytest.raises(UnknownModelError):
        seed.calculate_request_cost("gpt-0-imaginary", 1, 1, bundled_router)
    with pytest.warns(ModelDeprecatedWarning):
        assert seed.migrate_to_supported_model("gpt-3.5-turbo-16k", bundled_router) == "azure/gpt-4.1-mini"
    assert seed.migrate_to_supported_model("gpt-4o", bundled_router) == "azure/gpt-4o"


def test_register_model_in_the_seed_shape(bundled_router: Router) -> None:
    reg = seed.get_model_registry(bundled_router)
    model_id = reg.register_model({
        "model_name": "new-model-name", "provider": LLMProvider.AZURE_OPENAI, "model_family": "gpt-4o",
        "display_name": "New Model", "supported_input_types": ["text"], "supports_streaming": True,
        "supports_function_calling": True, "max_context_length": 128_000, "max_output_tokens": 4_096,
        "parameter_mappings": {"max_tokens": "max_tokens"}, "default_parameters": {"temperature": 0.7},
        "cost_per_1k_input_tokens": 0.01, "cost_per_1k_output_tokens": 0.03})
    assert model_id == "azure/new-model-name"
    md = reg.get_model("new-model-name")
    assert md is not None and md.default_parameters == {"temperature": 0.7}
    assert reg.get_family_models("gpt-4o") == ["azure/gpt-4o", "azure/gpt-4o-mini", "azure/new-model-name",
                                               "openai/gpt-4o", "openai/gpt-4o-mini",
                                               "openrouter/openai/gpt-4o", "openrouter/openai/gpt-4o-mini"]
    assert reg.validate_parameters_for_model("new-model-name", {"max_tokens": 5_000}) == [
        "max_tokens 5000 exceeds model limit 4096"]
    assert seed.calculate_request_cost("new-model-name", 1_000, 1_000, bundled_router) == pytest.approx(0.04)


# ----------------------------------------------------------------------------- selection


def test_select_cost_effective_model(priced_router: Router) -> None:
    # cheapest live model with tool calling and >= 8,000 output tokens, among providers with keys
    assert seed.select_cost_effective_model("complex_task", 8_000, priced_router) == "alpha/mid"
    assert seed.select_cost_effective_model("complex_task", 4_000, priced_router) == "alpha/short-output"
    # a known task adds its requirements: job_parsing answers in JSON
    assert seed.select_cost_effective_model("job_parsing", 8_000, priced_router) == "beta/json"
    with pytest.raises(NoCandidatesError):
        seed.select_cost_effective_model("complex_task", 100_000, priced_router)


# ----------------------------------------------------------------------------- conversion


def test_convert_request_for_model_builds_provider_bodies(bundled_router: Router) -> None:
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    params = {"max_tokens": 100, "temperature": 0.2, "stop": ["END"]}
    gemini = seed.convert_request_for_model(msgs, "gemini-1.5-pro", params, bundled_router)
    assert gemini["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert gemini["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert gemini["generationConfig"]["maxOutputTokens"] == 100
    assert gemini["generationConfig"]["stopSequences"] == ["END"]
    claude = seed.convert_request_for_model(msgs, "anthropic/claude-sonnet-4-6", params, bundled_router)
    assert claude["system"] == "You are terse." and claude["stop_sequences"] == ["END"]
    assert claude["max_tokens"] == 100 and claude["messages"] == [{"role": "user", "content": "Hi"}]
    bedrock = seed.convert_request_for_model(msgs, "bedrock/anthropic.claude-sonnet-4-6", params, bundled_router)
    assert bedrock["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.2, "stopSequences": ["END"]}
    azure = seed.convert_request_for_model(msgs, "gpt-4o", params, bundled_router)
    assert azure == {"messages": msgs, "max_tokens": 100, "temperature": 0.2, "stop": ["END"]}  # deployment names it
    o1 = seed.convert_request_for_model(msgs, "openai/o1", {"max_tokens": 100}, bundled_router)
    assert o1["model"] == "o1" and o1["max_completion_tokens"] == 100 and "max_tokens" not in o1
    for body in (gemini, claude, bedrock, azure, o1):
        assert "not-sent" not in json.dumps(body)


def test_convert_request_refuses_unsupported_when_configured() -> None:
    r = Router.from_config({"accounting": {"sink": "none"}, "routing": {"drop_unsupported_params": False}},
                           catalog=BUNDLED.copy(), env={})
    try:
        with pytest.raises(UnsupportedParameterError):
            seed.convert_request_for_model([{"role": "user", "content": "Hi"}], "anthropic/claude-sonnet-4-6",
                                           {"frequency_penalty": 0.5}, r)
    finally:
        r.close()
