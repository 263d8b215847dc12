"""In-process state: the default backend, and the local fallback when Redis is down.

Owns: ``MemoryState``. Every method does its work under one ``threading.Lock`` with no ``await``
inside, so each call is atomic for coroutines on one loop and for threads alike. Time comes from
the injected clock (monotonic ``now()``), so tests move time instead of sleeping.

Values are stored as JSON bytes (orjson) so that callers get fresh copies and the same types the
Redis backend returns. Expired entries are dropped lazily on access and swept in bulk now and then,
so memory stays bounded by the live keys.

Reservations are kept only while they are open: a settle or release drops the record at once, and
only its id is remembered, among the last 5,000 to 10,000 finished ids (``FINISHED_IDS_KEPT``, in
two generations), so a repeated ``reserve`` of a just-finished id is refused, as on Redis. A
reservation whose hold expired unsettled keeps its record for ``record_retention`` seconds more, so
a late settle still books the spend. The hold heap is compacted when stale entries (of reservations
already finished) outnumber the open ones, so at steady state memory follows the requests in
flight, not the request rate. Expired holds are freed by the first call at or after their expiry
(``_purge_due`` says when that is, so calls before it skip the sweep).

``settle_spent`` reports each key's spent from the same locked step as the settle, so the budget
manager's alert check needs no ``usage`` call after it.

Must not touch: the network, other processes, breaker/budget policy.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelplex.resilience.clock import Clock, SystemClock
from modelplex.state.base import (
    EPSILON,
    RESERVATION_RECORD_RETENTION,
    JSONValue,
    KeyLimits,
    StateBackend,
    check_amount,
    check_rate_args,
    check_ttl,
    gcra,
    normalise_key_limits,
)

_SWEEP_EVERY = 1024
"""Rate-limit buckets are swept of full (expired) entries once per this many calls."""

FINISHED_IDS_KEPT = 10_000
"""At most this many of the most recently settled or released reservation ids are remembered (at
least half as many: two generations of half the size each), so that a ``reserve`` repeating one of
them is refused (``(False, None)``) instead of holding again."""

_COMPACT_MIN = 1024
"""The hold heap is rebuilt from the open reservations once it has this many entries and more than
twice as many as there are open reservations (the rest are stale: finished before their hold ran out)."""


@dataclass(slots=True)
class _Usage:
    spent: float = 0.0
    reserved: float = 0.0
    holds: dict[str, float] = field(default_factory=dict)
    expires_at: float = math.inf
    """When the key's usage is forgotten (monotonic seconds; set from ``key_ttl`` on writes)."""


_Reservation = tuple[KeyLimits, float, float | None]
"""An open reservation (held, or its hold expired but not yet settled; finished ones are dropped):
``(limits, hold_until, key_ttl)``, where ``limits`` are the pairs ``reserve`` got (validated, kept
as they are). A plain tuple, as one is made per reservation."""


