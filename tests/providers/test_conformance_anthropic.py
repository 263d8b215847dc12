"""Conformance with the official ``anthropic`` SDK, used as a real client and an oracle.

(a) The SDK and modelplex's adapter send the same logical request to the fake; method, path, required
    headers and body must match. (b) The SDK parses the fake's bodies, streams and errors without error
    (strict response validation on), and what it reads matches what the adapter reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest

from modelplex.catalog.schema import ModelSpec
from modelplex.errors import OverloadedError, QuotaExceededError, RateLimitError, StreamInterruptedError
from modelplex.providers.anthropic import AnthropicAdapter
from modelplex.providers.base import ProviderConfig
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import Captured, FakeProviderServer
from modelplex.types import ChatRequest, Response

KEY = "sk-ant-api03-conformance-0123456789"
MODEL = "claude-haiku-4-5"
SPEC = ModelSpec(id=f"anthropic/{MODEL}", provider="anthropic", context_window=200_000, max_output_tokens=64_000,
                 capabilities=frozenset({"tool_calling", "vision", "reasoning", "structured_output"}),
                 api_requirements={"structured_output": "output_config"})
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
          "required": ["title", "year"], "additionalProperties": False}
WEATHER_TOOL_SDK = {"name": "get_weather", "description": "Current weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}
WEATHER_TOOL_OPENAI = {"type": "function", "function": {"name": "get_weather",
                                                        "description": "Current weather for a city",
                                                        "parameters": WEATHER_TOOL_SDK["input_schema"]}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(protocols=("anthropic",)) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sdk(fake: FakeProviderServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=KEY, max_retries=0,
                                      _strict_response_validation=True)
    try:
        yield client
    finally:
        await client.close()


def header(cap: Captured, name: str) -> str | None:
    return next((v for k, v in cap.headers.items() if k.lower() == name.lower()), None)


def credential(cap: Captured) -> str | None:
    auth = header(cap, "authorization")
    return auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else header(cap, "x-api-key")


def adapter(fake: FakeProviderServer, **profile: Any) -> AnthropicAdapter:
    return AnthropicAdapter(ProviderConfig(name="anthropic", protocol="anthropic", base_url=fake.base_url,
                                           api_key=KEY, profile=profile))


async def sdk_version(fake: FakeProviderServer, sdk: anthropic.AsyncAnthropic) -> str:
    """The API version this SDK sends (read from the wire, not from the SDK's internals)."""
    await sdk.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "v"}])
    version = header(fake.captured[-1], "anthropic-version")
    assert version
    return version


def needs_token_counter() -> None:
    """Skip unless ``catalog.tokens`` offers the counters the partial-usage estimate uses."""
    tokens = pytest.importorskip("modelplex.catalog.tokens")
    if not (hasattr(tokens, "count_text") and hasattr(tokens, "count_messages")):
        pytest.skip("modelplex.catalog.tokens has no count_text/count_messages yet")


# ================================================================================ (a) requests match

