"""Resilience: circuit breakers, the retry policy, throttling of 429'd targets and local rate limits.

Owns: the public names of those four pieces and the injected ``Clock``. The router composes
them (breaker.allow -> send -> permit.success/failure; RetryPolicy.decide; ThrottleRegistry.mark);
none of their logic lives in the router.

Must not touch: provider I/O, selection, budgets. State that replicas share goes through
``modelplex.state`` backends.
"""

from __future__ import annotations

from modelplex.resilience.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    BreakerTransition,
    Permit,
)
from modelplex.resilience.clock import Clock, FakeClock, SystemClock
from modelplex.resilience.ratelimit import RateLimiter, RateLimitResult
from modelplex.resilience.retry import RetryDecision, RetryPolicy
from modelplex.resilience.throttle import ThrottleRegistry

__all__ = [
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerState",
    "BreakerTransition",
    "Clock",
    "FakeClock",
    "Permit",
    "RateLimitResult",
    "RateLimiter",
    "RetryDecision",
    "RetryPolicy",
    "SystemClock",
    "ThrottleRegistry",
]
