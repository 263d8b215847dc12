"""Circuit breakers: what counts, the state machine, half-open probes and their timeout, rate mode,
transitions (log + callbacks), and replicas sharing state through a backend (memory, Redis)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelplex.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
)
from modelplex.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    BreakerTransition,
    FakeClock,
)
from modelplex.state import MemoryState, RedisState, StateBackend, StateUnavailableError

KEY = "provider:openai"


def make(config: BreakerConfig | None = None, **kw: Any) -> tuple[BreakerRegistry, FakeClock, list[BreakerTransition]]:
    clock = FakeClock()
    events: list[BreakerTransition] = []
    reg = BreakerRegistry(config or BreakerConfig(), MemoryState(clock), clock, on_transition=[events.append], **kw)
    return reg, clock, events


def fail(reg: BreakerRegistry, key: str = KEY, exc: BaseException | None = None) -> None:
    permit = reg.allow_sync(key)
    assert permit is not None
    permit.failure(exc or ServerError("boom", status_code=500))


def succeed(reg: BreakerRegistry, key: str = KEY, latency: float | None = None) -> None:
    permit = reg.allow_sync(key)
    assert permit is not None
    permit.success(latency)


def transitions(events: list[BreakerTransition]) -> list[tuple[str, str]]:
    return [(e.from_state.value, e.to_state.value) for e in events]


# ---------------------------------------------------------------------------- config


def test_defaults_follow_seed_002() -> None:
    cfg = BreakerConfig()
    assert (cfg.failure_threshold, cfg.recovery_time, cfg.half_open_max_calls) == (3, 300.0, 1)
    assert cfg.mode == "count" and cfg.probe_timeout == 30.0


def test_from_mapping_accepts_seed_names_and_rejects_unknown() -> None:
    cfg = BreakerConfig.from_mapping({"failure_threshold": 5, "recovery_timeout_seconds": 60})
    assert cfg.failure_threshold == 5 and cfg.recovery_time == 60
    with pytest.raises(ConfigError) as info:
        BreakerConfig.from_mapping({"failure_treshold": 5}, file="fallback.yaml")
    assert "fallback.yaml" in str(info.value) and "failure_treshold" in str(info.value)


@pytest.mark.parametrize("bad", [
    {"failure_threshold": 0}, {"recovery_time": -1}, {"half_open_max_calls": 0}, {"probe_timeout": 0},
    {"mode": "percent"}, {"window_size": 5, "min_calls": 6}, {"failure_rate_threshold": 0},
    {"failure_rate_threshold": 1.5}, {"slow_call_threshold_s": 0}, {"slow_call_rate_threshold": 0},
])
def test_invalid_config_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BreakerConfig(**bad)


# ---------------------------------------------------------------------------- what counts


@pytest.mark.parametrize("exc", [
    ServerError("x", status_code=500), OverloadedError("x", status_code=529), APITimeoutError("x"),
    APIConnectionError("x"), InvalidResponseError("x"), RequestTimeoutError("x", status_code=408),
    StreamInterruptedError("x"),
], ids=lambda e: type(e).__name__)
def test_counted_failures_open_the_breaker(exc: BaseException) -> None:
    reg, _, events = make()
    for _ in range(3):
        fail(reg, exc=exc)
    assert reg.state(KEY) is BreakerState.OPEN
    assert reg.allow_sync(KEY) is None
    assert transitions(events) == [("closed", "open")]
    assert type(exc).__name__ != "" and "3 consecutive failures" in events[0].reason


@pytest.mark.parametrize("exc", [
    RateLimitError("x", status_code=429), QuotaExceededError("x", status_code=402),
    BadRequestError("x", status_code=400), ContextWindowExceededError("x", status_code=400),
    AuthenticationError("x", status_code=401), NotFoundError("x", status_code=404),
    asyncio.CancelledError(), ValueError("a bug, not a provider"),
], ids=lambda e: type(e).__name__)
def test_neutral_outcomes_never_trip(exc: BaseException) -> None:
    reg, _, events = make()
    for _ in range(10):
        fail(reg, exc=exc)
    assert reg.state(KEY) is BreakerState.CLOSED
    assert reg.snapshot()[KEY]["failures"] == 0
    assert events == []


def test_a_success_resets_the_consecutive_count() -> None:
    reg, _, _ = make()
    fail(reg)
    fail(reg)
    succeed(reg)
    fail(reg)
    fail(reg)
    assert reg.state(KEY) is BreakerState.CLOSED
    assert reg.snapshot()[KEY]["failures"] == 2
    fail(reg)
    assert reg.state(KEY) is BreakerState.OPEN


def test_neutral_outcome_does_not_reset_the_count() -> None:
    reg, _, _ = make()
    fail(reg)
    fail(reg)
    fail(reg, exc=RateLimitError("slow down", status_code=429))
    fail(reg)
    assert reg.state(KEY) is BreakerState.OPEN


def test_keys_are_independent() -> None:
    reg, _, _ = make()
    for _ in range(3):
        fail(reg, "provider:a")
    assert reg.allow_sync("provider:a") is None
    assert reg.allow_sync("provider:b") is not None
    assert reg.state("model:b/x") is BreakerState.CLOSED


def test_one_outcome_per_permit() -> None:
    reg, _, _ = make()
    permit = reg.allow_sync(KEY)
    assert permit is not None
    for _ in range(5):
        permit.failure(ServerError("x"))
    assert reg.snapshot()[KEY]["failures"] == 1


# ---------------------------------------------------------------------------- open, half-open, probes


def test_open_refuses_until_recovery_time_then_admits_one_probe() -> None:
    reg, clock, events = make()
    for _ in range(3):
        fail(reg)
    assert reg.retry_in(KEY) == 300.0
    clock.advance(299.9)
    assert reg.allow_sync(KEY) is None
    assert reg.retry_in(KEY) == pytest.approx(0.1)
    clock.advance(0.1)
    probe = reg.allow_sync(KEY)
    assert probe is not None and probe.is_probe
    assert reg.state(KEY) is BreakerState.HALF_OPEN
    assert reg.allow_sync(KEY) is None  # one probe at a time
    probe.success(0.2)
    assert reg.state(KEY) is BreakerState.CLOSED
    assert reg.retry_in(KEY) is None
    assert transitions(events) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens_with_a_fresh_timer() -> None:
    reg, clock, events = make()
    for _ in range(3):
        fail(reg)
    clock.advance(300)
    probe = reg.allow_sync(KEY)
    assert probe is not None
    clock.advance(2)
    probe.failure(APITimeoutError("still down"))
    assert reg.state(KEY) is BreakerState.OPEN
    assert reg.retry_in(KEY) == 300.0
    assert reg.snapshot()[KEY]["opened_at"] == pytest.approx(clock.wall())
    assert "probe failed (timeout)" in events[-1].reason


def test_a_hung_probe_is_treated_as_failed() -> None:
    reg, clock, events = make()
    for _ in range(3):
        fail(reg)
    clock.advance(300)
    hung = reg.allow_sync(KEY)
    assert hung is not None
    clock.advance(29.9)
    assert reg.allow_sync(KEY) is None
    assert reg.state(KEY) is BreakerState.HALF_OPEN
    assert reg.retry_in(KEY) == pytest.approx(0.1)
    clock.advance(0.1)
    assert reg.allow_sync(KEY) is None
    assert reg.state(KEY) is BreakerState.OPEN
    assert "did not report within 30s" in events[-1].reason
    hung.success()  # reports too late: ignored
    assert reg.state(KEY) is BreakerState.OPEN
    clock.advance(300)
    assert reg.allow_sync(KEY) is not None  # a fresh probe after a fresh recovery time


def test_released_or_neutral_probe_frees_its_slot() -> None:
    reg, clock, _ = make()
    for _ in range(3):
        fail(reg)
    clock.advance(300)
    probe = reg.allow_sync(KEY)
    assert probe is not None
    probe.release()  # e.g. the caller cancelled before sending
    probe2 = reg.allow_sync(KEY)
    assert probe2 is not None and probe2.is_probe
    probe2.failure(RateLimitError("429", status_code=429))  # neutral: not evidence either way
    assert reg.state(KEY) is BreakerState.HALF_OPEN
    probe3 = reg.allow_sync(KEY)
    assert probe3 is not None
    probe3.success()
    assert reg.state(KEY) is BreakerState.CLOSED


def test_several_probes_must_all_succeed() -> None:
    reg, clock, _ = make(BreakerConfig(half_open_max_calls=2))
    for _ in range(3):
        fail(reg)
    clock.advance(300)
    p1, p2 = reg.allow_sync(KEY), reg.allow_sync(KEY)
    assert p1 is not None and p2 is not None
    assert reg.allow_sync(KEY) is None
    p1.success()
    assert reg.state(KEY) is BreakerState.HALF_OPEN
    assert reg.allow_sync(KEY) is None  # one succeeded, one in flight: no third probe
    p2.success()
    assert reg.state(KEY) is BreakerState.CLOSED


def test_permits_issued_before_a_transition_are_ignored() -> None:
    reg, clock, _ = make()
    stale = [reg.allow_sync(KEY) for _ in range(4)]
    for _ in range(3):
        fail(reg)
    assert reg.state(KEY) is BreakerState.OPEN
    clock.advance(300)
    probe = reg.allow_sync(KEY)
    assert probe is not None
    for p in stale:  # successes from before the trip must not close a half-open breaker
        assert p is not None
        p.success()
    assert reg.state(KEY) is BreakerState.HALF_OPEN
    probe.success()
    late = reg.allow_sync(KEY)
    assert late is not None
    stale_after_close = stale  # and their failures must not count against the closed breaker
    for p in stale_after_close:
        assert p is not None
        p.failure(ServerError("x"))
    assert reg.snapshot()[KEY]["failures"] == 0


def test_zero_recovery_time_goes_straight_to_a_probe() -> None:
    reg, _, _ = make(BreakerConfig(failure_threshold=1, recovery_time=0))
    fail(reg)
    probe = reg.allow_sync(KEY)
    assert probe is not None and probe.is_probe


# ---------------------------------------------------------------------------- rate mode


def test_rate_mode_needs_min_calls_then_judges_the_rate() -> None:
    reg, _, events = make(BreakerConfig(mode="rate", window_size=10, min_calls=5, failure_rate_threshold=0.5))
    fail(reg)
    fail(reg)
    succeed(reg)
    succeed(reg)
    assert reg.state(KEY) is BreakerState.CLOSED  # 2/4, but fewer than min_calls
    fail(reg)
    assert reg.state(KEY) is BreakerState.OPEN  # 3/5
    assert "failure rate 3/5" in events[-1].reason


def test_rate_mode_window_slides() -> None:
    reg, _, _ = make(BreakerConfig(mode="rate", window_size=4, min_calls=4, failure_rate_threshold=0.5))
    fail(reg)
    for _ in range(3):
        succeed(reg)
    assert reg.snapshot()[KEY]["failures"] == 1  # F S S S
    succeed(reg)
    assert reg.snapshot()[KEY]["failures"] == 0  # S S S S: the failure slid out
    fail(reg)
    assert reg.state(KEY) is BreakerState.CLOSED  # S S S F
    fail(reg)
    assert reg.state(KEY) is BreakerState.OPEN  # S S F F


def test_rate_mode_slow_calls() -> None:
    cfg = BreakerConfig(mode="rate", window_size=4, min_calls=4, slow_call_threshold_s=1.0,
                        slow_call_rate_threshold=0.5)
    reg, _, events = make(cfg)
    succeed(reg, latency=0.2)
    succeed(reg, latency=2.5)
    succeed(reg, latency=0.3)
    assert reg.state(KEY) is BreakerState.CLOSED
    succeed(reg, latency=1.5)
    assert reg.state(KEY) is BreakerState.OPEN
    assert "slow-call rate 2/4" in events[-1].reason


def test_slow_calls_do_not_count_in_count_mode() -> None:
    reg, _, _ = make(BreakerConfig(slow_call_threshold_s=1.0))
    for _ in range(10):
        succeed(reg, latency=60.0)
    assert reg.state(KEY) is BreakerState.CLOSED


def test_a_slow_probe_fails_in_rate_mode() -> None:
    cfg = BreakerConfig(mode="rate", window_size=2, min_calls=2, slow_call_threshold_s=1.0, recovery_time=10)
    reg, clock, _ = make(cfg)
    fail(reg)
    fail(reg)
    clock.advance(10)
    probe = reg.allow_sync(KEY)
    assert probe is not None
    probe.success(5.0)
    assert reg.state(KEY) is BreakerState.OPEN


# ---------------------------------------------------------------------------- observability and admin


def test_transitions_are_logged_as_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    reg, _, _ = make()
    with caplog.at_level(logging.INFO, logger="modelplex.breaker"):
        for _ in range(3):
            fail(reg)
    lines = [r for r in caplog.records if r.name == "modelplex.breaker"]
    assert len(lines) == 1
    record = lines[0]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"breaker_transition key={KEY} from=closed to=open reason=")
    assert record.breaker_key == KEY and record.breaker_to == "open"  # type: ignore[attr-defined]


def test_a_failing_callback_does_not_break_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    reg, _, events = make()

    def broken(event: BreakerTransition) -> None:
        raise RuntimeError("metrics down")

    reg.on_transition.insert(0, broken)
    with caplog.at_level(logging.ERROR, logger="modelplex.breaker"):
        for _ in range(3):
            fail(reg)
    assert reg.state(KEY) is BreakerState.OPEN
    assert transitions(events) == [("closed", "open")]


def test_snapshot_reports_an_open_breaker_past_its_recovery_time_as_half_open() -> None:
    """Reports (health, dashboard, metrics) must not show OPEN with ``retry_in_s: 0`` for as long as no
    request comes: past the recovery time the next call is a probe. The decided state is unchanged."""
    reg, clock, events = make()
    for _ in range(3):
        fail(reg)
    clock.advance(299.0)
    assert reg.snapshot()[KEY] | {"opened_at": None} == {
        "state": "open", "failures": 3, "opened_at": None, "retry_in_s": pytest.approx(1.0), "probe_due": False}
    clock.advance(1.0)
    snap = reg.snapshot()[KEY]
    assert (snap["state"], snap["retry_in_s"], snap["probe_due"]) == ("half_open", 0.0, True)
    clock.advance(3600.0)  # however long nobody asks
    assert reg.snapshot()[KEY]["state"] == "half_open"
    # reporting moved nothing: no transition, the decided state is still OPEN, the hot path decides as before
    assert reg.state(KEY) is BreakerState.OPEN and transitions(events) == [("closed", "open")]
    probe = reg.allow_sync(KEY)
    assert probe is not None and probe.is_probe and reg.state(KEY) is BreakerState.HALF_OPEN
    snap = reg.snapshot()[KEY]  # the probe is in flight: half-open, and the next call would be refused
    assert (snap["state"], snap["retry_in_s"], snap["probe_due"]) == ("half_open", pytest.approx(30.0), False)
    probe.failure(ServerError("still down", status_code=503))
    snap = reg.snapshot()[KEY]
    assert (snap["state"], snap["retry_in_s"], snap["probe_due"]) == ("open", 300.0, False)


def test_snapshot_retry_in_and_reset() -> None:
    reg, clock, events = make()
    for _ in range(3):
        fail(reg, "provider:a")
    clock.advance(100)
    for _ in range(3):
        fail(reg, "provider:b")
    succeed(reg, "provider:c")
    snap = reg.snapshot()
    assert snap["provider:a"] == {"state": "open", "failures": 3, "opened_at": pytest.approx(clock.wall() - 100),
                                  "retry_in_s": pytest.approx(200.0), "probe_due": False}
    assert snap["provider:b"]["retry_in_s"] == pytest.approx(300.0)
    assert snap["provider:c"] == {"state": "closed", "failures": 0, "opened_at": None, "retry_in_s": None,
                                  "probe_due": False}
    assert min(r for k in ("provider:a", "provider:b") if (r := reg.retry_in(k)) is not None) == 200.0
    reg.reset("provider:a")
    assert reg.state("provider:a") is BreakerState.CLOSED and reg.state("provider:b") is BreakerState.OPEN
    assert events[-1].reason == "reset"
    reg.reset()
    assert reg.state("provider:b") is BreakerState.CLOSED


def test_per_key_overrides() -> None:
    reg, _, _ = make(overrides={"provider:flaky": BreakerConfig(failure_threshold=1)})
    fail(reg, "provider:flaky")
    fail(reg, "provider:solid")
    assert reg.state("provider:flaky") is BreakerState.OPEN
    assert reg.state("provider:solid") is BreakerState.CLOSED


class SpyState(MemoryState):
    """Counts calls by method; ``down`` makes every call fail like an unreachable Redis."""

    name = "spy"
    shared = True

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls: Counter[str] = Counter()
        self.down = False

    def _hit(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            raise StateUnavailableError("down", backend="spy")

    async def get(self, key: str) -> Any:
        self._hit("get")
        return await super().get(key)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._hit("set")
        await super().set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._hit("delete")
        await super().delete(key)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        self._hit("incr")
        return await super().incr(key, amount, ttl)


async def test_local_backend_fast_path_never_touches_the_backend() -> None:
    clock = FakeClock()
    spy = SpyState(clock)
    reg = BreakerRegistry(BreakerConfig(), spy, clock, shared=False)
    for _ in range(3):
        permit = await reg.allow(KEY)
        assert permit is not None
        permit.failure(ServerError("x"))
    assert await reg.allow(KEY) is None
    clock.advance(300)
    probe = await reg.allow(KEY)
    assert probe is not None
    probe.success()
    assert reg.state(KEY) is BreakerState.CLOSED
    assert sum(spy.calls.values()) == 0


# ---------------------------------------------------------------------------- replicas sharing state


@pytest.fixture(params=["memory", "redis"])
async def shared_backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StateBackend, FakeClock]]:
    clock = FakeClock()
    if request.param == "memory":
        yield MemoryState(clock), clock
        return
    url = request.getfixturevalue("redis_url")
    state = RedisState(url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock, timeout=5.0)
    try:
        yield state, clock
    finally:
        await state.clear()
        await state.close()


def replicas(state: StateBackend, clock: FakeClock, n: int = 2,
             config: BreakerConfig | None = None) -> list[BreakerRegistry]:
    return [BreakerRegistry(config or BreakerConfig(), state, clock, shared=True, sync_interval=1.0)
            for _ in range(n)]


async def afail(reg: BreakerRegistry, key: str = KEY) -> None:
    permit = await reg.allow(key)
    assert permit is not None
    permit.failure(ServerError("boom", status_code=503))
    await reg.flush()


async def test_replicas_share_an_open_breaker(shared_backend: tuple[StateBackend, FakeClock]) -> None:
    state, clock = shared_backend
    a, b = replicas(state, clock)
    for _ in range(3):
        await afail(a)
    assert a.state(KEY) is BreakerState.OPEN
    assert await b.allow(KEY) is None
    assert b.state(KEY) is BreakerState.OPEN
    assert b.retry_in(KEY) == pytest.approx(300.0)
    assert b.snapshot()[KEY]["opened_at"] == pytest.approx(clock.wall())


async def test_failures_on_different_replicas_add_up(shared_backend: tuple[StateBackend, FakeClock]) -> None:
    state, clock = shared_backend
    a, b = replicas(state, clock)
    await afail(a)
    await afail(a)
    assert a.state(KEY) is BreakerState.CLOSED
    await afail(b)
    assert b.state(KEY) is BreakerState.OPEN
    clock.advance(1.0)  # a's cached CLOSED view expires after sync_interval
    assert await a.allow(KEY) is None
    assert a.state(KEY) is BreakerState.OPEN


async def test_one_probe_across_the_fleet(shared_backend: tuple[StateBackend, FakeClock]) -> None:
    state, clock = shared_backend
    a, b, c = replicas(state, clock, 3)
    for _ in range(3):
        await afail(a)
    assert await b.allow(KEY) is None
    clock.advance(300)
    probe = await a.allow(KEY)
    assert probe is not None and probe.is_probe
    await a.flush()
    assert await b.allow(KEY) is None
    assert await c.allow(KEY) is None
    await b.flush()
    await c.flush()
    assert b.state(KEY) is BreakerState.HALF_OPEN
    probe.success()
    await a.flush()
    assert a.state(KEY) is BreakerState.CLOSED
    clock.advance(1.0)
    permit = await b.allow(KEY)
    assert permit is not None and not permit.is_probe
    assert b.state(KEY) is BreakerState.CLOSED


async def test_a_failed_shared_probe_reopens_everywhere(shared_backend: tuple[StateBackend, FakeClock]) -> None:
    state, clock = shared_backend
    a, b = replicas(state, clock)
    for _ in range(3):
        await afail(a)
    clock.advance(300)
    probe = await b.allow(KEY)
    assert probe is not None
    probe.failure(APIConnectionError("refused"))
    await b.flush()
    assert b.state(KEY) is BreakerState.OPEN
    clock.advance(1.0)
    assert await a.allow(KEY) is None
    assert a.state(KEY) is BreakerState.OPEN
    assert a.retry_in(KEY) == pytest.approx(299.0)


async def test_a_crashed_replicas_probe_times_out(shared_backend: tuple[StateBackend, FakeClock]) -> None:
    state, clock = shared_backend
    a, b = replicas(state, clock)
    for _ in range(3):
        await afail(a)
    clock.advance(300)
    assert await a.allow(KEY) is not None  # a takes the probe, then dies without reporting
    await a.flush()
    assert await b.allow(KEY) is None
    clock.advance(30)
    assert await b.allow(KEY) is None
    assert b.state(KEY) is BreakerState.OPEN
    assert b.retry_in(KEY) == pytest.approx(300.0)
    await b.flush()
    clock.advance(300)
    probe = await b.allow(KEY)
    assert probe is not None and probe.is_probe


async def test_released_shared_probe_lets_another_replica_probe(
        shared_backend: tuple[StateBackend, FakeClock]) -> None:
    state, clock = shared_backend
    a, b = replicas(state, clock)
    for _ in range(3):
        await afail(a)
    clock.advance(300)
    probe = await a.allow(KEY)
    assert probe is not None
    await a.flush()
    assert await b.allow(KEY) is None
    await b.flush()
    probe.release()
    await a.flush()
    clock.advance(1.0)
    probe_b = await b.allow(KEY)
    assert probe_b is not None and probe_b.is_probe


async def test_healthy_traffic_costs_one_read_per_sync_interval() -> None:
    clock = FakeClock()
    spy = SpyState(clock)
    reg = BreakerRegistry(BreakerConfig(), spy, clock, sync_interval=1.0)
    assert reg.shared
    for _ in range(100):
        permit = await reg.allow(KEY)
        assert permit is not None
        permit.success(0.01)
    await reg.flush()
    assert spy.calls == Counter({"get": 1})
    clock.advance(1.0)
    await reg.allow(KEY)
    assert spy.calls["get"] == 2
    # a failure streak costs writes once, and its end costs one reset
    for _ in range(2):
        permit = await reg.allow(KEY)
        assert permit is not None
        permit.failure(ServerError("x"))
    permit = await reg.allow(KEY)
    assert permit is not None
    permit.success()
    await reg.flush()
    assert spy.calls["incr"] == 2 and spy.calls["delete"] == 1
    for _ in range(10):
        permit = await reg.allow(KEY)
        assert permit is not None
        permit.success()
    await reg.flush()
    assert spy.calls["delete"] == 1


async def test_breakers_keep_working_when_shared_state_is_down() -> None:
    clock = FakeClock()
    spy = SpyState(clock)
    spy.down = True
    reg = BreakerRegistry(BreakerConfig(), spy, clock)
    for _ in range(3):
        permit = await reg.allow(KEY)
        assert permit is not None
        permit.failure(ServerError("x"))
    await reg.flush()
    assert await reg.allow(KEY) is None
    clock.advance(300)
    probe = await reg.allow(KEY)
    assert probe is not None and probe.is_probe
    probe.success()
    await reg.flush()
    assert reg.state(KEY) is BreakerState.CLOSED


def test_allow_sync_with_shared_state_uses_the_cache_only() -> None:
    clock = FakeClock()
    spy = SpyState(clock)
    reg = BreakerRegistry(BreakerConfig(failure_threshold=1, recovery_time=10), spy, clock)
    permit = reg.allow_sync(KEY)
    assert permit is not None
    permit.failure(ServerError("x"))  # no running loop: the shared write is skipped, the local state moves
    assert reg.state(KEY) is BreakerState.OPEN
    clock.advance(10)
    assert reg.allow_sync(KEY) is None  # a probe needs a shared claim: use allow()
    assert sum(spy.calls.values()) == 0
