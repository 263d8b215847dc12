"""The adaptive chooser: convergence to the best quality per dollar, exploration, determinism,
feedback corrections, failure handling, forgetting, and the snapshot.

Simulations need no HTTP: rank -> take the first -> sample an outcome from that model's true
quality with a seeded rng -> observe + feedback.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest

from modelplex.accounting.records import UsageRecord
from modelplex.catalog.schema import ModelSpec
from modelplex.policy.adaptive import AdaptiveChooser
from modelplex.resilience.clock import FakeClock


def spec(name: str, usd_per_mtok: float) -> ModelSpec:
    return ModelSpec(id=f"fake/{name}", provider="fake", context_window=32_000,
                     pricing={"input_per_mtok": usd_per_mtok, "output_per_mtok": usd_per_mtok})


A, B, C = spec("a", 10.0), spec("b", 1.0), spec("c", 0.1)
TRUE_QUALITY = {A.id: 0.9, B.id: 0.85, C.id: 0.4}


def simulate(chooser: AdaptiveChooser, models: list[ModelSpec], quality: Callable[[int, str], float],
             rounds: int, world: random.Random, clock: FakeClock, task: str = "summarize") -> list[str]:
    picks: list[str] = []
    for i in range(rounds):
        model = chooser.rank(task, models)[0]
        picks.append(model.id)
        tin, tout = world.randint(400, 1600), world.randint(100, 500)
        cost = (tin * model.pricing.input_per_mtok + tout * model.pricing.output_per_mtok) / 1e6
        rid = f"{task}-{i}"
        chooser.observe(UsageRecord(rid, task=task, model=model.id, provider="fake", success=True, cost_usd=cost,
                                    latency_ms=world.uniform(300, 700), input_tokens=tin, output_tokens=tout))
        assert chooser.feedback(rid, 1.0 if world.random() < quality(i, model.id) else 0.0)
        clock.advance(1.0)
    return picks


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_converges_to_the_best_quality_per_dollar(seed: int) -> None:
    clock = FakeClock()
    chooser = AdaptiveChooser(exploration=0.05, rng=random.Random(seed), clock=clock)
    picks = simulate(chooser, [A, B, C], lambda _i, m: TRUE_QUALITY[m], 2000, random.Random(1000 + seed), clock)
    last = Counter(picks[-500:])
    assert last[B.id] / 500 >= 0.8, last
    snap = {row["model"]: row for row in chooser.snapshot()["arms"]}
    assert snap[B.id]["n"] > snap[A.id]["n"] and snap[B.id]["n"] > snap[C.id]["n"]
    assert snap[B.id]["mean_reward"] == pytest.approx(0.85, abs=0.04)
    # observed mean cost per request: ~ (1000 + 300) tokens at $1/M
    assert snap[B.id]["avg_cost_usd"] == pytest.approx(1300 / 1e6, rel=0.1)


def test_without_exploration_a_dominant_arm_is_always_picked_after_convergence() -> None:
    strong, weak = spec("strong", 1.0), spec("weak", 1.0)
    quality = {strong.id: 0.95, weak.id: 0.1}
    clock = FakeClock()
    chooser = AdaptiveChooser(exploration=0.0, rng=random.Random(11), clock=clock)
    simulate(chooser, [weak, strong], lambda _i, m: quality[m], 300, random.Random(12), clock)
    after = simulate(chooser, [weak, strong], lambda _i, m: quality[m], 300, random.Random(13), clock)
    assert after == [strong.id] * 300


def test_full_exploration_picks_uniformly() -> None:
    chooser = AdaptiveChooser(exploration=1.0, rng=random.Random(5), clock=FakeClock())
    for i in range(200):  # a strong preference for A, which exploration must ignore
        chooser.observe(UsageRecord(f"r{i}", task="t", model=A.id, success=True, cost_usd=0.001))
    counts = Counter(chooser.rank("t", [A, B, C])[0].id for _ in range(3000))
    expected = 1000
    chi2 = sum((counts[m.id] - expected) ** 2 / expected for m in (A, B, C))
    assert chi2 < 13.8  # df = 2, p = 0.001


def test_exploration_is_settable_and_validated() -> None:
    chooser = AdaptiveChooser(exploration=0.2, rng=random.Random(0))
    assert chooser.exploration == 0.2
    chooser.exploration = 0.0
    assert chooser.exploration == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            chooser.exploration = bad
    with pytest.raises(ValueError):
        AdaptiveChooser(exploration=2.0)
    with pytest.raises(ValueError):
        AdaptiveChooser(prior_alpha=0.0)
    with pytest.raises(ValueError):
        AdaptiveChooser(half_life_s=0.0)


def test_rankings_are_deterministic_under_a_seed() -> None:
    def run() -> list[list[str]]:
        clock = FakeClock()
        chooser = AdaptiveChooser(exploration=0.1, rng=random.Random(99), clock=clock)
        simulate(chooser, [A, B, C], lambda _i, m: TRUE_QUALITY[m], 200, random.Random(3), clock)
        return [[m.id for m in chooser.rank("summarize", [A, B, C])] for _ in range(50)]

    first, second = run(), run()
    assert first == second
    assert len({tuple(r) for r in first}) > 1  # it is sampling, not a fixed order


def test_rank_keeps_every_candidate_and_explains_itself() -> None:
    chooser = AdaptiveChooser(exploration=0.0, rng=random.Random(1))
    ranked, reason = chooser.rank_explained("t", [A, B, C])
    assert sorted(m.id for m in ranked) == sorted([A.id, B.id, C.id])
    assert reason.startswith("adaptive: thompson sample put ") and ranked[0].id in reason
    chooser.exploration = 1.0
    ranked, reason = chooser.rank_explained("t", [A, B, C])
    assert reason == f"adaptive: explored {ranked[0].id} (exploration rate 1)"
    assert chooser.rank("t", [B]) == [B]
    assert chooser.rank("t", []) == []


def test_cold_start_uses_catalog_prices() -> None:
    # with no observations at all, rewards are Beta(1, 1) for everyone, so the cost weight decides on
    # average: the cheaper of two otherwise identical models is ranked first more often
    chooser = AdaptiveChooser(exploration=0.0, rng=random.Random(8))
    firsts = Counter(chooser.rank("new-task", [A, C])[0].id for _ in range(2000))
    assert firsts[C.id] > firsts[A.id] * 1.5


def test_feedback_corrects_the_booked_reward() -> None:
    chooser = AdaptiveChooser(rng=random.Random(0), clock=FakeClock())
    chooser.observe(UsageRecord("r1", task="t", model=B.id, success=True, cost_usd=0.002, latency_ms=800))
    [arm] = chooser.snapshot()["arms"]
    assert (arm["alpha"], arm["beta"]) == (2.0, 1.0)  # Beta(1, 1) prior + one success
    assert chooser.feedback("r1", 0.25)
    [arm] = chooser.snapshot()["arms"]
    assert arm["alpha"] == pytest.approx(1.25) and arm["beta"] == pytest.approx(1.75)
    assert arm["feedback_n"] == 1 and arm["n"] == 1
    assert chooser.feedback("r1", 1.0)  # a second score replaces the first
    [arm] = chooser.snapshot()["arms"]
    assert arm["alpha"] == pytest.approx(2.0) and arm["beta"] == pytest.approx(1.0)
    assert arm["avg_latency_ms"] == pytest.approx(800) and arm["avg_cost_usd"] == pytest.approx(0.002)
    assert not chooser.feedback("unknown", 0.5)
    with pytest.raises(ValueError):
        chooser.feedback("r1", 1.5)


def test_quality_already_on_the_record_is_used() -> None:
    chooser = AdaptiveChooser(rng=random.Random(0), clock=FakeClock())
    chooser.observe(UsageRecord("r", task="t", model=B.id, success=True, quality_score=0.6))
    [arm] = chooser.snapshot()["arms"]
    assert arm["alpha"] == pytest.approx(1.6) and arm["beta"] == pytest.approx(1.4)


def test_failed_attempts_count_against_their_models() -> None:
    chooser = AdaptiveChooser(rng=random.Random(0), clock=FakeClock())
    attempts = [
        {"target": A.id, "outcome": "error", "error_type": "server_error", "latency_ms": 50.0},
        {"target": A.id, "outcome": "error", "error_type": "server_error", "latency_ms": 50.0},
        {"target": C.id, "outcome": "error", "error_type": "bad_request", "latency_ms": 5.0},
        {"target": C.id, "outcome": "error", "error_type": "context_window_exceeded", "latency_ms": 5.0},
        {"target": C.id, "outcome": "error", "error_type": "content_policy", "latency_ms": 5.0},
        {"target": "fake/skipped", "outcome": "skipped_breaker", "latency_ms": 0.0},
        {"target": "fake/late", "outcome": "skipped_deadline", "latency_ms": 0.0},
        {"target": B.id, "outcome": "success", "latency_ms": 400.0},
    ]
    chooser.observe(UsageRecord("r", task="t", model=B.id, success=True, cost_usd=0.001, latency_ms=900,
                                attempts=attempts))
    arms = {row["model"]: row for row in chooser.snapshot()["arms"]}
    assert set(arms) == {A.id, B.id}  # a bad request says nothing about C; a skip nothing about anyone
    assert arms[A.id]["failures"] == 1 and arms[A.id]["beta"] == 2.0 and arms[A.id]["alpha"] == 1.0
    assert arms[B.id]["successes"] == 1 and arms[B.id]["avg_latency_ms"] == pytest.approx(400.0)
    # feedback on a request that failed everywhere changes nothing
    chooser.observe(UsageRecord("f", task="t", model=None, success=False,
                                attempts=[{"target": B.id, "outcome": "error", "error_type": "timeout"}]))
    assert not chooser.feedback("f", 1.0)
    assert {row["model"]: row for row in chooser.snapshot()["arms"]}[B.id]["failures"] == 1


def test_a_first_attempt_success_learns_as_the_general_path_does() -> None:
    """The one-attempt fast path books exactly what the loop over attempts books: a skipped attempt
    (which teaches nothing) sends the same request down the general path."""
    ok = {"target": B.id, "outcome": "success", "latency_ms": 400.0}
    skipped = {"target": A.id, "outcome": "skipped_breaker", "latency_ms": 0.0}
    snaps = []
    for attempts in ([ok], [skipped, ok]):
        chooser = AdaptiveChooser(rng=random.Random(0), clock=FakeClock())
        for i in range(3):
            chooser.observe(UsageRecord(f"r{i}", task="t", model=B.id, success=True, cost_usd=0.002,
                                        latency_ms=900, input_tokens=100, output_tokens=50,
                                        quality_score=0.5 if i == 1 else None, attempts=attempts))
        assert chooser.feedback("r2", 0.25)
        snaps.append(chooser.snapshot())
    assert snaps[0] == snaps[1]
    arm = snaps[0]["arms"][0]
    assert arm["model"] == B.id and arm["successes"] == 3 and arm["avg_latency_ms"] == pytest.approx(400.0)


def test_tasks_learn_separately() -> None:
    chooser = AdaptiveChooser(exploration=0.0, rng=random.Random(2), clock=FakeClock())
    for i in range(100):
        chooser.observe(UsageRecord(f"x{i}", task="x", model=A.id, success=True, cost_usd=0.01))
        chooser.observe(UsageRecord(f"y{i}", task="x", model=C.id, success=False))
        chooser.observe(UsageRecord(f"z{i}", task=None, model=C.id, success=True, cost_usd=0.0001))
        chooser.observe(UsageRecord(f"w{i}", task=None, model=A.id, success=False))
    assert all(chooser.rank("x", [C, A])[0] == A for _ in range(50))
    assert all(chooser.rank(None, [A, C])[0] == C for _ in range(50))
    assert {(r["task"], r["model"]) for r in chooser.snapshot()["arms"]} == {
        ("x", A.id), ("x", C.id), ("*", A.id), ("*", C.id)}


def test_half_life_follows_a_model_that_got_worse() -> None:
    fast = {B.id: 0.9, C.id: 0.9}
    clock = FakeClock()
    chooser = AdaptiveChooser(exploration=0.05, rng=random.Random(4), clock=clock, half_life_s=100.0)

    def quality(i: int, model: str) -> float:
        return fast[model] if i < 1000 or model != C.id else 0.05  # C degrades after round 1000

    picks = simulate(chooser, [B, C], quality, 1600, random.Random(6), clock)
    assert Counter(picks[800:1000])[C.id] / 200 >= 0.8  # cheaper at equal quality: C first
    assert Counter(picks[-300:])[B.id] / 300 >= 0.9  # after the change, B takes over
    snap = chooser.snapshot()
    [c_arm] = [r for r in snap["arms"] if r["model"] == C.id]
    assert c_arm["alpha"] + c_arm["beta"] < 200  # old evidence was forgotten
    # the same world without forgetting: a thousand good rounds of C outweigh the change for long
    clock = FakeClock()
    stubborn = AdaptiveChooser(exploration=0.05, rng=random.Random(4), clock=clock)
    picks = simulate(stubborn, [B, C], quality, 1600, random.Random(6), clock)
    assert Counter(picks[-300:])[B.id] / 300 < 0.5


def test_snapshot_restores() -> None:
    clock = FakeClock()
    chooser = AdaptiveChooser(exploration=0.0, rng=random.Random(1), clock=clock)
    simulate(chooser, [A, B, C], lambda _i, m: TRUE_QUALITY[m], 300, random.Random(2), clock)
    snap = chooser.snapshot()
    assert snap["prior"] == {"alpha": 1.0, "beta": 1.0} and snap["algorithm"] == "thompson_sampling"
    other = AdaptiveChooser(exploration=0.0, rng=random.Random(1), clock=clock)
    assert other.restore(snap) == 3
    again = other.snapshot()
    for before, after in zip(snap["arms"], again["arms"], strict=True):
        for field in ("task", "model", "alpha", "beta", "n", "successes", "failures", "avg_cost_usd"):
            assert after[field] == pytest.approx(before[field]) if isinstance(before[field], float) \
                else after[field] == before[field]
    other.reset()
    assert other.snapshot()["arms"] == []


def test_feedback_memory_is_bounded_by_count_and_age() -> None:
    clock = FakeClock()
    chooser = AdaptiveChooser(rng=random.Random(0), clock=clock, max_pending=3, pending_max_age_s=60.0)
    for i in range(4):
        chooser.observe(UsageRecord(f"r{i}", task="t", model=B.id, success=True, cost_usd=0.001))
    assert not chooser.feedback("r0", 0.5)  # the oldest of four fell out (bound 3)
    assert chooser.feedback("r1", 0.5)
    clock.advance(61.0)
    assert not chooser.feedback("r2", 0.5)  # too old for feedback
    chooser.observe(UsageRecord("new", task="t", model=B.id, success=True, cost_usd=0.001))
    assert len(chooser._pending) == 1  # the sweep forgot the old ones
    assert chooser.feedback("new", 0.0)
    [arm] = chooser.snapshot()["arms"]
    assert arm["feedback_n"] == 2
    with pytest.raises(ValueError):
        AdaptiveChooser(max_pending=0)


def test_feedback_after_restore_reaches_the_restored_arm() -> None:
    chooser = AdaptiveChooser(rng=random.Random(0), clock=FakeClock())
    chooser.observe(UsageRecord("r1", task="t", model=B.id, success=True, cost_usd=0.001))
    chooser.restore(chooser.snapshot())
    assert chooser.feedback("r1", 0.0)
    [arm] = chooser.snapshot()["arms"]
    assert arm["alpha"] == pytest.approx(1.0) and arm["beta"] == pytest.approx(2.0)
    chooser.reset()
    assert not chooser.feedback("r1", 1.0)
