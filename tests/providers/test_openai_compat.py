"""OpenAIAdapter: pure to/from-wire functions on recorded-style payloads, then I/O against the fake on loopback."""

from __future__ import annotations

import base64
import logging
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from modelplex.catalog.schema import ModelSpec
from modelplex.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from modelplex.providers import adapter_class
from modelplex.providers._openai_wire import clean_messages as wire_clean
from modelplex.providers.base import ProviderConfig, iter_sse
from modelplex.providers.openai_compat import OpenAIAdapter
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer
from modelplex.types import ChatRequest, EmbedRequest, StreamChunk

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
SECRET = "sk-test-SECRET-123456"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def _lines(data: bytes) -> AsyncIterator[bytes]:
    for line in data.splitlines(keepends=True):
        yield line


async def sse_events(data: bytes) -> list[tuple[str | None, bytes]]:
    return [e async for e in iter_sse(_lines(data))]  # type: ignore[arg-type]


async def decode(adapter: OpenAIAdapter, model: ModelSpec, data: bytes) -> tuple[list[StreamChunk], Any]:
    decoder = adapter.new_stream_decoder(model, ChatRequest(messages=[], stream=True))
    out: list[StreamChunk] = []
    for event, payload in await sse_events(data):
        out.extend(decoder.feed(event, payload))
        if decoder.done:
            break
    out.extend(decoder.close())
    return out, decoder


def spec(name: str = "gpt-4o-mini", provider: str = "openai", **kw: Any) -> ModelSpec:
    return ModelSpec(id=f"{provider}/{name}", provider=provider, context_window=128_000, **kw)


def adapter(base_url: str = "https://api.openai.com/v1", key: str | None = SECRET, **kw: Any) -> OpenAIAdapter:
    return OpenAIAdapter(ProviderConfig(name=kw.pop("name", "openai"), protocol="openai", base_url=base_url,
                                        api_key=key, **kw))


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# ============================================================================ chat_to_wire


def test_registered_under_openai_protocol() -> None:
    assert adapter_class("openai") is OpenAIAdapter
    assert OpenAIAdapter.protocol == "openai"


def test_chat_to_wire_basic_request() -> None:
    ad = adapter()
    wire = ad.chat_to_wire(ChatRequest(messages=[{"role": "system", "content": "Be brief."}, *user("Hi")],
                                       params={"temperature": 0.2, "seed": 7}), spec())
    assert wire.method == "POST"
    assert wire.url == "https://api.openai.com/v1/chat/completions"
    assert wire.headers["Authorization"] == f"Bearer {SECRET}"
    assert wire.headers["Content-Type"] == "application/json"
    body = orjson.loads(wire.body or b"")
    assert body == {"model": "gpt-4o-mini",
                    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                    "temperature": 0.2, "seed": 7}


def test_base_url_trailing_slash_and_wire_name() -> None:
    ad = adapter("http://localhost:11434/v1/", key=None, name="ollama")
    wire = ad.chat_to_wire(ChatRequest(messages=user("x")), spec("llama3", provider="ollama", wire_name="llama3:8b"))
    assert wire.url == "http://localhost:11434/v1/chat/completions"
    assert "Authorization" not in wire.headers  # keyless local server
    assert orjson.loads(wire.body or b"")["model"] == "llama3:8b"


def test_extra_headers_from_config_and_request_but_auth_is_protected() -> None:
    ad = adapter("https://openrouter.ai/api/v1", name="openrouter",
                 extra_headers={"HTTP-Referer": "https://example.app", "X-Title": "Example"})
    req = ChatRequest(messages=user("x"), extra_headers={"X-Trace": "t-1", "authorization": "Bearer other",
                                                          "api-key": "other"})
    wire = ad.chat_to_wire(req, spec("openai/gpt-4o", provider="openrouter"))
    assert wire.headers["HTTP-Referer"] == "https://example.app"
    assert wire.headers["X-Title"] == "Example"
    assert wire.headers["X-Trace"] == "t-1"
    assert wire.headers["Authorization"] == f"Bearer {SECRET}"
    assert "authorization" not in wire.headers and "api-key" not in wire.headers


def test_messages_drop_modelplex_only_keys_and_keep_tool_turns() -> None:
    messages = [
        {"role": "user", "content": "weather?", "modelplex_tag": "x", "timestamp": 3},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "image_url",
                                                                       "image_url": {"url": "data:image/png;base64,AA"}}]},
    ]
    body = orjson.loads(adapter().chat_to_wire(ChatRequest(messages=messages), spec()).body or b"")  # type: ignore[arg-type]
    assert body["messages"][0] == {"role": "user", "content": "weather?"}
    assert body["messages"][1:] == messages[1:]


