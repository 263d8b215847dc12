"""Seed 003's task routing over the router: execute_*_task, LLMResponse, priority lists, overrides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelplex.catalog import load_catalog
from modelplex.compat.bizpilot import (
    LLMResponse,
    TaskExecutionError,
    execute_fast_task,
    execute_reasoning_task,
    execute_summarization_task,
    execute_task,
    registry_to_config,
)
from modelplex.errors import AllAttemptsFailedError, UnknownTaskError
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.faults import Fault
from modelplex.testing.server import FakeProviderServer

MODEL_REGISTRY = {
    "fast": ["llama-3.1-8b-instant"],
    "reasoning": ["llama-3.3-70b-versatile", "llama-3.1-70b-versatile", "llama-3.1-8b-instant"],
    "summarization": ["llama-3.1-8b-instant", "mixtral-8x7b-32768"],
    "fallback": ["llama-3.1-8b-instant"],
}
MSGS = [{"role": "user", "content": "Analyze my sales trends"}]


def groq_models() -> list[dict[str, Any]]:
    caps = ["tool_calling", "json_mode", "streaming", "system_messages"]

    def model(name: str, window: int, quality: int, price: float) -> dict[str, Any]:
        return {"id": f"groq/{name}", "context_window": window, "max_output_tokens": 8_192, "capabilities": caps,
                "quality": quality, "pricing": {"input_per_mtok": price, "output_per_mtok": price}}

    return [model("llama-3.1-8b-instant", 128_000, 42, 0.05), model("llama-3.3-70b-versatile", 128_000, 62, 0.6),
            model("llama-3.1-70b-versatile", 128_000, 58, 0.6), model("mixtral-8x7b-32768", 32_768, 42, 0.24)]


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture
async def make_router(fake: FakeProviderServer) -> AsyncIterator[Any]:
    routers: list[Router] = []

    def build(env: dict[str, str] | None = None, registry: bool = True) -> Router:
        cfg: dict[str, Any] = {
            "providers": {"groq": {"protocol": "openai", "base_url": fake.base_url + "/v1", "api_key": "sk-groq"}},
            "models": groq_models(), "accounting": {"sink": "none"},
            "routing": {"retry": {"max_retries_per_target": 0}},
        }
        if registry:
            seed = registry_to_config(MODEL_REGISTRY)
            cfg["tasks"] = seed["tasks"]
            cfg["routing"].update(seed["routing"])
        r = Router.from_config(cfg, catalog=load_catalog(bundled=False), env=env or {}, clock=FakeClock())
        routers.append(r)
        return r

    yield build
    for r in routers:
        await r.aclose()


def test_registry_to_config_maps_the_seed_registry() -> None:
    assert registry_to_config(MODEL_REGISTRY) == {
        "tasks": {
            "fast": {"models": ["groq/llama-3.1-8b-instant"]},
            "reasoning": {"models": ["groq/llama-3.3-70b-versatile", "groq/llama-3.1-70b-versatile",
                                     "groq/llama-3.1-8b-instant"]},
            "summarization": {"models": ["groq/llama-3.1-8b-instant", "groq/mixtral-8x7b-32768"]},
            "fallback": {"models": ["groq/llama-3.1-8b-instant"]},
        },
        "routing": {"universal_fallback": ["groq/llama-3.1-8b-instant"]},
    }
    assert registry_to_config({"fast": ["groq/openai/gpt-oss-20b", "openai/gpt-oss-20b"]})["tasks"]["fast"] == {
        "models": ["groq/openai/gpt-oss-20b", "groq/openai/gpt-oss-20b"]}


def test_registry_to_config_keeps_other_providers_catalog_ids() -> None:
    """Seed names are the provider's (Groq's own names may hold a vendor slash); a name that is already
    another provider's catalog id is kept, as the docstring says, instead of becoming groq/anthropic/..."""
    models = registry_to_config({"reasoning": [
        "llama-3.1-8b-instant",          # bare: a Groq name
        "openai/gpt-oss-120b",           # a Groq name with a vendor slash, not OpenAI's
        "groq/openai/gpt-oss-20b",       # already a catalog id
        "anthropic/claude-sonnet-4-6",   # another provider's catalog id
        "qwen/qwen3-32b",                # unknown to the catalog: still a Groq name
        "groq/my-overlay-model",         # unknown, already prefixed
    ]})["tasks"]["reasoning"]["models"]
    assert models == ["groq/llama-3.1-8b-instant", "groq/openai/gpt-oss-120b", "groq/openai/gpt-oss-20b",
                      "anthropic/claude-sonnet-4-6", "groq/qwen/qwen3-32b", "groq/my-overlay-model"]
    # the catalog decides: with one where anthropic's model is unknown, the name is a Groq name again
    assert registry_to_config({"fast": ["anthropic/claude-sonnet-4-6"]}, catalog=load_catalog(bundled=False)) \
        == {"tasks": {"fast": {"models": ["groq/anthropic/claude-sonnet-4-6"]}}}
    # every name it gives is an exact catalog id (groq/anthropic/claude-sonnet-4-6 was not one)
    cfg = registry_to_config({"reasoning": ["openai/gpt-oss-120b", "anthropic/claude-sonnet-4-6"],
                              "fallback": ["openai/gpt-oss-20b"]})
    catalog = load_catalog()
    for name in [*cfg["tasks"]["reasoning"]["models"], *cfg["routing"]["universal_fallback"]]:
        assert catalog.get(name).id == name
    assert cfg["routing"] == {"universal_fallback": ["groq/openai/gpt-oss-20b"]}


