"""One suite for every state backend: memory, and Redis (skipped when absent, required under CI=true).

Both backends take time from a FakeClock, so rate windows and reservation expiries are moved, not
waited for. Redis key TTLs (garbage collection only) run on Redis' own clock; the one test that
checks a key/value TTL on Redis polls for it with a generous bound.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelplex.errors import ConfigError
from modelplex.resilience.clock import FakeClock
from modelplex.state import (
    FallbackState,
    MemoryState,
    RedisState,
    StateBackend,
    StateUnavailableError,
    make_state,
)
from modelplex.state.base import UNLIMITED, KeyLimits, normalise_key_limits
from modelplex.state.redis import redact_url


class Backend:
    def __init__(self, kind: str, state: StateBackend, clock: FakeClock) -> None:
        self.kind = kind
        self.state = state
        self.clock = clock


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    clock = FakeClock(start=1000.0)
    if request.param == "memory":
        yield Backend("memory", MemoryState(clock), clock)
        return
    url = request.getfixturevalue("redis_url")
    state = RedisState(url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock, timeout=5.0)
    try:
        yield Backend("redis", state, clock)
    finally:
        await state.clear()
        await state.close()


# ---------------------------------------------------------------------------- key/value


async def test_get_set_round_trips_json_values(backend: Backend) -> None:
    st = backend.state
    values: dict[str, Any] = {"d": {"state": "open", "gen": 3, "until": 1.5, "nested": [1, "x"]},
                              "l": [1, 2.5, "three", False], "s": "text", "i": 42, "f": 0.125, "b": True}
    for k, v in values.items():
        await st.set(k, v)
    for k, v in values.items():
        assert await st.get(k) == v
    assert await st.get("absent") is None


async def test_values_are_copies(backend: Backend) -> None:
    st = backend.state
    value = {"a": [1]}
    await st.set("k", value)
    value["a"].append(2)
    got = await st.get("k")
    assert got == {"a": [1]}
    got["a"].append(3)
    assert await st.get("k") == {"a": [1]}


async def test_delete_and_overwrite(backend: Backend) -> None:
    st = backend.state
    await st.set("k", 1)
    await st.set("k", 2)
    assert await st.get("k") == 2
    await st.delete("k")
    assert await st.get("k") is None
    await st.delete("never-set")


async def test_set_ttl_expires(backend: Backend) -> None:
    st = backend.state
    if backend.kind == "memory":
        await st.set("k", "v", ttl=10)
        backend.clock.advance(9.9)
        assert await st.get("k") == "v"
        backend.clock.advance(0.1)
        assert await st.get("k") is None
        return
    await st.set("k", "v", ttl=0.05)
    await st.set("keep", "v", ttl=600)
    for _ in range(500):  # Redis expires on its own clock; poll with a generous bound
        if await st.get("k") is None:
            break
        await asyncio.sleep(0.01)
    assert await st.get("k") is None
    assert await st.get("keep") == "v"


async def test_incr_is_a_float_counter_sharing_the_key_space(backend: Backend) -> None:
    st = backend.state
    assert await st.incr("n") == 1.0
    assert await st.incr("n", 2.5) == 3.5
    assert await st.incr("n", -1.5) == 2.0
    assert await st.get("n") == 2
    await st.delete("n")
    assert await st.incr("n", 0.1) == pytest.approx(0.1)


async def test_incr_ttl_is_refreshed_each_call() -> None:
    """Checked on memory: Redis TTLs run on Redis' own clock (the same rule, PEXPIRE on every call)."""
    clock = FakeClock()
    st = MemoryState(clock)
    await st.incr("n", 1, ttl=10)
    clock.advance(8)
    await st.incr("n", 1, ttl=10)
    clock.advance(8)
    assert await st.get("n") == 2.0
    clock.advance(2)
    assert await st.get("n") is None
    await st.incr("plain", 1, ttl=5)
    await st.incr("plain", 1)  # no ttl: keeps the existing expiry
    clock.advance(5)
    assert await st.get("plain") is None


async def test_incr_on_a_non_number_is_refused() -> None:
    st = MemoryState(FakeClock())
    await st.set("k", {"not": "a number"})
    with pytest.raises(TypeError):
        await st.incr("k")


async def test_bad_ttl_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError):
        await backend.state.set("k", 1, ttl=0)
    with pytest.raises(ValueError):
        await backend.state.incr("k", 1, ttl=-1)
    with pytest.raises(ValueError):
        await backend.state.incr("k", math.nan)


# ---------------------------------------------------------------------------- rate limits


