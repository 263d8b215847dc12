"""The routing acceptance tests: real adapters, a fake provider on loopback, an injected clock."""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import BaseModel

from modelplex.accounting.records import UsageRecord
from modelplex.catalog import load_catalog
from modelplex.errors import (
    AllAttemptsFailedError,
    BadRequestError,
    ContextWindowExceededError,
    InvalidRequestError,
    NoCandidatesError,
    ProviderNotConfiguredError,
    StreamInterruptedError,
    UnknownModelError,
    UnknownTaskError,
    UnsupportedParameterError,
)
from modelplex.resilience.breaker import BreakerState
from modelplex.router import Router
from modelplex.testing.faults import Behavior, Fault

MSGS = [{"role": "user", "content": "Summarize the quarterly numbers."}]


def targets(resp_or_err) -> list[tuple[str, str]]:
    return [(a.target, a.outcome) for a in resp_or_err.attempts]


def wire_models(fake) -> list[str]:
    return [c.model for c in fake.captured]


# ----------------------------------------------------------------------------- tasks and strategies


async def test_task_resolves_under_each_strategy(make_router):
    r = make_router(tasks={"summarize": {"requirements": {"min_context": 50_000}}})
    cheap = await r.acomplete(MSGS, task="summarize", strategy="cost_optimized")
    assert cheap.model == "beta/mid"  # cheapest with >= 50k context
    best = await r.acomplete(MSGS, task="summarize", strategy="quality_optimized")
    assert best.model == "claude/sonnet"  # comprehensive, highest quality
    assert best.task == "summarize" and best.strategy == "quality_optimized"
    assert "strategy quality_optimized (request)" in best.selection_reason
    economy_alias = await r.acomplete(MSGS, task="summarize", strategy="economy")
    assert economy_alias.model == "beta/mid" and economy_alias.strategy == "cost_optimized"


async def test_precedence_of_overrides(make_router):
    tasks = {"summarize": {"requirements": {"min_context": 50_000}}}
    env_q = {"MODEL_SELECTION_STRATEGY": "quality_optimized"}
    r = make_router(env=env_q, tasks=tasks)
    assert (await r.acomplete(MSGS, task="summarize")).model == "claude/sonnet"
    # the request's own strategy beats the environment
    assert (await r.acomplete(MSGS, task="summarize", strategy="cost_optimized")).model == "beta/mid"
    # the runtime setting (admin API) beats the environment
    r.runtime_strategy = "cost_optimized"
    assert (await r.acomplete(MSGS, task="summarize")).model == "beta/mid"
    # DEFAULT_<TASK>_MODEL beats strategy selection
    r2 = make_router(env={**env_q, "DEFAULT_SUMMARIZE_MODEL": "alpha/large"}, tasks=tasks)
    resp = await r2.acomplete(MSGS, task="summarize")
    assert resp.model == "alpha/large" and "DEFAULT_SUMMARIZE_MODEL" in resp.selection_reason
    # FORCE_MODEL beats everything routed
    r3 = make_router(env={**env_q, "DEFAULT_SUMMARIZE_MODEL": "alpha/large", "FORCE_MODEL": "beta/mid"},
                     tasks=tasks)
    resp = await r3.acomplete(MSGS, task="summarize")
    assert resp.model == "beta/mid" and "FORCE_MODEL" in resp.selection_reason
    # ... but not a call that names its model explicitly
    assert (await r3.acomplete(MSGS, model="alpha/small")).model == "alpha/small"
    # ... nor requests a chat model cannot answer: embeddings keep their own routing
    assert (await r3.aembed(["one"])).model == "alpha/embed"
    assert (await r3.aembed(["one"], task="embedding")).model == "alpha/embed"


async def test_strategy_per_task_model_and_priority_list(make_router):
    r = make_router(tasks={"parse": {"models": ["alpha/small", "beta/mid"]}},
                    strategies={"balanced": {"selection": "balanced", "models": {"parse": "claude/sonnet"}}})
    resp = await r.acomplete(MSGS, task="parse", strategy="balanced")
    assert resp.model == "claude/sonnet" and "names claude/sonnet" in resp.selection_reason
    resp = await r.acomplete(MSGS, task="parse", strategy="cost_optimized")
    assert resp.model == "alpha/small" and "priority list" in resp.selection_reason


