"""Conformance with boto3: the official ``bedrock-runtime`` client and modelplex's BedrockAdapter send the
same logical requests to the fake Bedrock Runtime (method, path, JSON body, SigV4 credential scope, and a
signature that verifies), and botocore — whose event-stream parser is the reference — parses the fake's
Converse bodies, ConverseStream frames, errors and mid-stream exception frames.

boto3 runs offline: explicit dummy credentials and region, ``endpoint_url`` on loopback, no config files,
no instance metadata, one attempt (no SDK retries). It is sync, so it runs in a worker thread against the
fake on this test's event loop.

One known, harmless difference: botocore percent-encodes ``:`` in the model id (``v1%3A0``) where aiohttp
sends it unescaped (``v1:0``); both decode to the same path and each signature covers the bytes its client
sent, which ``verify_sigv4`` checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest

boto3 = pytest.importorskip("boto3", reason="boto3 is a dev dependency")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

from modelplex.catalog.schema import ModelSpec  # noqa: E402
from modelplex.providers.base import ProviderConfig  # noqa: E402
from modelplex.providers.bedrock import BedrockAdapter  # noqa: E402
from modelplex.testing.fake_bedrock import verify_sigv4  # noqa: E402
from modelplex.testing.faults import Behavior, Fault  # noqa: E402
from modelplex.testing.server import Captured, FakeProviderServer, approx_tokens  # noqa: E402
from modelplex.types import ChatRequest, EmbedRequest  # noqa: E402

ACCESS_KEY = "AKIAI44QH8DHBEXAMPLE"
SECRET = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
REGION = "us-east-1"
MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CLAUDE = ModelSpec(id=f"bedrock/{MODEL_ID}", provider="bedrock", context_window=200_000,
                   capabilities=frozenset({"tool_calling", "vision"}))
TITAN = ModelSpec(id="bedrock/amazon.titan-embed-text-v2:0", provider="bedrock", context_window=8192,
                  mode="embedding")
T = TypeVar("T")


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


@pytest.fixture
def brt(fake: FakeProviderServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Any]:
    """boto3's bedrock-runtime client aimed at the fake, with nothing read from the machine."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none-credentials"))
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(var, raising=False)
    client = boto3.session.Session().client(
        "bedrock-runtime", region_name=REGION, endpoint_url=fake.base_url, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET, config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    yield client
    client.close()


def adapter(fake: FakeProviderServer) -> BedrockAdapter:
    return BedrockAdapter(ProviderConfig(name="bedrock", protocol="bedrock", base_url=fake.base_url, region=REGION,
                                         aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET))


async def sdk(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def scope(auth: str) -> tuple[str, str, str]:
    """(access key, region, service) from a SigV4 Authorization header."""
    credential = auth.split("Credential=", 1)[1].split(",", 1)[0]
    key, _date, region, service, terminator = credential.split("/")
    assert terminator == "aws4_request"
    return key, region, service


def assert_same_request(fake: FakeProviderServer, boto_req: Captured, ours: Captured, model_id: str) -> None:
    assert (ours.method, ours.path, ours.query) == (boto_req.method, boto_req.path, boto_req.query)
    assert ours.json == boto_req.json
    assert ours.headers["Content-Type"] == "application/json"
    assert boto_req.headers["Content-Type"] in ("application/json", "application/x-amz-json-1.1")
    assert scope(ours.headers["Authorization"]) == scope(boto_req.headers["Authorization"]) == \
        (ACCESS_KEY, REGION, "bedrock")
    # each signature verifies over the bytes its client sent
    boto_raw = boto_req.path.replace(model_id, quote(model_id, safe=""))
    assert verify_sigv4(boto_req.method, fake.base_url + boto_raw, boto_req.headers, boto_req.body, secret_key=SECRET)
    assert verify_sigv4(ours.method, fake.base_url + ours.path, ours.headers, ours.body, secret_key=SECRET)


# ============================================================================ (a) requests


async def test_converse_request_matches_boto3(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                              brt: Any) -> None:
    png = b"\x89PNG\r\n\x1a\nconformance"
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    await sdk(lambda: brt.converse(
        modelId=MODEL_ID,
        messages=[{"role": "user", "content": [{"text": "What is this?"},
                                               {"image": {"format": "png", "source": {"bytes": png}}}]}],
        system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 300, "temperature": 0.2, "topP": 0.9, "stopSequences": ["###"]},
        toolConfig={"tools": [{"toolSpec": {"name": "weather", "description": "Weather by city",
                                            "inputSchema": {"json": schema}}}], "toolChoice": {"auto": {}}},
        additionalModelRequestFields={"top_k": 50}))
    await adapter(fake).complete(session, ChatRequest(
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [
                      {"type": "text", "text": "What is this?"},
                      {"type": "image_url",
                       "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}]}],
        params={"max_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": ["###"], "top_k": 50,
                "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                                                            "parameters": schema}}],
                "tool_choice": "auto"}), CLAUDE)
    boto_req, ours = fake.captured
    assert ours.path == f"/model/{MODEL_ID}/converse"
    assert_same_request(fake, boto_req, ours, MODEL_ID)


async def test_tool_history_matches_boto3(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                          brt: Any) -> None:
    tools = {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object",
                                                                                  "properties": {}}}}}]}
    await sdk(lambda: brt.converse(modelId=MODEL_ID, toolConfig=tools, messages=[
        {"role": "user", "content": [{"text": "Weather in Paris and Oslo?"}]},
        {"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "weather", "input": {"city": "Oslo"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"tempc": 21}}]}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "cold"}]}}]},
    ]))
    await adapter(fake).complete(session, ChatRequest(messages=[
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "tooluse_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"tempc": 21}'},
        {"role": "tool", "tool_call_id": "tooluse_2", "content": "cold"},
    ], params={"tools": [{"type": "function", "function": {"name": "weather"}}]}), CLAUDE)
    boto_req, ours = fake.captured
    assert_same_request(fake, boto_req, ours, MODEL_ID)


async def test_converse_stream_request_matches_boto3(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                     brt: Any) -> None:
    def run() -> list[Any]:
        return list(brt.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hi"}]}],
                                        inferenceConfig={"maxTokens": 50})["stream"])

    await sdk(run)
    _ = [c async for c in adapter(fake).stream(session, ChatRequest(
        messages=[{"role": "user", "content": "Hi"}], params={"max_tokens": 50}, stream=True), CLAUDE)]
    boto_req, ours = fake.captured
    assert ours.path == f"/model/{MODEL_ID}/converse-stream"
    assert_same_request(fake, boto_req, ours, MODEL_ID)


