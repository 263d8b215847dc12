"""complete, stream and embed through the Router for every protocol, with usage and cost, against the
fake providers, using the bundled catalog's real model ids."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from modelplex.router import Router
from modelplex.testing.server import FakeProviderServer

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three rivers."}]

CHAT = {
    "openai": "openai/gpt-6-luna",
    "azure": "azure/gpt-4.1",
    "anthropic": "anthropic/claude-sonnet-4-6",
    "gemini": "gemini/gemini-3.5-flash-lite",
    "bedrock": "bedrock/anthropic.claude-sonnet-4-6",
    "groq": "groq/openai/gpt-oss-20b",
}
EMBED = {
    "openai": "openai/text-embedding-3-small",
    "azure": "azure/text-embedding-3-small",
    "gemini": "gemini/gemini-embedding-001",
    "bedrock": "bedrock/amazon.titan-embed-text-v2:0",
}


@pytest.fixture
async def all_protocols() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def router(all_protocols: FakeProviderServer) -> AsyncIterator[Router]:
    url = all_protocols.base_url
    cfg = {
        "providers": {
            "openai": {"api_key": "sk-e2e", "base_url": url + "/v1"},
            "groq": {"api_key": "gsk-e2e", "base_url": url + "/v1"},
            "azure": {"api_key": "az-e2e", "endpoint": url, "deployments": {"gpt-4.1": "prod-41"}},
            "anthropic": {"api_key": "sk-ant-e2e", "base_url": url},
            "gemini": {"api_key": "g-e2e", "base_url": url},
            "bedrock": {"base_url": url, "region": "us-east-1", "aws_access_key_id": "AKIDE2E",
                        "aws_secret_access_key": "secret-e2e"},
        },
        "accounting": {"sink": "none"},
    }
    r = Router.from_config(cfg, env={})
    yield r
    await r.aclose()


@pytest.mark.parametrize("provider", sorted(CHAT))
async def test_complete_and_stream(router: Router, provider: str):
    model = CHAT[provider]
    resp = await router.acomplete(MSGS, model=model, max_tokens=200)
    assert resp.provider == provider and resp.model == model
    assert resp.content and resp.finish_reason == "stop"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.cost_usd == pytest.approx(router.catalog.cost_of_usage(router.catalog.get(model), resp.usage))
    assert resp.cost_usd > 0
    chunks = [c async for c in router.astream(MSGS, model=model, max_tokens=200)]
    text = "".join(c.delta for c in chunks)
    assert text and chunks[-1].usage is not None and chunks[-1].usage.output_tokens > 0
    assert chunks[-1].cost_usd and chunks[-1].cost_usd > 0
    assert {c.provider for c in chunks} == {provider}


@pytest.mark.parametrize("provider", sorted(EMBED))
async def test_embed(router: Router, provider: str):
    out = await router.aembed(["alpha", "beta", "gamma"], model=EMBED[provider])
    assert out.provider == provider and len(out.embeddings) == 3
    assert len({len(v) for v in out.embeddings}) == 1 and len(out.embeddings[0]) > 0
    assert out.usage.input_tokens > 0 and out.cost_usd > 0


async def test_tools_are_normalized_across_protocols(router: Router, all_protocols: FakeProviderServer):
    from modelplex.testing.faults import Behavior

    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                             "parameters": {"type": "object", "properties": {
                                                 "city": {"type": "string"}}, "required": ["city"]}}}
    all_protocols.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    for provider in ("openai", "anthropic", "gemini", "bedrock"):
        resp = await router.acomplete([{"role": "user", "content": "Weather in Oslo?"}], model=CHAT[provider],
                                      tools=[tool], max_tokens=200)
        assert resp.finish_reason == "tool_calls", provider
        assert [tc.name for tc in resp.tool_calls] == ["get_weather"], provider
        assert '"Oslo"' in resp.tool_calls[0].arguments, provider


async def test_a_responses_only_model_is_called_through_the_responses_api(all_protocols: FakeProviderServer) -> None:
    """A model the catalog marks ``endpoint: responses`` (as the LiteLLM importer marks OpenAI's *-pro and
    *-codex models) goes to /v1/responses, with tools, their results and streams, and costs as any other."""
    url = all_protocols.base_url
    pro = {"id": "openai/gpt-x-pro", "context_window": 400_000, "max_output_tokens": 100_000,
           "capabilities": ["tool_calling", "streaming", "system_messages", "reasoning"],
           "pricing": {"input_per_mtok": 15.0, "output_per_mtok": 120.0}, "api_requirements": {"endpoint": "responses"}}
    r = Router.from_config({"providers": {"openai": {"api_key": "sk-e2e", "base_url": url + "/v1"}},
                            "models": [pro], "accounting": {"sink": "none"}}, env={})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    try:
        resp = await r.acomplete(MSGS, model="openai/gpt-x-pro", max_tokens=300, stop=["\n"])
        sent = all_protocols.captured[-1]
        assert sent.path == "/v1/responses" and sent.json["max_output_tokens"] == 300 and "stop" not in sent.json
        assert sent.json["input"][0] == {"role": "system", "content": "Be brief."} and sent.json["store"] is False
        assert resp.content and resp.usage.output_tokens > 0 and resp.cost_usd > 0
        ask = [{"role": "user", "content": "What is the weather? Use get_weather."}]
        called = await r.acomplete(ask, model="openai/gpt-x-pro", tools=tools)
        assert called.finish_reason == "tool_calls" and called.tool_calls[0].name == "get_weather"
        follow = [*ask, {"role": "assistant", "content": None, "tool_calls": [called.tool_calls[0].to_openai()]},
                  {"role": "tool", "tool_call_id": called.tool_calls[0].id, "content": "sunny"}]
        answered = await r.acomplete(follow, model="openai/gpt-x-pro", tools=tools)
        assert answered.content and all_protocols.captured[-1].json["input"][-1] == {
            "type": "function_call_output", "call_id": called.tool_calls[0].id, "output": "sunny"}
        chunks = [c async for c in r.astream(MSGS, model="openai/gpt-x-pro")]
        assert "".join(c.delta for c in chunks) and chunks[-1].usage is not None and chunks[-1].cost_usd > 0
    finally:
        await r.aclose()


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini", "bedrock"])
async def test_a_forced_tool_call_is_answered_with_schema_valid_arguments(router: Router, protocol: str) -> None:
    """``tool_choice: required`` becomes each protocol's forced mode (Gemini ``ANY``, Bedrock ``any``,
    Anthropic ``any``); the fakes answer it, as the services must, with a call whose input fits the schema."""
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string"}, "express": {"type": "boolean"}},
        "required": ["order_id", "express"]}}}]
    resp = await router.acomplete([{"role": "user", "content": "Where is my parcel?"}], model=CHAT[protocol],
                                  tools=tools, tool_choice="required")
    assert resp.finish_reason == "tool_calls" and [t.name for t in resp.tool_calls] == ["lookup_order"]
    args = json.loads(resp.tool_calls[0].arguments)
    assert isinstance(args["order_id"], str) and isinstance(args["express"], bool)
