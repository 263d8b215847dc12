"""How ``Router.astream`` ends a stream that starts slowly, holds nothing, breaks, is abandoned, or that the
provider reports as a failed generation: what the caller gets, what is retried or falls over, and what
the usage record says. Real adapters against the fake providers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelplex.accounting.records import UsageRecord
from modelplex.catalog import load_catalog
from modelplex.catalog.tokens import count_messages, count_text
from modelplex.errors import StreamInterruptedError
from modelplex.router import Router
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer

MSGS = [{"role": "user", "content": "Write the report to a file."}]
TOOLS = [{"type": "function", "function": {"name": "write", "description": "Write a long text to a file.",
                                           "parameters": {"type": "object", "properties": {
                                               "text": {"type": "string", "description": "what to write"}},
                                               "required": ["text"]}}}]
BIG_CALL = {"name": "write", "arguments": {"text": "lorem ipsum dolor sit amet " * 40}}


def targets(resp_or_err: Any) -> list[tuple[str, str, str | None]]:
    return [(a.target, a.outcome, a.error_type) for a in resp_or_err.attempts]


@pytest.fixture
async def gem_fake() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(protocols=("openai", "gemini")) as server:
        yield server


# ------------------------------------------------------------------------------ a slow start, an empty stream


async def test_a_stream_slow_to_start_is_not_cut_by_the_idle_timeout(make_router, fake):
    """The idle timeout bounds gaps between chunks; the wait for the first is the deadline's (it used to be
    the idle timeout's, so a model slower to start than ``stream_idle_timeout`` failed only when streamed)."""
    fake.behavior = Behavior(ttft_s=0.3)
    r = make_router(tasks={"work": {"models": ["alpha/small"]}},
                    routing={"stream_idle_timeout": 0.05, "retry": {"max_retries_per_target": 0}})
    chunks = [c async for c in r.astream(MSGS, task="work")]
    assert "".join(c.delta for c in chunks) == (await r.acomplete(MSGS, task="work")).content
    assert chunks[-1].usage is not None


async def test_a_stream_that_holds_nothing_is_retried_and_falls_over(make_router, fake):
    """A 200 whose stream is only ``data: [DONE]`` is an invalid response (retryable), as an empty or HTML 200
    is: not a 500 from an escaped ``StopAsyncIteration``."""
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                    routing={"retry": {"base_delay": 0, "max_retries_per_target": 1}})
    seen: list[UsageRecord] = []
    r.on_record.append(seen.append)
    fake.plan.fail_next(Fault("empty_stream"), times=-1, model="small")
    chunks = [c async for c in r.astream(MSGS, task="work")]
    assert {c.model for c in chunks} == {"beta/mid"} and "".join(c.delta for c in chunks)
    assert [(a["target"], a["outcome"], a["error_type"]) for a in seen[-1].attempts] == [
        ("alpha/small", "error", "invalid_response"), ("alpha/small", "error", "invalid_response"),
        ("beta/mid", "success", None)]
    assert seen[-1].success


# ------------------------------------------------------------------------------ the charge of a stream cut short


async def _charge_of_a_cut(r: Router, fake: FakeProviderServer, *, upstream: bool) -> tuple[UsageRecord, str]:
    """A tool call's stream ended after ten argument chunks, by the upstream (a cut) or by the caller (who
    stops reading). Returns the usage record and the arguments the caller saw."""
    seen: list[UsageRecord] = []
    r.on_record.append(seen.append)
    fake.behavior = Behavior(stream_chunks=20, include_usage=False, tool_call=BIG_CALL)
    if upstream:
        fake.plan.fail_next(Fault("stream_cut", after_chunks=10))
    arguments: list[str] = []
    agen = r.astream(MSGS, model="alpha/small", tools=TOOLS)
    try:
        async for c in agen:
            arguments.extend(t.arguments for t in c.tool_calls)
            if not upstream and sum(1 for a in arguments if a) == 10:
                break
    except StreamInterruptedError:
        assert upstream
    finally:
        await agen.aclose()
    r.on_record.remove(seen.append)
    return seen[-1], "".join(arguments)


async def test_a_tool_call_cut_short_is_charged_for_its_arguments_and_tools_alike(make_router, fake):
    """Cut upstream or abandoned by the caller, a stream is charged for what it generated (the tool call's
    arguments, not only text), and its prompt counts the tool definitions both ways."""
    r = make_router()
    spec = r.catalog.get("alpha/small")
    prompt = count_messages(MSGS, spec, tools=TOOLS).tokens
    for upstream in (True, False):
        rec, arguments = await _charge_of_a_cut(r, fake, upstream=upstream)
        assert len(arguments) > 200
        assert not rec.success and rec.usage_estimated
        assert rec.input_tokens == prompt, upstream
        assert rec.output_tokens >= count_text(arguments, spec).tokens, upstream
        assert rec.cost_usd > 0


# ------------------------------------------------------------------------------ a failed generation


def _gem_router(fake: FakeProviderServer) -> Router:
    caps = ["tool_calling", "streaming", "system_messages"]
    cfg = {
        "providers": {"gem": {"protocol": "gemini", "base_url": fake.base_url, "api_key": "g-key"},
                      "alpha": {"protocol": "openai", "base_url": fake.base_url + "/v1", "api_key": "a-key"}},
        "models": [
            {"id": "gem/gemini-2.5-flash", "context_window": 1_000_000, "max_output_tokens": 8_000,
             "capabilities": caps, "category": "basic", "quality": 60,
             "pricing": {"input_per_mtok": 0.3, "output_per_mtok": 2.5}},
            {"id": "alpha/small", "context_window": 8_000, "max_output_tokens": 2_000, "capabilities": caps,
             "category": "basic", "quality": 40, "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}],
        "tasks": {"work": {"models": ["gem/gemini-2.5-flash", "alpha/small"]}},
        "accounting": {"sink": "none"},
        "routing": {"retry": {"base_delay": 0, "max_retries_per_target": 0}},
    }
    return Router.from_config(cfg, catalog=load_catalog(bundled=False), env={})


async def test_a_failed_generation_falls_over_and_is_never_an_answer(gem_fake):
    """Gemini's MALFORMED_FUNCTION_CALL is a failed generation: retried or fallen over as an invalid response
    (complete, and a stream before its first chunk); after chunks reached the caller, the stream breaks and
    the usage record says it failed."""
    r = _gem_router(gem_fake)
    seen: list[UsageRecord] = []
    r.on_record.append(seen.append)
    try:
        gem_fake.plan.fail_next(Fault("failed_generation"), protocol="gemini")
        resp = await r.acomplete(MSGS, task="work")
        assert resp.model == "alpha/small" and resp.finish_reason == "stop"
        assert targets(resp) == [("gem/gemini-2.5-flash", "error", "invalid_response"),
                                 ("alpha/small", "success", None)]

        gem_fake.plan.fail_next(Fault("failed_generation", after_chunks=0), protocol="gemini")
        chunks = [c async for c in r.astream(MSGS, task="work")]
        assert {c.model for c in chunks} == {"alpha/small"}

        gem_fake.plan.fail_next(Fault("failed_generation", after_chunks=2), protocol="gemini")
        got = []
        with pytest.raises(StreamInterruptedError):
            async for c in r.astream(MSGS, task="work"):
                got.append(c)
        assert got and all(c.finish_reason is None for c in got)
        assert not seen[-1].success and seen[-1].error_type == "stream_interrupted"
        assert seen[-1].model == "gem/gemini-2.5-flash" and seen[-1].output_tokens > 0
    finally:
        await r.aclose()
