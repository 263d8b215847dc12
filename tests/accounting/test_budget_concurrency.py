"""Budgets under concurrency, on the memory backend and on Redis (skipped when Redis is absent,
required under CI=true).

(a) 200 concurrent reservations against a budget that fits exactly 10: exactly 10 are admitted.
(b) 1,000 mixed requests (successes, failures, cancellations in flight): nothing stays reserved and
    spent equals the sum of the settled actuals, globally and per user.
(c) period boundaries in America/New_York: a request is charged to the day it started in.
(d) per-user and per-API-key limits isolate their subjects.
(e) the 80% alert fires exactly once, however many settles race past it.

Time is a FakeClock for both backends (the Redis scripts take ``now`` from the injected clock).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from modelplex.accounting.alerts import AlertSink, BudgetAlert
from modelplex.accounting.budgets import BudgetManager, BudgetRejectedError, KeyBudget
from modelplex.accounting.records import UsageRecord
from modelplex.config import BudgetConfig
from modelplex.errors import BudgetExceededError
from modelplex.resilience.clock import FakeClock
from modelplex.state import MemoryState, RedisState, StateBackend

NY = ZoneInfo("America/New_York")
START = datetime(2026, 11, 21, 15, 0, 0, tzinfo=NY).timestamp()


class Env:
    def __init__(self, kind: str, state: StateBackend, clock: FakeClock) -> None:
        self.kind = kind
        self.state = state
        self.clock = clock
        self.alerts: list[BudgetAlert] = []

    def manager(self, **cfg: object) -> BudgetManager:
        sink = AlertSink()
        sink.subscribe(self.alerts.append)
        cfg.setdefault("timezone", "America/New_York")
        return BudgetManager(BudgetConfig(**cfg), self.state, self.clock, alerts=sink)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "redis"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    clock = FakeClock(start=100.0, wall_start=START)
    if request.param == "memory":
        yield Env("memory", MemoryState(clock), clock)
        return
    url = request.getfixturevalue("redis_url")
    state = RedisState(url, prefix=f"mptest:budget:{uuid.uuid4().hex}:", clock=clock, timeout=5.0,
                       max_connections=32)
    try:
        yield Env("redis", state, clock)
    finally:
        await state.clear()
        await state.close()


DAY = "budget:global:day:2026-11-21"


# ---------------------------------------------------------------------------- (a)


async def test_concurrent_reservations_never_overshoot(env: Env) -> None:
    estimate = 0.37
    mgr = env.manager(daily_usd=estimate * 10)

    async def one(i: int) -> object:
        try:
            return await mgr.reserve(request_id=f"r{i}", user=None, api_key_id=None, amount=estimate,
                                     started=env.clock.wall())
        except BudgetExceededError as e:
            return e

    results = await asyncio.gather(*(one(i) for i in range(200)))
    admitted = [r for r in results if not isinstance(r, BaseException)]
    rejected = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(admitted) == 10
    assert len(rejected) == 190
    assert all(isinstance(e, BudgetRejectedError) and e.scope == "global:daily" for e in rejected)
    spent, reserved = await env.state.usage(DAY)
    assert spent == 0 and reserved == pytest.approx(estimate * 10)

    rng = random.Random(7)
    actuals = [round(estimate * rng.uniform(0.2, 1.0), 6) for _ in admitted]
    await asyncio.gather(*(mgr.settle(r, a) for r, a in zip(admitted, actuals, strict=True)))  # type: ignore[arg-type]
    spent, reserved = await env.state.usage(DAY)
    assert reserved == pytest.approx(0.0, abs=1e-9)
    assert spent == pytest.approx(sum(actuals), abs=1e-9)
    assert spent <= estimate * 10 + 1e-9


async def test_overspend_is_bounded_by_one_estimate_error_when_sequential(env: Env) -> None:
    limit, estimate, error = 1.0, 0.25, 0.1
    mgr = env.manager(daily_usd=limit)
    admitted = 0
    while True:
        try:
            res = await mgr.reserve(request_id=f"r{admitted}", user=None, api_key_id=None, amount=estimate,
                                    started=env.clock.wall())
        except BudgetRejectedError:
            break
        await mgr.settle(res, estimate + error)  # every estimate was 0.10 too low
        admitted += 1
    spent, _ = await env.state.usage(DAY)
    # 2 x 0.35 = 0.70 spent, and 0.70 + 0.25 <= 1.0 admits a third, which costs 0.35: 1.05 spent
    assert admitted == 3
    assert spent == pytest.approx(1.05)
    assert limit < spent <= limit + error + 1e-9


# ---------------------------------------------------------------------------- (b)


async def test_mixed_successes_failures_and_cancellations_balance(env: Env) -> None:
    n = 1000
    users = ["alice", "bob", "carol", "dave", "erin"]
    mgr = env.manager(daily_usd=25.0, per_user_daily_usd=7.0)
    rng = random.Random(20261121)
    plan = [(rng.choice(users), round(rng.uniform(0.01, 0.09), 6),
             rng.choices(["success", "failure", "cancel"], weights=[60, 25, 15])[0], rng.uniform(0.1, 1.0))
            for _ in range(n)]

    gate = asyncio.Event()
    reserved_phase_done = asyncio.Event()
    phase_count = 0
    records: list[UsageRecord] = []
    outcomes: dict[str, int] = defaultdict(int)

    class ProviderFailure(Exception):
        pass

    def arrived() -> None:
        nonlocal phase_count
        phase_count += 1
        if phase_count == n:
            reserved_phase_done.set()

    async def request(i: int) -> None:
        user, estimate, kind, fraction = plan[i]
        started = env.clock.wall()
        try:
            res = await mgr.reserve(request_id=f"req-{i}", user=user, api_key_id=None, amount=estimate,
                                    started=started)
        except BudgetExceededError:
            outcomes["rejected"] += 1
            arrived()
            return
        outcomes["admitted"] += 1
        arrived()
        try:
            await gate.wait()  # "in flight": the provider call
            if kind == "failure":
                raise ProviderFailure(f"req-{i}")
            actual = round(estimate * fraction, 6)
            await mgr.settle(res, actual)
            records.append(UsageRecord(f"req-{i}", ts=started, user=user, cost_usd=actual))
        finally:
            await mgr.release(res)  # no-op after settle; frees the hold after a failure or cancellation

    tasks = [asyncio.create_task(request(i)) for i in range(n)]
    await reserved_phase_done.wait()
    for i, t in enumerate(tasks):
        if plan[i][2] == "cancel":
            t.cancel()
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
    failed = sum(isinstance(r, ProviderFailure) for r in results)
    assert all(r is None or isinstance(r, ProviderFailure | asyncio.CancelledError) for r in results)
    assert outcomes["admitted"] > 100 and outcomes["rejected"] > 100  # both paths exercised
    # every admitted request ended as exactly one of: settled, failed, cancelled in flight (a rejected
    # request had already returned when the cancellations were sent, so cancel() did nothing to it)
    assert len(records) + failed + cancelled == outcomes["admitted"]
    assert cancelled > 0 and failed > 0 and records

    spent, reserved = await env.state.usage(DAY)
    assert reserved == pytest.approx(0.0, abs=1e-9)
    assert spent == pytest.approx(sum(r.cost_usd for r in records), abs=1e-7)
    assert spent <= 25.0 + 1e-9
    for user in users:
        u_spent, u_reserved = await env.state.usage(f"budget:user:{user}:day:2026-11-21")
        assert u_reserved == pytest.approx(0.0, abs=1e-9)
        assert u_spent == pytest.approx(sum(r.cost_usd for r in records if r.user == user), abs=1e-7)
        assert u_spent <= 7.0 + 1e-9
    rows = await mgr.status()
    assert {r["scope"] for r in rows} == {"global:daily", *(f"user:{u}:daily" for u in users)}
    assert all(r["reserved_usd"] == pytest.approx(0.0, abs=1e-9) for r in rows)


# ---------------------------------------------------------------------------- (c)


async def test_requests_are_charged_to_the_local_day_they_started(env: Env) -> None:
    late = datetime(2026, 11, 21, 23, 59, 59, tzinfo=NY).timestamp()
    env.clock.advance(late - env.clock.wall())
    mgr = env.manager(daily_usd=1.0, monthly_usd=30.0)
    started = env.clock.wall()
    res = await mgr.reserve(request_id="late", user=None, api_key_id=None, amount=0.9, started=started)
    assert res is not None and res.keys == ("budget:global:day:2026-11-21", "budget:global:month:2026-11")
    env.clock.advance(5)  # 00:00:04 on the 22nd, local time
    assert await mgr.settle(res, 0.8)
    assert (await env.state.usage("budget:global:day:2026-11-21"))[0] == pytest.approx(0.8)
    assert await env.state.usage("budget:global:day:2026-11-22") == (0.0, 0.0)
    # the new day starts empty: a request started now gets the whole daily budget
    fresh = await mgr.reserve(request_id="new", user=None, api_key_id=None, amount=1.0, started=env.clock.wall())
    assert fresh is not None and fresh.keys[0] == "budget:global:day:2026-11-22"
    await mgr.release(fresh)
    rows = {r["scope"]: r for r in await mgr.status()}
    assert rows["global:daily"]["period"] == "2026-11-22" and rows["global:daily"]["spent_usd"] == 0.0
    assert rows["global:monthly"]["spent_usd"] == pytest.approx(0.8)


async def test_retry_after_counts_to_local_midnight(env: Env) -> None:
    eleven = datetime(2026, 11, 21, 23, 0, 0, tzinfo=NY).timestamp()
    env.clock.advance(eleven - env.clock.wall())
    mgr = env.manager(daily_usd=1.0)
    res = await mgr.reserve(request_id="a", user=None, api_key_id=None, amount=1.0, started=env.clock.wall())
    await mgr.settle(res, 1.0)
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="b", user=None, api_key_id=None, amount=0.01, started=env.clock.wall())
    assert ei.value.retry_after == pytest.approx(3600.0)
    assert ei.value.resets_at == "2026-11-22T00:00:00-05:00"
    assert str(ei.value) == ("global daily budget of $1.00 exhausted ($1.00 spent, $0.01 needed); "
                             "resets at 2026-11-22T00:00:00-05:00")


# ---------------------------------------------------------------------------- (d)


async def test_user_limits_isolate_users_under_concurrency(env: Env) -> None:
    mgr = env.manager(daily_usd=100.0, per_user_daily_usd=1.0)

    async def one(user: str, i: int) -> str:
        try:
            await mgr.reserve(request_id=f"{user}-{i}", user=user, api_key_id=None, amount=0.1,
                              started=env.clock.wall())
            return user
        except BudgetRejectedError as e:
            assert e.scope == f"user:{user}:daily"
            return "rejected"

    got = await asyncio.gather(*(one(u, i) for i in range(60) for u in ("alice", "bob", "carol")))
    assert got.count("alice") == got.count("bob") == got.count("carol") == 10
    assert (await env.state.usage(DAY))[1] == pytest.approx(3.0)


async def test_api_key_limits_isolate_keys(env: Env) -> None:
    mgr = env.manager(daily_usd=100.0)
    small, large = KeyBudget(daily_usd=0.5, monthly_usd=10), KeyBudget(daily_usd=5.0)
    for _ in range(5):
        res = await mgr.reserve(request_id="k1", user="u", api_key_id="k1", amount=0.1,
                                started=env.clock.wall(), key_budget=small)
        await mgr.settle(res, 0.1)
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="k1", user="u", api_key_id="k1", amount=0.1, started=env.clock.wall(),
                          key_budget=small)
    assert ei.value.scope == "key:k1:daily"
    other = await mgr.reserve(request_id="k2", user="u", api_key_id="k2", amount=0.1, started=env.clock.wall(),
                              key_budget=large)
    assert other is not None and "budget:key:k2:day:2026-11-21" in other.keys
    assert (await env.state.usage("budget:key:k1:month:2026-11"))[0] == pytest.approx(0.5)
    # a rejected reservation changed nothing anywhere (atomic across keys)
    spent, reserved = await env.state.usage(DAY)
    assert spent == pytest.approx(0.5) and reserved == pytest.approx(0.1)


# ---------------------------------------------------------------------------- (e)


async def test_alert_fires_exactly_once_at_80_percent(env: Env) -> None:
    mgr = env.manager(daily_usd=10.0)
    replica = env.manager(daily_usd=10.0)  # a second replica on the same state
    reservations = []
    for i in range(19):
        owner = mgr if i % 2 else replica
        reservations.append((owner, await owner.reserve(request_id=f"r{i}", user=None, api_key_id=None,
                                                        amount=0.5, started=env.clock.wall())))
    # settle the first 15 (7.50 spent, 75%): no alert yet
    await asyncio.gather(*(m.settle(r, 0.5) for m, r in reservations[:15]))
    assert env.alerts == []
    # the rest race past 80% concurrently, across both replicas
    await asyncio.gather(*(m.settle(r, 0.5) for m, r in reservations[15:]))
    assert len(env.alerts) == 1
    alert = env.alerts[0]
    assert alert.scope == "global:daily" and alert.period == "2026-11-21" and alert.limit_usd == 10.0
    assert 8.0 - 1e-9 <= alert.spent_usd <= 9.5 + 1e-9
    assert alert.fraction == pytest.approx(alert.spent_usd / 10.0)
    # more spend in the same period: still one
    res = await mgr.reserve(request_id="last", user=None, api_key_id=None, amount=0.5, started=env.clock.wall())
    await mgr.settle(res, 0.5)
    assert len(env.alerts) == 1
