"""Budgets that hold under concurrency: reserve the worst case, settle the actual, alert once.

Owns: ``BudgetManager`` (reserve / settle / release / charge / check / status / seed), the
``Reservation`` it hands out, ``KeyBudget`` (an API key's own limits), the period arithmetic in the
configured time zone (``Period``, ``period_for``), the read-side views ``ScopeStatus`` and
``BudgetState``, and the two errors it raises: ``BudgetRejectedError`` (a ``BudgetExceededError``
with the numbers behind it) and ``BudgetDowngradeSignal`` (its subclass: "re-plan cheaper once").

Algorithm (docs/budgets.md):

* Before a call, ``reserve`` holds the call's worst-case cost on every applicable period key
  (global/user/API key x daily/monthly) in ONE atomic ``StateBackend.reserve``: either every key
  has ``spent + reserved + amount <= limit`` and all are held, or nothing changes. Concurrent
  requests therefore cannot jointly overshoot, in one process (memory) or across replicas (Redis).
* After the call, ``settle`` moves the hold into spent at the *actual* cost; on failure,
  ``release`` frees it. Both are idempotent. A hold left by a crashed process expires after
  ``reservation_ttl`` seconds.
* A request is charged to the periods in which it *started*: the keys are fixed at reserve time.

Must not touch: the router's attempt loop, planning, usage storage (sinks), HTTP (alerts deliver).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from modelplex.accounting.alerts import AlertSink, BudgetAlert, format_usd
from modelplex.errors import BudgetExceededError, ConfigError
from modelplex.resilience.clock import Clock, SystemClock
from modelplex.state.base import EPSILON, KeyLimits, StateBackend, StateUnavailableError

if TYPE_CHECKING:
    from modelplex.accounting.records import UsageRecord
    from modelplex.config import BudgetConfig

log = logging.getLogger("modelplex.budget")

Window = Literal["daily", "monthly"]
Kind = Literal["global", "user", "key"]

DEFAULT_RESERVATION_TTL = 600.0
"""Seconds a hold lives without settle/release. Must exceed the longest request (the router's deadline)."""

DEFAULT_HOLD_RETRY_AFTER = 2.0
"""``retry_after`` when only in-flight holds (not settled spend) block a request."""

DEFAULT_KEY_RETENTION = 7 * 86_400.0
"""How long period keys outlive the end of their period (late settles, status of the last period)."""

_WINDOW_TAG: dict[Window, str] = {"daily": "day", "monthly": "month"}


# ---------------------------------------------------------------------------------------------- errors


class BudgetRejectedError(BudgetExceededError):
    """A budget would be exceeded. Adds to ``BudgetExceededError`` (scope, limit_usd, spent_usd,
    retry_after) the numbers a caller or an operator needs: ``reserved_usd`` (held by in-flight
    requests), ``needed_usd`` (this request's worst case), ``period`` and ``resets_at`` (ISO 8601).

    ``scope`` is ``request`` (per-request maximum), ``global:daily``, ``user:<id>:monthly``,
    ``key:<id>:daily`` ... ``retry_after`` is the seconds until the period resets, or a short
    wait when only in-flight holds block the request, or ``None`` for the per-request maximum
    (waiting will not help).
    """

    def __init__(self, message: str, *, scope: str, limit_usd: float, spent_usd: float,
                 retry_after: float | None, reserved_usd: float = 0.0, needed_usd: float = 0.0,
                 period: str | None = None, resets_at: str | None = None) -> None:
        super().__init__(message, scope=scope, limit_usd=limit_usd, spent_usd=spent_usd, retry_after=retry_after)
        self.reserved_usd = reserved_usd
        self.needed_usd = needed_usd
        self.period = period
        self.resets_at = resets_at


class BudgetDowngradeSignal(BudgetRejectedError):
    """Raised by ``reserve`` instead of a plain rejection when ``on_exceed: downgrade`` and the
    caller has not downgraded yet (``downgraded=False``).

    Contract: the router catches it, re-plans the request ONCE with ``downgrade=True`` (the
    planner switches to ``cost_optimized``) and retries the attempt loop, passing
    ``downgraded=True`` to every ``reserve`` of the new plan. With ``downgraded=True`` a budget
    that still does not fit raises a plain ``BudgetRejectedError``: the request is rejected.
    Being a ``BudgetExceededError``, a caller that does not know about downgrades still rejects
    the request correctly.
    """

    def as_rejection(self) -> BudgetRejectedError:
        """The plain rejection with the same numbers (for when no cheaper plan exists)."""
        return BudgetRejectedError(str(self), scope=self.scope, limit_usd=self.limit_usd, spent_usd=self.spent_usd,
                                   retry_after=self.retry_after, reserved_usd=self.reserved_usd,
                                   needed_usd=self.needed_usd, period=self.period, resets_at=self.resets_at)


# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """An API key's own limits (the gateway's keys carry them); ``None`` = no limit for that window."""

    daily_usd: float | None = None
    monthly_usd: float | None = None

    def __post_init__(self) -> None:
        for name in ("daily_usd", "monthly_usd"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"KeyBudget.{name} must be a finite number >= 0, got {v!r}")

    def limit(self, window: Window) -> float | None:
        return self.daily_usd if window == "daily" else self.monthly_usd

    @property
    def empty(self) -> bool:
        return self.daily_usd is None and self.monthly_usd is None


@dataclass(frozen=True, slots=True)
class Period:
    """One budget period: a local calendar day or month in the budget's time zone."""

    window: Window
    label: str
    """``2026-11-21`` or ``2026-11``."""
    start: float
    end: float
    """Epoch seconds of the local midnight that starts / ends (resets) the period."""
    tz: ZoneInfo

    @property
    def resets_at(self) -> str:
        return datetime.fromtimestamp(self.end, self.tz).isoformat()

    def contains(self, ts: float) -> bool:
        return self.start <= ts < self.end


def period_for(window: Window, ts: float, tz: ZoneInfo) -> Period:
    """The day or month (local to ``tz``) that the instant ``ts`` (epoch seconds) falls in.

    Boundaries are local midnights, so a DST-change day lasts 23 or 25 hours; a midnight that does
    not exist (a few zones jump at 00:00) resolves to the first instant after the gap.
    """
    local = datetime.fromtimestamp(ts, tz)
    if window == "daily":
        first = datetime(local.year, local.month, local.day, tzinfo=tz)
        nxt = datetime.fromordinal(first.toordinal() + 1).replace(tzinfo=tz)
        label = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    else:
        first = datetime(local.year, local.month, 1, tzinfo=tz)
        y, m = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        nxt = datetime(y, m, 1, tzinfo=tz)
        label = f"{local.year:04d}-{local.month:02d}"
    start, end = first.timestamp(), nxt.timestamp()
    return Period(window, label, min(start, ts), max(end, ts + 1.0), tz)


@dataclass(frozen=True, slots=True)
class Scope:
    """One limit that applies to a request: who (global / a user / an API key) x which period."""

    kind: Kind
    subject: str | None
    window: Window
    limit_usd: float
    period: Period

    @property
    def name(self) -> str:
        """``global:daily``, ``user:alice:daily``, ``key:team-a:monthly`` (the error's ``scope``)."""
        return f"global:{self.window}" if self.subject is None else f"{self.kind}:{self.subject}:{self.window}"

    @property
    def key(self) -> str:
        """The state key: ``budget:global:day:2026-11-21``, ``budget:user:alice:month:2026-11``.
        Subjects are percent-encoded so that ids containing ``:`` cannot collide."""
        who = "global" if self.subject is None else f"{self.kind}:{quote(self.subject, safe='')}"
        return f"budget:{who}:{_WINDOW_TAG[self.window]}:{self.period.label}"

    def describe(self) -> str:
        what = {"global": "global", "user": "user", "key": "API key"}[self.kind]
        if self.subject is None:
            return f"{what} {self.window} budget of {format_usd(self.limit_usd)}"
        return f"{self.window} budget of {format_usd(self.limit_usd)} for {what} {self.subject!r}"


@dataclass(slots=True)
class Reservation:
    """A hold on the budget for one attempt. Pass it back to ``settle`` or ``release``."""

    id: str
    """Unique per attempt (``<request_id>:<process prefix><sequence>``): a request that falls over to
    another target reserves again under a new id."""
    request_id: str
    amount_usd: float
    started: float
    scopes: tuple[Scope, ...]
    downgraded: bool = False
    status: Literal["held", "settled", "released"] = "held"
    actual_usd: float | None = None
    keys: tuple[str, ...] = ()
    """The scopes' state keys (filled in by ``BudgetManager.reserve``; derived from ``scopes`` if empty)."""

    def __post_init__(self) -> None:
        if not self.keys and self.scopes:
            self.keys = tuple(s.key for s in self.scopes)


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """A scope's numbers at one moment (admin API, dashboard, ``check``)."""

    scope: Scope
    spent_usd: float
    reserved_usd: float
    reset_in_s: float

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.scope.limit_usd - self.spent_usd - self.reserved_usd)

    @property
    def fraction(self) -> float:
        """Settled spend over the limit (a zero limit counts as fully used)."""
        lim = self.scope.limit_usd
        return self.spent_usd / lim if lim > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        s = self.scope
        return {
            "scope": s.name, "kind": s.kind, "subject": s.subject, "window": s.window, "period": s.period.label,
            "limit_usd": s.limit_usd, "spent_usd": self.spent_usd, "reserved_usd": self.reserved_usd,
            "remaining_usd": self.remaining_usd, "fraction": self.fraction, "resets_at": s.period.resets_at,
            "reset_in_s": self.reset_in_s,
        }