async def test_experiment_arms_are_sticky_and_recorded(make_router):
    r = make_router(tasks={"summarize": {"requirements": {"min_context": 50_000}}},
                    experiments={"strategy_split": {"cost_optimized": 50, "quality_optimized": 50}})
    arms = {}
    for i in range(40):
        user = f"user-{i}"
        a = await r.acomplete(MSGS, task="summarize", user=user)
        b = await r.acomplete(MSGS, task="summarize", user=user)
        assert a.experiment_arm == b.experiment_arm and a.model == b.model
        arms[user] = a.experiment_arm
        assert a.model == ("beta/mid" if a.experiment_arm == "cost_optimized" else "claude/sonnet")
    assert set(arms.values()) == {"cost_optimized", "quality_optimized"}


async def test_complexity_escalates_and_says_so(make_router):
    r = make_router(tasks={"draft": {"requirements": {"min_context": 50_000}, "strategy": "cost_optimized"}})
    plain = await r.acomplete(MSGS, task="draft")
    assert plain.model == "beta/mid"
    medium = await r.acomplete(MSGS, task="draft", context={"artifacts": list(range(12)),
                                                            "requires_creative_writing": True})
    assert medium.model == "beta/mid"  # 0.4 + 0.3 = 0.70: not above the 0.8 threshold
    long_chat = MSGS * 13
    hard = await r.acomplete(long_chat, task="draft", context={"artifacts": list(range(12)),
                                                               "requires_creative_writing": True})
    assert hard.model == "claude/sonnet"
    assert "complexity 0.90" in hard.selection_reason
    assert "escalated to quality_optimized" in hard.selection_reason


async def test_unknowns_are_typed(make_router):
    r = make_router()
    with pytest.raises(UnknownTaskError):
        await r.acomplete(MSGS, task="no_such_task")
    with pytest.raises(UnknownModelError) as ei:
        await r.acomplete(MSGS, model="alpha/smal")
    assert "alpha/small" in str(ei.value)
    with pytest.raises(NoCandidatesError):
        await r.acomplete(MSGS, requirements={"min_context": 10_000_000})


async def test_missing_credentials_name_the_variable():
    r = Router.from_config({"accounting": {"sink": "none"}}, env={})
    with pytest.raises(ProviderNotConfiguredError) as ei:
        await r.acomplete(MSGS, model="anthropic/claude-sonnet-4-6")
    assert "ANTHROPIC_API_KEY" in str(ei.value)


# ----------------------------------------------------------------------------- fallback plan


async def test_failing_primary_falls_back_along_the_documented_plan(make_router, fake):
    r = make_router(
        tasks={"work": {"models": ["alpha/large"]}},
        routing={"fallback_paths": {"alpha/large": ["claude/sonnet"]}, "cross_provider_chain": ["beta/mid"],
                 "universal_fallback": "alpha/small", "retry": {"max_retries_per_target": 0}},
    )
    fake.plan.fail_next(Fault("server_error", status=500), times=-1, model="large")
    fake.plan.fail_next(Fault("overloaded"), times=-1, model="sonnet")
    fake.plan.fail_next(Fault("not_found"), times=-1, model="mid")
    resp = await r.acomplete(MSGS, task="work")
    assert resp.model == "alpha/small" and resp.fallback_used
    assert [t for t, _ in targets(resp)] == ["alpha/large", "claude/sonnet", "beta/mid", "alpha/small"]
    assert [a.error_type for a in resp.attempts] == ["server_error", "overloaded", "not_found", None]


async def test_all_attempts_failed_lists_each_attempt(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/large", "beta/mid"]}},
                    routing={"universal_fallback": "beta/mid", "retry": {"max_retries_per_target": 1}})
    fake.plan.fail_next(Fault("server_error", status=502), times=-1)
    with pytest.raises(AllAttemptsFailedError) as ei:
        await r.acomplete(MSGS, task="work")
    err = ei.value
    assert [(a.target, a.retry) for a in err.attempts] == [("alpha/large", 0), ("alpha/large", 1),
                                                           ("beta/mid", 0), ("beta/mid", 1)]
    assert "alpha/large: error server_error 502" in str(err)


