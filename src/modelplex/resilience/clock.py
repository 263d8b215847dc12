"""The injected clock: monotonic time, wall time and sleeping, behind one small protocol.

Owns: ``Clock`` (the protocol), ``SystemClock`` (the real one) and ``FakeClock`` (tests move time
instead of sleeping: ``advance()`` and an ``async sleep()`` that advances instantly and records).

Breakers, throttles, rate limits, budgets and the state backends take a clock, so that no test
ever waits on the wall clock.

Must not touch: I/O, global state (there is no module-level default clock instance to mutate).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Where time comes from.

    ``now()`` is monotonic seconds: use it for durations and deadlines inside one process.
    ``wall()`` is epoch seconds: use it for anything shared between processes (Redis records,
    reservation expiries) or shown to people.
    """

    def now(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``asyncio.sleep``."""

    __slots__ = ()

    # The builtins themselves, not methods wrapping them: ``clock.now()`` runs a dozen times per routed
    # call, and a Python frame around each would cost more than the clock read.
    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


DEFAULT_FAKE_WALL_START = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where a ``FakeClock``'s wall time starts unless told otherwise."""


class FakeClock:
    """A clock that only moves when told to.

    ``advance(s)`` moves both monotonic and wall time forward by ``s``. ``sleep(s)`` advances by
    ``s`` at once, records ``s`` in ``.sleeps`` and yields to the event loop once, so concurrent
    tasks still interleave. Negative durations are refused: time never runs backwards.
    """

    __slots__ = ("_now", "_wall_offset", "sleeps")

    def __init__(self, start: float = 0.0, *, wall_start: float = DEFAULT_FAKE_WALL_START) -> None:
        self._now = float(start)
        self._wall_offset = float(wall_start) - float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds}))")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.sleeps.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