@dataclass(frozen=True, slots=True)
class BudgetState:
    """What ``check`` reports for one (user, API key): every applicable scope and summaries."""

    scopes: tuple[ScopeStatus, ...] = ()

    @property
    def tightest(self) -> ScopeStatus | None:
        """The scope with the least room left (``None`` when no budget applies)."""
        return min(self.scopes, key=lambda s: s.remaining_usd, default=None)

    @property
    def remaining_usd(self) -> float:
        t = self.tightest
        return math.inf if t is None else t.remaining_usd

    @property
    def fraction(self) -> float:
        return max((s.fraction for s in self.scopes), default=0.0)

    @property
    def exhausted(self) -> bool:
        """No applicable scope has any room left."""
        return self.remaining_usd <= EPSILON

    def fits(self, amount_usd: float) -> bool:
        return amount_usd <= self.remaining_usd + EPSILON

    def error(self, needed_usd: float = 0.0) -> BudgetRejectedError | None:
        """The rejection for the tightest scope when ``needed_usd`` does not fit, else ``None``."""
        t = self.tightest
        if t is None:
            return None
        blocked = self.exhausted if needed_usd <= 0 else not self.fits(needed_usd)
        if not blocked:
            return None
        return _rejection(BudgetRejectedError, t.scope, t.spent_usd, t.reserved_usd, needed_usd, t.reset_in_s,
                          DEFAULT_HOLD_RETRY_AFTER)

    def to_dict(self) -> dict[str, Any]:
        t = self.tightest
        return {"exhausted": self.exhausted, "remaining_usd": None if t is None else self.remaining_usd,
                "fraction": self.fraction, "tightest": None if t is None else t.scope.name,
                "scopes": [s.to_dict() for s in self.scopes]}


