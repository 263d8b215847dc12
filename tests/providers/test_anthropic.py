"""AnthropicAdapter: pure request/response/error/stream mapping from recorded payloads, then I/O against the
fake Anthropic server on loopback."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from modelplex.catalog.loader import bundled_catalog
from modelplex.catalog.params import split_params
from modelplex.catalog.schema import ModelSpec
from modelplex.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
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
    UnsupportedParameterError,
)
from modelplex.providers import adapter_class
from modelplex.providers.anthropic import (
    STRUCTURED_OUTPUTS_BETA,
    THINKING_BUDGETS,
    AnthropicAdapter,
    caller_max_tokens,
    forced_tool_name,
    tool_name_for,
)
from modelplex.providers.base import ProviderConfig, iter_sse, portable_tool_id
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer
from modelplex.types import ChatRequest, StreamChunk

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
KEY = "sk-ant-api03-test-SECRET-0123456789abcdef"

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"},
                                                   "conditions": {"type": "array", "items": {"type": "string"}}},
                  "required": ["city", "temperature_c"], "additionalProperties": False}
WEATHER_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather_report", "schema": WEATHER_SCHEMA}}


def spec(*, caps: tuple[str, ...] = ("tool_calling", "vision", "streaming"), max_output: int = 64_000,
         default_params: dict[str, Any] | None = None, api_requirements: dict[str, Any] | None = None,
         name: str = "claude-sonnet-4-5-20250929") -> ModelSpec:
    return ModelSpec(id=f"anthropic/{name}", provider="anthropic", context_window=200_000,
                     max_output_tokens=max_output, capabilities=frozenset(caps),
                     default_params=default_params or {}, api_requirements=api_requirements or {})


def adapter(base_url: str = "", *, profile: dict[str, Any] | None = None,
            extra_headers: dict[str, str] | None = None, api_key: str | None = KEY) -> AnthropicAdapter:
    return AnthropicAdapter(ProviderConfig(name="anthropic", protocol="anthropic", base_url=base_url,
                                           api_key=api_key, profile=profile or {},
                                           extra_headers=extra_headers or {}))


def body(adapter_: AnthropicAdapter, req: ChatRequest, model: ModelSpec | None = None) -> dict[str, Any]:
    wire = adapter_.chat_to_wire(req, model or spec())
    assert wire.body is not None
    data: dict[str, Any] = orjson.loads(wire.body)
    return data


def user(text: str = "Hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def _lines(text: str) -> AsyncIterator[bytes]:
    for line in text.encode().splitlines(keepends=True):
        yield line


async def decode(name_or_text: str, req: ChatRequest | None = None, model: ModelSpec | None = None
                 ) -> list[StreamChunk]:
    """Run an SSE transcript through the real SSE framing and the adapter's decoder."""
    text = (FIXTURES / name_or_text).read_text() if name_or_text.endswith(".sse") else name_or_text
    decoder = adapter().new_stream_decoder(model or spec(), req or ChatRequest(messages=user(), stream=True))
    chunks: list[StreamChunk] = []
    async for event, data in iter_sse(_lines(text)):  # type: ignore[arg-type]
        chunks.extend(decoder.feed(event, data))
        if decoder.done:
            break
    chunks.extend(decoder.close())
    return chunks


def sse_event(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def needs_token_counter() -> None:
    """Skip unless ``catalog.tokens`` offers the counters the partial-usage estimate uses."""
    tokens = pytest.importorskip("modelplex.catalog.tokens")
    if not (hasattr(tokens, "count_text") and hasattr(tokens, "count_messages")):
        pytest.skip("modelplex.catalog.tokens has no count_text/count_messages yet")


# ================================================================================ registry and wire basics


def test_registered_under_its_protocol() -> None:
    assert adapter_class("anthropic") is AnthropicAdapter
    assert AnthropicAdapter.protocol == "anthropic"


def test_url_and_required_headers() -> None:
    wire = adapter().chat_to_wire(ChatRequest(messages=user()), spec())
    assert wire.method == "POST"
    assert wire.url == "https://api.anthropic.com/v1/messages"
    assert wire.headers["x-api-key"] == KEY
    assert wire.headers["anthropic-version"] == "2023-06-01"
    assert wire.headers["content-type"] == "application/json"
    assert "authorization" not in wire.headers
    assert "anthropic-beta" not in wire.headers


def test_base_url_with_or_without_v1() -> None:
    for base in ("http://proxy.local:8080", "http://proxy.local:8080/", "http://proxy.local:8080/v1"):
        assert adapter(base).chat_to_wire(ChatRequest(messages=user()), spec()).url == \
            "http://proxy.local:8080/v1/messages"


def test_profile_version_bearer_auth_betas_and_extra_headers() -> None:
    a = adapter(profile={"anthropic_version": "2026-10-21", "auth": "bearer", "anthropic_beta": ["files-api-2025-04-14"]},
                extra_headers={"X-Team": "search", "anthropic-beta": "context-1m-2025-08-07"})
    req = ChatRequest(messages=user(), extra_headers={"x-request-tag": "t1", "x-api-key": "stolen",
                                                      "Authorization": "Bearer other"})
    h = a.chat_to_wire(req, spec()).headers
    assert h["anthropic-version"] == "2026-10-21"
    assert h["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in h
    assert h["x-team"] == "search" and h["x-request-tag"] == "t1"
    assert h["anthropic-beta"] == "files-api-2025-04-14,context-1m-2025-08-07"


def test_model_api_requirements_override_provider_profile() -> None:
    a = adapter(profile={"anthropic_version": "2026-10-21"})
    h = a.chat_to_wire(ChatRequest(messages=user()), spec(api_requirements={"anthropic_version": "2023-06-01"})).headers
    assert h["anthropic-version"] == "2023-06-01"


def test_no_key_sends_no_credential_header() -> None:
    h = adapter(api_key=None).chat_to_wire(ChatRequest(messages=user()), spec()).headers
    assert "x-api-key" not in h and "authorization" not in h


def test_stream_flag_and_model_name() -> None:
    b = body(adapter(), ChatRequest(messages=user(), stream=True), spec(name="claude-haiku-4-5"))
    assert b["stream"] is True
    assert b["model"] == "claude-haiku-4-5"
    assert "stream" not in body(adapter(), ChatRequest(messages=user()))


# ================================================================================ messages


@pytest.mark.parametrize("fixture", ["request_conversation.json", "request_cache_control.json"])
def test_request_fixtures(fixture: str) -> None:
    case = load(fixture)
    req = ChatRequest(messages=case["request"]["messages"], params=case["request"]["params"])
    assert body(adapter(), req) == case["expected"]


def test_system_only_developer_and_consecutive_users_merge() -> None:
    msgs = [{"role": "user", "content": "a"}, {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]}]
    b = body(adapter(), ChatRequest(messages=msgs))
    assert b["system"] == "rules"
    assert b["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]


def test_message_level_cache_control_marks_last_block() -> None:
    msgs = [{"role": "system", "content": "policy", "cache_control": {"type": "ephemeral"}},
            {"role": "user", "content": "q"}]
    b = body(adapter(), ChatRequest(messages=msgs))
    assert b["system"] == [{"type": "text", "text": "policy", "cache_control": {"type": "ephemeral"}}]


def test_tool_result_blocks_open_the_user_turn() -> None:
    msgs = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "user", "content": "also, hurry"},
            {"role": "tool", "tool_call_id": "t1", "content": ""}]
    b = body(adapter(), ChatRequest(messages=msgs))
    assert b["messages"][1] == {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w",
                                                                  "input": {}}]}
    assert b["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1"},
                                           {"type": "text", "text": "also, hurry"}]