async def test_rate_limit_bursts_to_the_limit_then_refills_one_interval_at_a_time(backend: Backend) -> None:
    st, clock = backend.state, backend.clock
    results = [await st.rate_limit("rpm", 10, 60.0) for _ in range(10)]
    assert results == [(True, 0.0)] * 10
    allowed, retry_after = await st.rate_limit("rpm", 10, 60.0)
    assert not allowed
    assert retry_after == pytest.approx(6.0)
    clock.advance(5.9)
    allowed, retry_after = await st.rate_limit("rpm", 10, 60.0)
    assert not allowed and retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    assert (await st.rate_limit("rpm", 10, 60.0))[0]
    assert not (await st.rate_limit("rpm", 10, 60.0))[0]
    clock.advance(60)
    assert [(await st.rate_limit("rpm", 10, 60.0))[0] for _ in range(11)] == [True] * 10 + [False]


async def test_rate_limit_keys_are_independent_and_refusals_take_nothing(backend: Backend) -> None:
    st, clock = backend.state, backend.clock
    for _ in range(3):
        assert (await st.rate_limit("a", 3, 30.0))[0]
    for _ in range(5):  # refused calls must not push the bucket further into the future
        allowed, retry_after = await st.rate_limit("a", 3, 30.0)
        assert not allowed and retry_after == pytest.approx(10.0)
    assert (await st.rate_limit("b", 3, 30.0))[0]
    clock.advance(10)
    assert (await st.rate_limit("a", 3, 30.0))[0]


async def test_rate_limit_costs_peeks_refunds_and_forced_debt(backend: Backend) -> None:
    st, clock = backend.state, backend.clock
    assert await st.rate_limit("tpm", 1000, 60.0, 600) == (True, 0.0)
    allowed, retry_after = await st.rate_limit("tpm", 1000, 60.0, 500)
    assert not allowed and retry_after == pytest.approx(6.0)  # 100 tokens short at 1000/60 s
    assert await st.rate_limit("tpm", 1000, 60.0, 0) == (True, 0.0)  # a peek takes nothing
    assert await st.rate_limit("tpm", 1000, 60.0, -300) == (True, 0.0)  # refund
    assert (await st.rate_limit("tpm", 1000, 60.0, 500))[0]  # 600 - 300 + 500 = 800
    # forced: the call already happened; the bucket goes into debt and refuses until it refills
    allowed, _ = await st.rate_limit("tpm", 1000, 60.0, 700, force=True)
    assert not allowed
    allowed, retry_after = await st.rate_limit("tpm", 1000, 60.0, 0)
    assert not allowed and retry_after == pytest.approx(30.0)  # 1500 in a 1000 bucket: 500 over
    clock.advance(30)
    assert (await st.rate_limit("tpm", 1000, 60.0, 0))[0]


async def test_rate_limit_cost_above_limit_never_fits(backend: Backend) -> None:
    allowed, retry_after = await backend.state.rate_limit("big", 100, 60.0, 101)
    assert not allowed and math.isinf(retry_after)
    assert await backend.state.rate_limit("big", 100, 60.0, 100) == (True, 0.0)


async def test_rate_limit_argument_checks(backend: Backend) -> None:
    for args in ((0, 60.0, 1), (10, 0.0, 1), (math.inf, 60.0, 1), (10, 60.0, math.nan)):
        with pytest.raises(ValueError):
            await backend.state.rate_limit("k", *args)


# ---------------------------------------------------------------------------- budget reservations


async def test_reserve_holds_against_every_key_or_none(backend: Backend) -> None:
    st = backend.state
    assert await st.reserve([("global", 10.0), ("user:a", 5.0)], 3.0, "r1", ttl=60) == (True, None)
    assert await st.usage("global") == (0.0, 3.0)
    assert await st.usage("user:a") == (0.0, 3.0)
    # user:a has 2 left: refused, and global is left untouched
    assert await st.reserve([("global", 10.0), ("user:a", 5.0)], 2.5, "r2", ttl=60) == (False, "user:a")
    assert await st.usage("global") == (0.0, 3.0)
    assert await st.reserve([("global", 10.0), ("user:a", 5.0)], 2.0, "r3", ttl=60) == (True, None)
    assert await st.usage("user:a") == (0.0, 5.0)
    assert await st.reserve([("global", 10.0)], 6.0, "r4", ttl=60) == (False, "global")
    assert await st.reserve([("global", 10.0)], 5.0, "r5", ttl=60) == (True, None)
    assert await st.usage("global") == (0.0, 10.0)


async def test_settle_moves_reserved_to_spent_once(backend: Backend) -> None:
    st = backend.state
    await st.reserve([("k1", 10.0), ("k2", 10.0)], 4.0, "r1", ttl=60)
    assert await st.settle("r1", 2.5) is True
    assert await st.usage("k1") == (2.5, 0.0)
    assert await st.usage("k2") == (2.5, 0.0)
    assert await st.settle("r1", 2.5) is False
    assert await st.release("r1") is False
    assert await st.usage("k1") == (2.5, 0.0)
    # the freed headroom is usable: 2.5 spent + 7.5 reserved = 10
    assert await st.reserve([("k1", 10.0)], 7.5, "r2", ttl=60) == (True, None)
    assert await st.reserve([("k1", 10.0)], 0.01, "r3", ttl=60) == (False, "k1")