async def test_titan_invoke_request_matches_boto3(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                  brt: Any) -> None:
    model_id = "amazon.titan-embed-text-v2:0"
    await sdk(lambda: brt.invoke_model(modelId=model_id, contentType="application/json", accept="application/json",
                                       body=json.dumps({"inputText": "alpha", "dimensions": 256})))
    await adapter(fake).embed(session, EmbedRequest(input=["alpha"], params={"dimensions": 256}), TITAN)
    boto_req, ours = fake.captured
    assert ours.path == f"/model/{model_id}/invoke"
    assert_same_request(fake, boto_req, ours, model_id)


# ============================================================================ (b) botocore parses the fake


async def test_boto3_parses_converse(fake: FakeProviderServer, session: aiohttp.ClientSession, brt: Any) -> None:
    fake.behavior = Behavior(reply="Paris is the capital of France.")
    r = await sdk(lambda: brt.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Q"}]}]))
    assert r["output"]["message"]["content"] == [{"text": "Paris is the capital of France."}]
    assert r["stopReason"] == "end_turn"
    assert r["usage"] == {"inputTokens": approx_tokens("Q"), "outputTokens": approx_tokens(
        "Paris is the capital of France."), "totalTokens": approx_tokens("Q") + approx_tokens(
        "Paris is the capital of France.")}
    assert r["metrics"]["latencyMs"] > 0
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200 and r["ResponseMetadata"]["RequestId"]
    ours = await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "Q"}]), CLAUDE)
    assert ours.content == r["output"]["message"]["content"][0]["text"]
    assert (ours.usage.input_tokens, ours.usage.output_tokens) == (r["usage"]["inputTokens"],
                                                                   r["usage"]["outputTokens"])
    fake.plan.fail_next(Fault("content_policy"))
    guarded = await sdk(lambda: brt.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "x"}]}]))
    assert guarded["stopReason"] == "guardrail_intervened"