def _rejection(cls: type[BudgetRejectedError], scope: Scope, spent: float, reserved: float, needed: float,
               reset_in: float, hold_retry_after: float) -> BudgetRejectedError:
    limit = scope.limit_usd
    resets = scope.period.resets_at
    held_only = reserved > EPSILON and spent + needed <= limit + EPSILON
    if needed > limit + EPSILON:  # no period will ever have room: waiting cannot help
        retry_after = None
        message = (f"{scope.describe()} is smaller than this request's worst case of {format_usd(needed)}; "
                   f"lower max_tokens, or raise the limit")
    elif held_only:
        retry_after = min(hold_retry_after, reset_in)
        message = (f"{scope.describe()} is committed to in-flight requests ({format_usd(spent)} spent, "
                   f"{format_usd(reserved)} reserved, {format_usd(needed)} needed); retry in "
                   f"{retry_after:g}s (resets at {resets})")
    else:
        retry_after = reset_in
        if spent >= limit - EPSILON:
            message = (f"{scope.describe()} exhausted ({format_usd(spent)} spent, {format_usd(needed)} needed); "
                       f"resets at {resets}")
        else:  # room is left, only not enough for this request's worst case
            message = (f"{scope.describe()} has {format_usd(limit - spent)} left ({format_usd(spent)} spent), less "
                       f"than this request's worst case of {format_usd(needed)}; resets at {resets}")
    return cls(message, scope=scope.name, limit_usd=limit, spent_usd=spent, retry_after=retry_after,
               reserved_usd=reserved, needed_usd=needed, period=scope.period.label, resets_at=resets)