class MemoryState(StateBackend):
    """Process-local state. Safe for one event loop and for threads; not shared between processes."""

    name = "memory"
    shared = False

    def __init__(self, clock: Clock | None = None, *,
                 record_retention: float = RESERVATION_RECORD_RETENTION) -> None:
        self._clock: Clock = clock or SystemClock()
        self._retention = record_retention
        self._lock = threading.Lock()
        self._kv: dict[str, tuple[bytes, float | None]] = {}
        self._kv_heap: list[tuple[float, str]] = []
        self._tat: dict[str, float] = {}
        self._rate_calls = 0
        self._usage: dict[str, _Usage] = {}
        self._reservations: dict[str, _Reservation] = {}
        self._hold_heap: list[tuple[float, str]] = []  # (hold_until, id); stale once the id finished
        self._expired_heap: list[tuple[float, str]] = []  # (forget_at, id) of holds that ran out unsettled
        self._purge_due = math.inf  # no earlier than this has ``_purge`` anything to do (the heaps' heads)
        self._finished: dict[str, None] = {}  # ids finished recently (the current generation) ...
        self._finished_before: dict[str, None] = {}  # ... and the generation before it

    # ------------------------------------------------------------------ key/value

    def _kv_live(self, key: str, now: float) -> bytes | None:
        entry = self._kv.get(key)
        if entry is None:
            return None
        raw, expires = entry
        if expires is not None and expires <= now:
            del self._kv[key]
            return None
        return raw

    def _kv_store(self, key: str, raw: bytes, ttl: float | None, now: float) -> None:
        expires = None if ttl is None else now + ttl
        self._kv[key] = (raw, expires)
        if expires is not None:
            heapq.heappush(self._kv_heap, (expires, key))
        self._kv_sweep(now)

    def _kv_sweep(self, now: float) -> None:
        heap = self._kv_heap
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            entry = self._kv.get(key)
            if entry is not None and entry[1] == expires:
                del self._kv[key]

    async def get(self, key: str) -> JSONValue | None:
        with self._lock:
            raw = self._kv_live(key, self._clock.now())
        return None if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        check_ttl(ttl)
        raw = orjson.dumps(value)
        with self._lock:
            self._kv_store(key, raw, ttl, self._clock.now())

    async def delete(self, key: str) -> None:
        with self._lock:
            self._kv.pop(key, None)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        check_ttl(ttl)
        check_amount(amount)
        with self._lock:
            now = self._clock.now()
            raw = self._kv_live(key, now)
            current = 0.0
            if raw is not None:
                value = orjson.loads(raw)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError(f"state key {key!r} does not hold a number")
                current = float(value)
            new = current + amount
            if ttl is None and raw is not None:
                expires = self._kv[key][1]
                self._kv[key] = (orjson.dumps(new), expires)
            else:
                self._kv_store(key, orjson.dumps(new), ttl, now)
            return new

    # ------------------------------------------------------------------ rate limits

    async def rate_limit(self, key: str, limit: float, window_s: float, cost: float = 1.0, *,
                         force: bool = False) -> tuple[bool, float]:
        check_rate_args(limit, window_s, cost)
        with self._lock:
            now = self._clock.now()
            store, allowed, retry_after = gcra(self._tat.get(key), now, limit, window_s, cost, force)
            if store is not None:
                self._tat[key] = store
            self._rate_calls += 1
            if self._rate_calls % _SWEEP_EVERY == 0:
                for k in [k for k, tat in self._tat.items() if tat <= now]:
                    del self._tat[k]
            return allowed, retry_after

    # ------------------------------------------------------------------ budget reservations

    def _usage_entry(self, key: str, now: float, create: bool) -> _Usage | None:
        """The key's live usage (an expired one is dropped: its period is over), created if asked."""
        entry = self._usage.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._usage[key]
            entry = None
        if entry is None and create:
            entry = self._usage[key] = _Usage()
        return entry

    def _unhold(self, key: str, rid: str, now: float) -> None:
        entry = self._usage_entry(key, now, create=False)
        if entry is None:
            return
        amount = entry.holds.pop(rid, None)
        if amount is None:
            return
        entry.reserved = entry.reserved - amount if entry.holds and entry.reserved > amount else 0.0

    def _purge(self, now: float) -> None:
        holds = self._hold_heap
        reservations = self._reservations
        while holds and holds[0][0] <= now:
            _, rid = heapq.heappop(holds)
            res = reservations.get(rid)
            if res is not None and res[1] <= now:
                # The hold ran out unsettled (a crashed caller): free it, keep the record for a late settle.
                for key, _limit in res[0]:
                    self._unhold(key, rid, now)
                heapq.heappush(self._expired_heap, (res[1] + self._retention, rid))
        expired = self._expired_heap
        while expired and expired[0][0] <= now:
            _, rid = heapq.heappop(expired)
            res = reservations.get(rid)
            if res is not None and res[1] + self._retention <= now:
                del reservations[rid]
        self._purge_due = min(holds[0][0] if holds else math.inf, expired[0][0] if expired else math.inf)

    @staticmethod
    def _touch(entry: _Usage, key_ttl: float | None, now: float) -> None:
        if key_ttl is not None:
            entry.expires_at = now + key_ttl

    def _compact_holds(self, now: float) -> None:
        """Rebuild the hold heap from the reservations still held (drops entries of finished ones)."""
        heap = [(res[1], rid) for rid, res in self._reservations.items() if res[1] > now]
        heapq.heapify(heap)
        self._hold_heap = heap

    def _remember_finished(self, rid: str) -> None:
        finished = self._finished
        finished[rid] = None
        if len(finished) >= FINISHED_IDS_KEPT // 2:
            self._finished_before = finished
            self._finished = {}

    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        limits = normalise_key_limits(key_limits, amount, ttl)
        check_ttl(key_ttl, "key_ttl")
        lock = self._lock
        lock.acquire()  # not ``with``: this is the hot path, and acquire/try/finally costs half as much
        try:
            now = self._clock.now()
            if now >= self._purge_due:
                self._purge(now)
            if reservation_id in self._reservations:
                return True, None
            if reservation_id in self._finished or reservation_id in self._finished_before:
                return False, None
            usage = self._usage
            for key, limit in limits:  # every key must have room: check all before holding any
                entry = usage.get(key)
                if entry is not None and entry.expires_at <= now:  # _usage_entry's rule, inlined
                    del usage[key]
                    entry = None
                if (amount if entry is None else entry.spent + entry.reserved + amount) > limit + EPSILON:
                    return False, key
            expires_at = None if key_ttl is None else now + key_ttl
            for key, _limit in limits:
                entry = usage.get(key)  # live: the check above, at the same ``now``, dropped it if expired
                if entry is None:
                    entry = usage[key] = _Usage()
                entry.holds[reservation_id] = amount
                entry.reserved += amount
                if expires_at is not None:
                    entry.expires_at = expires_at
            hold_until = now + ttl
            self._reservations[reservation_id] = (limits, hold_until, key_ttl)
            heap = self._hold_heap
            heapq.heappush(heap, (hold_until, reservation_id))
            if hold_until < self._purge_due:
                self._purge_due = hold_until
            if len(heap) >= _COMPACT_MIN and len(heap) > 2 * len(self._reservations):
                self._compact_holds(now)
            return True, None
        finally:
            lock.release()

    def _finish(self, reservation_id: str, actual: float | None) -> dict[str, float] | None:
        """Settle (``actual``) or release (``None``), under the lock. Returns each key's spent
        afterwards, or ``None`` when the reservation is not open (already finished, or unknown)."""
        now = self._clock.now()
        if now >= self._purge_due:
            self._purge(now)
        res = self._reservations.pop(reservation_id, None)
        if res is None:
            return None
        limits, _hold_until, key_ttl = res
        spend = actual is not None
        expires_at = now + key_ttl if spend and key_ttl is not None else None
        usage = self._usage
        spent: dict[str, float] = {}
        for key, _limit in limits:
            entry = usage.get(key)
            if entry is not None and entry.expires_at <= now:  # _usage_entry's rule, inlined
                del usage[key]
                entry = None
            if entry is None:
                if not spend:
                    continue
                entry = usage[key] = _Usage()
            held = entry.holds.pop(reservation_id, None)
            if held is not None:
                entry.reserved = entry.reserved - held if entry.holds and entry.reserved > held else 0.0
            if actual is not None:
                entry.spent += actual
                if expires_at is not None:
                    entry.expires_at = expires_at
            spent[key] = entry.spent
        self._remember_finished(reservation_id)
        return spent

    async def settle(self, reservation_id: str, actual: float) -> bool:
        applied, _spent = await self.settle_spent(reservation_id, actual)
        return applied

    async def settle_spent(self, reservation_id: str, actual: float) -> tuple[bool, dict[str, float] | None]:
        """``settle``, reporting every key's spent as the settle left it (read in the same locked step)."""
        check_amount(actual, "actual")
        lock = self._lock
        lock.acquire()  # not ``with``: see reserve
        try:
            spent = self._finish(reservation_id, float(actual))
        finally:
            lock.release()
        return spent is not None, spent

    async def release(self, reservation_id: str) -> bool:
        with self._lock:
            return self._finish(reservation_id, None) is not None

    async def usage(self, key: str) -> tuple[float, float]:
        with self._lock:
            now = self._clock.now()
            self._purge(now)
            entry = self._usage_entry(key, now, create=False)
            return (entry.spent, entry.reserved) if entry else (0.0, 0.0)

    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        check_amount(amount)
        check_ttl(key_ttl, "key_ttl")
        with self._lock:
            now = self._clock.now()
            entry = self._usage_entry(key, now, create=True)
            assert entry is not None
            entry.spent += amount
            self._touch(entry, key_ttl, now)
            return entry.spent

    # ------------------------------------------------------------------ lifecycle

    async def health(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock.now()
            self._kv_sweep(now)
            self._purge(now)
            return {
                "backend": self.name,
                "ok": True,
                "degraded": False,
                "keys": len(self._kv),
                "rate_buckets": len(self._tat),
                "budget_keys": len(self._usage),
                "reservations": len(self._reservations),
            }

    async def clear(self) -> None:
        with self._lock:
            self._kv.clear()
            self._kv_heap.clear()
            self._tat.clear()
            self._usage.clear()
            self._reservations.clear()
            self._hold_heap.clear()
            self._expired_heap.clear()
            self._purge_due = math.inf
            self._finished = {}
            self._finished_before = {}

    def __repr__(self) -> str:
        return f"MemoryState(clock={self._clock!r})"
