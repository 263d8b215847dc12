"""The dashboard's feed (time buckets, splits, decisions, breaker history) and its routes: the page,
its assets (served locally, no CDN) and the admin-protected JSON summary, against a live gateway."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from gateway_testkit import ADMIN_HEADERS, LiveGateway, gateway_config, wait_for

from modelplex.accounting.records import UsageRecord
from modelplex.errors import ServerError
from modelplex.resilience.breaker import BreakerState, BreakerTransition
from modelplex.router import Router
from modelplex.server import create_app
from modelplex.server.dashboard_routes import (
    ASSETS,
    LATENCY_RESERVOIR,
    MAX_POINTS,
    NO_MODEL,
    TOP_SERIES,
    DashboardFeed,
    dashboard_routes,
    feed_of,
    mount_dashboard,
)
from modelplex.testing.faults import Fault
from modelplex.testing.server import FakeProviderServer

T0 = 1_800_000_000.0  # a multiple of every bucket width used here


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(rid: str, ts: float, *, model: str | None = "p/m", provider: str | None = "p", latency: float = 100.0,
        cost: float = 0.01, success: bool = True, fallback: bool = False, task: str | None = "reasoning",
        strategy: str | None = "balanced", arm: str | None = None,
        attempts: list[dict[str, Any]] | None = None) -> UsageRecord:
    if attempts is None:
        attempts = [{"target": model, "provider": provider, "outcome": "success" if success else "error",
                     "status_code": None if success else 503, "latency_ms": latency, "retry": 0}]
    return UsageRecord(request_id=rid, ts=ts, task=task, strategy=strategy, experiment_arm=arm, model=model,
                       provider=provider, attempts=attempts, attempt_count=len(attempts), fallback_used=fallback,
                       cost_usd=cost, latency_ms=latency, success=success, input_tokens=10, output_tokens=5)


# ------------------------------------------------------------------------------------------ the feed


def test_totals_splits_and_decisions_newest_first() -> None:
    clock = Clock(T0 + 30)
    feed = DashboardFeed(clock=clock)
    feed.observe(rec("a", T0, cost=0.5, arm="balanced"))
    feed.observe(rec("b", T0 + 1, cost=0.25, fallback=True, strategy="cost_optimized", arm="cost_optimized",
                     task="job_parsing"))
    feed.observe(rec("c", T0 + 2, success=False, model=None, provider=None, cost=0.0, task="job_parsing",
                     attempts=[{"target": "q/x", "provider": "q", "outcome": "error", "status_code": 529}]))
    snap = feed.snapshot(900, 2)
    totals = snap["totals"]
    assert (totals["requests"], totals["successes"], totals["failures"], totals["fallbacks"]) == (3, 2, 1, 1)
    assert totals["cost_usd"] == pytest.approx(0.75)
    assert (totals["input_tokens"], totals["output_tokens"]) == (30, 15)
    assert [d["request_id"] for d in snap["decisions"]] == ["c", "b"]
    failed = snap["decisions"][0]
    assert failed["served"] is False and failed["model"] == "q/x"  # charged to the last model called
    assert failed["attempts"][0]["status_code"] == 529
    arms = {(r["strategy"], r["experiment_arm"]): r["requests"] for r in snap["strategies"]}
    assert arms == {("balanced", "balanced"): 1, ("cost_optimized", "cost_optimized"): 1, ("balanced", None): 1}
    tasks = {r["task"]: (r["requests"], r["successes"]) for r in snap["tasks"]}
    assert tasks == {"job_parsing": (2, 1), "reasoning": (1, 1)}
    assert snap["tasks"][0]["task"] == "job_parsing"  # busiest first


def test_series_are_bucketed_by_completion_time_with_nearest_rank_percentiles() -> None:
    clock = Clock(T0)
    feed = DashboardFeed(bucket_s=5, clock=clock)
    clock.now = T0 + 50  # the 60 s window is [T0 - 5, T0 + 55)
    for i, lat in enumerate([10.0, 20.0, 30.0, 40.0]):
        feed.observe(rec(f"a{i}", T0, latency=lat, cost=0.1))  # all end within [T0, T0 + 5)
    feed.observe(rec("b", T0 + 12, model="p/n", latency=7.0, cost=0.2))  # ends in [T0 + 10, T0 + 15)
    feed.observe(rec("c", T0 + 12, success=False, latency=3.0, cost=0.0))
    snap = feed.snapshot(60)
    s = snap["series"]
    assert snap["bucket_s"] == 5
    t = s["t"]
    assert t == sorted(t) and all(b - a == 5 for a, b in itertools.pairwise(t))
    i0, i2 = t.index(T0), t.index(T0 + 10)
    total = s["total"]
    assert total["requests"][i0] == 4 and total["requests"][i2] == 2
    assert total["errors"][i2] == 1
    assert total["cost_usd"][i0] == pytest.approx(0.4)
    assert total["p50_ms"][i0] == 20.0 and total["p95_ms"][i0] == 40.0  # nearest rank
    assert total["p50_ms"][t.index(T0 + 5)] is None  # an empty bucket has no percentile
    by_model = {x["name"]: x for x in s["by_model"]}
    assert by_model["p/m"]["requests"][i0] == 4 and by_model["p/m"]["requests"][i2] == 1
    assert by_model["p/n"]["p95_ms"][i2] == 7.0
    assert by_model["p/m"]["p95_ms"][i2] is None  # only failed requests there: no latency
    assert [x["name"] for x in s["by_provider"]] == ["p"]
    models = {r["model"]: r for r in snap["window"]["models"]}
    assert models["p/m"]["requests"] == 5 and models["p/m"]["errors"] == 1 and models["p/m"]["p50_ms"] == 20.0


def test_busiest_series_are_kept_and_the_rest_summed_as_other() -> None:
    clock = Clock(T0)
    feed = DashboardFeed(clock=clock)
    clock.now = T0 + 30
    n = 0
    for m in range(TOP_SERIES + 3):
        for _ in range(TOP_SERIES + 3 - m):  # model 0 busiest
            feed.observe(rec(f"r{n}", T0, model=f"p/m{m}", cost=1.0))
            n += 1
    series = feed.snapshot(300)["series"]["by_model"]
    names = [x["name"] for x in series]
    assert names == [f"p/m{i}" for i in range(TOP_SERIES)] + ["other"]
    other = series[-1]
    assert sum(other["requests"]) == 3 + 2 + 1 and sum(other["cost_usd"]) == pytest.approx(6.0)


def test_wide_windows_merge_buckets_and_young_gateways_plot_from_their_start() -> None:
    clock = Clock(T0)
    feed = DashboardFeed(bucket_s=5, retention_s=3600, clock=clock)
    young = feed.snapshot(3600)
    assert young["window_s"] == 3600 and young["span_s"] == 60 and young["bucket_s"] == 5
    clock.now = T0 + 7200
    old = feed.snapshot(3600)
    assert old["span_s"] == 3600 and len(old["series"]["t"]) <= MAX_POINTS
    assert old["bucket_s"] == 30  # 3600 s / 120 points


def test_buckets_older_than_the_retention_are_dropped() -> None:
    clock = Clock(T0)
    feed = DashboardFeed(bucket_s=5, retention_s=60, clock=clock)
    feed.observe(rec("old", T0))
    clock.now = T0 + 300
    feed.observe(rec("new", T0 + 300))
    assert len(feed._buckets) == 1
    snap = feed.snapshot(60)
    assert snap["window"]["requests"] == 1 and snap["totals"]["requests"] == 2  # totals are since start


def test_latency_reservoir_is_bounded() -> None:
    clock = Clock(T0 + 10)
    feed = DashboardFeed(clock=clock)
    for i in range(LATENCY_RESERVOIR + 500):
        feed.observe(rec(f"r{i}", T0, latency=float(i % 100)))
    [bucket] = feed._buckets.values()
    [agg] = bucket.values()
    assert agg.requests == LATENCY_RESERVOIR + 500 and len(agg.latencies) == LATENCY_RESERVOIR


def test_a_request_that_called_no_model_is_shown_as_such() -> None:
    feed = DashboardFeed(clock=Clock(T0 + 10))
    feed.observe(rec("x", T0, model=None, provider=None, success=False,
                     attempts=[{"target": "p/m", "provider": "p", "outcome": "skipped_breaker"}]))
    snap = feed.snapshot(60)
    assert [r["model"] for r in snap["window"]["models"]] == [NO_MODEL]
    assert snap["decisions"][0]["attempts"][0]["outcome"] == "skipped_breaker"


def test_breaker_transitions_count_trips_newest_first() -> None:
    feed = DashboardFeed(clock=Clock(T0))
    feed.on_transition(BreakerTransition("provider:p", BreakerState.CLOSED, BreakerState.OPEN, "3 failures", T0))
    feed.on_transition(BreakerTransition("provider:p", BreakerState.OPEN, BreakerState.HALF_OPEN, "elapsed", T0 + 5))
    feed.on_transition(BreakerTransition("provider:p", BreakerState.HALF_OPEN, BreakerState.OPEN, "probe", T0 + 6))
    snap = feed.snapshot()
    assert snap["breaker_trips"] == {"provider:p": 2}
    assert [(e["from"], e["to"]) for e in snap["breaker_transitions"]] == [
        ("half_open", "open"), ("open", "half_open"), ("closed", "open")]


def test_breakers_past_their_recovery_time_are_not_reported_open() -> None:
    """An OPEN breaker whose recovery time has passed is half-open to the next request: the summary (and
    so the OPEN BREAKERS KPI, which counts ``state == "open"``) must not keep calling it open."""
    import asyncio

    from modelplex.resilience import BreakerConfig, BreakerRegistry, FakeClock
    from modelplex.server.dashboard_routes import summary_payload

    router = Router({"accounting": {"sink": "none"}}, env={})
    clock = FakeClock()
    router.breakers = BreakerRegistry(BreakerConfig(failure_threshold=1, recovery_time=60.0), clock=clock)
    feed = DashboardFeed(clock=clock.wall)
    feed.attach(router)
    for key in ("provider:old", "provider:new"):
        permit = router.breakers.allow_sync(key)
        assert permit is not None
        permit.failure(ServerError("boom", status_code=500))
        clock.advance(30.0)  # provider:old opened 60 s ago now, provider:new 30 s ago
    body = asyncio.run(summary_payload(router, feed))
    rows = {b["key"]: b for b in body["breakers"]}
    assert (rows["provider:new"]["state"], rows["provider:new"]["probe_due"]) == ("open", False)
    assert rows["provider:new"]["retry_in_s"] == pytest.approx(30.0)
    assert (rows["provider:old"]["state"], rows["provider:old"]["probe_due"]) == ("half_open", True)
    assert rows["provider:old"]["retry_in_s"] == 0.0
    assert [b["key"] for b in body["breakers"]] == ["provider:new", "provider:old"]  # really open first
    assert sum(1 for b in body["breakers"] if b["state"] == "open") == 1  # what the KPI shows
    clock.advance(3600.0)  # nobody has called either since: neither is open any more
    body = asyncio.run(summary_payload(router, feed))
    assert [b["state"] for b in body["breakers"]] == ["half_open", "half_open"]
    assert router.breakers.state("provider:old") is BreakerState.OPEN  # reporting decided nothing
    feed.detach()


def test_attach_subscribes_to_the_router_and_detach_undoes_it() -> None:
    router = Router({"accounting": {"sink": "none"}}, env={})
    feed = DashboardFeed()
    feed.attach(router)
    assert feed.observe in router.on_record and feed.on_transition in router.breakers.on_transition
    feed.detach()
    assert feed.observe not in router.on_record and feed.on_transition not in router.breakers.on_transition


# ------------------------------------------------------------------------------------------ assets


def test_assets_are_local_only() -> None:
    """No CDN: nothing in the page, script or stylesheet points outside the gateway."""
    for name in ("index.html", "app.js", "style.css"):
        text = (ASSETS / name).read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
        assert "@import" not in text


# ------------------------------------------------------------------------------------------ the routes, live


@pytest.fixture
def dash(fake: FakeProviderServer) -> Iterator[Callable[..., LiveGateway]]:
    """``dash(**config)`` -> a live gateway with the dashboard mounted."""
    started: list[LiveGateway] = []

    def build(*, no_auth: bool = False, **extra: Any) -> LiveGateway:
        app = create_app(gateway_config(fake.base_url, **extra), env={}, no_auth=no_auth)
        mount_dashboard(app)
        gw = LiveGateway(app, fake).start()
        started.append(gw)
        return gw

    yield build
    for gw in started:
        gw.stop()


def chat(c: httpx.Client, key: str, model: str, text: str = "hello") -> httpx.Response:
    r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
               json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


def summary(c: httpx.Client, **params: Any) -> dict[str, Any]:
    r = c.get("/dashboard/api/summary", params=params, headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def test_page_and_assets_are_served_with_a_strict_policy(dash: Callable[..., LiveGateway]) -> None:
    gw = dash()
    with gw.http() as c:
        page = c.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "__BASE__" not in page.text
        assert 'src="/dashboard/app.js"' in page.text and 'data-api="/dashboard/api/summary"' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert page.headers["referrer-policy"] == "no-referrer"
        js = c.get("/dashboard/app.js")
        assert js.headers["content-type"].startswith("text/javascript") and "fetch(" in js.text
        css = c.get("/dashboard/style.css")
        assert css.headers["content-type"].startswith("text/css") and ".kpi" in css.text
        slash = c.get("/dashboard/", follow_redirects=False)
        assert slash.status_code == 308 and slash.headers["location"] == "/dashboard"


def test_summary_needs_the_admin_key(dash: Callable[..., LiveGateway]) -> None:
    gw = dash()
    key = gw.create_key()
    with gw.http() as c:
        assert c.get("/dashboard/api/summary").status_code == 401
        inference = c.get("/dashboard/api/summary", headers={"authorization": f"Bearer {key}"})
        assert inference.status_code == 401 and inference.json()["error"]["type"] == "authentication_error"
        assert c.get("/dashboard/api/summary", headers={"x-api-key": "wrong"}).status_code == 401
        ok = c.get("/dashboard/api/summary", headers=ADMIN_HEADERS)
        assert ok.status_code == 200 and ok.json()["auth"] == "enabled"


def test_summary_is_open_under_no_auth_like_the_admin_api(dash: Callable[..., LiveGateway]) -> None:
    open_gw = dash(no_auth=True, server={"admin_key": None})
    with open_gw.http() as c:
        r = c.get("/dashboard/api/summary")
        assert r.status_code == 200 and r.json()["auth"] == "disabled"
        assert c.get("/api/v1/budgets").status_code == 200
    keyed = dash(no_auth=True)  # --no-auth with an admin key: the admin API keeps needing it, and so does this
    with keyed.http() as c:
        assert c.get("/api/v1/budgets").status_code == 401
        assert c.get("/dashboard/api/summary").status_code == 401
        assert c.get("/dashboard/api/summary", headers=ADMIN_HEADERS).json()["auth"] == "disabled"


def test_bad_parameters_are_400s(dash: Callable[..., LiveGateway]) -> None:
    gw = dash()
    with gw.http() as c:
        for params in ({"window": "soon"}, {"window": "10"}, {"window": "999999"}, {"decisions": "-1"},
                       {"decisions": "100000"}):
            r = c.get("/dashboard/api/summary", params=params, headers=ADMIN_HEADERS)
            assert r.status_code == 400, params
            assert r.json()["error"]["param"] == next(iter(params))
        # as on /api/v1: an unknown query parameter, or one given twice, is a 400 too
        r = c.get("/dashboard/api/summary?window=60&foo=1", headers=ADMIN_HEADERS)
        assert r.status_code == 400 and r.headers["cache-control"] == "no-store"
        err = r.json()["error"]
        assert (err["code"], err["param"]) == ("unknown_parameter", "foo") and "expected decisions, window" in err["message"]
        r = c.get("/dashboard/api/summary?window=60&window=120", headers=ADMIN_HEADERS)
        assert r.status_code == 400 and (r.json()["error"]["code"], r.json()["error"]["param"]) == ("invalid_value", "window")
        assert c.get("/dashboard/api/summary?foo=1").status_code == 401  # the admin key is checked first
        assert c.get("/dashboard/api/summary?window=60&decisions=5", headers=ADMIN_HEADERS).status_code == 200


def test_summary_reflects_traffic_fallbacks_and_open_breakers(dash: Callable[..., LiveGateway],
                                                            fake: FakeProviderServer) -> None:
    gw = dash(routing={"fallback_paths": {"fakeclaude/sonnet": ["fakeai/large"]},
                       "breaker": {"failure_threshold": 2, "recovery_time": 600}})
    key = gw.create_key()
    ids: list[str] = []
    costs = 0.0
    with gw.http() as c:
        for i in range(4):
            r = chat(c, key, "fakeai/small", f"question {i}")
            ids.append(r.headers["x-modelplex-request-id"])
            costs += float(r.headers["x-modelplex-cost-usd"])
        fake.plan.fail_next(Fault("server_error", status=500), times=-1, protocol="anthropic")
        fell = chat(c, key, "fakeclaude/sonnet", "to the fallback")
        assert fell.headers["x-modelplex-fallback"] == "true" and fell.headers["x-modelplex-model"] == "fakeai/large"
        ids.append(fell.headers["x-modelplex-request-id"])
        emb = c.post("/v1/embeddings", headers={"authorization": f"Bearer {key}"},
                     json={"model": "fakeai/embed", "input": ["a", "b"]})
        assert emb.status_code == 200
        ids.append(emb.headers["x-modelplex-request-id"])
        body = wait_for(lambda: (s := summary(c, decisions=10))["totals"]["requests"] == 6 and s)
    totals = body["totals"]
    assert (totals["requests"], totals["successes"], totals["fallbacks"]) == (6, 6, 1)
    assert [d["request_id"] for d in body["decisions"]] == list(reversed(ids))
    fallback = body["decisions"][1]
    assert fallback["fallback_used"] and fallback["model"] == "fakeai/large"
    outcomes = [(a["target"], a["outcome"]) for a in fallback["attempts"]]
    assert outcomes[0] == ("fakeclaude/sonnet", "error") and outcomes[-1] == ("fakeai/large", "success")
    assert body["decisions"][0]["kind"] == "embedding"
    breakers = {b["key"]: b for b in body["breakers"]}
    assert breakers["provider:fakeclaude"]["state"] == "open" and breakers["provider:fakeclaude"]["trips"] == 1
    assert body["breakers"][0]["state"] == "open"  # open breakers first
    assert any(e["key"] == "provider:fakeclaude" and e["to"] == "open" for e in body["breaker_transitions"])
    models = {m["model"]: m for m in body["window"]["models"]}
    assert models["fakeai/small"]["requests"] == 4 and models["fakeai/large"]["fallbacks"] == 1
    assert sum(body["series"]["total"]["requests"]) == 6
    assert body["budgets"] == {"enabled": False, "scopes": [], "detail": "no budgets configured"}
    assert {p["name"] for p in body["providers"] if p["enabled"]} == {"fakeai", "fakeclaude"}
    assert body["recorder"] is not None and body["recorder"]["sink"] == "memory"
    chat_cost = sum(d["cost_usd"] for d in body["decisions"][2:])
    assert chat_cost == pytest.approx(costs, rel=1e-6, abs=1e-9)


def test_budgets_show_spend_against_limits(dash: Callable[..., LiveGateway]) -> None:
    gw = dash(budgets={"daily_usd": 10.0, "per_user_daily_usd": 2.0})
    key = gw.create_key()
    with gw.http() as c:
        r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                   json={"model": "fakeai/large", "user": "ana", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        cost = float(r.headers["x-modelplex-cost-usd"])
        body = summary(c)
    budgets = body["budgets"]
    assert budgets["enabled"] is True
    daily = next(s for s in budgets["scopes"] if s["kind"] == "global" and s["window"] == "daily")
    assert daily["limit_usd"] == 10.0 and daily["spent_usd"] == pytest.approx(cost)
    user = next(s for s in budgets["scopes"] if s["kind"] == "user")
    assert user["subject"] == "ana" and user["limit_usd"] == 2.0


def test_mount_is_idempotent_and_routes_can_be_built_for_a_router(fake: FakeProviderServer) -> None:
    app = create_app(gateway_config(fake.base_url), env={})
    feed = mount_dashboard(app)
    assert mount_dashboard(app) is feed
    assert sum(1 for r in app.router.routes if getattr(r, "name", "") == "dashboard_summary") == 1
    router = app.state.gateway.router
    assert router.on_record.count(feed.observe) == 1
    routes = dashboard_routes(router)
    assert {getattr(r, "path", None) for r in routes} >= {"/dashboard", "/dashboard/api/summary",
                                                          "/dashboard/app.js", "/dashboard/style.css"}
    assert feed_of(routes) is not feed and len(router.on_record) == 2
