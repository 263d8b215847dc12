"""Throttling: a provider's 429 marks its target as throttled until its Retry-After has passed.

Owns: ``ThrottleRegistry``. A throttled target is skipped (or waited for) by the router; this is
not a breaker trip: a 429 says "slow down", not "broken", and it neither counts toward nor opens
a breaker. Entries live in-process (each replica learns of a 429 from its own calls), and expire
on their own; lookups are a dict read and a float compare.

Must not touch: breakers, retry decisions, the state backend, the network.
"""

from __future__ import annotations

import math

from modelplex.resilience.clock import Clock, SystemClock

DEFAULT_THROTTLE_S = 1.0
"""Seconds a target stays throttled after a 429 that carried no usable Retry-After."""
MAX_THROTTLE_S = 300.0
"""A Retry-After longer than this (garbage, or an hour-long quota window) is clamped to it."""


class ThrottleRegistry:
    """Throttled targets by key (the router uses its breaker keys), each with an expiry."""

    __slots__ = ("_clock", "_until", "default_s", "max_s")

    def __init__(self, clock: Clock | None = None, *, default_s: float = DEFAULT_THROTTLE_S,
                 max_s: float = MAX_THROTTLE_S) -> None:
        if not (0 < default_s <= max_s and math.isfinite(max_s)):
            raise ValueError(f"need 0 < default_s <= max_s < inf, got {default_s!r}, {max_s!r}")
        self._clock: Clock = clock or SystemClock()
        self._until: dict[str, float] = {}
        self.default_s = default_s
        self.max_s = max_s

    def mark(self, key: str, retry_after: float | None = None) -> float:
        """Throttle ``key`` for ``retry_after`` seconds (default ``default_s``, clamped to ``max_s``).

        A later expiry never shortens an earlier one. Returns the seconds ``key`` is now throttled for.
        """
        if retry_after is None or retry_after != retry_after or retry_after <= 0:
            seconds = self.default_s
        else:
            seconds = min(float(retry_after), self.max_s)
        now = self._clock.now()
        until = max(self._until.get(key, now), now + seconds)
        self._until[key] = until
        if len(self._until) > 1024:
            self._sweep(now)
        return until - now

    def is_throttled(self, key: str) -> float | None:
        """Seconds until ``key`` may be called again, or ``None`` if it is not throttled."""
        until = self._until.get(key)
        if until is None:
            return None
        remaining = until - self._clock.now()
        if remaining <= 0:
            del self._until[key]
            return None
        return remaining

    def clear(self, key: str | None = None) -> None:
        if key is None:
            self._until.clear()
        else:
            self._until.pop(key, None)

    def snapshot(self) -> dict[str, float]:
        """``{key: seconds remaining}`` for every throttled key."""
        now = self._clock.now()
        self._sweep(now)
        return {k: until - now for k, until in self._until.items()}

    def _sweep(self, now: float) -> None:
        for k in [k for k, until in self._until.items() if until <= now]:
            del self._until[k]
