"""Performance statistics, late feedback, recommendations and the seed's performance payload."""

from __future__ import annotations

from typing import Any

import pytest

from modelplex.accounting.performance import PerformanceTracker, percentile
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks import MemorySink
from modelplex.resilience.clock import FakeClock

T0 = 1_767_571_200.0
MINI, GPT4O, OPUS = "openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-opus-4-1"


def rec(rid: str, model: str | None, *, task: str | None = "cv_generation", success: bool = True,
        latency: float = 100.0, cost: float = 0.001, ts: float = T0, attempts: list[dict[str, Any]] | None = None,
        strategy: str | None = "balanced") -> UsageRecord:
    return UsageRecord(rid, ts=ts, model=model, provider=model.split("/")[0] if model else None, task=task,
                       strategy=strategy, success=success, latency_ms=latency, cost_usd=cost,
                       attempts=attempts or [])


def test_percentile_is_nearest_rank() -> None:
    assert percentile([10, 20, 30, 40], 50) == 20
    assert percentile([10, 20, 30, 40], 95) == 40
    assert percentile([10, 20, 30, 40], 25) == 10
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50, 95, 100)


def test_stats_exact_figures() -> None:
    t = PerformanceTracker(clock=FakeClock())
    for i, lat in enumerate([100.0, 200.0, 300.0, 400.0]):
        t.observe(rec(f"a{i}", MINI, latency=lat, cost=0.001 * (i + 1)))
    t.observe(rec("a-fail", MINI, success=False, latency=5000.0, cost=0.0))
    t.observe(rec("b0", OPUS, latency=900.0, cost=0.05, task="reasoning"))
    rows = t.stats()
    assert [(r["model"], r["task"]) for r in rows] == [(OPUS, "reasoning"), (MINI, "cv_generation")]
    mini = rows[1]
    assert (mini["count"], mini["successes"]) == (5, 4)
    assert mini["success_rate"] == pytest.approx(0.8)
    assert mini["avg_latency_ms"] == pytest.approx(250.0)  # successful requests only
    assert (mini["p50_latency_ms"], mini["p95_latency_ms"]) == (200.0, 400.0)
    assert mini["avg_cost_usd"] == pytest.approx(0.0025)
    assert mini["total_cost_usd"] == pytest.approx(0.01)
    assert mini["avg_quality"] is None and mini["quality_samples"] == 0
    by_provider = t.stats(by=("provider",))
    assert [(r["provider"], r["count"]) for r in by_provider] == [("anthropic", 1), ("openai", 5)]
    assert [r["model"] for r in t.stats(by=("model",), task="reasoning")] == [OPUS]
    with pytest.raises(ValueError):
        t.stats(by=("colour",))


def test_failed_requests_are_charged_to_the_last_model_called() -> None:
    t = PerformanceTracker()
    called = [{"target": GPT4O, "provider": "openai", "outcome": "error"},
              {"target": MINI, "provider": "openai", "outcome": "skipped_breaker"}]
    t.observe(rec("x", None, success=False, attempts=called))
    t.observe(rec("y", None, success=False, attempts=[{"target": MINI, "outcome": "skipped_context"}]))
    rows = t.stats(by=("model",))
    assert [(r["model"], r["count"], r["success_rate"]) for r in rows] == [(GPT4O, 1, 0.0)]


def test_late_feedback_is_attributed_and_bounded() -> None:
    t = PerformanceTracker(feedback_window=2)
    t.observe(rec("r1", MINI))
    t.observe(rec("r2", MINI))
    assert t.feedback("r2", 0.5) is True
    t.observe(rec("r3", MINI))  # r1 falls out of the feedback map (bound 2)
    assert t.feedback("r1", 1.0) is False
    assert t.feedback("r3", 0.7) is True
    row = t.stats(by=("model",))[0]
    assert row["avg_quality"] == pytest.approx(0.6) and row["quality_samples"] == 2
    # a score that arrives before its request is kept and applied when the request is observed
    assert t.feedback("r9", 0.1) is False
    t.observe(rec("r9", MINI))
    assert t.stats(by=("model",))[0]["quality_samples"] == 3


def test_late_feedback_expires_after_the_age_limit() -> None:
    clock = FakeClock()
    t = PerformanceTracker(clock=clock, feedback_max_age_s=60.0)
    t.observe(rec("r1", MINI))
    assert t.feedback("early", 0.9) is False  # kept for a request not observed yet
    clock.advance(61.0)
    assert t.feedback("r1", 0.5) is False
    t.observe(rec("early", MINI))  # its score is too old to apply
    assert t.stats(by=("model",))[0]["quality_samples"] == 0
    assert t.feedback("early", 0.7) is True
    assert t.stats(by=("model",))[0]["avg_quality"] == pytest.approx(0.7)
    assert len(t._by_id) == 1 and len(t._pending) == 1  # only what is younger than the limit
    with pytest.raises(ValueError):
        PerformanceTracker(feedback_max_age_s=0.0)


def test_window_keeps_the_latest_requests_per_key() -> None:
    t = PerformanceTracker(window=3)
    for i in range(5):
        t.observe(rec(f"r{i}", MINI, latency=float(i)))
    t.observe(rec("o", OPUS))
    row = next(r for r in t.stats() if r["model"] == MINI)
    assert row["count"] == 3 and row["avg_latency_ms"] == pytest.approx(3.0)


