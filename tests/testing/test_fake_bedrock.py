"""The fake Bedrock Runtime over raw HTTP: the event-stream encoder (checked with botocore's decoder),
SigV4 checks, Converse bodies and frames, faults in AWS's format, and InvokeModel embeddings."""

from __future__ import annotations

import struct
from binascii import crc32
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
import pytest

pytest.importorskip("botocore", reason="botocore is the bedrock extra")
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from modelplex.testing.fake_bedrock import (
    GUARDRAIL_MESSAGE,
    encode_frame,
    event_frame,
    exception_frame,
    verify_sigv4,
)
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer, approx_tokens

SECRET = "fake/secret/for/tests/only"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BODY = {"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "system": [{"text": "Be brief."}]}


# ============================================================================ encoder


def frames(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_frames_decode_with_botocore() -> None:
    data = event_frame("contentBlockDelta", {"delta": {"text": "héllo"}, "contentBlockIndex": 0}) + \
        exception_frame("throttlingException", "slow down")
    first, second = frames(data)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert orjson.loads(first.payload) == {"delta": {"text": "héllo"}, "contentBlockIndex": 0}
    assert second.headers[":message-type"] == "exception"
    assert second.headers[":exception-type"] == "throttlingException"
    assert orjson.loads(second.payload) == {"message": "slow down"}


def test_frame_layout() -> None:
    frame = encode_frame({"a": "b"}, b"xyz")
    total, headers_len, prelude_crc = struct.unpack("!III", frame[:12])
    header = bytes([1]) + b"a" + bytes([7]) + struct.pack("!H", 1) + b"b"
    assert (total, headers_len) == (len(frame), len(header))
    assert prelude_crc == crc32(frame[:8]) & 0xFFFFFFFF
    assert frame[12:12 + headers_len] == header
    assert frame[12 + headers_len:-4] == b"xyz"
    assert struct.unpack("!I", frame[-4:])[0] == crc32(frame[:-4]) & 0xFFFFFFFF


def test_corrupt_frames_fail_botocore_checks() -> None:
    frame = bytearray(event_frame("messageStop", {"stopReason": "end_turn"}))
    frame[20] ^= 0x40
    with pytest.raises(ChecksumMismatch):
        frames(bytes(frame))


# ============================================================================ HTTP


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("bedrock",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def signed(url: str, body: bytes, *, service: str = "bedrock") -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("AKIDTEST", SECRET), service, "eu-west-1").add_auth(request)
    return dict(request.headers.items())


async def call(session: aiohttp.ClientSession, fake: FakeProviderServer, action: str, body: Any, *,
               headers: Mapping[str, str] | None = None, model: str = MODEL) -> tuple[int, dict[str, str], bytes]:
    url = f"{fake.base_url}/model/{model}/{action}"
    raw = orjson.dumps(body)
    sent = dict(headers) if headers is not None else signed(url, raw)
    async with session.post(url, data=raw, headers=sent) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_converse_shape_and_signature(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Hi!")
    status, headers, raw = await call(session, fake, "converse", BODY)
    assert status == 200 and headers["x-amzn-RequestId"]
    data = orjson.loads(raw)
    assert data["output"] == {"message": {"role": "assistant", "content": [{"text": "Hi!"}]}}
    assert data["stopReason"] == "end_turn"
    assert data["usage"] == {"inputTokens": approx_tokens("Be brief.\nHello"), "outputTokens": approx_tokens("Hi!"),
                             "totalTokens": approx_tokens("Be brief.\nHello") + approx_tokens("Hi!")}
    c = fake.captured[-1]
    assert (c.protocol, c.model, c.json) == ("bedrock", MODEL, BODY)
    assert verify_sigv4("POST", fake.base_url + c.path, c.headers, c.body, secret_key=SECRET)
    assert not verify_sigv4("POST", fake.base_url + c.path, c.headers, c.body, secret_key="other")


@pytest.mark.parametrize(("headers", "error_type"), [
    ({}, "MissingAuthenticationTokenException"),
    ({"Authorization": "AWS4-HMAC-SHA256 garbage"}, "IncompleteSignatureException"),
])
async def test_unsigned_requests_are_refused(headers: dict[str, str], error_type: str, fake: FakeProviderServer,
                                             session: aiohttp.ClientSession) -> None:
    status, got, raw = await call(session, fake, "converse", BODY, headers=headers)
    assert status == 403
    assert got["x-amzn-ErrorType"].split(":")[0] == error_type
    assert orjson.loads(raw)["message"]


async def test_signature_for_another_service_is_refused(fake: FakeProviderServer,
                                                        session: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/model/{MODEL}/converse"
    status, got, _ = await call(session, fake, "converse", BODY, headers=signed(url, orjson.dumps(BODY),
                                                                                 service="s3"))
    assert status == 403 and got["x-amzn-ErrorType"].startswith("IncompleteSignatureException")
    status, _, _ = await call(session, fake, "converse", BODY, headers={"Authorization": "Bearer ABSK-123"})
    assert status == 200


async def test_inference_config_and_forced_tools(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply='{"name": "Ada", "note": "x. y"}')
    _, _, raw = await call(session, fake, "converse", {**BODY, "inferenceConfig": {"maxTokens": 2}})
    data = orjson.loads(raw)
    assert data["stopReason"] == "max_tokens" and data["usage"]["outputTokens"] == 2
    _, _, raw = await call(session, fake, "converse", {**BODY, "inferenceConfig": {"stopSequences": ["."]}})
    assert orjson.loads(raw)["stopReason"] == "stop_sequence"
    forced = {**BODY, "toolConfig": {"tools": [{"toolSpec": {"name": "out", "inputSchema": {"json": {}}}}],
                                     "toolChoice": {"tool": {"name": "out"}}}}
    _, _, raw = await call(session, fake, "converse", forced)
    data = orjson.loads(raw)
    assert data["stopReason"] == "tool_use"
    assert data["output"]["message"]["content"][0]["toolUse"]["input"] == {"name": "Ada", "note": "x. y"}


async def test_stream_frames(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three", stream_chunks=3)
    status, headers, raw = await call(session, fake, "converse-stream", BODY)
    assert status == 200 and headers["Content-Type"] == "application/vnd.amazon.eventstream"
    messages = frames(raw)
    names = [m.headers[":event-type"] for m in messages]
    assert names == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockDelta",
                     "contentBlockStop", "messageStop", "metadata"]
    payloads = [orjson.loads(m.payload) for m in messages]
    assert "".join(p["delta"]["text"] for p in payloads[1:4]) == "one two three"
    assert "p" in payloads[0]  # Bedrock's padding field
    assert payloads[-1]["usage"]["outputTokens"] == approx_tokens("one two three")


async def test_stream_faults(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three", stream_chunks=3)
    fake.plan.fail_next(Fault("truncated"))
    _, _, raw = await call(session, fake, "converse-stream", BODY)
    names = [m.headers[":event-type"] for m in frames(raw)]
    assert "messageStop" not in names and "metadata" not in names and "contentBlockDelta" in names
    fake.plan.fail_next(Fault("stream_cut", after_chunks=2, status=503))
    _, _, raw = await call(session, fake, "converse-stream", BODY)
    messages = frames(raw)
    assert [m.headers.get(":event-type") for m in messages[:3]] == ["messageStart", "contentBlockDelta",
                                                                    "contentBlockDelta"]
    assert messages[-1].headers[":exception-type"] == "serviceUnavailableException"
    fake.plan.fail_next(Fault("malformed"))
    _, _, raw = await call(session, fake, "converse-stream", BODY)
    with pytest.raises(ChecksumMismatch):
        frames(raw)
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    with pytest.raises(aiohttp.ClientPayloadError):
        await call(session, fake, "converse-stream", BODY)


@pytest.mark.parametrize(("fault", "status", "error_type"), [
    (Fault("rate_limit", retry_after=3), 429, "ThrottlingException"),
    (Fault("quota"), 400, "ServiceQuotaExceededException"),
    (Fault("context_window"), 400, "ValidationException"),
    (Fault("auth"), 403, "UnrecognizedClientException"),
    (Fault("permission"), 403, "AccessDeniedException"),
    (Fault("not_found"), 404, "ResourceNotFoundException"),
    (Fault("bad_request"), 400, "ValidationException"),
    (Fault("overloaded"), 503, "ServiceUnavailableException"),
    (Fault("overloaded", status=429), 429, "ModelNotReadyException"),
    (Fault("server_error"), 500, "InternalServerException"),
    (Fault("server_error", status=424), 424, "ModelErrorException"),
    (Fault("status", status=408), 408, "ModelTimeoutException"),
])
async def test_faults_in_aws_format(fault: Fault, status: int, error_type: str, fake: FakeProviderServer,
                                    session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(fault)
    got, headers, raw = await call(session, fake, "converse", BODY)
    assert got == status
    name, _, namespace = headers["x-amzn-ErrorType"].partition(":")
    assert name == error_type and namespace.startswith("http://internal.amazon.com/coral/")
    assert set(orjson.loads(raw)) == {"message"}
    if fault.retry_after is not None:
        assert headers["Retry-After"] == "3"


async def test_guardrail_and_bodies_that_break(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"))
    _, _, raw = await call(session, fake, "converse", BODY)
    data = orjson.loads(raw)
    assert data["stopReason"] == "guardrail_intervened"
    assert data["output"]["message"]["content"] == [{"text": GUARDRAIL_MESSAGE}]
    fake.plan.fail_next(Fault("truncated"))
    _, _, raw = await call(session, fake, "converse", BODY)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


async def test_invoke_embeddings(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    status, _, raw = await call(session, fake, "invoke", {"inputText": "hello world", "dimensions": 256},
                                model="amazon.titan-embed-text-v2:0")
    data = orjson.loads(raw)
    assert status == 200 and len(data["embedding"]) == 256
    assert data["inputTextTokenCount"] == approx_tokens("hello world")
    status, _, _ = await call(session, fake, "invoke", {"inputText": "x", "dimensions": 100},
                              model="amazon.titan-embed-text-v2:0")
    assert status == 400
    status, _, raw = await call(session, fake, "invoke", {"texts": ["a", "b"], "input_type": "search_query"},
                                model="cohere.embed-english-v3")
    assert status == 200 and [len(v) for v in orjson.loads(raw)["embeddings"]] == [1024, 1024]
    status, headers, _ = await call(session, fake, "invoke", {"texts": ["a"] * 97, "input_type": "search_query"},
                                    model="cohere.embed-english-v3")
    assert status == 400 and headers["x-amzn-ErrorType"].startswith("ValidationException")
    status, _, _ = await call(session, fake, "invoke", {"texts": ["a"]}, model="cohere.embed-english-v3")
    assert status == 400


async def test_reply_callables_get_openai_shaped_messages(fake: FakeProviderServer,
                                                          session: aiohttp.ClientSession) -> None:
    seen: list[Any] = []

    def reply(model: str, messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return "ok"

    fake.behavior = Behavior(reply=reply)
    await call(session, fake, "converse", BODY)
    assert seen == [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]]
