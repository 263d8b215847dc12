"""BudgetManager behaviour on the memory backend: scopes and keys, messages, retry-after, the
downgrade contract, idempotency, crash safety, status/check, seeding and alerts.

Concurrency and the same invariants on Redis live in test_budget_concurrency.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from modelplex.accounting.alerts import AlertSink, BudgetAlert
from modelplex.accounting.budgets import (
    BudgetDowngradeSignal,
    BudgetManager,
    BudgetRejectedError,
    KeyBudget,
    Reservation,
    period_for,
)
from modelplex.accounting.records import UsageRecord
from modelplex.config import BudgetConfig
from modelplex.errors import BudgetExceededError, ConfigError
from modelplex.resilience.clock import FakeClock
from modelplex.state import MemoryState, StateBackend
from modelplex.testing.state import SuspendingState


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


NOON = utc(2026, 11, 21, 12, 0, 0)


class NoState(StateBackend):
    """A backend that fails the test on any call: proves the fast paths touch no state."""

    name = "none"

    def _fail(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("state must not be touched")

    async def get(self, key: str) -> Any:
        self._fail()

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._fail()

    async def delete(self, key: str) -> None:
        self._fail()

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        return self._fail()

    async def rate_limit(self, key: str, limit: float, window_s: float, cost: float = 1.0, *,
                         force: bool = False) -> tuple[bool, float]:
        return self._fail()

    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        return self._fail()

    async def settle(self, reservation_id: str, actual: float) -> bool:
        return self._fail()

    async def release(self, reservation_id: str) -> bool:
        return self._fail()

    async def usage(self, key: str) -> tuple[float, float]:
        return self._fail()

    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        return self._fail()

    async def health(self) -> dict[str, Any]:
        return {"backend": "none", "ok": True, "degraded": False}

    async def clear(self) -> None:
        pass


def make(clock: FakeClock | None = None, state: StateBackend | None = None, **cfg: Any
         ) -> tuple[BudgetManager, list[BudgetAlert], FakeClock]:
    clock = clock or FakeClock(wall_start=NOON)
    alerts: list[BudgetAlert] = []
    sink = AlertSink()
    sink.subscribe(alerts.append)
    mgr = BudgetManager(BudgetConfig(**cfg), state or MemoryState(clock), clock, alerts=sink)
    return mgr, alerts, clock


async def spend(mgr: BudgetManager, amount: float, *, user: str | None = None, started: float | None = None,
                api_key_id: str | None = None, key_budget: KeyBudget | None = None) -> None:
    res = await mgr.reserve(request_id="seed", user=user, api_key_id=api_key_id, amount=amount,
                            started=mgr.clock.wall() if started is None else started, key_budget=key_budget)
    assert res is not None
    assert await mgr.settle(res, amount)


# ---------------------------------------------------------------------------- fast paths


async def test_no_limits_means_no_state_calls() -> None:
    mgr, _, clock = make(state=NoState())
    assert not mgr.enabled
    assert await mgr.reserve(request_id="r", user="alice", api_key_id="k", amount=1.0, started=clock.wall()) is None
    assert await mgr.settle(None, 1.0) is False
    assert await mgr.release(None) is False
    state = await mgr.check("alice", "k")
    assert not state.exhausted and state.remaining_usd == float("inf") and state.scopes == ()
    # an API key without limits adds nothing either
    assert await mgr.reserve(request_id="r", user=None, api_key_id="k", amount=1.0, started=clock.wall(),
                             key_budget=KeyBudget()) is None


async def test_per_request_max_rejects_without_state() -> None:
    mgr, _, clock = make(state=NoState(), per_request_max_usd=0.5)
    assert mgr.enabled
    assert await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.5, started=clock.wall()) is None
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.75, started=clock.wall())
    err = ei.value
    assert not isinstance(err, BudgetDowngradeSignal)
    assert isinstance(err, BudgetExceededError)
    assert err.scope == "request" and err.limit_usd == 0.5 and err.needed_usd == 0.75
    assert err.retry_after is None
    assert str(err) == "request estimate of $0.75 exceeds the per-request maximum of $0.50"


async def test_per_request_max_signals_downgrade_once() -> None:
    mgr, _, clock = make(state=NoState(), per_request_max_usd=0.5, on_exceed="downgrade")
    with pytest.raises(BudgetDowngradeSignal) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.75, started=clock.wall())
    assert ei.value.scope == "request"
    with pytest.raises(BudgetRejectedError) as ei2:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.75, started=clock.wall(),
                          downgraded=True)
    assert not isinstance(ei2.value, BudgetDowngradeSignal)


# ---------------------------------------------------------------------------- scopes, keys, messages


async def test_reservation_covers_every_applicable_key() -> None:
    mgr, _, clock = make(daily_usd=5, monthly_usd=100, per_user_daily_usd=1, per_user_monthly_usd=20)
    res = await mgr.reserve(request_id="req-1", user="alice", api_key_id="team:a", amount=0.25,
                            started=clock.wall(), key_budget=KeyBudget(daily_usd=2.0))
    assert res is not None
    assert res.keys == (
        "budget:global:day:2026-11-21",
        "budget:global:month:2026-11",
        "budget:user:alice:day:2026-11-21",
        "budget:user:alice:month:2026-11",
        "budget:key:team%3Aa:day:2026-11-21",
    )
    assert [s.name for s in res.scopes] == ["global:daily", "global:monthly", "user:alice:daily",
                                            "user:alice:monthly", "key:team:a:daily"]
    assert res.id.startswith("req-1:") and res.request_id == "req-1"
    for key in res.keys:
        assert await mgr.state.usage(key) == (0.0, 0.25)
    # a user whose id looks like another key's suffix cannot collide
    res2 = await mgr.reserve(request_id="req-2", user="alice:day:2026-11-21", api_key_id=None, amount=0.1,
                             started=clock.wall())
    assert res2 is not None and "budget:user:alice%3Aday%3A2026-11-21:day:2026-11-21" in res2.keys
    assert await mgr.state.usage("budget:user:alice:day:2026-11-21") == (0.0, 0.25)


async def test_anonymous_requests_only_hit_global_scopes() -> None:
    mgr, _, clock = make(daily_usd=5, per_user_daily_usd=1)
    res = await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=3.0, started=clock.wall())
    assert res is not None and res.keys == ("budget:global:day:2026-11-21",)


async def test_exhausted_message_and_retry_after() -> None:
    mgr, _, clock = make(daily_usd=5)
    await spend(mgr, 4.98)
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.03, started=clock.wall())
    err = ei.value
    assert str(err) == ("global daily budget of $5.00 has $0.02 left ($4.98 spent), less than this request's "
                        "worst case of $0.03; resets at 2026-11-22T00:00:00+00:00")
    assert err.scope == "global:daily" and err.limit_usd == 5 and err.spent_usd == pytest.approx(4.98)
    assert err.retry_after == pytest.approx(12 * 3600)
    assert err.period == "2026-11-21" and err.resets_at == "2026-11-22T00:00:00+00:00"
    # what is left still fits exactly
    res = await mgr.reserve(request_id="r2", user=None, api_key_id=None, amount=0.02, started=clock.wall())
    assert res is not None


async def test_a_request_larger_than_the_budget_is_refused_without_a_retry_after() -> None:
    mgr, _, clock = make(daily_usd=5)
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=7.5, started=clock.wall())
    assert ei.value.retry_after is None  # no period will ever have room for it
    assert str(ei.value) == ("global daily budget of $5.00 is smaller than this request's worst case of $7.50; "
                             "lower max_tokens, or raise the limit")


async def test_user_and_key_messages_name_the_subject() -> None:
    mgr, _, clock = make(per_user_monthly_usd=1)
    await spend(mgr, 1.0, user="alice")
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="r", user="alice", api_key_id=None, amount=0.0001, started=clock.wall())
    assert ei.value.scope == "user:alice:monthly"
    assert str(ei.value).startswith("monthly budget of $1.00 for user 'alice' exhausted ($1.00 spent, "
                                    "$0.0001 needed); resets at 2026-12-01T00:00:00+00:00")
    kb = KeyBudget(daily_usd=0.1)
    await spend(mgr, 0.1, api_key_id="k1", key_budget=kb)
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id="k1", amount=0.05, started=clock.wall(),
                          key_budget=kb)
    assert ei.value.scope == "key:k1:daily"
    assert "for API key 'k1'" in str(ei.value)


async def test_in_flight_holds_give_a_short_retry_after() -> None:
    mgr, _, clock = make(daily_usd=1)
    held = await mgr.reserve(request_id="a", user=None, api_key_id=None, amount=0.9, started=clock.wall())
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="b", user=None, api_key_id=None, amount=0.2, started=clock.wall())
    err = ei.value
    assert err.retry_after == pytest.approx(mgr.hold_retry_after)
    assert err.reserved_usd == pytest.approx(0.9) and err.spent_usd == 0
    assert "in-flight" in str(err)
    assert await mgr.release(held)
    assert await mgr.reserve(request_id="b", user=None, api_key_id=None, amount=0.2, started=clock.wall())


async def test_downgrade_contract() -> None:
    mgr, _, clock = make(daily_usd=1, on_exceed="downgrade")
    assert mgr.on_exceed == "downgrade"
    await spend(mgr, 0.95)
    with pytest.raises(BudgetDowngradeSignal) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.10, started=clock.wall())
    assert isinstance(ei.value, BudgetExceededError) and ei.value.scope == "global:daily"
    # the cheaper re-plan fits: admitted, marked as downgraded
    res = await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.04, started=clock.wall(),
                            downgraded=True)
    assert res is not None and res.downgraded
    # after the downgrade, a plan that still does not fit is rejected, not signalled again
    with pytest.raises(BudgetRejectedError) as ei2:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.04, started=clock.wall(),
                          downgraded=True)
    assert type(ei2.value) is BudgetRejectedError


# ---------------------------------------------------------------------------- lifecycle


async def test_settle_and_release_are_idempotent() -> None:
    mgr, _, clock = make(daily_usd=10)
    key = "budget:global:day:2026-11-21"
    a = await mgr.reserve(request_id="a", user=None, api_key_id=None, amount=1.0, started=clock.wall())
    b = await mgr.reserve(request_id="b", user=None, api_key_id=None, amount=2.0, started=clock.wall())
    assert a is not None and b is not None
    assert await mgr.state.usage(key) == (0.0, 3.0)
    assert await mgr.settle(a, 0.4) is True
    assert await mgr.settle(a, 0.4) is False
    assert await mgr.release(a) is False
    assert a.status == "settled" and a.actual_usd == 0.4
    assert await mgr.release(b) is True
    assert await mgr.release(b) is False
    assert await mgr.settle(b, 1.0) is False
    assert await mgr.state.usage(key) == (pytest.approx(0.4), 0.0)


async def test_a_crashed_holder_frees_its_hold_after_the_ttl() -> None:
    clock = FakeClock(wall_start=NOON)
    mgr, _, _ = make(clock, daily_usd=1)
    mgr.reservation_ttl = 30.0
    lost = await mgr.reserve(request_id="crash", user=None, api_key_id=None, amount=1.0, started=clock.wall())
    assert lost is not None
    with pytest.raises(BudgetRejectedError):
        await mgr.reserve(request_id="x", user=None, api_key_id=None, amount=0.5, started=clock.wall())
    clock.advance(31)
    assert await mgr.state.usage("budget:global:day:2026-11-21") == (0.0, 0.0)
    assert await mgr.reserve(request_id="x", user=None, api_key_id=None, amount=0.5, started=clock.wall())
    # a late settle from the "crashed" holder still books what it spent
    assert await mgr.settle(lost, 0.25)
    assert (await mgr.state.usage("budget:global:day:2026-11-21"))[0] == pytest.approx(0.25)


async def test_invalid_inputs() -> None:
    with pytest.raises(ConfigError, match=r"budgets\.timezone"):
        BudgetManager(BudgetConfig(timezone="Mars/Olympus"), MemoryState())
    mgr, _, clock = make(daily_usd=1)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=bad, started=clock.wall())
    res = await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.1, started=clock.wall())
    with pytest.raises(ValueError):
        await mgr.settle(res, -0.1)
    with pytest.raises(ValueError):
        KeyBudget(daily_usd=-1)


# ---------------------------------------------------------------------------- periods


def test_period_for_local_days_and_months() -> None:
    ny = ZoneInfo("America/New_York")
    ts = datetime(2026, 11, 21, 23, 59, 59, tzinfo=ny).timestamp()
    day = period_for("daily", ts, ny)
    assert day.label == "2026-11-21" and day.resets_at == "2026-11-22T00:00:00-05:00"
    assert day.end - ts == pytest.approx(1.0)
    month = period_for("monthly", ts, ny)
    assert month.label == "2026-11" and month.resets_at == "2026-12-01T00:00:00-05:00"
    # DST starts on 2026-03-08 in New York: that day has 23 hours
    spring = period_for("daily", datetime(2026, 3, 8, 12, tzinfo=ny).timestamp(), ny)
    assert spring.end - spring.start == 23 * 3600
    assert period_for("monthly", datetime(2026, 12, 31, 23, tzinfo=ny).timestamp(), ny).resets_at == \
        "2027-01-01T00:00:00-05:00"
    # Santiago skips midnight on 2026-09-06: the day starts at 01:00 local and still lasts 23 hours
    cl = ZoneInfo("America/Santiago")
    gap = period_for("daily", datetime(2026, 9, 6, 12, tzinfo=cl).timestamp(), cl)
    assert gap.label == "2026-09-06" and gap.end - gap.start == 23 * 3600


async def test_month_boundary_charges_the_starting_month() -> None:
    start = utc(2026, 11, 30, 23, 59, 58)
    clock = FakeClock(wall_start=start)
    mgr, _, _ = make(clock, monthly_usd=10)
    res = await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=1.0, started=clock.wall())
    clock.advance(10)  # now in December
    assert await mgr.settle(res, 0.75)
    assert (await mgr.state.usage("budget:global:month:2026-11"))[0] == pytest.approx(0.75)
    assert await mgr.state.usage("budget:global:month:2026-12") == (0.0, 0.0)
    [row] = await mgr.status()
    assert row["period"] == "2026-12" and row["spent_usd"] == 0.0


# ---------------------------------------------------------------------------- read side


async def test_status_reports_every_scope() -> None:
    mgr, _, clock = make(daily_usd=10, monthly_usd=100, per_user_daily_usd=2)
    kb = KeyBudget(monthly_usd=50)
    await spend(mgr, 1.5, user="alice", api_key_id="k1", key_budget=kb)
    held = await mgr.reserve(request_id="h", user="bob", api_key_id=None, amount=0.5, started=clock.wall())
    rows = {r["scope"]: r for r in await mgr.status()}
    assert set(rows) == {"global:daily", "global:monthly", "user:alice:daily", "user:bob:daily",
                         "key:k1:monthly"}
    g = rows["global:daily"]
    assert g == {"scope": "global:daily", "kind": "global", "subject": None, "window": "daily",
                 "period": "2026-11-21", "limit_usd": 10.0, "spent_usd": pytest.approx(1.5),
                 "reserved_usd": pytest.approx(0.5), "remaining_usd": pytest.approx(8.0),
                 "fraction": pytest.approx(0.15), "resets_at": "2026-11-22T00:00:00+00:00",
                 "reset_in_s": pytest.approx(12 * 3600)}
    assert rows["user:alice:daily"]["remaining_usd"] == pytest.approx(0.5)
    assert rows["user:bob:daily"]["reserved_usd"] == pytest.approx(0.5)
    assert rows["key:k1:monthly"]["spent_usd"] == pytest.approx(1.5)
    # explicit subjects replace the remembered ones
    only = await mgr.status(users=["carol"], api_keys={})
    assert {r["scope"] for r in only} == {"global:daily", "global:monthly", "user:carol:daily"}
    assert await mgr.release(held)


async def test_check_reports_the_tightest_scope() -> None:
    mgr, _, _ = make(daily_usd=10, per_user_daily_usd=1)
    await spend(mgr, 0.9, user="alice")
    state = await mgr.check("alice")
    assert not state.exhausted
    assert state.tightest is not None and state.tightest.scope.name == "user:alice:daily"
    assert state.remaining_usd == pytest.approx(0.1)
    assert state.fits(0.1) and not state.fits(0.2)
    assert state.error(0.05) is None
    err = state.error(0.2)
    assert isinstance(err, BudgetRejectedError) and err.scope == "user:alice:daily"
    await spend(mgr, 0.1, user="alice")
    state = await mgr.check("alice")
    assert state.exhausted and state.fraction == pytest.approx(1.0)
    assert state.error() is not None
    assert state.to_dict()["tightest"] == "user:alice:daily"
    assert not (await mgr.check("bob")).exhausted


async def test_seed_rebuilds_current_periods_only() -> None:
    mgr, _, _ = make(daily_usd=100, monthly_usd=1000, per_user_daily_usd=10)
    records = [
        UsageRecord("a", ts=utc(2026, 11, 21, 1), user="alice", cost_usd=1.0),   # today and this month
        UsageRecord("b", ts=utc(2026, 11, 20, 23), user="alice", cost_usd=2.0),  # this month only
        UsageRecord("c", ts=utc(2026, 10, 31, 12), user="alice", cost_usd=4.0),  # nothing open
        UsageRecord("d", ts=utc(2026, 11, 21, 2), user=None, cost_usd=0.0),      # free: skipped
        UsageRecord("e", ts=utc(2026, 11, 21, 3), api_key_id="k", cost_usd=0.5),
    ]
    n = await mgr.seed(records, key_budgets={"k": KeyBudget(daily_usd=1)})
    assert n == 3
    assert mgr.open_since() == utc(2026, 11, 1)
    usage = mgr.state.usage
    assert (await usage("budget:global:day:2026-11-21"))[0] == pytest.approx(1.5)
    assert (await usage("budget:global:month:2026-11"))[0] == pytest.approx(3.5)
    assert (await usage("budget:user:alice:day:2026-11-21"))[0] == pytest.approx(1.0)
    assert (await usage("budget:key:k:day:2026-11-21"))[0] == pytest.approx(0.5)
    assert (await usage("budget:global:month:2026-10"))[0] == 0.0


# ---------------------------------------------------------------------------- alerts


async def test_alert_fires_once_per_scope_per_period(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(wall_start=NOON)
    mgr, alerts, _ = make(clock, daily_usd=10, per_user_daily_usd=5)
    caplog.set_level(logging.WARNING, logger="modelplex.budget")
    await spend(mgr, 3.9, user="alice")  # global 39%, alice 78%
    assert alerts == []
    await spend(mgr, 0.1, user="alice")  # alice reaches 80% exactly
    assert [a.scope for a in alerts] == ["user:alice:daily"]
    a = alerts[0]
    assert a.period == "2026-11-21" and a.limit_usd == 5 and a.spent_usd == pytest.approx(4.0)
    assert a.fraction == pytest.approx(0.8) and a.threshold == 0.8 and a.ts == clock.wall()
    assert a.resets_at == "2026-11-22T00:00:00+00:00"
    await spend(mgr, 0.5, user="alice")
    await spend(mgr, 4.0, user="bob")  # global reaches 85%, bob 80%
    assert sorted(a.scope for a in alerts) == ["global:daily", "user:alice:daily", "user:bob:daily"]
    await spend(mgr, 0.5, user="carol")
    assert len(alerts) == 3
    logged = [r for r in caplog.records if r.name == "modelplex.budget" and r.levelno == logging.WARNING]
    assert len(logged) == 3 and "scope=user:alice:daily" in logged[0].getMessage()
    # the next day is a new period: one new alert for it
    clock.advance(12 * 3600 + 1)
    await spend(mgr, 8.0)
    assert [a.scope for a in alerts[3:]] == ["global:daily"] and alerts[3].period == "2026-11-22"


async def test_alerts_are_deduplicated_across_replicas() -> None:
    clock = FakeClock(wall_start=NOON)
    state = MemoryState(clock)
    m1, alerts1, _ = make(clock, state, daily_usd=1)
    m2, alerts2, _ = make(clock, state, daily_usd=1)
    await spend(m1, 0.5)
    await spend(m2, 0.35)
    await spend(m1, 0.1)
    assert len(alerts1) + len(alerts2) == 1
    assert alerts2 and alerts2[0].spent_usd == pytest.approx(0.85)


async def test_a_failing_subscriber_never_breaks_settle(caplog: pytest.LogCaptureFixture) -> None:
    mgr, alerts, _ = make(daily_usd=1)

    def boom(alert: BudgetAlert) -> None:
        raise RuntimeError("subscriber bug")

    mgr.alerts.subscribe(boom)
    caplog.set_level(logging.ERROR, logger="modelplex.budget")
    await spend(mgr, 0.9)
    assert len(alerts) == 1
    assert any("failed" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_registered_key_budgets_apply_without_being_passed() -> None:
    mgr, _, clock = make()
    assert not mgr.enabled
    mgr.set_key_budget("k1", KeyBudget(daily_usd=0.3))
    assert mgr.enabled
    res = await mgr.reserve(request_id="a", user=None, api_key_id="k1", amount=0.3, started=clock.wall())
    assert res is not None and res.keys == ("budget:key:k1:day:2026-11-21",)
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="b", user=None, api_key_id="k1", amount=0.1, started=clock.wall())
    assert ei.value.scope == "key:k1:daily"
    # an explicit budget wins over the registered one; other keys are unaffected
    assert await mgr.reserve(request_id="c", user=None, api_key_id="k1", amount=0.1, started=clock.wall(),
                             key_budget=KeyBudget(daily_usd=5)) is not None
    assert await mgr.reserve(request_id="d", user=None, api_key_id="k2", amount=9.0, started=clock.wall()) is None
    assert [r["scope"] for r in await mgr.status()] == ["key:k1:daily"]
    assert (await mgr.check(None, "k1")).tightest is not None
    mgr.set_key_budget("k1", None)
    assert not mgr.enabled
    assert await mgr.reserve(request_id="e", user=None, api_key_id="k1", amount=9.0, started=clock.wall()) is None


async def test_a_downgrade_signal_converts_to_a_plain_rejection() -> None:
    mgr, _, clock = make(daily_usd=1, on_exceed="downgrade")
    await spend(mgr, 1.0)
    with pytest.raises(BudgetDowngradeSignal) as ei:
        await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.1, started=clock.wall())
    plain = ei.value.as_rejection()
    assert type(plain) is BudgetRejectedError
    assert (str(plain), plain.scope, plain.limit_usd, plain.spent_usd, plain.retry_after, plain.needed_usd,
            plain.resets_at) == (str(ei.value), "global:daily", 1, 1.0, ei.value.retry_after, 0.1,
                                 "2026-11-22T00:00:00+00:00")


# ---------------------------------------------------------------------------- memoized scopes and ids


def expected_keys(mgr: BudgetManager, user: str | None, api_key_id: str | None, kb: KeyBudget | None,
                  started: float) -> tuple[str, ...]:
    """The keys computed from scratch (``scopes`` is not memoized)."""
    return tuple(s.key for s in mgr.scopes(user, api_key_id, kb, started))


async def test_reservation_ids_are_unique_within_and_across_managers() -> None:
    clock = FakeClock(wall_start=NOON)
    state = MemoryState(clock)
    m1, _, _ = make(clock, state, daily_usd=1_000)
    m2, _, _ = make(clock, state, daily_usd=1_000)
    held: list[Any] = []
    for i in range(500):  # one request id reused: only the suffix tells the attempts apart
        for mgr in (m1, m2):
            res = await mgr.reserve(request_id="same", user=None, api_key_id=None, amount=0.001,
                                    started=clock.wall())
            assert res is not None and res.id.startswith("same:") and res.request_id == "same"
            held.append(res)
        if i % 7 == 0:  # finished ids stay refused for a while: new ones must not collide with them
            assert await m1.settle(held[-2], 0.001) and await m2.release(held[-1])
    assert len({r.id for r in held}) == len(held) == 1000
    suffix1 = {r.id.split(":", 1)[1][:8] for r in held[0::2]}
    suffix2 = {r.id.split(":", 1)[1][:8] for r in held[1::2]}
    assert len(suffix1) == len(suffix2) == 1 and suffix1 != suffix2  # a per-manager prefix
    # a request id containing ':' cannot collide with another request's id and suffix either
    a = await m1.reserve(request_id="x:1", user=None, api_key_id=None, amount=0.001, started=clock.wall())
    b = await m1.reserve(request_id="x", user=None, api_key_id=None, amount=0.001, started=clock.wall())
    assert a is not None and b is not None and a.id != b.id


async def test_keys_follow_the_day_and_the_month_rollover() -> None:
    start = utc(2026, 11, 30, 23, 59, 0)
    clock = FakeClock(wall_start=start)
    mgr, _, _ = make(clock, daily_usd=100, monthly_usd=1_000, per_user_daily_usd=10, per_user_monthly_usd=50)
    kb = KeyBudget(daily_usd=5, monthly_usd=20)

    async def keys_at(started: float, user: str | None = "alice", key: str | None = "k") -> tuple[str, ...]:
        res = await mgr.reserve(request_id="r", user=user, api_key_id=key, amount=0.01, started=started,
                                key_budget=kb)
        assert res is not None
        assert res.keys == tuple(s.key for s in res.scopes) == expected_keys(mgr, user, key, kb, started)
        await mgr.release(res)
        return res.keys

    november = await keys_at(clock.wall())
    assert november == ("budget:global:day:2026-11-30", "budget:global:month:2026-11",
                        "budget:user:alice:day:2026-11-30", "budget:user:alice:month:2026-11",
                        "budget:key:k:day:2026-11-30", "budget:key:k:month:2026-11")
    assert await keys_at(clock.wall()) == november  # a repeat in the same periods
    late = clock.wall()
    clock.advance(120)  # 2026-12-01 00:01 UTC: a new day and a new month
    december = await keys_at(clock.wall())
    assert december == ("budget:global:day:2026-12-01", "budget:global:month:2026-12",
                        "budget:user:alice:day:2026-12-01", "budget:user:alice:month:2026-12",
                        "budget:key:k:day:2026-12-01", "budget:key:k:month:2026-12")
    # a request that started before midnight is still charged to November, in any order
    for _ in range(3):
        assert await keys_at(late) == november
        assert await keys_at(clock.wall()) == december
    clock.advance(86_400)  # the next day, same month
    assert await keys_at(clock.wall(), user="bob", key=None) == (
        "budget:global:day:2026-12-02", "budget:global:month:2026-12",
        "budget:user:bob:day:2026-12-02", "budget:user:bob:month:2026-12")


async def test_keys_follow_the_local_day_of_the_budget_time_zone() -> None:
    # 05:30 UTC is still the previous day in New York; 04:59 UTC vs 05:01 UTC straddle its midnight in winter
    clock = FakeClock(wall_start=utc(2026, 12, 15, 4, 59, 0))
    mgr, _, _ = make(clock, daily_usd=100, timezone="America/New_York")
    before = await mgr.reserve(request_id="a", user=None, api_key_id=None, amount=0.1, started=clock.wall())
    clock.advance(120)
    after = await mgr.reserve(request_id="b", user=None, api_key_id=None, amount=0.1, started=clock.wall())
    assert before is not None and after is not None
    assert before.keys == ("budget:global:day:2026-12-14",) and after.keys == ("budget:global:day:2026-12-15",)


async def test_per_user_keys_are_each_users_own() -> None:
    mgr, _, clock = make(per_user_daily_usd=1.0)
    for _ in range(2):
        for user in ("alice", "bob", "alice", "carol:x", None):
            res = await mgr.reserve(request_id="r", user=user, api_key_id=None, amount=0.01, started=clock.wall())
            if user is None:
                assert res is None  # only per-user limits: an anonymous request has no scope
                continue
            assert res is not None
            assert res.keys == expected_keys(mgr, user, None, None, clock.wall())
            assert [s.subject for s in res.scopes] == [user]
            await mgr.settle(res, 0.01)
    assert (await mgr.state.usage("budget:user:alice:day:2026-11-21"))[0] == pytest.approx(0.04)
    assert (await mgr.state.usage("budget:user:bob:day:2026-11-21"))[0] == pytest.approx(0.02)
    assert (await mgr.state.usage("budget:user:carol%3Ax:day:2026-11-21"))[0] == pytest.approx(0.02)
    # one user's exhausted budget does not leak into another's memoized scopes
    await spend(mgr, 0.96, user="alice")
    with pytest.raises(BudgetRejectedError) as ei:
        await mgr.reserve(request_id="r", user="alice", api_key_id=None, amount=0.01, started=clock.wall())
    assert ei.value.scope == "user:alice:daily"
    assert await mgr.reserve(request_id="r", user="bob", api_key_id=None, amount=0.5, started=clock.wall())


async def test_key_budgets_registered_or_changed_later_apply() -> None:
    mgr, _, clock = make(daily_usd=100)
    res = await mgr.reserve(request_id="a", user=None, api_key_id="k", amount=0.5, started=clock.wall())
    assert res is not None and res.keys == ("budget:global:day:2026-11-21",)
    mgr.set_key_budget("k", KeyBudget(daily_usd=1.0))
    res = await mgr.reserve(request_id="b", user=None, api_key_id="k", amount=0.5, started=clock.wall())
    assert res is not None and res.keys == ("budget:global:day:2026-11-21", "budget:key:k:day:2026-11-21")
    assert [s.limit_usd for s in res.scopes] == [100, 1.0]
    await mgr.settle(res, 0.5)
    with pytest.raises(BudgetRejectedError) as ei:  # 0.5 spent of 1.0
        await mgr.reserve(request_id="c", user=None, api_key_id="k", amount=0.75, started=clock.wall())
    assert ei.value.scope == "key:k:daily" and ei.value.limit_usd == 1.0
    mgr.set_key_budget("k", KeyBudget(daily_usd=2.0))  # raised: the new limit applies at once
    res = await mgr.reserve(request_id="d", user=None, api_key_id="k", amount=0.75, started=clock.wall())
    assert res is not None and [s.limit_usd for s in res.scopes] == [100, 2.0]
    await mgr.release(res)
    mgr.set_key_budget("k", KeyBudget(daily_usd=2.0, monthly_usd=0.6))  # a monthly limit added
    with pytest.raises(BudgetRejectedError) as ei:  # the daily scope has room (0.5 + 0.7 of 2.0); the month not
        await mgr.reserve(request_id="e", user=None, api_key_id="k", amount=0.7, started=clock.wall())
    assert ei.value.scope == "key:k:monthly"
    mgr.set_key_budget("k", None)  # removed: only the global scope again
    res = await mgr.reserve(request_id="f", user=None, api_key_id="k", amount=5.0, started=clock.wall())
    assert res is not None and res.keys == ("budget:global:day:2026-11-21",)
    # an explicit budget equal in value to a registered one gives the same scopes; another value its own
    mgr.set_key_budget("k", KeyBudget(daily_usd=3.0))
    explicit = await mgr.reserve(request_id="g", user=None, api_key_id="k", amount=0.1, started=clock.wall(),
                                 key_budget=KeyBudget(daily_usd=3))
    registered = await mgr.reserve(request_id="h", user=None, api_key_id="k", amount=0.1, started=clock.wall())
    other = await mgr.reserve(request_id="i", user=None, api_key_id="k", amount=0.1, started=clock.wall(),
                              key_budget=KeyBudget(monthly_usd=3.0))
    assert explicit is not None and registered is not None and other is not None
    assert explicit.keys == registered.keys and explicit.scopes == registered.scopes
    assert other.keys == ("budget:global:day:2026-11-21", "budget:key:k:month:2026-11")


@pytest.mark.parametrize("shared", [False, True])
async def test_alerts_fire_once_at_the_threshold(shared: bool) -> None:
    clock = FakeClock(wall_start=NOON)
    memory = MemoryState(clock)
    mgr, alerts, _ = make(clock, SuspendingState(memory, shared=True) if shared else memory, daily_usd=10, monthly_usd=100,
                          per_user_daily_usd=2)
    for _ in range(79):  # 7.90 of 10: no alert yet
        await spend(mgr, 0.1, user=None)
    assert alerts == []
    for _ in range(16):
        await spend(mgr, 0.1, user="alice")  # alice reaches 1.60 (80%) on her 16th; global passes 8.00 at once
    assert [a.scope for a in alerts] == ["global:daily", "user:alice:daily"]
    assert alerts[0].spent_usd == pytest.approx(8.0) and alerts[1].spent_usd == pytest.approx(1.6)
    for _ in range(5):
        await spend(mgr, 0.01, user="alice")
        await spend(mgr, 0.01, user="bob")
    assert len(alerts) == 2  # past the threshold: no repeat
    clock.advance(86_400)  # a new day: each daily scope may alert once more; the month stays below 80%
    await spend(mgr, 8.0)
    await spend(mgr, 1.0)
    assert [(a.scope, a.period) for a in alerts[2:]] == [("global:daily", "2026-11-22")]
    # concurrent settles that cross the threshold together still alert once
    clock.advance(86_400)
    reservations = [await mgr.reserve(request_id=f"c{i}", user="dave", api_key_id=None, amount=0.5,
                                      started=clock.wall()) for i in range(4)]
    await asyncio.gather(*(mgr.settle(res, 0.5) for res in reservations))
    assert [(a.scope, a.period) for a in alerts[3:]] == [("user:dave:daily", "2026-11-23")]


async def test_a_reservation_made_by_hand_derives_its_keys() -> None:
    mgr, _, clock = make(daily_usd=5, per_user_monthly_usd=3)
    scopes = tuple(mgr.scopes("alice", None, None, clock.wall()))
    res = Reservation("r:1", "r", 0.1, clock.wall(), scopes)
    assert res.keys == ("budget:global:day:2026-11-21", "budget:user:alice:month:2026-11")
    assert Reservation("r:2", "r", 0.1, clock.wall(), ()).keys == ()


# ---------------------------------------------------------------------------- hot-path shortcuts


class CountingMemory(MemoryState):
    """In-process state that counts ``usage`` lookups."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.usage_calls = 0

    async def usage(self, key: str) -> tuple[float, float]:
        self.usage_calls += 1
        return await super().usage(key)