def _seed_world(t: PerformanceTracker, n: int = 20, *, feedback: bool = True) -> None:
    """The seed's comparison table: mini cheap (0.82), 4o balanced (0.89), opus best (0.94)."""
    world = [(MINI, 0.0015, 600.0, 0.82), (GPT4O, 0.035, 1200.0, 0.89), (OPUS, 0.085, 1800.0, 0.94)]
    for model, cost, latency, quality in world:
        for i in range(n):
            rid = f"{model}-{i}"
            t.observe(rec(rid, model, cost=cost, latency=latency))
            if feedback:
                t.feedback(rid, quality)


def test_recommendations_follow_the_documented_formulas() -> None:
    t = PerformanceTracker(min_samples=20)
    _seed_world(t)
    recs = t.recommendations()
    assert recs["cost_leader"] is not None and recs["cost_leader"]["model"] == MINI
    assert recs["quality_leader"] is not None and recs["quality_leader"]["model"] == OPUS
    assert recs["balanced"] is not None and recs["balanced"]["model"] == GPT4O
    assert recs["quality_leader"]["avg_quality"] == pytest.approx(0.94)
    assert "lowest average cost" in recs["cost_leader"]["reason"]
    assert "within 0.05 of the best" in recs["balanced"]["reason"]


def test_cost_leader_needs_the_success_floor_and_enough_samples() -> None:
    t = PerformanceTracker(min_samples=20)
    _seed_world(t)
    for i in range(20):  # cheaper still, but fails 3 times in 20 (85% < 90%)
        t.observe(rec(f"flaky-{i}", "groq/llama", cost=0.0001, success=i >= 3))
    for i in range(5):  # cheapest, but too few samples
        t.observe(rec(f"new-{i}", "deepseek/chat", cost=0.00001))
    assert t.recommendations()["cost_leader"]["model"] == MINI  # type: ignore[index]
    assert PerformanceTracker(min_samples=20).recommendations() == {
        "cost_leader": None, "quality_leader": None, "balanced": None}


def test_without_feedback_quality_falls_back_to_success_rate() -> None:
    t = PerformanceTracker(min_samples=10)
    _seed_world(t, feedback=False)
    for i in range(20):
        t.observe(rec(f"opus-fail-{i}", OPUS, success=False))  # opus: 20/40 succeed
    recs = t.recommendations()
    q = recs["quality_leader"]
    assert q is not None and q["model"] == MINI  # success 1.0 for mini and 4o; mini is faster
    assert "no model has 5+ feedback scores" in q["reason"]
    b = recs["balanced"]
    assert b is not None and b["model"] == MINI  # 4o and mini tie on success; mini is cheaper and faster


def test_recommendations_per_task() -> None:
    t = PerformanceTracker(min_samples=2)
    for i in range(3):
        t.observe(rec(f"a{i}", MINI, task="fast", cost=0.001))
        t.observe(rec(f"b{i}", OPUS, task="fast", cost=0.01))
        t.observe(rec(f"c{i}", OPUS, task="reasoning", cost=0.01))
    assert t.recommendations("fast")["cost_leader"]["model"] == MINI  # type: ignore[index]
    assert t.recommendations("reasoning")["cost_leader"]["model"] == OPUS  # type: ignore[index]


def test_performance_report_has_the_seed_shape() -> None:
    t = PerformanceTracker(min_samples=20, clock=FakeClock())
    _seed_world(t)
    report = t.performance_report()
    assert set(report) >= {"model_performance", "recommendations"}
    assert report["recommendations"] == {"cost_leader": MINI, "quality_leader": OPUS, "balanced_choice": GPT4O}
    assert report["model_performance"][GPT4O] == {
        "avg_processing_time_ms": 1200.0, "avg_cost_per_generation": 0.035, "avg_quality_score": 0.89,
        "success_rate": 1.0, "total_generations": 20}
    assert report["generated_at"] == "2026-01-01T00:00:00+00:00"


async def test_load_from_sink_warms_up() -> None:
    sink = MemorySink()
    await sink.write_batch([rec(f"r{i}", MINI, latency=10.0 * (i + 1), ts=T0 + i) for i in range(4)])
    await sink.write_batch([rec("f", None, success=False, ts=T0 + 10,
                                attempts=[{"target": GPT4O, "provider": "openai", "outcome": "error"}])])
    await sink.add_feedback("r0", 0.4, None, T0)
    t = PerformanceTracker()
    assert await t.load_from_sink(sink, since=T0 + 1) == 4
    rows = {r["model"]: r for r in t.stats(by=("model",))}
    assert rows[MINI]["count"] == 3 and rows[MINI]["p50_latency_ms"] == 30.0
    assert rows[GPT4O]["success_rate"] == 0.0
    t2 = PerformanceTracker()
    await t2.load_from_sink(sink)
    assert t2.stats(by=("model",), model=MINI)[0]["avg_quality"] == pytest.approx(0.4)
    assert t2.feedback("r1", 0.6) is True  # loaded requests can still take late feedback


def test_max_age_ignores_old_samples() -> None:
    clock = FakeClock(wall_start=T0 + 3600)
    t = PerformanceTracker(clock=clock, max_age=1800)
    t.observe(rec("old", MINI, ts=T0))
    t.observe(rec("new", MINI, ts=T0 + 3000))
    assert t.stats(by=("model",))[0]["count"] == 1
