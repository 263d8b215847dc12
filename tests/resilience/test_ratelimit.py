"""RPM/TPM limits per key over the state backends (GCRA buckets, moved with a fake clock)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from modelplex.errors import RateLimitExceededError
from modelplex.resilience import FakeClock, RateLimiter, RateLimitResult
from modelplex.state import MemoryState, RedisState


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RateLimiter, FakeClock]]:
    clock = FakeClock()
    if request.param == "memory":
        yield RateLimiter(MemoryState(clock)), clock
        return
    state = RedisState(request.getfixturevalue("redis_url"), prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock,
                       timeout=5.0)
    try:
        yield RateLimiter(state), clock
    finally:
        await state.clear()
        await state.close()


async def test_rpm(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, clock = limiter
    for _ in range(3):
        assert (await rl.check("key-a", rpm=3)).allowed
    refused = await rl.check("key-a", rpm=3)
    assert refused == RateLimitResult(False, "rpm", pytest.approx(20.0))
    assert (await rl.check("key-b", rpm=3)).allowed
    clock.advance(20.0)
    assert (await rl.check("key-a", rpm=3)).allowed


async def test_tpm_counts_tokens(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, clock = limiter
    assert (await rl.check("k", tpm=1000, tokens=700)).allowed
    refused = await rl.check("k", tpm=1000, tokens=400)
    assert refused.allowed is False and refused.limit == "tpm"
    assert refused.retry_after == pytest.approx(6.0)
    clock.advance(6.0)
    assert (await rl.check("k", tpm=1000, tokens=400)).allowed


async def test_rpm_refusal_gives_the_tokens_back(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, _ = limiter
    assert (await rl.check("k", rpm=1, tpm=1000, tokens=500)).allowed
    refused = await rl.check("k", rpm=1, tpm=1000, tokens=500)
    assert refused.limit == "rpm"
    # had the refused request kept its 500 tokens, these would not fit
    assert (await rl.check("k", tpm=1000, tokens=500)).allowed


async def test_actual_tokens_are_charged_afterwards(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, clock = limiter
    assert (await rl.check("k", tpm=1000, tokens=100)).allowed
    await rl.record_tokens("k", tpm=1000, estimated=100, actual=1300)  # the estimate was far too low
    refused = await rl.check("k", tpm=1000)  # zero tokens: the debt alone refuses
    assert refused.allowed is False and refused.retry_after == pytest.approx(18.0)
    clock.advance(18.0)
    assert (await rl.check("k", tpm=1000)).allowed
    await rl.record_tokens("k", tpm=1000, estimated=900, actual=100)  # the bucket was full: 800 come back
    assert not (await rl.check("k", tpm=1000, tokens=801)).allowed
    assert (await rl.check("k", tpm=1000, tokens=800)).allowed
    await rl.record_tokens("k", tpm=None, estimated=1, actual=10**9)  # no TPM limit: nothing to charge


async def test_acquire_raises_with_retry_after(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, _ = limiter
    await rl.acquire("k", rpm=1)
    with pytest.raises(RateLimitExceededError) as info:
        await rl.acquire("k", rpm=1)
    assert info.value.retry_after == pytest.approx(60.0)
    assert "rpm" in str(info.value)


async def test_a_request_larger_than_the_tpm_limit_never_fits(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, _ = limiter
    result = await rl.check("k", tpm=1000, tokens=1001)
    assert result == RateLimitResult(False, "tpm", None)
    with pytest.raises(RateLimitExceededError) as info:
        await rl.acquire("k", tpm=1000, tokens=5000)
    assert info.value.retry_after is None


async def test_no_limits_means_allowed(limiter: tuple[RateLimiter, FakeClock]) -> None:
    rl, _ = limiter
    for _ in range(100):
        assert (await rl.check("k", tokens=10**6)).allowed