async def test_bad_request_is_not_retried_or_fallen_over(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/large", "beta/mid"]}})
    fake.plan.fail_next(Fault("bad_request"), times=1, model="large")
    with pytest.raises(BadRequestError):
        await r.acomplete(MSGS, task="work")
    assert wire_models(fake) == ["large"]


# ----------------------------------------------------------------------------- retries and breakers


async def test_429_retry_after_is_honoured_without_tripping_the_breaker(make_router, fake, clock):
    r = make_router()
    fake.plan.fail_next(Fault("rate_limit", retry_after=2), times=1, model="small")
    resp = await r.acomplete(MSGS, model="alpha/small")
    assert resp.model == "alpha/small"
    assert [(a.outcome, a.error_type, a.retry) for a in resp.attempts] == [
        ("error", "rate_limited", 0), ("success", None, 1)]
    assert clock.sleeps == [2.0]
    assert r.breakers.state("provider:alpha") == BreakerState.CLOSED
    assert r.breakers.state("model:alpha/small") == BreakerState.CLOSED
    assert not resp.fallback_used


async def test_retry_after_past_the_cap_falls_over_instead_of_sleeping(make_router, fake, clock):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                    routing={"retry": {"retry_after_cap": 10}})
    fake.plan.fail_next(Fault("rate_limit", retry_after=120), times=1, model="small")
    resp = await r.acomplete(MSGS, task="work")
    assert resp.model == "beta/mid" and clock.sleeps == []


async def test_quota_exhaustion_fails_over_at_once(make_router, fake, clock):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}})
    fake.plan.fail_next(Fault("quota"), times=1, model="small")
    resp = await r.acomplete(MSGS, task="work")
    assert targets(resp) == [("alpha/small", "error"), ("beta/mid", "success")]
    assert resp.attempts[0].error_type == "quota_exceeded" and clock.sleeps == []


async def test_three_500s_open_the_breaker_then_half_open_and_close(make_router, fake, clock):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                    routing={"retry": {"max_retries_per_target": 2}})
    fake.plan.fail_next(Fault("server_error", status=500), times=3, model="small")
    first = await r.acomplete(MSGS, task="work")
    assert targets(first) == [("alpha/small", "error")] * 3 + [("beta/mid", "success")]
    assert r.breakers.state("model:alpha/small") == BreakerState.OPEN
    assert r.breakers.state("provider:alpha") == BreakerState.OPEN

    sent_before = len(fake.captured)
    second = await r.acomplete(MSGS, task="work")
    assert targets(second) == [("alpha/small", "skipped_breaker"), ("beta/mid", "success")]
    assert wire_models(fake)[sent_before:] == ["mid"]  # refused without a network call

    clock.advance(299)
    assert targets(await r.acomplete(MSGS, task="work"))[0] == ("alpha/small", "skipped_breaker")
    clock.advance(2)  # past the 300 s recovery time: half-open, one probe
    third = await r.acomplete(MSGS, task="work")
    assert targets(third) == [("alpha/small", "success")]
    assert r.breakers.state("model:alpha/small") == BreakerState.CLOSED
    assert r.breakers.state("provider:alpha") == BreakerState.CLOSED


async def test_4xx_and_429_do_not_count_toward_the_breaker(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                    routing={"retry": {"max_retries_per_target": 0}})
    for _ in range(5):
        fake.plan.fail_next(Fault("not_found"), times=1, model="small")
        await r.acomplete(MSGS, task="work")
    assert r.breakers.state("model:alpha/small") == BreakerState.CLOSED


# ----------------------------------------------------------------------------- context windows