def test_foreign_tool_ids_become_portable_in_call_and_result() -> None:
    """A conversation that fell back from Gemini: its ids carry a base64 thought signature."""
    gemini_id = "call_0__thought__CiQBcsjafH3+Q1/ab9Zq=="
    msgs = [{"role": "user", "content": "Weather in Paris and the time?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": gemini_id, "type": "function", "function": {"name": "get_weather",
                                                                   "arguments": '{"location": "Paris"}'}},
                {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": gemini_id, "content": "18C and cloudy"},
            {"role": "tool", "tool_call_id": "call_1", "content": "14:05"}]
    b = body(adapter(), ChatRequest(messages=msgs, params={"max_tokens": 256}))
    portable = portable_tool_id(gemini_id)
    assert portable.startswith("toolu_") and portable != gemini_id
    assert b == {"model": "claude-sonnet-4-5-20250929", "max_tokens": 256, "messages": [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": portable, "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "call_1", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": portable, "content": "18C and cloudy"},
            {"type": "tool_result", "tool_use_id": "call_1", "content": "14:05"}]}]}


def test_native_anthropic_blocks_pass_through() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    msgs = [{"role": "user", "content": [doc, {"type": "text", "text": "summarize"}]},
            {"role": "assistant", "content": [thinking],
             "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
            {"role": "tool", "tool_call_id": "t", "content": "ok"}]
    b = body(adapter(), ChatRequest(messages=msgs))
    assert b["messages"][0]["content"][0] == doc
    assert b["messages"][1]["content"] == [thinking, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]


def test_pdf_file_part_becomes_document() -> None:
    msgs = [{"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=",
                                                                   "filename": "a.pdf"}}]}]
    b = body(adapter(), ChatRequest(messages=msgs))
    assert b["messages"][0]["content"] == [{"type": "document", "title": "a.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]


@pytest.mark.parametrize(("messages", "error"), [
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}],
     UnsupportedParameterError),
    ([{"role": "function", "content": "x"}], UnsupportedParameterError),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}],
     BadRequestError),
    ([{"role": "assistant", "content": None,
       "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}],
     BadRequestError),
    ([{"role": "assistant", "content": None,
       "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}],
     BadRequestError),
])
def test_unencodable_messages_raise(messages: list[dict[str, Any]], error: type[Exception]) -> None:
    with pytest.raises(error):
        adapter().chat_to_wire(ChatRequest(messages=messages), spec())  # type: ignore[arg-type]


# ================================================================================ parameters


def test_max_tokens_defaults_from_catalog() -> None:
    a = adapter()
    assert body(a, ChatRequest(messages=user(), params={"max_tokens": 77}))["max_tokens"] == 77
    assert body(a, ChatRequest(messages=user(), params={"max_completion_tokens": 66}))["max_tokens"] == 66
    assert body(a, ChatRequest(messages=user()), spec(default_params={"max_tokens": 2048}))["max_tokens"] == 2048
    assert body(a, ChatRequest(messages=user()), spec(max_output=64_000))["max_tokens"] == 4096
    assert body(a, ChatRequest(messages=user()), spec(max_output=1000))["max_tokens"] == 1000


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str]) -> None:
    assert body(adapter(), ChatRequest(messages=user(), params={"stop": stop}))["stop_sequences"] == expected


def test_metadata_and_service_tier() -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"metadata": {"user_id": "u1", "team": "x"},
                                                             "service_tier": "default"}))
    assert b["metadata"] == {"user_id": "u1"}
    assert b["service_tier"] == "standard_only"
    assert "service_tier" not in body(adapter(), ChatRequest(messages=user(), params={"service_tier": "flex"}))


TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "d",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                                           "strict": True}}]


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "lookup"}}, {"type": "tool", "name": "lookup"}),
    (None, None),
])
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any] | None) -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"tools": TOOLS, "tool_choice": choice}))
    assert b["tools"] == [{"name": "lookup", "description": "d", "strict": True,
                           "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    assert b.get("tool_choice") == expected


def test_parallel_tool_calls_false_without_choice_and_choice_without_tools() -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"tools": TOOLS, "parallel_tool_calls": False}))
    assert b["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    b = body(adapter(), ChatRequest(messages=user(), params={"tool_choice": "auto"}))
    assert "tool_choice" not in b and "tools" not in b


def test_extra_body_and_default_params_merge() -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"temperature": 0.2, "extra_body": {"container": "c1"}}),
             spec(default_params={"temperature": 0.9, "top_k": 5}))
    assert b["temperature"] == 0.2 and b["top_k"] == 5 and b["container"] == "c1"


def test_sampling_params_removed_by_api_version_or_model() -> None:
    params = {"temperature": 0.2, "top_p": 0.5, "top_k": 3}
    b = body(adapter(profile={"anthropic_version": "2026-10-21"}), ChatRequest(messages=user(), params=params))
    assert not {"temperature", "top_p", "top_k"} & set(b)
    b = body(adapter(), ChatRequest(messages=user(), params=params), spec(api_requirements={"sampling_params": False}))
    assert not {"temperature", "top_p", "top_k"} & set(b)


@pytest.mark.parametrize(("params", "settings", "expected"), [
    ({"temperature": 0.7, "top_p": 0.9}, {}, {"temperature": 0.7}),  # what OpenAI clients commonly send
    ({"temperature": 0.7, "top_p": 0.9, "top_k": 40}, {}, {"temperature": 0.7, "top_k": 40}),
    ({"top_p": 0.9}, {}, {"top_p": 0.9}),
    ({"temperature": 0.7, "top_p": 0.9}, {"temperature_with_top_p": True}, {"temperature": 0.7, "top_p": 0.9}),
])
def test_temperature_and_top_p_are_not_sent_together(params: dict[str, Any], settings: dict[str, Any],
                                                     expected: dict[str, Any]) -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"max_tokens": 100, **params}),
             spec(api_requirements=settings))
    assert b == {"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": "Hello"}],
                 "max_tokens": 100, **expected}


