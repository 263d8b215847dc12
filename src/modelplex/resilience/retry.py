"""The one retry policy: after a failed attempt, retry the same target, fall back, or raise.

Owns: ``RetryPolicy`` (named constants, ``decide()`` and the back-off formula), ``RetryDecision``.
Decisions are ``isinstance`` checks on the typed errors of ``modelplex.errors``; nothing reads
message text. The table (first match wins):

=================================================  ==========  =======================================
error                                              action      why
=================================================  ==========  =======================================
not a ``ProviderError`` (bugs, cancellation, ...)  raise       not a provider outcome
``StreamInterruptedError``                         raise       output already reached the caller
``QuotaExceededError`` (402, quota 429)            fallback    no retry: credits do not come back soon
``ContextWindowExceededError`` (413, ...)          fallback    router keeps only larger windows
``ContentPolicyError``                             fallback    router checks config allows it
``BadRequestError`` (400, 422)                     raise       the request is wrong everywhere
``AuthenticationError`` (401)                      fallback    another provider's key may work
``PermissionDeniedError`` (403)                    fallback    another target may allow it
``NotFoundError`` (404)                            fallback    another target may serve it
``exc.retryable``: 408, 409, 429, 5xx, 529,        retry       up to ``max_retries_per_target``,
connection errors, timeouts, malformed 2xx                     then fallback
any other ``ProviderError``                        fallback    not known to be transient
=================================================  ==========  =======================================

Delay of a retry: the error's ``retry_after`` when it is in (0, ``retry_after_cap``]; past the cap
(or infinite) -> fallback now instead of sleeping; absent, zero, negative or NaN -> back-off:
``uniform(0, min(max_delay, base_delay * 2**n))`` ("full" jitter; n = retries already made on this
target). A delay that would reach the deadline -> fallback. ``max_total_attempts`` bounds the whole
request: once reached, every decision is raise.

Must not touch: sleeping (the router sleeps via the clock), breakers, throttles, attempt order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from modelplex.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentPolicyError,
    ContextWindowExceededError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    StreamInterruptedError,
    error_kind,
)

MAX_RETRIES_PER_TARGET = 2
"""Retries of one target after its first attempt (so at most 3 attempts per target)."""
MAX_TOTAL_ATTEMPTS = 6
"""Attempts across all targets for one request, retries and fallbacks together."""
BASE_DELAY = 0.5
"""Seconds: the back-off ceiling of the first retry; it doubles per retry."""
MAX_DELAY = 8.0
"""Seconds: the back-off ceiling never exceeds this."""
RETRY_AFTER_CAP = 30.0
"""Seconds: a provider's Retry-After up to this is honoured; beyond it, fall back instead."""