CACHED_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": [{"type": "text", "text": "policy", "cache_control": {"type": "ephemeral"}}]},
    {"role": "user", "content": "q", "cache_control": {"type": "ephemeral"}},
    {"role": "assistant", "content": "a", "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
    {"role": "tool", "tool_call_id": "c1", "content": "r", "is_error": True},
]
CACHED_TOOLS = [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}},
                 "cache_control": {"type": "ephemeral"}}]


def test_anthropic_only_marks_are_stripped_for_strict_vendors() -> None:
    """Prompt-caching marks, thinking blocks and a tool result's error flag are Anthropic's; a strict
    OpenAI-compatible server answers 400 to unknown keys."""
    req = ChatRequest(messages=CACHED_MESSAGES, params={"tools": CACHED_TOOLS})
    body = orjson.loads(adapter().chat_to_wire(req, spec()).body or b"")  # type: ignore[arg-type]
    assert body["messages"] == [{"role": "system", "content": "policy"},  # text parts only: one string
                                {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                                {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    mixed = [{"role": "user", "content": [{"type": "text", "text": "see", "cache_control": {"type": "ephemeral"}},
                                          {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    sent = orjson.loads(adapter().chat_to_wire(ChatRequest(messages=mixed), spec()).body or b"")  # type: ignore[arg-type]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "see"},
                                              {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    assert body["tools"] == [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]
    assert "cache_control" in CACHED_MESSAGES[0]["content"][0] and "cache_control" in CACHED_TOOLS[0]  # not mutated


def test_a_vendor_that_takes_cache_control_keeps_it_on_parts_and_tools() -> None:
    req = ChatRequest(messages=CACHED_MESSAGES, params={"tools": CACHED_TOOLS})
    a = adapter("https://openrouter.ai/api/v1", name="openrouter", profile={"cache_control": True})
    body = orjson.loads(a.chat_to_wire(req, spec("anthropic/claude-sonnet-4.5", "openrouter")).body or b"")  # type: ignore[arg-type]
    assert body["messages"][0] == CACHED_MESSAGES[0] and body["tools"] == CACHED_TOOLS
    # a mark on the message itself moves to its last part, where OpenRouter reads it
    assert body["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "q",
                                                                "cache_control": {"type": "ephemeral"}}]}
    assert body["messages"][2] == {"role": "assistant", "content": "a"} and body["messages"][3]["content"] == "r"


def test_messages_without_marks_are_passed_through_untouched() -> None:
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert wire_clean([parts])[0] is parts and wire_clean([parts], cache_control=True)[0] is parts


def test_the_bundled_openrouter_profile_takes_cache_control() -> None:
    from modelplex.catalog.loader import bundled_catalog

    assert bundled_catalog().provider("openrouter").profile.get("cache_control") is True
    assert not bundled_catalog().provider("openai").profile.get("cache_control")


def test_max_tokens_maps_to_max_completion_tokens_for_reasoning_models() -> None:
    o3 = spec("o3-mini", param_mappings={"max_tokens": "max_completion_tokens"})
    body = orjson.loads(adapter().chat_to_wire(ChatRequest(messages=user("x"), params={"max_tokens": 500}), o3).body
                        or b"")
    assert body["max_completion_tokens"] == 500
    assert "max_tokens" not in body


def test_profile_max_tokens_param() -> None:
    ad = adapter(profile={"max_tokens_param": "max_completion_tokens"})
    body = orjson.loads(ad.chat_to_wire(ChatRequest(messages=user("x"), params={"max_tokens": 9}), spec()).body
                        or b"")
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


def test_unsupported_params_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    narrow = spec("o1", supported_params=frozenset({"max_tokens", "tools"}))
    req = ChatRequest(messages=user("x"), params={"temperature": 1.5, "top_k": 3, "max_tokens": 10,
                                                  "bogus_param": 1, "timeout": 5, "top_p": None})
    with caplog.at_level(logging.DEBUG, logger="modelplex.providers.openai_compat"):
        body = orjson.loads(adapter().chat_to_wire(req, narrow).body or b"")
    assert body == {"model": "o1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10}
    assert "temperature" in caplog.text and "top_k" in caplog.text


def test_top_k_is_not_an_openai_parameter_and_timeout_never_reaches_the_body() -> None:
    body = orjson.loads(adapter().chat_to_wire(ChatRequest(messages=user("x"), params={"top_k": 5, "timeout": 3}),
                                               spec()).body or b"")
    assert "top_k" not in body and "timeout" not in body


def test_tools_response_format_and_passthrough_params() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}}
    req = ChatRequest(messages=user("x"), params={"tools": tools, "tool_choice": "auto", "response_format": fmt,
                                                  "parallel_tool_calls": False, "user": "u1",
                                                  "reasoning_effort": "low", "stop": ["\n"]})
    body = orjson.loads(adapter().chat_to_wire(req, spec()).body or b"")
    assert body["tools"] == tools and body["tool_choice"] == "auto" and body["response_format"] == fmt
    assert body["parallel_tool_calls"] is False and body["user"] == "u1" and body["stop"] == ["\n"]
    assert body["reasoning_effort"] == "low"


def test_default_params_and_extra_body() -> None:
    s = spec("deepseek-chat", provider="deepseek", default_params={"temperature": 0.0})
    req = ChatRequest(messages=user("x"), params={"extra_body": {"provider": {"order": ["Groq"]}, "top_k": 2}})
    body = orjson.loads(adapter(name="deepseek").chat_to_wire(req, s).body or b"")
    assert body["temperature"] == 0.0
    assert body["provider"] == {"order": ["Groq"]}
    assert body["top_k"] == 2  # extra_body is verbatim, even for names the protocol lacks


def test_streaming_body_always_asks_for_usage() -> None:
    body = orjson.loads(adapter().chat_to_wire(ChatRequest(messages=user("x"), stream=True), spec()).body or b"")
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    no_usage = adapter(profile={"stream_usage": False})
    body = orjson.loads(no_usage.chat_to_wire(ChatRequest(messages=user("x"), stream=True), spec()).body or b"")
    assert body["stream"] is True and "stream_options" not in body


# ============================================================================ chat_from_wire


def test_from_wire_basic() -> None:
    resp = adapter().chat_from_wire(fixture("chat_basic.json"), spec())
    assert resp.content == "Hello! How can I assist you today?"
    assert resp.finish_reason == "stop"
    assert resp.tool_calls == []
    assert resp.model == "openai/gpt-4o-mini" and resp.provider == "openai"
    assert resp.provider_request_id == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    u = resp.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens) == (19, 10, 0, 0)
    assert u.provider_cost_usd is None and not u.estimated


def test_from_wire_tool_calls() -> None:
    resp = adapter().chat_from_wire(fixture("chat_tool_calls.json"), spec("gpt-4o"))
    assert resp.content is None
    assert resp.finish_reason == "tool_calls"
    assert [(t.id, t.name) for t in resp.tool_calls] == [("call_abc123", "get_current_weather"),
                                                        ("call_def456", "get_current_time")]
    assert orjson.loads(resp.tool_calls[0].arguments) == {"location": "Boston, MA"}
    assert resp.tool_calls[1].to_openai()["function"]["arguments"] == '{"timezone": "America/New_York"}'


def test_from_wire_usage_with_cached_and_reasoning_tokens() -> None:
    u = adapter().chat_from_wire(fixture("chat_reasoning_cached.json"), spec("o3-mini")).usage
    assert u.input_tokens == 2006  # includes the cached 1920
    assert u.cache_read_tokens == 1920
    assert u.output_tokens == 300  # includes the 256 reasoning tokens
    assert u.reasoning_tokens == 256
    assert u.total_tokens == 2306


def test_usage_keeps_reasoning_inside_output_even_when_counted_apart() -> None:
    # OpenAI: completion_tokens already includes reasoning, total = prompt + completion
    body = orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "x"}}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 50, "total_tokens": 60,
                                   "completion_tokens_details": {"reasoning_tokens": 40}}})
    u = adapter().chat_from_wire(body, spec()).usage
    assert (u.output_tokens, u.reasoning_tokens) == (50, 40)
    # a compatible server that reports thoughts outside completion_tokens: its total includes them
    body = orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "x"}}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 60,
                                   "completion_tokens_details": {"reasoning_tokens": 40}}})
    u = adapter().chat_from_wire(body, spec()).usage
    assert (u.output_tokens, u.reasoning_tokens) == (50, 40)


