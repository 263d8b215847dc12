"""Seed 000's interface over the router: selection, fallback paths, tokens, state tracking, providers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelplex.catalog import load_catalog
from modelplex.catalog.tokens import count_text
from modelplex.compat import resume_lm
from modelplex.compat.resume_lm import ModelCategory, ModelRegistry, ModelTrackingMixin
from modelplex.errors import ConfigError, NoCandidatesError, UnknownModelError
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.faults import Fault
from modelplex.testing.server import FakeProviderServer

CAPS = ["json_mode", "streaming", "system_messages"]


def seed_models() -> list[dict[str, Any]]:
    """The seed's registry, as live catalog entries served by the fake."""
    return [
        {"id": "groq/llama-3.3-70b-versatile", "context_window": 128_000, "max_output_tokens": 32_768,
         "capabilities": [*CAPS, "tool_calling"], "category": "comprehensive", "quality": 62,
         "pricing": {"input_per_mtok": 0.59, "output_per_mtok": 0.79}},
        {"id": "groq/llama-3.1-8b-instant", "context_window": 128_000, "max_output_tokens": 8_192,
         "capabilities": CAPS, "category": "basic", "quality": 42,
         "pricing": {"input_per_mtok": 0.05, "output_per_mtok": 0.08}},
        {"id": "groq/gemma2-9b-it", "context_window": 8_192, "max_output_tokens": 8_192, "capabilities": CAPS,
         "category": "reasoning", "quality": 40, "pricing": {"input_per_mtok": 0.2, "output_per_mtok": 0.2}},
        {"id": "groq/llama3-70b-8192", "context_window": 8_192, "max_output_tokens": 8_192, "capabilities": CAPS,
         "category": "reasoning", "quality": 52, "pricing": {"input_per_mtok": 0.59, "output_per_mtok": 0.79}},
        {"id": "openrouter/anthropic/claude-3.5-sonnet", "context_window": 200_000, "max_output_tokens": 8_192,
         "capabilities": [*CAPS, "tool_calling", "structured_output"], "category": "comprehensive", "quality": 88,
         "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "openrouter/meta-llama/llama-3-70b-instruct", "context_window": 128_000, "max_output_tokens": 16_384,
         "capabilities": CAPS, "category": "reasoning", "quality": 55,
         "pricing": {"input_per_mtok": 0.5, "output_per_mtok": 0.7}},
    ]


def config(base_url: str, *, openrouter_key: bool = True) -> dict[str, Any]:
    providers: dict[str, Any] = {
        "groq": {"protocol": "openai", "base_url": base_url + "/v1", "api_key": "sk-groq-test"},
        "openrouter": {"protocol": "openai", "base_url": base_url + "/v1"},
    }
    if openrouter_key:
        providers["openrouter"]["api_key"] = "sk-openrouter-test"
    return {"providers": providers, "models": seed_models(), "accounting": {"sink": "none"},
            "routing": {"retry": {"max_retries_per_target": 0}}}


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture
async def make_registry(fake: FakeProviderServer) -> AsyncIterator[Any]:
    routers: list[Router] = []

    def build(env: dict[str, str] | None = None, **kw: Any) -> ModelRegistry:
        r = Router.from_config(config(fake.base_url, **kw), catalog=load_catalog(bundled=False), env=env or {},
                               clock=FakeClock(wall_start=1_700_000_000.0))
        routers.append(r)
        return ModelRegistry(r)

    yield build
    for r in routers:
        await r.aclose()
        r.close()


# ----------------------------------------------------------------------------- selection


def test_select_model_follows_economy_mode_and_filters(make_registry) -> None:
    reg = make_registry()
    base = {"provider": "groq", "min_context_window": 100_000}
    assert reg.select_model({**base, "economy_mode": True}) == "groq/llama-3.1-8b-instant"
    # economy off (or absent): the most capable, as the seed's highest-cost-first ordering meant
    assert reg.select_model({**base, "economy_mode": False}) == "groq/llama-3.3-70b-versatile"
    assert reg.select_model(base) == "groq/llama-3.3-70b-versatile"
    # category and the seed's capability words
    assert reg.select_model({"primary_category": ModelCategory.REASONING, "economy_mode": True,
                             "required_capabilities": ["basic_reasoning", "instruction_following"]}) \
        == "groq/gemma2-9b-it"
    assert reg.select_model({"required_capabilities": ["tool_use", "long_context", "formatting"],
                             "requires_tool_calling": True, "response_format": "json",
                             "primary_category": ModelCategory.COMPREHENSIVE}) \
        == "openrouter/anthropic/claude-3.5-sonnet"
    assert reg.select_model({"min_output_tokens": 16_000, "economy_mode": True, "response_format": "markdown"}) \
        == "openrouter/meta-llama/llama-3-70b-instruct"


