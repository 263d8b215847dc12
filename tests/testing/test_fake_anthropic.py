"""The fake Anthropic server, spoken to with raw HTTP: exact bodies and SSE framing, validation like the real
API, tool and structured replies, prompt caching, and each fault in Anthropic's error format."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from modelplex.errors import parse_retry_after
from modelplex.testing.fake_anthropic import FAKE_KEY, KNOWN_MODELS, cached_prefix, example_for, prompt_text
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer

KEY = "sk-ant-test-fake-0123456789"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
MODEL = "claude-sonnet-4-5-20250929"


def req(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": "Hello there"}], **extra}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(protocols=("anthropic",)) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(http: aiohttp.ClientSession, fake: FakeProviderServer, payload: Any, *,
               headers: dict[str, str] | None = None, path: str = "/v1/messages") -> tuple[int, dict[str, str], Any]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with http.post(fake.base_url + path, data=data, headers=HEADERS if headers is None else headers) as resp:
        raw = await resp.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        return resp.status, dict(resp.headers), body


async def stream_events(http: aiohttp.ClientSession, fake: FakeProviderServer, payload: dict[str, Any]
                        ) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """(events, raw text) of a streamed answer, framed by hand: ``event:`` line, ``data:`` line, blank line."""
    async with http.post(fake.base_url + "/v1/messages", json={**payload, "stream": True}, headers=HEADERS) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    events = []
    for frame in raw.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events, raw


def assert_error(status: int, body: Any, expected_status: int, error_type: str) -> None:
    assert status == expected_status
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"].startswith("req_")


# ================================================================================ success shapes


async def test_message_body_shape(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Hi! How can I help?")
    status, headers, body = await post(http, fake, req(system="Be nice."))
    assert status == 200
    assert headers["request-id"].startswith("req_")
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == MODEL
    assert body["content"] == [{"type": "text", "text": "Hi! How can I help?"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    usage = body["usage"]
    assert usage["input_tokens"] == (len("Be nice.\nHello there") + 3) // 4
    assert usage["output_tokens"] == (len("Hi! How can I help?") + 3) // 4
    assert usage["cache_creation_input_tokens"] == 0 and usage["cache_read_input_tokens"] == 0
    captured = fake.captured[-1]
    assert captured.protocol == "anthropic" and captured.model == MODEL and captured.json["system"] == "Be nice."


async def test_stream_event_sequence(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="abcdefghij", stream_chunks=3)
    events, raw = await stream_events(http, fake, req())
    names = [e for e, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "abcdefghij"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 3
    assert raw.endswith("\n\n")


async def test_tool_call_behavior_and_forced_tool(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
                                               "days": {"type": "integer", "minimum": 1}, "note": {"type": "string"}},
              "required": ["city", "unit", "days"]}
    tools = [{"name": "forecast", "description": "d", "input_schema": schema}]
    _, _, body = await post(http, fake, req(tools=tools, tool_choice={"type": "tool", "name": "forecast"}))
    assert body["stop_reason"] == "tool_use"
    block = body["content"][0]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_") and block["name"] == "forecast"
    assert block["input"] == {"city": "example", "unit": "c", "days": 1}
    fake.behavior = Behavior(tool_call={"name": "forecast", "arguments": {"city": "Oslo", "unit": "f", "days": 3}})
    events, _ = await stream_events(http, fake, req(tools=tools))
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts[0]["type"] == "tool_use" and starts[0]["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Oslo", "unit": "f", "days": 3}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    _, _, body = await post(http, fake, req(tools=tools, tool_choice={"type": "none"}))
    assert body["content"][0]["type"] == "text"


async def test_native_structured_output(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "number"}},
              "required": ["ok", "n"], "additionalProperties": False}
    _, _, body = await post(http, fake, req(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert json.loads(body["content"][0]["text"]) == {"ok": True, "n": 1.0}


async def test_thinking_blocks(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Answer.")
    payload = req(max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2048})
    _, _, body = await post(http, fake, payload)
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["signature"].startswith("sig_")
    details = body["usage"]["output_tokens_details"]
    assert 0 < details["thinking_tokens"] < body["usage"]["output_tokens"]
    events, _ = await stream_events(http, fake, payload)
    kinds = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert kinds[0] == "thinking_delta" and "signature_delta" in kinds and kinds[-1] == "text_delta"


async def test_stop_sequences_and_max_tokens(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Hello END of the world")
    _, _, body = await post(http, fake, req(stop_sequences=["world", "END"]))
    assert body["content"][0]["text"] == "Hello "
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "END")
    _, _, body = await post(http, fake, req(max_tokens=2))
    assert body["content"][0]["text"] == "Hello EN" and body["stop_reason"] == "max_tokens"


async def test_prompt_cache_write_then_read(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    system = [{"type": "text", "text": "x" * 4000, "cache_control": {"type": "ephemeral"}}]
    _, _, first = await post(http, fake, req(system=system))
    _, _, second = await post(http, fake, req(system=system))
    _, _, other_model = await post(http, fake, req(system=system, model="claude-haiku-4-5"))
    assert first["usage"]["cache_creation_input_tokens"] == 1000 and first["usage"]["cache_read_input_tokens"] == 0
    assert first["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0}
    assert second["usage"]["cache_read_input_tokens"] == 1000 and second["usage"]["cache_creation_input_tokens"] == 0
    assert first["usage"]["input_tokens"] == second["usage"]["input_tokens"] == 3  # "Hello there", uncached
    assert other_model["usage"]["cache_creation_input_tokens"] == 1000
    app = fake._runner.app if fake._runner else None
    assert app is not None and len(app[FAKE_KEY].cache) == 2


async def test_usage_can_be_omitted(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(include_usage=False)
    _, _, body = await post(http, fake, req())
    assert "usage" not in body
    events, _ = await stream_events(http, fake, req())
    assert "usage" not in events[0][1]["message"] and "usage" not in events[-2][1]


async def test_count_tokens_and_models(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    status, _, body = await post(http, fake, {"model": MODEL, "messages": [{"role": "user", "content": "x" * 40}]},
                                 path="/v1/messages/count_tokens")
    assert (status, body) == (200, {"input_tokens": 10})
    fake.per_model["claude-custom"] = Behavior()
    async with http.get(fake.base_url + "/v1/models?limit=2", headers=HEADERS) as resp:
        page = await resp.json()
    assert [m["id"] for m in page["data"]] == [KNOWN_MODELS[0][0], KNOWN_MODELS[1][0]]
    assert page["has_more"] is True and page["first_id"] == KNOWN_MODELS[0][0]
    assert all(m["type"] == "model" and m["lifecycle"] == "active" for m in page["data"])
    async with http.get(fake.base_url + "/v1/models?limit=100", headers=HEADERS) as resp:
        assert "claude-custom" in [m["id"] for m in (await resp.json())["data"]]
    async with http.get(fake.base_url + "/v1/models/claude-custom", headers=HEADERS) as resp:
        assert (await resp.json())["id"] == "claude-custom"
    async with http.get(fake.base_url + "/v1/models/nope", headers=HEADERS) as resp:
        assert_error(resp.status, await resp.json(), 404, "not_found_error")
    async with http.get(fake.base_url + "/v1/models", headers={"x-api-key": KEY}) as resp:
        assert_error(resp.status, await resp.json(), 400, "invalid_request_error")


async def test_models_path_shared_with_the_openai_fake(http: aiohttp.ClientSession) -> None:
    async with FakeProviderServer(protocols=("openai", "anthropic")) as both:
        async with http.get(both.base_url + "/v1/models", headers=HEADERS) as resp:
            assert "has_more" in await resp.json()
        async with http.get(both.base_url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}) as resp:
            assert (await resp.json())["object"] == "list"


# ================================================================================ validation


@pytest.mark.parametrize(("payload", "fragment"), [
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": MODEL, "max_tokens": 5}, "messages"),
    (req(messages=[]), "messages"),
    (req(messages=[{"role": "system", "content": "x"}]), "role"),
    (req(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), "non-empty"),
    (req(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), "type"),
    (req(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "r"}]}]),
     "tool_use_id"),
    (req(messages=[{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                   {"role": "user", "content": "no result"}]), "tool_result"),
    (req(max_tokens=1000, thinking={"type": "enabled", "budget_tokens": 1000}), "budget_tokens"),
    (req(thinking={"type": "enabled", "budget_tokens": 500}), "budget_tokens"),
    (req(tool_choice={"type": "auto"}), "tool_choice"),
    (req(tools=[{"name": "a", "input_schema": {"type": "object"}}], tool_choice={"type": "tool", "name": "b"}),
     "tool_choice"),
    (req(temperature=1.5), "temperature"),
    (req(system=[{"type": "image"}]), "system"),
    (b"{not json", "JSON"),
])
async def test_invalid_requests_get_400(fake: FakeProviderServer, http: aiohttp.ClientSession, payload: Any,
                                        fragment: str) -> None:
    status, _, body = await post(http, fake, payload)
    assert_error(status, body, 400, "invalid_request_error")
    assert fragment.lower() in body["error"]["message"].lower()


async def test_header_validation(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    status, _, body = await post(http, fake, req(), headers={"x-api-key": KEY})
    assert_error(status, body, 400, "invalid_request_error")
    assert "anthropic-version" in body["error"]["message"]
    status, _, body = await post(http, fake, req(), headers={"anthropic-version": "2023-06-01"})
    assert_error(status, body, 401, "authentication_error")
    status, _, body = await post(http, fake, req(), headers={**HEADERS, "anthropic-version": "1999-01-01"})
    assert_error(status, body, 400, "invalid_request_error")
    bearer = {"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}
    status, _, _ = await post(http, fake, req(), headers=bearer)
    assert status == 200
    status, _, body = await post(http, fake, req(temperature=0.5), headers=bearer)
    assert_error(status, body, 400, "invalid_request_error")
    assert "temperature" in body["error"]["message"]


# ================================================================================ faults


async def test_rate_limit_fault(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("rate_limit", retry_after=12))
    status, headers, body = await post(http, fake, req())
    assert_error(status, body, 429, "rate_limit_error")
    assert headers["Retry-After"] == "12"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = dt.datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
    assert reset.tzinfo is not None
    assert parse_retry_after({"anthropic-ratelimit-requests-reset": headers["anthropic-ratelimit-requests-reset"]},
                             now=reset.timestamp() - 12) == pytest.approx(12, abs=1)


@pytest.mark.parametrize(("fault", "status", "error_type", "code"), [
    (Fault("quota"), 402, "billing_error", None),
    (Fault("quota", status=429), 429, "rate_limit_error", "enforced_spend_limit_reached"),
    (Fault("context_window"), 400, "invalid_request_error", None),
    (Fault("context_window", status=413), 413, "request_too_large", None),
    (Fault("auth"), 401, "authentication_error", None),
    (Fault("permission"), 403, "permission_error", None),
    (Fault("not_found"), 404, "not_found_error", None),
    (Fault("bad_request"), 400, "invalid_request_error", None),
    (Fault("overloaded"), 529, "overloaded_error", None),
    (Fault("server_error"), 500, "api_error", None),
    (Fault("server_error", status=504), 504, "timeout_error", None),
    (Fault("status", status=503), 503, "api_error", None),
])
async def test_error_faults(fake: FakeProviderServer, http: aiohttp.ClientSession, fault: Fault, status: int,
                            error_type: str, code: str | None) -> None:
    fake.plan.fail_next(fault)
    got, headers, body = await post(http, fake, req())
    assert_error(got, body, status, error_type)
    assert (body["error"].get("details") or {}).get("error_code") == code
    if code == "enforced_spend_limit_reached":
        assert "Retry-After" not in headers


async def test_content_policy_is_a_refusal(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"))
    status, _, body = await post(http, fake, req())
    assert status == 200 and body["stop_reason"] == "refusal" and body["content"] == []
    assert body["stop_details"]["type"] == "refusal"


async def test_body_faults(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("malformed"))
    status, _, body = await post(http, fake, req())
    assert status == 200 and isinstance(body, bytes)
    fake.plan.fail_next(Fault("truncated"))
    status, _, body = await post(http, fake, req())
    assert status == 200 and isinstance(body, bytes) and body.startswith(b'{"id":"msg_')
    fake.plan.fail_next(Fault("stream_cut"))
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(http, fake, req())
    fake.plan.fail_next(Fault("slow", delay=0.01))
    status, _, body = await post(http, fake, req())
    assert status == 200 and body["type"] == "message"


async def test_stream_faults(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three four", stream_chunks=4)
    fake.plan.fail_next(Fault("overloaded", status=200, after_chunks=2))
    events, _ = await stream_events(http, fake, req())
    assert [n for n, _ in events][-1] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    assert len([n for n, _ in events if n == "content_block_delta"]) == 2
    fake.plan.fail_next(Fault("truncated"))
    events, _ = await stream_events(http, fake, req())
    assert [n for n, _ in events][-1] == "message_delta"
    fake.plan.fail_next(Fault("overloaded"))
    async with http.post(fake.base_url + "/v1/messages", json=req(stream=True), headers=HEADERS) as resp:
        assert resp.status == 529
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    with pytest.raises(aiohttp.ClientPayloadError):
        await stream_events(http, fake, req())


async def test_malformed_stream_event(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("malformed"))
    async with http.post(fake.base_url + "/v1/messages", json=req(stream=True), headers=HEADERS) as resp:
        raw = (await resp.read()).decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    assert frames[0].startswith("event: message_start")
    with pytest.raises(ValueError):
        json.loads(frames[1].split("data: ", 1)[1])


# ================================================================================ helpers


def test_example_for_schemas() -> None:
    assert example_for({"type": "object", "properties": {"a": {"type": "array", "minItems": 2,
                                                               "items": {"type": "boolean"}},
                                                         "b": {"type": ["null", "integer"]},
                                                         "c": {"anyOf": [{"const": "k"}, {"type": "string"}]},
                                                         "d": {"type": "object", "properties": {"e": {"type": "number"}}}},
                        "required": ["a", "b", "c", "d"]}) == {"a": [True, True], "b": 1, "c": "k", "d": {"e": 1.0}}


def test_prompt_text_and_cache_prefix() -> None:
    body = {"tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
            "system": "sys", "messages": [{"role": "user", "content": [{"type": "text", "text": "a",
                                                                        "cache_control": {"type": "ephemeral"}},
                                                                       {"type": "text", "text": "b"}]}]}
    assert prompt_text(body) == '{"name":"t","input_schema":{}}\nsys\na\nb'
    assert cached_prefix(body) == '{"name":"t","input_schema":{}}\nsys\na'
    assert cached_prefix({"messages": [{"role": "user", "content": "x"}]}) is None
