"""The state seam: the small, generic interface that breakers, throttles, rate limits and budgets keep state in.

Owns: ``StateBackend`` (abstract), ``StateUnavailableError``, the shared argument checks and
``KeyLimits`` (reserve()'s ``(key, limit)`` pairs, validated once and then passed as they are), the
GCRA step both backends implement (``gcra``), the numeric constants they must agree on
(``EPSILON``, ``RESERVATION_RECORD_RETENTION``) and ``FallbackState``, the wrapper that serves from
local memory while the shared backend is unreachable.

The interface, in four groups, all ``async``:

* key/value with TTL: ``get``, ``set``, ``delete`` (values are JSON-able: dicts, lists, strings,
  numbers, booleans, ``None``);
* atomic counters: ``incr``;
* rate limits: ``rate_limit`` (GCRA, a token bucket of ``limit`` units refilled at ``limit/window_s``);
* budget reservations: ``reserve``, ``settle``, ``release``, ``usage``, ``add_spent``, and the
  optional ``settle_spent`` (``settle`` that also reports each key's spent, when a backend knows it
  without another call);

plus ``health``, ``clear`` and ``close``. Implementations: ``memory`` (in-process, the default) and
``redis`` (shared by replicas, Lua scripts for the multi-step operations), and ``FallbackState``
that keeps serving from memory while Redis is down.

Must not touch: breaker, budget or rate-limit *policy* (callers own meaning; this layer stores
numbers atomically), logging configuration.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from modelplex.errors import ModelplexError

if TYPE_CHECKING:
    from modelplex.resilience.clock import Clock

_log = logging.getLogger("modelplex.state")

EPSILON = 1e-9
"""Tolerance on ``spent + reserved + amount <= limit`` and on rate-limit conformance (float sums)."""

RESERVATION_RECORD_RETENTION = 86_400.0
"""How long a reservation's record outlives its hold, so a late ``settle`` still books the spend."""

UNLIMITED = 1e300
"""What an infinite limit is sent as (Lua and JSON have no infinity)."""

_MERGE_HOLD_S = 300.0
"""How long a merge's zero hold may stand between its reserve and its settle (a settle retried later still
books the spend: the record outlives the hold by ``RESERVATION_RECORD_RETENTION``)."""

JSONValue = Any
"""A JSON-able value: ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None``."""


class StateUnavailableError(ModelplexError):
    """The state backend could not be reached within its bounded timeout (e.g. Redis is down)."""

    def __init__(self, message: str, *, backend: str = "", cause: BaseException | None = None) -> None:
        self.backend = backend
        self.cause = cause
        super().__init__(f"{backend} state unavailable: {message}" if backend else message)