# ================================================================================ reasoning


REASONING = ("reasoning", "tool_calling")


def test_thinking_budget_without_max_tokens_adds_room() -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"reasoning_effort": "medium", "temperature": 0.1,
                                                             "top_k": 4, "top_p": 0.5}), spec(caps=REASONING))
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert b["max_tokens"] == 4096 + 8192
    assert "temperature" not in b and "top_k" not in b
    assert b["top_p"] == 0.95


def test_thinking_budget_clipped_by_explicit_max_tokens_and_model_limit() -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"reasoning_effort": "high", "max_tokens": 6000}),
             spec(caps=REASONING))
    assert b["max_tokens"] == 6000 and b["thinking"]["budget_tokens"] == 3000
    b = body(adapter(), ChatRequest(messages=user(), params={"reasoning_effort": "max"}),
             spec(caps=REASONING, max_output=8192))
    assert b["max_tokens"] == 8192 and 1024 <= b["thinking"]["budget_tokens"] < 8192


def test_thinking_that_cannot_fit_raises() -> None:
    with pytest.raises(UnsupportedParameterError):
        adapter().chat_to_wire(ChatRequest(messages=user(), params={"reasoning_effort": "low", "max_tokens": 1024}),
                               spec(caps=REASONING))
    with pytest.raises(UnsupportedParameterError):
        adapter().chat_to_wire(ChatRequest(messages=user(), params={"reasoning_effort": "extreme"}),
                               spec(caps=REASONING))


def test_reasoning_effort_ignored_without_capability_or_none() -> None:
    assert "thinking" not in body(adapter(), ChatRequest(messages=user(), params={"reasoning_effort": "high"}))
    assert "thinking" not in body(adapter(), ChatRequest(messages=user(), params={"reasoning_effort": "none"}),
                                  spec(caps=REASONING))


CATALOG_CLAUDE = dict(caps=("reasoning", "tool_calling", "streaming"), max_output=64_000,
                      default_params={"max_tokens": 4096}, api_requirements={"max_tokens_required": True})


def routed(params: dict[str, Any], model: ModelSpec) -> ChatRequest:
    """The request as the router hands it over: ``default_params`` already copied into the params."""
    kept, _ = split_params("anthropic", model, params)
    return ChatRequest(messages=user("Plan a 3-day trip to Kyoto."), params=kept)


@pytest.mark.parametrize(("effort", "max_tokens", "budget"), [
    ("minimal", 4096 + 1024, 1024), ("low", 4096 + 2048, 2048), ("medium", 4096 + 8192, 8192),
    ("high", 4096 + 16384, 16384), ("xhigh", 4096 + 32768, 32768),
    ("max", 64_000, 32_000),  # 4096 + 65536 passes the model's 64K output limit: half of it is left for thinking
])
def test_catalog_default_max_tokens_is_not_a_caller_cap(effort: str, max_tokens: int, budget: int) -> None:
    m = spec(**CATALOG_CLAUDE)  # type: ignore[arg-type]
    req = routed({"reasoning_effort": effort}, m)
    assert req.params["max_tokens"] == 4096  # copied from default_params by the router
    assert THINKING_BUDGETS[effort] == budget or effort == "max"
    assert body(adapter(), req, m) == {
        "model": "claude-sonnet-4-5-20250929",
        "messages": [{"role": "user", "content": "Plan a 3-day trip to Kyoto."}],
        "max_tokens": max_tokens,
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }


def test_caller_max_tokens_still_caps_thinking() -> None:
    m = spec(**CATALOG_CLAUDE)  # type: ignore[arg-type]
    b = body(adapter(), routed({"reasoning_effort": "high", "max_tokens": 10_000}, m), m)
    assert (b["max_tokens"], b["thinking"]) == (10_000, {"type": "enabled", "budget_tokens": 5000})
    # called without the router: effective_params overlays the same default; the caller's other name wins
    direct = ChatRequest(messages=user(), params={"reasoning_effort": "high", "max_completion_tokens": 10_000})
    b = body(adapter(), direct, m)
    assert (b["max_tokens"], b["thinking"]) == (10_000, {"type": "enabled", "budget_tokens": 5000})


def test_caller_max_tokens_reads_the_catalog_default_as_default() -> None:
    m = spec(default_params={"max_tokens": 4096})
    assert caller_max_tokens({"max_tokens": 4096}, m) is None
    assert caller_max_tokens({"max_tokens": 4096, "max_completion_tokens": 9000}, m) == 9000
    assert caller_max_tokens({"max_tokens": 2000}, m) == 2000
    assert caller_max_tokens({"max_tokens": 4096}, spec()) == 4096  # no catalog default: the caller's


