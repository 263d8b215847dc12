"""``Adapter.stream``'s I/O against the fake providers on loopback, for every protocol: how long it waits
for the first chunk and between chunks, what a stream cut mid-answer is charged, and a generation the
provider reports as failed."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from modelplex.catalog.schema import ModelSpec
from modelplex.catalog.tokens import count_messages, count_text
from modelplex.errors import APITimeoutError, InvalidResponseError, StreamInterruptedError
from modelplex.providers import adapter_class
from modelplex.providers.base import Adapter, ProviderConfig
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer
from modelplex.types import ChatRequest, StreamChunk

MSGS = [{"role": "user", "content": "Write the report."}]
TOOLS = [{"type": "function", "function": {"name": "write", "description": "Write a long text to a file.",
                                           "parameters": {"type": "object", "properties": {
                                               "text": {"type": "string", "description": "what to write"}},
                                               "required": ["text"]}}}]
SPECS = {
    "openai": ModelSpec(id="openai/gpt-4o-mini", provider="openai", context_window=128_000),
    "anthropic": ModelSpec(id="anthropic/claude-sonnet-4-5", provider="anthropic", context_window=200_000,
                           default_params={"max_tokens": 1024}),
    "gemini": ModelSpec(id="gemini/gemini-2.5-flash", provider="gemini", context_window=1_000_000),
    "bedrock": ModelSpec(id="bedrock/anthropic.claude-sonnet-4-5-v1:0", provider="bedrock",
                         context_window=200_000),
}
PROTOCOLS = sorted(SPECS)


@pytest.fixture
def fake(fake_provider: FakeProviderServer) -> FakeProviderServer:
    return fake_provider


@pytest.fixture
def session(aiohttp_session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return aiohttp_session


def adapter(fake: FakeProviderServer, protocol: str) -> Adapter:
    base = fake.base_url + "/v1" if protocol == "openai" else fake.base_url
    cfg = ProviderConfig(name=protocol, protocol=protocol, base_url=base, api_key="k-test", region="us-east-1",
                         aws_access_key_id="AKIDTEST" if protocol == "bedrock" else None,
                         aws_secret_access_key="secret" if protocol == "bedrock" else None)
    return adapter_class(protocol)(cfg)


async def drain(ad: Adapter, session: aiohttp.ClientSession, protocol: str, *, req: ChatRequest | None = None,
                **kw: Any) -> list[StreamChunk]:
    req = req or ChatRequest(messages=MSGS, stream=True)
    return [c async for c in ad.stream(session, req, SPECS[protocol], **kw)]


# ------------------------------------------------------------------------------ timeouts


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_slow_first_chunk_is_bounded_by_the_timeout_not_the_idle_timeout(fake, session, protocol):
    """A model that takes longer to start than the idle timeout still answers: the idle timeout applies
    only between chunks, after the first (docs/routing.md)."""
    fake.behavior = Behavior(ttft_s=0.3)
    chunks = await drain(adapter(fake, protocol), session, protocol, timeout=5.0, idle_timeout=0.05)
    assert "".join(c.delta for c in chunks) and [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_first_chunk_wait_ends_at_the_timeout(fake, session, protocol):
    fake.behavior = Behavior(ttft_s=3.0)
    started = time.monotonic()
    with pytest.raises(APITimeoutError, match=r"no first chunk within 0\.2s"):
        await drain(adapter(fake, protocol), session, protocol, timeout=0.2, idle_timeout=10.0)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_idle_timeout_bounds_each_gap_after_the_first_chunk(fake, session, protocol):
    fake.behavior = Behavior(stream_chunks=4)
    fake.plan.fail_next(Fault("slow", delay=2.0))
    got: list[StreamChunk] = []
    last = time.monotonic()
    with pytest.raises(StreamInterruptedError, match=r"\(timeout\)") as ei:
        async for c in adapter(fake, protocol).stream(session, ChatRequest(messages=MSGS, stream=True),
                                                      SPECS[protocol], timeout=30.0, idle_timeout=0.2):
            got.append(c)
            last = time.monotonic()
    assert got and time.monotonic() - last < 1.5  # the fake waits 2 s before each piece
    assert isinstance(ei.value.__cause__, TimeoutError)


# ------------------------------------------------------------------------------ what a cut stream is charged


@pytest.mark.parametrize("protocol", ["anthropic", "bedrock", "openai"])  # Gemini sends a call whole
async def test_a_tool_call_cut_mid_arguments_is_charged_for_the_arguments(fake, session, protocol):
    """The estimate counts everything the stream generated (tool-call names and arguments too, as the
    non-streaming estimate does), and the prompt with its tool definitions."""
    text = "lorem ipsum dolor sit amet " * 40
    fake.behavior = Behavior(stream_chunks=20, include_usage=False, tool_call={"name": "write",
                                                                              "arguments": {"text": text}})
    fake.plan.fail_next(Fault("stream_cut", after_chunks=10))
    req = ChatRequest(messages=MSGS, params={"tools": TOOLS}, stream=True)
    got: list[StreamChunk] = []
    with pytest.raises(StreamInterruptedError) as ei:
        async for c in adapter(fake, protocol).stream(session, req, SPECS[protocol]):
            got.append(c)
    arguments = "".join(t.arguments for c in got for t in c.tool_calls)
    assert len(arguments) > 200  # a good part of the call arrived before the cut
    usage = ei.value.partial_usage
    spec = SPECS[protocol]
    assert usage.estimated
    assert usage.output_tokens >= count_text(arguments, spec).tokens
    if protocol != "anthropic":  # Anthropic reports the input at message_start (next test)
        assert usage.input_tokens == count_messages(MSGS, spec, tools=TOOLS).tokens


async def test_input_tokens_the_provider_reported_before_the_cut_are_kept(fake, session):
    """Anthropic's ``message_start`` carries the prompt's real token count: a stream cut later is charged
    that, not an estimate."""
    fake.behavior = Behavior(stream_chunks=8)
    fake.plan.fail_next(Fault("stream_cut", after_chunks=3))
    got: list[StreamChunk] = []
    with pytest.raises(StreamInterruptedError) as ei:
        async for c in adapter(fake, "anthropic").stream(session, ChatRequest(messages=MSGS, stream=True),
                                                          SPECS["anthropic"]):
            got.append(c)
    reported = fake.captured[-1]
    from modelplex.testing.server import approx_tokens

    prompt = "\n".join(m["content"] for m in MSGS)
    assert reported.protocol == "anthropic"
    assert ei.value.partial_usage.input_tokens == approx_tokens(prompt)  # the fake's own count, as sent
    assert ei.value.partial_usage.output_tokens >= count_text("".join(c.delta for c in got), SPECS["anthropic"]).tokens


# ------------------------------------------------------------------------------ failed generations


@pytest.mark.parametrize("protocol", ["bedrock", "gemini"])
async def test_a_failed_generation_is_an_invalid_response_not_an_answer(fake, session, protocol):
    """Gemini's MALFORMED_FUNCTION_CALL and Bedrock's malformed_model_output end a generation that failed:
    the adapter raises a retryable ``InvalidResponseError`` (the router retries or falls over)."""
    ad = adapter(fake, protocol)
    fake.plan.fail_next(Fault("failed_generation"))
    with pytest.raises(InvalidResponseError, match="generation failed"):
        await ad.complete(session, ChatRequest(messages=MSGS), SPECS[protocol])
    fake.plan.fail_next(Fault("failed_generation", after_chunks=0))
    with pytest.raises(InvalidResponseError, match="generation failed"):  # before any chunk: retryable
        await drain(ad, session, protocol)
    fake.plan.fail_next(Fault("failed_generation", after_chunks=2))
    got: list[StreamChunk] = []
    with pytest.raises(StreamInterruptedError) as ei:  # after chunks reached the caller
        async for c in ad.stream(session, ChatRequest(messages=MSGS, stream=True), SPECS[protocol]):
            got.append(c)
    assert "".join(c.delta for c in got) and all(c.finish_reason is None for c in got)
    assert ei.value.partial_usage.output_tokens > 0