def test_select_model_has_no_silent_default(make_registry) -> None:
    reg = make_registry()
    with pytest.raises(NoCandidatesError) as err:
        reg.select_model({"provider": "groq", "min_context_window": 1_000_000})
    assert "min_context" in str(err.value)
    with pytest.raises(ConfigError):
        reg.select_model({"required_capabilities": ["telepathy"]})
    with pytest.raises(NoCandidatesError):
        resume_lm.select_model({"provider": "anthropic"}, reg)


# ----------------------------------------------------------------------------- chat models and fallbacks


async def test_get_model_with_fallbacks_uses_the_configured_path(make_registry, fake) -> None:
    reg = make_registry()
    reg.configure_providers({"groq": {"enabled": True, "priority": 1, "models": {"fallbacks": {
        "llama-3.3-70b-versatile": ["llama3-70b-8192", "llama-3.1-8b-instant"]}}}})
    assert reg.fallback_paths["groq/llama-3.3-70b-versatile"] == ["groq/llama3-70b-8192",
                                                                  "groq/llama-3.1-8b-instant"]
    fake.plan.fail_next(Fault("not_found"), times=-1, model="llama-3.3-70b-versatile")
    model = reg.get_model_with_fallbacks("groq/llama-3.3-70b-versatile", temperature=0.2)
    assert model is reg.get_model("llama-3.3-70b-versatile", 0.2)  # cached per key and temperature
    msg = await model.ainvoke("Parse this job description.")
    meta = msg.response_metadata
    assert meta["model"] == "groq/llama3-70b-8192"
    assert meta["fallback_used"] is True
    assert [(a["target"], a["outcome"]) for a in meta["attempts"]] == [
        ("groq/llama-3.3-70b-versatile", "error"), ("groq/llama3-70b-8192", "success")]
    assert [c.model for c in fake.captured] == ["llama-3.3-70b-versatile", "llama3-70b-8192"]
    assert fake.captured[-1].json["temperature"] == 0.2


def test_get_model_sync_invoke_and_unknown_key(make_registry) -> None:
    reg = make_registry()
    msg = reg.get_model("llama-3.1-8b-instant").invoke("hello")  # a bare key is a Groq model, as in the seed
    assert msg.response_metadata["model"] == "groq/llama-3.1-8b-instant"
    assert msg.content.startswith("This is a reply from llama-3.1-8b-instant")
    with pytest.raises(UnknownModelError):
        reg.get_model("groq/llama-9-mega")


async def test_priority_orders_fallback_paths_by_provider(make_registry, fake) -> None:
    reg = make_registry()
    path = ["groq/llama-3.3-70b-versatile", "openrouter/meta-llama/llama-3-70b-instruct"]
    reg.configure_providers({
        "groq": {"priority": 2},
        "openrouter": {"priority": 1, "models": {"fallbacks": {"anthropic/claude-3.5-sonnet": path}}},
    })
    assert reg.fallback_paths["openrouter/anthropic/claude-3.5-sonnet"] == [
        "openrouter/meta-llama/llama-3-70b-instruct", "groq/llama-3.3-70b-versatile"]
    fake.plan.fail_next(Fault("not_found"), times=-1, model="anthropic/claude-3.5-sonnet")
    fake.plan.fail_next(Fault("not_found"), times=-1, model="meta-llama/llama-3-70b-instruct")
    msg = await reg.get_model_with_fallbacks("openrouter/anthropic/claude-3.5-sonnet").ainvoke("hi")
    assert msg.response_metadata["model"] == "groq/llama-3.3-70b-versatile"
    assert [c.model for c in fake.captured] == ["anthropic/claude-3.5-sonnet", "meta-llama/llama-3-70b-instruct",
                                                "llama-3.3-70b-versatile"]


# ----------------------------------------------------------------------------- provider configuration


def test_configure_providers_enables_disables_and_prefers(make_registry) -> None:
    reg = make_registry(env={"MY_OPENROUTER_KEY": "sk-from-env"}, openrouter_key=False)
    assert "openrouter" not in reg.router.enabled_providers()  # OPENROUTER_API_KEY is not set
    lines = reg.configure_providers({"openrouter": {"api_key_env": "MY_OPENROUTER_KEY", "priority": 2}})
    assert "openrouter" in reg.router.enabled_providers()
    assert lines["openrouter"].startswith("openrouter: enabled")
    # a provider's preferred model for a category wins when it meets the requirements
    assert reg.select_model({"primary_category": "comprehensive"}) == "openrouter/anthropic/claude-3.5-sonnet"
    reg.configure_providers({"groq": {"priority": 1, "models": {"preferred": {
        ModelCategory.COMPREHENSIVE: "llama-3.3-70b-versatile"}}}})
    assert reg.router.config.providers["groq"].preferred_models == {"comprehensive": "groq/llama-3.3-70b-versatile"}
    assert reg.select_model({"primary_category": "comprehensive"}) == "groq/llama-3.3-70b-versatile"
    assert reg.select_model({"primary_category": "comprehensive", "min_context_window": 150_000}) \
        == "openrouter/anthropic/claude-3.5-sonnet"
    # disabling a provider removes its models from selection
    lines = reg.configure_providers({"groq": {"enabled": False}})
    assert "disabled" in lines["groq"]
    with pytest.raises(NoCandidatesError):
        reg.select_model({"provider": "groq"})
    assert "groq/llama-3.1-8b-instant" not in reg.models
    assert reg.models["openrouter/anthropic/claude-3.5-sonnet"]["tool_calling"] is True
    with pytest.raises(ConfigError):
        reg.configure_providers({"nowhere": {"enabled": True}})