WEATHER_TOOL = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
WEATHER_TOOL_WIRE = [{"name": "get_weather", "description": "Current weather for a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}}]


@pytest.mark.parametrize(("choice", "wire_choice"), [
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_forced_tool_choice_drops_thinking(choice: Any, wire_choice: dict[str, Any],
                                           caplog: pytest.LogCaptureFixture) -> None:
    m = spec(**CATALOG_CLAUDE)  # type: ignore[arg-type]
    req = routed({"reasoning_effort": "high", "tools": WEATHER_TOOL, "tool_choice": choice, "temperature": 0.2}, m)
    with caplog.at_level(logging.INFO, logger="modelplex.providers.anthropic"):
        b = body(adapter(), req, m)
    assert b == {"model": "claude-sonnet-4-5-20250929",
                 "messages": [{"role": "user", "content": "Plan a 3-day trip to Kyoto."}],
                 "max_tokens": 4096, "temperature": 0.2, "tools": WEATHER_TOOL_WIRE, "tool_choice": wire_choice}
    assert any("forces tool use" in r.getMessage() for r in caplog.records)


def test_auto_tool_choice_keeps_thinking() -> None:
    m = spec(**CATALOG_CLAUDE)  # type: ignore[arg-type]
    b = body(adapter(), routed({"reasoning_effort": "low", "tools": WEATHER_TOOL, "tool_choice": "auto"}, m), m)
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert b["tool_choice"] == {"type": "auto"} and b["max_tokens"] == 4096 + 2048


def test_forced_tool_choice_drops_adaptive_thinking_and_effort() -> None:
    m = spec(caps=REASONING, default_params={"max_tokens": 4096}, api_requirements={"thinking": "adaptive"})
    b = body(adapter(), routed({"reasoning_effort": "high", "tools": WEATHER_TOOL, "tool_choice": "required"}, m), m)
    assert "thinking" not in b and "output_config" not in b and b["tool_choice"] == {"type": "any"}


@pytest.mark.parametrize("model_id", ["anthropic/claude-opus-4-7", "anthropic/claude-opus-4-8",
                                      "anthropic/claude-haiku-5-5", "anthropic/claude-fable-5"])
def test_bundled_adaptive_only_models_get_adaptive_thinking(model_id: str) -> None:
    m = bundled_catalog().get(model_id)
    req = routed({"reasoning_effort": "medium"}, m)
    assert body(adapter(), req, m) == {
        "model": model_id.removeprefix("anthropic/"),
        "messages": [{"role": "user", "content": "Plan a 3-day trip to Kyoto."}],
        "max_tokens": 4096, "thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}}


def test_adaptive_thinking_uses_effort() -> None:
    m = spec(caps=REASONING, api_requirements={"thinking": "adaptive", "thinking_display": "summarized"})
    b = body(adapter(), ChatRequest(messages=user(), params={"reasoning_effort": "minimal", "max_tokens": 900}), m)
    assert b["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert b["output_config"] == {"effort": "low"}
    assert b["max_tokens"] == 900


# ================================================================================ structured output


def test_native_structured_output_config() -> None:
    m = spec(caps=("structured_output",), api_requirements={"structured_output": "output_config"})
    req = ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT})
    wire = adapter().chat_to_wire(req, m)
    b = orjson.loads(wire.body or b"")
    assert b["output_config"] == {"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}}
    assert "tools" not in b and "anthropic-beta" not in wire.headers
    assert forced_tool_name(req, m) is None


def test_native_structured_output_beta_header() -> None:
    m = spec(caps=("structured_output",))
    a = adapter(profile={"structured_output": "output_format_beta", "anthropic_beta": "files-api-2025-04-14"})
    wire = a.chat_to_wire(ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT}), m)
    b = orjson.loads(wire.body or b"")
    assert b["output_format"] == {"type": "json_schema", "schema": WEATHER_SCHEMA}
    assert wire.headers["anthropic-beta"] == f"files-api-2025-04-14,{STRUCTURED_OUTPUTS_BETA}"


def test_native_setting_without_capability_falls_back_to_tool() -> None:
    m = spec(api_requirements={"structured_output": "output_config"})  # no structured_output capability
    b = body(adapter(), ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT}), m)
    assert "output_config" not in b
    assert b["tool_choice"] == {"type": "tool", "name": "weather_report"}


def test_forced_tool_for_json_schema_omits_thinking() -> None:
    req = ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT, "reasoning_effort": "high"})
    b = body(adapter(), req, spec(caps=REASONING))
    assert b["tools"] == [{"name": "weather_report", "description": "Respond with the final answer as this tool's input.",
                           "input_schema": WEATHER_SCHEMA}]
    assert b["tool_choice"] == {"type": "tool", "name": "weather_report"}
    assert "thinking" not in b
    assert forced_tool_name(req, spec(caps=REASONING)) == "weather_report"


def test_forced_tool_with_caller_tools_uses_any_and_avoids_name_clash() -> None:
    tools = [{"type": "function", "function": {"name": "weather_report", "parameters": {"type": "object"}}}]
    req = ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT, "tools": tools})
    b = body(adapter(), req)
    assert [t["name"] for t in b["tools"]] == ["weather_report", "weather_report_output"]
    assert b["tool_choice"] == {"type": "any"}
    assert forced_tool_name(req, spec()) == "weather_report_output"


def test_json_object_forces_a_free_form_object_tool() -> None:
    b = body(adapter(), ChatRequest(messages=user(), params={"response_format": {"type": "json_object"}}))
    assert b["tools"][0]["name"] == "json_response"
    assert b["tools"][0]["input_schema"] == {"type": "object", "additionalProperties": True}
    assert b["tool_choice"] == {"type": "tool", "name": "json_response"}


def test_tool_names_are_sanitized() -> None:
    assert tool_name_for("Weather Report (v2)!") == "Weather_Report__v2"
    assert tool_name_for(None) == "json_response"
    assert len(tool_name_for("x" * 100)) == 64


# ================================================================================ responses


def test_text_response_and_cache_usage() -> None:
    raw = (FIXTURES / "message_text.json").read_bytes()
    resp = adapter().chat_from_wire(raw, spec(), {"request-id": "req_123"})
    assert resp.content == "Hello! How can I help?"
    assert resp.finish_reason == "stop"
    assert resp.tool_calls == []
    assert resp.model == "anthropic/claude-sonnet-4-5-20250929" and resp.provider == "anthropic"
    assert resp.provider_request_id == "req_123"
    assert resp.provider_details["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    u = resp.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (4512, 3000, 1500, 9)
    assert u.input_tokens - u.cache_read_tokens - u.cache_write_tokens == 12
    assert u.provider_details["service_tier"] == "standard"
    assert u.provider_details["cache_creation"]["ephemeral_5m_input_tokens"] == 1500
    assert not u.estimated


def test_tool_use_response() -> None:
    resp = adapter().chat_from_wire((FIXTURES / "message_tool_use.json").read_bytes(), spec())
    assert resp.finish_reason == "tool_calls"
    assert resp.content == "I'll check the weather."
    assert [(c.id, c.name) for c in resp.tool_calls] == [("toolu_01A09q90qw90lq917835lq9", "get_weather"),
                                                         ("toolu_01B77ab2cd", "get_time")]
    assert json.loads(resp.tool_calls[0].arguments) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert json.loads(resp.tool_calls[1].arguments) == {}


def test_thinking_response() -> None:
    resp = adapter().chat_from_wire((FIXTURES / "message_thinking.json").read_bytes(), spec())
    assert resp.content == "27 * 453 = 12,231"
    assert resp.finish_reason == "length"
    assert resp.usage.reasoning_tokens == 320 and resp.usage.output_tokens == 350
    blocks = resp.provider_details["thinking_blocks"]
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking"]
    assert blocks[0]["signature"].startswith("EqQB")
    assert resp.provider_details["thinking"].startswith("The user wants 27 * 453")


def test_refusal_response() -> None:
    resp = adapter().chat_from_wire((FIXTURES / "message_refusal.json").read_bytes(), spec())
    assert resp.finish_reason == "content_filter"
    assert resp.content == ""
    assert resp.provider_details["stop_details"]["category"] == "cyber"


@pytest.mark.parametrize(("reason", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("something_new", "unknown"),
])
def test_stop_reasons(reason: str, expected: str) -> None:
    data = load("message_text.json") | {"stop_reason": reason}
    assert adapter().chat_from_wire(orjson.dumps(data), spec()).finish_reason == expected


def test_structured_tool_reply_becomes_content() -> None:
    raw = (FIXTURES / "message_structured_tool.json").read_bytes()
    req = ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT})
    plain = adapter().chat_from_wire(raw, spec())
    assert plain.tool_calls and plain.content is None
    resp = adapter().chat_from_wire(raw, spec(), req=req)
    assert json.loads(resp.content or "") == {"city": "Paris", "temperature_c": 21.5, "conditions": ["sunny"]}
    assert resp.tool_calls == []
    assert resp.finish_reason == "stop"