async def test_botocore_parses_the_event_stream(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                brt: Any) -> None:
    fake.behavior = Behavior(reply="Event streams are binary frames.", stream_chunks=4)

    def run() -> list[dict[str, Any]]:
        return list(brt.converse_stream(modelId=MODEL_ID,
                                        messages=[{"role": "user", "content": [{"text": "Go"}]}])["stream"])

    events = await sdk(run)
    names = [next(iter(e)) for e in events]
    assert names == ["messageStart"] + ["contentBlockDelta"] * 4 + ["contentBlockStop", "messageStop", "metadata"]
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert "".join(texts) == "Event streams are binary frames."
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == approx_tokens("Event streams are binary frames.")
    ours = [c async for c in adapter(fake).stream(session, ChatRequest(
        messages=[{"role": "user", "content": "Go"}], stream=True), CLAUDE)]
    assert [c.delta for c in ours if c.delta] == texts
    assert ours[-1].usage is not None
    assert ours[-1].usage.output_tokens == events[-1]["metadata"]["usage"]["outputTokens"]


async def test_botocore_parses_tool_use_streams(fake: FakeProviderServer, brt: Any) -> None:
    fake.behavior = Behavior(tool_call={"name": "weather", "arguments": {"city": "Oslo"}})

    def run() -> list[dict[str, Any]]:
        return list(brt.converse_stream(modelId=MODEL_ID,
                                        messages=[{"role": "user", "content": [{"text": "Go"}]}])["stream"])

    events = await sdk(run)
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "weather"
    partial = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e)
    assert json.loads(partial) == {"city": "Oslo"}
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"


async def test_botocore_reads_mid_stream_exception_frames(fake: FakeProviderServer, brt: Any) -> None:
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1, status=429))

    def run() -> list[dict[str, Any]]:
        return list(brt.converse_stream(modelId=MODEL_ID,
                                        messages=[{"role": "user", "content": [{"text": "Go"}]}])["stream"])

    with pytest.raises(EventStreamError) as info:
        await sdk(run)
    assert info.value.response["Error"]["Code"] == "throttlingException"


@pytest.mark.parametrize(("fault", "code", "status"), [
    (Fault("rate_limit"), "ThrottlingException", 429),
    (Fault("quota"), "ServiceQuotaExceededException", 400),
    (Fault("context_window"), "ValidationException", 400),
    (Fault("auth"), "UnrecognizedClientException", 403),
    (Fault("permission"), "AccessDeniedException", 403),
    (Fault("not_found"), "ResourceNotFoundException", 404),
    (Fault("overloaded"), "ServiceUnavailableException", 503),
    (Fault("overloaded", status=429), "ModelNotReadyException", 429),
    (Fault("server_error"), "InternalServerException", 500),
    (Fault("server_error", status=424), "ModelErrorException", 424),
    (Fault("status", status=408), "ModelTimeoutException", 408),
])
async def test_boto3_reads_error_bodies(fault: Fault, code: str, status: int, fake: FakeProviderServer,
                                        brt: Any) -> None:
    fake.plan.fail_next(fault)
    with pytest.raises(ClientError) as info:
        await sdk(lambda: brt.converse(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "x"}]}]))
    err = info.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert err["Error"]["Message"]
    modeled = getattr(brt.exceptions, code, None)
    if modeled is not None:  # botocore raises the modeled class for the service's own error shapes
        assert isinstance(info.value, modeled)


async def test_boto3_parses_invoke_embeddings(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                              brt: Any) -> None:
    r = await sdk(lambda: brt.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                                           body=json.dumps({"inputText": "alpha", "dimensions": 256})))
    payload = json.loads(r["body"].read())
    ours = await adapter(fake).embed(session, EmbedRequest(input=["alpha"], params={"dimensions": 256}), TITAN)
    assert ours.embeddings == [payload["embedding"]]
    assert ours.usage.input_tokens == payload["inputTextTokenCount"]
