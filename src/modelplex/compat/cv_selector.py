"""Seed 004 (``IntelligentModelSelector`` and the ``processing_metadata`` of its services), over the planner.

The seed's names keep working: ``IntelligentModelSelector(router=None).select_model_for_task(
task_type, context) -> str`` and ``get_selection_reason(model, context)``, plus ``processing_metadata``
(the dict the seed's services attach to every answer). The seed chose models with if/else on model
names; here each of its rules picks a *task*, a *strategy* and, where the seed asks for it, an extra
*requirement*, and the router's ``Planner`` picks the model — so the strategies, tasks, environment
overrides, fallbacks and catalog of the router all apply:

================  ===========================================  ============================================
task              seed rule                                     modelplex
================  ===========================================  ============================================
``job_parsing``   job description > 1,000 words: "better long  ``quality_optimized`` + capability
                  context" model                                ``long_context`` (the task's requirements too)
                  < 200 words: cost-efficient model             ``cost_optimized``
                  otherwise: the strategy's parsing model       the strategy in force, ``strategy_name``
                                                                (pinned, runtime, ``MODEL_SELECTION_STRATEGY``,
                                                                A/B, ``routing.default_strategy``; not the
                                                                built-in task's ``cost_optimized``), and its
                                                                ``models.job_parsing``
``cv_generation`` complexity > 0.8 or > 10 artifacts: premium   ``quality_optimized`` (kept ``experimental``
                  (opus under quality/experimental strategies,  when that is the strategy in force); the
                  sonnet otherwise)                             planner's complexity escalation also applies
                  complexity > 0.5: balanced model              ``balanced``
                  otherwise: cost-efficient model               ``cost_optimized``
``embedding``     use case ``semantic_analysis`` /              ``quality_optimized`` (the larger model)
                  ``complex_matching``: large model
                  otherwise: small model                        ``cost_optimized``
any other task    —                                             the task with the strategy in force
================  ===========================================  ============================================

The complexity score is the router's (``policy.complexity.score_request`` with the router's
``complexity`` config: long input, many messages, 0.05 per artifact capped at 0.4, creative writing
0.3); its long-input threshold is in tokens (2,000 by default) where the seed counted 500 words.
Context keys read: ``job_description``, ``artifacts`` (a list or a count), ``requires_creative_writing``,
``message_count``, ``use_case``, ``user``.

``acomplete``/``aembed`` run the call with the same routing arguments the decision was planned with
and return ``(response, processing_metadata)``.

Must not touch: selection or routing logic (planner, selector, router), model names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelplex.compat import resolve_router
from modelplex.policy.complexity import score_request
from modelplex.types import EmbeddingResponse, Message, Response

if TYPE_CHECKING:
    from modelplex.router import Router

LONG_JOB_WORDS = 1000
SHORT_JOB_WORDS = 200
MANY_ARTIFACTS = 10
BALANCED_COMPLEXITY = 0.5
PREMIUM_USE_CASES = frozenset({"semantic_analysis", "complex_matching"})
QUALITY_STRATEGIES = frozenset({"quality_optimized", "experimental"})


@dataclass(frozen=True, slots=True)
class ModelDecision:
    """One selection: the model, and how the seed's rule was expressed for the planner."""

    task: str
    model: str
    strategy: str | None
    """The strategy the plan used."""
    rule: str
    """The seed-style tag of the rule that fired, e.g. ``job_parsing_long_description``."""
    reason: str
    """Why: the rule in words, then the planner's own selection reason."""
    complexity: float | None
    fallbacks: tuple[str, ...]
    route: Mapping[str, Any] = field(default_factory=dict)
    """The routing arguments to send the call with (``task`` or ``requirements``, ``strategy``, ``context``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": self.model, "strategy": self.strategy, "rule": self.rule,
                "reason": self.reason, "complexity_score": self.complexity, "fallbacks": list(self.fallbacks)}


@dataclass(frozen=True, slots=True)
class _Rule:
    tag: str
    strategy: str | None
    why: str
    capabilities: frozenset[str] = frozenset()
    origin: str | None = None
    """Where ``strategy`` came from when this module resolved it (the plan's reason says so, not "request")."""


def _artifact_count(context: Mapping[str, Any]) -> int:
    artifacts = context.get("artifacts", 0)
    return len(artifacts) if isinstance(artifacts, list | tuple) else int(artifacts or 0)


class IntelligentModelSelector:
    """The seed's selector over a router (the default router when ``None``). ``strategy`` pins a
    strategy; ``None`` follows the router's precedence (request, runtime setting,
    ``MODEL_SELECTION_STRATEGY``, A/B arm, the task's default, ``routing.default_strategy``)."""

    def __init__(self, router: Router | None = None, strategy: str | None = None) -> None:
        self.router = resolve_router(router)
        self.strategy = strategy
        self.last_decision: ModelDecision | None = None
        self._reasons: dict[str, str] = {}

    # ------------------------------------------------------------------ the seed's API

    def select_model_for_task(self, task_type: str, context: Mapping[str, Any]) -> str:
        """The catalog id of the model for ``task_type`` in ``context``."""
        decision = self.decide(task_type, context)
        self.last_decision = decision
        self._reasons[decision.model] = decision.reason
        return decision.model

    def get_selection_reason(self, selected_model: str, context: Mapping[str, Any] | None = None,
                             task_type: str | None = None) -> str:
        """Why ``selected_model`` was chosen: recomputed when ``task_type`` is given, else the reason of
        this selector's latest selection of that model (``KeyError`` when there was none)."""
        if task_type is not None:
            return self.decide(task_type, context or {}).reason
        spec = self.router.catalog.find(selected_model)
        key = spec.id if spec is not None else selected_model
        try:
            return self._reasons[key]
        except KeyError:
            raise KeyError(f"no selection of {selected_model!r} recorded; pass task_type") from None

    @property
    def strategy_name(self) -> str:
        """The strategy in force for a request with no strategy of its own."""
        return self.router.planner.strategy_for(requested=self.strategy, task=None, user=None, request_id="")[0]

    # ------------------------------------------------------------------ decisions

    def decide(self, task_type: str, context: Mapping[str, Any]) -> ModelDecision:
        """Apply the seed's rule for ``task_type`` and let the planner choose (see the module table)."""
        text = str(context.get("job_description") or "")
        words = len(text.split())
        artifacts = _artifact_count(context)
        creative = bool(context.get("requires_creative_writing"))
        messages = int(context.get("message_count") or 0)
        tokens = 0
        if text:
            from modelplex.catalog.tokens import count_text

            tokens = count_text(text).tokens
        complexity: float | None = None
        if task_type == "job_parsing":
            rule = self._parsing_rule(words, context.get("user"))
        elif task_type == "cv_generation":
            complexity = score_request(self.router.config.complexity, input_tokens=tokens, message_count=messages,
                                       artifacts=artifacts, requires_creative_writing=creative).score
            rule = self._generation_rule(complexity, artifacts, context.get("user"))
        elif task_type == "embedding":
            rule = self._embedding_rule(str(context.get("use_case") or "similarity"))
        else:
            rule = _Rule(f"{task_type}_default", self.strategy, f"task {task_type} with the strategy in force")
        return self._plan(task_type, rule, complexity, tokens, messages, artifacts, creative, context.get("user"))

    def _parsing_rule(self, words: int, user: Any) -> _Rule:
        if words > LONG_JOB_WORDS:
            return _Rule("job_parsing_long_description", "quality_optimized",
                         f"long job description ({words:,} words > {LONG_JOB_WORDS:,}): long-context quality model",
                         frozenset({"long_context"}))
        if words < SHORT_JOB_WORDS:
            return _Rule("job_parsing_short_description", "cost_optimized",
                         f"short job description ({words:,} words < {SHORT_JOB_WORDS:,}): cost-efficient model")
        # The seed's rule: the job_parsing model of the selector's strategy (MODEL_SELECTION_STRATEGY,
        # default balanced), i.e. the strategy in force for a request with no task default
        # (``strategy_name``). The built-in task's own default (cost_optimized) is not the seed's
        # strategy, so it must not outrank routing.default_strategy here.
        name, _arm, origin = self.router.planner.strategy_for(
            requested=self.strategy, task=None, user=user if isinstance(user, str) else None, request_id="")
        why = f"job description of {words:,} words: the job_parsing model of the strategy in force ({name})"
        if origin == "default":
            # routing.default_strategy ranks below the task's default in the planner: pass it explicitly.
            return _Rule("job_parsing_default_strategy", name, why, origin=origin)
        # request, runtime setting, MODEL_SELECTION_STRATEGY or A/B arm: the planner ranks them above the
        # task's default and reaches the same strategy itself (keeping the experiment arm on the record).
        return _Rule("job_parsing_default_strategy", self.strategy, why)

    def _generation_rule(self, complexity: float, artifacts: int, user: Any) -> _Rule:
        threshold = self.router.config.complexity.threshold
        if complexity > threshold or artifacts > MANY_ARTIFACTS:
            spec_task = self.router.planner.tasks.get("cv_generation")
            current = self.router.planner.strategy_for(requested=self.strategy, task=spec_task,
                                                       user=user if isinstance(user, str) else None,
                                                       request_id="")[0]
            strategy = current if current in QUALITY_STRATEGIES else "quality_optimized"
            return _Rule("cv_generation_premium", strategy,
                         f"complexity {complexity:.2f} (> {threshold:g}) or {artifacts} artifacts "
                         f"(> {MANY_ARTIFACTS}): premium model")
        if complexity > BALANCED_COMPLEXITY:
            return _Rule("cv_generation_balanced", "balanced",
                         f"complexity {complexity:.2f} (> {BALANCED_COMPLEXITY:g}): balanced model")
        return _Rule("cv_generation_economy", "cost_optimized",
                     f"complexity {complexity:.2f} (<= {BALANCED_COMPLEXITY:g}): cost-efficient model")

    def _embedding_rule(self, use_case: str) -> _Rule:
        if use_case in PREMIUM_USE_CASES:
            return _Rule("embedding_quality", "quality_optimized", f"use case {use_case}: higher-quality embeddings")
        return _Rule("embedding_economy", "cost_optimized", f"use case {use_case}: cost-efficient embeddings")

    def _plan(self, task: str, rule: _Rule, complexity: float | None, tokens: int, messages: int, artifacts: int,
              creative: bool, user: Any) -> ModelDecision:
        planner = self.router.planner
        features: dict[str, Any] = {"input_tokens": tokens, "message_count": messages, "artifacts": artifacts,
                                    "requires_creative_writing": creative,
                                    "user": user if isinstance(user, str) else None}
        route: dict[str, Any] = {"strategy": rule.strategy,
                                 "context": {"artifacts": artifacts, "requires_creative_writing": creative}}
        if features["user"] is not None:
            route["user"] = features["user"]
        if rule.capabilities:
            spec_task = planner.tasks.get(task)
            if spec_task is None:
                from modelplex.errors import UnknownTaskError

                raise UnknownTaskError(task, planner.tasks)
            base = spec_task.requirements
            req = base.merged(capabilities=base.capabilities | rule.capabilities)
            plan = planner.plan(requirements=req, strategy=rule.strategy, **features)
            route["requirements"] = req
        else:
            plan = planner.plan(task=task, strategy=rule.strategy, **features)
            route["task"] = task
        ids = [t.id for t in plan.targets]
        planned = plan.selection_reason
        if rule.origin is not None and rule.strategy is not None:
            # the planner saw the strategy as the request's own; say where it really came from
            planned = planned.replace(f"strategy {rule.strategy} (request)", f"strategy {rule.strategy} ({rule.origin})", 1)
        return ModelDecision(task=task, model=ids[0], strategy=plan.strategy, rule=rule.tag,
                             reason=f"{rule.tag}: {rule.why}; {planned}", complexity=complexity,
                             fallbacks=tuple(ids[1:]), route=route)

    # ------------------------------------------------------------------ running the call

    async def acomplete(self, task_type: str, context: Mapping[str, Any], messages: list[Message],
                        quality_score: float | None = None, **params: Any) -> tuple[Response, dict[str, Any]]:
        """Decide, call the router with the decision's routing arguments, and return the response
        with its ``processing_metadata``."""
        decision = self.decide(task_type, context)
        self.last_decision = decision
        self._reasons[decision.model] = decision.reason
        resp = await self.router.acomplete(list(messages), **decision.route, **params)
        return resp, processing_metadata(resp, decision, quality_score=quality_score)

    async def aembed(self, texts: Sequence[str], use_case: str = "similarity",
                     **params: Any) -> tuple[EmbeddingResponse, dict[str, Any]]:
        """Embeddings with the seed's use-case rule; returns the response and its metadata."""
        decision = self.decide("embedding", {"use_case": use_case, "text_count": len(texts)})
        self.last_decision = decision
        resp = await self.router.aembed(list(texts), model=decision.model, **params)
        return resp, processing_metadata(resp, decision)


def processing_metadata(resp: Response | EmbeddingResponse, decision: ModelDecision | None = None, *,
                        quality_score: float | None = None) -> dict[str, Any]:
    """The seed's ``processing_metadata``: ``model_used``, ``processing_time_ms``, ``tokens_used``,
    ``cost_usd``, ``selection_reason``, ``complexity_score``, ``fallback_used`` (and ``quality_score``
    when given), plus ``provider``, ``strategy``, ``selection_rule``, ``request_id`` and ``attempts``."""
    if isinstance(resp, Response):
        fallback = resp.fallback_used
        strategy = resp.strategy or (decision.strategy if decision else None)
        reason = decision.reason if decision else resp.selection_reason
    else:
        fallback = any(a.outcome != "success" for a in resp.attempts) or (
            decision is not None and resp.model != decision.model)
        strategy = decision.strategy if decision else None
        reason = decision.reason if decision else ""
    meta: dict[str, Any] = {
        "model_used": resp.model,
        "provider": resp.provider,
        "strategy": strategy,
        "processing_time_ms": resp.latency_ms,
        "tokens_used": resp.usage.total_tokens,
        "cost_usd": resp.cost_usd,
        "selection_reason": reason,
        "selection_rule": decision.rule if decision else None,
        "complexity_score": decision.complexity if decision else None,
        "fallback_used": fallback,
        "request_id": resp.request_id,
        "attempts": [a.to_dict() for a in resp.attempts],
    }
    if quality_score is not None:
        meta["quality_score"] = quality_score
    return meta


__all__ = ["IntelligentModelSelector", "ModelDecision", "processing_metadata"]