async def test_in_process_settles_alert_without_a_usage_lookup() -> None:
    clock = FakeClock(wall_start=NOON)
    state = CountingMemory(clock)
    mgr, alerts, _ = make(clock, state, daily_usd=5, per_user_daily_usd=2)
    for _ in range(15):
        await spend(mgr, 0.1, user="alice")
    assert alerts == []
    await spend(mgr, 0.1, user="alice")  # 1.60 of 2.00: the settle that crosses alerts at once
    assert [(a.scope, a.spent_usd) for a in alerts] == [("user:alice:daily", pytest.approx(1.6))]
    for _ in range(3):
        await spend(mgr, 0.1, user="alice")  # past the threshold: no repeat
    await spend(mgr, 1.5, user="bob")  # 75% of bob's, global at 3.40 of 5.00
    assert len(alerts) == 1
    await spend(mgr, 0.7, user="carol")  # global crosses 4.00
    assert [a.scope for a in alerts] == ["user:alice:daily", "global:daily"]
    assert alerts[1].spent_usd == pytest.approx(4.1)
    assert state.usage_calls == 0  # each settle reported the spend it left


async def test_a_key_the_state_does_not_report_is_looked_up() -> None:
    mgr, alerts, clock = make(daily_usd=10, per_user_daily_usd=1)
    res = await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.5, started=clock.wall())
    assert res is not None
    [alice] = [s for s in mgr.scopes("alice", None, None, clock.wall()) if s.kind == "user"]
    await mgr.state.add_spent(alice.key, 0.9)  # behind the manager's back: no alert yet
    assert alerts == []
    # a reservation made by hand, naming a scope the state did not hold: its spend is read from state
    by_hand = Reservation(res.id, "r", 0.5, res.started, (*res.scopes, alice))
    assert await mgr.settle(by_hand, 0.5)
    assert [(a.scope, a.spent_usd) for a in alerts] == [("user:alice:daily", pytest.approx(0.9))]


