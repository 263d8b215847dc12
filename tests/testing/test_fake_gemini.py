"""The fake Gemini API, spoken to over raw HTTP: routes, key handling, body shapes, SSE framing, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from modelplex.testing.fake_gemini import STATUS_NAMES, embedding
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer, approx_tokens

KEY = {"x-goog-api-key": "test-key"}
BODY = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("gemini",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(session: aiohttp.ClientSession, fake: FakeProviderServer, path: str, body: Any,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with session.post(fake.base_url + path, data=orjson.dumps(body),
                            headers={"Content-Type": "application/json", **(KEY if headers is None else headers)}
                            ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"


async def test_generate_content_shape(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Hi there!")
    status, headers, raw = await post(session, fake, GENERATE, BODY)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = orjson.loads(raw)
    cand = data["candidates"][0]
    assert cand["content"] == {"parts": [{"text": "Hi there!"}], "role": "model"}
    assert cand["finishReason"] == "STOP" and cand["index"] == 0
    usage = data["usageMetadata"]
    assert usage["promptTokenCount"] == approx_tokens("Be brief.\nHello")
    assert usage["candidatesTokenCount"] == approx_tokens("Hi there!")
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert data["modelVersion"] == "gemini-2.5-flash" and data["responseId"]
    captured = fake.captured[-1]
    assert (captured.protocol, captured.model, captured.json) == ("gemini", "gemini-2.5-flash", BODY)


async def test_key_must_be_a_header(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, fake, GENERATE + "?key=test-key", BODY)
    assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"
    status, _, raw = await post(session, fake, GENERATE, BODY, headers={})
    err = orjson.loads(raw)["error"]
    assert (status, err["code"], err["status"]) == (403, 403, "PERMISSION_DENIED")


async def test_generation_config_is_honoured_in_either_spelling(fake: FakeProviderServer,
                                                                session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="alpha beta. gamma delta epsilon zeta eta theta")
    _, _, raw = await post(session, fake, GENERATE, {**BODY, "generationConfig": {"stopSequences": ["."]}})
    data = orjson.loads(raw)
    assert data["candidates"][0]["content"]["parts"][0]["text"] == "alpha beta"
    _, _, raw = await post(session, fake, GENERATE, {**BODY, "generation_config": {"max_output_tokens": 2}})
    data = orjson.loads(raw)
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert data["usageMetadata"]["candidatesTokenCount"] == 2
    _, _, raw = await post(session, fake, GENERATE, {**BODY, "generationConfig": {
        "thinkingConfig": {"thinkingBudget": 3, "includeThoughts": True}}})
    data = orjson.loads(raw)
    assert data["usageMetadata"]["thoughtsTokenCount"] == 3
    assert data["candidates"][0]["content"]["parts"][0]["thought"] is True


async def test_reply_callables_get_openai_shaped_messages(fake: FakeProviderServer,
                                                          session: aiohttp.ClientSession) -> None:
    seen: list[Any] = []

    def reply(model: str, messages: list[dict[str, Any]]) -> str:
        seen.append((model, messages))
        return "ok"

    fake.behavior = Behavior(reply=reply)
    await post(session, fake, GENERATE, {**BODY, "contents": [
        {"role": "user", "parts": [{"text": "Hello"}]}, {"role": "model", "parts": [{"text": "Hi"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"x": 1}}}]}]})
    assert seen == [("gemini-2.5-flash", [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Hello"},
                                          {"role": "assistant", "content": "Hi"},
                                          {"role": "user", "content": '{"x":1}'}])]


async def test_sse_stream_framing(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three four", stream_chunks=2)
    status, headers, raw = await post(session, fake, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                                      BODY)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    blocks = [b for b in raw.split(b"\r\n\r\n") if b]
    assert all(b.startswith(b"data: ") for b in blocks)
    events = [orjson.loads(b[len(b"data: "):]) for b in blocks]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == "one two three four"
    assert [e["candidates"][0].get("finishReason") for e in events] == [None, "STOP"]
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == approx_tokens("one two three four")
    status, _, _ = await post(session, fake, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", BODY)
    assert status == 400


async def test_stream_faults(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    fake.plan.fail_next(Fault("truncated"))
    _, _, raw = await post(session, fake, path, BODY)
    events = [orjson.loads(b[6:]) for b in raw.split(b"\r\n\r\n") if b]
    assert events and not any(e["candidates"][0].get("finishReason") for e in events)
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1, status=503))
    _, _, raw = await post(session, fake, path, BODY)
    events = [orjson.loads(b[6:]) for b in raw.split(b"\r\n\r\n") if b]
    assert len(events) == 2 and events[-1]["error"]["status"] == "UNAVAILABLE"
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(session, fake, path, BODY)


@pytest.mark.parametrize(("fault", "status", "gstatus"), [
    (Fault("quota"), 429, "RESOURCE_EXHAUSTED"),
    (Fault("context_window"), 400, "INVALID_ARGUMENT"),
    (Fault("permission"), 403, "PERMISSION_DENIED"),
    (Fault("not_found"), 404, "NOT_FOUND"),
    (Fault("bad_request"), 400, "INVALID_ARGUMENT"),
    (Fault("server_error"), 500, "INTERNAL"),
    (Fault("overloaded"), 503, "UNAVAILABLE"),
    (Fault("status", status=504), 504, "DEADLINE_EXCEEDED"),
])
async def test_faults_in_google_format(fault: Fault, status: int, gstatus: str, fake: FakeProviderServer,
                                       session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(fault)
    got, _, raw = await post(session, fake, GENERATE, BODY)
    err = orjson.loads(raw)["error"]
    assert (got, err["code"], err["status"]) == (status, status, gstatus)
    assert STATUS_NAMES[status] == gstatus and err["message"]


async def test_rate_limit_details_and_headers(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("rate_limit", retry_after=7))
    status, headers, raw = await post(session, fake, GENERATE, BODY)
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in orjson.loads(raw)["error"]["details"]}
    assert status == 429 and headers["Retry-After"] == "7"
    assert details["RetryInfo"]["retryDelay"] == "7s"
    assert "PerMinute" in details["QuotaFailure"]["violations"][0]["quotaId"]
    fake.plan.fail_next(Fault("quota"))
    _, _, raw = await post(session, fake, GENERATE, BODY)
    quota = next(d for d in orjson.loads(raw)["error"]["details"] if d["@type"].endswith("QuotaFailure"))
    assert "PerDay" in quota["violations"][0]["quotaId"]
    fake.plan.fail_next(Fault("auth"))
    _, _, raw = await post(session, fake, GENERATE, BODY)
    info = next(d for d in orjson.loads(raw)["error"]["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "API_KEY_INVALID"


async def test_content_policy_and_malformed_and_truncated(fake: FakeProviderServer,
                                                          session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"))
    _, _, raw = await post(session, fake, GENERATE, BODY)
    data = orjson.loads(raw)
    assert data["promptFeedback"]["blockReason"] == "SAFETY" and "candidates" not in data
    fake.plan.fail_next(Fault("malformed"))
    _, _, raw = await post(session, fake, GENERATE, BODY)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    fake.plan.fail_next(Fault("truncated"))
    _, _, raw = await post(session, fake, GENERATE, BODY)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_embeddings(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, fake, "/v1beta/models/gemini-embedding-001:embedContent",
                                {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 8})
    assert status == 200 and orjson.loads(raw)["embedding"]["values"] == embedding("hello", 8)
    vec = orjson.loads(raw)["embedding"]["values"]
    assert abs(sum(v * v for v in vec) - 1.0) < 1e-9
    batch = {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}}
                          for t in ("a", "b")]}
    status, _, raw = await post(session, fake, "/v1beta/models/gemini-embedding-001:batchEmbedContents", batch)
    assert status == 200 and [len(e["values"]) for e in orjson.loads(raw)["embeddings"]] == [768, 768]
    batch["requests"][1]["model"] = "models/other"
    status, _, raw = await post(session, fake, "/v1beta/models/gemini-embedding-001:batchEmbedContents", batch)
    assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"


async def test_models_list_and_unknown_methods(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.per_model["gemini-custom"] = Behavior()
    async with session.get(fake.base_url + "/v1beta/models", headers=KEY) as resp:
        names = [m["name"] for m in (await resp.json())["models"]]
    assert "models/gemini-2.5-flash" in names and "models/gemini-custom" in names
    async with session.get(fake.base_url + "/v1beta/models") as resp:
        assert resp.status == 403
    status, _, _ = await post(session, fake, "/v1beta/models/gemini-2.5-flash:countTokens", BODY)
    assert status == 404
