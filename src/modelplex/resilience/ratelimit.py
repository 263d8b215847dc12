"""Local rate limits: requests and tokens per minute per key (the gateway's API keys).

Owns: ``RateLimiter`` and ``RateLimitResult``. Each limit is a GCRA bucket in the state backend
(``StateBackend.rate_limit``): ``limit`` units per ``window_s`` (60 s: per minute), refilled
continuously, bursts up to ``limit``. With Redis the buckets are shared by every replica.

Tokens are charged in two steps: ``check``/``acquire`` take the *estimated* tokens before the
call, and ``record_tokens`` charges the difference once the actual usage is known (forced: the
call already happened, so the bucket may go into debt and later requests wait for it to refill).

Must not touch: provider 429s (those are ``ThrottleRegistry``), budgets, HTTP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from modelplex.errors import RateLimitExceededError
from modelplex.state.base import StateBackend

WINDOW_S = 60.0
"""The RPM/TPM window."""


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """``allowed``; otherwise which limit refused (``"rpm"``/``"tpm"``) and the seconds to wait
    (``None`` when the request can never fit, e.g. more tokens than the per-minute limit)."""

    allowed: bool
    limit: Literal["rpm", "tpm"] | None = None
    retry_after: float | None = None


class RateLimiter:
    """RPM/TPM limits per key over a state backend."""

    __slots__ = ("_prefix", "_state", "window_s")

    def __init__(self, state: StateBackend, *, window_s: float = WINDOW_S, prefix: str = "ratelimit:") -> None:
        self._state = state
        self._prefix = prefix
        self.window_s = window_s

    def _key(self, key: str, kind: str) -> str:
        return f"{self._prefix}{key}:{kind}"

    async def check(self, key: str, *, rpm: float | None = None, tpm: float | None = None,
                    tokens: float = 0) -> RateLimitResult:
        """Take one request and ``tokens`` from ``key``'s buckets, or nothing if either refuses.

        With ``tokens == 0`` the TPM bucket is only checked (a debt from ``record_tokens`` refuses).
        """
        took_tokens = False
        if tpm is not None:
            allowed, retry_after = await self._state.rate_limit(self._key(key, "tpm"), tpm, self.window_s,
                                                                max(float(tokens), 0.0))
            if not allowed:
                return RateLimitResult(False, "tpm", None if math.isinf(retry_after) else retry_after)
            took_tokens = tokens > 0
        if rpm is not None:
            allowed, retry_after = await self._state.rate_limit(self._key(key, "rpm"), rpm, self.window_s, 1)
            if not allowed:
                if took_tokens and tpm is not None:  # give the tokens back: refused as a whole
                    await self._state.rate_limit(self._key(key, "tpm"), tpm, self.window_s, -float(tokens))
                return RateLimitResult(False, "rpm", None if math.isinf(retry_after) else retry_after)
        return RateLimitResult(True)

    async def acquire(self, key: str, *, rpm: float | None = None, tpm: float | None = None,
                      tokens: float = 0) -> None:
        """``check``, raising ``RateLimitExceededError`` (with ``retry_after``) when refused."""
        result = await self.check(key, rpm=rpm, tpm=tpm, tokens=tokens)
        if result.allowed:
            return
        if result.retry_after is None:
            limit = tpm if result.limit == "tpm" else rpm
            raise RateLimitExceededError(f"request needs {tokens:g} tokens, more than the {result.limit} "
                                         f"limit of {limit:g} for {key!r}")
        raise RateLimitExceededError(f"{result.limit} limit reached for {key!r}; retry in "
                                     f"{result.retry_after:.2f}s", retry_after=result.retry_after)

    async def record_tokens(self, key: str, *, tpm: float | None, estimated: float, actual: float) -> None:
        """Charge (or refund) ``actual - estimated`` tokens once the call's usage is known."""
        if tpm is None:
            return
        delta = float(actual) - float(estimated)
        if delta:
            await self._state.rate_limit(self._key(key, "tpm"), tpm, self.window_s, delta, force=True)