CASES: list[tuple[str, dict[str, Any], ChatRequest]] = [
    ("plain",
     {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 300},
     ChatRequest(messages=[{"role": "user", "content": "Hi"}], params={"max_tokens": 300})),
    ("system_stop_metadata",
     {"system": "You are terse.", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4096,
      "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}},
     ChatRequest(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
                 params={"stop": "END", "user": "u-1"})),
    ("tools",
     {"messages": [{"role": "user", "content": "Weather in Oslo?"}], "max_tokens": 500, "tools": [WEATHER_TOOL_SDK],
      "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
     ChatRequest(messages=[{"role": "user", "content": "Weather in Oslo?"}],
                 params={"max_tokens": 500, "tools": [WEATHER_TOOL_OPENAI], "tool_choice": "required",
                         "parallel_tool_calls": False})),
    ("tool_result_turn",
     {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                   {"role": "assistant", "content": [
                       {"type": "text", "text": "Checking."},
                       {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"}]}],
      "max_tokens": 500, "tools": [WEATHER_TOOL_SDK]},
     ChatRequest(messages=[{"role": "user", "content": "Weather in Oslo?"},
                           {"role": "assistant", "content": "Checking.", "tool_calls": [
                               {"id": "toolu_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
                           {"role": "tool", "tool_call_id": "toolu_1", "content": "-3C"}],
                 params={"max_tokens": 500, "tools": [WEATHER_TOOL_OPENAI]})),
    ("image",
     {"messages": [{"role": "user", "content": [
         {"type": "text", "text": "Describe"},
         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}],
      "max_tokens": 200},
     ChatRequest(messages=[{"role": "user", "content": [
         {"type": "text", "text": "Describe"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}],
         params={"max_tokens": 200})),
    ("thinking",
     {"messages": [{"role": "user", "content": "Think"}], "max_tokens": 4096 + 2048,
      "thinking": {"type": "enabled", "budget_tokens": 2048}},
     ChatRequest(messages=[{"role": "user", "content": "Think"}], params={"reasoning_effort": "low"})),
    ("structured_output",
     {"messages": [{"role": "user", "content": "A film"}], "max_tokens": 300,
      "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
     ChatRequest(messages=[{"role": "user", "content": "A film"}],
                 params={"max_tokens": 300, "response_format": {"type": "json_schema",
                                                                "json_schema": {"name": "film", "schema": SCHEMA}}})),
]


@pytest.mark.parametrize(("name", "native", "ours"), CASES, ids=[c[0] for c in CASES])
async def test_same_logical_request(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                    sdk: anthropic.AsyncAnthropic, name: str, native: dict[str, Any],
                                    ours: ChatRequest) -> None:
    version = await sdk_version(fake, sdk)
    await sdk.messages.create(model=MODEL, **native)
    theirs = fake.captured[-1]
    resp = await adapter(fake, anthropic_version=version, auth="bearer").complete(session, ours, SPEC)
    mine = fake.captured[-1]
    assert resp.provider == "anthropic"
    assert (mine.method, mine.path) == (theirs.method, theirs.path) == ("POST", "/v1/messages")
    for h in ("anthropic-version", "content-type", "authorization"):
        assert header(mine, h) == header(theirs, h), h
    assert credential(mine) == credential(theirs) == KEY
    assert mine.json == theirs.json


async def test_same_streaming_request(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                      sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(model=MODEL, max_tokens=300, system="Be brief.",
                                   messages=[{"role": "user", "content": "Stream please"}]) as stream:
        await stream.get_final_message()
    theirs = fake.captured[-1]
    req = ChatRequest(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Stream please"}],
                      params={"max_tokens": 300}, stream=True)
    a = adapter(fake, anthropic_version=header(theirs, "anthropic-version"), auth="bearer")
    [c async for c in a.stream(session, req, SPEC)]
    mine = fake.captured[-1]
    assert mine.json == theirs.json and mine.json["stream"] is True
    assert header(mine, "anthropic-version") == header(theirs, "anthropic-version")


async def test_default_adapter_headers_are_accepted_alongside_the_sdk(
        fake: FakeProviderServer, session: aiohttp.ClientSession, sdk: anthropic.AsyncAnthropic) -> None:
    """Out of the box modelplex pins 2023-06-01 (sampling parameters still allowed) and sends x-api-key; the
    SDK sends its own version and a Bearer header. Both carry the same key and both are accepted."""
    await sdk.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
    theirs = fake.captured[-1]
    resp = await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "Hi"}],
                                                             params={"max_tokens": 50, "temperature": 0.2}), SPEC)
    mine = fake.captured[-1]
    assert resp.content
    assert header(mine, "x-api-key") == credential(theirs) == KEY
    assert header(mine, "anthropic-version") == "2023-06-01" and header(theirs, "anthropic-version")
    assert header(mine, "content-type") == header(theirs, "content-type") == "application/json"
    sdk_pinned = sdk.with_options(default_headers={"anthropic-version": "2023-06-01"})
    await sdk_pinned.messages.create(model=MODEL, max_tokens=50, extra_body={"temperature": 0.2},
                                     messages=[{"role": "user", "content": "Hi"}])
    assert fake.captured[-1].json == mine.json


# ================================================================================ (b) responses match


def sdk_input_total(usage: Any) -> int:
    return int(usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0))


async def test_text_and_cache_usage_match(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                          sdk: anthropic.AsyncAnthropic) -> None:
    fake.behavior = Behavior(reply="The answer is forty-two.")
    system = [{"type": "text", "text": "Reference manual. " * 200, "cache_control": {"type": "ephemeral"}}]
    message = await sdk.messages.create(model=MODEL, max_tokens=100, system=system,  # type: ignore[arg-type]
                                        messages=[{"role": "user", "content": "Answer?"}])
    ours = await adapter(fake).complete(session, ChatRequest(
        messages=[{"role": "system", "content": [{"type": "text", "text": "Reference manual. " * 200,
                                                  "cache_control": {"type": "ephemeral"}}]},
                  {"role": "user", "content": "Answer?"}], params={"max_tokens": 100}), SPEC)
    again = await sdk.messages.create(model=MODEL, max_tokens=100, system=system,  # type: ignore[arg-type]
                                      messages=[{"role": "user", "content": "Answer?"}])
    assert message.content[0].type == "text" and message.content[0].text == ours.content
    assert message.stop_reason == "end_turn" and ours.finish_reason == "stop"
    assert (message.usage.cache_creation_input_tokens or 0) > 0
    assert sdk_input_total(message.usage) == ours.usage.input_tokens == sdk_input_total(again.usage)
    assert ours.usage.cache_read_tokens == again.usage.cache_read_input_tokens
    assert ours.usage.output_tokens == message.usage.output_tokens


async def test_tool_use_matches(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                sdk: anthropic.AsyncAnthropic) -> None:
    fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    message = await sdk.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER_TOOL_SDK],  # type: ignore[list-item]
                                        messages=[{"role": "user", "content": "Weather?"}])
    ours = await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "Weather?"}],
                                                             params={"tools": [WEATHER_TOOL_OPENAI]}), SPEC)
    block = message.content[0]
    assert block.type == "tool_use" and message.stop_reason == "tool_use"
    assert (ours.tool_calls[0].name, json.loads(ours.tool_calls[0].arguments)) == (block.name, block.input)
    assert ours.finish_reason == "tool_calls"
    async with sdk.messages.stream(model=MODEL, max_tokens=100, tools=[WEATHER_TOOL_SDK],  # type: ignore[list-item]
                                   messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = await stream.get_final_message()
    chunks = [c async for c in adapter(fake).stream(session, ChatRequest(
        messages=[{"role": "user", "content": "Weather?"}], params={"tools": [WEATHER_TOOL_OPENAI]}, stream=True), SPEC)]
    streamed = "".join(d.arguments for c in chunks for d in c.tool_calls)
    assert final.content[0].type == "tool_use" and json.loads(streamed) == final.content[0].input


async def test_thinking_matches(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                sdk: anthropic.AsyncAnthropic) -> None:
    fake.behavior = Behavior(reply="42")
    message = await sdk.messages.create(model=MODEL, max_tokens=6144, thinking={"type": "enabled", "budget_tokens": 2048},
                                        messages=[{"role": "user", "content": "Meaning?"}])
    ours = await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "Meaning?"}],
                                                             params={"reasoning_effort": "low"}), SPEC)
    thinking = message.content[0]
    assert thinking.type == "thinking"
    assert ours.provider_details["thinking"] == thinking.thinking
    assert ours.provider_details["thinking_blocks"][0]["signature"] == thinking.signature
    assert message.usage.output_tokens_details is not None
    assert ours.usage.reasoning_tokens == message.usage.output_tokens_details.thinking_tokens
    assert ours.content == "42" == message.content[1].text  # type: ignore[union-attr]