_INF = math.inf


def _check_money(value: float, what: str) -> float:
    v = float(value)
    if not 0.0 <= v < _INF:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return v


class _Applicable(NamedTuple):
    """The scopes that apply to one (user, API key, periods), with what the hot path needs of them."""

    scopes: tuple[Scope, ...]
    keys: tuple[str, ...]
    key_limits: KeyLimits | None
    """Validated once here, so that the state passes them through on every ``reserve`` (``None``: no scope)."""
    end: float
    """The latest period end (epoch seconds): the keys' lifetime is derived from it."""


@dataclass(slots=True)
class _Span:
    """The instants ``[start, end)`` that fall in one day and one month, and the ``_Applicable``
    entries memoized for those two periods, by subject (``user``, or ``(user, API key, its budget)``)."""

    start: float
    end: float
    memo: dict[Any, _Applicable]

    def contains(self, ts: float) -> bool:
        return self.start <= ts < self.end


# ---------------------------------------------------------------------------------------------- manager


class BudgetManager:
    """Enforces ``budgets:`` from config on top of a ``StateBackend`` (memory, or Redis for replicas).

    Applicable scopes for a request: ``global`` daily/monthly (``daily_usd``, ``monthly_usd``); the
    request's user, when it names one (``per_user_daily_usd``, ``per_user_monthly_usd``); its API
    key, when it has a ``KeyBudget`` (registered once with ``set_key_budget``, or passed per call);
    and the per-request maximum (``per_request_max_usd``, checked without touching state). With
    none configured, ``reserve`` returns ``None`` at once, making no state call at all.
    """

    def __init__(self, config: BudgetConfig, state: StateBackend, clock: Clock | None = None, *,
                 alerts: AlertSink | None = None, reservation_ttl: float = DEFAULT_RESERVATION_TTL,
                 hold_retry_after: float = DEFAULT_HOLD_RETRY_AFTER,
                 key_retention: float = DEFAULT_KEY_RETENTION, track_subjects: int = 1000) -> None:
        try:
            self.tz = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {config.timezone!r} (an IANA name such as "
                              "'UTC' or 'America/New_York')", key="budgets.timezone") from None
        if not (reservation_ttl > 0 and math.isfinite(reservation_ttl)):
            raise ValueError(f"reservation_ttl must be a positive number of seconds, got {reservation_ttl!r}")
        self.config = config
        self.on_exceed: Literal["reject", "downgrade"] = config.on_exceed
        self.alert_at = config.alert_at
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.alerts = alerts if alerts is not None else AlertSink(webhook=config.webhook)
        self.reservation_ttl = float(reservation_ttl)
        self.hold_retry_after = float(hold_retry_after)
        self.key_retention = float(key_retention)
        self._global = {"daily": config.daily_usd, "monthly": config.monthly_usd}
        self._per_user = {"daily": config.per_user_daily_usd, "monthly": config.per_user_monthly_usd}
        self._stateful = any(v is not None for v in (*self._global.values(), *self._per_user.values()))
        self._per_user_any = any(v is not None for v in self._per_user.values())
        self._periods: dict[Window, Period] = {}
        self._span = self._prev_span = _Span(0.0, 0.0, {})  # empty: the first reserve makes the real one
        self._last_user: str | None = None  # the user ``_remember`` saw last (its LRU entry is the newest)
        self._alerted: OrderedDict[str, None] = OrderedDict()
        self._track = track_subjects
        self._users: OrderedDict[str, None] = OrderedDict()
        self._keys: OrderedDict[str, KeyBudget] = OrderedDict()
        self._key_budgets: dict[str, KeyBudget] = {}
        self._rid_prefix = os.urandom(4).hex()
        self._rid_seq = itertools.count(1)

    def __repr__(self) -> str:
        return f"BudgetManager(state={self.state!r}, on_exceed={self.on_exceed!r}, timezone={self.tz.key!r})"

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured or registered (limits passed per call are not counted)."""
        return self._stateful or self.config.per_request_max_usd is not None or bool(self._key_budgets)

    # ------------------------------------------------------------------ API-key limits

    def set_key_budget(self, api_key_id: str, budget: KeyBudget | None) -> None:
        """Register (or, with ``None``/an empty budget, remove) an API key's own limits. The gateway
        calls this when it loads or changes its keys; ``reserve`` then applies them to every request
        made with that key, unless a ``key_budget`` is passed explicitly."""
        if budget is None or budget.empty:
            self._key_budgets.pop(api_key_id, None)
        else:
            self._key_budgets[api_key_id] = budget

    def key_budget(self, api_key_id: str | None, explicit: KeyBudget | None = None) -> KeyBudget | None:
        """The limits that apply to ``api_key_id``: ``explicit`` if given, else the registered ones."""
        if explicit is not None or api_key_id is None:
            return explicit
        return self._key_budgets.get(api_key_id)

    # ------------------------------------------------------------------ scopes and periods

    def period(self, window: Window, ts: float) -> Period:
        cached = self._periods.get(window)
        if cached is not None and cached.contains(ts):
            return cached
        p = period_for(window, ts, self.tz)
        self._periods[window] = p
        return p

    def _span_at(self, ts: float) -> _Span:
        """The span (day within month) that ``ts`` falls in. The current and the previous one are
        kept, so that attempts of requests started before midnight, reserving after it, do not thrash."""
        span = self._prev_span
        if not span.contains(ts):
            daily, monthly = self.period("daily", ts), self.period("monthly", ts)
            span = _Span(max(daily.start, monthly.start), min(daily.end, monthly.end), {})
        self._span, self._prev_span = span, self._span
        return span

    def scopes(self, user: str | None, api_key_id: str | None, key_budget: KeyBudget | None,
               started: float) -> list[Scope]:
        """Every period scope that applies to a request started at ``started`` (epoch seconds)."""
        out: list[Scope] = []
        windows: tuple[Window, Window] = ("daily", "monthly")
        for w in windows:
            lim = self._global[w]
            if lim is not None:
                out.append(Scope("global", None, w, lim, self.period(w, started)))
        if user is not None:
            for w in windows:
                lim = self._per_user[w]
                if lim is not None:
                    out.append(Scope("user", user, w, lim, self.period(w, started)))
        if api_key_id is not None and key_budget is not None:
            for w in windows:
                lim = key_budget.limit(w)
                if lim is not None:
                    out.append(Scope("key", api_key_id, w, lim, self.period(w, started)))
        return out

    def _applicable_for(self, user: str | None, api_key_id: str | None, key_budget: KeyBudget | None,
                        started: float) -> _Applicable:
        """``scopes`` with their state keys and latest period end, memoized per subject for the day
        and month ``started`` falls in: the hot path builds no ``Scope`` and encodes no key on a repeat."""
        span = self._span
        if not span.start <= started < span.end:
            span = self._span_at(started)
        # Without an API key, key_budget selects no scope: the user alone (a str or None) is the key.
        memo_key = user if api_key_id is None else (user, api_key_id, key_budget)
        hit = span.memo.get(memo_key)
        if hit is not None:
            return hit
        scopes = tuple(self.scopes(user, api_key_id, key_budget, started))
        keys = tuple(s.key for s in scopes)
        limits = KeyLimits(zip(keys, (s.limit_usd for s in scopes), strict=True)) if scopes else None
        entry = _Applicable(scopes, keys, limits, max((s.period.end for s in scopes), default=0.0))
        if len(span.memo) >= 4096:
            span.memo.clear()
        span.memo[memo_key] = entry
        return entry

    def _remember(self, user: str | None, api_key_id: str | None, key_budget: KeyBudget | None) -> None:
        """Note the subjects for ``status``' defaults: recent users and API keys, newest last."""
        self._last_user = user
        if user is not None and self._per_user_any:
            self._users[user] = None
            self._users.move_to_end(user)
            while len(self._users) > self._track:
                self._users.popitem(last=False)
        if api_key_id is not None and key_budget is not None and not key_budget.empty:
            self._keys[api_key_id] = key_budget
            self._keys.move_to_end(api_key_id)
            while len(self._keys) > self._track:
                self._keys.popitem(last=False)

    def _key_ttl(self, scopes: Sequence[Scope], now_wall: float) -> float:
        end = max(s.period.end for s in scopes)
        return max(60.0, end - now_wall + self.key_retention)

    def _reset_in(self, scope: Scope) -> float:
        return max(0.0, scope.period.end - self.clock.wall())

    # ------------------------------------------------------------------ the hot path

    async def reserve(self, *, request_id: str, user: str | None, api_key_id: str | None, amount: float,
                      started: float, key_budget: KeyBudget | None = None,
                      downgraded: bool = False) -> Reservation | None:
        """Hold ``amount`` (the attempt's worst-case USD) on every applicable scope, atomically.

        Returns the ``Reservation`` to settle or release, or ``None`` when no period budget applies.
        Raises ``BudgetRejectedError`` when a limit would be exceeded, or ``BudgetDowngradeSignal``
        instead when ``on_exceed`` is ``downgrade`` and ``downgraded`` is false (see its contract).
        """
        amount = _check_money(amount, "reservation amount")
        if not math.isfinite(started):
            raise ValueError(f"started must be epoch seconds, got {started!r}")
        cap = self.config.per_request_max_usd
        if cap is not None and amount > cap + EPSILON:
            cls = BudgetDowngradeSignal if self._signal(downgraded) else BudgetRejectedError
            raise cls(f"request estimate of {format_usd(amount)} exceeds the per-request maximum of "
                      f"{format_usd(cap)}", scope="request", limit_usd=cap, spent_usd=0.0, retry_after=None,
                      needed_usd=amount)
        if key_budget is None and api_key_id is not None:
            key_budget = self._key_budgets.get(api_key_id)  # self.key_budget(), inlined on the hot path
        if not self._stateful and (key_budget is None or api_key_id is None or key_budget.empty):
            return None
        applicable = self._applicable_for(user, api_key_id, key_budget, started)
        scopes, key_limits = applicable.scopes, applicable.key_limits
        if key_limits is None:
            return None
        if api_key_id is not None or user != self._last_user:  # else the user is the newest already
            self._remember(user, api_key_id, key_budget)
        rid = f"{request_id}:{self._rid_prefix}{next(self._rid_seq):x}"
        key_ttl = max(60.0, applicable.end - self.clock.wall() + self.key_retention)
        ok, failed = await self.state.reserve(key_limits, amount, rid, self.reservation_ttl, key_ttl=key_ttl)
        if ok:
            return Reservation(rid, request_id, amount, started, scopes, downgraded, keys=applicable.keys)
        if failed is None:  # the id existed already: impossible with a unique suffix, but never guess
            raise RuntimeError(f"budget reservation id {rid!r} was already used")
        scope = next(s for s in scopes if s.key == failed)
        spent, reserved = await self.state.usage(failed)
        cls = BudgetDowngradeSignal if self._signal(downgraded) else BudgetRejectedError
        err = _rejection(cls, scope, spent, reserved, amount, self._reset_in(scope), self.hold_retry_after)
        log.info("budget_rejected request_id=%s scope=%s period=%s limit_usd=%.6f spent_usd=%.6f "
                 "reserved_usd=%.6f needed_usd=%.6f action=%s", request_id, scope.name, scope.period.label,
                 scope.limit_usd, spent, reserved, amount,
                 "downgrade" if isinstance(err, BudgetDowngradeSignal) else "reject")
        raise err

    def _signal(self, downgraded: bool) -> bool:
        return self.on_exceed == "downgrade" and not downgraded

    async def settle(self, reservation: Reservation | None, actual_usd: float) -> bool:
        """Book the actual cost and free the hold. Idempotent: ``True`` only the first time.

        A cost above the reservation is booked in full (the call happened) and logged; see the
        over-spend bound in docs/budgets.md. A scope whose settled spend reaches ``alert_at`` x its
        limit alerts on this settle; on in-process state the settle itself reports the spend it left
        (``settle_spent``), on shared state it is read back with ``usage``.
        """
        actual = _check_money(actual_usd, "actual cost")
        if reservation is None or reservation.status != "held":
            return False
        reservation.status = "settled"
        reservation.actual_usd = actual
        state = self.state
        try:
            if state.shared:
                applied, spent = await state.settle(reservation.id, actual), None
            else:  # in-process: the settle reports each key's spent at no extra cost
                applied, spent = await state.settle_spent(reservation.id, actual)
        except StateUnavailableError as e:
            reservation.status = "held"
            reservation.actual_usd = None
            log.error("budget settle failed request_id=%s reservation=%s actual_usd=%.6f: %s (the hold "
                      "expires in at most %.0fs)", reservation.request_id, reservation.id, actual, e,
                      self.reservation_ttl)
            return False
        except BaseException:  # cancelled mid-call: unknown outcome, so let a later settle/release retry
            reservation.status = "held"
            reservation.actual_usd = None
            raise
        if actual > reservation.amount_usd + EPSILON:
            log.info("budget_overrun request_id=%s estimate_usd=%.6f actual_usd=%.6f", reservation.request_id,
                     reservation.amount_usd, actual)
        if not applied or actual <= 0:
            return applied
        scopes, keys = reservation.scopes, reservation.keys
        if spent is None or self._may_alert(scopes, keys, spent):  # else no scope can alert: skip the check
            await self._check_alerts(scopes, keys, spent)
        return applied

    async def release(self, reservation: Reservation | None) -> bool:
        """Free the hold without spending (the attempt failed or was cancelled). Idempotent."""
        if reservation is None or reservation.status != "held":
            return False
        reservation.status = "released"
        try:
            return await self.state.release(reservation.id)
        except StateUnavailableError as e:
            reservation.status = "held"
            log.error("budget release failed request_id=%s reservation=%s: %s (the hold expires in at "
                      "most %.0fs)", reservation.request_id, reservation.id, e, self.reservation_ttl)
            return False
        except BaseException:
            reservation.status = "held"
            raise

    async def charge(self, *, user: str | None, api_key_id: str | None, amount: float, started: float,
                     key_budget: KeyBudget | None = None) -> int:
        """Book spend that had no reservation (unreserved calls, seeding). Never refuses. Scopes
        whose period has already ended are skipped; returns how many scopes were charged."""
        amount = _check_money(amount, "amount")
        if amount == 0:
            return 0
        now = self.clock.wall()
        key_budget = self.key_budget(api_key_id, key_budget)
        scopes = [s for s in self.scopes(user, api_key_id, key_budget, started) if s.period.end > now]
        if not scopes:
            return 0
        key_ttl = self._key_ttl(scopes, now)
        await asyncio.gather(*(self.state.add_spent(s.key, amount, key_ttl=key_ttl) for s in scopes))
        await self._check_alerts(scopes)
        return len(scopes)

    async def seed(self, records: Iterable[UsageRecord], *,
                   key_budgets: Mapping[str, KeyBudget] | None = None) -> int:
        """Rebuild current-period spend from stored usage records (e.g. at startup on the memory
        backend, which forgets on restart). Call once, on empty state: it adds, it does not replace.
        Returns the number of records that were charged to at least one open period."""
        n = 0
        for rec in records:
            if rec.cost_usd <= 0:
                continue
            kb = (key_budgets or {}).get(rec.api_key_id) if rec.api_key_id else None
            if await self.charge(user=rec.user, api_key_id=rec.api_key_id, amount=rec.cost_usd, started=rec.ts,
                                 key_budget=kb):
                n += 1
        return n

    def open_since(self, at: float | None = None) -> float:
        """The earliest start of a current period (the month start): query usage from here to ``seed``."""
        return self.period("monthly", self.clock.wall() if at is None else at).start

    # ------------------------------------------------------------------ alerts

    def _may_alert(self, scopes: Sequence[Scope], keys: Sequence[str], spent: Mapping[str, float]) -> bool:
        """Whether ``_check_alerts`` has work, given each key's ``spent`` as a settle left it: some scope
        not yet alerted has reached its threshold, or its spend is not known."""
        at = self.alert_at
        for scope, key in zip(scopes, keys, strict=True):
            now_spent = spent.get(key)
            if (now_spent is None or now_spent + EPSILON >= at * scope.limit_usd) and (
                    scope.limit_usd > 0 and key not in self._alerted):
                return True
        return False

    async def _check_alerts(self, scopes: Sequence[Scope], keys: Sequence[str] | None = None,
                            known: Mapping[str, float] | None = None) -> None:
        """Alert once per scope-period whose settled spend has reached ``alert_at`` x its limit.
        ``known``: each key's spent as the settle just left it (the state is asked for any other)."""
        alerted = self._alerted
        if keys is None:
            keys = [s.key for s in scopes]
        todo = [(s, k) for s, k in zip(scopes, keys, strict=True) if s.limit_usd > 0 and k not in alerted]
        if not todo:
            return
        try:
            spent_now = await self._spent_of([k for _s, k in todo], known)
            for (scope, key), spent in zip(todo, spent_now, strict=True):
                if spent + EPSILON < self.alert_at * scope.limit_usd:
                    continue
                now = self.clock.wall()
                fired = await self.state.incr(f"budget-alert:{key}", 1.0, ttl=self._key_ttl([scope], now))
                self._mark_alerted(key)
                if fired == 1.0:
                    self.alerts.emit(BudgetAlert(scope=scope.name, period=scope.period.label,
                                                 limit_usd=scope.limit_usd, spent_usd=spent,
                                                 fraction=spent / scope.limit_usd, ts=now,
                                                 threshold=self.alert_at, resets_at=scope.period.resets_at))
        except StateUnavailableError as e:
            log.warning("budget alert check skipped: %s", e)

    async def _spent_of(self, keys: Sequence[str], known: Mapping[str, float] | None) -> list[float]:
        """The settled spend of each key: from ``known`` when it has them all, else from the state."""
        if known is not None and all(k in known for k in keys):
            return [known[k] for k in keys]
        if self.state.shared:  # round trips: overlap them
            usages = await asyncio.gather(*(self.state.usage(k) for k in keys))
        else:  # in-process: plain awaits, no task per key
            usages = [await self.state.usage(k) for k in keys]
        return [spent for spent, _reserved in usages]

    def _mark_alerted(self, key: str) -> None:
        self._alerted[key] = None
        while len(self._alerted) > 10_000:
            self._alerted.popitem(last=False)

    # ------------------------------------------------------------------ read side

    async def _statuses(self, scopes: Sequence[Scope]) -> list[ScopeStatus]:
        usages = await asyncio.gather(*(self.state.usage(s.key) for s in scopes))
        return [ScopeStatus(s, spent, reserved, self._reset_in(s))
                for s, (spent, reserved) in zip(scopes, usages, strict=True)]

    async def check(self, user: str | None, api_key_id: str | None = None, *,
                    key_budget: KeyBudget | None = None, at: float | None = None) -> BudgetState:
        """Every applicable scope's numbers now (or at wall time ``at``). No state call when no period
        budget applies. ``BudgetState.exhausted`` says whether some scope has no room left."""
        key_budget = self.key_budget(api_key_id, key_budget)
        if not self._stateful and (key_budget is None or api_key_id is None or key_budget.empty):
            return BudgetState()
        scopes = self.scopes(user, api_key_id, key_budget, self.clock.wall() if at is None else at)
        return BudgetState(tuple(await self._statuses(scopes)))

    async def status(self, *, users: Iterable[str] | None = None,
                     api_keys: Mapping[str, KeyBudget] | None = None, at: float | None = None
                     ) -> list[dict[str, Any]]:
        """One dict per scope for the admin API and dashboard: ``scope``, ``kind``, ``subject``,
        ``window``, ``period``, ``limit_usd``, ``spent_usd``, ``reserved_usd``, ``remaining_usd``,
        ``fraction``, ``resets_at``, ``reset_in_s``.

        Global scopes always; per-user scopes for ``users`` (default: the users this process has
        reserved for recently); API-key scopes for ``api_keys`` (default: the registered keys and
        those seen recently)."""
        ts = self.clock.wall() if at is None else at
        scopes = self.scopes(None, None, None, ts)
        for user in (list(self._users) if users is None else users):
            scopes += [s for s in self.scopes(user, None, None, ts) if s.kind == "user"]
        keys = {**self._key_budgets, **self._keys} if api_keys is None else dict(api_keys)
        for key_id, kb in keys.items():
            scopes += [s for s in self.scopes(None, key_id, kb, ts) if s.kind == "key"]
        return [st.to_dict() for st in await self._statuses(scopes)]

    async def aclose(self) -> None:
        await self.alerts.aclose()