async def test_prompt_too_large_for_the_primary_goes_straight_to_a_larger_window(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small", "alpha/large"]}})
    big = [{"role": "user", "content": "word " * 12_000}]  # ~12k tokens: more than alpha/small's 8k window
    resp = await r.acomplete(big, task="work")
    assert resp.model == "alpha/large"
    assert targets(resp) == [("alpha/small", "skipped_context"), ("alpha/large", "success")]
    assert wire_models(fake) == ["large"]  # the small model was never called


async def test_prompt_too_large_for_every_target_is_a_context_window_error_and_nothing_is_sent(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}})
    huge = [{"role": "user", "content": "word " * 300_000}]  # ~300k tokens: larger than every window here
    with pytest.raises(AllAttemptsFailedError) as ei:
        await r.acomplete(huge, task="work")
    assert targets(ei.value) == [("alpha/small", "skipped_context"), ("beta/mid", "skipped_context")]
    err = ei.value.last_error
    assert isinstance(err, ContextWindowExceededError) and err.status_code is None
    largest = max((r.catalog.get(m) for m in ("alpha/small", "beta/mid")), key=lambda s: s.context_window)
    assert err.model == largest.id and f"{largest.context_window:,} tokens" in err.message
    assert "Nothing was sent" in err.message
    assert wire_models(fake) == []
    # one target that failed for another reason: the failure is what the caller sees (a later retry may pass)
    fake.plan.fail_next(Fault("server_error"), times=5, model="large")
    r2 = make_router(tasks={"work": {"models": ["alpha/small", "alpha/large"]}},
                     routing={"retry": {"max_retries_per_target": 0}})
    with pytest.raises(AllAttemptsFailedError) as ei:
        await r2.acomplete([{"role": "user", "content": "word " * 12_000}], task="work")
    assert not isinstance(ei.value.last_error, ContextWindowExceededError)


async def test_context_window_error_falls_back_only_to_larger_windows(make_router, fake):
    r = make_router(tasks={"work": {"models": ["beta/mid", "alpha/small", "alpha/large"]}})
    fake.plan.fail_next(Fault("context_window"), times=1, model="mid")
    resp = await r.acomplete(MSGS, task="work")
    assert targets(resp) == [("beta/mid", "error"), ("alpha/small", "skipped_context"),
                             ("alpha/large", "success")]


async def test_claudes_prompt_too_long_falls_over_to_a_larger_window(make_router, fake):
    """Anthropic says "prompt is too long" with no structured code; it must still move the request to a
    larger window, not end it as a plain bad request (the token pre-check is an estimate for Claude)."""
    caps = ["tool_calling", "streaming", "system_messages"]
    models = [{"id": "claude/sonnet", "context_window": 200_000, "max_output_tokens": 8_000, "capabilities": caps,
               "default_params": {"max_tokens": 1024}, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
              {"id": "alpha/small", "context_window": 8_000, "max_output_tokens": 2_000, "capabilities": caps,
               "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
              {"id": "beta/huge", "context_window": 1_000_000, "max_output_tokens": 8_000, "capabilities": caps,
               "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}]
    r = make_router(models=models, tasks={"work": {"models": ["claude/sonnet", "alpha/small", "beta/huge"]}})
    fake.plan.fail_next(Fault("context_window"), times=1, model="sonnet")
    resp = await r.acomplete(MSGS, task="work")
    assert targets(resp) == [("claude/sonnet", "error"), ("alpha/small", "skipped_context"),
                             ("beta/huge", "success")]
    assert resp.attempts[0].error_type == "context_window_exceeded"


async def test_content_policy_falls_back_only_when_allowed(make_router, fake):
    strict = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}})
    fake.plan.fail_next(Fault("content_policy"), times=1, model="small")
    with pytest.raises(BadRequestError):
        await strict.acomplete(MSGS, task="work")
    lenient = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                          routing={"content_policy_fallback": True})
    fake.plan.fail_next(Fault("content_policy"), times=1, model="small")
    assert (await lenient.acomplete(MSGS, task="work")).model == "beta/mid"


# ----------------------------------------------------------------------------- streaming


async def test_stream_retries_before_the_first_chunk(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}})
    fake.plan.fail_next(Fault("server_error", status=503), times=-1, model="small")
    chunks = [c async for c in r.astream(MSGS, task="work")]
    assert "".join(c.delta for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].cost_usd and chunks[-1].cost_usd > 0
    assert {c.model for c in chunks} == {"beta/mid"}


async def test_stream_cut_after_first_chunk_is_not_retried(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}})
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1), times=1, model="small")
    got = []
    with pytest.raises(StreamInterruptedError) as ei:
        async for c in r.astream(MSGS, task="work"):
            got.append(c)
    assert len(got) >= 1 and got[0].delta
    assert wire_models(fake) == ["small"]  # no retry, no fallback
    assert ei.value.partial_usage is not None and ei.value.partial_usage.output_tokens > 0


