"""AlertSink delivery: subscribers, the log line, and the webhook POST to a loopback aiohttp server
(including a failing and a hanging receiver, which must never raise into the caller)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from modelplex.accounting.alerts import AlertSink, BudgetAlert, format_usd
from modelplex.accounting.budgets import BudgetManager
from modelplex.config import BudgetConfig
from modelplex.resilience.clock import FakeClock
from modelplex.state import MemoryState

ALERT = BudgetAlert(scope="global:daily", period="2026-11-21", limit_usd=50.0, spent_usd=40.5, fraction=0.81,
                    ts=1_795_000_000.0, threshold=0.8, resets_at="2026-11-22T00:00:00+00:00")


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.hang = False
        self.released = asyncio.Event()
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang:
            await self.released.wait()  # never answers in time; let go at teardown
        self.bodies.append(orjson.loads(await request.read()))
        self.headers.append(dict(request.headers))
        self.got.set()
        return web.Response(status=self.status, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/T000/secret-token", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield rec, f"http://127.0.0.1:{port}/hooks/T000/secret-token"
    finally:
        rec.released.set()
        await runner.cleanup()


def test_format_usd() -> None:
    assert format_usd(5) == "$5.00"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0.03) == "$0.03"
    assert format_usd(0.000125) == "$0.000125"
    assert format_usd(0.0302) == "$0.0302"
    assert format_usd(0.5) == "$0.50"
    assert format_usd(0.987654) == "$0.9877"
    assert format_usd(4.9849) == "$4.98"
    assert format_usd(0) == "$0.00"
    assert format_usd(-0.5) == "-$0.50"


def test_alert_message_and_dict() -> None:
    assert ALERT.message() == ("budget global:daily reached 81% of $50.00 ($40.50 spent) in period 2026-11-21, "
                               "alert threshold 80%; resets at 2026-11-22T00:00:00+00:00")
    d = ALERT.to_dict()
    assert d["scope"] == "global:daily" and d["fraction"] == 0.81 and d["resets_at"].endswith("+00:00")


async def test_subscribers_and_log(caplog: pytest.LogCaptureFixture) -> None:
    sink = AlertSink()
    seen: list[BudgetAlert] = []
    awaited: list[str] = []

    async def async_cb(alert: BudgetAlert) -> None:
        await asyncio.sleep(0)
        awaited.append(alert.scope)

    def broken(alert: BudgetAlert) -> None:
        raise RuntimeError("bug in a subscriber")

    unsubscribe = sink.subscribe(seen.append)
    sink.subscribe(broken)
    sink.subscribe(async_cb)
    caplog.set_level(logging.WARNING, logger="modelplex.budget")
    sink.emit(ALERT)
    await sink.drain()
    assert seen == [ALERT] and awaited == ["global:daily"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["budget_alert scope=global:daily period=2026-11-21 spent_usd=40.500000 "
                        "limit_usd=50.000000 fraction=0.8100 threshold=0.80 resets_at=2026-11-22T00:00:00+00:00"]
    assert any(r.levelno == logging.ERROR and "failed" in r.getMessage() for r in caplog.records)
    unsubscribe()
    sink.emit(ALERT)
    assert seen == [ALERT] and sink.emitted == 2


async def test_webhook_receives_the_alert(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    sink = AlertSink(webhook=url, headers={"authorization": "Bearer hook-secret"})
    sink.emit(ALERT)
    assert sink.pending == 1  # fire-and-forget: emit returned before the POST
    await sink.drain()
    assert rec.bodies == [{"type": "budget_alert", "text": ALERT.message(), **ALERT.to_dict()}]
    assert rec.headers[0]["Content-Type"] == "application/json"
    assert rec.headers[0]["Authorization"] == "Bearer hook-secret"
    assert sink.webhook_sent == 1 and sink.webhook_failed == 0
    assert sink.health()["webhook"].startswith("http://127.0.0.1:")  # the path (a token) is not shown


async def test_webhook_uses_the_injected_session(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    async with aiohttp.ClientSession() as session:
        sink = AlertSink(webhook=url, session=lambda: session)
        sink.emit(ALERT)
        await sink.drain()
        assert not session.closed
    assert len(rec.bodies) == 1 and sink.webhook_sent == 1


async def test_webhook_errors_are_logged_not_raised(receiver: tuple[Receiver, str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    rec, url = receiver
    rec.status = 500
    caplog.set_level(logging.ERROR, logger="modelplex.budget")
    sink = AlertSink(webhook=url)
    sink.emit(ALERT)
    await sink.drain()
    assert len(rec.bodies) == 1 and sink.webhook_failed == 1 and sink.webhook_sent == 0
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "HTTP 500" in line and "secret-token" not in line


async def test_a_hanging_webhook_times_out(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.hang = True
    sink = AlertSink(webhook=url, timeout=0.2)
    sink.emit(ALERT)
    await sink.drain()  # bounded by the 0.2 s timeout, not by the receiver
    assert sink.webhook_failed == 1 and rec.bodies == []


async def test_unreachable_webhook_and_bounded_backlog() -> None:
    sink = AlertSink(webhook="http://127.0.0.1:9/unreachable", timeout=1.0, max_pending=2)
    for _ in range(5):
        sink.emit(ALERT)
    assert sink.pending == 2 and sink.webhook_dropped == 3
    await sink.aclose()
    assert sink.pending == 0 and sink.webhook_failed == 2


def test_invalid_webhook_url() -> None:
    with pytest.raises(ValueError):
        AlertSink(webhook="ftp://example.invalid/hook")


async def test_budget_manager_posts_its_alert(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    clock = FakeClock()
    mgr = BudgetManager(BudgetConfig(daily_usd=1.0, alert_at=0.5, webhook=url), MemoryState(clock), clock)
    res = await mgr.reserve(request_id="r", user=None, api_key_id=None, amount=0.6, started=clock.wall())
    assert await mgr.settle(res, 0.6)
    await asyncio.wait_for(rec.got.wait(), 5.0)
    await mgr.aclose()
    [body] = rec.bodies
    assert body["scope"] == "global:daily" and body["threshold"] == 0.5
    assert body["spent_usd"] == pytest.approx(0.6) and body["period"] == "2026-01-01"