# ----------------------------------------------------------------------------- tokens


def test_token_estimates_and_limits(make_registry) -> None:
    reg = make_registry()
    text = "Senior data engineer, Spark and Kafka, five years of experience. " * 20
    assert resume_lm.estimate_token_count(text, "llama") == count_text(text, "llama").tokens > 0
    assert resume_lm.estimate_token_count("") == 0
    job = {"title": "Engineer", "skills": ["python", "sql"]}
    compact = json.dumps(job, separators=(",", ":"))
    assert resume_lm.estimate_context_size(job, "llama", compact=True) == count_text(compact, "llama").tokens
    combined = resume_lm.estimate_combined_size(text, job, model_type="llama", compact=True)
    assert combined == count_text(text, "llama").tokens + count_text(compact, "llama").tokens + 250
    texts = ["first document", "second document"]
    assert resume_lm.estimate_combined_size(texts, model="claude", include_prompt_overhead=False) == sum(
        count_text(t, "claude").tokens for t in texts)
    # limits keep the router's 100-token safety margin free
    assert resume_lm.check_token_limits("groq/llama3-70b-8192", 7_000, 500, reg) is True
    assert resume_lm.check_token_limits("groq/llama3-70b-8192", 8_000, 100, reg) is False
    assert resume_lm.check_token_limits("llama-3.1-8b-instant", 1_000, 9_000, reg) is False  # output cap 8,192
    assert resume_lm.check_token_limits("groq/llama-3.1-8b-instant", text, 1_000, reg) is True
    with pytest.raises(UnknownModelError):
        resume_lm.check_token_limits("groq/unknown-model", 10, 10, reg)


# ----------------------------------------------------------------------------- LangGraph state


async def test_record_and_analyze_model_usage(make_registry) -> None:
    reg = make_registry()
    state: dict[str, Any] = {"job_description": "..."}
    out = ModelTrackingMixin.record_model_usage(state, "input_processing", "groq/llama-3.1-8b-instant", reg)
    assert out is state
    entry = state["model_usage"]["input_processing"][0]
    assert entry["model_key"] == "groq/llama-3.1-8b-instant" and entry["provider"] == "groq"
    assert entry["context_window"] == 128_000 and entry["primary_category"] == "basic"
    assert entry["timestamp"] == "2023-11-14T22:13:20+00:00"  # the router's (fake) wall clock
    msg = await reg.get_model("openrouter/anthropic/claude-3.5-sonnet").ainvoke("Draft the summary section.")
    resume_lm.record_model_usage(state, "draft_section_summary", msg, reg)
    drafted = state["model_usage"]["draft_section_summary"][0]
    assert drafted["model_key"] == "openrouter/anthropic/claude-3.5-sonnet"
    assert drafted["cost_usd"] == pytest.approx(msg.response_metadata["cost_usd"]) and drafted["cost_usd"] > 0
    assert drafted["input_tokens"] == msg.usage_metadata["input_tokens"]
    resume_lm.record_model_usage(state, "input_processing", "llama-3.1-8b-instant", reg)
    stats = resume_lm.analyze_model_usage(state)
    assert stats["models_used"] == ["groq/llama-3.1-8b-instant", "llama-3.1-8b-instant",
                                    "openrouter/anthropic/claude-3.5-sonnet"]
    assert stats["providers_used"] == ["groq", "openrouter"]
    assert stats["provider_frequency"] == {"groq": 2, "openrouter": 1}
    assert stats["phase_model_mapping"]["input_processing"] == ["groq/llama-3.1-8b-instant", "llama-3.1-8b-instant"]
    assert stats["total_cost_usd"] == pytest.approx(drafted["cost_usd"])
    assert resume_lm.analyze_model_usage({}) == {"error": "No model usage data found"}
    assert reg.get_model_info("groq/nope") == {"model_key": "groq/nope", "error": "Model not found in registry"}


async def test_warm_up_models_opens_the_providers(make_registry, fake) -> None:
    reg = make_registry()
    result = await resume_lm.awarm_up_models(["groq/llama-3.1-8b-instant", "anthropic/claude-3.5-sonnet"], reg)
    assert result == {"groq": True, "openrouter": True}
    assert sorted(c.path for c in fake.captured) == ["/v1/models", "/v1/models"]