def test_deepseek_cache_hit_tokens() -> None:
    body = orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "x"}}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                                   "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}})
    u = adapter(name="deepseek").chat_from_wire(body, spec("deepseek-chat", provider="deepseek")).usage
    assert (u.input_tokens, u.cache_read_tokens) == (100, 64)


def test_groq_stream_usage_in_x_groq() -> None:
    decoder = adapter(name="groq").new_stream_decoder(spec("llama", provider="groq"), ChatRequest(messages=[]))
    chunks = list(decoder.feed(None, orjson.dumps({
        "id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "x_groq": {"id": "req_1", "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}})))
    assert chunks[0].finish_reason == "stop"
    assert chunks[0].usage is not None and chunks[0].usage.input_tokens == 9


def test_from_wire_openrouter_cost() -> None:
    ad = adapter("https://openrouter.ai/api/v1", name="openrouter")
    resp = ad.chat_from_wire(fixture("openrouter_cost.json"), spec("anthropic/claude-3.5-sonnet",
                                                                   provider="openrouter"))
    assert resp.content == "Paris is the capital of France."
    assert resp.usage.provider_cost_usd == pytest.approx(0.000177)
    assert resp.usage.provider_details["is_byok"] is False
    assert resp.provider_request_id == "gen-1741570000-AbCdEfGhIjKlMnOp"


