"""Performance statistics per model and task, recommendations, and the seed's performance payload.

Owns: ``PerformanceTracker`` — ``observe(rec)`` keeps the last ``window`` requests per (model,
task); ``feedback(request_id, score)`` attributes a late quality score through a bounded map (the
last ``feedback_window`` requests, for ``feedback_max_age_s`` seconds);
``stats(by=...)``, ``recommendations(task)``, ``performance_report(task)`` (the JSON of seed
flexible-model-selection's ``GET /api/v1/models/performance/``) and ``load_from_sink`` (warm-up
from stored history). Also ``percentile`` (the nearest-rank method every report uses).

Definitions (docs/accounting.md repeats them):

* A request is charged to the model that served it, or, when nothing served it, to the last
  model actually called (``sinks.base.attribution``); requests with neither are ignored.
* ``success_rate`` = successes / requests. ``avg_latency_ms``, ``p50``/``p95`` and
  ``avg_cost_usd`` cover successful requests only (the cost of one generation, the speed of an
  answer); ``avg_quality`` averages the feedback scores present (``None`` without feedback).
* Percentiles are nearest-rank: the value at position ``ceil(p/100 * n)`` (1-based) of the sorted
  sample — always an observed value; p50 of [10, 20, 30, 40] is 20, p95 is 40.

Recommendations, over models with at least ``min_samples`` requests (for ``task`` when given):

* **cost leader**: the lowest ``avg_cost_usd`` among models with ``success_rate >= success_floor``
  (ties: higher success rate, then model id).
* **quality leader**: the highest ``avg_quality`` among models with at least
  ``min_quality_samples`` scores; when no model has that much feedback, the highest success rate
  (ties: lower p95 latency, then model id).
* **balanced**: merit is ``avg_quality`` when some model has enough feedback (then only those models
  compete), else ``success_rate``. Keep the models whose success rate meets the floor (all of
  them if none does), and among those, the band whose merit is within ``balanced_tolerance`` of
  the best. In the band, minimise ``cost/max_cost + latency_weight * p95/max_p95`` (each term 0
  when its maximum is 0; ties: higher merit, then model id) — "nearly as good as the best, for
  the least money, not slow".

Must not touch: storage (sinks), routing decisions (the adaptive policy reads these numbers).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks.base import UsageSink, attribution, sort_key
from modelplex.resilience.clock import Clock, SystemClock

GROUP_FIELDS = ("model", "provider", "task", "strategy")

FEEDBACK_WINDOW = 10_000
"""Requests (and early scores) remembered for ``feedback``, the oldest forgotten first."""

FEEDBACK_MAX_AGE_S = 900.0
"""Seconds a request stays open to ``feedback`` in memory (feedback arrives within minutes; later
scores still reach the usage store)."""


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``None`` when empty)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = math.ceil(p / 100.0 * n)
    return float(sorted_values[min(n, max(1, rank)) - 1])


@dataclass(slots=True)
class _Sample:
    ts: float
    model: str
    provider: str | None
    task: str | None
    strategy: str | None
    success: bool
    latency_ms: float
    cost_usd: float
    quality: float | None


def summarize(samples: Sequence[_Sample]) -> dict[str, Any]:
    ok = [s for s in samples if s.success]
    lat = sorted(s.latency_ms for s in ok)
    scores = [s.quality for s in samples if s.quality is not None]
    n = len(samples)
    return {
        "count": n,
        "successes": len(ok),
        "success_rate": len(ok) / n if n else 0.0,
        "avg_latency_ms": sum(lat) / len(lat) if lat else None,
        "p50_latency_ms": percentile(lat, 50),
        "p95_latency_ms": percentile(lat, 95),
        "avg_cost_usd": sum(s.cost_usd for s in ok) / len(ok) if ok else None,
        "total_cost_usd": sum(s.cost_usd for s in samples),
        "avg_quality": sum(scores) / len(scores) if scores else None,
        "quality_samples": len(scores),
    }


class PerformanceTracker:
    """Rolling per-(model, task) statistics from usage records and feedback. Thread-safe."""

    def __init__(self, *, clock: Clock | None = None, window: int = 10_000, feedback_window: int = FEEDBACK_WINDOW,
                 min_samples: int = 20, success_floor: float = 0.9, min_quality_samples: int = 5,
                 balanced_tolerance: float = 0.05, latency_weight: float = 0.25,
                 max_age: float | None = None, feedback_max_age_s: float | None = FEEDBACK_MAX_AGE_S) -> None:
        if window < 1 or feedback_window < 1:
            raise ValueError("window and feedback_window must be >= 1")
        if feedback_max_age_s is not None and not feedback_max_age_s > 0:
            raise ValueError(f"feedback_max_age_s must be a positive number of seconds, got {feedback_max_age_s!r}")
        self.clock: Clock = clock or SystemClock()
        self.window = window
        self.feedback_window = feedback_window
        self.min_samples = min_samples
        self.success_floor = success_floor
        self.min_quality_samples = min_quality_samples
        self.balanced_tolerance = balanced_tolerance
        self.latency_weight = latency_weight
        self.max_age = max_age
        """Ignore samples older than this many seconds (wall clock), when set."""
        self.feedback_max_age_s = feedback_max_age_s
        """Forget requests (and early scores) for ``feedback`` after this many seconds (monotonic), when set."""
        self._windows: dict[tuple[str, str | None], deque[_Sample]] = {}
        # request id -> (sample, when observed); and request id -> (score, when given) for scores that
        # arrive before their request. Both oldest first, bounded by feedback_window and the age limit.
        self._by_id: OrderedDict[str, tuple[_Sample, float]] = OrderedDict()
        self._pending: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._next_sweep = -math.inf
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ input

    def observe(self, rec: UsageRecord) -> None:
        """Count one finished request (the router calls this once per logical request)."""
        model, provider = rec.model, rec.provider
        if not model:
            model, provider = attribution(model, provider, rec.attempts)
            if model is None:
                return
        self._add(rec.request_id, _Sample(float(rec.ts), model, provider, rec.task, rec.strategy, bool(rec.success),
                                          float(rec.latency_ms), float(rec.cost_usd), rec.quality_score))

    def observe_dict(self, d: Mapping[str, Any]) -> None:
        """Count one stored record dict (``UsageSink.query`` shape)."""
        model = d.get("attributed_model")
        provider = d.get("attributed_provider")
        if model is None:
            model, provider = attribution(d.get("model"), d.get("provider"), d.get("attempts") or ())
        if model is None:
            return
        q = d.get("quality_score")
        self._add(str(d["request_id"]), _Sample(float(d["ts"]), model, provider, d.get("task"), d.get("strategy"),
                                                bool(d["success"]), float(d["latency_ms"]), float(d["cost_usd"]),
                                                None if q is None else float(q)))

    def _add(self, request_id: str, s: _Sample) -> None:
        with self._lock:
            now = self.clock.now()
            key = (s.model, s.task)
            win = self._windows.get(key)
            if win is None:
                win = self._windows[key] = deque(maxlen=self.window)
            win.append(s)
            if self._pending:
                early = self._pending.pop(request_id, None)
                if early is not None and not self._too_old(early[1], now):
                    s.quality = early[0]
            by_id = self._by_id
            if request_id in by_id:
                by_id.move_to_end(request_id)
            by_id[request_id] = (s, now)
            if len(by_id) > self.feedback_window:
                by_id.popitem(last=False)
            if self.feedback_max_age_s is not None and now >= self._next_sweep:
                self._sweep(now)

    def _too_old(self, at: float, now: float) -> bool:
        return self.feedback_max_age_s is not None and now - at > self.feedback_max_age_s

    def _sweep(self, now: float) -> None:
        """Forget feedback entries past the age limit; runs at most once per second of clock time."""
        assert self.feedback_max_age_s is not None
        self._next_sweep = now + 1.0
        cutoff = now - self.feedback_max_age_s
        for m in (self._by_id, self._pending):
            while m:
                oldest = next(iter(m))
                if m[oldest][1] > cutoff:
                    break
                del m[oldest]

    def feedback(self, request_id: str, score: float) -> bool:
        """Attach a quality score (0..1). Returns whether the request was known; an unknown one is
        kept (bounded) and applied if the request is observed later."""
        score = float(score)
        with self._lock:
            now = self.clock.now()
            entry = self._by_id.get(request_id)
            if entry is not None:
                if not self._too_old(entry[1], now):
                    entry[0].quality = score
                    return True
                del self._by_id[request_id]
            pending = self._pending
            if request_id in pending:
                pending.move_to_end(request_id)
            pending[request_id] = (score, now)
            if len(pending) > self.feedback_window:
                pending.popitem(last=False)
            if self.feedback_max_age_s is not None and now >= self._next_sweep:
                self._sweep(now)
            return False

    async def load_from_sink(self, sink: UsageSink, since: float | None = None, until: float | None = None
                             ) -> int:
        """Warm up from stored history (oldest first, so the newest stay in the windows); returns rows read."""
        rows = await sink.query(since, until)
        for d in rows:
            self.observe_dict(d)
        return len(rows)

    # ------------------------------------------------------------------ output

    def _samples(self, task: str | None = None, model: str | None = None) -> list[_Sample]:
        cutoff = None if self.max_age is None else self.clock.wall() - self.max_age
        with self._lock:
            out: list[_Sample] = []
            for (m, t), win in self._windows.items():
                if (task is not None and t != task) or (model is not None and m != model):
                    continue
                out.extend(win if cutoff is None else (s for s in win if s.ts >= cutoff))
        return out

    def stats(self, by: Sequence[str] = ("model", "task"), *, task: str | None = None,
              model: str | None = None) -> list[dict[str, Any]]:
        """One dict per group: the ``by`` fields, then ``count``, ``successes``, ``success_rate``,
        ``avg_latency_ms``, ``p50_latency_ms``, ``p95_latency_ms``, ``avg_cost_usd``,
        ``total_cost_usd``, ``avg_quality``, ``quality_samples``; sorted by the group fields."""
        fields = tuple(by)
        bad = [f for f in fields if f not in GROUP_FIELDS]
        if bad or not fields:
            raise ValueError(f"stats(by=...) takes some of {GROUP_FIELDS}, got {list(by)}")
        groups: dict[tuple[Any, ...], list[_Sample]] = {}
        for s in self._samples(task, model):
            groups.setdefault(tuple(getattr(s, f) for f in fields), []).append(s)
        out = []
        for key in sorted(groups, key=lambda k: tuple(sort_key(v) for v in k)):
            row: dict[str, Any] = dict(zip(fields, key, strict=True))
            row.update(summarize(groups[key]))
            out.append(row)
        return out

    def recommendations(self, task: str | None = None) -> dict[str, dict[str, Any] | None]:
        """``{"cost_leader", "quality_leader", "balanced"}``, each ``None`` or a dict with ``model``,
        the figures and a one-line ``reason`` (formulas in the module docstring)."""
        eligible = [r for r in self.stats(("model",), task=task) if r["count"] >= self.min_samples]
        return {
            "cost_leader": self._cost_leader(eligible),
            "quality_leader": self._quality_leader(eligible),
            "balanced": self._balanced(eligible),
        }

    def _pick(self, row: Mapping[str, Any], reason: str) -> dict[str, Any]:
        keys = ("count", "success_rate", "avg_cost_usd", "avg_quality", "quality_samples", "avg_latency_ms",
                "p95_latency_ms")
        return {"model": row["model"], **{k: row[k] for k in keys}, "reason": reason}

    def _cost_leader(self, eligible: list[dict[str, Any]]) -> dict[str, Any] | None:
        pool = [r for r in eligible if r["success_rate"] >= self.success_floor and r["avg_cost_usd"] is not None]
        if not pool:
            return None
        best = min(pool, key=lambda r: (r["avg_cost_usd"], -r["success_rate"], r["model"]))
        return self._pick(best, f"lowest average cost (${best['avg_cost_usd']:.6f} per request) among "
                                f"{len(pool)} model(s) with >= {self.success_floor:.0%} success and "
                                f">= {self.min_samples} requests")

    def _quality_leader(self, eligible: list[dict[str, Any]]) -> dict[str, Any] | None:
        rated = [r for r in eligible if r["quality_samples"] >= self.min_quality_samples]
        if rated:
            best = max(rated, key=lambda r: (r["avg_quality"], r["success_rate"], _neg(r["model"])))
            return self._pick(best, f"highest average feedback score ({best['avg_quality']:.3f} over "
                                    f"{best['quality_samples']} scores) among {len(rated)} rated model(s)")
        if not eligible:
            return None
        best = max(eligible, key=lambda r: (r["success_rate"], -(r["p95_latency_ms"] or 0.0), _neg(r["model"])))
        return self._pick(best, f"no model has {self.min_quality_samples}+ feedback scores; highest success "
                                f"rate ({best['success_rate']:.1%}) among {len(eligible)} model(s)")

    def _balanced(self, eligible: list[dict[str, Any]]) -> dict[str, Any] | None:
        rated = [r for r in eligible if r["quality_samples"] >= self.min_quality_samples]
        basis = "quality" if rated else "success rate"
        pool = rated or eligible
        merit = (lambda r: r["avg_quality"]) if rated else (lambda r: r["success_rate"])
        floor_ok = [r for r in pool if r["success_rate"] >= self.success_floor]
        pool = [r for r in (floor_ok or pool) if r["avg_cost_usd"] is not None]
        if not pool:
            return None
        top = max(merit(r) for r in pool)
        band = [r for r in pool if merit(r) >= top - self.balanced_tolerance - 1e-12]
        max_cost = max(r["avg_cost_usd"] for r in band)
        max_p95 = max((r["p95_latency_ms"] or 0.0) for r in band)

        def score(r: Mapping[str, Any]) -> float:
            c = r["avg_cost_usd"] / max_cost if max_cost > 0 else 0.0
            lat = (r["p95_latency_ms"] or 0.0) / max_p95 if max_p95 > 0 else 0.0
            return c + self.latency_weight * lat

        best = min(band, key=lambda r: (score(r), -merit(r), r["model"]))
        return self._pick(best, f"{basis} {merit(best):.3f} is within {self.balanced_tolerance:.2f} of the best "
                                f"({top:.3f}); cheapest/fastest of {len(band)} such model(s) "
                                f"(score {score(best):.3f} = cost/max + {self.latency_weight:g} x p95/max)")

    def performance_report(self, task: str | None = None) -> dict[str, Any]:
        """The seed's ``GET /api/v1/models/performance/`` payload (plus ``recommendation_details``,
        ``task`` and ``generated_at``)."""
        perf: dict[str, dict[str, Any]] = {}
        for r in self.stats(("model",), task=task):
            perf[r["model"]] = {
                "avg_processing_time_ms": _round(r["avg_latency_ms"], 1),
                "avg_cost_per_generation": _round(r["avg_cost_usd"], 6),
                "avg_quality_score": _round(r["avg_quality"], 4),
                "success_rate": _round(r["success_rate"], 4),
                "total_generations": r["count"],
            }
        recs = self.recommendations(task)
        return {
            "model_performance": perf,
            "recommendations": {
                "cost_leader": _model(recs["cost_leader"]),
                "quality_leader": _model(recs["quality_leader"]),
                "balanced_choice": _model(recs["balanced"]),
            },
            "recommendation_details": recs,
            "task": task,
            "generated_at": dt.datetime.fromtimestamp(self.clock.wall(), dt.UTC).isoformat(),
        }

    def models(self) -> list[str]:
        with self._lock:
            return sorted({m for m, _ in self._windows})

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
            self._by_id.clear()
            self._pending.clear()


def _neg(text: str) -> tuple[int, ...]:
    """A key that sorts strings in reverse, so ``max`` breaks ties toward the smaller model id."""
    return (*(-ord(c) for c in text), 1)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _model(rec: Mapping[str, Any] | None) -> str | None:
    return None if rec is None else str(rec["model"])


__all__ = ["PerformanceTracker", "percentile", "summarize"]