class StateBackend(ABC):
    """Where resilience and budget state lives. Every method is atomic on its own.

    ``shared`` says whether other processes see the same state (Redis) or not (memory); the breaker
    registry uses it to decide whether to synchronise at all.
    """

    name: str = "abstract"
    shared: bool = False

    # ------------------------------------------------------------------ key/value

    @abstractmethod
    async def get(self, key: str) -> JSONValue | None:
        """The value stored under ``key``, or ``None`` when absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl`` (seconds) it expires after that long."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` (absent keys are fine)."""

    @abstractmethod
    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        """Add ``amount`` (may be negative) to the number at ``key`` (absent = 0) and return the new value.

        With ``ttl`` the key's expiry is (re)set to ``ttl`` seconds on every call. Shares the
        key space with ``get``/``set``: ``get`` returns the number.
        """

    # ------------------------------------------------------------------ rate limits

    @abstractmethod
    async def rate_limit(self, key: str, limit: float, window_s: float, cost: float = 1.0, *,
                         force: bool = False) -> tuple[bool, float]:
        """Take ``cost`` units from the GCRA bucket ``key``: at most ``limit`` units per ``window_s``.

        Returns ``(allowed, retry_after)``; ``retry_after`` is 0 when allowed, otherwise the seconds
        until this ``cost`` would conform. A refused call takes nothing. ``cost == 0`` only checks.
        ``cost < 0`` gives units back (always allowed). ``force=True`` takes the units even when
        they do not conform (post-hoc accounting of actual tokens) and still reports whether they did.
        A ``cost`` larger than ``limit`` never conforms: ``(False, inf)``.
        """

    # ------------------------------------------------------------------ budget reservations

    @abstractmethod
    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        """Atomically hold ``amount`` against every key, or against none.

        For every ``(key, limit)``: ``spent + reserved + amount <= limit`` (``math.inf`` = no limit).
        If all pass, ``amount`` is added to each key's reserved and the reservation is recorded;
        otherwise nothing changes and the first failing key is returned as ``(False, key)``.
        The hold expires after ``ttl`` seconds (crash safety: a caller that dies frees its hold).
        A ``reservation_id`` that already exists is not applied twice: ``(True, None)`` if it is
        still held, ``(False, None)`` if it was settled or released (the memory backend remembers
        the last ~10,000 finished ids; Redis keeps each for the record retention). ``key_ttl`` (seconds) sets
        an expiry on the keys' usage (for period-scoped budget keys), refreshed on every write.
        """

    @abstractmethod
    async def settle(self, reservation_id: str, actual: float) -> bool:
        """Move the reservation out of reserved and add ``actual`` to spent, for each of its keys.

        Idempotent: returns ``True`` when applied, ``False`` when the reservation was already
        settled or released or is unknown. A reservation whose hold expired still books
        ``actual`` (the call happened), for up to ``RESERVATION_RECORD_RETENTION`` seconds.
        """

    async def settle_spent(self, reservation_id: str, actual: float) -> tuple[bool, dict[str, float] | None]:
        """``settle``, also reporting each of the reservation's keys' spent right after it.

        Returns ``(applied, spent_by_key)``; ``spent_by_key`` is ``None`` when the backend cannot tell
        without another call (then ask ``usage``) or when nothing was applied. This default calls
        ``settle`` and reports nothing; the in-process backend overrides it, so that a budget alert
        check needs no second lookup. A backend that overrides ``settle`` must keep the two consistent.
        """
        return await self.settle(reservation_id, actual), None

    @abstractmethod
    async def release(self, reservation_id: str) -> bool:
        """Free the hold without spending. Idempotent; ``True`` when applied."""

    @abstractmethod
    async def usage(self, key: str) -> tuple[float, float]:
        """``(spent, reserved)`` of a budget key; expired holds are not counted."""

    @abstractmethod
    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        """Add ``amount`` to a key's spent without a reservation (seeding from a usage store,
        unreserved calls). Returns the new spent."""

    # ------------------------------------------------------------------ lifecycle

    @abstractmethod
    async def health(self) -> dict[str, Any]:
        """A JSON-able report: at least ``backend`` (name), ``ok`` (bool) and ``degraded`` (bool)."""

    @abstractmethod
    async def clear(self) -> None:
        """Forget everything this backend holds (for its prefix, with Redis)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op for backends holding no resources
        """Release connections. Safe to call twice."""

    async def __aenter__(self) -> StateBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------------- shared argument checks


_INF = math.inf


def check_ttl(ttl: float | None, what: str = "ttl") -> None:
    if ttl is not None and not 0 < ttl < _INF:
        raise ValueError(f"{what} must be a positive number of seconds, got {ttl!r}")


def check_rate_args(limit: float, window_s: float, cost: float) -> None:
    if not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f"rate limit must be a positive finite number, got {limit!r}")
    if not (window_s > 0 and math.isfinite(window_s)):
        raise ValueError(f"rate window must be a positive finite number of seconds, got {window_s!r}")
    if not math.isfinite(cost):
        raise ValueError(f"rate cost must be finite, got {cost!r}")


class KeyLimits(tuple[tuple[str, float], ...]):
    """``reserve()``'s ``(key, limit)`` pairs, validated: at least one pair, keys non-empty strings
    and unique (a duplicate key keeps the smallest limit, at its first position), limits floats no
    larger than ``UNLIMITED`` (infinity is sent as that). Immutable, so it stays valid: a caller that
    reserves on the same keys again and again (``BudgetManager``) builds it once, and
    ``normalise_key_limits`` passes it through without checking the pairs again."""

    __slots__ = ()

    def __new__(cls, key_limits: Iterable[tuple[str, float]]) -> KeyLimits:
        merged: dict[str, float] = {}
        for key, limit in key_limits:
            if not isinstance(key, str) or not key:
                raise ValueError(f"budget keys must be non-empty strings, got {key!r}")
            if limit != limit:  # NaN
                raise ValueError(f"limit for {key!r} is NaN")
            limit = min(float(limit), UNLIMITED)
            merged[key] = min(merged.get(key, UNLIMITED), limit)
        if not merged:
            raise ValueError("reserve() needs at least one (key, limit)")
        return super().__new__(cls, merged.items())


def normalise_key_limits(key_limits: Sequence[tuple[str, float]], amount: float, ttl: float) -> KeyLimits:
    """Validate reserve() arguments; the pairs as ``KeyLimits`` (returned as is when they already are)."""
    if not 0 <= amount < _INF:
        raise ValueError(f"reservation amount must be a finite number >= 0, got {amount!r}")
    check_ttl(ttl, "reservation ttl")
    return key_limits if type(key_limits) is KeyLimits else KeyLimits(key_limits)


def check_amount(amount: float, what: str = "amount") -> None:
    if not -_INF < amount < _INF:
        raise ValueError(f"{what} must be finite, got {amount!r}")


def gcra(tat: float | None, now: float, limit: float, window_s: float, cost: float,
         force: bool) -> tuple[float | None, bool, float]:
    """One GCRA step: ``(tat_to_store | None, allowed, retry_after)``. The Redis Lua script mirrors it.

    The bucket holds ``limit`` units and refills one unit every ``window_s / limit`` seconds;
    ``tat`` (theoretical arrival time) is when it will be full again. ``None`` to store = unchanged.
    """
    interval = window_s / limit
    base = now if tat is None or tat < now else tat
    if cost < 0:
        return max(now, base + cost * interval), True, 0.0
    new_tat = base + cost * interval
    if cost > limit * (1 + EPSILON):
        return (new_tat if force else None), False, math.inf
    allowed = new_tat - now <= window_s * (1 + EPSILON)
    if allowed or force:
        store: float | None = new_tat if cost > 0 else None
    else:
        store = None
    retry_after = 0.0 if allowed else max(0.0, new_tat - window_s - now)
    return store, allowed, retry_after


# ---------------------------------------------------------------------- degradation wrapper


class FallbackState(StateBackend):
    """``primary`` (Redis) while it answers; ``local`` (memory) while it does not.

    The first ``StateUnavailableError`` flips the wrapper to *degraded*: one warning is logged and
    calls go straight to ``local`` for ``retry_interval`` seconds (no per-call timeout while Redis
    is down). After that, one call at a time tries the primary again; the first success of such a
    probe ends the episode (logged), and so does a successful ``health()``; a call that was already
    in flight when the episode began does not (it answered before the trouble).

    While degraded, state is per replica: breakers, rate limits and budgets are enforced on each
    replica's own counts. Once the primary answers again:

    * ``settle``/``release`` calls for reservations held in Redis that failed while it was down,
      queued meanwhile (bounded by ``max_replay``), are replayed; that is safe because both are
      idempotent;
    * reservations made locally are settled and released locally (their ids are remembered), and
      the spend they booked is *merged*: summed per set of budget keys and added to the primary, so
      the shared budgets count what was spent during the outage. Unreserved spend (``add_spent``)
      served locally is merged the same way. A merge is a reservation of 0 on those keys under an
      unlimited ceiling, then a settle of the sum, with a merge id fixed before the first try: both
      steps are idempotent by id, so a merge retried after a timeout is never applied twice;
    * rate-limit buckets, breaker records and plain keys are not carried over (they rebuild within
      a window).

    The replay and the merge run as one background task on recovery; ``flush()`` waits for it and
    ``health()`` reports what is still pending (``pending_replay``, ``pending_merge_usd``).
    """

    name = "fallback"
    shared = True

    def __init__(self, primary: StateBackend, local: StateBackend, *, clock: Clock | None = None,
                 retry_interval: float = 5.0, max_replay: int = 10_000,
                 max_local_reservations: int = 100_000) -> None:
        from modelplex.resilience.clock import SystemClock

        self.primary = primary
        self.local = local
        self.shared = primary.shared
        self._clock: Clock = clock or SystemClock()
        self._retry_interval = retry_interval
        self._max_replay = max_replay
        self._max_local = max_local_reservations
        self._degraded = False
        self._degraded_since: float | None = None
        self._retry_at = 0.0
        self._probing = False
        self._last_error: str | None = None
        self._episodes = 0
        self._local_rids: dict[str, float | None] = {}
        """Reservations held in ``local`` (made while degraded) -> their ``key_ttl``."""
        self._unmerged: dict[tuple[str, ...], tuple[float, float | None]] = {}
        """Spend booked only in ``local``, by budget keys: (amount, the longest key_ttl asked for). Merged into
        the primary on recovery; grouped by keys alone, since a key's ttl differs from call to call."""
        self._merging: deque[tuple[str, tuple[str, ...], float | None, float]] = deque()
        """Merges taken from ``_unmerged`` and not yet confirmed: (merge id, keys, key_ttl, amount)."""
        self._generation = 0
        """Bumped by ``clear()``: a carry-over step that fails after it does not put its item back."""
        self._replay: deque[tuple[str, str, float | None]] = deque()
        self._replay_dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def degraded(self) -> bool:
        return self._degraded

    def __repr__(self) -> str:
        return f"FallbackState({self.primary!r}, {self.local!r}, degraded={self._degraded})"

    # ------------------------------------------------------------------ switching

    def _degrade(self, exc: StateUnavailableError) -> None:
        self._last_error = str(exc)
        self._retry_at = self._clock.now() + self._retry_interval
        if not self._degraded:
            self._degraded = True
            self._degraded_since = self._clock.wall()
            self._episodes += 1
            _log.warning("state_degraded backend=%s error=%r action=using_local_state retry_in_s=%s",
                         self.primary.name, self._last_error, self._retry_interval)

    def _recover(self) -> None:
        if not self._degraded:
            return
        since = self._degraded_since
        self._degraded = False
        self._degraded_since = None
        self._last_error = None
        _log.info("state_recovered backend=%s degraded_for_s=%.1f replay=%d", self.primary.name,
                  (self._clock.wall() - since) if since is not None else 0.0, len(self._replay))
        self._start_carry_over()

    def _start_carry_over(self) -> None:
        """Start the carry-over task when there is something to carry and none is running (a running one
        picks up what is booked meanwhile: its loops run until the queues are empty)."""
        if not (self._replay or self._unmerged or self._merging) or any(not t.done() for t in self._tasks):
            return
        try:
            task = asyncio.get_running_loop().create_task(self._carry_over())
        except RuntimeError:  # no running loop: the next recovery or booking on a loop starts it
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry_over(self) -> None:
        """On recovery: replay the queued settles/releases, then merge the spend booked locally."""
        try:
            await self._run_replay()
            await self._run_merge()
        except StateUnavailableError as e:  # down again: what is left waits for the next recovery
            self._degrade(e)

    async def _run_replay(self) -> None:
        # Each item is taken before it is sent and put back if sending fails, so two carry-over tasks (an
        # outage and a recovery while one was still running) never send or drop the same item twice.
        while self._replay and not self._degraded:
            item = self._replay.popleft()
            op, rid, actual = item
            generation = self._generation
            try:
                if op == "settle":
                    assert actual is not None
                    await self.primary.settle(rid, actual)
                else:
                    await self.primary.release(rid)
            except BaseException:
                if generation == self._generation:
                    self._replay.appendleft(item)
                raise

    def _book_unmerged(self, keys: tuple[str, ...], key_ttl: float | None, amount: float) -> None:
        """Book spend that only ``local`` holds. Booked while the primary answers (a reservation made during
        the outage and settled after it), it is merged at once."""
        if amount <= 0 or not keys:
            return
        k = tuple(sorted(keys))
        old = self._unmerged.get(k)
        if old is None:
            self._unmerged[k] = (amount, key_ttl)
        else:
            ttl = old[1] if key_ttl is None else key_ttl if old[1] is None else max(old[1], key_ttl)
            self._unmerged[k] = (old[0] + amount, ttl)
        if not self._degraded:
            self._start_carry_over()

    async def _run_merge(self) -> None:
        while not self._degraded:
            if self._merging:
                item = self._merging.popleft()
            elif self._unmerged:
                keys, (amount, key_ttl) = self._unmerged.popitem()
                item = (f"merge:{uuid.uuid4().hex}", keys, key_ttl, amount)  # unique across replicas
            else:
                return
            mid, keys, key_ttl, amount = item
            generation = self._generation
            try:
                await self.primary.reserve([(k, UNLIMITED) for k in keys], 0.0, mid, _MERGE_HOLD_S, key_ttl=key_ttl)
                await self.primary.settle(mid, amount)
            except BaseException:
                if generation == self._generation:
                    self._merging.appendleft(item)  # retried later under the same id
                raise
            _log.info("state_merged keys=%s amount_usd=%.6f", ",".join(keys), amount)

    def _queue_replay(self, op: str, rid: str, actual: float | None) -> None:
        if len(self._replay) >= self._max_replay:
            self._replay.popleft()
            self._replay_dropped += 1
        self._replay.append((op, rid, actual))

    def _serve_locally(self) -> bool:
        """Degraded and not yet time (or someone else is already trying) to retry the primary."""
        return self._degraded and (self._probing or self._clock.now() < self._retry_at)

    async def _primary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the primary; on failure mark degraded and re-raise, on success end any episode."""
        probing = self._degraded
        if probing:
            self._probing = True
        try:
            result = await getattr(self.primary, method)(*args, **kwargs)
        except StateUnavailableError as e:
            self._degrade(e)
            raise
        finally:
            if probing:
                self._probing = False
        if probing:  # a call that started before the episode proves nothing about the primary now
            self._recover()
        return result

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self._serve_locally():
            try:
                return await self._primary(method, *args, **kwargs)
            except StateUnavailableError:
                pass
        return await getattr(self.local, method)(*args, **kwargs)

    async def flush(self) -> None:
        """Wait for a running replay to finish (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ interface

    async def get(self, key: str) -> JSONValue | None:
        return await self._run("get", key)

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        await self._run("set", key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._run("delete", key)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        return float(await self._run("incr", key, amount, ttl))

    async def rate_limit(self, key: str, limit: float, window_s: float, cost: float = 1.0, *,
                         force: bool = False) -> tuple[bool, float]:
        return tuple(await self._run("rate_limit", key, limit, window_s, cost, force=force))  # type: ignore[return-value]

    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        if not self._serve_locally():
            try:
                return tuple(await self._primary("reserve", key_limits, amount, reservation_id, ttl,  # type: ignore[return-value]
                                                 key_ttl=key_ttl))
            except StateUnavailableError:
                # A timeout does not say the reserve was not applied: release that hold once the primary
                # answers (idempotent; a no-op for an id it never held), or it blocks the budget's room
                # until it expires while this reservation is served, and settled, locally.
                self._queue_replay("release", reservation_id, None)
        await self._seed_local(key_limits, key_ttl)
        ok, failed = await self.local.reserve(key_limits, amount, reservation_id, ttl, key_ttl=key_ttl)
        if ok:
            self._local_rids[reservation_id] = key_ttl
            if len(self._local_rids) > self._max_local:
                self._local_rids.pop(next(iter(self._local_rids)))
        return ok, failed

    async def _seed_local(self, key_limits: Sequence[tuple[str, float]], key_ttl: float | None) -> None:
        """Before a reservation is served locally: raise each key's local count to the committed total the
        primary last reported for it (``last_seen``), so a replica that loses Redis goes on from what the
        budget had, not from zero. The seed is never merged back (it is the primary's own figure); spend
        by other replicas since that reading is not known here: that is the outage bound in docs/budgets.md."""
        seen: Mapping[str, float] = getattr(self.primary, "last_seen", None) or {}
        for key, _limit in key_limits:
            total = seen.get(key)
            if not total:
                continue
            spent, reserved = await self.local.usage(key)
            if spent + reserved < total:
                await self.local.add_spent(key, total - spent - reserved, key_ttl=key_ttl)

    async def _finish(self, op: str, reservation_id: str, actual: float | None) -> bool:
        if reservation_id in self._local_rids:
            key_ttl = self._local_rids.pop(reservation_id)
            if actual is not None:
                applied, spent = await self.local.settle_spent(reservation_id, actual)
                if applied and spent:
                    self._book_unmerged(tuple(spent), key_ttl, actual)
                return applied
            return await self.local.release(reservation_id)
        if not self._serve_locally():
            try:
                if actual is not None:
                    return bool(await self._primary("settle", reservation_id, actual))
                return bool(await self._primary("release", reservation_id))
            except StateUnavailableError:
                pass
        # The reservation is held in Redis, which is unreachable: replay once it is back.
        self._queue_replay(op, reservation_id, actual)
        _log.info("state_replay_queued op=%s reservation=%s pending=%d", op, reservation_id, len(self._replay))
        return False

    async def settle(self, reservation_id: str, actual: float) -> bool:
        check_amount(actual, "actual")
        return await self._finish("settle", reservation_id, actual)

    async def release(self, reservation_id: str) -> bool:
        return await self._finish("release", reservation_id, None)

    async def usage(self, key: str) -> tuple[float, float]:
        return tuple(await self._run("usage", key))  # type: ignore[return-value]

    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        if not self._serve_locally():
            try:
                return float(await self._primary("add_spent", key, amount, key_ttl=key_ttl))
            except StateUnavailableError:
                pass
        # Booked locally and merged later. If the primary applied the add but its reply was lost, the amount
        # counts twice in the shared total: the error is on the budget's side (it refuses earlier), never
        # an overrun; reservations (the router's path) have no such case, as settles are idempotent.
        spent = float(await self.local.add_spent(key, amount, key_ttl=key_ttl))
        self._book_unmerged((key,), key_ttl, amount)
        return spent

    async def health(self) -> dict[str, Any]:
        primary = await self.primary.health()
        if primary.get("ok") and self._degraded:
            self._recover()
        return {
            "backend": self.primary.name,
            "ok": True,
            "degraded": self._degraded,
            "degraded_since": self._degraded_since,
            "last_error": self._last_error,
            "degraded_episodes": self._episodes,
            "pending_replay": len(self._replay),
            "pending_merge_usd": self.pending_merge_usd,
            "replay_dropped": self._replay_dropped,
            "primary": primary,
            "local": await self.local.health(),
        }

    @property
    def pending_merge_usd(self) -> float:
        """Spend booked in local state that the primary has not counted yet (merged on recovery)."""
        return sum(a for a, _ in self._unmerged.values()) + sum(m[3] for m in self._merging)

    async def clear(self) -> None:
        self._generation += 1
        self._local_rids.clear()
        self._unmerged.clear()
        self._merging.clear()
        self._replay.clear()
        await self.local.clear()
        await self.primary.clear()

    async def close(self) -> None:
        try:
            await self.flush()
            if self._replay or self._unmerged or self._merging:
                # One last try, whatever the retry time: a replica that stops while degraded would otherwise
                # take its outage spend (and the releases of holds its timeouts may have left) with it.
                self._degraded = False
                await self._carry_over()  # stops at the first failure, which degrades again
        finally:
            await self._close_backends()

    async def _close_backends(self) -> None:
        pending = self.pending_merge_usd
        if pending > 0 or self._replay:
            _log.warning("state_closed_with_pending backend=%s pending_merge_usd=%.6f pending_replay=%d: the "
                         "shared budgets will not count this replica's outage spend", self.primary.name, pending,
                         len(self._replay))
        await self.primary.close()
        await self.local.close()