def test_from_wire_content_filter_finish() -> None:
    resp = adapter().chat_from_wire(fixture("azure_content_filter_finish.json"), spec("gpt-4o"))
    assert resp.finish_reason == "content_filter"
    assert resp.content is None
    assert resp.usage.output_tokens == 0 and resp.usage.input_tokens == 25


@pytest.mark.parametrize(("wire_reason", "tool_calls", "expected"), [
    ("stop", False, "stop"), ("length", False, "length"), ("tool_calls", True, "tool_calls"),
    ("function_call", False, "tool_calls"), ("content_filter", False, "content_filter"),
    ("stop", True, "tool_calls"), ("something_new", False, "unknown"), ("error", False, "error"),
])
def test_finish_reason_normalized(wire_reason: str, tool_calls: bool, expected: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if tool_calls:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = orjson.dumps({"id": "x", "choices": [{"index": 0, "message": message, "finish_reason": wire_reason}]})
    assert adapter().chat_from_wire(body, spec()).finish_reason == expected


def test_legacy_function_call_and_refusal() -> None:
    body = orjson.dumps({"choices": [{"index": 0, "finish_reason": "function_call", "message": {
        "role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": "{\"q\":1}"}}}]})
    resp = adapter().chat_from_wire(body, spec())
    assert [(t.name, t.arguments) for t in resp.tool_calls] == [("lookup", '{"q":1}')]
    refusal = orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}]})
    refused = adapter().chat_from_wire(refusal, spec())
    assert refused.content is None and refused.refusal == "I can't help with that."


def test_missing_usage_gives_zero_usage_not_an_error() -> None:
    body = orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                                                                                      "content": "hi"}}]})
    resp = adapter().chat_from_wire(body, spec())
    assert resp.content == "hi" and resp.usage.total_tokens == 0


@pytest.mark.parametrize("payload", [
    b"<html>502 Bad Gateway</html>", b'{"id": "chatcmpl-1", "choices": [{"index": 0, "mess', b"[1, 2]",
    b'{"id": "x"}', b'{"id": "x", "choices": []}', b'{"choices": [{"index": 0}]}', b"",
])
def test_malformed_bodies_are_invalid_response(payload: bytes) -> None:
    with pytest.raises(InvalidResponseError) as info:
        adapter().chat_from_wire(payload, spec())
    assert info.value.provider == "openai" and info.value.model == "openai/gpt-4o-mini"
    assert info.value.retryable


def test_in_band_error_with_status_200_is_classified() -> None:
    body = orjson.dumps({"error": {"code": 429, "message": "Rate limited upstream"}})
    with pytest.raises(RateLimitError) as info:
        adapter().chat_from_wire(body, spec())
    assert info.value.status_code == 429


# ============================================================================ classify_error