async def test_release_frees_without_spending_once(backend: Backend) -> None:
    st = backend.state
    await st.reserve([("k", 10.0)], 4.0, "r1", ttl=60)
    await st.reserve([("k", 10.0)], 1.0, "r2", ttl=60)
    assert await st.release("r1") is True
    assert await st.usage("k") == (0.0, 1.0)
    assert await st.release("r1") is False
    assert await st.settle("r1", 4.0) is False
    assert await st.usage("k") == (0.0, 1.0)
    assert await st.settle("never-reserved", 1.0) is False
    assert await st.release("never-reserved") is False


async def test_reservation_id_is_not_applied_twice(backend: Backend) -> None:
    st = backend.state
    assert await st.reserve([("k", 10.0)], 4.0, "r1", ttl=60) == (True, None)
    assert await st.reserve([("k", 10.0)], 4.0, "r1", ttl=60) == (True, None)
    assert await st.usage("k") == (0.0, 4.0)
    await st.settle("r1", 1.0)
    assert await st.reserve([("k", 10.0)], 4.0, "r1", ttl=60) == (False, None)
    assert await st.usage("k") == (1.0, 0.0)


async def test_reservations_expire_after_ttl(backend: Backend) -> None:
    st, clock = backend.state, backend.clock
    await st.reserve([("k", 10.0)], 6.0, "crashed", ttl=30)
    await st.reserve([("k", 10.0)], 1.0, "alive", ttl=120)
    assert await st.reserve([("k", 10.0)], 5.0, "r", ttl=30) == (False, "k")
    clock.advance(29.9)
    assert await st.usage("k") == (0.0, 7.0)
    clock.advance(0.1)
    assert await st.usage("k") == (0.0, 1.0)
    assert await st.reserve([("k", 10.0)], 5.0, "r", ttl=30) == (True, None)
    # a late settle still books what was spent, and does not free anything twice
    assert await st.settle("crashed", 2.0) is True
    assert await st.usage("k") == (2.0, 6.0)
    assert await st.settle("crashed", 2.0) is False
    await st.release("alive")
    await st.release("r")
    assert await st.usage("k") == (2.0, 0.0)


async def test_unlimited_and_duplicate_keys(backend: Backend) -> None:
    st = backend.state
    assert await st.reserve([("k", math.inf)], 1e12, "r1", ttl=60) == (True, None)
    assert await st.usage("k") == (0.0, 1e12)
    # duplicates merge: the smallest limit wins and the amount is held once
    assert await st.reserve([("d", 10.0), ("d", 4.0)], 5.0, "r2", ttl=60) == (False, "d")
    assert await st.reserve([("d", 10.0), ("d", 4.0)], 4.0, "r3", ttl=60) == (True, None)
    assert await st.usage("d") == (0.0, 4.0)


async def test_add_spent_counts_against_limits(backend: Backend) -> None:
    st = backend.state
    assert await st.add_spent("k", 7.25) == 7.25
    assert await st.add_spent("k", 0.75) == 8.0
    assert await st.reserve([("k", 10.0)], 2.5, "r", ttl=60) == (False, "k")
    assert await st.reserve([("k", 10.0)], 2.0, "r", ttl=60) == (True, None)
    assert await st.usage("absent") == (0.0, 0.0)


async def test_key_ttl_scopes_usage_to_a_period() -> None:
    clock = FakeClock()
    st = MemoryState(clock)
    await st.reserve([("day:1", 10.0)], 3.0, "r", ttl=60, key_ttl=3600)
    await st.settle("r", 3.0)
    clock.advance(3599)
    assert await st.usage("day:1") == (3.0, 0.0)
    clock.advance(1)
    assert await st.usage("day:1") == (0.0, 0.0)


async def test_key_ttl_is_set_on_redis(redis_url: str) -> None:
    st = RedisState(redis_url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=FakeClock(), timeout=5.0)
    try:
        await st.reserve([("day:1", 10.0)], 3.0, "r", ttl=60, key_ttl=3600)
        await st.settle("r", 3.0)
        client = st._connect()
        pttl = await client.pttl(f"{st.prefix}bu:day:1")
        assert 3_500_000 < pttl <= 3_600_000
        record_ttl = await client.pttl(f"{st.prefix}res:r")
        assert record_ttl > 60_000  # the record outlives the hold, for late settles
    finally:
        await st.clear()
        await st.close()


async def test_reserve_argument_checks(backend: Backend) -> None:
    st = backend.state
    with pytest.raises(ValueError):
        await st.reserve([("k", 10.0)], -1.0, "r", ttl=60)
    with pytest.raises(ValueError):
        await st.reserve([("k", 10.0)], 1.0, "r", ttl=0)
    with pytest.raises(ValueError):
        await st.reserve([], 1.0, "r", ttl=60)
    with pytest.raises(ValueError):
        await st.reserve([("k", math.nan)], 1.0, "r", ttl=60)
    with pytest.raises(ValueError):
        await st.settle("r", math.inf)


