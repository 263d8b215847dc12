"""A state backend that suspends on every call, for tests of code that must survive a network backend.

Owns: ``SuspendingState`` — the in-process ``MemoryState`` behind an interface that yields to the
event loop before every operation (as Redis does) and says whether it is ``shared``. Code that takes a
fast path for in-process state (no shielding, no overlapped reads) takes its network path with it,
without a server: cancellation can land at every ``await``.

Must not touch: the network, real backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from modelplex.state.base import StateBackend
from modelplex.state.memory import MemoryState


class SuspendingState(StateBackend):
    """``inner`` (a ``MemoryState``), with one ``asyncio.sleep(0)`` before each call."""

    name = "suspending"

    def __init__(self, inner: MemoryState, *, shared: bool = False) -> None:
        self.inner = inner
        self.shared = shared

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await getattr(self.inner, method)(*args, **kwargs)

    async def get(self, key: str) -> Any:
        return await self._call("get", key)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self._call("set", key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        return await self._call("incr", key, amount, ttl)

    async def rate_limit(self, key: str, limit: float, window_s: float, cost: float = 1.0, *,
                         force: bool = False) -> tuple[bool, float]:
        return await self._call("rate_limit", key, limit, window_s, cost, force=force)

    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        return await self._call("reserve", key_limits, amount, reservation_id, ttl, key_ttl=key_ttl)

    async def settle(self, reservation_id: str, actual: float) -> bool:
        return await self._call("settle", reservation_id, actual)

    async def release(self, reservation_id: str) -> bool:
        return await self._call("release", reservation_id)

    async def usage(self, key: str) -> tuple[float, float]:
        return await self._call("usage", key)

    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        return await self._call("add_spent", key, amount, key_ttl=key_ttl)

    async def health(self) -> dict[str, Any]:
        return await self._call("health")

    async def clear(self) -> None:
        await self._call("clear")


__all__ = ["SuspendingState"]
