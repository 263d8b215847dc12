"""Performance statistics per model and task, recommendations, and the seed's performance payload.

Owns: ``PerformanceTracker`` — ``observe(rec)`` keeps the last ``window`` requests per (model,
task); ``feedback(request_id, score)`` attributes a late quality score through a bounded map;
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


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``None`` when empty)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = math.ceil(p / 100.0 * n)
    return float(sorted_values[min(n, max(1, rank)) - 1])


@dataclass(slots=True)
class _Sample:
    request_id: str
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

    def __init__(self, *, clock: Clock | None = None, window: int = 10_000, feedback_window: int = 20_000,
                 min_samples: int = 20, success_floor: float = 0.9, min_quality_samples: int = 5,
                 balanced_tolerance: float = 0.05, latency_weight: float = 0.25,
                 max_age: float | None = None) -> None:
        if window < 1 or feedback_window < 1:
            raise ValueError("window and feedback_window must be >= 1")
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
        self._windows: dict[tuple[str, str | None], deque[_Sample]] = {}
        self._by_id: OrderedDict[str, _Sample] = OrderedDict()
        self._pending: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ input

    def observe(self, rec: UsageRecord) -> None:
        """Count one finished request (the router calls this once per logical request)."""
        model, provider = attribution(rec.model, rec.provider, rec.attempts)
        if model is None:
            return
        self._add(_Sample(rec.request_id, float(rec.ts), model, provider, rec.task, rec.strategy, bool(rec.success),
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
        self._add(_Sample(str(d["request_id"]), float(d["ts"]), model, provider, d.get("task"), d.get("strategy"),
                          bool(d["success"]), float(d["latency_ms"]), float(d["cost_usd"]),
                          None if q is None else float(q)))

    def _add(self, s: _Sample) -> None:
        with self._lock:
            key = (s.model, s.task)
            win = self._windows.get(key)
            if win is None:
                win = self._windows[key] = deque(maxlen=self.window)
            win.append(s)
            pending = self._pending.pop(s.request_id, None)
            if pending is not None:
                s.quality = pending
            self._by_id[s.request_id] = s
            self._by_id.move_to_end(s.request_id)
            while len(self._by_id) > self.feedback_window:
                self._by_id.popitem(last=False)

    def feedback(self, request_id: str, score: float) -> bool:
        """Attach a quality score (0..1). Returns whether the request was known; an unknown one is
        kept (bounded) and applied if the request is observed later."""
        score = float(score)
        with self._lock:
            s = self._by_id.get(request_id)
            if s is not None:
                s.quality = score
                return True
            self._pending[request_id] = score
            self._pending.move_to_end(request_id)
            while len(self._pending) > self.feedback_window:
                self._pending.popitem(last=False)
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