async def test_fast_task_returns_the_seed_response(make_router, fake) -> None:
    r = make_router()
    resp = await execute_fast_task([{"role": "user", "content": "What is BizPilot?"}], max_tokens=400,
                                   temperature=0.7, router=r)
    assert isinstance(resp, LLMResponse)
    assert resp.content.startswith("This is a reply from llama-3.1-8b-instant")
    assert resp.model_used == "groq/llama-3.1-8b-instant" and resp.finish_reason == "stop"
    assert set(resp.usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert resp.usage["total_tokens"] == resp.usage["prompt_tokens"] + resp.usage["completion_tokens"] > 0
    assert resp.task == "fast" and resp.provider == "groq" and resp.cost_usd > 0 and not resp.fallback_used
    sent = fake.captured[-1].json
    assert sent["max_tokens"] == 400 and sent["temperature"] == 0.7


async def test_reasoning_falls_over_in_priority_order(make_router, fake) -> None:
    r = make_router()
    fake.plan.fail_next(Fault("not_found"), times=-1, model="llama-3.3-70b-versatile")  # deprecated upstream
    resp = await execute_reasoning_task(MSGS, max_tokens=2048, router=r)
    assert resp.model_used == "groq/llama-3.1-70b-versatile" and resp.fallback_used
    assert [(a["target"], a["outcome"], a["status_code"]) for a in resp.attempts] == [
        ("groq/llama-3.3-70b-versatile", "error", 404), ("groq/llama-3.1-70b-versatile", "success", None)]


async def test_all_models_failing_raises_a_runtime_error_with_diagnostics(make_router, fake) -> None:
    r = make_router()
    fake.plan.fail_next(Fault("not_found"), times=-1)
    with pytest.raises(TaskExecutionError) as err:
        await execute_reasoning_task(MSGS, router=r)
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, AllAttemptsFailedError)
    assert [a.target for a in err.value.attempts] == ["groq/llama-3.3-70b-versatile",
                                                      "groq/llama-3.1-70b-versatile", "groq/llama-3.1-8b-instant"]
    assert str(err.value).startswith("task_type=reasoning: all 3 attempt(s) failed")
    with pytest.raises(UnknownTaskError):
        await execute_task("translation", MSGS, router=r)


async def test_environment_overrides(make_router) -> None:
    r = make_router(env={"FORCE_MODEL": "groq/mixtral-8x7b-32768"})
    assert (await execute_fast_task(MSGS, router=r)).model_used == "groq/mixtral-8x7b-32768"
    r2 = make_router(env={"DEFAULT_FAST_MODEL": "groq/llama-3.3-70b-versatile"})
    assert (await execute_fast_task(MSGS, router=r2)).model_used == "groq/llama-3.3-70b-versatile"
    assert (await execute_summarization_task(MSGS, router=r2)).model_used == "groq/llama-3.1-8b-instant"


async def test_built_in_tasks_need_no_registry(make_router) -> None:
    r = make_router(registry=False)
    resp = await execute_summarization_task([{"role": "user", "content": "Summarize this data..."}],
                                            max_tokens=1000, temperature=0.5, router=r)
    assert resp.task == "summarization"
    assert r.catalog.get(resp.model_used).context_window >= 100_000  # the built-in task's requirement


def test_llm_response_keeps_the_seed_constructor() -> None:
    mock = LLMResponse(content="Test response", model_used="llama-3.1-8b-instant", finish_reason="stop",
                       usage={"total_tokens": 100})
    assert mock.usage["total_tokens"] == 100 and mock.cost_usd == 0.0 and mock.attempts == []
