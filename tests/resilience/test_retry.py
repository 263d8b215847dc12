"""The retry policy: the error table, Retry-After, back-off bounds, per-target and total limits, deadlines."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelplex.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigError,
    ConflictError,
    ContentPolicyError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
    parse_retry_after,
    status_error,
)
from modelplex.resilience import RetryPolicy


def policy(**kw: object) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(1234), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("exc", "action"), [
    (RequestTimeoutError("x", status_code=408), "retry"),
    (ConflictError("x", status_code=409), "retry"),
    (RateLimitError("x", status_code=429), "retry"),
    (ServerError("x", status_code=500), "retry"),
    (ServerError("x", status_code=502), "retry"),
    (ServerError("x", status_code=503), "retry"),
    (OverloadedError("x", status_code=529), "retry"),
    (APIConnectionError("reset"), "retry"),
    (APITimeoutError("slow"), "retry"),
    (InvalidResponseError("truncated"), "retry"),
    (BadRequestError("x", status_code=400), "raise"),
    (BadRequestError("x", status_code=422), "raise"),
    (AuthenticationError("x", status_code=401), "fallback"),
    (PermissionDeniedError("x", status_code=403), "fallback"),
    (NotFoundError("x", status_code=404), "fallback"),
    (QuotaExceededError("x", status_code=402), "fallback"),
    (QuotaExceededError("x", status_code=429, retry_after=1.0), "fallback"),
    (ContextWindowExceededError("x", status_code=400), "fallback"),
    (ContentPolicyError("x", status_code=400), "fallback"),
    (StreamInterruptedError("x"), "raise"),
    (APIStatusError("teapot", status_code=418), "fallback"),
    (ProviderError("odd"), "fallback"),
    (ValueError("a bug"), "raise"),
    (asyncio.CancelledError(), "raise"),
    (BudgetExceededError("over"), "raise"),
], ids=lambda v: type(v).__name__ + (f"_{v.status_code}" if getattr(v, "status_code", None) else "")
    if not isinstance(v, str) else v)
def test_the_table(exc: BaseException, action: str) -> None:
    decision = policy().decide(exc, 0)
    assert decision.action == action, decision.reason
    if action != "retry":
        assert decision.delay == 0.0
    assert decision.reason


def test_statuses_map_through_errors_to_actions() -> None:
    p = policy()
    expected = {400: "raise", 401: "fallback", 402: "fallback", 403: "fallback", 404: "fallback", 408: "retry",
                409: "retry", 413: "fallback", 422: "raise", 429: "retry", 500: "retry", 502: "retry",
                503: "retry", 504: "retry", 529: "retry"}
    assert {s: p.decide(status_error(s), 0).action for s in expected} == expected


def test_429_with_retry_after_waits_exactly_that_long() -> None:
    exc = status_error(429, headers={"Retry-After": "2"}, now=0.0)
    decision = policy().decide(exc, 0)
    assert decision.action == "retry" and decision.delay == 2.0
    assert "Retry-After 2s" in decision.reason
    ms = status_error(429, headers={"retry-after-ms": "1500"}, now=0.0)
    assert policy().decide(ms, 0).delay == 1.5


def test_three_500s_retry_retry_fallback() -> None:
    p = policy()
    actions = [p.decide(ServerError("x", status_code=500), i).action for i in range(3)]
    assert actions == ["retry", "retry", "fallback"]
    assert "retries exhausted" in p.decide(ServerError("x"), 2).reason


def test_zero_retries_falls_back_at_once() -> None:
    assert policy(max_retries_per_target=0).decide(ServerError("x"), 0).action == "fallback"


def test_retry_after_beyond_the_cap_means_fallback_now() -> None:
    p = policy(retry_after_cap=30.0)
    assert p.decide(RateLimitError("x", retry_after=30.0), 0) .delay == 30.0
    decision = p.decide(RateLimitError("x", retry_after=30.5), 0)
    assert decision.action == "fallback" and decision.delay == 0.0 and "exceeds the cap" in decision.reason
    assert p.decide(RateLimitError("x", retry_after=math.inf), 0).action == "fallback"


@pytest.mark.parametrize("header", ["-5", "0", "NaN", "soon", "99999999999"])
def test_garbage_retry_after_is_clamped(header: str) -> None:
    exc = status_error(503, headers={"Retry-After": header}, now=0.0)
    parsed = exc.retry_after
    assert parsed is None or 0.0 <= parsed <= 86400.0  # the parser clamps into [0, 1 day]
    decision = policy().decide(exc, 0)
    if parsed is not None and parsed > 30.0:
        assert decision.action == "fallback"
    else:  # absent, zero, negative or NaN: the jittered back-off applies
        assert decision.action == "retry" and 0.0 <= decision.delay <= 0.5


def test_nan_or_negative_retry_after_on_the_error_uses_back_off() -> None:
    for value in (math.nan, -3.0, 0.0):
        decision = policy().decide(RateLimitError("x", retry_after=value), 1)
        assert decision.action == "retry" and 0.0 <= decision.delay <= 1.0 and "back-off" in decision.reason


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    p = policy(jitter="none", base_delay=0.5, max_delay=8.0)
    assert [p.backoff(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert p.backoff(10_000) == 8.0
    full = policy(base_delay=0.5, max_delay=8.0)
    samples = [full.backoff(3) for _ in range(2000)]
    assert all(0.0 <= s <= 4.0 for s in samples)
    assert min(samples) < 0.2 and max(samples) > 3.8  # spread over the whole [0, ceiling] range
    equal = policy(jitter="equal")
    assert all(1.0 <= equal.backoff(2) <= 2.0 for _ in range(500))


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    a = RetryPolicy(rng=random.Random(7))
    b = RetryPolicy(rng=random.Random(7))
    assert [a.decide(ServerError("x"), 1).delay for _ in range(5)] == [b.decide(ServerError("x"), 1).delay
                                                                         for _ in range(5)]


def test_deadline_is_respected() -> None:
    p = policy()
    exc = RateLimitError("x", retry_after=2.0)
    assert p.decide(exc, 0, deadline_remaining=2.5).action == "retry"
    decision = p.decide(exc, 0, deadline_remaining=2.0)
    assert decision.action == "fallback" and "deadline" in decision.reason
    assert p.decide(ServerError("x"), 0, deadline_remaining=0.0).action == "fallback"
    assert p.decide(ServerError("x"), 0, deadline_remaining=-1.0).action == "fallback"
    assert p.decide(BadRequestError("x"), 0, deadline_remaining=-1.0).action == "raise"


def test_total_attempts_bound_the_request() -> None:
    p = policy(max_total_attempts=6)
    assert p.decide(ServerError("x"), 0, total_attempts=5).action == "retry"
    decision = p.decide(ServerError("x"), 0, total_attempts=6)
    assert decision.action == "raise" and "max_total_attempts" in decision.reason
    assert p.decide(AuthenticationError("x"), 0, total_attempts=6).action == "raise"
    assert p.attempts_exhausted(6) and not p.attempts_exhausted(5)


def test_a_request_never_makes_more_than_max_total_attempts() -> None:
    """Simulate the router's loop over 4 targets that always 503: count the attempts."""
    p = policy(max_retries_per_target=2, max_total_attempts=6)
    attempts = 0
    per_target: list[int] = []
    for _target in range(4):
        index = 0
        while True:
            attempts += 1
            decision = p.decide(ServerError("x", status_code=503), index, total_attempts=attempts)
            if decision.action != "retry":
                break
            index += 1
        per_target.append(index + 1)
        if decision.action == "raise":
            break
    assert attempts == 6
    assert per_target == [3, 3]


