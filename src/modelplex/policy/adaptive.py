"""The ``adaptive`` strategy: a Thompson-sampling bandit that learns which candidate to try first.

Owns: ``AdaptiveChooser`` (per (task, model) arm: a Beta posterior over "succeeded with good
quality", plus running means of latency and cost; ``rank``, ``observe``, ``feedback``,
``snapshot``/``restore``) and ``ArmStats``.

Objective (docs/adaptive.md). For each candidate, draw ``θ ~ Beta(α, β)`` and score

    score = θ × (cost / COST_REF) ^ (-cost_exponent) × (latency / latency_ref) ^ (-latency_exponent)

where ``cost`` is the arm's expected USD per request (its observed mean; before any observation,
catalog prices times the task's mean token counts) and ``latency`` its observed mean seconds (the
candidates' geometric mean when unobserved, i.e. neutral). The references cancel in the ranking;
only ratios between candidates matter. ``cost_exponent = 0.25`` means a model ten times the price
must deliver 10^0.25 ≈ 1.78 times the expected reward to rank first. With probability
``exploration`` a uniformly random candidate is put first instead (visible in the reason).

Reward: ``success × quality`` where quality feedback (0..1) arrived, else ``success``. A success is
booked as reward 1 on ``observe``; a later ``feedback(request_id, q)`` corrects it to ``q``.

Must not touch: the planner (which calls ``rank`` on its primaries), the router, HTTP, storage.
State is per process; ``snapshot``/``restore`` move it elsewhere if wanted.
"""

from __future__ import annotations

import math
import random
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelplex.resilience.clock import Clock, SystemClock

if TYPE_CHECKING:
    from modelplex.accounting.records import UsageRecord
    from modelplex.catalog.schema import ModelSpec

ANY_TASK = "*"
"""The arm key's task part for requests that name no task."""

COST_REF = 1e-3
"""USD per request that the cost weight is expressed against (cancels in ranking; shown in snapshots)."""

COST_FLOOR = 1e-7
"""Expected costs are floored here, so free models (local servers) get a large but finite boost."""

LATENCY_FLOOR = 0.05
"""Seconds; latencies below this are treated as this."""

DEFAULT_TOKENS = (250.0, 750.0)
"""(input, output) tokens assumed per request before a task has any observation: the catalog's
1:3 blended price for 1,000 tokens."""

MAX_PENDING = 10_000
"""Successful requests remembered for ``feedback`` (the oldest are forgotten first)."""

PENDING_MAX_AGE_S = 900.0
"""Seconds a successful request stays open to ``feedback`` (feedback arrives within minutes)."""

NEUTRAL_ERRORS = frozenset({"bad_request", "context_window_exceeded", "content_policy", "authentication",
                            "permission_denied", "rate_limited"})
"""Attempt errors that say nothing about the model's quality (the caller's request, including one too long
for this model's window or refused on content grounds, credentials, or momentary throttling, which the
throttle registry handles): they are not counted as failures."""


@dataclass(slots=True)
class ArmStats:
    """What one (task, model) arm has learned. ``alpha``/``beta`` hold the evidence only (the prior
    is added on read), decayed by ``half_life_s`` when set."""

    task: str
    model: str
    alpha: float = 0.0
    beta: float = 0.0
    n: int = 0
    successes: int = 0
    failures: int = 0
    feedback_n: int = 0
    latency_mean: float = 0.0
    latency_w: float = 0.0
    cost_mean: float = 0.0
    cost_w: float = 0.0
    updated: float = 0.0