async def test_a_stream_that_breaks_counts_against_its_target(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small"]}}, routing={"breaker": {"failure_threshold": 2}})
    for _ in range(2):
        fake.plan.fail_next(Fault("stream_cut", after_chunks=1), times=1, model="small")
        with pytest.raises(StreamInterruptedError):
            async for _c in r.astream(MSGS, task="work"):
                pass
    assert r.breakers.state("model:alpha/small") == BreakerState.OPEN  # two broken streams in a row
    seen: list[UsageRecord] = []
    r.on_record.append(seen.append)
    r.breakers.reset()
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1), times=1, model="small")
    with pytest.raises(StreamInterruptedError):
        async for _c in r.astream(MSGS, task="work"):
            pass
    assert [(a["outcome"], a["error_type"]) for a in seen[-1].attempts] == [("error", "stream_interrupted")]
    async for _c in r.astream(MSGS, task="work"):  # a stream that completes is a success
        pass
    assert seen[-1].attempts[-1]["outcome"] == "success"
    assert r.breakers.state("model:alpha/small") == BreakerState.CLOSED


async def test_a_streams_first_chunk_is_bounded_by_the_deadline(make_router, fake, clock):
    from modelplex.errors import APITimeoutError

    fake.behavior = Behavior(ttft_s=5)
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}}, routing={"deadline": 0.3})
    r.on_attempt.append(lambda attempt, request_id: clock.advance(1.0))  # the router's clock passes the deadline
    with pytest.raises(AllAttemptsFailedError) as ei:
        async for _c in r.astream(MSGS, task="work"):
            pass
    assert isinstance(ei.value.last_error, APITimeoutError)
    assert [(a.target, a.outcome) for a in ei.value.attempts][-1] == ("beta/mid", "skipped_deadline")
    assert wire_models(fake) == ["small"]  # the next target, never called, is not blamed


async def test_tool_definitions_count_in_the_worst_case_estimate(make_router, fake):
    from modelplex.errors import BudgetExceededError

    props = {f"field_{i}": {"type": "string", "description": "a long description of this field " * 4}
             for i in range(60)}
    tools = [{"type": "function", "function": {"name": "extract", "parameters": {"type": "object",
                                                                                "properties": props}}}]
    r = make_router(budgets={"per_request_max_usd": 0.001})  # alpha/large: $3 per million input tokens
    _spec, count = r.count_tokens(MSGS, model="alpha/large", tools=tools)
    assert count.tokens * 3 / 1e6 > 0.001  # the prompt alone costs more than the cap
    with pytest.raises(BudgetExceededError):
        await r.acomplete(MSGS, model="alpha/large", tools=tools, max_tokens=10)
    assert wire_models(fake) == []
    assert (await r.acomplete(MSGS, model="alpha/large", max_tokens=10)).content  # without the tools it fits


async def test_strict_parameters_skip_a_fallback_that_cannot_take_them(make_router, fake):
    strict = {"drop_unsupported_params": False, "retry": {"max_retries_per_target": 0}}
    r = make_router(tasks={"work": {"models": ["alpha/small", "claude/sonnet"]}}, routing=strict)
    with pytest.raises(UnsupportedParameterError, match="seed"):  # no target takes it: before any call
        await r.acomplete(MSGS, model="claude/sonnet", seed=7)
    assert wire_models(fake) == []
    fake.plan.fail_next(Fault("server_error", status=500), times=1, model="small")
    with pytest.raises(AllAttemptsFailedError) as ei:  # the fallback cannot honour seed: skipped, not raised late
        await r.acomplete(MSGS, task="work", seed=7)
    assert targets(ei.value) == [("alpha/small", "error"), ("claude/sonnet", "skipped_unsupported")]
    assert (await r.acomplete(MSGS, task="work", seed=7)).model == "alpha/small"


async def test_a_cooling_target_is_skipped_before_its_budget_is_checked(make_router):
    from modelplex.errors import ServerError

    r = make_router(budgets={"per_request_max_usd": 0.01}, tasks={"work": {"models": ["alpha/large", "beta/mid"]}})
    for key in ("provider:alpha", "model:alpha/large"):
        for _ in range(3):
            permit = await r.breakers.allow(key)
            assert permit is not None
            permit.failure(ServerError("down", status_code=500))
    # alpha/large's worst case ($3/M in, $15/M out: ~$0.015) is over the cap, but it is cooling down anyway
    resp = await r.acomplete(MSGS, task="work", max_tokens=1000)
    assert resp.model == "beta/mid" and targets(resp)[0] == ("alpha/large", "skipped_breaker")