async def test_concurrent_reservations_never_overshoot(backend: Backend) -> None:
    st = backend.state
    results = await asyncio.gather(*(st.reserve([("global", 10.0), (f"user:{i % 7}", 100.0)], 1.0,
                                                f"r{i}", ttl=60) for i in range(200)))
    winners = [i for i, (ok, _) in enumerate(results) if ok]
    assert len(winners) == 10
    assert all(failed == "global" for ok, failed in results if not ok)
    assert await st.usage("global") == (0.0, 10.0)
    await asyncio.gather(*(st.settle(f"r{i}", 0.5) for i in winners))
    await asyncio.gather(*(st.settle(f"r{i}", 0.5) for i in winners))  # idempotent under concurrency
    spent, reserved = await st.usage("global")
    assert spent == pytest.approx(5.0) and reserved == 0.0


async def test_fractional_amounts_do_not_drift(backend: Backend) -> None:
    st = backend.state
    for i in range(30):
        assert (await st.reserve([("k", 3.0)], 0.1, f"r{i}", ttl=60))[0]
    assert (await st.reserve([("k", 3.0)], 0.1, "extra", ttl=60))[0] is False
    for i in range(30):
        await st.release(f"r{i}")
    assert await st.usage("k") == (0.0, 0.0)


async def test_key_limits_are_validated_once_then_passed_as_they_are(backend: Backend) -> None:
    limits = KeyLimits([("g", math.inf), ("u", 5), ("u", 4.0)])
    assert limits == (("g", UNLIMITED), ("u", 4.0))  # merged: the smallest limit wins, first position kept
    assert all(type(limit) is float for _key, limit in limits)
    assert normalise_key_limits(limits, 1.0, 60) is limits  # no second pass over the pairs
    assert type(normalise_key_limits([("k", 1)], 1.0, 60)) is KeyLimits
    with pytest.raises(ValueError):  # the amount and the ttl are still checked on every call
        normalise_key_limits(limits, math.nan, 60)
    with pytest.raises(ValueError):
        normalise_key_limits(limits, 1.0, math.inf)
    st = backend.state
    assert await st.reserve(limits, 4.5, "r1", ttl=60) == (False, "u")
    assert await st.reserve(limits, 3.0, "r2", ttl=60, key_ttl=3600) == (True, None)
    assert await st.usage("u") == (0.0, 3.0) and await st.usage("g") == (0.0, 3.0)
    assert await st.settle("r2", 2.0) is True
    assert await st.usage("u") == (2.0, 0.0)


@pytest.mark.parametrize("bad", [[], [("", 1.0)], [(1, 1.0)], [("k", math.nan)]])
def test_key_limits_refuse_what_reserve_refuses(bad: list[tuple[Any, float]]) -> None:
    with pytest.raises(ValueError):
        KeyLimits(bad)


async def test_settle_spent_is_settle_plus_what_it_left(backend: Backend) -> None:
    st = backend.state
    await st.add_spent("k2", 1.0)
    assert await st.reserve([("k1", 10.0), ("k2", 10.0)], 4.0, "r1", ttl=60) == (True, None)
    applied, spent = await st.settle_spent("r1", 2.5)
    assert applied is True
    if backend.kind == "memory":  # in-process: reported from the same locked step
        assert spent == {"k1": 2.5, "k2": 3.5}
    else:  # the default: nothing reported, ask usage()
        assert spent is None
    assert await st.usage("k1") == (2.5, 0.0) and await st.usage("k2") == (3.5, 0.0)
    assert await st.settle_spent("r1", 2.5) == (False, None)  # idempotent, like settle
    assert await st.settle("r1", 2.5) is False
    assert await st.settle_spent("never-reserved", 1.0) == (False, None)
    with pytest.raises(ValueError):
        await st.settle_spent("r1", math.inf)


async def test_holds_expire_on_time_seen_by_reserve_alone(backend: Backend) -> None:
    """No usage() call in between: reserve and settle find the expired holds by themselves, also a
    short hold taken after a longer one."""
    st, clock = backend.state, backend.clock
    assert await st.reserve([("k", 10.0)], 3.0, "long", ttl=100) == (True, None)
    assert await st.reserve([("k", 10.0)], 6.0, "short", ttl=10) == (True, None)
    assert await st.reserve([("k", 10.0)], 6.0, "r1", ttl=60) == (False, "k")
    clock.advance(9.9)
    assert await st.reserve([("k", 10.0)], 6.0, "r1", ttl=60) == (False, "k")
    clock.advance(0.1)
    assert await st.reserve([("k", 10.0)], 6.0, "r1", ttl=60) == (True, None)  # "short" ran out
    assert await st.settle_spent("short", 1.0) == (True, {"k": 1.0} if backend.kind == "memory" else None)
    assert await st.reserve([("k", 10.0)], 0.5, "r2", ttl=60) == (False, "k")  # 1 + 3 + 6 held or spent
    clock.advance(90)  # "long" ran out; r1 too (it was taken at 10 with ttl 60)
    assert await st.reserve([("k", 10.0)], 9.0, "r3", ttl=60) == (True, None)
    assert await st.usage("k") == (1.0, 9.0)


