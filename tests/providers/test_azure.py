"""AzureOpenAIAdapter: deployment and v1 URL shapes, api-key auth, Azure error and stream quirks, and I/O
against the fake's Azure routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from modelplex.catalog.schema import ModelSpec
from modelplex.errors import (
    APIConnectionError,
    AuthenticationError,
    ConfigError,
    ContentPolicyError,
    ContextWindowExceededError,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from modelplex.providers import adapter_class
from modelplex.providers.azure import DEFAULT_API_VERSION, AzureOpenAIAdapter
from modelplex.providers.base import ProviderConfig, iter_sse
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer
from modelplex.types import ChatRequest, EmbedRequest, StreamChunk

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
SECRET = "azure-SECRET-key-0123456789"
ENDPOINT = "https://myres.openai.azure.com"


def spec(name: str = "gpt-4o", **kw: Any) -> ModelSpec:
    return ModelSpec(id=f"azure/{name}", provider="azure", context_window=128_000, **kw)


def azure(endpoint: str = ENDPOINT, key: str | None = SECRET, **kw: Any) -> AzureOpenAIAdapter:
    kw.setdefault("api_version", "2024-10-21")
    return AzureOpenAIAdapter(ProviderConfig(name="azure", protocol="azure", base_url=endpoint, api_key=key, **kw))


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def body_of(wire: Any) -> dict[str, Any]:
    return orjson.loads(wire.body or b"")


# ============================================================================ URLs, auth, body


def test_registered_under_azure_protocol() -> None:
    assert adapter_class("azure") is AzureOpenAIAdapter


def test_deployments_path_api_key_and_no_model_in_body() -> None:
    ad = azure(deployments={"gpt-4o": "prod-gpt4o"})
    wire = ad.chat_to_wire(ChatRequest(messages=user("hi"), params={"temperature": 0.1}), spec())
    assert wire.url == f"{ENDPOINT}/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    assert wire.headers["api-key"] == SECRET
    assert "Authorization" not in wire.headers
    assert wire.headers["Content-Type"] == "application/json"
    assert body_of(wire) == {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}


def test_deployment_lookup_by_name_then_id_then_wire_name() -> None:
    by_id = azure(deployments={"azure/gpt-4o-mini": "mini-dep"})
    assert "/deployments/mini-dep/" in by_id.chat_to_wire(ChatRequest(messages=user("x")), spec("gpt-4o-mini")).url
    fallback = azure()
    assert "/deployments/gpt-4o/" in fallback.chat_to_wire(ChatRequest(messages=user("x")), spec()).url
    wired = azure()
    url = wired.chat_to_wire(ChatRequest(messages=user("x")), spec("gpt-4o", wire_name="my gpt/4o")).url
    assert "/deployments/my%20gpt%2F4o/chat/completions" in url


def test_api_version_sources() -> None:
    assert azure(api_version=None).api_version() == DEFAULT_API_VERSION
    pinned = spec("o3-mini", api_requirements={"api_version": "2025-01-01-preview"})
    assert azure().chat_to_wire(ChatRequest(messages=user("x")), pinned).url.endswith(
        "?api-version=2025-01-01-preview")


def test_v1_path() -> None:
    ad = azure(use_v1_path=True, deployments={"gpt-4o": "prod-gpt4o"})
    wire = ad.chat_to_wire(ChatRequest(messages=user("hi"), stream=True), spec())
    assert wire.url == f"{ENDPOINT}/openai/v1/chat/completions"
    assert "api-version" not in wire.url
    assert wire.headers["Authorization"] == f"Bearer {SECRET}" and "api-key" not in wire.headers
    body = body_of(wire)
    assert body["model"] == "prod-gpt4o"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_endpoint_suffixes_are_normalized() -> None:
    auto_v1 = azure(f"{ENDPOINT}/openai/v1/")
    assert auto_v1.v1
    assert auto_v1.chat_to_wire(ChatRequest(messages=user("x")), spec()).url == f"{ENDPOINT}/openai/v1/chat/completions"
    plain = azure(f"{ENDPOINT}/openai")
    assert not plain.v1
    assert plain.chat_to_wire(ChatRequest(messages=user("x")), spec()).url.startswith(
        f"{ENDPOINT}/openai/deployments/gpt-4o/")


def test_auth_header_profile_override_and_config_errors() -> None:
    ad = azure(use_v1_path=True, profile={"auth_header": "api-key"})
    assert ad.chat_to_wire(ChatRequest(messages=user("x")), spec()).headers["api-key"] == SECRET
    bearer = azure(profile={"auth_header": "bearer"})
    assert bearer.chat_to_wire(ChatRequest(messages=user("x")), spec()).headers["Authorization"] == f"Bearer {SECRET}"
    with pytest.raises(ConfigError):
        azure(profile={"auth_header": "cookie"})
    with pytest.raises(ConfigError):
        azure("")


def test_embeddings_and_health_urls() -> None:
    emb = spec("text-embedding-3-small", mode="embedding")
    wire = azure(deployments={"text-embedding-3-small": "emb"}).embed_to_wire(EmbedRequest(input=["a"]), emb)
    assert wire.url == f"{ENDPOINT}/openai/deployments/emb/embeddings?api-version=2024-10-21"
    assert body_of(wire) == {"input": ["a"], "encoding_format": "float"}
    v1 = azure(use_v1_path=True).embed_to_wire(EmbedRequest(input=["a"]), emb)
    assert v1.url == f"{ENDPOINT}/openai/v1/embeddings" and body_of(v1)["model"] == "text-embedding-3-small"
    assert azure().health_to_wire().url == f"{ENDPOINT}/openai/models?api-version=2024-10-21"
    assert azure(use_v1_path=True).health_to_wire().url == f"{ENDPOINT}/openai/v1/models"


# ============================================================================ Azure payloads


def test_content_filter_error_is_content_policy() -> None:
    body = (FIXTURES / "azure_content_filter_error.json").read_bytes()
    err = azure().classify_error(400, {"apim-request-id": "5f0c-uuid"}, body, spec())
    assert isinstance(err, ContentPolicyError)
    assert err.request_id == "5f0c-uuid" and err.error_code == "content_filter"
    inner_only = orjson.dumps({"error": {"code": "BadRequest", "message": "filtered",
                                         "innererror": {"code": "ResponsibleAIPolicyViolation"}}})
    assert isinstance(azure().classify_error(400, {}, inner_only, spec()), ContentPolicyError)


def test_azure_rate_limit_with_string_code() -> None:
    body = (FIXTURES / "error_azure_rate_limit.json").read_bytes()
    err = azure().classify_error(429, {"retry-after": "6"}, body, spec())
    assert type(err) is RateLimitError and err.retry_after == 6.0


def test_content_filter_finish_reason() -> None:
    resp = azure().chat_from_wire((FIXTURES / "azure_content_filter_finish.json").read_bytes(), spec())
    assert resp.finish_reason == "content_filter" and resp.content is None


async def _lines(data: bytes) -> AsyncIterator[bytes]:
    for line in data.splitlines(keepends=True):
        yield line


async def test_azure_stream_with_leading_filter_chunk() -> None:
    decoder = azure().new_stream_decoder(spec(), ChatRequest(messages=[], stream=True))
    chunks: list[StreamChunk] = []
    async for event, data in iter_sse(_lines((FIXTURES / "azure_stream.sse").read_bytes())):  # type: ignore[arg-type]
        chunks.extend(decoder.feed(event, data))
    chunks.extend(decoder.close())
    assert decoder.done
    assert [c.delta for c in chunks if c.delta] == ["Bonjour"]
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["content_filter"]
    assert chunks[-1].usage is not None and chunks[-1].usage.input_tokens == 12


# ============================================================================ against the fake


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


@pytest.mark.parametrize("v1", [False, True])
async def test_complete_stream_embed_health(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                            v1: bool) -> None:
    ad = azure(fake.base_url, use_v1_path=v1, deployments={"gpt-4o": "chat-dep", "text-embedding-3-large": "emb-large"})
    fake.behavior = Behavior(reply="Bonjour tout le monde", stream_chunks=3)
    resp = await ad.complete(session, ChatRequest(messages=user("salut")), spec())
    assert resp.content == "Bonjour tout le monde" and resp.finish_reason == "stop"
    assert resp.usage.input_tokens == 2 and resp.usage.output_tokens == 6
    cap = fake.captured[-1]
    assert cap.protocol == "azure" and cap.model == "chat-dep"
    if v1:
        assert cap.path == "/openai/v1/chat/completions" and cap.query == {}
        assert cap.headers["Authorization"] == f"Bearer {SECRET}"
    else:
        assert cap.path == "/openai/deployments/chat-dep/chat/completions"
        assert cap.query == {"api-version": "2024-10-21"} and cap.headers["api-key"] == SECRET
        assert "model" not in cap.json

    chunks = [c async for c in ad.stream(session, ChatRequest(messages=user("salut"), stream=True), spec())]
    assert "".join(c.delta for c in chunks) == "Bonjour tout le monde"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 6

    emb = await ad.embed(session, EmbedRequest(input=["x", "y"]), spec("text-embedding-3-large", mode="embedding"))
    assert [len(v) for v in emb.embeddings] == [3072, 3072]
    assert fake.captured[-1].model == "emb-large"

    health = await ad.health_check(session)
    assert health.ok, health.detail


@pytest.mark.parametrize(("fault", "cls"), [
    (Fault("rate_limit", retry_after=4), RateLimitError),
    (Fault("quota"), QuotaExceededError),
    (Fault("context_window"), ContextWindowExceededError),
    (Fault("content_policy"), ContentPolicyError),
    (Fault("not_found"), NotFoundError),
    (Fault("auth"), AuthenticationError),
    (Fault("server_error", status=500), ServerError),
    (Fault("reset"), APIConnectionError),
])
async def test_azure_faults(fake: FakeProviderServer, session: aiohttp.ClientSession, fault: Fault,
                            cls: type[ProviderError]) -> None:
    fake.plan.fail_next(fault, protocol="azure")
    with pytest.raises(cls) as info:
        await azure(fake.base_url).complete(session, ChatRequest(messages=user("hi")), spec())
    if fault.kind == "rate_limit":
        assert info.value.retry_after == pytest.approx(4.0)
    if fault.kind == "content_policy":
        assert info.value.body is not None and info.value.body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


async def test_missing_or_invalid_key_is_authentication_error(fake: FakeProviderServer,
                                                              session: aiohttp.ClientSession) -> None:
    for key in (None, "invalid"):
        with pytest.raises(AuthenticationError):
            await azure(fake.base_url, key=key).complete(session, ChatRequest(messages=user("hi")), spec())


async def test_azure_secrets_never_leak(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ad = azure(fake.base_url)
    errors: list[ProviderError] = []
    with caplog.at_level(logging.DEBUG):
        for fault in (Fault("auth"), Fault("server_error"), Fault("reset"), Fault("content_policy")):
            fake.plan.fail_next(fault)
            with pytest.raises(ProviderError) as info:
                await ad.complete(session, ChatRequest(messages=user("hi")), spec())
            errors.append(info.value)
    for e in errors:
        for text in (str(e), repr(e), e.message, orjson.dumps(e.body, default=str).decode()):
            assert SECRET not in text
    assert SECRET not in caplog.text
    assert SECRET not in repr(ad) and SECRET not in repr(ad.provider)