async def test_a_failure_that_opens_a_breaker_falls_over_without_a_back_off(make_router, fake, clock):
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                    routing={"breaker": {"failure_threshold": 1}})
    fake.plan.fail_next(Fault("server_error", status=500), times=1, model="small")
    resp = await r.acomplete(MSGS, task="work")
    assert targets(resp) == [("alpha/small", "error"), ("beta/mid", "success")]
    assert clock.sleeps == []  # a retry on alpha would only be refused by its open breaker


async def test_max_tokens_over_a_models_output_limit_skips_it(make_router, fake):
    r = make_router(tasks={"work": {"models": ["alpha/small", "alpha/large"]}})  # output limits 2,000 and 8,000
    resp = await r.acomplete(MSGS, task="work", max_tokens=5_000)
    assert targets(resp)[:2] == [("alpha/small", "skipped_context"), ("alpha/large", "success")]
    with pytest.raises(AllAttemptsFailedError) as ei:
        await r.acomplete(MSGS, model="alpha/small", max_tokens=5_000)
    assert isinstance(ei.value.last_error, ContextWindowExceededError)
    assert "max_tokens 5,000 exceeds the output limit" in ei.value.last_error.message
    assert wire_models(fake) == ["large"]  # alpha/small was never sent a max_tokens it would refuse


def test_sync_stream_and_complete_from_many_threads():
    from modelplex.testing.server import FakeProviderServer

    fake = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        cfg = {"providers": {"alpha": {"protocol": "openai", "base_url": fake.base_url + "/v1", "api_key": "k"}},
               "models": [{"id": "alpha/small", "context_window": 8000, "max_output_tokens": 1000,
                           "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}],
               "tasks": {"work": {"models": ["alpha/small"]}}, "accounting": {"sink": "none"}}
        with Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}) as r:
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda i: r.complete(MSGS, task="work", user=f"u{i}"), range(32)))
            assert {x.model for x in results} == {"alpha/small"}
            assert len({x.request_id for x in results}) == 32
            chunks = list(r.stream(MSGS, task="work"))
            assert "".join(c.delta for c in chunks) and chunks[-1].usage is not None
    finally:
        fake.stop_thread()


# ----------------------------------------------------------------------------- structured output, embeddings


class Job(BaseModel):
    title: str
    skills: list[str]


async def test_response_model_returns_a_validated_object(make_router):
    r = make_router(tasks={"parse": {"models": ["alpha/small"]}})
    resp = await r.acomplete([{"role": "user", "content": "Parse: Senior Python developer"}], task="parse",
                             response_model=Job)
    assert isinstance(resp.parsed, Job)


async def test_a_refusal_is_a_refusal_error_with_no_repair_turn(make_router, fake):
    from modelplex.errors import RefusalError, StructuredOutputError
    from modelplex.testing.fake_openai import REFUSAL_MARKER

    fake.per_model["small"] = Behavior(reply=f"{REFUSAL_MARKER}I can't help with that.")
    r = make_router(tasks={"parse": {"models": ["alpha/small"]}})
    with pytest.raises(RefusalError) as err:
        await r.acomplete(MSGS, task="parse", response_model=Job)
    assert isinstance(err.value, StructuredOutputError) and err.value.refusal == "I can't help with that."
    assert err.value.response.cost_usd > 0 and len(fake.captured) == 1  # no repair turn
    plain = await r.acomplete(MSGS, task="parse")
    assert plain.refusal == "I can't help with that." and not plain.content


async def test_response_model_repairs_once(make_router, fake):
    answers = iter(['{"title": 3}', '{"title": "Engineer", "skills": ["python"]}'])
    fake.per_model["small"] = Behavior(reply=lambda model, messages: next(answers))
    r = make_router(tasks={"parse": {"models": ["alpha/small"]}})
    resp = await r.acomplete(MSGS, task="parse", response_model=Job)
    assert resp.parsed == Job(title="Engineer", skills=["python"])
    assert "repair" in resp.selection_reason
    assert len(fake.captured) == 2