@pytest.mark.parametrize(("status", "name", "cls"), [
    (400, "error_context_length.json", ContextWindowExceededError),
    (429, "error_insufficient_quota.json", QuotaExceededError),
    (429, "error_rate_limit.json", RateLimitError),
    (401, "error_invalid_api_key.json", AuthenticationError),
    (404, "error_model_not_found.json", NotFoundError),
    (400, "error_model_not_found.json", NotFoundError),  # code wins over status
    (500, "error_server.json", ServerError),
    (402, "error_openrouter_credits.json", QuotaExceededError),
    (400, "azure_content_filter_error.json", ContentPolicyError),
    (404, "error_azure_deployment_not_found.json", NotFoundError),
    (429, "error_azure_rate_limit.json", RateLimitError),
])
def test_classify_error_from_fixtures(status: int, name: str, cls: type[ProviderError]) -> None:
    err = adapter().classify_error(status, {"x-request-id": "req_abc"}, fixture(name), spec())
    assert type(err) is cls
    assert err.status_code == status
    assert err.request_id == "req_abc"
    assert err.provider == "openai" and err.model == "openai/gpt-4o-mini"


def test_quota_is_not_a_rate_limit() -> None:
    err = adapter().classify_error(429, {}, fixture("error_insufficient_quota.json"), spec())
    assert isinstance(err, QuotaExceededError) and not isinstance(err, RateLimitError)
    assert not err.retryable
    assert err.error_code == "insufficient_quota"


def test_rate_limit_retry_after_from_headers() -> None:
    err = adapter().classify_error(429, {"retry-after-ms": "1500", "x-ratelimit-reset-tokens": "6m0s"},
                                   fixture("error_rate_limit.json"), spec())
    assert isinstance(err, RateLimitError) and err.retry_after == pytest.approx(1.5)
    err2 = adapter().classify_error(429, {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "20ms"},
                                    fixture("error_rate_limit.json"), spec())
    assert err2.retry_after == pytest.approx(0.02)
    assert err2.error_type == "tokens" and err2.error_code == "rate_limit_exceeded"


@pytest.mark.parametrize(("status", "cls"), [
    (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError), (404, NotFoundError),
    (402, QuotaExceededError), (429, RateLimitError), (500, ServerError), (502, ServerError),
    (503, OverloadedError), (504, ServerError),
])
def test_non_json_error_bodies_classify_by_status(status: int, cls: type[ProviderError]) -> None:
    err = adapter().classify_error(status, {}, b"<html><body>upstream error</body></html>", spec())
    assert type(err) is cls and err.status_code == status


def test_message_kept_without_english_matching_and_secrets_redacted() -> None:
    err = adapter().classify_error(401, {"authorization": f"Bearer {SECRET}"}, fixture("error_invalid_api_key.json"),
                                   spec())
    assert isinstance(err, AuthenticationError)
    assert "Incorrect API key provided" in err.message
    for text in (str(err), repr(err), err.message, orjson.dumps(err.body).decode()):
        assert SECRET not in text


def test_vllm_flat_error_and_string_error() -> None:
    flat = orjson.dumps({"object": "error", "message": "This model's maximum context length is 4096 tokens.",
                         "type": "BadRequestError", "param": None, "code": 400})
    err = adapter().classify_error(400, {}, flat, spec())
    assert type(err) is BadRequestError  # no structured context code: the status decides
    err2 = adapter().classify_error(404, {}, b'{"error": "model \\"llama9\\" not found, try pulling it first"}', spec())
    assert type(err2) is NotFoundError and "not found" in err2.message


# ============================================================================ stream decoder


async def test_stream_decoder_text_and_usage() -> None:
    chunks, decoder = await decode(adapter(), spec(), fixture("stream_basic.sse"))
    assert decoder.done
    assert "".join(c.delta for c in chunks) == "Hello! How can I help?"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1
    assert (usages[0].input_tokens, usages[0].output_tokens, usages[0].cache_read_tokens) == (1100, 7, 1024)
    assert all(c.delta or c.finish_reason or c.usage for c in chunks)  # the role-only chunk is skipped


async def test_stream_decoder_tool_call_deltas() -> None:
    chunks, _ = await decode(adapter(), spec("gpt-4o"), fixture("stream_tool_calls.sse"))
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for d in c.tool_calls:
            entry = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = d.id or entry["id"]
            entry["name"] = d.name or entry["name"]
            entry["arguments"] += d.arguments
    assert calls == {0: {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather",
                         "arguments": '{"location": "Paris"}'},
                     1: {"id": "call_2nd", "name": "get_time", "arguments": "{}"}}
    assert chunks[-2].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 24