async def test_structured_output_matches(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                         sdk: anthropic.AsyncAnthropic) -> None:
    message = await sdk.messages.create(model=MODEL, max_tokens=300, messages=[{"role": "user", "content": "A film"}],
                                        output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    ours = await adapter(fake).complete(session, ChatRequest(
        messages=[{"role": "user", "content": "A film"}],
        params={"max_tokens": 300, "response_format": {"type": "json_schema", "json_schema": {"name": "film",
                                                                                            "schema": SCHEMA}}}), SPEC)
    assert message.content[0].type == "text"
    assert json.loads(ours.content or "") == json.loads(message.content[0].text) == {"title": "example", "year": 1}


async def test_stream_matches(fake: FakeProviderServer, session: aiohttp.ClientSession,
                              sdk: anthropic.AsyncAnthropic) -> None:
    fake.behavior = Behavior(reply="Streaming is delivered in several pieces.", stream_chunks=5)
    pieces: list[str] = []
    async with sdk.messages.stream(model=MODEL, max_tokens=200,
                                   messages=[{"role": "user", "content": "Go"}]) as stream:
        async for text in stream.text_stream:
            pieces.append(text)
        final = await stream.get_final_message()
    chunks = [c async for c in adapter(fake).stream(session, ChatRequest(
        messages=[{"role": "user", "content": "Go"}], params={"max_tokens": 200}, stream=True), SPEC)]
    assert [c.delta for c in chunks if c.delta] == pieces
    assert final.content[0].type == "text" and "".join(pieces) == final.content[0].text
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (sdk_input_total(final.usage), final.usage.output_tokens)
    assert chunks[-1].finish_reason == "stop" and final.stop_reason == "end_turn"
    raw = await sdk.messages.create(model=MODEL, max_tokens=200, stream=True,
                                    messages=[{"role": "user", "content": "Go"}])
    kinds = [event.type async for event in raw]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "content_block_delta" in kinds


async def test_refusal_matches(fake: FakeProviderServer, session: aiohttp.ClientSession,
                               sdk: anthropic.AsyncAnthropic) -> None:
    fake.plan.fail_next(Fault("content_policy"), times=2)
    message = await sdk.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "x"}])
    ours: Response = await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "x"}]),
                                                  SPEC)
    assert message.stop_reason == "refusal" and message.stop_details is not None
    assert ours.finish_reason == "content_filter"
    assert ours.provider_details["stop_details"]["category"] == message.stop_details.category


