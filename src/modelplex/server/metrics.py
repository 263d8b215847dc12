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
  ``budget_spent_usd{scope}``, ``state_degraded``, ``state_pending_merge_usd``, ``provider_enabled{provider}``;
* ``recorder_<stat>`` for every number the recorder's ``stats()`` returns.

Labels are bounded: ``model`` is a catalog id (or empty when nothing was served), ``route`` a
fixed name, ``status`` an HTTP status.

The per-request series are ``Series`` (plain numbers updated on the event loop, no lock, a cached
cell per label set; exported at scrape time with exactly the samples ``prometheus_client``'s own
Counter, Gauge and Histogram would produce); the scrape-time series are ``prometheus_client`` gauges.

Must not touch: request handling, the router's logic.
"""

from __future__ import annotations

import inspect
import re
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from modelplex.accounting.records import UsageRecord
from modelplex.types import Attempt

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")
_STATUS = {code: str(code) for code in range(100, 600)}


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


class Cell:
    """One label set's value: a counter or gauge reading (``inc``/``dec``/``set``)."""

    __slots__ = ("created", "labels", "value")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramCell:
    """One label set's histogram: a count per bucket (the last one ``+Inf``) and the sum."""

    __slots__ = ("bounds", "counts", "created", "labels", "sum")

    def __init__(self, labels: dict[str, str], bounds: tuple[float, ...]) -> None:
        self.labels = labels
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket whose bound is >= amount
        self.sum += amount


