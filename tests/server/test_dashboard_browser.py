"""The dashboard as a person sees it: headless Chromium (Debian's ``chromium`` package, driven by
Playwright; no browser is downloaded) against a live gateway with real traffic — a fallback, an open
breaker, an embedding — checking the rendered numbers, the live refresh and the admin-key prompt.

Skips when Chromium or Playwright is missing; fails instead under ``CI=true`` (``make test`` installs
``chromium`` for CI). A screenshot goes to ``$MODELPLEX_SCREENSHOT_DIR`` (default: the test's tmp dir).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_testkit import ADMIN_KEY, LiveGateway, gateway_config

from modelplex.server import create_app
from modelplex.server.dashboard_routes import mount_dashboard
from modelplex.testing.faults import Fault
from modelplex.testing.server import FakeProviderServer

pytestmark = pytest.mark.browser

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("MODELPLEX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage"]


def _require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium ({CHROMIUM}; apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright)")
    if not missing:
        return
    message = "headless browser test needs " + " and ".join(missing)
    if CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def traffic(fake: FakeProviderServer) -> Iterator[dict[str, Any]]:
    """A live gateway with the dashboard, after: 5 chat requests, one that falls back from the failing
    Anthropic-protocol provider (whose breaker opens), and one embedding."""
    cfg = gateway_config(fake.base_url, routing={"fallback_paths": {"fakeclaude/sonnet": ["fakeai/large"]},
                                                 "breaker": {"failure_threshold": 2, "recovery_time": 600}})
    app = create_app(cfg, env={})
    mount_dashboard(app)
    gw = LiveGateway(app, fake).start()
    key = gw.create_key()
    auth = {"authorization": f"Bearer {key}"}
    ids: list[str] = []
    try:
        with gw.http() as c:
            for i in range(5):
                r = c.post("/v1/chat/completions", headers=auth,
                           json={"model": "fakeai/small", "messages": [{"role": "user", "content": f"q{i}"}]})
                assert r.status_code == 200
                ids.append(r.headers["x-modelplex-request-id"])
            fake.plan.fail_next(Fault("server_error", status=500), times=-1, protocol="anthropic")
            r = c.post("/v1/chat/completions", headers=auth,
                       json={"model": "fakeclaude/sonnet", "messages": [{"role": "user", "content": "fall back"}]})
            assert r.status_code == 200 and r.headers["x-modelplex-fallback"] == "true"
            fallback_id = r.headers["x-modelplex-request-id"]
            ids.append(fallback_id)
            r = c.post("/v1/embeddings", headers=auth, json={"model": "fakeai/embed", "input": ["x", "y"]})
            assert r.status_code == 200
            ids.append(r.headers["x-modelplex-request-id"])
        yield {"gw": gw, "ids": ids, "fallback_id": fallback_id, "auth": auth}
    finally:
        gw.stop()


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("MODELPLEX_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_dashboard_renders_the_traffic(browser: Any, traffic: dict[str, Any], tmp_path: Path) -> None:
    gw: LiveGateway = traffic["gw"]
    ids: list[str] = traffic["ids"]
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{gw.url}/dashboard?key={ADMIN_KEY}")
    page.wait_for_function("() => window.__modelplexDashboard && window.__modelplexDashboard.renders > 0",
                           timeout=15_000)
    assert "key=" not in page.url  # the key left the address bar (it stays in sessionStorage)
    assert page.is_hidden("#auth")

    assert page.inner_text("#kpi-requests .value") == str(len(ids))
    assert page.inner_text("#kpi-fallbacks .value") == "1"
    assert page.inner_text("#kpi-success .value") == "100%"
    assert page.inner_text("#kpi-breakers .value") == "2"  # provider and model breakers of fakeclaude

    rows = page.locator("#decisions tbody tr")
    shown = [rows.nth(i).get_attribute("data-request-id") for i in range(len(ids))]
    assert shown == list(reversed(ids))  # newest first
    fallback_row = page.locator(f'#decisions tr[data-request-id="{traffic["fallback_id"]}"]')
    assert fallback_row.get_attribute("data-fallback") == "true"
    assert "fallback" in fallback_row.locator(".flag").inner_text()
    chips = fallback_row.locator(".chip")
    assert chips.count() >= 2
    assert chips.first.get_attribute("data-outcome") == "error" and "500" in chips.first.inner_text()
    assert chips.last.get_attribute("data-outcome") == "success" and "large" in chips.last.inner_text()

    breaker = page.locator('#breakers li[data-breaker-key="provider:fakeclaude"]')
    assert breaker.get_attribute("data-state") == "open"
    assert breaker.locator(".state").inner_text().upper() == "OPEN"
    assert page.locator('#breakers li[data-breaker-key="provider:fakeai"]').get_attribute("data-state") == "closed"

    small = page.locator('#models tr[data-model="fakeai/small"] td')
    assert small.nth(2).inner_text() == "5"
    assert page.locator("#chart-requests rect[fill]").count() >= 3  # stacked columns, one per model
    assert page.locator("#chart-latency path.line, #chart-latency circle").count() >= 1
    assert "fakeai/small" in page.inner_text("#legend-requests")
    assert page.inner_text("#budgets").strip() == "no budgets configured"
    assert "no strategy (model named)" in page.inner_text("#strategies")

    path = _shot(page, tmp_path, "dashboard.png")
    assert path.stat().st_size > 10_000
    assert errors == []


def test_dashboard_refreshes_live(browser: Any, traffic: dict[str, Any]) -> None:
    gw: LiveGateway = traffic["gw"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{gw.url}/dashboard?key={ADMIN_KEY}")
    page.wait_for_function("() => window.__modelplexDashboard && window.__modelplexDashboard.renders > 0",
                           timeout=15_000)
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        r = c.post("/v1/chat/completions", headers=traffic["auth"],
                   json={"model": "fakeai/small", "messages": [{"role": "user", "content": "one more"}]})
        assert r.status_code == 200
        new_id = r.headers["x-modelplex-request-id"]
    page.wait_for_function(
        "(id) => document.querySelector('#decisions tbody tr')?.getAttribute('data-request-id') === id",
        arg=new_id, timeout=15_000)  # the page polls every 2 s
    assert page.inner_text("#kpi-requests .value") == str(len(traffic["ids"]) + 1)


def test_dashboard_asks_for_the_admin_key(browser: Any, traffic: dict[str, Any], tmp_path: Path) -> None:
    gw: LiveGateway = traffic["gw"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{gw.url}/dashboard")
    page.wait_for_selector("#auth-form", state="visible", timeout=15_000)
    assert page.is_hidden("#main")
    page.fill("#auth-key", "not-the-admin-key")
    page.click("#auth-form button[type=submit]")
    page.wait_for_selector("#auth-error", state="visible", timeout=15_000)
    assert "refused" in page.inner_text("#auth-error")
    page.fill("#auth-key", ADMIN_KEY)
    page.click("#auth-form button[type=submit]")
    page.wait_for_function("() => window.__modelplexDashboard.renders > 0", timeout=15_000)
    assert page.is_visible("#main") and page.inner_text("#kpi-requests .value") == str(len(traffic["ids"]))
    assert page.evaluate("() => sessionStorage.getItem('modelplex.dashboard.adminKey')") == ADMIN_KEY
    _shot(page, tmp_path, "dashboard-after-login.png")


def test_dashboard_shows_breakers_due_for_a_probe_and_a_zero_budget_as_they_are(
        browser: Any, fake: FakeProviderServer, tmp_path: Path) -> None:
    """A breaker past its recovery time is half-open ("probe due"), not counted as open; a key whose
    daily limit is $0 refuses everything, so its budget is shown full and blocked, not at 0%."""
    import time

    cfg = gateway_config(fake.base_url, routing={"fallback_paths": {"fakeclaude/sonnet": ["fakeai/large"]},
                                                 "breaker": {"failure_threshold": 2, "recovery_time": 1.0}})
    app = create_app(cfg, env={})
    mount_dashboard(app)
    gw = LiveGateway(app, fake).start()
    try:
        key = gw.create_key()
        blocked_id = gw.create_key(name="blocked", daily_usd=0).split("-")[1]
        with gw.http() as c:
            fake.plan.fail_next(Fault("server_error", status=500), times=-1, protocol="anthropic")
            r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "fakeclaude/sonnet", "messages": [{"role": "user", "content": "fall back"}]})
            assert r.status_code == 200 and r.headers["x-modelplex-fallback"] == "true"
        time.sleep(1.2)  # past the recovery time; no request has come to move the breakers to half-open
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{gw.url}/dashboard?key={ADMIN_KEY}")
        page.wait_for_function("() => window.__modelplexDashboard && window.__modelplexDashboard.renders > 0",
                               timeout=15_000)
        assert page.inner_text("#kpi-breakers .value") == "0"
        assert "2 half-open" in page.inner_text("#kpi-breakers")
        breaker = page.locator('#breakers li[data-breaker-key="provider:fakeclaude"]')
        assert breaker.get_attribute("data-state") == "half_open"
        assert "probe due" in breaker.locator(".meta").inner_text()
        assert "retry in 0.0 s" not in page.inner_text("#breakers")
        budget = page.locator(f'#budgets [data-scope="key:{blocked_id}:daily"]')
        assert budget.get_attribute("data-blocked") == "true"
        text = budget.locator(".top").inner_text()
        assert "(100%)" in text and "blocked" in text.lower(), text
        assert "0.0%" not in text
        _shot(page, tmp_path, "dashboard-probe-due-and-blocked.png")
        assert errors == []
    finally:
        gw.stop()
