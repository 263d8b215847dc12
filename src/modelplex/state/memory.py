"""In-process state: the default backend, and the local fallback when Redis is down.

Owns: ``MemoryState``. Every method does its work under one ``threading.Lock`` with no ``await``
inside, so each call is atomic for coroutines on one loop and for threads alike. Time comes from
the injected clock (monotonic ``now()``), so tests move time instead of sleeping.

Values are stored as JSON bytes (orjson) so that callers get fresh copies and the same types the
Redis backend returns. Expired entries are dropped lazily on access and swept in bulk now and then,
so memory stays bounded by the live keys.

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


@dataclass(slots=True)
class _Usage:
    spent: float = 0.0
    reserved: float = 0.0
    holds: dict[str, float] = field(default_factory=dict)
    expires_at: float | None = None


@dataclass(slots=True)
class _Reservation:
    keys: tuple[str, ...]
    amount: float
    hold_until: float
    forget_at: float
    key_ttl: float | None
    state: str = "reserved"  # reserved | settled | released


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
        self._hold_heap: list[tuple[float, str]] = []
        self._forget_heap: list[tuple[float, str]] = []

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
        entry.reserved = entry.reserved - amount if entry.holds else 0.0
        if entry.reserved < 0:
            entry.reserved = 0.0

    def _purge(self, now: float) -> None:
        holds = self._hold_heap
        while holds and holds[0][0] <= now:
            _, rid = heapq.heappop(holds)
            res = self._reservations.get(rid)
            if res is not None and res.state == "reserved" and res.hold_until <= now:
                for key in res.keys:
                    self._unhold(key, rid, now)
        forget = self._forget_heap
        while forget and forget[0][0] <= now:
            _, rid = heapq.heappop(forget)
            res = self._reservations.get(rid)
            if res is not None and res.forget_at <= now:
                del self._reservations[rid]

    @staticmethod
    def _touch(entry: _Usage, key_ttl: float | None, now: float) -> None:
        if key_ttl is not None:
            entry.expires_at = now + key_ttl

    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        limits = normalise_key_limits(key_limits, amount, ttl)
        check_ttl(key_ttl, "key_ttl")
        with self._lock:
            now = self._clock.now()
            self._purge(now)
            existing = self._reservations.get(reservation_id)
            if existing is not None:
                return existing.state == "reserved", None
            for key, limit in limits:
                entry = self._usage_entry(key, now, create=False)
                spent, reserved = (entry.spent, entry.reserved) if entry else (0.0, 0.0)
                if spent + reserved + amount > limit + EPSILON:
                    return False, key
            for key, _ in limits:
                entry = self._usage_entry(key, now, create=True)
                assert entry is not None
                entry.holds[reservation_id] = amount
                entry.reserved += amount
                self._touch(entry, key_ttl, now)
            hold_until = now + ttl
            forget_at = hold_until + self._retention
            self._reservations[reservation_id] = _Reservation(
                keys=tuple(k for k, _ in limits), amount=amount, hold_until=hold_until,
                forget_at=forget_at, key_ttl=key_ttl)
            heapq.heappush(self._hold_heap, (hold_until, reservation_id))
            heapq.heappush(self._forget_heap, (forget_at, reservation_id))
            return True, None

    def _finish(self, reservation_id: str, actual: float | None) -> bool:
        now = self._clock.now()
        self._purge(now)
        res = self._reservations.get(reservation_id)
        if res is None or res.state != "reserved":
            return False
        for key in res.keys:
            self._unhold(key, reservation_id, now)
            if actual is not None:
                entry = self._usage_entry(key, now, create=True)
                assert entry is not None
                entry.spent += actual
                self._touch(entry, res.key_ttl, now)
        res.state = "released" if actual is None else "settled"
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
                "reservations": sum(1 for r in self._reservations.values() if r.state == "reserved"),
            }

    async def clear(self) -> None:
        with self._lock:
            self._kv.clear()
            self._kv_heap.clear()
            self._tat.clear()
            self._usage.clear()
            self._reservations.clear()
            self._hold_heap.clear()
            self._forget_heap.clear()

    def __repr__(self) -> str:
        return f"MemoryState(clock={self._clock!r})"