class Series(Collector):
    """A labelled counter, gauge or histogram for the request path. ``labels(*values)`` returns the
    cell of a label set (created on first use, then one dictionary look-up); ``collect`` exports the
    samples prometheus_client's Counter (``_total``, ``_created``), Gauge or Histogram (``_bucket``
    per ``le``, ``_count``, ``_sum``, ``_created``) would. No lock: the gateway updates these from its
    event loop (the router's hooks included); a router also driven from other threads at the same
    time could lose an increment to a race."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], kind: str = "counter", *,
                 buckets: Sequence[float] = ()) -> None:
        if kind not in ("counter", "gauge", "histogram"):
            raise ValueError(f"unknown series kind {kind!r}")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.kind = kind
        self.bounds = tuple(float(b) for b in buckets)
        self._cells: dict[tuple[Any, ...], Any] = {}
        """Label values as passed -> cell (``200`` and ``"200"`` share one)."""
        self._series: dict[tuple[str, ...], Any] = {}
        """Label values as exported -> cell."""

    def labels(self, *values: Any) -> Any:
        cell = self._cells.get(values)
        if cell is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values!r}")
            text = tuple(str(v) for v in values)
            cell = self._series.get(text)
            if cell is None:
                labels = dict(zip(self.labelnames, text, strict=True))
                cell = HistogramCell(labels, self.bounds) if self.kind == "histogram" else Cell(labels)
                self._series[text] = cell
            self._cells[values] = cell
        return cell

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, self.kind)

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        name, add = self.name, metric.samples.append
        for cell in list(self._series.values()):
            labels = cell.labels
            if self.kind == "counter":
                add(Sample(name + "_total", labels, cell.value))
                add(Sample(name + "_created", labels, cell.created))
            elif self.kind == "gauge":
                add(Sample(name, labels, cell.value))
            else:
                acc = 0.0
                for bound, count in zip((*self.bounds, float("inf")), cell.counts, strict=True):
                    acc += count
                    add(Sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, acc))
                add(Sample(name + "_count", labels, acc))
                add(Sample(name + "_sum", labels, cell.sum))
                add(Sample(name + "_created", labels, cell.created))
        yield metric


class GatewayMetrics:
    """Every series the gateway exports, registered in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = self._series("modelplex_requests", "Requests by route, serving model, provider and HTTP "
                                     "status.", ["route", "model", "provider", "status"])
        self.duration = self._series("modelplex_request_duration_seconds", "Time from request to last byte.",
                                     ["route"], "histogram", buckets=_LATENCY_BUCKETS)
        self.ttft = self._series("modelplex_time_to_first_token_seconds", "Streams: time to the first chunk.",
                                 ["route"], "histogram", buckets=_LATENCY_BUCKETS)
        self.in_flight = self._series("modelplex_requests_in_flight", "Requests being served.", ["route"], "gauge")
        self.stream_outcomes = self._series("modelplex_stream_outcomes", "How streams ended.", ["route", "outcome"])
        self.tokens = self._series("modelplex_tokens", "Tokens by model and kind (input includes cached).",
                                   ["model", "provider", "kind"])
        self.cost = self._series("modelplex_cost_usd", "Cost in USD at catalog prices.", ["model", "provider"])
        self.attempts = self._series("modelplex_attempts", "Upstream attempts by provider and outcome.",
                                     ["provider", "outcome"])
        self.retries = self._series("modelplex_retries", "Retries of the same target.", ["provider"])
        self.fallbacks = self._series("modelplex_fallbacks", "Requests served by a fallback target.", ["route"])
        self.breaker_state = Gauge("modelplex_breaker_state", "Breaker state: 0 closed, 1 half-open, 2 open.",
                                   ["key"], registry=r)
        self.budget_used = Gauge("modelplex_budget_used_ratio", "Budget spent plus reserved over its limit.",
                                 ["scope"], registry=r)
        self.budget_spent = Gauge("modelplex_budget_spent_usd", "Budget spent in the current period.", ["scope"],
                                  registry=r)
        self.state_degraded = Gauge("modelplex_state_degraded",
                                    "1 while the shared state backend is unreachable and local state is used.",
                                    registry=r)
        self.state_pending_merge = Gauge("modelplex_state_pending_merge_usd",
                                         "Spend booked in local state during a shared-state outage that the "
                                         "shared budgets have not counted yet.", registry=r)
        self.provider_enabled = Gauge("modelplex_provider_enabled", "1 if the provider has credentials.",
                                      ["provider"], registry=r)
        self._recorder = _RecorderCollector()
        r.register(self._recorder)

    def _series(self, name: str, documentation: str, labelnames: Sequence[str], kind: str = "counter", *,
                buckets: Sequence[float] = ()) -> Series:
        series = Series(name, documentation, labelnames, kind, buckets=buckets)
        self.registry.register(series)
        return series

    # ------------------------------------------------------------------ per request

    def observe(self, route: str, status: int, duration_s: float, *, model: str | None = None,
                provider: str | None = None, fallback: bool = False) -> None:
        """One answered request (tokens and cost come from its usage record: ``on_record``)."""
        m, p = model or "", provider or ""
        self.requests.labels(route, m, p, _STATUS.get(status) or str(status)).value += 1.0
        self.duration.labels(route).observe(duration_s)
        if fallback:
            self.fallbacks.labels(route).value += 1.0

    def on_record(self, rec: UsageRecord) -> None:
        """The router's ``on_record`` hook: tokens and cost of every request, as its usage record has them,
        so a stream the client abandoned or one that broke counts as the usage store counts it."""
        m = rec.model
        if not m:
            return
        p = rec.provider or ""
        tokens = self.tokens
        if rec.input_tokens:
            tokens.labels(m, p, "input").value += rec.input_tokens
        if rec.output_tokens:
            tokens.labels(m, p, "output").value += rec.output_tokens
        if rec.cached_tokens:
            tokens.labels(m, p, "cached").value += rec.cached_tokens
        if rec.reasoning_tokens:
            tokens.labels(m, p, "reasoning").value += rec.reasoning_tokens
        if rec.cost_usd:
            self.cost.labels(m, p).value += rec.cost_usd

    def on_attempt(self, attempt: Attempt, request_id: str = "") -> None:
        """The router's ``on_attempt`` hook."""
        self.attempts.labels(attempt.provider, attempt.outcome).value += 1.0
        if attempt.retry:
            self.retries.labels(attempt.provider).value += 1.0

    # ------------------------------------------------------------------ scrape

    async def refresh(self, router: Any) -> None:
        """Point-in-time series, read from the router's collaborators just before a scrape."""
        for key, snap in router.breakers.snapshot().items():
            self.breaker_state.labels(key).set(_BREAKER_VALUE.get(str(snap.get("state")), 0.0))
        for name, status in router.provider_status.items():
            self.provider_enabled.labels(name).set(1.0 if status.enabled else 0.0)
        degraded = getattr(router.state, "degraded", False)
        self.state_degraded.set(1.0 if degraded else 0.0)
        pending = getattr(router.state, "pending_merge_usd", 0.0)
        self.state_pending_merge.set(float(pending) if isinstance(pending, (int, float)) else 0.0)
        budgets = router.budgets
        status_fn = getattr(budgets, "status", None) if budgets is not None else None
        if status_fn is not None:
            try:
                rows = status_fn()
                if inspect.isawaitable(rows):
                    rows = await rows
            except Exception:
                rows = []
            users: dict[str, tuple[float, float]] = {}  # per window: (the fullest user's ratio, all users' spend)
            for row in rows or []:
                scope = str(row.get("scope", ""))
                frac = row.get("fraction")
                spent = row.get("spent_usd")
                frac = float(frac) if isinstance(frac, (int, float)) else None
                spent = float(spent) if isinstance(spent, (int, float)) else None
                if row.get("kind") == "user":  # one series per end user would be unbounded (and name them)
                    scope = f"user:*:{row.get('window')}"
                    top, total = users.get(scope, (0.0, 0.0))
                    users[scope] = (max(top, frac or 0.0), total + (spent or 0.0))
                    continue
                if frac is not None:
                    self.budget_used.labels(scope).set(frac)
                if spent is not None:
                    self.budget_spent.labels(scope).set(spent)
            for scope, (top, total) in users.items():
                self.budget_used.labels(scope).set(top)
                self.budget_spent.labels(scope).set(total)
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


__all__ = ["CONTENT_TYPE", "Cell", "GatewayMetrics", "HistogramCell", "Series"]
