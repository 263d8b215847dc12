"""Seed 002's ModelFactory over the router: prefix resolution, the BaseChatModel contract, breakers, chains."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from modelplex.catalog import load_catalog
from modelplex.catalog.tokens import count_text
from modelplex.compat import set_default_router
from modelplex.compat.factory import ModelFactory, ModelUsage, Provider, get_chat_model, get_circuit_breaker
from modelplex.errors import BadRequestError, UnknownModelError
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.faults import Fault
from modelplex.testing.server import FakeProviderServer

pytestmark = pytest.mark.filterwarnings("ignore::modelplex.catalog.ModelDeprecatedWarning")

BUNDLED = load_catalog()
VENDORS = ("openai", "siliconflow", "openrouter")
MSGS = [{"role": "system", "content": "You are a financial analyst."},
        {"role": "user", "content": "Summarize the key risks for AAPL."}]


def key_of(provider: str) -> str:
    return f"sk-{provider}-test"


def config(base_url: str, **routing: Any) -> dict[str, Any]:
    providers: dict[str, Any] = {p: {"base_url": base_url + "/v1", "api_key": key_of(p)} for p in VENDORS}
    providers["azure"] = {"endpoint": base_url, "api_key": key_of("azure"), "api_version": "2024-10-21"}
    return {"providers": providers, "accounting": {"sink": "none"},
            "routing": {"retry": {"max_retries_per_target": 0}, **routing}}


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_factory(fake: FakeProviderServer, clock: FakeClock) -> AsyncIterator[Any]:
    routers: list[Router] = []

    def build(**routing: Any) -> ModelFactory:
        r = Router.from_config(config(fake.base_url, **routing), catalog=BUNDLED.copy(), env={}, clock=clock)
        routers.append(r)
        return ModelFactory(r)

    yield build
    set_default_router(None)
    for r in routers:
        await r.aclose()
        r.close()


def caller_key(captured: Any) -> str:
    headers = {k.lower(): v for k, v in captured.headers.items()}
    return headers.get("api-key") or headers["authorization"].removeprefix("Bearer ")


# ----------------------------------------------------------------------------- provider resolution

PREFIX_CASES = [
    ("deepseek-ai/DeepSeek-V3", "siliconflow", "siliconflow/deepseek-ai/DeepSeek-V3"),
    ("Qwen/Qwen2.5-72B-Instruct", "siliconflow", "siliconflow/Qwen/Qwen2.5-72B-Instruct"),
    ("01-ai/Yi-1.5-34B-Chat", "siliconflow", "siliconflow/01-ai/Yi-1.5-34B-Chat"),
    ("THUDM/glm-4-9b-chat", "siliconflow", "siliconflow/THUDM/glm-4-9b-chat"),
    ("gpt-4o", "openai", "openai/gpt-4o"),
    ("azure/gpt-4o", "azure", "azure/gpt-4o"),
    ("openai/gpt-4o", "openrouter", "openrouter/openai/gpt-4o"),
    ("anthropic/claude-sonnet-4.6", "openrouter", "openrouter/anthropic/claude-sonnet-4.6"),
    ("meta-llama/llama-3.1-405b-instruct", "openrouter", "openrouter/meta-llama/llama-3.1-405b-instruct"),
    ("deepseek/deepseek-chat", "openrouter", "openrouter/deepseek/deepseek-chat"),  # a vendor slug, not DeepSeek
]


@pytest.mark.parametrize(("model_id", "provider", "catalog_id"), PREFIX_CASES)
async def test_prefix_resolution_reaches_the_right_provider(make_factory, fake, model_id: str, provider: str,
                                                            catalog_id: str) -> None:
    factory = make_factory()
    assert factory.resolve_provider(model_id) == provider
    assert factory.resolve_model(model_id) == catalog_id
    model = factory.get_chat_model(model_id)
    assert model.model_id == model_id and model.provider == provider
    resp = await model.complete(MSGS)
    assert resp.provider == provider
    assert caller_key(fake.captured[-1]) == key_of(provider)
    if provider == "azure":
        assert fake.captured[-1].path == "/openai/deployments/gpt-4o/chat/completions"


def test_resolution_of_canonical_ids_and_overrides(make_factory) -> None:
    factory = make_factory()
    assert factory.resolve_provider("groq/openai/gpt-oss-120b") == "groq"  # already a catalog id
    assert factory.resolve_provider("openrouter/openai/gpt-4o") == Provider.OPENROUTER
    assert factory.resolve_provider("mistralai/unknown-model") == Provider.OPENROUTER  # the seed's default
    assert factory.resolve_model("openai/gpt-4o", provider="openrouter") == "openrouter/openai/gpt-4o"
    explicit = factory.get_chat_model("meta-llama/Meta-Llama-3.1-70B-Instruct", provider="siliconflow")
    assert explicit.provider == "siliconflow"
    with pytest.raises(UnknownModelError) as err:
        factory.get_chat_model("openai/gpt-4o", provider="siliconflow")
    assert "siliconflow/openai/gpt-4o" in str(err.value)
    assert factory.get_chat_model("gpt-4o") is factory.get_chat_model("gpt-4o")  # one instance per model


async def test_class_level_calls_use_the_default_router(make_factory, fake) -> None:
    factory = make_factory()
    set_default_router(factory.router)
    model = ModelFactory.get_chat_model("Qwen/Qwen2.5-72B-Instruct")
    assert model.provider == "siliconflow" and model.router is factory.router
    assert ModelFactory.resolve_provider("gpt-4o") == Provider.OPENAI
    assert get_chat_model("openai/gpt-4o", provider="openrouter").provider == "openrouter"  # provider passed on
    text = await model.generate([{"role": "user", "content": "分析阿里巴巴的主要风险因素。"}], temperature=0.3)
    assert text.startswith("This is a reply from Qwen/")
    assert fake.captured[-1].json["temperature"] == 0.3


# ----------------------------------------------------------------------------- the BaseChatModel contract


class RiskAnalysis(BaseModel):
    ticker: str
    top_risks: list[str]
    confidence: float


async def test_chat_model_contract(make_factory, fake) -> None:
    model = make_factory().get_chat_model("anthropic/claude-sonnet-4.6")
    spec = model.router.catalog.get("openrouter/anthropic/claude-sonnet-4.6")
    assert model.context_window == spec.context_window
    assert model.count_tokens("Write a detailed risk report.") == count_text("Write a detailed risk report.",
                                                                           spec).tokens > 0
    text = await model.generate(MSGS, max_tokens=300)
    assert text.startswith("This is a reply from anthropic/claude-sonnet-4.6")
    assert fake.captured[-1].json["max_tokens"] == 300 and fake.captured[-1].json["temperature"] == 0.0
    as_json = await model.generate(MSGS, response_format=RiskAnalysis)
    parsed = RiskAnalysis.model_validate_json(as_json)
    assert parsed.top_risks and parsed.confidence == 1.0
    assert fake.captured[-1].json["response_format"]["type"] == "json_schema"
    structured = await model.generate_structured(MSGS, RiskAnalysis)
    assert isinstance(structured, RiskAnalysis)
    pieces = [p async for p in model.stream([{"role": "user", "content": "Write a detailed risk report."}])]
    assert len(pieces) > 1 and "".join(pieces).startswith("This is a reply from anthropic/claude-sonnet-4.6")
    assert await model.health_check() is True
    resp = await model.complete(MSGS)
    usage = ModelUsage.from_response(resp)
    assert usage.model_id == "openrouter/anthropic/claude-sonnet-4.6" and usage.provider == "openrouter"
    assert usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert usage.cost_usd == pytest.approx(resp.cost_usd) and usage.cost_usd > 0


async def test_retired_seed_model_is_served_by_its_replacement(make_factory, fake) -> None:
    with pytest.warns(DeprecationWarning):
        model = make_factory().get_chat_model("deepseek-ai/DeepSeek-V3")
    assert model.catalog_id == "siliconflow/deepseek-ai/DeepSeek-V4-Flash"
    resp = await model.complete(MSGS)
    assert resp.model == model.catalog_id and fake.captured[-1].model == "deepseek-ai/DeepSeek-V4-Flash"


async def test_embedding_model(make_factory) -> None:
    factory = make_factory()
    emb = factory.get_embedding_model("openai/text-embedding-3-small")
    vectors = await emb.embed(["risk", "reward"])
    assert len(vectors) == 2 and len(vectors[0]) == emb.dimensions == 1536
    assert vectors[0] != vectors[1]
    assert len(await factory.get_embedding_model().embed_query("risk")) > 0  # the embedding task selects


# ----------------------------------------------------------------------------- fallbacks and breakers


async def test_provider_chain_used_when_the_primary_fails(make_factory, fake) -> None:
    factory = make_factory()
    ids = factory.configure_fallback("openrouter", ["deepseek/deepseek-chat"])
    assert ids == ["openrouter/deepseek/deepseek-chat"]
    assert factory.router.config.providers["openrouter"].fallbacks == ids
    fake.plan.fail_next(Fault("not_found"), times=-1, model="anthropic/claude-sonnet-4.6")
    resp = await factory.get_chat_model("anthropic/claude-sonnet-4.6").complete(MSGS)
    assert resp.model == "openrouter/deepseek/deepseek-chat" and resp.fallback_used
    assert [(a.target, a.outcome) for a in resp.attempts] == [
        ("openrouter/anthropic/claude-sonnet-4.6", "error"), ("openrouter/deepseek/deepseek-chat", "success")]


async def test_record_failure_trips_the_router_breaker(make_factory, fake, clock: FakeClock) -> None:
    factory = make_factory(cross_provider_chain=[{"provider": "siliconflow", "model": "deepseek-ai/DeepSeek-V4-Flash"}])
    breaker = get_circuit_breaker("openrouter", factory.router)
    # a typed 4xx is neutral for a breaker, as in the router
    assert await factory.record_failure("openai/gpt-4o", error=BadRequestError("bad", status_code=400))
    assert breaker.state == "closed"
    for _ in range(3):
        assert await factory.record_failure("openai/gpt-4o")  # untyped failures count, as in the seed
    assert breaker.state == "open" and await breaker.should_use_fallback()
    # the router skips the open provider and goes on to the cross-provider chain
    resp = await factory.get_chat_model("anthropic/claude-sonnet-4.6").complete(MSGS)
    assert resp.provider == "siliconflow"
    first = resp.attempts[0]
    assert (first.target, first.outcome) == ("openrouter/anthropic/claude-sonnet-4.6", "skipped_breaker")
    assert all(caller_key(c) != key_of("openrouter") for c in fake.captured)
    assert await factory.record_success("openai/gpt-4o") is False  # refused while open
    clock.advance(301)
    assert await factory.record_success("openai/gpt-4o") is True  # the half-open probe succeeds
    assert breaker.state == "closed" and not await breaker.should_use_fallback()
    resp = await factory.get_chat_model("anthropic/claude-sonnet-4.6").complete(MSGS)
    assert resp.provider == "openrouter" and not resp.fallback_used
    assert json.loads(fake.captured[-1].body)["model"] == "anthropic/claude-sonnet-4.6"