async def test_a_settle_after_the_key_expired_books_on_a_fresh_key() -> None:
    clock = FakeClock()
    st = MemoryState(clock)
    await st.add_spent("day", 5.0, key_ttl=100)
    assert await st.reserve([("day", 10.0)], 2.0, "r", ttl=600, key_ttl=100) == (True, None)
    clock.advance(100)  # the key's period is over before the settle: the old spend is not carried over
    assert await st.settle_spent("r", 1.5) == (True, {"day": 1.5})
    assert await st.usage("day") == (1.5, 0.0)


# ---------------------------------------------------------------------------- lifecycle


async def test_health_and_clear(backend: Backend) -> None:
    st = backend.state
    health = await st.health()
    assert health["backend"] == backend.kind
    assert health["ok"] is True and health["degraded"] is False
    await st.set("k", 1)
    await st.reserve([("b", 1.0)], 1.0, "r", ttl=60)
    await st.rate_limit("rl", 1, 60.0)
    await st.clear()
    assert await st.get("k") is None
    assert await st.usage("b") == (0.0, 0.0)
    assert (await st.rate_limit("rl", 1, 60.0))[0]


async def test_redis_clear_only_touches_its_prefix(redis_url: str) -> None:
    clock = FakeClock()
    mine = RedisState(redis_url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock, timeout=5.0)
    other = RedisState(redis_url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock, timeout=5.0)
    try:
        await mine.set("k", 1)
        await other.set("k", 2)
        await mine.clear()
        assert await mine.get("k") is None
        assert await other.get("k") == 2
    finally:
        await other.clear()
        await mine.close()
        await other.close()


async def test_redis_unreachable_raises_state_unavailable_quickly() -> None:
    st = RedisState("redis://127.0.0.1:1/0", clock=FakeClock(), timeout=0.5)
    with pytest.raises(StateUnavailableError) as info:
        await st.get("k")
    assert info.value.backend == "redis"
    health = await st.health()
    assert health["ok"] is False and "error" in health
    await st.close()


def test_redis_url_password_is_redacted() -> None:
    st = RedisState("redis://user:hunter22@cache.internal:6380/2")
    assert "hunter22" not in repr(st)
    assert redact_url("redis://:s3cretpw@h:1/0") == "redis://***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(ConfigError):
        RedisState("http://nope")


# ---------------------------------------------------------------------------- make_state / FallbackState


async def test_make_state_picks_the_backend() -> None:
    assert isinstance(make_state(None), MemoryState)
    assert isinstance(make_state("memory"), MemoryState)
    wrapped = make_state("redis://127.0.0.1:6379/15", FakeClock(), prefix="x:")
    assert isinstance(wrapped, FallbackState)
    assert isinstance(wrapped.primary, RedisState) and isinstance(wrapped.local, MemoryState)
    assert wrapped.shared is True
    with pytest.raises(ConfigError):
        make_state("postgres://localhost/db")


class FlakyState(MemoryState):
    """A shared backend that can be switched off: every call then raises StateUnavailableError."""

    name = "flaky"
    shared = True

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.down = False
        self.calls = 0
        self.fail_after: set[str] = set()
        """Methods that fail once *after* taking effect (a reply lost to a timeout)."""

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StateUnavailableError("connection refused", backend=self.name)

    def _lost_reply(self, method: str) -> None:
        if method in self.fail_after:
            self.fail_after.discard(method)
            raise StateUnavailableError("timed out", backend=self.name)

    async def get(self, key: str) -> Any:
        self._check()
        return await super().get(key)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._check()
        await super().set(key, value, ttl)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        self._check()
        return await super().incr(key, amount, ttl)

    async def reserve(self, *args: Any, **kwargs: Any) -> tuple[bool, str | None]:
        self._check()
        return await super().reserve(*args, **kwargs)

    async def settle(self, reservation_id: str, actual: float) -> bool:
        self._check()
        applied = await super().settle(reservation_id, actual)
        self._lost_reply("settle")
        return applied

    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        self._check()
        return await super().add_spent(key, amount, key_ttl=key_ttl)

    async def release(self, reservation_id: str) -> bool:
        self._check()
        return await super().release(reservation_id)

    async def usage(self, key: str) -> tuple[float, float]:
        self._check()
        return await super().usage(key)

    async def health(self) -> dict[str, Any]:
        return {"backend": self.name, "ok": not self.down, "degraded": False}


