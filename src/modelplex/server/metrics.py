"""Prometheus metrics for one gateway app, in the app's own ``CollectorRegistry``.

Owns: ``GatewayMetrics``: the per-request series (updated by the routes), the attempt series
(fed by the router's ``on_attempt`` hook) and the point-in-time series refreshed at scrape time
from the router (breakers, budgets, state backend, providers) and the usage recorder (queue and
spill counters, whatever its ``stats()`` reports).

Series (all prefixed ``modelplex_``):

* ``requests_total{route,model,provider,status}``, ``request_duration_seconds{route}``,
  ``time_to_first_token_seconds{route}``, ``requests_in_flight{route}``,
  ``stream_outcomes_total{route,outcome}`` (completed / failed / disconnected);
* ``tokens_total{model,provider,kind}`` (kind: input, output, cached, reasoning),
  ``cost_usd_total{model,provider}``;
* ``attempts_total{provider,outcome}``, ``retries_total{provider}``, ``fallbacks_total{route}``;
* ``breaker_state{key}`` (0 closed, 1 half-open, 2 open), ``budget_used_ratio{scope}``,
  ``budget_spent_usd{scope}``, ``state_degraded``, ``provider_enabled{provider}``;
* ``recorder_<stat>`` for every number the recorder's ``stats()`` returns.

Labels are bounded: ``model`` is a catalog id (or empty when nothing was served), ``route`` a
fixed name, ``status`` an HTTP status.

Must not touch: request handling, the router's logic.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelplex.types import Attempt, Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


class _RecorderCollector(Collector):
    """Exports the numbers of ``recorder.stats()`` (queue depth, dropped, spilled...) at scrape time."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for key, value in sorted(self.stats.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = "modelplex_recorder_" + _METRIC_NAME.sub("_", str(key))
            fam = GaugeMetricFamily(name, f"usage recorder: {key}")
            fam.add_metric([], float(value))
            yield fam


class GatewayMetrics:
    """Every series the gateway exports, registered in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelplex_requests", "Requests by route, serving model, provider and HTTP status.",
                                ["route", "model", "provider", "status"], registry=r)
        self.duration = Histogram("modelplex_request_duration_seconds", "Time from request to last byte.",
                                  ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("modelplex_time_to_first_token_seconds", "Streams: time to the first chunk.",
                              ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("modelplex_requests_in_flight", "Requests being served.", ["route"], registry=r)
        self.stream_outcomes = Counter("modelplex_stream_outcomes", "How streams ended.", ["route", "outcome"],
                                       registry=r)
        self.tokens = Counter("modelplex_tokens", "Tokens by model and kind (input includes cached).",
                              ["model", "provider", "kind"], registry=r)
        self.cost = Counter("modelplex_cost_usd", "Cost in USD at catalog prices.", ["model", "provider"],
                            registry=r)
        self.attempts = Counter("modelplex_attempts", "Upstream attempts by provider and outcome.",
                                ["provider", "outcome"], registry=r)
        self.retries = Counter("modelplex_retries", "Retries of the same target.", ["provider"], registry=r)
        self.fallbacks = Counter("modelplex_fallbacks", "Requests served by a fallback target.", ["route"],
                                 registry=r)
        self.breaker_state = Gauge("modelplex_breaker_state", "Breaker state: 0 closed, 1 half-open, 2 open.",
                                   ["key"], registry=r)
        self.budget_used = Gauge("modelplex_budget_used_ratio", "Budget spent plus reserved over its limit.",
                                 ["scope"], registry=r)
        self.budget_spent = Gauge("modelplex_budget_spent_usd", "Budget spent in the current period.", ["scope"],
                                  registry=r)
        self.state_degraded = Gauge("modelplex_state_degraded",
                                    "1 while the shared state backend is unreachable and local state is used.",
                                    registry=r)
        self.provider_enabled = Gauge("modelplex_provider_enabled", "1 if the provider has credentials.",
                                      ["provider"], registry=r)
        self._recorder = _RecorderCollector()
        r.register(self._recorder)

    # ------------------------------------------------------------------ per request

    def observe(self, route: str, status: int, duration_s: float, *, model: str | None = None,
                provider: str | None = None, usage: Usage | None = None, cost_usd: float | None = None,
                fallback: bool = False) -> None:
        m, p = model or "", provider or ""
        self.requests.labels(route, m, p, str(status)).inc()
        self.duration.labels(route).observe(duration_s)
        if usage is not None and m:
            if usage.input_tokens:
                self.tokens.labels(m, p, "input").inc(usage.input_tokens)
            if usage.output_tokens:
                self.tokens.labels(m, p, "output").inc(usage.output_tokens)
            if usage.cache_read_tokens:
                self.tokens.labels(m, p, "cached").inc(usage.cache_read_tokens)
            if usage.reasoning_tokens:
                self.tokens.labels(m, p, "reasoning").inc(usage.reasoning_tokens)
        if cost_usd and m:
            self.cost.labels(m, p).inc(cost_usd)
        if fallback:
            self.fallbacks.labels(route).inc()

    def on_attempt(self, attempt: Attempt, request_id: str = "") -> None:
        """The router's ``on_attempt`` hook."""
        self.attempts.labels(attempt.provider, attempt.outcome).inc()
        if attempt.retry:
            self.retries.labels(attempt.provider).inc()

    # ------------------------------------------------------------------ scrape

    async def refresh(self, router: Any) -> None:
        """Point-in-time series, read from the router's collaborators just before a scrape."""
        for key, snap in router.breakers.snapshot().items():
            self.breaker_state.labels(key).set(_BREAKER_VALUE.get(str(snap.get("state")), 0.0))
        for name, status in router.provider_status.items():
            self.provider_enabled.labels(name).set(1.0 if status.enabled else 0.0)
        degraded = getattr(router.state, "degraded", False)
        self.state_degraded.set(1.0 if degraded else 0.0)
        budgets = router.budgets
        status_fn = getattr(budgets, "status", None) if budgets is not None else None
        if status_fn is not None:
            try:
                rows = status_fn()
                if inspect.isawaitable(rows):
                    rows = await rows
            except Exception:
                rows = []
            for row in rows or []:
                scope = str(row.get("scope", ""))
                frac = row.get("fraction")
                if isinstance(frac, (int, float)):
                    self.budget_used.labels(scope).set(float(frac))
                spent = row.get("spent_usd")
                if isinstance(spent, (int, float)):
                    self.budget_spent.labels(scope).set(float(spent))
        recorder = router.recorder
        stats_fn = getattr(recorder, "stats", None) if recorder is not None else None
        stats: Any = {}
        if stats_fn is not None:
            try:
                stats = stats_fn() if callable(stats_fn) else stats_fn
                if inspect.isawaitable(stats):
                    stats = await stats
            except Exception:
                stats = {}
        self._recorder.stats = dict(stats) if isinstance(stats, dict) else {}

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "GatewayMetrics"]