async def test_stream_decoder_reasoning_deltas_and_inline_usage() -> None:
    chunks, _ = await decode(adapter(name="deepseek"), spec("deepseek-reasoner", provider="deepseek"),
                             fixture("stream_deepseek_reasoning.sse"))
    assert "".join(c.reasoning_delta for c in chunks) == "Let me think."
    assert "".join(c.delta for c in chunks) == "4"
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage is not None and last.usage.reasoning_tokens == 38


async def test_stream_error_event_raises_classified_error() -> None:
    ad = adapter("https://openrouter.ai/api/v1", name="openrouter")
    decoder = ad.new_stream_decoder(spec("openai/gpt-4o", provider="openrouter"), ChatRequest(messages=[]))
    events = await sse_events(fixture("stream_openrouter_error.sse"))
    first = list(decoder.feed(*events[0]))
    assert first[0].delta == "Partial"
    with pytest.raises(ServerError) as info:
        decoder.feed(*events[1])
    assert info.value.error_code == "server_error" and info.value.provider == "openrouter"


async def test_stream_without_done_or_finish_is_truncated() -> None:
    data = fixture("stream_basic.sse").split(b'"finish_reason":"stop"')[0].rsplit(b"\n\n", 1)[0] + b"\n\n"
    with pytest.raises(InvalidResponseError):
        await decode(adapter(), spec(), data)


async def test_stream_with_finish_but_no_done_is_accepted() -> None:
    data = fixture("stream_basic.sse").replace(b"data: [DONE]\n\n", b"")
    chunks, decoder = await decode(adapter(), spec(), data)
    assert not decoder.done
    assert "".join(c.delta for c in chunks) == "Hello! How can I help?"


def test_stream_decoder_malformed_event_and_ignores_after_done() -> None:
    decoder = adapter().new_stream_decoder(spec(), ChatRequest(messages=[]))
    with pytest.raises(InvalidResponseError):
        decoder.feed(None, b'{"choices": [')
    decoder = adapter().new_stream_decoder(spec(), ChatRequest(messages=[]))
    assert list(decoder.feed(None, b"[DONE]")) == []
    assert decoder.done
    assert list(decoder.feed(None, b"not json at all")) == []
    assert list(decoder.close()) == []


# ============================================================================ embeddings and health (pure)


def test_embed_to_wire() -> None:
    wire = adapter().embed_to_wire(EmbedRequest(input=["a", "b"], params={"dimensions": 256, "task_type": "x"}),
                                   spec("text-embedding-3-small", mode="embedding"))
    assert wire.url == "https://api.openai.com/v1/embeddings"
    assert wire.headers["Authorization"] == f"Bearer {SECRET}"
    assert orjson.loads(wire.body or b"") == {"model": "text-embedding-3-small", "input": ["a", "b"],
                                              "dimensions": 256, "encoding_format": "float"}


def test_embed_from_wire_orders_by_index_and_decodes_base64() -> None:
    s = spec("text-embedding-3-small", mode="embedding")
    resp = adapter().embed_from_wire(fixture("embeddings.json"), s, EmbedRequest(input=["first", "second"]))
    assert resp.embeddings == [[0.0023064255, -0.009327292, -0.0028842222], [0.25, -0.5, 0.125]]
    assert resp.usage.input_tokens == 8 and resp.model == "openai/text-embedding-3-small"
    b64 = base64.b64encode(struct.pack("<3f", 0.5, -0.25, 1.0)).decode()
    body = orjson.dumps({"data": [{"index": 0, "embedding": b64}], "usage": {"prompt_tokens": 1}})
    assert adapter().embed_from_wire(body, s, EmbedRequest(input=["x"])).embeddings == [[0.5, -0.25, 1.0]]
    with pytest.raises(InvalidResponseError):
        adapter().embed_from_wire(fixture("embeddings.json"), s, EmbedRequest(input=["only one"]))
    with pytest.raises(InvalidResponseError):
        adapter().embed_from_wire(b'{"object": "list"}', s, EmbedRequest(input=["x"]))


def test_health_to_wire_lists_models() -> None:
    wire = adapter().health_to_wire()
    assert (wire.method, wire.url) == ("GET", "https://api.openai.com/v1/models")
    assert wire.headers["Authorization"] == f"Bearer {SECRET}" and wire.body is None


def test_repr_hides_the_key() -> None:
    ad = adapter()
    assert SECRET not in repr(ad) and SECRET not in repr(ad.provider)


# ============================================================================ against the fake provider


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def live(fake: FakeProviderServer, key: str | None = SECRET, **kw: Any) -> OpenAIAdapter:
    return adapter(fake.base_url + "/v1", key=key, **kw)