async def test_embeddings_route_to_an_embedding_model(make_router):
    r = make_router()
    e = await r.aembed(["one", "two"])
    assert e.model == "alpha/embed" and len(e.embeddings) == 2 and e.cost_usd >= 0


async def test_each_embedding_input_meets_the_window_on_its_own(make_router, fake):
    r = make_router()  # alpha/embed: an 8,000-token window
    texts = ["The quick brown fox jumps over the lazy dog. " * 5] * 400  # ~22,000 tokens in all
    e = await r.aembed(texts, model="alpha/embed")
    assert len(e.embeddings) == 400 and len(fake.captured[-1].json["input"]) == 400
    sent = len(fake.captured)
    with pytest.raises(AllAttemptsFailedError) as too_long:
        await r.aembed(["short", "word " * 9_000], model="alpha/embed")
    assert isinstance(too_long.value.last_error, ContextWindowExceededError)
    assert re.search("an input of [0-9,]+ tokens does not fit", too_long.value.last_error.message)
    for bad in ([], "", ["a", ""], ["a", 3], [[1, 2]], None):
        with pytest.raises(InvalidRequestError) as err:
            await r.aembed(bad, model="alpha/embed")  # type: ignore[arg-type]
        assert err.value.param == "input"
    assert len(fake.captured) == sent


async def test_embedding_dimensions_reach_the_provider_and_are_never_dropped(make_router, fake, secret_key):
    r = make_router()
    e = await r.aembed(["one"], model="alpha/embed", dimensions=4)
    assert fake.captured[-1].json["dimensions"] == 4 and len(e.embeddings[0]) == 4
    sent = len(fake.captured)
    with pytest.raises(InvalidRequestError) as too_many:  # more than the model's 8
        await r.aembed(["one"], model="alpha/embed", dimensions=9)
    assert too_many.value.param == "dimensions"
    # a model with fixed-length vectors refuses the parameter even though unsupported ones are dropped
    fixed = Router.from_config({"providers": {"openai": {"base_url": fake.base_url + "/v1", "api_key": secret_key}}},
                               env={})
    try:
        with pytest.raises(UnsupportedParameterError, match="dimensions"):
            await fixed.aembed(["one"], model="openai/text-embedding-ada-002", dimensions=256)
    finally:
        await fixed.aclose()
    assert len(fake.captured) == sent  # nothing was sent


async def test_callbacks_and_secrets(make_router, fake, caplog, secret_key):
    KEY = secret_key
    caplog.set_level(logging.DEBUG)
    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid"]}})
    seen = []
    r.on_attempt.append(lambda attempt, rid: seen.append((attempt.target, attempt.outcome)))
    fake.plan.fail_next(Fault("auth"), times=1, model="small")
    await r.acomplete(MSGS, task="work")
    fake.plan.fail_next(Fault("server_error", status=500), times=-1)
    with pytest.raises(AllAttemptsFailedError) as ei:
        await r.acomplete(MSGS, task="work")
    assert seen[:2] == [("alpha/small", "error"), ("beta/mid", "success")]
    assert KEY not in caplog.text
    assert KEY not in str(ei.value) and KEY not in repr(ei.value)
    assert KEY not in repr(r.providers["alpha"])


async def test_cancellation_releases_everything(make_router, fake):
    fake.behavior = Behavior(ttft_s=5)
    r = make_router(tasks={"work": {"models": ["alpha/small"]}})
    task = asyncio.ensure_future(r.acomplete(MSGS, task="work"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert r.breakers.state("model:alpha/small") == BreakerState.CLOSED


def test_catalog_only_router_lists_tasks():
    r = Router.from_config({"accounting": {"sink": "none"}}, catalog=load_catalog(), env={})
    assert {"fast", "reasoning", "summarization", "creative", "analytical", "job_parsing", "cv_generation",
            "embedding", "fallback"} <= set(r.planner.task_names())


# ----------------------------------------------------------------------------- malformed requests


async def test_malformed_messages_raise_invalid_request_before_anything_is_sent(make_router, fake):
    from modelplex.errors import InvalidRequestError

    r = make_router(tasks={"work": {"models": ["alpha/small"]}})
    for bad in ("hello", [], [{"role": "x", "content": "a"}], [{"role": "user", "content": 5}]):
        with pytest.raises(InvalidRequestError):
            await r.acomplete(bad, task="work")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError):
            [c async for c in r.astream(bad, task="work")]  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError):
            r.count_tokens(bad, task="work")  # type: ignore[arg-type]
    assert wire_models(fake) == []