async def test_status_remembers_the_most_recent_users() -> None:
    clock = FakeClock(wall_start=NOON)
    mgr = BudgetManager(BudgetConfig(per_user_daily_usd=1), MemoryState(clock), clock, alerts=AlertSink(),
                        track_subjects=2)

    async def users_after(*names: str) -> set[str]:
        for name in names:
            res = await mgr.reserve(request_id="r", user=name, api_key_id=None, amount=0.01, started=clock.wall())
            assert await mgr.release(res)
        return {r["subject"] for r in await mgr.status()}

    assert await users_after("alice", "alice", "bob") == {"alice", "bob"}
    assert await users_after("carol") == {"bob", "carol"}
    # alice again, twice in a row (the second changes nothing), then dave: carol is the oldest now
    assert await users_after("alice", "alice", "dave") == {"alice", "dave"}


async def test_requests_started_on_three_days_keep_their_days() -> None:
    clock = FakeClock(wall_start=utc(2026, 11, 30, 12, 0, 0))
    mgr, _, _ = make(clock, daily_usd=100, monthly_usd=1_000, per_user_daily_usd=10)
    days = [utc(2026, 11, 29, 23, 59, 59), utc(2026, 11, 30, 0, 0, 0), utc(2026, 12, 1, 0, 0, 0)]
    for started in [days[i] for i in (0, 1, 2, 0, 2, 1, 1, 0)]:
        res = await mgr.reserve(request_id="r", user="alice", api_key_id=None, amount=0.01, started=started)
        assert res is not None and res.keys == expected_keys(mgr, "alice", None, None, started)
        assert res.scopes == tuple(mgr.scopes("alice", None, None, started))
        await mgr.release(res)
