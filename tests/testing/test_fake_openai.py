"""The fake OpenAI/Azure provider, checked over raw HTTP: body and stream shapes, auth, Azure quirks,
deterministic tool calls and JSON, caching and reasoning usage, and every fault's rendering."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

from modelplex.testing.fake_openai import REFUSAL_MARKER, dummy_from_schema, embedding_vector, token_logprobs
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer

KEY = {"Authorization": "Bearer sk-test"}
AZ = {"api-key": "az-key"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
               ) -> tuple[int, CIMultiDict[str], bytes]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    auth = KEY if headers is None else headers
    async with http.post(url, data=raw, headers={"Content-Type": "application/json", **auth}) as r:
        return r.status, r.headers.copy(), await r.read()


async def sse(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
              ) -> list[bytes]:
    status, _, raw = await post(http, url, body, headers)
    assert status == 200
    return [block[len(b"data: "):] for block in raw.split(b"\n\n") if block.startswith(b"data: ")]


def chat(text: str = "Hello there", **kw: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **kw}


# ============================================================================ shapes


async def test_chat_completion_body_shape(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="General Kenobi")
    status, headers, raw = await post(http, fake.base_url + "/v1/chat/completions", chat())
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_")
    obj = orjson.loads(raw)
    assert obj["id"].startswith("chatcmpl-") and obj["object"] == "chat.completion"
    assert isinstance(obj["created"], int) and obj["model"] == "gpt-4o-mini"
    assert obj["system_fingerprint"].startswith("fp_")
    assert obj["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "General Kenobi",
                                                       "refusal": None, "annotations": []},
                               "logprobs": None, "finish_reason": "stop"}]
    assert obj["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                          "accepted_prediction_tokens": 0,
                                                          "rejected_prediction_tokens": 0}}


async def test_stream_shape_with_usage(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="abcdefgh", stream_chunks=4)
    events = await sse(http, fake.base_url + "/v1/chat/completions",
                       chat(stream=True, stream_options={"include_usage": True}))
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:5]] == ["ab", "cd", "ef", "gh"]
    assert chunks[5]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[6]["choices"] == [] and chunks[6]["usage"]["completion_tokens"] == 2
    assert all(c["usage"] is None for c in chunks[:6])


async def test_a_scripted_refusal_whole_streamed_and_on_the_responses_api(fake: FakeProviderServer,
                                                                          http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply=f"{REFUSAL_MARKER} No can do.", stream_chunks=2)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    _, _, raw = await post(http, fake.base_url + "/v1/chat/completions", chat(response_format=schema))
    choice = orjson.loads(raw)["choices"][0]
    assert choice["message"]["content"] is None and choice["message"]["refusal"] == "No can do."
    assert choice["finish_reason"] == "stop"
    events = await sse(http, fake.base_url + "/v1/chat/completions", chat(stream=True))
    deltas = [orjson.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant", "content": None, "refusal": ""}
    assert [d["refusal"] for d in deltas[1:-1]] == ["No ca", "n do."] and deltas[-1] == {}
    _, _, raw = await post(http, fake.base_url + "/v1/responses", {"model": "gpt-4o", "input": "hi"})
    assert orjson.loads(raw)["output"][0]["content"] == [{"type": "refusal", "refusal": "No can do."}]


async def test_logprobs_when_asked(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="abcdefgh", stream_chunks=2)
    _, _, raw = await post(http, fake.base_url + "/v1/chat/completions", chat(logprobs=True, top_logprobs=2))
    logprobs = orjson.loads(raw)["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None and [t["token"] for t in logprobs["content"]] == ["abcd", "efgh"]
    first = logprobs["content"][0]
    assert first["bytes"] == list(b"abcd") and first["logprob"] <= 0
    assert [t["token"] for t in first["top_logprobs"]] == ["abcd", "abcd~1"]
    assert logprobs["content"] == token_logprobs("abcdefgh", 2)
    events = await sse(http, fake.base_url + "/v1/chat/completions", chat(stream=True, logprobs=True))
    choices = [orjson.loads(e)["choices"][0] for e in events[:-1]]
    assert [c["logprobs"] for c in choices] == [None, {"content": token_logprobs("abcd", 0), "refusal": None},
                                                {"content": token_logprobs("efgh", 0), "refusal": None}, None]
    _, _, raw = await post(http, fake.base_url + "/v1/chat/completions", chat(top_logprobs=2))
    assert orjson.loads(raw)["choices"][0]["logprobs"] is None  # top_logprobs alone asks for nothing


async def test_stream_without_include_usage_has_no_usage(fake: FakeProviderServer,
                                                         http: aiohttp.ClientSession) -> None:
    events = await sse(http, fake.base_url + "/v1/chat/completions", chat(stream=True))
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_include_usage_false_behavior_omits_usage(fake: FakeProviderServer,
                                                        http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(include_usage=False)
    _, _, raw = await post(http, fake.base_url + "/v1/chat/completions", chat())
    assert "usage" not in orjson.loads(raw)
    events = await sse(http, fake.base_url + "/v1/chat/completions",
                       chat(stream=True, stream_options={"include_usage": True}))
    assert all(orjson.loads(e)["choices"] for e in events[:-1])


async def test_callable_reply_receives_messages(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply=lambda model, messages: f"{model}:{len(messages)}:{messages[-1]['content']}")
    _, _, raw = await post(http, fake.base_url + "/v1/chat/completions", chat("ping"))
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "gpt-4o-mini:1:ping"


# ============================================================================ Azure


async def test_azure_deployment_needs_api_version(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/openai/deployments/dep/chat/completions"
    status, _, raw = await post(http, url, {"messages": [{"role": "user", "content": "x"}]}, AZ)
    assert status == 404 and orjson.loads(raw) == {"error": {"code": "404", "message": "Resource not found"}}
    status, _, raw = await post(http, url + "?api-version=2024-10-21", {"messages": [{"role": "user", "content": "x"}]},
                                AZ)
    obj = orjson.loads(raw)
    assert status == 200 and obj["model"] == "dep"
    assert obj["prompt_filter_results"][0]["prompt_index"] == 0
    assert obj["choices"][0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    for path in ("/openai/models", "/openai/deployments/dep/embeddings"):
        async with http.request("GET" if path.endswith("models") else "POST", fake.base_url + path, headers=AZ,
                                data=b'{"input": "x"}') as r:
            assert r.status == 404


async def test_azure_stream_opens_with_filter_chunk(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    events = await sse(http, fake.base_url + "/openai/deployments/dep/chat/completions?api-version=2024-10-21",
                       {"messages": [{"role": "user", "content": "x"}], "stream": True,
                        "stream_options": {"include_usage": True}}, AZ)
    first = orjson.loads(events[0])
    assert first["choices"] == [] and first["id"] == "" and "prompt_filter_results" in first
    assert events[-1] == b"[DONE]"
    assert orjson.loads(events[-2])["usage"]["prompt_tokens"] == 1


async def test_azure_v1_routes(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    status, _, raw = await post(http, fake.base_url + "/openai/v1/chat/completions", chat(), KEY)
    assert status == 200 and orjson.loads(raw)["model"] == "gpt-4o-mini"
    assert fake.captured[-1].protocol == "azure"
    status, _, raw = await post(http, fake.base_url + "/openai/v1/embeddings",
                                {"model": "text-embedding-3-small", "input": "x"}, AZ)
    assert status == 200 and len(orjson.loads(raw)["data"][0]["embedding"]) == 1536
    async with http.get(fake.base_url + "/openai/v1/models", headers=AZ) as r:
        assert r.status == 200


# ============================================================================ auth and validation


async def test_auth(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/v1/chat/completions"
    status, _, raw = await post(http, url, chat(), {"Authorization": "Bearer invalid"})
    err = orjson.loads(raw)["error"]
    assert status == 401 and err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    status, _, _ = await post(http, url, chat(), {})  # keyless local servers
    assert status == 200
    az = fake.base_url + "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    status, _, raw = await post(http, az, chat(), {})
    assert status == 401 and orjson.loads(raw)["error"]["code"] == "401"
    status, _, _ = await post(http, az, chat(), {"api-key": "invalid"})
    assert status == 401


async def test_request_validation(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/v1/chat/completions"
    status, _, raw = await post(http, url, b"{not json")
    assert status == 400 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = await post(http, url, {"model": "m", "messages": []})
    assert status == 400 and orjson.loads(raw)["error"]["param"] == "messages"
    status, _, _ = await post(http, url, {"messages": [{"role": "user", "content": "x"}]})
    assert status == 400


# ============================================================================ deterministic content

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 3},
                                     "unit": {"enum": ["c", "f"]}},
    "required": ["city", "days", "unit"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


async def completion(fake: FakeProviderServer, http: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
    status, _, raw = await post(http, fake.base_url + "/v1/chat/completions", body)
    assert status == 200, raw
    return orjson.loads(raw)


async def test_tool_call_when_user_names_the_tool(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    obj = await completion(fake, http, chat("please call get_weather for me", tools=[CLOCK, WEATHER]))
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "example", "days": 3, "unit": "c"}
    plain = await completion(fake, http, chat("just chat", tools=[WEATHER]))
    assert plain["choices"][0]["finish_reason"] == "stop" and "tool_calls" not in plain["choices"][0]["message"]


async def test_tool_choice_and_behavior(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    forced = await completion(fake, http, chat("hi", tools=[WEATHER, CLOCK],
                                               tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert forced["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}
    required = await completion(fake, http, chat("hi", tools=[CLOCK, WEATHER], tool_choice="required"))
    assert required["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"
    none = await completion(fake, http, chat("call get_weather", tools=[WEATHER], tool_choice="none"))
    assert none["choices"][0]["finish_reason"] == "stop"
    fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    behaved = await completion(fake, http, chat("anything", tools=[WEATHER]))
    assert behaved["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"city":"Oslo"}'
    no_tools = await completion(fake, http, chat("anything"))
    assert no_tools["choices"][0]["finish_reason"] == "stop"
    after_result = await completion(fake, http, {"model": "m", "tools": [WEATHER], "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})
    assert after_result["choices"][0]["finish_reason"] == "stop"


async def test_streamed_tool_call(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Lisbon"}}, stream_chunks=3)
    events = await sse(http, fake.base_url + "/v1/chat/completions", chat(tools=[WEATHER], stream=True))
    chunks = [orjson.loads(e) for e in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1])
    assert orjson.loads(args) == {"city": "Lisbon"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_json_modes(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="hello")
    obj = await completion(fake, http, chat(response_format={"type": "json_object"}))
    assert orjson.loads(obj["choices"][0]["message"]["content"]) == {"reply": "hello"}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array",
                                                                                   "items": {"type": "string"}},
                                               "person": {"$ref": "#/$defs/Person"}, "optional": {"type": "number"}},
              "required": ["name", "tags", "person"],
              "$defs": {"Person": {"type": "object", "properties": {"age": {"type": "integer"},
                                                                    "email": {"type": "string", "format": "email"}},
                                   "required": ["age", "email"]}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    obj = await completion(fake, http, chat(response_format=fmt))
    assert orjson.loads(obj["choices"][0]["message"]["content"]) == {
        "name": "hello", "tags": ["hello"], "person": {"age": 1, "email": "user@example.com"}}


def test_dummy_from_schema_cases() -> None:
    assert dummy_from_schema({"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 5}]}) == 5
    assert dummy_from_schema({"type": ["null", "boolean"]}) is True
    assert dummy_from_schema({"const": "x"}) == "x"
    assert dummy_from_schema({"type": "string", "minLength": 10}, "ab") == "abxxxxxxxx"
    assert dummy_from_schema({"type": "string", "maxLength": 3}, "abcdef") == "abc"
    assert dummy_from_schema({"type": "array", "items": {"type": "number"}, "minItems": 2}) == [1.0, 1.0]
    assert dummy_from_schema({"type": "object", "properties": {"a": {"type": "integer"}}}) == {"a": 1}


async def test_prompt_caching_on_repeat(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 120  # ~1350 tokens
    first = await completion(fake, http, chat(long_prompt))
    again = await completion(fake, http, chat(long_prompt + " And one more question?"))
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and cached % 128 == 0 and cached <= again["usage"]["prompt_tokens"]
    short = await completion(fake, http, chat("short"))
    short2 = await completion(fake, http, chat("short"))
    assert short["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert short2["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


async def test_reasoning_effort_and_max_tokens(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="x" * 400)  # 100 tokens
    obj = await completion(fake, http, chat(reasoning_effort="low"))
    usage = obj["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 32
    assert usage["completion_tokens"] == 132
    capped = await completion(fake, http, chat(max_completion_tokens=10))
    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["choices"][0]["message"]["content"] == "x" * 40 and capped["usage"]["completion_tokens"] == 10


async def test_embeddings(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/v1/embeddings"
    status, _, raw = await post(http, url, {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8,
                                            "encoding_format": "float"})
    obj = orjson.loads(raw)
    assert status == 200 and obj["object"] == "list" and obj["model"] == "text-embedding-3-small"
    assert [d["index"] for d in obj["data"]] == [0, 1] and obj["data"][0]["object"] == "embedding"
    assert obj["data"][0]["embedding"] == embedding_vector("a", 8)
    assert obj["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    _, _, raw = await post(http, url, {"model": "text-embedding-3-small", "input": "a", "dimensions": 8,
                                       "encoding_format": "base64"})
    packed = base64.b64decode(orjson.loads(raw)["data"][0]["embedding"])
    assert list(struct.unpack("<8f", packed)) == pytest.approx(embedding_vector("a", 8), abs=1e-6)
    status, _, _ = await post(http, url, {"model": "text-embedding-3-small", "input": [[1, 2, 3]]})
    assert status == 200
    status, _, _ = await post(http, url, {"model": "text-embedding-3-small", "input": {"bad": 1}})
    assert status == 400


async def test_models_list(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.per_model = {"my-custom-model": Behavior()}
    async with http.get(fake.base_url + "/v1/models", headers=KEY) as r:
        obj = await r.json()
    ids = [m["id"] for m in obj["data"]]
    assert obj["object"] == "list" and "gpt-4o-mini" in ids and "my-custom-model" in ids


# ============================================================================ faults


async def test_rate_limit_rendering(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/v1/chat/completions"
    fake.plan.fail_next(Fault("rate_limit", retry_after=2))
    status, headers, raw = await post(http, url, chat())
    err = orjson.loads(raw)["error"]
    assert status == 429 and err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
    assert headers["Retry-After"] == "2" and headers["x-ratelimit-reset-requests"] == "2s"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    fake.plan.fail_next(Fault("rate_limit", retry_after="soon-ish"))
    status, headers, _ = await post(http, url, chat())
    assert headers["Retry-After"] == "soon-ish" and "x-ratelimit-reset-requests" not in headers


@pytest.mark.parametrize(("fault", "status", "code"), [
    (Fault("quota"), 429, "insufficient_quota"),
    (Fault("context_window"), 400, "context_length_exceeded"),
    (Fault("content_policy"), 400, "content_filter"),
    (Fault("auth"), 401, "invalid_api_key"),
    (Fault("permission"), 403, "model_not_available"),
    (Fault("not_found"), 404, "model_not_found"),
    (Fault("bad_request"), 400, "invalid_value"),
    (Fault("server_error"), 500, None),
    (Fault("server_error", status=502), 502, None),
    (Fault("overloaded"), 503, "server_overloaded"),
    (Fault("status", status=418), 418, None),
])
async def test_error_fault_rendering(fake: FakeProviderServer, http: aiohttp.ClientSession, fault: Fault,
                                     status: int, code: str | None) -> None:
    fake.plan.fail_next(fault)
    got, headers, raw = await post(http, fake.base_url + "/v1/chat/completions", chat())
    err = orjson.loads(raw)["error"]
    assert got == status and err["code"] == code
    assert set(err) == {"message", "type", "param", "code"}
    assert headers["x-request-id"].startswith("req_")


async def test_azure_content_filter_rendering(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"), protocol="azure")
    status, _, raw = await post(http, fake.base_url + "/openai/deployments/d/chat/completions?api-version=v",
                                chat(), AZ)
    err = orjson.loads(raw)["error"]
    assert status == 400 and err["code"] == "content_filter" and err["param"] == "prompt"
    assert err["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert err["innererror"]["content_filter_result"]["violence"]["filtered"] is True


async def test_body_faults(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/v1/chat/completions"
    fake.plan.fail_next(Fault("malformed"))
    status, _, raw = await post(http, url, chat())
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    fake.plan.fail_next(Fault("truncated"))
    status, _, raw = await post(http, url, chat())
    assert status == 200 and raw.startswith(b'{"id":"chatcmpl-')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_stream_faults(fake: FakeProviderServer, http: aiohttp.ClientSession) -> None:
    url = fake.base_url + "/v1/chat/completions"
    fake.behavior = Behavior(reply="abcdefgh", stream_chunks=4)
    body = chat(stream=True, stream_options={"include_usage": True})

    fake.plan.fail_next(Fault("truncated"))
    events = await sse(http, url, body)
    assert b"[DONE]" not in events
    assert all(orjson.loads(e)["choices"][0]["finish_reason"] is None for e in events)
    assert len(events) == 5  # role + 4 content chunks

    fake.plan.fail_next(Fault("stream_cut", after_chunks=2))
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(url, data=orjson.dumps(body), headers=KEY) as r:
            async for line in r.content:
                received += line
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received  # role + 2 content chunks

    fake.plan.fail_next(Fault("malformed"))
    events = await sse(http, url, body)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[1])

    fake.plan.fail_next(Fault("slow", delay=0.001))
    events = await sse(http, url, body)
    assert events[-1] == b"[DONE]"