class AdaptiveChooser:
    """Ranks candidates per task by Thompson sampling over their observed quality per dollar.

    ``prior_alpha``/``prior_beta``: the Beta prior on every arm (default Beta(1, 1), uniform).
    ``exploration``: probability of putting a uniformly random candidate first (settable).
    ``rng``: the randomness (seed it for reproducible rankings). ``clock``: monotonic time, for
    ``half_life_s`` (``None``: no forgetting; otherwise evidence halves every ``half_life_s`` seconds,
    so the chooser follows models whose quality or price changes). ``max_pending`` and
    ``pending_max_age_s`` bound the successful requests remembered for ``feedback``: the most recent
    ``max_pending``, for at most ``pending_max_age_s`` seconds (``None``: no age limit).
    """

    def __init__(self, *, prior_alpha: float = 1.0, prior_beta: float = 1.0, exploration: float = 0.1,
                 rng: random.Random | None = None, clock: Clock | None = None, half_life_s: float | None = None,
                 cost_exponent: float = 0.25, latency_exponent: float = 0.1, latency_ref_s: float = 1.0,
                 max_pending: int = MAX_PENDING, pending_max_age_s: float | None = PENDING_MAX_AGE_S) -> None:
        if not (prior_alpha > 0 and prior_beta > 0 and math.isfinite(prior_alpha + prior_beta)):
            raise ValueError("prior_alpha and prior_beta must be positive and finite")
        if half_life_s is not None and not (half_life_s > 0 and math.isfinite(half_life_s)):
            raise ValueError(f"half_life_s must be a positive number of seconds, got {half_life_s!r}")
        if not (cost_exponent >= 0 and latency_exponent >= 0):
            raise ValueError("cost_exponent and latency_exponent must be >= 0")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        if pending_max_age_s is not None and not pending_max_age_s > 0:
            raise ValueError(f"pending_max_age_s must be a positive number of seconds, got {pending_max_age_s!r}")
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.exploration = exploration
        self.rng = rng or random.Random()
        self.clock: Clock = clock or SystemClock()
        self.half_life_s = half_life_s
        self.cost_exponent = float(cost_exponent)
        self.latency_exponent = float(latency_exponent)
        self.latency_ref_s = float(latency_ref_s)
        self._max_pending = max_pending
        self._pending_max_age = pending_max_age_s
        self._arms: dict[tuple[str, str], ArmStats] = {}
        self._tokens: dict[str, tuple[float, float, float]] = {}  # task -> (in mean, out mean, weight)
        # request id -> (arm, reward booked, when), oldest first; the arm is looked up again by its
        # (task, model) on feedback, so a restore() in between is honoured
        self._pending: OrderedDict[str, tuple[ArmStats, float, float]] = OrderedDict()
        self._next_pending_sweep = -math.inf
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ settings

    @property
    def exploration(self) -> float:
        """Probability in [0, 1] that ``rank`` puts a uniformly random candidate first."""
        return self._exploration

    @exploration.setter
    def exploration(self, value: float) -> None:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"exploration must be between 0 and 1, got {value!r}")
        self._exploration = v

    # ------------------------------------------------------------------ internals

    def _decay_factor(self, since: float, now: float) -> float:
        if self.half_life_s is None or now <= since:
            return 1.0
        return 0.5 ** ((now - since) / self.half_life_s)

    def _arm(self, task: str, model: str, now: float) -> ArmStats:
        key = (task, model)
        arm = self._arms.get(key)
        if arm is None:
            arm = self._arms[key] = ArmStats(task, model, updated=now)
            return arm
        if self.half_life_s is not None and now > arm.updated:
            f = 0.5 ** ((now - arm.updated) / self.half_life_s)
            if f < 1.0:
                arm.alpha *= f
                arm.beta *= f
                arm.latency_w *= f
                arm.cost_w *= f
        arm.updated = now
        return arm

    def _expected_cost(self, arm: ArmStats | None, spec: ModelSpec, task: str) -> float:
        if arm is not None and arm.cost_w > 0:
            return max(arm.cost_mean, COST_FLOOR)
        tin, tout, w = self._tokens.get(task, (0.0, 0.0, 0.0))
        if w <= 0:
            tin, tout = DEFAULT_TOKENS
        p = spec.pricing
        return max((tin * p.input_per_mtok + tout * p.output_per_mtok) / 1e6, COST_FLOOR)

    def _weights(self, task: str, candidates: Sequence[ModelSpec], now: float
                 ) -> list[tuple[ArmStats | None, float, float]]:
        """Per candidate: (arm or None, cost weight, latency weight)."""
        arms = [self._arms.get((task, c.id)) for c in candidates]
        arms = [self._arm(task, c.id, now) if a is not None else None for a, c in zip(arms, candidates, strict=True)]
        observed = [max(a.latency_mean, LATENCY_FLOOR) for a in arms if a is not None and a.latency_w > 0]
        neutral = math.exp(sum(map(math.log, observed)) / len(observed)) if observed else self.latency_ref_s
        out = []
        for arm, spec in zip(arms, candidates, strict=True):
            cost = self._expected_cost(arm, spec, task)
            lat = max(arm.latency_mean, LATENCY_FLOOR) if arm is not None and arm.latency_w > 0 else neutral
            out.append((arm, (cost / COST_REF) ** -self.cost_exponent,
                        (lat / self.latency_ref_s) ** -self.latency_exponent))
        return out

    # ------------------------------------------------------------------ ranking

    def rank(self, task: str | None, candidates: Sequence[ModelSpec]) -> list[ModelSpec]:
        """The candidates, best first (see the module docstring for the score)."""
        return self.rank_explained(task, candidates)[0]

    def rank_explained(self, task: str | None, candidates: Sequence[ModelSpec]) -> tuple[list[ModelSpec], str]:
        """``rank`` plus a one-line reason for the plan's ``selection_reason``."""
        cands = list(candidates)
        if len(cands) <= 1:
            return cands, "adaptive: single candidate"
        t = task or ANY_TASK
        with self._lock:
            now = self.clock.now()
            explore = self.rng.random() < self._exploration
            pick = self.rng.randrange(len(cands)) if explore else -1
            scored: list[tuple[float, int]] = []
            for i, (arm, cw, lw) in enumerate(self._weights(t, cands, now)):
                a = self.prior_alpha + (arm.alpha if arm else 0.0)
                b = self.prior_beta + (arm.beta if arm else 0.0)
                theta = self.rng.betavariate(a, b)
                scored.append((theta * cw * lw, i))
        scored.sort(key=lambda x: (-x[0], x[1]))
        order = [i for _, i in scored]
        if explore:
            order.remove(pick)
            order.insert(0, pick)
            first = cands[pick]
            return ([cands[i] for i in order],
                    f"adaptive: explored {first.id} (exploration rate {self._exploration:g})")
        best_score, best = scored[0]
        return ([cands[i] for i in order],
                f"adaptive: thompson sample put {cands[best].id} first (score {best_score:.3g} "
                f"of {len(cands)} candidates)")

    # ------------------------------------------------------------------ learning

    def observe(self, rec: UsageRecord) -> None:
        """Learn from one finished request: a success (reward 1, or ``rec.quality_score`` when set)
        for the model that answered, a failure for each model whose attempt errored (except
        ``NEUTRAL_ERRORS``); skipped and cancelled attempts teach nothing."""
        served = rec.model
        attempts = rec.attempts
        if served and rec.success and len(attempts) == 1:
            only = attempts[0]
            if only.get("target") == served and only.get("outcome") == "success":
                # the common case, the first attempt answered: one success, no loop over attempts
                self._book(rec, {served: True}, float(only.get("latency_ms") or 0.0) / 1000.0)
                return
        outcome: dict[str, bool] = {}
        served_latency = 0.0  # seconds, of the served model's last successful attempt
        for a in attempts or ():
            target = a.get("target")
            if not isinstance(target, str):
                continue
            kind = a.get("outcome")
            if kind == "success":
                outcome[target] = True
                if target == served:
                    served_latency = float(a.get("latency_ms") or 0.0) / 1000.0
            elif kind == "error" and target not in outcome and a.get("error_type") not in NEUTRAL_ERRORS:
                outcome[target] = False
        if served:
            if rec.success:
                outcome[served] = True
            elif not attempts and served not in outcome:
                outcome[served] = False
        if outcome:
            self._book(rec, outcome, served_latency)

    def _book(self, rec: UsageRecord, outcome: dict[str, bool], served_latency: float) -> None:
        """Apply one request's outcomes (model -> succeeded) to the arms of its task."""
        served = rec.model
        task = rec.task or ANY_TASK
        q = rec.quality_score
        reward = 1.0 if q is None else min(max(float(q), 0.0), 1.0)
        with self._lock:
            now = self.clock.now()
            for model, ok in outcome.items():
                arm = self._arm(task, model, now)
                arm.n += 1
                if not ok:
                    arm.failures += 1
                    arm.beta += 1.0
                    continue
                arm.successes += 1
                arm.alpha += reward
                arm.beta += 1.0 - reward
                if model == served:
                    arm.cost_w += 1.0
                    arm.cost_mean += (max(rec.cost_usd, 0.0) - arm.cost_mean) / arm.cost_w
                    lat = served_latency or rec.latency_ms / 1000.0
                    if lat > 0:
                        arm.latency_w += 1.0
                        arm.latency_mean += (lat - arm.latency_mean) / arm.latency_w
                    self._learn_tokens(task, rec, now)
                    self._remember(rec.request_id, (arm, reward, now), now)

    def _remember(self, request_id: str, entry: tuple[ArmStats, float, float], now: float) -> None:
        """Keep a successful request open to ``feedback`` (bounded in count and age)."""
        pending = self._pending
        if request_id in pending:
            pending.move_to_end(request_id)
        pending[request_id] = entry
        if len(pending) > self._max_pending:
            pending.popitem(last=False)
        if self._pending_max_age is not None and now >= self._next_pending_sweep:
            # at most once per second of clock time: forget the entries past the age limit
            self._next_pending_sweep = now + 1.0
            cutoff = now - self._pending_max_age
            while pending:
                oldest = next(iter(pending))
                if pending[oldest][2] > cutoff:
                    break
                del pending[oldest]

    def _learn_tokens(self, task: str, rec: UsageRecord, now: float) -> None:
        if rec.input_tokens <= 0 and rec.output_tokens <= 0:
            return
        tin, tout, w = self._tokens.get(task, (0.0, 0.0, 0.0))
        w = min(w, 1000.0) + 1.0  # an EW mean over roughly the last thousand requests
        self._tokens[task] = (tin + (rec.input_tokens - tin) / w, tout + (rec.output_tokens - tout) / w, w)

    def feedback(self, request_id: str, score: float) -> bool:
        """Correct a successful request's reward to ``score`` (0..1). A second call for the same
        request replaces the first. Returns ``False`` for an unknown (or failed, or evicted) request."""
        q = float(score)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"score must be between 0 and 1, got {score!r}")
        with self._lock:
            entry = self._pending.get(request_id)
            if entry is None:
                return False
            booked_arm, booked, at = entry
            now = self.clock.now()
            if self._pending_max_age is not None and now - at > self._pending_max_age:
                del self._pending[request_id]
                return False
            if (booked_arm.task, booked_arm.model) not in self._arms:
                return False
            arm = self._arm(booked_arm.task, booked_arm.model, now)
            f = self._decay_factor(at, now)
            arm.alpha = max(0.0, arm.alpha + (q - booked) * f)
            arm.beta = max(0.0, arm.beta + (booked - q) * f)
            arm.feedback_n += 1
            self._pending[request_id] = (arm, q, at)
            return True

    # ------------------------------------------------------------------ views

    def snapshot(self) -> dict[str, Any]:
        """For the admin API and dashboard: settings, and per arm its posterior and running means."""
        with self._lock:
            now = self.clock.now()
            arms = []
            for (task, model) in sorted(self._arms):
                arm = self._arm(task, model, now)
                a, b = self.prior_alpha + arm.alpha, self.prior_beta + arm.beta
                arms.append({
                    "task": task, "model": model, "alpha": a, "beta": b, "mean_reward": a / (a + b),
                    "n": arm.n, "successes": arm.successes, "failures": arm.failures,
                    "feedback_n": arm.feedback_n,
                    "avg_latency_ms": arm.latency_mean * 1000.0 if arm.latency_w > 0 else None,
                    "avg_cost_usd": arm.cost_mean if arm.cost_w > 0 else None,
                })
            return {
                "strategy": "adaptive", "algorithm": "thompson_sampling",
                "prior": {"alpha": self.prior_alpha, "beta": self.prior_beta},
                "exploration": self._exploration, "half_life_s": self.half_life_s,
                "cost_exponent": self.cost_exponent, "latency_exponent": self.latency_exponent,
                "arms": arms,
            }

    def restore(self, snapshot: Mapping[str, Any]) -> int:
        """Load the arms of a ``snapshot()`` (e.g. persisted across restarts); returns how many.
        Running means come back with weight ``min(n, 1000)``; pending feedback is not restored."""
        loaded = 0
        with self._lock:
            now = self.clock.now()
            for row in snapshot.get("arms", ()):
                n = int(row.get("n", 0))
                arm = ArmStats(str(row["task"]), str(row["model"]),
                               alpha=max(0.0, float(row["alpha"]) - self.prior_alpha),
                               beta=max(0.0, float(row["beta"]) - self.prior_beta), n=n,
                               successes=int(row.get("successes", 0)), failures=int(row.get("failures", 0)),
                               feedback_n=int(row.get("feedback_n", 0)), updated=now)
                w = float(min(max(arm.successes, 1), 1000))
                if row.get("avg_latency_ms") is not None:
                    arm.latency_mean, arm.latency_w = float(row["avg_latency_ms"]) / 1000.0, w
                if row.get("avg_cost_usd") is not None:
                    arm.cost_mean, arm.cost_w = float(row["avg_cost_usd"]), w
                self._arms[(arm.task, arm.model)] = arm
                loaded += 1
        return loaded

    def reset(self) -> None:
        with self._lock:
            self._arms.clear()
            self._tokens.clear()
            self._pending.clear()
