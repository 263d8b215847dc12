"""The gateway's dashboard: a static page at ``/dashboard`` and its JSON at ``/dashboard/api/summary``.

Owns:

* ``DashboardFeed`` — an in-memory view of recent traffic, fed by the router's ``on_record`` hook
  (one ``UsageRecord`` per logical request: chat, stream and embedding, success or failure) and by
  the breakers' ``on_transition`` hook. It keeps time buckets (``bucket_s`` wide, ``retention_s``
  long) of requests, errors, fallbacks, cost and latency per (model, provider); the last
  ``max_decisions`` routing decisions with their attempts; counters since the gateway started
  (totals, per strategy / experiment arm, per task); and the recent breaker transitions.
  Observing is O(1); a summary costs O(buckets x series) — never a database query.
* ``summary_payload`` — the JSON the page polls: the feed's snapshot plus breaker states
  (``router.breakers.snapshot()``), budgets (``router.budgets.status()``), provider status and
  the usage recorder's counters.
* ``dashboard_routes(router)`` — the routes (page, assets, data endpoint), with the feed attached
  to ``router``; ``mount_dashboard(app)`` adds them to a built gateway app once.

The data endpoint needs the admin key exactly as ``/api/v1`` does (``Authenticator.admin``), so it
is open only under ``--no-auth``. The page itself is static and carries no data.

Each gateway process has its own feed: with ``--workers N`` a page shows the worker that answered.
Stored usage (``/api/v1/usage``) remains the complete history.

Must not touch: routing, accounting storage, the admin API's handlers, the page's markup (the
``dashboard/`` assets).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelplex.accounting.performance import percentile
from modelplex.accounting.sinks.base import attribution
from modelplex.server.admin import check_query
from modelplex.server.errors import classify, invalid_request, openai_error_body, retry_after_header
from modelplex.server.http import RequestHead

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from modelplex.router import Router
    from modelplex.server.gateway import Gateway

ASSETS = Path(__file__).with_name("dashboard")
BUCKET_S = 5
RETENTION_S = 3600
MAX_DECISIONS = 500
DEFAULT_WINDOW_S = 900
DEFAULT_DECISIONS = 50
MAX_POINTS = 120
"""A chart never gets more points than this: wider windows merge buckets."""
MIN_SPAN_S = 60
"""A gateway younger than the window is plotted from its start, over at least this long."""
TOP_SERIES = 8
"""Series beyond the busiest ``TOP_SERIES`` models (or providers) are summed as ``other``."""
LATENCY_RESERVOIR = 2000
"""Latency samples kept per (bucket, model); beyond it, reservoir sampling keeps percentiles honest."""
NO_MODEL = "(none called)"
SUMMARY_PARAMS = frozenset({"window", "decisions"})
"""The query parameters of ``/dashboard/api/summary``; any other (or one given twice) is a 400, as on ``/api/v1``."""

ASSET_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


# ------------------------------------------------------------------------------------------ the feed


@dataclass(slots=True)
class _Agg:
    """What one (bucket, model, provider) saw."""

    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0
    seen_ok: int = 0
    latencies: list[float] = field(default_factory=list)
    """Latency (ms) of successful requests; a reservoir of at most ``LATENCY_RESERVOIR``."""

    def add_latency(self, value: float, rng: random.Random) -> None:
        self.seen_ok += 1
        if len(self.latencies) < LATENCY_RESERVOIR:
            self.latencies.append(value)
            return
        slot = rng.randrange(self.seen_ok)
        if slot < LATENCY_RESERVOIR:
            self.latencies[slot] = value

    def merge(self, other: _Agg) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.fallbacks += other.fallbacks
        self.cost_usd += other.cost_usd
        self.seen_ok += other.seen_ok
        self.latencies.extend(other.latencies)


@dataclass(slots=True)
class _Count:
    requests: int = 0
    successes: int = 0
    fallbacks: int = 0
    cost_usd: float = 0.0

    def add(self, success: bool, fallback: bool, cost: float) -> None:
        self.requests += 1
        self.successes += int(success)
        self.fallbacks += int(fallback)
        self.cost_usd += cost

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "successes": self.successes, "fallbacks": self.fallbacks,
                "cost_usd": round(self.cost_usd, 10)}


def _attempt_view(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"target": a.get("target") or "", "provider": a.get("provider") or "", "outcome": a.get("outcome") or "",
            "status_code": a.get("status_code"), "error_type": a.get("error_type"), "retry": int(a.get("retry") or 0),
            "latency_ms": float(a.get("latency_ms") or 0.0), "detail": a.get("detail")}


def _attempts_of(rec: Any) -> list[dict[str, Any]]:
    out = []
    for a in getattr(rec, "attempts", None) or ():
        out.append(a if isinstance(a, Mapping) else a.to_dict())
    return out


def _decision(rec: Any, model: str | None, provider: str | None, start: float, end: float) -> dict[str, Any]:
    """One routing decision as the page shows it."""
    return {
        "ts": start, "end": end, "request_id": str(getattr(rec, "request_id", "")),
        "kind": getattr(rec, "kind", "chat"), "task": getattr(rec, "task", None),
        "strategy": getattr(rec, "strategy", None), "experiment_arm": getattr(rec, "experiment_arm", None),
        "model": model, "provider": provider, "served": bool(getattr(rec, "model", None)),
        "success": bool(getattr(rec, "success", False)), "error_type": getattr(rec, "error_type", None),
        "fallback_used": bool(getattr(rec, "fallback_used", False)),
        "cost_usd": float(getattr(rec, "cost_usd", 0.0) or 0.0),
        "latency_ms": float(getattr(rec, "latency_ms", 0.0) or 0.0), "ttft_ms": getattr(rec, "ttft_ms", None),
        "input_tokens": int(getattr(rec, "input_tokens", 0) or 0),
        "output_tokens": int(getattr(rec, "output_tokens", 0) or 0),
        "attempts": [_attempt_view(a) for a in _attempts_of(rec)],
        "selection_reason": getattr(rec, "selection_reason", "") or "",
    }


def _pct(values: list[float], p: float) -> float | None:
    got = percentile(sorted(values), p)
    return None if got is None else round(got, 3)


class DashboardFeed:
    """Recent traffic of one gateway, as the dashboard shows it. Thread-safe.

    ``clock`` gives wall-clock epoch seconds (records carry wall-clock start times)."""

    def __init__(self, *, bucket_s: int = BUCKET_S, retention_s: int = RETENTION_S,
                 max_decisions: int = MAX_DECISIONS, clock: Callable[[], float] = time.time, seed: int = 0) -> None:
        if bucket_s < 1 or retention_s < bucket_s or max_decisions < 1:
            raise ValueError("need bucket_s >= 1, retention_s >= bucket_s and max_decisions >= 1")
        self.bucket_s = bucket_s
        self.retention_s = retention_s
        self.clock = clock
        self.started_at = clock()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._buckets: dict[int, dict[tuple[str, str], _Agg]] = {}
        self._decisions: deque[tuple[Any, str | None, str | None, float, float]] = deque(maxlen=max_decisions)
        """(record, model, provider, start, end) of the last requests; rows are built at snapshot time."""
        self._transitions: deque[dict[str, Any]] = deque(maxlen=50)
        self._trips: Counter[str] = Counter()
        self._total = _Count()
        self._tokens = [0, 0]
        self._latencies: deque[float] = deque(maxlen=LATENCY_RESERVOIR)
        self._by_strategy: dict[tuple[str | None, str | None], _Count] = {}
        self._by_task: dict[str | None, _Count] = {}
        self._attached: list[tuple[Any, Any]] = []

    # ------------------------------------------------------------------ wiring

    def attach(self, router: Router) -> None:
        """Subscribe to ``router.on_record`` and the breaker registry's ``on_transition``."""
        hooks = getattr(router, "on_record", None)
        if hooks is None:
            raise RuntimeError("this Router has no on_record hook; the dashboard needs it to see finished requests")
        hooks.append(self.observe)
        router.breakers.on_transition.append(self.on_transition)
        self._attached.append((hooks, self.observe))
        self._attached.append((router.breakers.on_transition, self.on_transition))

    def detach(self) -> None:
        for hooks, fn in self._attached:
            if fn in hooks:
                hooks.remove(fn)
        self._attached.clear()

    # ------------------------------------------------------------------ input

    def observe(self, rec: Any) -> None:
        """Count one finished request (a ``UsageRecord``; read by attribute). The decision row the
        page shows is built from the record when a snapshot asks for it, not here."""
        served = getattr(rec, "model", None)
        if served:
            model, provider = served, getattr(rec, "provider", None)
        else:
            model, provider = attribution(served, getattr(rec, "provider", None), _attempts_of(rec))
        success = bool(getattr(rec, "success", False))
        fallback = bool(getattr(rec, "fallback_used", False))
        cost = float(getattr(rec, "cost_usd", 0.0) or 0.0)
        latency = float(getattr(rec, "latency_ms", 0.0) or 0.0)
        start = float(getattr(rec, "ts", 0.0) or self.clock())
        end = start + latency / 1000.0
        task = getattr(rec, "task", None)
        skey = (getattr(rec, "strategy", None), getattr(rec, "experiment_arm", None))
        key = (model or NO_MODEL, provider or "")
        slot = int(end // self.bucket_s)
        with self._lock:
            bucket = self._buckets.get(slot)
            if bucket is None:
                bucket = self._buckets[slot] = {}
                self._expire(slot)
            agg = bucket.get(key)
            if agg is None:
                agg = bucket[key] = _Agg()
            agg.requests += 1
            agg.errors += int(not success)
            agg.fallbacks += int(fallback)
            agg.cost_usd += cost
            if success:
                agg.add_latency(latency, self._rng)
                self._latencies.append(latency)
            self._total.add(success, fallback, cost)
            self._tokens[0] += int(getattr(rec, "input_tokens", 0) or 0)
            self._tokens[1] += int(getattr(rec, "output_tokens", 0) or 0)
            counts = self._by_strategy.get(skey)
            if counts is None:
                counts = self._by_strategy[skey] = _Count()
            counts.add(success, fallback, cost)
            counts = self._by_task.get(task)
            if counts is None:
                counts = self._by_task[task] = _Count()
            counts.add(success, fallback, cost)
            self._decisions.append((rec, model, provider, start, end))

    def on_transition(self, event: Any) -> None:
        """A breaker changed state (``resilience.breaker.BreakerTransition``)."""
        to = str(getattr(event.to_state, "value", event.to_state))
        with self._lock:
            self._transitions.append({"ts": float(event.at), "key": event.key,
                                      "from": str(getattr(event.from_state, "value", event.from_state)),
                                      "to": to, "reason": event.reason})
            if to == "open":
                self._trips[event.key] += 1

    def _expire(self, newest: int) -> None:
        oldest = newest - self.retention_s // self.bucket_s
        for slot in [s for s in self._buckets if s < oldest]:
            del self._buckets[slot]

    # ------------------------------------------------------------------ output

    def snapshot(self, window_s: int = DEFAULT_WINDOW_S, decisions: int = DEFAULT_DECISIONS) -> dict[str, Any]:
        """Totals since start, per-window series and tables, the last ``decisions`` decisions (newest
        first), the strategy/arm and task splits, and breaker transitions."""
        now = self.clock()
        window_s = max(self.bucket_s, min(int(window_s), self.retention_s))
        age = max(0.0, now - self.started_at)
        span = min(window_s, max(MIN_SPAN_S, (int(age) // self.bucket_s + 2) * self.bucket_s))
        step = max(1, -(-span // (self.bucket_s * MAX_POINTS)))  # buckets merged into one point
        width = step * self.bucket_s
        last = int(now // width)
        points = -(-span // width)
        first = last - points + 1
        with self._lock:
            merged: dict[int, dict[tuple[str, str], _Agg]] = {}
            for slot, bucket in self._buckets.items():
                point = (slot * self.bucket_s) // width
                if first <= point <= last:
                    target = merged.setdefault(point - first, {})
                    for key, agg in bucket.items():
                        into = target.get(key)
                        if into is None:
                            into = target[key] = _Agg()
                        into.merge(agg)
            kept = list(self._decisions)[-decisions:] if decisions > 0 else []
            kept.reverse()
            totals = {**self._total.to_dict(), "failures": self._total.requests - self._total.successes,
                      "input_tokens": self._tokens[0], "output_tokens": self._tokens[1],
                      "p50_ms": _pct(list(self._latencies), 50), "p95_ms": _pct(list(self._latencies), 95),
                      "since": self.started_at}
            strategies = [{"strategy": s, "experiment_arm": arm, **c.to_dict()}
                          for (s, arm), c in self._by_strategy.items()]
            tasks = [{"task": t, **c.to_dict()} for t, c in self._by_task.items()]
            transitions = list(self._transitions)
            transitions.reverse()
            trips = dict(self._trips)
        recent = [_decision(*entry) for entry in kept]
        strategies.sort(key=lambda r: (-r["requests"], str(r["strategy"]), str(r["experiment_arm"])))
        tasks.sort(key=lambda r: (-r["requests"], str(r["task"])))
        times = [(first + i) * width for i in range(points)]
        return {
            "now": now,
            "window_s": window_s,
            "span_s": points * width,
            "bucket_s": width,
            "totals": totals,
            "window": _window_tables(merged),
            "series": _series(merged, points, times),
            "decisions": recent,
            "strategies": strategies,
            "tasks": tasks,
            "breaker_transitions": transitions,
            "breaker_trips": trips,
        }


def _window_tables(merged: Mapping[int, Mapping[tuple[str, str], _Agg]]) -> dict[str, Any]:
    per_model: dict[tuple[str, str], _Agg] = {}
    total = _Agg()
    for bucket in merged.values():
        for key, agg in bucket.items():
            per_model.setdefault(key, _Agg()).merge(agg)
            total.merge(agg)
    models = [{"model": m, "provider": p or None, "requests": a.requests, "errors": a.errors,
               "fallbacks": a.fallbacks, "cost_usd": round(a.cost_usd, 10), "p50_ms": _pct(a.latencies, 50),
               "p95_ms": _pct(a.latencies, 95)} for (m, p), a in per_model.items()]
    models.sort(key=lambda r: (-r["requests"], r["model"]))
    return {"requests": total.requests, "errors": total.errors, "fallbacks": total.fallbacks,
            "cost_usd": round(total.cost_usd, 10), "p50_ms": _pct(total.latencies, 50),
            "p95_ms": _pct(total.latencies, 95), "models": models}


def _series(merged: Mapping[int, Mapping[tuple[str, str], _Agg]], points: int, times: list[int]) -> dict[str, Any]:
    def group(label: Callable[[tuple[str, str]], str]) -> list[dict[str, Any]]:
        per_point: list[dict[str, _Agg]] = [{} for _ in range(points)]
        volume: Counter[str] = Counter()
        for i, bucket in merged.items():
            for key, agg in bucket.items():
                name = label(key)
                per_point[i].setdefault(name, _Agg()).merge(agg)
                volume[name] += agg.requests
        names = [n for n, _ in sorted(volume.items(), key=lambda kv: (-kv[1], kv[0]))]
        top, rest = names[:TOP_SERIES], set(names[TOP_SERIES:])
        out = []
        for name in top + (["other"] if rest else []):
            members = rest if name == "other" and rest else {name}
            aggs = []
            for point in per_point:
                agg = _Agg()
                for member in members:
                    got = point.get(member)
                    if got is not None:
                        agg.merge(got)
                aggs.append(agg)
            out.append(_series_of(name, aggs))
        return out

    total = []
    for i in range(points):
        agg = _Agg()
        for a in merged.get(i, {}).values():
            agg.merge(a)
        total.append(agg)
    return {"t": times, "total": _series_of("all", total),
            "by_model": group(lambda k: k[0]), "by_provider": group(lambda k: k[1] or NO_MODEL)}


def _series_of(name: str, aggs: Iterable[_Agg]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "requests": [], "errors": [], "fallbacks": [], "cost_usd": [],
                           "p50_ms": [], "p95_ms": []}
    for a in aggs:
        out["requests"].append(a.requests)
        out["errors"].append(a.errors)
        out["fallbacks"].append(a.fallbacks)
        out["cost_usd"].append(round(a.cost_usd, 10))
        out["p50_ms"].append(_pct(a.latencies, 50))
        out["p95_ms"].append(_pct(a.latencies, 95))
    return out


# ------------------------------------------------------------------------------------------ the payload


def _breakers(router: Router, trips: Mapping[str, int]) -> list[dict[str, Any]]:
    rows = []
    for key, snap in router.breakers.snapshot().items():
        kind, _, name = key.partition(":")
        rows.append({"key": key, "kind": kind if name else "other", "name": name or key,
                     "state": str(snap.get("state")), "failures": snap.get("failures", 0),
                     "opened_at": snap.get("opened_at"), "retry_in_s": snap.get("retry_in_s"),
                     "probe_due": bool(snap.get("probe_due", False)), "trips": int(trips.get(key, 0))})
    order = {"open": 0, "half_open": 1, "closed": 2}
    rows.sort(key=lambda r: (order.get(r["state"], 3), r["kind"] != "provider", r["key"]))
    return rows


async def _budgets(router: Router) -> dict[str, Any]:
    manager = getattr(router, "budgets", None)
    if manager is None or not getattr(manager, "enabled", True):
        return {"enabled": False, "scopes": [], "detail": "no budgets configured"}
    try:
        scopes = await manager.status()
    except Exception as exc:  # the page must still render when the state backend is down
        return {"enabled": True, "scopes": [], "detail": f"budget status unavailable ({type(exc).__name__})"}
    if not scopes:
        return {"enabled": False, "scopes": [], "detail": "no budgets configured"}
    return {"enabled": True, "scopes": scopes, "detail": None}


def _recorder(router: Router) -> dict[str, Any] | None:
    recorder = getattr(router, "recorder", None)
    stats = getattr(recorder, "stats", None)
    if stats is None:
        return None
    try:
        return dict(stats())
    except Exception:
        return None


async def summary_payload(router: Router, feed: DashboardFeed, *, window_s: int = DEFAULT_WINDOW_S,
                          decisions: int = DEFAULT_DECISIONS, auth: str = "enabled") -> dict[str, Any]:
    """Everything the page shows, in one JSON object (docs/dashboard.md describes each field)."""
    body = feed.snapshot(window_s, decisions)
    body["breakers"] = _breakers(router, body.pop("breaker_trips"))
    body["budgets"] = await _budgets(router)
    body["providers"] = [{"name": s.name, "protocol": s.protocol, "enabled": s.enabled, "reason": s.reason}
                         for s in sorted(router.provider_status.values(), key=lambda s: (not s.enabled, s.name))]
    body["recorder"] = _recorder(router)
    body["runtime_strategy"] = router.runtime_strategy
    body["default_strategy"] = router.config.routing.default_strategy
    body["auth"] = auth
    return body


# ------------------------------------------------------------------------------------------ routes


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_request(f"'{name}' must be an integer from {low} to {high}", param=name) from None
    if not low <= value <= high:
        raise invalid_request(f"'{name}' must be an integer from {low} to {high}", param=name)
    return value


def _read_asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def dashboard_routes(router: Router, *, gateway: Gateway | None = None, feed: DashboardFeed | None = None
                     ) -> list[BaseRoute]:
    """The dashboard's routes, with a ``DashboardFeed`` attached to ``router`` (or ``feed``, already
    attached by the caller). Auth comes from ``gateway`` or, at request time, ``app.state.gateway``."""
    if feed is None:
        feed = DashboardFeed()
        feed.attach(router)
    page = _read_asset("index.html").decode("utf-8")
    assets = {name: _read_asset(name) for name in ASSET_TYPES}

    def gateway_of(request: Request) -> Gateway | None:
        return gateway if gateway is not None else getattr(request.app.state, "gateway", None)

    async def index(request: Request) -> Response:
        base = request.scope.get("root_path", "").rstrip("/") + "/dashboard"
        return Response(page.replace("__BASE__", base), media_type="text/html; charset=utf-8",
                        headers=PAGE_HEADERS)

    async def slash(request: Request) -> Response:
        return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/dashboard", status_code=308)

    def asset(name: str) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            return Response(assets[name], media_type=ASSET_TYPES[name],
                            headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})

        return serve

    async def summary(request: Request) -> Response:
        started = time.perf_counter()
        gw = gateway_of(request)
        try:
            if gw is not None:
                gw.auth.admin(RequestHead(request.scope))
            check_query(request, SUMMARY_PARAMS)
            window = _int_param(request, "window", DEFAULT_WINDOW_S, 60, feed.retention_s)
            count = _int_param(request, "decisions", DEFAULT_DECISIONS, 0, MAX_DECISIONS)
            auth = "disabled" if gw is None or gw.no_auth else "enabled"
            body = await summary_payload(router, feed, window_s=window, decisions=count, auth=auth)
            response = Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), media_type="application/json",
                                headers={"cache-control": "no-store"})
        except Exception as exc:
            info = gw.error_info(exc, "dashboard_summary", "dashboard") if gw is not None else classify(exc)
            headers = {k.decode(): v.decode() for k, v in retry_after_header(info)}
            headers["cache-control"] = "no-store"
            response = Response(openai_error_body(info), status_code=info.status, media_type="application/json",
                                headers=headers)
        if gw is not None:
            gw.metrics.observe("dashboard_summary", response.status_code, time.perf_counter() - started)
        return response

    summary.feed = feed  # type: ignore[attr-defined]
    return [
        Route("/dashboard", index, methods=["GET"], name="dashboard"),
        Route("/dashboard/", slash, methods=["GET"], name="dashboard_slash"),
        *(Route(f"/dashboard/{name}", asset(name), methods=["GET"], name=f"dashboard_{name}") for name in ASSET_TYPES),
        Route("/dashboard/api/summary", summary, methods=["GET"], name="dashboard_summary"),
    ]


def mount_dashboard(app: Starlette) -> DashboardFeed:
    """Add the dashboard to a gateway app built by ``create_app`` (once; later calls return the
    feed already mounted)."""
    for route in app.router.routes:
        if isinstance(route, Route) and route.name == "dashboard_summary":
            return route.endpoint.feed  # type: ignore[attr-defined, no-any-return]
    gw: Gateway = app.state.gateway
    routes = dashboard_routes(gw.router, gateway=gw)
    app.router.routes.extend(routes)
    return feed_of(routes)


def feed_of(routes: Iterable[BaseRoute]) -> DashboardFeed:
    """The feed behind a list of dashboard routes."""
    for route in routes:
        if isinstance(route, Route) and route.name == "dashboard_summary":
            return route.endpoint.feed  # type: ignore[attr-defined, no-any-return]
    raise LookupError("no dashboard summary route in these routes")


__all__ = ["DashboardFeed", "dashboard_routes", "feed_of", "mount_dashboard", "summary_payload"]
