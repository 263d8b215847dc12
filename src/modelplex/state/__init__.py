"""State backends: where breakers, throttles, rate limits and budget reservations keep their numbers.

Owns: the public names of the state seam and ``make_state()``, which turns a URL from config
into a backend: ``None``/``"memory"`` -> ``MemoryState``; ``redis://``, ``rediss://`` or ``unix://``
-> ``FallbackState(RedisState, MemoryState)``, which serves from local memory while Redis is down.

Must not touch: policy (what the numbers mean belongs to the resilience and budget modules).
Importing this package does not import ``redis``.
"""

from __future__ import annotations

from modelplex.errors import ConfigError
from modelplex.resilience.clock import Clock, SystemClock
from modelplex.state.base import FallbackState, StateBackend, StateUnavailableError
from modelplex.state.memory import MemoryState
from modelplex.state.redis import RedisState, redact_url

__all__ = [
    "FallbackState",
    "MemoryState",
    "RedisState",
    "StateBackend",
    "StateUnavailableError",
    "make_state",
]


def make_state(url: str | None, clock: Clock | None = None, *, prefix: str = "modelplex:",
               timeout: float = 0.25, retry_interval: float = 5.0) -> StateBackend:
    """The backend a ``state:`` URL names. Raises ``ConfigError`` for an unknown scheme."""
    clock = clock or SystemClock()
    if url is None or url.strip() in ("", "memory", "memory://"):
        return MemoryState(clock)
    url = url.strip()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return FallbackState(RedisState(url, prefix=prefix, clock=clock, timeout=timeout),
                             MemoryState(clock), clock=clock, retry_interval=retry_interval)
    raise ConfigError(f"unknown state backend {redact_url(url)!r}: use 'memory' or a redis:// URL",
                      key="state")