async def test_unknown_or_mistyped_parameters_raise_invalid_request_before_anything_is_sent(make_router, fake):
    from modelplex.errors import InvalidRequestError

    r = make_router(tasks={"work": {"models": ["alpha/small"]}})
    for params, param in (({"temperature": "hot"}, "temperature"), ({"max_tokens": -1}, "max_tokens"),
                          ({"n": 2}, "n"), ({"tools": "x"}, "tools"), ({"temprature": 0.2}, "temprature"),
                          ({"top_p": float("nan")}, "top_p"), ({"stop": 5}, "stop")):
        with pytest.raises(InvalidRequestError) as err:
            await r.acomplete(MSGS, task="work", **params)
        assert err.value.param == param
        with pytest.raises(InvalidRequestError):
            [c async for c in r.astream(MSGS, task="work", **params)]
    with pytest.raises(InvalidRequestError) as emb:
        await r.aembed(["a"], model="alpha/embed", dimensions="8")
    assert emb.value.param == "dimensions"
    assert wire_models(fake) == []
    ok = await r.acomplete(MSGS, task="work", temperature=0.2, stop=["x"], seed=None)
    assert ok.content


async def test_allowed_models_keep_only_matching_targets_fallbacks_included(make_router, fake):
    from modelplex.errors import ModelNotAllowedError, NoCandidatesError

    r = make_router(tasks={"work": {"models": ["alpha/small", "beta/mid", "alpha/large"]}},
                    routing={"retry": {"max_retries_per_target": 0}})
    resp = await r.acomplete(MSGS, task="work", allowed_models=["beta/*"])
    assert resp.model == "beta/mid" and targets(resp) == [("beta/mid", "success")]
    fake.plan.fail_next(Fault("server_error"), times=1, model="small")
    resp = await r.acomplete(MSGS, task="work", allowed_models=["alpha/*"])  # falls back within the list
    assert targets(resp) == [("alpha/small", "error"), ("alpha/large", "success")]
    with pytest.raises(ModelNotAllowedError) as e:
        await r.acomplete(MSGS, task="work", allowed_models=["gamma/*"])
    assert isinstance(e.value, NoCandidatesError) and set(e.value.rejected) >= {"alpha/small", "beta/mid"}
    assert (await r.acomplete(MSGS, task="work", allowed_models=["*"])).model == "alpha/small"
    with pytest.raises(TypeError):
        await r.acomplete(MSGS, task="work", allowed_models="beta/*")  # type: ignore[arg-type]


async def test_a_malformed_request_with_response_model_names_the_callers_message(make_router):
    from modelplex.errors import InvalidRequestError

    class Out(BaseModel):
        a: str

    r = make_router(tasks={"work": {"models": ["alpha/small"]}})
    with pytest.raises(InvalidRequestError) as e:
        await r.acomplete("hello", task="work", response_model=Out)  # type: ignore[arg-type]
    assert e.value.param == "messages"


# ----------------------------------------------------------------------------- usage the provider did not send


async def test_an_answer_without_usage_is_estimated_and_charged_never_zero(make_router, fake):
    """Some OpenAI-compatible servers and proxies answer without ``usage``: the call is counted locally,
    flagged ``estimated``, charged and recorded, as a stream without usage is."""
    seen: list[UsageRecord] = []
    r = make_router(tasks={"work": {"models": ["alpha/small"]}})
    r.on_record.append(seen.append)
    fake.behavior = Behavior(reply="The quarter closed up four percent on strong sales.", include_usage=False)
    resp = await r.acomplete(MSGS, task="work")
    assert resp.usage.estimated and resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.cost_usd > 0
    assert seen[-1].usage_estimated and seen[-1].output_tokens == resp.usage.output_tokens
    fake.behavior = Behavior(reply="Full usage here.")
    reported = await r.acomplete(MSGS, task="work")
    assert not reported.usage.estimated
