"""Conformance with google-genai: the official SDK and modelplex's GeminiAdapter send the same logical
requests to the fake Gemini API (method, path, query, key header, body), and the SDK parses the fake's
answers, streams and errors. The SDK is sync (httpx); it runs in a worker thread against the fake on this
test's event loop.

Body comparison normalizes two spellings Google's proto-JSON parser treats as the same: the SDK sends some
fields in snake_case (``parameters_json_schema``, ``thinking_budget``) and adds ``role: user`` to the
system instruction and to embedding contents. Test data avoids underscores in user-chosen names so the
key normalization cannot touch them.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest

genai = pytest.importorskip("google.genai", reason="google-genai is a dev dependency")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types  # noqa: E402

from modelplex.catalog.schema import ModelSpec  # noqa: E402
from modelplex.providers.base import ProviderConfig  # noqa: E402
from modelplex.providers.gemini import GeminiAdapter  # noqa: E402
from modelplex.testing.faults import Behavior, Fault  # noqa: E402
from modelplex.testing.server import Captured, FakeProviderServer, approx_tokens  # noqa: E402
from modelplex.types import ChatRequest, EmbedRequest  # noqa: E402

KEY = "AIzaSyCONFORMANCE-0123456789abcdef"
MODEL = ModelSpec(id="google/gemini-2.5-flash", provider="google", context_window=1_048_576,
                  capabilities=frozenset({"reasoning", "tool_calling", "vision"}))
EMBED = ModelSpec(id="google/gemini-embedding-001", provider="google", context_window=2048, mode="embedding")
T = TypeVar("T")


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


@pytest.fixture
def gclient(fake: FakeProviderServer) -> Iterator[Any]:
    """The official client aimed at the fake. Held for the whole test: the SDK closes its HTTP client when
    the ``Client`` object is garbage-collected."""
    c = genai.Client(api_key=KEY, vertexai=False,
                     http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta"))
    yield c
    c.close()


def adapter(fake: FakeProviderServer) -> GeminiAdapter:
    return GeminiAdapter(ProviderConfig(name="google", protocol="gemini", base_url=fake.base_url, api_key=KEY))


async def sdk(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def normalize(value: Any, *, parent: str = "") -> Any:
    if isinstance(value, dict):
        out = {camel(k): normalize(v, parent=camel(k)) for k, v in value.items()}
        if parent in ("systemInstruction", "content"):
            out.pop("role", None)
        return out
    if isinstance(value, list):
        return [normalize(v, parent=parent) for v in value]
    return value


def assert_same_request(sdk_req: Captured, ours: Captured) -> None:
    assert (ours.method, ours.path, ours.query) == (sdk_req.method, sdk_req.path, sdk_req.query)
    for c in (sdk_req, ours):
        assert c.headers["x-goog-api-key"] == KEY
        assert c.headers["Content-Type"] == "application/json"
        assert "key" not in c.query and KEY not in c.path
    assert normalize(ours.json) == normalize(sdk_req.json)


# ============================================================================ (a) requests


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city"]}


async def test_generation_params_system_and_json_schema(fake: FakeProviderServer,
                                                         session: aiohttp.ClientSession, gclient: Any) -> None:
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", temperature=0.3, top_p=0.9, top_k=40, max_output_tokens=256,
        stop_sequences=["END"], seed=7, presence_penalty=0.1, frequency_penalty=0.2, candidate_count=1,
        response_mime_type="application/json", response_json_schema=SCHEMA)
    await sdk(lambda: gclient.models.generate_content(model="gemini-2.5-flash", contents="Weather?",
                                                           config=config))
    await adapter(fake).complete(session, ChatRequest(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
        params={"temperature": 0.3, "top_p": 0.9, "top_k": 40, "max_tokens": 256, "stop": "END", "seed": 7,
                "presence_penalty": 0.1, "frequency_penalty": 0.2, "n": 1,
                "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}}),
        MODEL)
    sdk_req, ours = fake.captured
    assert_same_request(sdk_req, ours)
    assert ours.json["generationConfig"]["maxOutputTokens"] == 256  # the comparison is not vacuous


async def test_tools_history_images_and_thinking(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                 gclient: Any) -> None:
    png = b"\x89PNG\r\n\x1a\nconformance"
    contents = [
        types.Content(role="user", parts=[types.Part(text="What is this and the weather?"),
                                          types.Part.from_bytes(data=png, mime_type="image/png")]),
        types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(
            name="weather", args={"city": "Paris"}))]),
        types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
            name="weather", response={"tempc": 21}))]),
    ]
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name="weather", description="Weather by city", parameters_json_schema=SCHEMA)])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["weather"])),
        thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True))
    await sdk(lambda: gclient.models.generate_content(model="gemini-2.5-flash", contents=contents,
                                                           config=config))
    await adapter(fake).complete(session, ChatRequest(messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "What is this and the weather?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": '{"tempc": 21}'},
    ], params={"tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
                                                          "parameters": SCHEMA}}],
               "tool_choice": {"type": "function", "function": {"name": "weather"}},
               "reasoning_effort": "low"}), MODEL)
    sdk_req, ours = fake.captured
    assert_same_request(sdk_req, ours)
    assert ours.json["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}


async def test_stream_request(fake: FakeProviderServer, session: aiohttp.ClientSession, gclient: Any) -> None:
    await sdk(lambda: list(gclient.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi")))
    _ = [c async for c in adapter(fake).stream(session, ChatRequest(messages=[{"role": "user", "content": "Hi"}],
                                                                    stream=True), MODEL)]
    sdk_req, ours = fake.captured
    assert ours.query == {"alt": "sse"}
    assert_same_request(sdk_req, ours)


async def test_batch_embed_request(fake: FakeProviderServer, session: aiohttp.ClientSession, gclient: Any) -> None:
    config = types.EmbedContentConfig(output_dimensionality=64, task_type="RETRIEVAL_DOCUMENT")
    await sdk(lambda: gclient.models.embed_content(model="gemini-embedding-001", contents=["alpha", "beta"],
                                                        config=config))
    await adapter(fake).embed(session, EmbedRequest(input=["alpha", "beta"], params={
        "dimensions": 64, "task_type": "retrieval_document"}), EMBED)
    sdk_req, ours = fake.captured
    assert ours.path.endswith(":batchEmbedContents")
    assert_same_request(sdk_req, ours)


# ============================================================================ (b) the SDK parses the fake


async def test_sdk_parses_generate_content(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                           gclient: Any) -> None:
    fake.behavior = Behavior(reply="The weather is mild.")
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=512,
                                                                              include_thoughts=True))
    r = await sdk(lambda: gclient.models.generate_content(model="gemini-2.5-flash", contents="Weather?",
                                                               config=config))
    assert r.text == "The weather is mild."
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.candidates[0].content.parts[0].thought is True
    u = r.usage_metadata
    assert u.prompt_token_count == approx_tokens("Weather?")
    assert u.candidates_token_count == approx_tokens("The weather is mild.")
    assert u.thoughts_token_count == 2 * approx_tokens("The weather is mild.")
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count + u.thoughts_token_count
    assert r.model_version == "gemini-2.5-flash" and r.response_id
    ours = await adapter(fake).complete(session, ChatRequest(messages=[{"role": "user", "content": "Weather?"}],
                                                             params={"reasoning_effort": "minimal"}), MODEL)
    assert ours.content == r.text
    assert ours.usage.reasoning_tokens == u.thoughts_token_count


async def test_sdk_parses_function_calls_and_blocked_prompts(fake: FakeProviderServer, gclient: Any) -> None:
    fake.behavior = Behavior(tool_call={"name": "weather", "arguments": {"city": "Oslo"}})
    r = await sdk(lambda: gclient.models.generate_content(model="gemini-2.5-flash", contents="Weather?"))
    assert [(c.name, c.args) for c in r.function_calls] == [("weather", {"city": "Oslo"})]
    fake.plan.fail_next(Fault("content_policy"))
    blocked = await sdk(lambda: gclient.models.generate_content(model="gemini-2.5-flash", contents="x"))
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not blocked.candidates


async def test_sdk_parses_the_stream_like_the_adapter(fake: FakeProviderServer,
                                                      session: aiohttp.ClientSession, gclient: Any) -> None:
    fake.behavior = Behavior(reply="Streaming works in four pieces.", stream_chunks=4)
    chunks = await sdk(lambda: list(gclient.models.generate_content_stream(model="gemini-2.5-flash",
                                                                                 contents="Go")))
    assert len(chunks) == 4
    assert "".join(c.text or "" for c in chunks) == "Streaming works in four pieces."
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == approx_tokens("Streaming works in four pieces.")
    ours = [c async for c in adapter(fake).stream(session, ChatRequest(messages=[{"role": "user", "content": "Go"}],
                                                                       stream=True), MODEL)]
    assert [c.delta for c in ours if c.delta] == [c.text for c in chunks]
    assert ours[-1].usage is not None
    assert ours[-1].usage.output_tokens == chunks[-1].usage_metadata.candidates_token_count


async def test_sdk_reads_in_band_stream_errors(fake: FakeProviderServer, gclient: Any) -> None:
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1, status=500))

    def consume() -> list[Any]:
        return list(gclient.models.generate_content_stream(model="gemini-2.5-flash", contents="Go"))

    with pytest.raises(genai_errors.ServerError) as info:
        await sdk(consume)
    assert info.value.code == 500 and info.value.status == "INTERNAL"


@pytest.mark.parametrize(("fault", "cls", "code", "status"), [
    (Fault("rate_limit", retry_after=9), genai_errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    (Fault("auth"), genai_errors.ClientError, 400, "INVALID_ARGUMENT"),
    (Fault("overloaded"), genai_errors.ServerError, 503, "UNAVAILABLE"),
    (Fault("not_found"), genai_errors.ClientError, 404, "NOT_FOUND"),
])
async def test_sdk_reads_error_bodies(fault: Fault, cls: type[Exception], code: int, status: str,
                                      fake: FakeProviderServer, gclient: Any) -> None:
    fake.plan.fail_next(fault)
    with pytest.raises(cls) as info:
        await sdk(lambda: gclient.models.generate_content(model="gemini-2.5-flash", contents="x"))
    err: Any = info.value
    assert (err.code, err.status) == (code, status)
    if fault.kind == "rate_limit":
        types_seen = [d["@type"] for d in err.details["error"]["details"]]
        assert "type.googleapis.com/google.rpc.RetryInfo" in types_seen


async def test_sdk_parses_embeddings_and_models(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                gclient: Any) -> None:
    r = await sdk(lambda: gclient.models.embed_content(
        model="gemini-embedding-001", contents=["alpha", "beta"],
        config=types.EmbedContentConfig(output_dimensionality=32)))
    ours = await adapter(fake).embed(session, EmbedRequest(input=["alpha", "beta"], params={"dimensions": 32}),
                                     EMBED)
    assert [e.values for e in r.embeddings] == ours.embeddings
    listed = await sdk(lambda: [m.name for m in gclient.models.list()])
    assert "models/gemini-2.5-flash" in listed
    health = await adapter(fake).health_check(session)
    assert health.ok


async def test_adapter_request_is_accepted_by_sdk_shaped_parsing(fake: FakeProviderServer,
                                                                 session: aiohttp.ClientSession) -> None:
    """The adapter's body round-trips through the SDK's own request model (a schema check on our output)."""
    await adapter(fake).complete(session, ChatRequest(
        messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                  {"role": "assistant", "content": "A"}, {"role": "user", "content": "U2"}],
        params={"temperature": 0.5, "max_tokens": 10, "tools": [{"type": "function", "function": {
            "name": "f", "parameters": SCHEMA}}], "tool_choice": "auto"}), MODEL)
    body = fake.captured[-1].json
    contents = [types.Content.model_validate(c) for c in body["contents"]]
    assert [c.role for c in contents] == ["user", "model", "user"]
    config = types.GenerateContentConfig.model_validate({
        "system_instruction": body["systemInstruction"], "temperature": 0.5,
        "tools": body["tools"], "tool_config": body["toolConfig"]})
    assert config.tools[0].function_declarations[0].parameters_json_schema == SCHEMA
    assert config.tool_config.function_calling_config.mode == types.FunctionCallingConfigMode.AUTO
    assert orjson.loads(orjson.dumps(body["generationConfig"])) == {"temperature": 0.5, "maxOutputTokens": 10}