async def test_complete_against_fake(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Forty-two is the answer.")
    resp = await live(fake).complete(session, ChatRequest(messages=user("What is the answer?"), request_id="r-1"),
                                     spec())
    assert resp.content == "Forty-two is the answer."
    assert resp.finish_reason == "stop"
    assert resp.usage.output_tokens == 6 and resp.usage.input_tokens == 5
    assert resp.request_id == "r-1" and resp.provider_request_id and resp.provider_request_id.startswith("chatcmpl-")
    assert resp.latency_ms > 0
    cap = fake.captured[-1]
    assert cap.path == "/v1/chat/completions" and cap.headers["Authorization"] == f"Bearer {SECRET}"
    assert cap.json["model"] == "gpt-4o-mini"


async def test_stream_against_fake(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three four five six", stream_chunks=3)
    chunks = [c async for c in live(fake).stream(session, ChatRequest(messages=user("count"), stream=True), spec())]
    text_chunks = [c for c in chunks if c.delta]
    assert len(text_chunks) == 3
    assert "".join(c.delta for c in chunks) == "one two three four five six"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 7
    assert fake.captured[-1].json["stream_options"] == {"include_usage": True}


async def test_tool_call_round_trip_against_fake(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    resp = await live(fake).complete(session, ChatRequest(messages=user("weather?"), params={"tools": tools}), spec())
    assert resp.finish_reason == "tool_calls"
    assert [(t.name, orjson.loads(t.arguments)) for t in resp.tool_calls] == [("get_weather", {"city": "Oslo"})]
    chunks = [c async for c in live(fake).stream(
        session, ChatRequest(messages=user("weather?"), params={"tools": tools}, stream=True), spec())]
    args = "".join(d.arguments for c in chunks for d in c.tool_calls)
    assert orjson.loads(args) == {"city": "Oslo"}
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls"]


async def test_embed_and_health_against_fake(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    s = spec("text-embedding-3-small", mode="embedding")
    resp = await live(fake).embed(session, EmbedRequest(input=["alpha", "beta", "alpha"], params={"dimensions": 64}),
                                  s)
    assert len(resp.embeddings) == 3 and all(len(v) == 64 for v in resp.embeddings)
    assert resp.embeddings[0] == resp.embeddings[2] != resp.embeddings[1]
    assert resp.usage.input_tokens == 5  # 2 + 1 + 2 at four characters a token
    health = await live(fake).health_check(session)
    assert health.ok and health.detail == "ok"
    assert fake.captured[-1].path == "/v1/models"
    fake.plan.fail_next(Fault("server_error", status=500))
    down = await live(fake).health_check(session)
    assert not down.ok and down.detail == "server_error"
    bad_key = await live(fake, key="invalid").health_check(session)
    assert not bad_key.ok and bad_key.detail == "authentication"


@pytest.mark.parametrize(("fault", "cls"), [
    (Fault("rate_limit", retry_after=2), RateLimitError),
    (Fault("quota"), QuotaExceededError),
    (Fault("context_window"), ContextWindowExceededError),
    (Fault("content_policy"), ContentPolicyError),
    (Fault("auth"), AuthenticationError),
    (Fault("permission"), PermissionDeniedError),
    (Fault("not_found"), NotFoundError),
    (Fault("bad_request"), BadRequestError),
    (Fault("server_error"), ServerError),
    (Fault("server_error", status=502), ServerError),
    (Fault("overloaded"), OverloadedError),
    (Fault("status", status=409), ProviderError),
    (Fault("status", status=418), ProviderError),
    (Fault("reset"), APIConnectionError),
    (Fault("malformed"), InvalidResponseError),
    (Fault("truncated"), InvalidResponseError),
    (Fault("stream_cut"), InvalidResponseError),
])
async def test_faults_map_to_typed_errors(fake: FakeProviderServer, session: aiohttp.ClientSession, fault: Fault,
                                          cls: type[ProviderError]) -> None:
    fake.plan.fail_next(fault)
    with pytest.raises(cls) as info:
        await live(fake).complete(session, ChatRequest(messages=user("hi")), spec())
    err = info.value
    if fault.kind == "status":
        assert err.status_code == fault.status
    if fault.kind in ("reset",):
        assert not isinstance(err, APITimeoutError)
    if fault.kind == "quota":
        assert not isinstance(err, RateLimitError)
    # one fault, one failure: the next call succeeds
    ok = await live(fake).complete(session, ChatRequest(messages=user("hi")), spec())
    assert ok.content


async def test_rate_limit_retry_after_parsed_from_fake(fake: FakeProviderServer,
                                                       session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("rate_limit", retry_after=3))
    with pytest.raises(RateLimitError) as info:
        await live(fake).complete(session, ChatRequest(messages=user("hi")), spec())
    assert info.value.retry_after == pytest.approx(3.0)
    assert info.value.status_code == 429 and info.value.request_id
    fake.plan.fail_next(Fault("rate_limit", retry_after_ms=250))
    with pytest.raises(RateLimitError) as info:
        await live(fake).complete(session, ChatRequest(messages=user("hi")), spec())
    assert info.value.retry_after == pytest.approx(0.25)


async def test_timeout_is_api_timeout(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("timeout", delay=1.0))
    with pytest.raises(APITimeoutError):
        await live(fake).complete(session, ChatRequest(messages=user("hi")), spec(), timeout=0.1)


async def test_stream_faults(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    ad = live(fake)
    req = ChatRequest(messages=user("tell me a story"), stream=True)
    fake.behavior = Behavior(reply="a b c d e f g h", stream_chunks=4)

    fake.plan.fail_next(Fault("rate_limit", retry_after=1))
    with pytest.raises(RateLimitError):  # before the first chunk: the ordinary, retryable error
        _ = [c async for c in ad.stream(session, req, spec())]

    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    got: list[StreamChunk] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for c in ad.stream(session, req, spec()):
            got.append(c)
    assert [c.delta for c in got] == ["a b "]
    err = info.value
    assert err.partial_content == "a b "
    assert err.partial_usage is not None and err.partial_usage.estimated
    assert err.partial_usage.output_tokens > 0 and err.partial_usage.input_tokens > 0

    fake.plan.fail_next(Fault("truncated"))
    with pytest.raises(StreamInterruptedError) as info2:
        _ = [c async for c in ad.stream(session, req, spec())]
    assert info2.value.partial_content == "a b c d e f g h"

    fake.plan.fail_next(Fault("malformed"))
    with pytest.raises(InvalidResponseError):
        _ = [c async for c in ad.stream(session, req, spec())]

    fake.plan.fail_next(Fault("reset"))
    with pytest.raises(APIConnectionError):
        _ = [c async for c in ad.stream(session, req, spec())]

    fake.plan.fail_next(Fault("slow", delay=0.01))
    chunks = [c async for c in ad.stream(session, req, spec())]
    assert "".join(c.delta for c in chunks) == "a b c d e f g h"
    assert chunks[-1].usage is not None


async def test_stream_without_usage_when_provider_omits_it(fake: FakeProviderServer,
                                                           session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="hello", include_usage=False)
    chunks = [c async for c in live(fake).stream(session, ChatRequest(messages=user("x"), stream=True), spec())]
    assert "".join(c.delta for c in chunks) == "hello"
    assert all(c.usage is None for c in chunks)


async def test_secrets_never_leak(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                  caplog: pytest.LogCaptureFixture) -> None:
    ad = live(fake)
    errors: list[ProviderError] = []
    with caplog.at_level(logging.DEBUG):
        for fault in (Fault("auth"), Fault("server_error"), Fault("reset"), Fault("rate_limit", retry_after=1)):
            fake.plan.fail_next(fault)
            with pytest.raises(ProviderError) as info:
                await ad.complete(session, ChatRequest(messages=user("hi"), params={"bogus": 1}), spec())
            errors.append(info.value)
        fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
        with pytest.raises(StreamInterruptedError) as sinfo:
            _ = [c async for c in ad.stream(session, ChatRequest(messages=user("hi"), stream=True), spec())]
        errors.append(sinfo.value)
        errors.append(ad.classify_error(401, {"Authorization": f"Bearer {SECRET}"},
                                        fixture("error_invalid_api_key.json"), spec()))
    assert [type(e) for e in errors[:4]] == [AuthenticationError, ServerError, APIConnectionError, RateLimitError]
    assert caplog.records  # the adapter did log (dropped params), so the check below means something
    for e in errors:
        for text in (str(e), repr(e), e.message, orjson.dumps(e.body, default=str).decode(), str(e.__cause__)):
            assert SECRET not in text
    assert SECRET not in caplog.text
    assert SECRET not in repr(ad)