def test_invalid_settings_are_refused() -> None:
    for kw in ({"max_retries_per_target": -1}, {"max_total_attempts": 0}, {"base_delay": -1.0},
               {"max_delay": math.inf}, {"retry_after_cap": math.nan}, {"jitter": "some"}):
        with pytest.raises(ConfigError):
            RetryPolicy(**kw)  # type: ignore[arg-type]


def test_parse_retry_after_contract_used_here() -> None:
    assert parse_retry_after({"Retry-After": "-5"}) == 0.0
    assert parse_retry_after({"Retry-After": "99999999999"}) == 86400.0


def test_retry_after_waits_for_the_exhausted_bucket_not_the_soonest_reset() -> None:
    tokens_out = {"x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "6ms",
                  "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    assert parse_retry_after(tokens_out) == 360.0
    both_out = {**tokens_out, "x-ratelimit-remaining-requests": "0"}
    assert parse_retry_after(both_out) == 360.0
    unknown = {"x-ratelimit-reset-requests": "6ms", "x-ratelimit-reset-tokens": "6m0s"}  # no remaining headers
    assert parse_retry_after(unknown) == 0.006
    now = 1_767_571_200.0
    anthropic = {"anthropic-ratelimit-requests-remaining": "10", "anthropic-ratelimit-requests-reset":
                 "2026-01-05T00:00:01Z", "anthropic-ratelimit-output-tokens-remaining": "0",
                 "anthropic-ratelimit-output-tokens-reset": "2026-01-05T00:00:30Z"}
    assert parse_retry_after(anthropic, now=now) == 30.0


errors = st.one_of(
    st.builds(lambda ra: RateLimitError("x", status_code=429, retry_after=ra),
              st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))),
    st.builds(lambda ra: ServerError("x", status_code=503, retry_after=ra),
              st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9))),
    st.just(APITimeoutError("x")),
    st.just(OverloadedError("x", status_code=529)),
    st.just(InvalidResponseError("x")),
)


@settings(max_examples=400, deadline=None)
@given(exc=errors, index=st.integers(min_value=0, max_value=40),
       deadline=st.one_of(st.none(), st.floats(min_value=-10, max_value=1e6)),
       base=st.floats(min_value=0, max_value=10), max_delay=st.floats(min_value=0, max_value=60),
       cap=st.floats(min_value=0, max_value=120), seed=st.integers(0, 2**32))
def test_delay_is_always_bounded(exc: ProviderError, index: int, deadline: float | None, base: float,
                                 max_delay: float, cap: float, seed: int) -> None:
    p = RetryPolicy(max_retries_per_target=50, base_delay=base, max_delay=max_delay, retry_after_cap=cap,
                    rng=random.Random(seed))
    decision = p.decide(exc, index, deadline_remaining=deadline)
    assert decision.action in ("retry", "fallback")
    assert 0.0 <= decision.delay <= max(cap, max_delay)
    assert not math.isnan(decision.delay)
    if deadline is not None and decision.action == "retry":
        assert decision.delay < deadline
    if decision.action != "retry":
        assert decision.delay == 0.0