@pytest.fixture
def flaky() -> tuple[FallbackState, FlakyState, MemoryState, FakeClock]:
    clock = FakeClock()
    primary = FlakyState(clock)
    local = MemoryState(clock)
    return FallbackState(primary, local, clock=clock, retry_interval=5.0), primary, local, clock


async def test_fallback_serves_locally_while_primary_is_down(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock],
        caplog: pytest.LogCaptureFixture) -> None:
    state, primary, local, clock = flaky
    await state.set("k", "from-primary")
    assert await primary.get("k") == "from-primary" and await local.get("k") is None
    assert state.degraded is False

    primary.down = True
    with caplog.at_level(logging.WARNING, logger="modelplex.state"):
        await state.set("k", "from-local")
        assert await state.get("k") == "from-local"
        assert await state.incr("n") == 1.0
    assert state.degraded is True
    assert [r.message for r in caplog.records if "state_degraded" in r.message]
    assert len([r for r in caplog.records if "state_degraded" in r.message]) == 1
    calls = primary.calls
    for _ in range(20):  # no per-call timeout while degraded: the primary is not asked again yet
        await state.get("k")
    assert primary.calls == calls

    health = await state.health()
    assert health["degraded"] is True and health["ok"] is True
    assert "connection refused" in health["last_error"]
    assert health["backend"] == "flaky"

    clock.advance(5.0)
    await state.get("k")  # retries the primary, which is still down
    assert primary.calls == calls + 1 and state.degraded is True

    primary.down = False
    clock.advance(5.0)
    with caplog.at_level(logging.INFO, logger="modelplex.state"):
        assert await state.get("k") == "from-primary"
    assert state.degraded is False
    assert [r for r in caplog.records if "state_recovered" in r.message]