@pytest.mark.parametrize("payload", [
    b"<html>502 Bad Gateway</html>", b"[]", b'{"type": "message"}',
    b'{"type": "message", "content": ["text"]}',
    b'{"type": "message", "content": [{"type": "tool_use", "name": "f"}]}',
    b'{"type": "message", "content": [{"type": "text"}]}',
    b'{"type": "error", "error": {"type": "api_error", "message": "x"}}',
])
def test_malformed_responses_raise_invalid_response(payload: bytes) -> None:
    with pytest.raises(InvalidResponseError):
        adapter().chat_from_wire(payload, spec())


def test_missing_usage_is_flagged_estimated() -> None:
    data = load("message_text.json")
    del data["usage"]
    resp = adapter().chat_from_wire(orjson.dumps(data), spec())
    assert resp.usage.estimated


def test_missing_usage_is_estimated_from_the_request() -> None:
    needs_token_counter()
    data = load("message_text.json")
    del data["usage"]
    resp = adapter().chat_from_wire(orjson.dumps(data), spec(),
                                    req=ChatRequest(messages=user("a fairly long question " * 10)))
    assert resp.usage.estimated
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0


# ================================================================================ errors

ERRORS = load("errors.json")


@pytest.mark.parametrize(("case", "cls", "retry_after"), [
    ("overloaded", OverloadedError, None),
    ("rate_limit", RateLimitError, 17.0),
    ("spend_cap", QuotaExceededError, None),
    ("ramp", RateLimitError, 3.0),
    ("billing", QuotaExceededError, None),
    ("invalid_request", BadRequestError, None),
    ("prompt_too_long", ContextWindowExceededError, None),  # from its message: no code says so
    ("request_too_large", BadRequestError, None),  # a byte limit: a larger window would not help
    ("authentication", AuthenticationError, None),
    ("permission", PermissionDeniedError, None),
    ("not_found", NotFoundError, None),
    ("api_error", ServerError, None),
    ("timeout", ServerError, None),
    ("conflict", ConflictError, None),
])
def test_classify_error_fixtures(case: str, cls: type[ProviderError], retry_after: float | None) -> None:
    data = ERRORS[case]
    err = adapter().classify_error(data["status"], data.get("headers", {}), orjson.dumps(data["body"]), spec())
    assert type(err) is cls
    assert err.status_code == data["status"]
    assert err.retry_after == retry_after
    assert err.error_type == data["body"]["error"]["type"]
    assert err.error_code == (data["body"]["error"].get("details") or {}).get("error_code")
    assert err.request_id == data["body"].get("request_id")
    assert err.provider == "anthropic" and err.model == "anthropic/claude-sonnet-4-5-20250929"


def test_request_too_large_is_not_a_context_window_error() -> None:
    """413 is Anthropic's 32 MB byte limit (answered by Cloudflare): a larger window would not help."""
    for status, payload in [
        (413, ERRORS["request_too_large"]["body"]),
        (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Request body too large.",
                                          "details": {"error_code": "request_body_too_large_after_decoding"}}}),
    ]:
        err = adapter().classify_error(status, {}, orjson.dumps(payload), spec())
        assert type(err) is BadRequestError and not isinstance(err, ContextWindowExceededError)
        assert err.status_code == status and not err.retryable


def test_prompt_too_long_is_read_from_the_message_of_an_invalid_request_only() -> None:
    """Anthropic gives the too-long prompt no code: its message is the only mark, read on that type alone."""
    data = ERRORS["prompt_too_long"]
    err = adapter().classify_error(400, {}, orjson.dumps(data["body"]), spec())
    assert isinstance(err, ContextWindowExceededError) and err.status_code == 400
    both = {"type": "error", "error": {"type": "invalid_request_error", "message":
            "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input length "
            "or `max_tokens` and try again"}}
    assert isinstance(adapter().classify_error(400, {}, orjson.dumps(both), spec()), ContextWindowExceededError)
    other = {"type": "error", "error": {"type": "api_error", "message": "prompt is too long"}}
    assert type(adapter().classify_error(500, {}, orjson.dumps(other), spec())) is ServerError
    plain = {"type": "error", "error": {"type": "invalid_request_error", "message": "messages: roles must alternate"}}
    assert type(adapter().classify_error(400, {}, orjson.dumps(plain), spec())) is BadRequestError


def test_rate_limit_reset_header_and_request_id_header() -> None:
    body_ = orjson.dumps(ERRORS["rate_limit"]["body"])
    headers = {"anthropic-ratelimit-requests-reset": "2030-01-01T00:00:30Z", "request-id": "req_hdr"}
    err = adapter().classify_error(429, headers, body_, spec())
    assert isinstance(err, RateLimitError)
    assert err.retry_after is not None and err.retry_after > 0
    assert err.request_id == "req_hdr"


@pytest.mark.parametrize(("status", "cls"), [(502, ServerError), (529, OverloadedError), (413, BadRequestError),
                                             (401, AuthenticationError)])
def test_classify_non_json_bodies_by_status(status: int, cls: type[ProviderError]) -> None:
    err = adapter().classify_error(status, {}, b"<html>cloudflare</html>", spec())
    assert type(err) is cls
    assert err.status_code == status


def test_error_messages_never_carry_the_key() -> None:
    body_ = orjson.dumps({"type": "error", "error": {"type": "authentication_error", "message": f"bad key {KEY}"}})
    err = adapter().classify_error(401, {}, body_, spec())
    assert KEY not in str(err) and KEY not in repr(err)
    err = adapter().classify_error(500, {}, f"oops {KEY}".encode(), spec())
    assert KEY not in str(err) and KEY not in str(err.body)


# ================================================================================ stream decoding


async def test_stream_text_fixture() -> None:
    chunks = await decode("stream_text.sse")
    assert "".join(c.delta for c in chunks) == "Hello!"
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.cache_read_tokens, final.usage.output_tokens) == (2073, 2048, 15)
    assert all(c.usage is None and c.finish_reason is None for c in chunks[:-1])


