"""Budget alerts: the event, and where it goes (callbacks, a log line, an optional webhook).

Owns: ``BudgetAlert`` (one scope crossed its alert threshold in one period), ``AlertSink`` (fans an
alert out to subscribed callbacks, logs it on ``modelplex.budget`` at WARNING and POSTs it to a
webhook as a fire-and-forget task with a short timeout) and ``format_usd``.

Deciding *when* to alert (threshold, once per scope per period) belongs to ``accounting.budgets``;
this module only delivers. Delivery never blocks or fails a request: callback errors and webhook
failures are logged and counted, nothing is raised to the caller.

Must not touch: budget state, the router, metric libraries (the gateway subscribes its Prometheus
counter like any other callback).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("modelplex.budget")

AlertCallback = Callable[["BudgetAlert"], object]
"""Called with each alert. May return an awaitable, which is run as a tracked background task."""

SessionFactory = Callable[[], "aiohttp.ClientSession"]
"""Returns the HTTP session to POST with (the router's per-loop session). ``None``: one per POST."""

DEFAULT_WEBHOOK_TIMEOUT = 5.0
"""Seconds a webhook POST may take in total before it is abandoned (and logged)."""


def format_usd(amount: float) -> str:
    """Dollars for people: cents from $1 up (``$4.98``); below, four significant digits and at least
    two decimals (``$0.03``, ``$0.0302``, ``$0.50``, ``$0.000125``), so small limits stay legible."""
    sign = "-" if amount < 0 else ""
    a = abs(amount)
    if a == 0 or a >= 1 or not math.isfinite(a):
        return f"{sign}${a:,.2f}"
    digits = max(2, 3 - math.floor(math.log10(a)))
    whole, _, frac = f"{a:.{digits}f}".rstrip("0").partition(".")
    return f"{sign}${whole}.{frac.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A budget scope's spend crossed ``threshold`` of its limit in ``period``."""

    scope: str
    """``global:daily``, ``user:alice:monthly``, ``key:team-a:daily`` ..."""
    period: str
    """The period label in the budget's time zone: ``2026-11-21`` (daily) or ``2026-11`` (monthly)."""
    limit_usd: float
    spent_usd: float
    fraction: float
    """``spent_usd / limit_usd`` when the alert fired (may exceed 1 after an estimate overrun)."""
    ts: float
    """Wall-clock time (epoch seconds) the alert fired."""
    threshold: float = 0.8
    resets_at: str | None = None
    """ISO 8601 time the period ends, with the budget time zone's offset."""

    def message(self) -> str:
        resets = f"; resets at {self.resets_at}" if self.resets_at else ""
        return (f"budget {self.scope} reached {self.fraction:.0%} of {format_usd(self.limit_usd)} "
                f"({format_usd(self.spent_usd)} spent) in period {self.period}, alert threshold "
                f"{self.threshold:.0%}{resets}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _webhook_host(url: str) -> str:
    """Scheme and host only: webhook paths often embed a token (Slack, Teams), so never log them."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


class AlertSink:
    """Delivers ``BudgetAlert`` events.

    ``emit(alert)`` is synchronous and cheap: it logs, calls each subscriber (errors are logged,
    never raised), and schedules the webhook POST as a background task on the running loop. The
    webhook body is the alert's fields plus ``type: "budget_alert"`` and a ``text`` line (so a
    Slack-style incoming webhook shows something readable without a template).

    ``drain()`` waits for pending deliveries (tests, graceful shutdown); ``aclose()`` drains with a
    bound and cancels what is left.
    """

    def __init__(self, *, webhook: str | None = None, session: SessionFactory | None = None,
                 timeout: float = DEFAULT_WEBHOOK_TIMEOUT, headers: Mapping[str, str] | None = None,
                 max_pending: int = 100) -> None:
        if webhook is not None and urlsplit(webhook).scheme not in ("http", "https"):
            raise ValueError("budget webhook must be an http:// or https:// URL")
        if not timeout > 0:
            raise ValueError(f"webhook timeout must be positive, got {timeout!r}")
        self.webhook = webhook
        self._session = session
        self._timeout = float(timeout)
        self._headers = {"content-type": "application/json", **dict(headers or {})}
        self._max_pending = max_pending
        self._callbacks: list[AlertCallback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.emitted = 0
        self.webhook_sent = 0
        self.webhook_failed = 0
        self.webhook_dropped = 0

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, callback: AlertCallback) -> Callable[[], None]:
        """Call ``callback(alert)`` for every alert; returns a function that unsubscribes it."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    # ------------------------------------------------------------------ delivery

    def emit(self, alert: BudgetAlert) -> None:
        self.emitted += 1
        log.warning("budget_alert scope=%s period=%s spent_usd=%.6f limit_usd=%.6f fraction=%.4f "
                    "threshold=%.2f resets_at=%s", alert.scope, alert.period, alert.spent_usd,
                    alert.limit_usd, alert.fraction, alert.threshold, alert.resets_at)
        for cb in list(self._callbacks):
            try:
                result = cb(alert)
            except Exception:  # a subscriber must never break a request
                log.exception("budget alert callback %r failed", cb)
                continue
            if inspect.isawaitable(result):
                self._spawn(self._await_callback(cb, result))
        if self.webhook is not None:
            if len(self._tasks) >= self._max_pending:
                self.webhook_dropped += 1
                log.error("budget alert webhook to %s dropped: %d deliveries already pending",
                          _webhook_host(self.webhook), len(self._tasks))
                return
            self._spawn(self._post(self.webhook, alert))

    def _spawn(self, coro: Awaitable[None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            close = getattr(coro, "close", None)
            if close is not None:
                close()
            log.error("budget alert delivery skipped: no running event loop")
            return
        task = loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _await_callback(cb: AlertCallback, result: Awaitable[Any]) -> None:
        try:
            await result
        except Exception:
            log.exception("budget alert callback %r failed", cb)

    async def _post(self, url: str, alert: BudgetAlert) -> None:
        import aiohttp

        body = orjson.dumps({"type": "budget_alert", "text": alert.message(), **alert.to_dict()})
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        started = time.perf_counter()
        try:
            if self._session is not None:
                await self._send(self._session(), url, body, timeout)
            else:
                async with aiohttp.ClientSession() as session:
                    await self._send(session, url, body, timeout)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            self.webhook_failed += 1
            log.error("budget alert webhook to %s failed after %.2fs: %s: %s", _webhook_host(url),
                      time.perf_counter() - started, type(e).__name__, e)
            return
        self.webhook_sent += 1

    async def _send(self, session: aiohttp.ClientSession, url: str, body: bytes,
                    timeout: aiohttp.ClientTimeout) -> None:
        async with session.post(url, data=body, headers=self._headers, timeout=timeout) as resp:
            if resp.status >= 400:
                raise ValueError(f"HTTP {resp.status}")
            await resp.read()

    # ------------------------------------------------------------------ lifecycle

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every scheduled delivery has finished (each is bounded by its timeout)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, timeout: float | None = None) -> None:
        """Drain for up to ``timeout`` seconds (default: the webhook timeout), then cancel the rest."""
        if not self._tasks:
            return
        try:
            async with asyncio.timeout(self._timeout if timeout is None else timeout):
                await self.drain()
        except TimeoutError:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def health(self) -> dict[str, Any]:
        return {"webhook": _webhook_host(self.webhook) if self.webhook else None, "emitted": self.emitted,
                "webhook_sent": self.webhook_sent, "webhook_failed": self.webhook_failed,
                "webhook_dropped": self.webhook_dropped, "pending": self.pending}