RetryAction = Literal["retry", "fallback", "raise"]
Jitter = Literal["full", "equal", "none"]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt. ``delay`` (seconds) is non-zero only for ``retry``."""

    action: RetryAction
    delay: float = 0.0
    reason: str = ""


class RetryPolicy:
    """Decides retry / fallback / raise for one failed attempt. Stateless apart from its RNG."""

    __slots__ = ("base_delay", "jitter", "max_delay", "max_retries_per_target", "max_total_attempts",
                 "retry_after_cap", "rng")

    def __init__(self, max_retries_per_target: int = MAX_RETRIES_PER_TARGET,
                 max_total_attempts: int = MAX_TOTAL_ATTEMPTS, base_delay: float = BASE_DELAY,
                 max_delay: float = MAX_DELAY, retry_after_cap: float = RETRY_AFTER_CAP,
                 jitter: Jitter = "full", rng: random.Random | None = None) -> None:
        if not isinstance(max_retries_per_target, int) or max_retries_per_target < 0:
            raise ConfigError(f"expected an integer >= 0, got {max_retries_per_target!r}",
                              key="retry.max_retries_per_target")
        if not isinstance(max_total_attempts, int) or max_total_attempts < 1:
            raise ConfigError(f"expected an integer >= 1, got {max_total_attempts!r}",
                              key="retry.max_total_attempts")
        for name, value in (("base_delay", base_delay), ("max_delay", max_delay),
                            ("retry_after_cap", retry_after_cap)):
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"expected a finite number of seconds >= 0, got {value!r}", key=f"retry.{name}")
        if jitter not in ("full", "equal", "none"):
            raise ConfigError(f"expected 'full', 'equal' or 'none', got {jitter!r}", key="retry.jitter")
        self.max_retries_per_target = max_retries_per_target
        self.max_total_attempts = max_total_attempts
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.retry_after_cap = float(retry_after_cap)
        self.jitter: Jitter = jitter
        self.rng = rng or random.Random()

    def __repr__(self) -> str:
        return (f"RetryPolicy(max_retries_per_target={self.max_retries_per_target}, "
                f"max_total_attempts={self.max_total_attempts}, base_delay={self.base_delay}, "
                f"max_delay={self.max_delay}, retry_after_cap={self.retry_after_cap}, jitter={self.jitter!r})")

    @property
    def max_possible_delay(self) -> float:
        """No retry delay is ever longer than this."""
        return max(self.retry_after_cap, self.max_delay)

    def backoff(self, retries_done: int) -> float:
        """Jittered exponential back-off before retry number ``retries_done + 1`` of a target."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(max(retries_done, 0), 62))
        if self.jitter == "none":
            return ceiling
        if self.jitter == "equal":
            return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)
        return self.rng.uniform(0.0, ceiling)

    def attempts_exhausted(self, total_attempts: int) -> bool:
        return total_attempts >= self.max_total_attempts

    @staticmethod
    def classify(exc: BaseException) -> RetryDecision:
        """The table, without limits or delays: ``retry`` means *retryable*, not *retry now*."""
        if not isinstance(exc, ProviderError):
            return RetryDecision("raise", 0.0, f"not a provider error ({type(exc).__name__})")
        kind = error_kind(exc)
        if isinstance(exc, StreamInterruptedError):
            return RetryDecision("raise", 0.0, "stream interrupted after output reached the caller")
        if isinstance(exc, QuotaExceededError):
            return RetryDecision("fallback", 0.0, "quota exhausted on this target")
        if isinstance(exc, ContextWindowExceededError):
            return RetryDecision("fallback", 0.0, "context window exceeded: needs a larger window")
        if isinstance(exc, ContentPolicyError):
            return RetryDecision("fallback", 0.0, "refused on content policy")
        if isinstance(exc, BadRequestError):
            return RetryDecision("raise", 0.0, "bad request: would fail on every target")
        if isinstance(exc, AuthenticationError | PermissionDeniedError | NotFoundError):
            return RetryDecision("fallback", 0.0, f"{kind}: another target may work")
        if exc.retryable:
            return RetryDecision("retry", 0.0, f"{kind} is transient")
        return RetryDecision("fallback", 0.0, f"{kind} is not retryable")

    def decide(self, exc: BaseException, attempt_index_for_target: int, *,
               deadline_remaining: float | None = None, total_attempts: int | None = None) -> RetryDecision:
        """Decide after attempt ``attempt_index_for_target`` (0 = the first) on one target failed.

        ``deadline_remaining``: seconds left for the whole request (``None``: no deadline).
        ``total_attempts``: attempts made so far for the request, this one included.
        """
        base = self.classify(exc)
        if base.action == "raise":
            return base
        if total_attempts is not None and total_attempts >= self.max_total_attempts:
            return RetryDecision("raise", 0.0, f"max_total_attempts ({self.max_total_attempts}) reached")
        if base.action == "fallback":
            return base
        kind = error_kind(exc)
        if attempt_index_for_target >= self.max_retries_per_target:
            return RetryDecision("fallback", 0.0,
                                 f"{kind}: retries exhausted for this target ({self.max_retries_per_target})")
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after == retry_after and retry_after > 0:
            if retry_after > self.retry_after_cap:
                return RetryDecision("fallback", 0.0,
                                     f"{kind}: Retry-After {retry_after:g}s exceeds the cap "
                                     f"({self.retry_after_cap:g}s)")
            delay, why = float(retry_after), f"Retry-After {retry_after:g}s"
        else:
            delay, why = self.backoff(attempt_index_for_target), "back-off"
        if deadline_remaining is not None and delay >= deadline_remaining:
            return RetryDecision("fallback", 0.0,
                                 f"{kind}: waiting {delay:.3g}s would pass the deadline "
                                 f"({max(deadline_remaining, 0.0):.3g}s left)")
        return RetryDecision("retry", delay,
                             f"{kind}: retry {attempt_index_for_target + 1}/{self.max_retries_per_target} "
                             f"after {delay:.3g}s ({why})")