async def test_stream_tool_use_fixture() -> None:
    chunks = await decode("stream_tool_use.sse")
    assert "".join(c.delta for c in chunks) == "Okay, let's check the weather"
    deltas = [d for c in chunks for d in c.tool_calls]
    assert (deltas[0].index, deltas[0].id, deltas[0].name) == (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    args0 = "".join(d.arguments for d in deltas if d.index == 0)
    assert json.loads(args0) == {"location": "San Francisco, CA"}
    second = [d for d in deltas if d.index == 1]
    assert second[0].name == "get_time" and json.loads("".join(d.arguments for d in second)) == {}
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 89


async def test_stream_thinking_fixture() -> None:
    chunks = await decode("stream_thinking.sse")
    reasoning = "".join(c.reasoning_delta for c in chunks)
    assert reasoning.startswith("Let me solve this step by step") and "453 = 400 + 50 + 3" in reasoning
    assert "".join(c.delta for c in chunks) == "27 * 453 = 12,231"
    usage = chunks[-1].usage
    assert usage is not None and usage.reasoning_tokens == 400 and usage.output_tokens == 420


async def test_stream_thinking_blocks_carry_the_signature() -> None:
    chunks = await decode("stream_thinking.sse")
    block = {
        "type": "thinking",
        "thinking": "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3",
        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}
    whole = [c for c in chunks[:-1] if c.raw is not None]
    assert [c.raw for c in whole] == [{"thinking_block": block}]  # as the block closes, before the text
    assert not (whole[0].delta or whole[0].reasoning_delta or whole[0].tool_calls)
    closed_at = chunks.index(whole[0])
    assert not any(c.delta for c in chunks[:closed_at]) and any(c.delta for c in chunks[closed_at:])
    assert chunks[-1].raw == {"thinking_blocks": [block]}


async def test_stream_thinking_blocks_match_the_non_streaming_shape() -> None:
    """Interleaved thinking before a tool call: both blocks, in order, as ``chat_from_wire`` reports them."""
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}
    text = (sse_event("message_start", {"type": "message_start", "message": {
                "id": "msg_01", "type": "message", "role": "assistant", "content": [],
                "usage": {"input_tokens": 40, "output_tokens": 1}}})
            + sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "thinking_delta", "thinking": "Need the weather."}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "signature_delta", "signature": "EqQBsig0"}})
            + sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + sse_event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": redacted})
            + sse_event("content_block_stop", {"type": "content_block_stop", "index": 1})
            + sse_event("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
                "type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {
                "type": "input_json_delta", "partial_json": '{"city": "Paris"}'}})
            + sse_event("content_block_stop", {"type": "content_block_stop", "index": 2})
            + sse_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                          "usage": {"output_tokens": 60}})
            + sse_event("message_stop", {"type": "message_stop"}))
    chunks = await decode(text)
    blocks = [{"type": "thinking", "thinking": "Need the weather.", "signature": "EqQBsig0"}, redacted]
    assert chunks[-1].raw == {"thinking_blocks": blocks}
    assert [c.raw["thinking_block"] for c in chunks[:-1] if c.raw] == blocks
    resp = adapter().chat_from_wire(orjson.dumps({
        "id": "msg_01", "type": "message", "role": "assistant", "stop_reason": "tool_use",
        "content": [*blocks, {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
                              "input": {"city": "Paris"}}]}), spec())
    assert resp.provider_details["thinking_blocks"] == chunks[-1].raw["thinking_blocks"]


async def test_stream_without_thinking_has_no_raw() -> None:
    chunks = await decode("stream_text.sse")
    assert chunks[-1].raw is None


async def test_stream_reports_the_matched_stop_sequence() -> None:
    text = (sse_event("message_start", {"type": "message_start", "message": {
                "id": "msg_01", "type": "message", "role": "assistant", "content": [],
                "usage": {"input_tokens": 10, "output_tokens": 1}}})
            + sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": "1, 2, 3"}})
            + sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + sse_event("message_delta", {"type": "message_delta", "delta": {
                "stop_reason": "stop_sequence", "stop_sequence": "4"}, "usage": {"output_tokens": 7}})
            + sse_event("message_stop", {"type": "message_stop"}))
    chunks = await decode(text)
    assert chunks[-1].finish_reason == "stop" and chunks[-1].raw == {"stop_sequence": "4"}


async def test_stream_error_event_raises_classified_error() -> None:
    with pytest.raises(OverloadedError) as info:
        await decode("stream_error_overloaded.sse")
    assert info.value.status_code == 529
    assert info.value.error_type == "overloaded_error"


async def test_stream_without_message_stop_is_invalid() -> None:
    text = (FIXTURES / "stream_text.sse").read_text().split("event: message_stop")[0]
    with pytest.raises(InvalidResponseError):
        await decode(text)


@pytest.mark.parametrize("text", [
    sse_event("message_start", {"type": "message_start", "message": {"id": "m", "usage": {}}}) +
    "event: content_block_delta\ndata: {not json\n\n",
    sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": "x"}}),
    sse_event("message_start", {"type": "message_start", "message": {"id": "m"}}) +
    sse_event("content_block_delta", {"type": "content_block_delta", "index": 3,
                                      "delta": {"type": "text_delta", "text": "x"}}),
])
async def test_stream_protocol_violations_are_invalid(text: str) -> None:
    with pytest.raises(InvalidResponseError):
        await decode(text)


async def test_stream_ignores_unknown_events_and_missing_usage() -> None:
    text = (sse_event("message_start", {"type": "message_start", "message": {"id": "m", "content": []}})
            + sse_event("brand_new_event", {"type": "brand_new_event"})
            + sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "server_tool_use", "id": "s", "name": "web"}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "citations_delta", "citation": {}}})
            + sse_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
            + sse_event("message_stop", {"type": "message_stop"}))
    chunks = await decode(text)
    assert len(chunks) == 1
    assert chunks[0].finish_reason == "stop" and chunks[0].usage is None


async def test_stream_structured_tool_arrives_as_text() -> None:
    req = ChatRequest(messages=user(), params={"response_format": WEATHER_FORMAT}, stream=True)
    text = (sse_event("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5,
                                                                                                   "output_tokens": 1}}})
            + sse_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": "weather_report", "input": {}}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "input_json_delta", "partial_json": '{"city": "Oslo",'}})
            + sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "input_json_delta", "partial_json": ' "temperature_c": 3}'}})
            + sse_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                          "usage": {"output_tokens": 12}})
            + sse_event("message_stop", {"type": "message_stop"}))
    chunks = await decode(text, req=req)
    assert json.loads("".join(c.delta for c in chunks)) == {"city": "Oslo", "temperature_c": 3}
    assert not any(c.tool_calls for c in chunks)
    assert chunks[-1].finish_reason == "stop"


# ================================================================================ count tokens and health


def test_count_tokens_wire_and_parse() -> None:
    req = ChatRequest(messages=[{"role": "system", "content": "s"}, *user()],
                      params={"max_tokens": 10, "tools": TOOLS, "temperature": 0.1}, stream=True)
    wire = adapter().count_tokens_to_wire(req, spec())
    assert wire.url == "https://api.anthropic.com/v1/messages/count_tokens"
    b = orjson.loads(wire.body or b"")
    assert set(b) == {"model", "messages", "system", "tools"}
    count = adapter().count_tokens_from_wire(b'{"input_tokens": 2095}', spec())
    assert (count.tokens, count.exact, count.method) == (2095, True, "anthropic:count_tokens")
    with pytest.raises(InvalidResponseError):
        adapter().count_tokens_from_wire(b"{}", spec())


