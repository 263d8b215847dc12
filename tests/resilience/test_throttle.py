"""Throttling after a 429, and the injected clocks it (and everything else) runs on."""

from __future__ import annotations

import asyncio
import math

import pytest

from modelplex.resilience import FakeClock, SystemClock, ThrottleRegistry
from modelplex.resilience.clock import Clock


def test_a_429_throttles_for_its_retry_after() -> None:
    clock = FakeClock()
    throttle = ThrottleRegistry(clock)
    assert throttle.is_throttled("provider:openai") is None
    assert throttle.mark("provider:openai", 2.5) == 2.5
    assert throttle.is_throttled("provider:openai") == 2.5
    assert throttle.is_throttled("provider:anthropic") is None
    clock.advance(2.0)
    assert throttle.is_throttled("provider:openai") == pytest.approx(0.5)
    clock.advance(0.5)
    assert throttle.is_throttled("provider:openai") is None
    assert throttle.snapshot() == {}


@pytest.mark.parametrize("retry_after", [None, 0.0, -4.0, math.nan])
def test_missing_or_garbage_retry_after_uses_the_default(retry_after: float | None) -> None:
    clock = FakeClock()
    throttle = ThrottleRegistry(clock, default_s=1.0)
    assert throttle.mark("k", retry_after) == 1.0
    clock.advance(1.0)
    assert throttle.is_throttled("k") is None


def test_huge_retry_after_is_clamped() -> None:
    throttle = ThrottleRegistry(FakeClock(), max_s=300.0)
    assert throttle.mark("k", 86400.0) == 300.0
    assert throttle.mark("k", math.inf) == 300.0


def test_a_shorter_mark_never_shortens_a_longer_one() -> None:
    clock = FakeClock()
    throttle = ThrottleRegistry(clock)
    throttle.mark("k", 10.0)
    clock.advance(1.0)
    assert throttle.mark("k", 2.0) == 9.0
    assert throttle.mark("k", 20.0) == 20.0
    assert throttle.snapshot() == {"k": 20.0}


def test_clear_and_sweep() -> None:
    clock = FakeClock()
    throttle = ThrottleRegistry(clock)
    for i in range(2000):
        throttle.mark(f"k{i}", 1.0)
    clock.advance(1.0)
    throttle.mark("fresh", 5.0)
    assert throttle.snapshot() == {"fresh": 5.0}
    throttle.clear("fresh")
    assert throttle.is_throttled("fresh") is None
    throttle.mark("a", 1.0)
    throttle.clear()
    assert throttle.snapshot() == {}


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ThrottleRegistry(FakeClock(), default_s=0)
    with pytest.raises(ValueError):
        ThrottleRegistry(FakeClock(), default_s=10, max_s=5)


# ---------------------------------------------------------------------------- clocks


async def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=5.0, wall_start=1_000_000.0)
    assert isinstance(clock, Clock)
    assert (clock.now(), clock.wall()) == (5.0, 1_000_000.0)
    clock.advance(1.5)
    assert (clock.now(), clock.wall()) == (6.5, 1_000_001.5)
    await clock.sleep(2.0)
    await clock.sleep(-1.0)
    assert clock.sleeps == [2.0, 0.0]
    assert clock.now() == 8.5
    with pytest.raises(ValueError):
        clock.advance(-0.1)


async def test_fake_sleep_lets_other_tasks_run() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    task = asyncio.create_task(other())
    await clock.sleep(10)
    order.append("after-sleep")
    await task
    assert order == ["other", "after-sleep"]


async def test_system_clock_is_monotonic_and_sleeps() -> None:
    clock = SystemClock()
    assert isinstance(clock, Clock)
    a = clock.now()
    await clock.sleep(0)
    await clock.sleep(-1)
    assert clock.now() >= a
    assert clock.wall() > 1_600_000_000