async def test_fallback_health_ends_an_episode(flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, _, _ = flaky
    primary.down = True
    await state.get("k")
    assert (await state.health())["degraded"] is True
    primary.down = False
    assert (await state.health())["degraded"] is False


async def test_fallback_keeps_local_reservations_local(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, local, clock = flaky
    primary.down = True
    assert await state.reserve([("b", 10.0)], 4.0, "during-outage", ttl=60) == (True, None)
    primary.down = False
    clock.advance(5.0)
    assert await state.get("x") is None  # recovers
    assert state.degraded is False
    assert await state.settle("during-outage", 3.0) is True
    assert await local.usage("b") == (3.0, 0.0)
    await state.flush()  # settled after the recovery: its spend is merged at once, not at the next recovery
    assert await primary.usage("b") == (3.0, 0.0)
    assert (await state.health())["pending_merge_usd"] == 0.0


async def test_fallback_replays_settles_of_primary_reservations(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, _, clock = flaky
    assert await state.reserve([("b", 10.0)], 4.0, "r1", ttl=600) == (True, None)
    assert await state.reserve([("b", 10.0)], 2.0, "r2", ttl=600) == (True, None)
    primary.down = True
    assert await state.settle("r1", 3.0) is False  # queued
    assert await state.release("r2") is False  # queued
    assert (await state.health())["pending_replay"] == 2
    primary.down = False
    clock.advance(5.0)
    await state.get("anything")
    await state.flush()
    assert await primary.usage("b") == (3.0, 0.0)
    assert (await state.health())["pending_replay"] == 0


async def _outage_spend(state: FallbackState, primary: FlakyState) -> None:
    """While the primary is down: two reservations settled locally and one unreserved charge."""
    primary.down = True
    assert await state.reserve([("b", 10.0), ("u", 5.0)], 4.0, "o1", ttl=60) == (True, None)
    assert await state.settle("o1", 3.0) is True
    assert await state.reserve([("b", 10.0)], 2.0, "o2", ttl=60) == (True, None)
    assert await state.settle("o2", 1.5) is True
    assert await state.reserve([("b", 10.0)], 1.0, "o3", ttl=60) == (True, None)
    assert await state.release("o3") is True  # released: nothing to merge
    assert await state.add_spent("b", 0.5) == 5.0
    assert (await state.health())["pending_merge_usd"] == pytest.approx(5.0) == state.pending_merge_usd


async def test_fallback_merges_spend_booked_locally_into_the_primary(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, local, clock = flaky
    assert await state.reserve([("b", 10.0)], 1.0, "before", ttl=60) == (True, None)
    assert await state.settle("before", 1.0) is True  # in the primary all along
    await _outage_spend(state, primary)
    assert await MemoryState.usage(primary, "b") == (1.0, 0.0)  # the primary has not seen the outage yet
    primary.down = False
    clock.advance(5.0)
    await state.get("x")  # recovers
    await state.flush()
    assert await primary.usage("b") == (pytest.approx(6.0), 0.0)
    assert await primary.usage("u") == (pytest.approx(3.0), 0.0)
    assert (await state.health())["pending_merge_usd"] == 0.0
    assert await local.usage("b") == (pytest.approx(5.0), 0.0)  # the local counts stay for the next outage
    clock.advance(5.0)
    await state.get("x")
    await state.flush()
    assert await primary.usage("b") == (pytest.approx(6.0), 0.0)  # merged once


async def test_fallback_merge_retried_after_a_lost_reply_is_applied_once(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, _, clock = flaky
    await _outage_spend(state, primary)
    primary.down = False
    primary.fail_after.add("settle")  # the first merge's settle is applied, but its reply is lost
    clock.advance(5.0)
    await state.get("x")
    await state.flush()
    assert state.degraded is True
    assert (await state.health())["pending_merge_usd"] > 0
    clock.advance(5.0)
    await state.get("x")  # recovers again: the same merge ids are tried again
    await state.flush()
    assert state.degraded is False
    assert await primary.usage("b") == (pytest.approx(5.0), 0.0)
    assert await primary.usage("u") == (pytest.approx(3.0), 0.0)
    assert (await state.health())["pending_merge_usd"] == 0.0


async def test_fallback_releases_a_primary_hold_its_timed_out_reserve_may_have_left(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    """A reserve whose reply is lost (applied in Redis, then a timeout) is served locally; the primary's hold
    of the same id is released once the primary answers, so it does not block the budget's room."""
    state, primary, local, clock = flaky
    real_reserve = primary.reserve

    async def applied_then_timed_out(*args: Any, **kwargs: Any) -> tuple[bool, str | None]:
        await real_reserve(*args, **kwargs)
        raise StateUnavailableError("timed out", backend="flaky")

    primary.reserve = applied_then_timed_out  # type: ignore[method-assign]
    assert await state.reserve([("b", 10.0)], 4.0, "r1", 60.0) == (True, None)
    assert await primary.usage("b") == (0.0, 4.0)  # the hold the lost reply left behind
    primary.reserve = real_reserve  # type: ignore[method-assign]
    assert await state.settle("r1", 3.0) is True  # settled where it was served
    clock.advance(5.0)
    await state.get("x")  # the primary answers: the episode ends, the carry-over runs
    await state.flush()
    assert await primary.usage("b") == (pytest.approx(3.0), 0.0)  # merged spend, and no hold left
    assert await local.usage("b") == (3.0, 0.0)


async def test_fallback_close_carries_over_what_the_outage_left_if_the_primary_is_back(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, _, _clock = flaky
    await _outage_spend(state, primary)
    primary.down = False  # back, but the retry time has not come: nothing probed it yet
    assert state.degraded is True and state.pending_merge_usd > 0
    await state.close()
    assert await primary.usage("b") == (pytest.approx(5.0), 0.0)
    assert state.pending_merge_usd == 0.0


async def test_fallback_merge_groups_spend_by_keys_whatever_their_ttl(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    state, primary, _, clock = flaky
    primary.down = True
    for i in range(20):  # the budget manager's key_ttl differs from call to call
        assert await state.reserve([("b", 100.0), ("u", 50.0)], 1.0, f"o{i}", ttl=60, key_ttl=3600.0 + i) \
            == (True, None)
        assert await state.settle(f"o{i}", 0.5) is True
    primary.down = False
    clock.advance(5.0)
    calls = primary.calls
    await state.get("x")
    await state.flush()
    # the get; the release of whatever hold the first reserve (the one that found the primary down) may
    # have left; then one reserve and one settle for all twenty
    assert primary.calls - calls == 4
    assert await primary.usage("b") == (pytest.approx(10.0), 0.0)
    assert await primary.usage("u") == (pytest.approx(10.0), 0.0)


async def test_fallback_clear_during_a_failing_merge_forgets_it(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock],
        caplog: pytest.LogCaptureFixture) -> None:
    state, primary, _, clock = flaky
    await _outage_spend(state, primary)
    primary.down = False
    primary.fail_after.add("settle")
    reserve = primary.reserve

    async def suspending_reserve(*args: Any, **kwargs: Any) -> tuple[bool, str | None]:
        await asyncio.sleep(0)  # as a network call would: the merge is under way across this point
        return await reserve(*args, **kwargs)

    primary.reserve = suspending_reserve  # type: ignore[method-assign]
    clock.advance(5.0)
    await state.get("x")
    await asyncio.sleep(0)  # the carry-over task starts its first merge and suspends in the reserve
    assert state._merging or state._tasks
    await state.clear()  # while the merge that is about to fail is under way
    await state.flush()
    assert (await state.health())["pending_merge_usd"] == 0.0
    primary.down = True
    await state.reserve([("b", 10.0)], 1.0, "late", ttl=60)
    await state.settle("late", 1.0)
    with caplog.at_level(logging.WARNING, logger="modelplex.state"):
        await state.close()
    assert [r for r in caplog.records if "state_closed_with_pending" in r.message and "1.000000" in r.message]


async def test_fallback_merges_into_real_redis(redis_url: str) -> None:
    clock = FakeClock()
    redis = RedisState(redis_url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock, timeout=5.0)
    state = FallbackState(redis, MemoryState(clock), clock=clock, retry_interval=5.0)
    try:
        state._degrade(StateUnavailableError("simulated outage", backend="redis"))
        assert await state.reserve([("b", 10.0), ("u", 5.0)], 4.0, "o1", ttl=60, key_ttl=3600) == (True, None)
        assert await state.settle("o1", 2.5) is True
        assert await redis.usage("b") == (0.0, 0.0)
        clock.advance(5.0)
        await state.get("x")
        await state.flush()
        assert await redis.usage("b") == (pytest.approx(2.5), 0.0)
        assert await redis.usage("u") == (pytest.approx(2.5), 0.0)
        # and the merged spend counts against the limit of the next reservation in Redis
        assert await state.reserve([("u", 5.0)], 3.0, "after", ttl=60) == (False, "u")
    finally:
        await redis.clear()
        await state.close()


async def test_fallback_over_unreachable_redis_keeps_working() -> None:
    clock = FakeClock()
    state = make_state("redis://127.0.0.1:1/0", clock, timeout=0.5)
    assert isinstance(state, FallbackState)
    assert await state.reserve([("b", 2.0)], 2.0, "r", ttl=60) == (True, None)
    assert await state.reserve([("b", 2.0)], 1.0, "r2", ttl=60) == (False, "b")
    assert (await state.rate_limit("k", 1, 60.0))[0] is True
    assert (await state.rate_limit("k", 1, 60.0))[0] is False
    health = await state.health()
    assert health["degraded"] is True and health["primary"]["ok"] is False
    await state.close()


async def test_redis_reports_what_each_budget_key_had_committed(redis_url: str) -> None:
    state = RedisState(redis_url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=FakeClock(start=1000.0), timeout=5.0)
    try:
        assert await state.reserve([("day", 1.0), ("user", 0.5)], 0.2, "r1", 60.0) == (True, None)
        assert state.last_seen == {"day": pytest.approx(0.2), "user": pytest.approx(0.2)}
        await state.settle("r1", 0.1)
        assert await state.reserve([("day", 1.0), ("user", 0.5)], 0.3, "r2", 60.0) == (True, None)
        assert state.last_seen == {"day": pytest.approx(0.4), "user": pytest.approx(0.4)}
        assert await state.reserve([("day", 1.0), ("user", 0.5)], 0.3, "r3", 60.0) == (False, "user")
        assert state.last_seen["user"] == pytest.approx(0.4)  # what was committed when it refused
    finally:
        await state.clear()
        await state.close()


class _GoneRedis(RedisState):
    """A real Redis state that can be made to time out, as a burst or a partition makes it."""

    down = False

    async def _call(self, op: Any, *, timeout: float | None = None) -> Any:
        if self.down:
            raise StateUnavailableError("TimeoutError", backend=self.name)
        return await super()._call(op, timeout=timeout)


async def test_a_replica_that_loses_redis_goes_on_from_the_budget_it_last_saw(redis_url: str) -> None:
    """A timeout used to send reservations to a local count that started at zero: a blip under a burst
    admitted a whole budget's worth per replica. The local count now starts from Redis' last figure."""
    clock = FakeClock(start=1000.0)
    primary = _GoneRedis(redis_url, prefix=f"mptest:{uuid.uuid4().hex}:", clock=clock, timeout=5.0)
    state = FallbackState(primary, MemoryState(clock), clock=clock, retry_interval=5.0)
    limit = [("day", 1.0)]
    try:
        for i in range(8):  # $0.80 of $1.00 committed in Redis
            assert (await state.reserve(limit, 0.1, f"a{i}", 60.0))[0]
            await state.settle(f"a{i}", 0.1)
        primary.down = True
        admitted = 0
        for i in range(10):
            ok, _failed = await state.reserve(limit, 0.1, f"b{i}", 60.0)
            admitted += ok
        assert state.degraded and admitted == 2  # the $0.20 left, not another $1.00
        primary.down = False
    finally:
        await primary.clear()
        await primary.close()


async def test_a_call_in_flight_when_the_episode_began_does_not_end_it(
        flaky: tuple[FallbackState, FlakyState, MemoryState, FakeClock]) -> None:
    """A reply to a call sent before the primary failed says nothing about it now: only a probe, sent
    while degraded, ends the episode (a burst otherwise ended each episode within 0.1 s)."""
    state, primary, _local, _clock = flaky
    gate = asyncio.Event()
    slow_get = primary.get

    async def gated_get(key: str) -> Any:
        value = await slow_get(key)
        await gate.wait()
        return value

    primary.get = gated_get  # type: ignore[method-assign]
    in_flight = asyncio.get_running_loop().create_task(state.get("k"))
    await asyncio.sleep(0)
    primary.down = True
    await state.incr("n")  # fails on the primary: degraded, served locally
    assert state.degraded
    primary.down = False
    gate.set()
    await in_flight
    assert state.degraded  # still: the episode ends with a probe after retry_interval, or health()
