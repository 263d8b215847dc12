"""The OpenAI wire helpers' short paths give exactly what the general code gives.

``parse_usage`` answers the common usage shape (plain counts, details all zero or absent) without the
full walk; these tests hold it, and the general path, to a plain reference implementation of the
documented rules, on hand-picked vendor bodies and on generated ones. They also pin the request-side
short cuts (no parameters to place, clean messages passed through) and the shared ``ClientTimeout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplex.catalog.schema import ModelSpec
from modelplex.errors import APIConnectionError, APITimeoutError, InvalidResponseError
from modelplex.providers import _openai_wire as wire
from modelplex.providers.base import ProviderConfig, WireRequest, request_timeout
from modelplex.providers.openai_compat import OpenAIAdapter
from modelplex.types import ChatRequest, Response, ToolCall, Usage

# ------------------------------------------------------------------------------ the reference rules


def _ref_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


_REF_DETAIL_KEYS = (
    ("prompt_tokens_details", "audio_tokens", "audio_input_tokens"),
    ("prompt_tokens_details", "image_tokens", "image_input_tokens"),
    ("completion_tokens_details", "audio_tokens", "audio_output_tokens"),
    ("completion_tokens_details", "accepted_prediction_tokens", "accepted_prediction_tokens"),
    ("completion_tokens_details", "rejected_prediction_tokens", "rejected_prediction_tokens"),
    ("completion_tokens_details", "image_tokens", "image_output_tokens"),
)


def reference_usage(u: Mapping[str, Any]) -> Usage:
    """The usage rules spelled out one figure at a time, with no short cut."""
    ptd = u.get("prompt_tokens_details")
    ptd = ptd if isinstance(ptd, Mapping) else {}
    ctd = u.get("completion_tokens_details")
    ctd = ctd if isinstance(ctd, Mapping) else {}
    cached = _ref_int(ptd.get("cached_tokens")) or _ref_int(u.get("prompt_cache_hit_tokens"))
    cost = u.get("cost")
    details: dict[str, Any] = {}
    for section, key, out in _REF_DETAIL_KEYS:
        v = _ref_int((ptd if section == "prompt_tokens_details" else ctd).get(key))
        if v:
            details[out] = v
    for key in ("cost_details", "is_byok"):
        if key in u and u[key] is not None:
            details[key] = u[key]
    prompt = _ref_int(u.get("prompt_tokens"))
    completion = _ref_int(u.get("completion_tokens"))
    reasoning = _ref_int(ctd.get("reasoning_tokens"))
    if reasoning and _ref_int(u.get("total_tokens")) == prompt + completion + reasoning:
        completion += reasoning
    return Usage(input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached,
                 cache_write_tokens=_ref_int(ptd.get("cache_write_tokens")), reasoning_tokens=reasoning,
                 provider_cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool)
                 else None,
                 provider_details=details)


def assert_same_usage(got: Usage, want: Usage) -> None:
    assert got == want
    assert list(got.provider_details.items()) == list(want.provider_details.items())  # same order too
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
                 "provider_cost_usd"):
        assert type(getattr(got, name)) is type(getattr(want, name)), name


# ------------------------------------------------------------------------------ vendor bodies

BENCH = {"prompt_tokens": 14, "completion_tokens": 12, "total_tokens": 26}
OPENAI_ZERO_DETAILS = {
    "prompt_tokens": 14, "completion_tokens": 12, "total_tokens": 26,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
OPENAI_CACHED_REASONING = {
    "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0, "accepted_prediction_tokens": 3,
                                  "rejected_prediction_tokens": 1},
}
REASONING_COUNTED_APART = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 35,
                           "completion_tokens_details": {"reasoning_tokens": 20}}
OPENROUTER = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "cost": 0.00042, "is_byok": False,
              "cost_details": {"upstream_inference_cost": None},
              "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 7}}
DEEPSEEK = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110, "prompt_cache_hit_tokens": 64,
            "prompt_cache_miss_tokens": 36}
AUDIO_AND_IMAGES = {"prompt_tokens": 50, "completion_tokens": 40,
                    "prompt_tokens_details": {"audio_tokens": 5, "image_tokens": 6},
                    "completion_tokens_details": {"image_tokens": 8, "rejected_prediction_tokens": 1,
                                                  "accepted_prediction_tokens": 2, "audio_tokens": 7}}
ODD_VALUES = {"prompt_tokens": 12.9, "completion_tokens": True, "total_tokens": "26",
              "prompt_tokens_details": "n/a", "completion_tokens_details": [1, 2]}
NULL_DETAILS = {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": None,
                "completion_tokens_details": {"reasoning_tokens": None, "audio_tokens": 0.0}}
STRING_FIGURE_IN_DETAILS = {"prompt_tokens": 3, "completion_tokens": 4,
                            "completion_tokens_details": {"audio_tokens": "7"}}

BODIES = [BENCH, OPENAI_ZERO_DETAILS, OPENAI_CACHED_REASONING, REASONING_COUNTED_APART, OPENROUTER, DEEPSEEK,
          AUDIO_AND_IMAGES, ODD_VALUES, NULL_DETAILS, STRING_FIGURE_IN_DETAILS, {}]


@pytest.mark.parametrize("u", BODIES)
def test_usage_matches_the_reference_on_vendor_bodies(u: dict[str, Any]) -> None:
    want = reference_usage(u)
    assert_same_usage(wire.parse_usage(u), want)
    assert_same_usage(wire._parse_usage_full(u), want)
    assert_same_usage(wire.parse_usage(MappingProxyType(u)), want)  # a Mapping that is not a dict


def test_usage_figures_of_the_usual_bodies() -> None:
    assert wire.parse_usage(BENCH) == Usage(input_tokens=14, output_tokens=12)
    assert wire.parse_usage(OPENAI_ZERO_DETAILS) == Usage(input_tokens=14, output_tokens=12)
    u = wire.parse_usage(OPENAI_CACHED_REASONING)
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens) == (2006, 300, 1920, 192)
    assert u.provider_details == {"accepted_prediction_tokens": 3, "rejected_prediction_tokens": 1}
    assert wire.parse_usage(REASONING_COUNTED_APART).output_tokens == 25
    o = wire.parse_usage(OPENROUTER)
    assert o.provider_cost_usd == pytest.approx(0.00042) and o.cache_write_tokens == 7
    assert o.provider_details == {"cost_details": {"upstream_inference_cost": None}, "is_byok": False}
    assert wire.parse_usage(DEEPSEEK).cache_read_tokens == 64


@pytest.mark.parametrize("u", [BENCH, OPENAI_ZERO_DETAILS, NULL_DETAILS, {"prompt_tokens": 1},
                               {"prompt_tokens": 1, "prompt_tokens_details": {}}])
def test_the_plain_shape_takes_the_short_path(u: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def general(_: Any) -> Usage:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(wire, "_parse_usage_full", general)
    assert_same_usage(wire.parse_usage(u), reference_usage(u))


@pytest.mark.parametrize("u", [OPENAI_CACHED_REASONING, OPENROUTER, DEEPSEEK, STRING_FIGURE_IN_DETAILS,
                               MappingProxyType(BENCH)])
def test_anything_else_takes_the_general_path(u: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    full = wire._parse_usage_full

    def general(v: Mapping[str, Any]) -> Usage:
        calls.append(v)
        return full(v)

    monkeypatch.setattr(wire, "_parse_usage_full", general)
    assert_same_usage(wire.parse_usage(u), reference_usage(u))
    assert calls == [u]


# ------------------------------------------------------------------------------ generated bodies

_DETAIL_NAMES = ["cached_tokens", "cache_write_tokens", "audio_tokens", "image_tokens", "reasoning_tokens",
                 "accepted_prediction_tokens", "rejected_prediction_tokens", "other_tokens"]
figure = st.one_of(
    st.integers(min_value=-5, max_value=10**7), st.just(0), st.just(0.0), st.none(), st.booleans(),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.text(max_size=3),
    st.lists(st.integers(min_value=-9, max_value=9), max_size=2),
)
zero = st.sampled_from([0, 0.0, None, False])
section = st.one_of(st.none(), figure, st.dictionaries(st.sampled_from(_DETAIL_NAMES), figure, max_size=6))
zero_section = st.one_of(st.none(), st.dictionaries(st.sampled_from(_DETAIL_NAMES), zero, max_size=6))
counts = st.integers(min_value=0, max_value=10**6)

any_usage = st.fixed_dictionaries({}, optional={
    "prompt_tokens": figure, "completion_tokens": figure, "total_tokens": figure,
    "prompt_tokens_details": section, "completion_tokens_details": section,
    "prompt_cache_hit_tokens": figure, "prompt_cache_miss_tokens": figure, "cost": figure,
    "cost_details": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), figure, max_size=2)),
    "is_byok": st.one_of(st.none(), st.booleans()),
})
plain_usage = st.fixed_dictionaries(
    {"prompt_tokens": counts, "completion_tokens": counts, "total_tokens": counts},
    optional={"prompt_tokens_details": zero_section, "completion_tokens_details": zero_section},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(u=st.one_of(any_usage, plain_usage))
def test_usage_matches_the_reference_on_generated_bodies(u: dict[str, Any]) -> None:
    want = reference_usage(u)
    assert_same_usage(wire.parse_usage(u), want)
    assert_same_usage(wire._parse_usage_full(u), want)
    # what the adapter sees: the same object after a JSON round trip
    round_trip = orjson.loads(orjson.dumps(u))
    assert_same_usage(wire.parse_usage(round_trip), reference_usage(round_trip))


@settings(max_examples=100, deadline=None)
@given(u=plain_usage, reasoning=st.integers(min_value=1, max_value=1000))
def test_reasoning_counted_apart_is_found_on_either_path(u: dict[str, Any], reasoning: int) -> None:
    u = {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"] + reasoning,
         "completion_tokens_details": {"reasoning_tokens": reasoning}}
    got = wire.parse_usage(u)
    assert_same_usage(got, reference_usage(u))
    assert got.output_tokens == u["completion_tokens"] + reasoning


# ------------------------------------------------------------------------------ chat bodies

MODEL = ModelSpec(id="openai/gpt-4o-mini", provider="openai", context_window=128_000)


def ad(**kw: Any) -> OpenAIAdapter:
    return OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url="http://127.0.0.1:1/v1",
                                        api_key="sk-test", **kw))


def chat_body(message: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": top.pop("finish_reason", "stop")}],
            "usage": top.pop("usage", BENCH), **top}


@pytest.mark.parametrize("data, content, finish, calls", [
    (chat_body({"role": "assistant", "content": "hi"}), "hi", "stop", []),
    (chat_body({"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
     "ab", "stop", []),
    (chat_body({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        "not an object",
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": {"y": 2}}}]},
        finish_reason="tool_calls"),
     None, "tool_calls", [ToolCall(id="c1", name="f", arguments='{"x":1}'),
                          ToolCall(id="c2", name="g", arguments='{"y":2}')]),
    (chat_body({"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}),
     None, "tool_calls", [ToolCall(id="", name="f", arguments="{}")]),
    (chat_body({"role": "assistant", "content": "x", "tool_calls": []}, finish_reason="length"), "x", "length", []),
    (chat_body({"role": "assistant", "content": "x"}, finish_reason=None), "x", "unknown", []),
    (chat_body({"role": "assistant", "content": "x"}, finish_reason=7), "x", "unknown", []),
])
def test_parse_chat_fills_every_field(data: dict[str, Any], content: str | None, finish: str,
                                      calls: list[ToolCall]) -> None:
    resp = wire.parse_chat(data, model_id="openai/gpt-4o-mini", provider="openai", invalid=lambda m: AssertionError(m))
    want = Response(content=content, model="openai/gpt-4o-mini", provider="openai", usage=reference_usage(BENCH),
                    finish_reason=finish, tool_calls=calls, provider_request_id="chatcmpl-1", raw=data)
    assert resp == want


def test_parse_chat_keeps_a_refusal_apart_from_content_and_carries_logprobs() -> None:
    tokens = [{"token": "no", "logprob": -0.1, "bytes": [110, 111], "top_logprobs": []}, "not an object"]
    data = chat_body({"role": "assistant", "content": None, "refusal": "no"})
    data["choices"][0]["logprobs"] = {"content": None, "refusal": tokens}
    resp = wire.parse_chat(data, model_id="openai/gpt-4o-mini", provider="openai", invalid=lambda m: AssertionError(m))
    assert resp.content is None and resp.refusal == "no" and resp.finish_reason == "stop"
    assert resp.logprobs == {"content": None, "refusal": tokens[:1]}
    # an empty refusal (sent beside tool calls by some servers) is no refusal; a null logprobs is none
    empty = wire.parse_chat(chat_body({"role": "assistant", "content": "hi", "refusal": ""}), model_id="m",
                            provider="openai", invalid=lambda m: AssertionError(m))
    assert empty.content == "hi" and empty.refusal is None and empty.logprobs is None


def test_parse_chat_without_usage_or_string_id() -> None:
    data = chat_body({"role": "assistant", "content": "hi"}, id=42)
    del data["usage"]
    resp = wire.parse_chat(data, model_id="m", provider="p", invalid=lambda m: AssertionError(m))
    assert resp.usage == Usage() and resp.provider_request_id is None and resp.raw is data


def test_chat_from_wire_on_the_benchmark_bodies() -> None:
    simple = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
              b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":14,"completion_tokens":12,"total_tokens":26}}')
    detailed = orjson.dumps(chat_body({"role": "assistant", "content": "ok", "refusal": None, "annotations": []},
                                      usage=OPENAI_ZERO_DETAILS, logprobs=None))
    for payload in (simple, detailed):
        resp = ad().chat_from_wire(payload, MODEL, {})
        assert (resp.content, resp.finish_reason, resp.tool_calls) == ("ok", "stop", [])
        assert resp.usage == Usage(input_tokens=14, output_tokens=12) and resp.usage.provider_details == {}
        assert resp.provider_request_id in ("chatcmpl-bench", "chatcmpl-1")


@pytest.mark.parametrize("payload, message", [
    (b"not json", "response body is not valid JSON"),
    (b"[1]", "response body is not a JSON object"),
    (b'{"choices": []}', "response has no choices"),
    (b'{"choices": [{"message": "x"}]}', "first choice has no message"),
])
def test_chat_from_wire_invalid_bodies_name_the_model(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidResponseError) as info:
        ad().chat_from_wire(payload, MODEL)
    assert message in str(info.value) and info.value.model == MODEL.id and info.value.provider == "openai"


@pytest.mark.parametrize("reason", ["stop", "eos", "end_turn", "length", "max_tokens", "tool_calls", "tool_use",
                                    "content_filter", "error", "weird", 3, 1.5, True, None])
@pytest.mark.parametrize("has_tools", [False, True])
def test_normalize_finish_accepts_any_value(reason: Any, has_tools: bool) -> None:
    ref = "tool_calls" if has_tools else "unknown"
    if reason is not None:
        ref = wire._FINISH.get(str(reason), "unknown")
        if ref == "stop" and has_tools:
            ref = "tool_calls"
    assert wire.normalize_finish(reason, has_tools) == ref


# ------------------------------------------------------------------------------ request side

def test_a_request_without_parameters_is_model_and_messages_only() -> None:
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    body, dropped = wire.build_chat_body("openai", req, MODEL, model_field="gpt-4o-mini", profile={})
    assert body == {"model": "gpt-4o-mini", "messages": req.messages} and dropped == []
    assert body["messages"][0] is req.messages[0]  # a clean message is passed through, not copied
    none_only = ChatRequest(messages=req.messages, params={"temperature": None})
    assert wire.build_chat_body("openai", none_only, MODEL, model_field="gpt-4o-mini", profile={})[0] == body


def test_default_params_apply_without_request_parameters() -> None:
    spec = ModelSpec(id="openai/o3", provider="openai", context_window=1000,
                     default_params={"temperature": 0.0, "max_tokens": 50, "extra_body": {"store": False}},
                     param_mappings={"max_tokens": "max_completion_tokens"})
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}], stream=True)
    body, dropped = wire.build_chat_body("openai", req, spec, model_field="o3", profile={})
    assert body == {"model": "o3", "messages": req.messages, "temperature": 0.0, "max_completion_tokens": 50,
                    "stream": True, "stream_options": {"include_usage": True}, "store": False}
    assert list(body) == ["model", "messages", "temperature", "max_completion_tokens", "stream", "stream_options",
                          "store"]
    assert dropped == []


def test_messages_with_modelplex_keys_are_copied_without_them() -> None:
    clean = {"role": "user", "content": "a"}
    tagged = {"role": "user", "content": "b", "cache": True}
    out = wire.clean_messages([clean, tagged])  # type: ignore[list-item]
    assert out[0] is clean and out[1] == {"role": "user", "content": "b"} and "cache" in tagged


def test_chat_to_wire_headers_and_body() -> None:
    a = ad(extra_headers={"X-Title": "t"})
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Req": "1",
                                                                                  "authorization": "nope"})
    w = a.chat_to_wire(req, MODEL)
    assert w == WireRequest("POST", "http://127.0.0.1:1/v1/chat/completions",
                            {"Accept": "application/json", "Content-Type": "application/json",
                             "Authorization": "Bearer sk-test", "X-Title": "t", "X-Req": "1"},
                            b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}')
    assert list(w.headers) == ["Accept", "Content-Type", "Authorization", "X-Title", "X-Req"]
    assert a.headers(json_body=False) == {"Accept": "application/json", "Authorization": "Bearer sk-test",
                                          "X-Title": "t"}


# ------------------------------------------------------------------------------ transport


def test_request_timeouts_are_shared_and_frozen() -> None:
    t = request_timeout(60.0, 10.0)
    assert t is request_timeout(60.0, 10.0)
    assert t == aiohttp.ClientTimeout(total=60.0, sock_connect=10.0)
    assert request_timeout(60, 10) == aiohttp.ClientTimeout(total=60, sock_connect=10)
    assert type(request_timeout(60, 10).total) is int  # typed: 60 and 60.0 are distinct entries
    with pytest.raises(AttributeError):
        t.total = 1.0  # type: ignore[misc]


class _RaisingSession:
    """Stands in for ``aiohttp.ClientSession``: ``request`` fails with the given exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.timeouts: list[Any] = []

    def request(self, method: str, url: str, **kw: Any) -> Any:
        self.timeouts.append(kw["timeout"])
        raise self.exc


@pytest.mark.parametrize("exc, cls", [
    (aiohttp.ClientConnectionError("refused"), APIConnectionError),
    (aiohttp.ClientPayloadError("cut"), InvalidResponseError),
    (aiohttp.ServerTimeoutError("slow"), APITimeoutError),
    (TimeoutError(), APITimeoutError),
])
async def test_transport_failures_map_to_typed_errors(exc: Exception, cls: type[Exception]) -> None:
    session = _RaisingSession(exc)
    with pytest.raises(cls) as info:
        await ad(timeout=30.0, connect_timeout=5.0).complete(session, ChatRequest(messages=[]), MODEL)  # type: ignore[arg-type]
    assert info.value.__cause__ is exc
    assert session.timeouts == [aiohttp.ClientTimeout(total=30.0, sock_connect=5.0)]


async def test_other_exceptions_pass_through_unchanged() -> None:
    boom = RuntimeError("a bug, not a transport failure")
    with pytest.raises(RuntimeError) as info:
        await ad().complete(_RaisingSession(boom), ChatRequest(messages=[]), MODEL)  # type: ignore[arg-type]
    assert info.value is boom and info.value.__cause__ is None