async def test_models_and_count_tokens_match(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                             sdk: anthropic.AsyncAnthropic) -> None:
    page = await sdk.models.list(limit=3)
    assert len(page.data) == 3 and all(m.type == "model" for m in page.data)
    model = await sdk.models.retrieve(page.data[0].id)
    assert model.id == page.data[0].id
    status = await adapter(fake).health_check(session)
    assert status.ok
    counted = await sdk.messages.count_tokens(model=MODEL, system="sys",
                                              messages=[{"role": "user", "content": "count these words please"}])
    ours = await adapter(fake).count_tokens_remote(session, ChatRequest(
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "count these words please"}]), SPEC)
    assert ours.tokens == counted.input_tokens and ours.exact


# ================================================================================ errors: SDK and adapter agree


@pytest.mark.parametrize(("fault", "sdk_cls", "ours_cls"), [
    (Fault("rate_limit", retry_after=9), anthropic.RateLimitError, RateLimitError),
    (Fault("overloaded"), anthropic.OverloadedError, OverloadedError),
    (Fault("quota"), anthropic.PaymentRequiredError, QuotaExceededError),
    (Fault("quota", status=429), anthropic.EnforcedSpendLimitReachedError, QuotaExceededError),
])
async def test_errors_agree(fake: FakeProviderServer, session: aiohttp.ClientSession, sdk: anthropic.AsyncAnthropic,
                            fault: Fault, sdk_cls: type[Exception], ours_cls: type[Exception]) -> None:
    fake.plan.fail_next(fault, times=2)
    with pytest.raises(anthropic.APIStatusError) as theirs:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ours_cls) as mine:
        await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "x"}]), SPEC)
    assert isinstance(theirs.value, sdk_cls)
    assert theirs.value.status_code == mine.value.status_code  # type: ignore[attr-defined]
    assert theirs.value.type == mine.value.error_type  # type: ignore[attr-defined]
    assert theirs.value.error_code == mine.value.error_code  # type: ignore[attr-defined]
    assert theirs.value.request_id.startswith("req_") and mine.value.request_id.startswith("req_")  # type: ignore[attr-defined,union-attr]
    if fault.kind == "rate_limit":
        assert theirs.value.response.headers["retry-after"] == "9" and mine.value.retry_after == 9.0  # type: ignore[attr-defined]


async def test_mid_stream_error_event_agrees(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                             sdk: anthropic.AsyncAnthropic) -> None:
    fake.behavior = Behavior(reply="one two three four", stream_chunks=4)
    fake.plan.fail_next(Fault("overloaded", status=200, after_chunks=1), times=2)
    with pytest.raises(anthropic.APIStatusError) as theirs:
        async with sdk.messages.stream(model=MODEL, max_tokens=50,
                                       messages=[{"role": "user", "content": "x"}]) as stream:
            await stream.get_final_message()
    assert theirs.value.type == "overloaded_error"
    needs_token_counter()  # the partial usage is estimated from what arrived
    with pytest.raises(StreamInterruptedError) as mine:
        async for _ in adapter(fake).stream(session, ChatRequest(messages=[{"role": "user", "content": "x"}],
                                                                 stream=True), SPEC):
            pass
    assert isinstance(mine.value.__cause__, OverloadedError)
    assert mine.value.partial_content == "one t"  # 18 characters in 4 chunks of 5
