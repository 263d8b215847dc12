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
flight, not the request rate.

Must not touch: the network, other processes, breaker/budget policy.
"""

from __future__ import annotations

import heapq
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
    expires_at: float | None = None


@dataclass(slots=True)
class _Reservation:
    """An open (held, or hold expired but not yet settled) reservation; finished ones are dropped."""

    keys: tuple[str, ...]
    hold_until: float
    key_ttl: float | None


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
        entry = self._usage.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
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
            if res is not None and res.hold_until <= now:
                # The hold ran out unsettled (a crashed caller): free it, keep the record for a late settle.
                for key in res.keys:
                    self._unhold(key, rid, now)
                heapq.heappush(self._expired_heap, (res.hold_until + self._retention, rid))
        expired = self._expired_heap
        while expired and expired[0][0] <= now:
            _, rid = heapq.heappop(expired)
            res = reservations.get(rid)
            if res is not None and res.hold_until + self._retention <= now:
                del reservations[rid]

    @staticmethod
    def _touch(entry: _Usage, key_ttl: float | None, now: float) -> None:
        if key_ttl is not None:
            entry.expires_at = now + key_ttl

    def _compact_holds(self, now: float) -> None:
        """Rebuild the hold heap from the reservations still held (drops entries of finished ones)."""
        heap = [(res.hold_until, rid) for rid, res in self._reservations.items() if res.hold_until > now]
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
        with self._lock:
            now = self._clock.now()
            self._purge(now)
            if reservation_id in self._reservations:
                return True, None
            if reservation_id in self._finished or reservation_id in self._finished_before:
                return False, None
            entries: list[_Usage | None] = []
            for key, limit in limits:
                entry = self._usage_entry(key, now, create=False)
                if entry is not None:
                    if entry.spent + entry.reserved + amount > limit + EPSILON:
                        return False, key
                elif amount > limit + EPSILON:
                    return False, key
                entries.append(entry)
            usage = self._usage
            expires_at = None if key_ttl is None else now + key_ttl
            for (key, _), entry in zip(limits, entries, strict=True):
                if entry is None:
                    entry = usage[key] = _Usage()
                entry.holds[reservation_id] = amount
                entry.reserved += amount
                if expires_at is not None:
                    entry.expires_at = expires_at
            hold_until = now + ttl
            self._reservations[reservation_id] = _Reservation(tuple([k for k, _ in limits]), hold_until, key_ttl)
            heap = self._hold_heap
            heapq.heappush(heap, (hold_until, reservation_id))
            if len(heap) >= _COMPACT_MIN and len(heap) > 2 * len(self._reservations):
                self._compact_holds(now)
            return True, None

    def _finish(self, reservation_id: str, actual: float | None) -> bool:
        now = self._clock.now()
        self._purge(now)
        res = self._reservations.pop(reservation_id, None)
        if res is None:
            return False
        spend = actual is not None
        expires_at = None if res.key_ttl is None else now + res.key_ttl
        for key in res.keys:
            entry = self._usage_entry(key, now, create=spend)
            if entry is None:
                continue
            held = entry.holds.pop(reservation_id, None)
            if held is not None:
                entry.reserved = entry.reserved - held if entry.holds and entry.reserved > held else 0.0
            if actual is not None:
                entry.spent += actual
                if expires_at is not None:
                    entry.expires_at = expires_at
        self._remember_finished(reservation_id)
        return True

    async def settle(self, reservation_id: str, actual: float) -> bool:
        check_amount(actual, "actual")
        with self._lock:
            return self._finish(reservation_id, float(actual))

    async def release(self, reservation_id: str) -> bool:
        with self._lock:
            return self._finish(reservation_id, None)

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
            self._finished = {}
            self._finished_before = {}

    def __repr__(self) -> str:
        return f"MemoryState(clock={self._clock!r})"