def test_health_to_wire() -> None:
    wire = adapter("http://h").health_to_wire()
    assert (wire.method, wire.url, wire.body) == ("GET", "http://h/v1/models?limit=1", None)
    assert wire.headers["x-api-key"] == KEY and wire.headers["anthropic-version"] == "2023-06-01"
    assert "content-type" not in wire.headers


def test_repr_hides_the_key() -> None:
    a = adapter()
    assert KEY not in repr(a) and KEY not in repr(a.provider)


# ================================================================================ loopback I/O


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(protocols=("anthropic",)) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_complete_round_trip(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Paris is the capital of France.")
    req = ChatRequest(messages=[{"role": "system", "content": "Be brief."}, *user("Capital of France?")],
                      params={"max_tokens": 50, "temperature": 0.2})
    resp = await adapter(fake.base_url).complete(session, req, spec())
    assert resp.content == "Paris is the capital of France."
    assert resp.finish_reason == "stop"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens == 8
    assert resp.provider_request_id and resp.provider_request_id.startswith("req_")
    sent = fake.captured[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["system"] == "Be brief." and sent.json["max_tokens"] == 50


async def test_stream_round_trip(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three four five six", stream_chunks=3)
    req = ChatRequest(messages=user("count"), stream=True)
    chunks = [c async for c in adapter(fake.base_url).stream(session, req, spec())]
    assert "".join(c.delta for c in chunks) == "one two three four five six"
    assert len([c for c in chunks if c.delta]) == 3
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 7


async def test_tool_call_round_trip(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(tool_call={"name": "lookup", "arguments": {"q": "modelplex"}})
    a = adapter(fake.base_url)
    resp = await a.complete(session, ChatRequest(messages=user("find"), params={"tools": TOOLS}), spec())
    assert resp.finish_reason == "tool_calls"
    assert resp.tool_calls[0].name == "lookup" and json.loads(resp.tool_calls[0].arguments) == {"q": "modelplex"}
    follow = [*user("find"), {"role": "assistant", "content": None, "tool_calls": [resp.tool_calls[0].to_openai()]},
              {"role": "tool", "tool_call_id": resp.tool_calls[0].id, "content": "found it"}]
    fake.behavior = Behavior(reply="Done.")
    again = await a.complete(session, ChatRequest(messages=follow, params={"tools": TOOLS}), spec())
    assert again.content == "Done."  # the fake validated the tool_use/tool_result pairing
    fake.behavior = Behavior(tool_call={"name": "lookup", "arguments": {"q": "streamed"}})
    chunks = [c async for c in a.stream(session, ChatRequest(messages=user("find"), params={"tools": TOOLS},
                                                             stream=True), spec())]
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].name == "lookup" and deltas[0].id
    assert json.loads("".join(d.arguments for d in deltas)) == {"q": "streamed"}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_structured_output_via_forced_tool(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    req = ChatRequest(messages=user("weather in Paris"), params={"response_format": WEATHER_FORMAT})
    resp = await adapter(fake.base_url).complete(session, req, spec())
    parsed = json.loads(resp.content or "")
    assert set(parsed) == {"city", "temperature_c"} and isinstance(parsed["temperature_c"], float)
    assert resp.tool_calls == [] and resp.finish_reason == "stop"
    chunks = [c async for c in adapter(fake.base_url).stream(session, ChatRequest(
        messages=user("weather"), params={"response_format": WEATHER_FORMAT}, stream=True), spec())]
    assert json.loads("".join(c.delta for c in chunks)) == parsed
    assert chunks[-1].finish_reason == "stop"


async def test_structured_output_native(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    m = spec(caps=("structured_output",), api_requirements={"structured_output": "output_config"})
    resp = await adapter(fake.base_url).complete(
        session, ChatRequest(messages=user("weather"), params={"response_format": WEATHER_FORMAT}), m)
    assert set(json.loads(resp.content or "")) == {"city", "temperature_c"}
    assert "output_config" in fake.captured[-1].json and "tools" not in fake.captured[-1].json


async def test_thinking_round_trip(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="42")
    m = spec(caps=REASONING)
    resp = await adapter(fake.base_url).complete(
        session, ChatRequest(messages=user("meaning?"), params={"reasoning_effort": "low", "temperature": 0.3}), m)
    assert resp.content == "42"
    assert resp.provider_details["thinking_blocks"][0]["signature"].startswith("sig_")
    assert 0 < resp.usage.reasoning_tokens < resp.usage.output_tokens
    chunks = [c async for c in adapter(fake.base_url).stream(
        session, ChatRequest(messages=user("meaning?"), params={"reasoning_effort": "low"}, stream=True), m)]
    assert "".join(c.reasoning_delta for c in chunks) and "".join(c.delta for c in chunks) == "42"


async def test_prompt_caching_round_trip(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    msgs = [{"role": "system", "content": [{"type": "text", "text": "policy " * 400, "cache_control": {"type": "ephemeral"}}]},
            *user("question")]
    a = adapter(fake.base_url)
    first = await a.complete(session, ChatRequest(messages=msgs), spec())
    second = await a.complete(session, ChatRequest(messages=msgs), spec())
    assert first.usage.cache_write_tokens == 700 and first.usage.cache_read_tokens == 0  # 2800 chars / 4
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens and second.usage.cache_write_tokens == 0
    assert first.usage.input_tokens == second.usage.input_tokens


async def test_count_tokens_remote_and_health(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    a = adapter(fake.base_url)
    count = await a.count_tokens_remote(session, ChatRequest(messages=user("x" * 400)), spec())
    assert count.exact and count.tokens == 100
    status = await a.health_check(session)
    assert status.ok and status.detail == "ok"
    assert fake.captured[-1].path == "/v1/models"
    fake.plan.fail_next(Fault("auth"))
    status = await a.health_check(session)
    assert not status.ok and status.detail == "authentication"


@pytest.mark.parametrize(("fault", "cls", "status"), [
    (Fault("rate_limit", retry_after=7), RateLimitError, 429),
    (Fault("overloaded"), OverloadedError, 529),
    (Fault("quota"), QuotaExceededError, 402),
    (Fault("quota", status=429), QuotaExceededError, 429),
    (Fault("context_window"), ContextWindowExceededError, 400),
    (Fault("context_window", status=413), BadRequestError, 413),  # the fake's 413 is request_too_large
    (Fault("auth"), AuthenticationError, 401),
    (Fault("permission"), PermissionDeniedError, 403),
    (Fault("not_found"), NotFoundError, 404),
    (Fault("bad_request"), BadRequestError, 400),
    (Fault("server_error"), ServerError, 500),
    (Fault("server_error", status=504), ServerError, 504),
    (Fault("status", status=503), ServerError, 503),
    (Fault("malformed"), InvalidResponseError, None),
    (Fault("truncated"), InvalidResponseError, None),
    (Fault("stream_cut"), InvalidResponseError, None),
])
async def test_faults_become_typed_errors(fake: FakeProviderServer, session: aiohttp.ClientSession, fault: Fault,
                                          cls: type[ProviderError], status: int | None) -> None:
    fake.plan.fail_next(fault)
    with pytest.raises(ProviderError) as info:
        await adapter(fake.base_url).complete(session, ChatRequest(messages=user()), spec())
    assert type(info.value) is cls
    assert info.value.status_code == status
    if fault.kind == "rate_limit":
        assert info.value.retry_after == 7.0
    if fault.kind == "quota" and fault.status == 429:
        assert info.value.retry_after is None and info.value.error_code == "enforced_spend_limit_reached"


async def test_content_policy_is_an_in_band_refusal(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"))
    resp = await adapter(fake.base_url).complete(session, ChatRequest(messages=user()), spec())
    assert resp.finish_reason == "content_filter" and resp.content == ""


async def test_errors_before_the_first_chunk_are_retryable_types(fake: FakeProviderServer,
                                                                  session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("overloaded"))
    with pytest.raises(OverloadedError) as info:
        async for _ in adapter(fake.base_url).stream(session, ChatRequest(messages=user(), stream=True), spec()):
            pass
    assert info.value.retryable


async def test_stream_cut_after_first_chunk(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    needs_token_counter()  # the partial usage is estimated from what arrived
    fake.behavior = Behavior(reply="alpha beta gamma delta", stream_chunks=4)
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for chunk in adapter(fake.base_url).stream(session, ChatRequest(messages=user(), stream=True), spec()):
            got.append(chunk.delta)
    assert "".join(got) == info.value.partial_content == "alpha "
    assert info.value.partial_usage is not None
    assert info.value.partial_usage.estimated and info.value.partial_usage.output_tokens > 0


@pytest.mark.parametrize("fault", [Fault("overloaded", status=200, after_chunks=1), Fault("truncated"),
                                   Fault("malformed")])
async def test_broken_streams(fake: FakeProviderServer, session: aiohttp.ClientSession, fault: Fault) -> None:
    if fault.kind != "malformed":
        needs_token_counter()  # the partial usage is estimated from what arrived
    fake.behavior = Behavior(reply="alpha beta gamma delta", stream_chunks=4)
    fake.plan.fail_next(fault)
    got: list[StreamChunk] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in adapter(fake.base_url).stream(session, ChatRequest(messages=user(), stream=True), spec()):
            got.append(chunk)
    if fault.kind == "malformed":  # nothing reached the caller: the ordinary, retryable error
        assert type(info.value) is InvalidResponseError and not got
    else:
        assert isinstance(info.value, StreamInterruptedError) and got


async def test_key_never_reaches_logs_or_errors(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a = adapter(fake.base_url)
    await a.complete(session, ChatRequest(messages=user()), spec())
    errors: list[BaseException] = []
    for fault in (Fault("auth"), Fault("rate_limit", retry_after=1), Fault("malformed")):
        fake.plan.fail_next(fault)
        try:
            await a.complete(session, ChatRequest(messages=user()), spec())
        except ProviderError as exc:
            errors.append(exc)
    assert len(errors) == 3
    for exc in errors:
        assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in str(getattr(exc, "body", ""))
    assert KEY not in caplog.text


def _tool_turn(resp: Any, thinking_blocks: Any = None) -> list[dict[str, Any]]:
    """The conversation after ``resp`` asked for a tool: its assistant turn (with ``thinking_blocks`` when
    given) and the tool's result."""
    call = resp.tool_calls[0]
    assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]}
    if thinking_blocks is not None:
        assistant["thinking_blocks"] = thinking_blocks
    return [*user("Weather in Paris?"), assistant,
            {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"}]


async def test_thinking_blocks_open_a_tool_use_continuation(fake: FakeProviderServer,
                                                            session: aiohttp.ClientSession) -> None:
    """With thinking on, the API refuses a tool result whose assistant turn lost its signed thinking."""
    m = spec(caps=REASONING)
    a = adapter(fake.base_url)
    fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}})
    params = {"reasoning_effort": "low", "tools": WEATHER_TOOL}
    first = await a.complete(session, ChatRequest(messages=user("Weather in Paris?"), params=params), m)
    blocks = first.provider_details["thinking_blocks"]
    assert first.tool_calls and blocks[0]["signature"].startswith("sig_")

    fake.behavior = Behavior(reply="Sunny, 18C.")
    with pytest.raises(BadRequestError, match="must start with a thinking block"):
        await a.complete(session, ChatRequest(messages=_tool_turn(first), params=params), m)
    resp = await a.complete(session, ChatRequest(messages=_tool_turn(first, blocks), params=params), m)
    assert resp.content == "Sunny, 18C."
    sent = fake.captured[-1].json["messages"][1]["content"]
    assert sent[0] == blocks[0] and sent[1]["type"] == "tool_use"

    forged = [{**blocks[0], "thinking": "something else"}]
    with pytest.raises(BadRequestError, match="Invalid `signature`"):
        await a.complete(session, ChatRequest(messages=_tool_turn(first, forged), params=params), m)


def test_thinking_blocks_are_sent_only_with_thinking_on() -> None:
    blocks = [{"type": "thinking", "thinking": "t", "signature": "s", "extra": 1},
              {"type": "redacted_thinking", "data": "d"}]
    msgs = [*user("q"), {"role": "assistant", "content": "a", "thinking_blocks": blocks}, *user("again")]
    m = spec(caps=REASONING)
    on = body(adapter(), ChatRequest(messages=msgs, params={"reasoning_effort": "low"}), m)
    assert on["messages"][1]["content"] == [{"type": "thinking", "thinking": "t", "signature": "s"},
                                            {"type": "redacted_thinking", "data": "d"}, {"type": "text", "text": "a"}]
    off = body(adapter(), ChatRequest(messages=msgs), m)
    assert off["messages"][1]["content"] == "a"


@pytest.mark.parametrize("bad", ["text", [{"type": "thinking", "thinking": "t"}], [{"type": "text", "text": "x"}]])
def test_malformed_thinking_blocks_are_a_bad_request(bad: Any) -> None:
    msgs = [*user("q"), {"role": "assistant", "content": "a", "thinking_blocks": bad}, *user("again")]
    with pytest.raises(BadRequestError, match="thinking_blocks"):
        body(adapter(), ChatRequest(messages=msgs, params={"reasoning_effort": "low"}), spec(caps=REASONING))


def test_tool_error_flag_reaches_the_tool_result() -> None:
    msgs = [*user("q"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "city not found", "is_error": True}]
    b = body(adapter(), ChatRequest(messages=msgs))
    assert b["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "city not found",
                                            "is_error": True}]
