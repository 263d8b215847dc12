"""The planner: turns (model | task | requirements) + request features into an ordered attempt plan.

Order of the plan (docs/routing.md):
1. the selected targets (forced / env default / strategy's per-task model / task list / selection),
2. each of their per-model fallback paths (seed 000's ``fallback_paths``),
3. the chains of their providers (seed 002's ``fallback.yaml``),
4. the cross-provider chain,
5. the universal fallback (seed 003; by default the cheapest available chat model that meets the
   request's hard needs).
Duplicates are removed, deprecated models are replaced by their replacement (one warning each),
and targets whose provider has no credentials, or that lack a hard need of the request (tool
calling, JSON, vision, embeddings), are dropped. The configured names were checked against the
catalog when the router was built (``policy.references``); an id added to a chain at run time that the
catalog lacks is skipped. Breaker and token-window checks happen later, in
the attempt loop, where they count as skips.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelplex.config import Config, StrategyConfig
from modelplex.errors import NoCandidatesError, UnknownModelError, UnknownTaskError
from modelplex.policy.complexity import ComplexityScore, score_request
from modelplex.policy.experiments import choose_arm
from modelplex.policy.overrides import EnvOverrides
from modelplex.policy.strategies import resolve_strategy_name, strategy_table
from modelplex.policy.tasks import BUILTIN_TASKS, TaskSpec
from modelplex.selection import blended_price
from modelplex.types import Requirements

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.catalog.store import Catalog
    from modelplex.policy.adaptive import AdaptiveChooser
    from modelplex.selection import Selector

_SELECTION_OF = {"economy": "economy", "balanced": "balanced", "quality": "quality", "adaptive": "balanced"}


@dataclass(frozen=True, slots=True)
class HardNeeds:
    """What the request itself demands of every target, fallbacks included."""

    tool_calling: bool = False
    json: bool = False
    vision: bool = False
    embedding: bool = False

    def allows(self, spec: ModelSpec) -> bool:
        caps = spec.capabilities
        if self.embedding:
            return spec.mode == "embedding"
        if spec.mode != "chat":
            return False
        if self.tool_calling and "tool_calling" not in caps:
            return False
        if self.json and not ("json_mode" in caps or "structured_output" in caps):
            return False
        return not (self.vision and "vision" not in caps)

    def missing(self, spec: ModelSpec) -> str:
        """Why ``spec`` cannot serve the request (for a spec ``allows`` refuses), naming what it lacks."""
        if self.embedding:
            return "not an embedding model"
        if spec.mode != "chat":
            return f"{spec.mode} model; the request is a chat completion"
        caps = spec.capabilities
        lacks = [name for name, needed, has in (
            ("tool_calling (the request sends tools)", self.tool_calling, "tool_calling" in caps),
            ("json_mode (the request asks for JSON)", self.json, "json_mode" in caps or "structured_output" in caps),
            ("vision (the request sends images)", self.vision, "vision" in caps)) if needed and not has]
        return "lacks " + " and ".join(lacks) if lacks else "lacks a capability the request needs"

    def as_requirements(self, base: Requirements | None = None) -> Requirements:
        base = base or Requirements()
        changes: dict[str, Any] = {}
        if self.embedding:
            changes["mode"] = "embedding"
        if self.tool_calling:
            changes["tool_calling"] = True
        if self.json and base.response_format not in ("json", "json_schema"):
            changes["response_format"] = "json"
        if self.vision:
            changes["input_modalities"] = base.input_modalities | {"image"}
        return base.merged(**changes) if changes else base


@dataclass(slots=True)
class RoutePlan:
    targets: list[ModelSpec]
    primary: int
    """How many leading targets came from selection proper (the rest are fallbacks)."""
    task: str | None = None
    strategy: str | None = None
    experiment_arm: str | None = None
    selection_reason: str = ""
    max_cost_per_request: float | None = None
    task_params: dict[str, Any] = field(default_factory=dict)
    requirements: Requirements | None = None
    explicit: bool = False
    complexity: ComplexityScore | None = None
    dropped: dict[str, str] = field(default_factory=dict)


class Planner:
    def __init__(self, config: Config, catalog: Catalog, selector: Selector,
                 enabled_providers: Callable[[], frozenset[str]],
                 env: Mapping[str, str] | None = None,
                 runtime_strategy: Callable[[], str | None] = lambda: None, *,
                 adaptive: AdaptiveChooser | None = None) -> None:
        self.config = config
        self.adaptive = adaptive
        self.catalog = catalog
        self.selector = selector
        self.enabled_providers = enabled_providers
        self.runtime_strategy = runtime_strategy
        self.strategies: dict[str, StrategyConfig] = strategy_table(config.strategies)
        self.tasks: dict[str, TaskSpec] = dict(BUILTIN_TASKS)
        for name, tc in config.tasks.items():
            self.tasks[name] = TaskSpec(
                name=name, models=tuple(tc.models), requirements=Requirements.from_dict(tc.requirements),
                strategy=tc.strategy, fallbacks=tuple(tc.fallbacks), description=tc.description,
                max_tokens=tc.max_tokens, temperature=tc.temperature, escalate_to=tc.escalate_to)
        self._paths_key: tuple[Any, ...] | None = None
        self._paths: dict[str, list[str]] = {}
        self._plans: dict[tuple[Any, ...], RoutePlan] = {}
        self.reload_env(env)

    @property
    def fallback_paths(self) -> dict[str, list[str]]:
        """``routing.fallback_paths`` normalized; recomputed when the config's paths change at run time."""
        raw = self.config.routing.fallback_paths
        if not raw:
            return {}
        key = tuple((k, tuple(v)) for k, v in raw.items())
        if key != self._paths_key:
            self._paths = self._normalized_paths(raw)
            self._paths_key = key
        return self._paths

    def _normalized_paths(self, paths: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Fallback paths by canonical id; a path keyed by a retired model also applies to its replacement
        (the planner migrates targets before looking their paths up)."""
        out: dict[str, list[str]] = {}
        for key, chain in paths.items():
            spec = self.catalog.find(key)
            ids = [spec.id] if spec is not None else [key]
            seen: set[str] = set()
            while spec is not None and spec.deprecated and spec.deprecation.replacement and spec.id not in seen:
                seen.add(spec.id)
                spec = self.catalog.find(spec.deprecation.replacement)
                if spec is not None:
                    ids.append(spec.id)
            for i in ids:
                out.setdefault(i, []).extend(c for c in chain if c not in out.get(i, []))
        return out

    @property
    def overrides(self) -> EnvOverrides:
        return self._overrides

    @overrides.setter
    def overrides(self, value: EnvOverrides) -> None:
        self._overrides = value
        self.invalidate()

    def reload_env(self, env: Mapping[str, str] | None = None) -> None:
        self.overrides = EnvOverrides.from_env(os.environ if env is None else env)

    def invalidate(self) -> None:
        """Forget memoized plans (the environment overrides were reloaded, or the providers re-resolved).
        Everything else a plan depends on is part of the memo key."""
        self._plans.clear()

    # ------------------------------------------------------------------ name resolution

    def task_names(self) -> list[str]:
        return sorted(self.tasks)

    def is_task(self, name: str) -> bool:
        return name in self.tasks

    def unknown_model(self, name: str) -> UnknownModelError:
        """The error for a ``model`` that names neither a model nor a task. Its suggestions are the models an
        ambiguous name could mean, else close model ids, then, for a bare name (which may name a task),
        close task names as ``task:<name>``."""
        models = self.catalog.ambiguous(name) or self.catalog.suggest(name)
        tasks = [] if "/" in name else difflib.get_close_matches(name, sorted(self.tasks), n=3)
        return UnknownModelError(name, [*models, *(f"task:{t}" for t in tasks)])

    def strategy_for(self, *, requested: str | None, task: TaskSpec | None, user: str | None,
                     request_id: str) -> tuple[str, str | None, str]:
        """(strategy name, experiment arm, where it came from)."""
        known = self.strategies
        if requested:
            return resolve_strategy_name(requested, known), None, "request"
        runtime = self.runtime_strategy()
        if runtime:
            return resolve_strategy_name(runtime, known), None, "runtime setting"
        if self.overrides.strategy:
            return resolve_strategy_name(self.overrides.strategy, known), None, "MODEL_SELECTION_STRATEGY"
        split = self.config.experiments.strategy_split
        if split:
            arm = choose_arm(split, user or request_id, self.config.experiments.salt)
            if arm:
                return resolve_strategy_name(arm, known), arm, f"experiment arm {arm}"
        if task is not None and task.strategy:
            return resolve_strategy_name(task.strategy, known), None, "task default"
        return resolve_strategy_name(self.config.routing.default_strategy, known), None, "default"

    # ------------------------------------------------------------------ plan

    def plan(self, *, model: str | None = None, task: str | None = None,
             requirements: Requirements | None = None, strategy: str | None = None,
             user: str | None = None, request_id: str = "", needs: HardNeeds = HardNeeds(),
             input_tokens: int = 0, message_count: int = 0, artifacts: int = 0,
             requires_creative_writing: bool = False, downgrade: bool = False) -> RoutePlan:
        """The attempt plan for one request. Plans are memoized: the same inputs give the same plan
        until the catalog, the enabled providers, the runtime strategy, the environment overrides or the
        routing settings change. Plans that depend on the caller (an experiment split) or on learned
        state (the adaptive strategy) are never memoized. Each caller gets its own copy."""
        key = self._plan_key(model, task, requirements, strategy, needs, input_tokens, message_count, artifacts,
                             requires_creative_writing, downgrade)
        if key is not None:
            hit = self._plans.get(key)
            if hit is not None:
                return _copy_plan(hit)
        plan = self._plan(model=model, task=task, requirements=requirements, strategy=strategy, user=user,
                          request_id=request_id, needs=needs, input_tokens=input_tokens,
                          message_count=message_count, artifacts=artifacts,
                          requires_creative_writing=requires_creative_writing, downgrade=downgrade)
        learned = plan.strategy is not None and self.strategies[plan.strategy].selection == "adaptive"
        if key is not None and not learned:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = _copy_plan(plan)
        return plan

    def _forced(self, needs: HardNeeds) -> ModelSpec | None:
        """``FORCE_MODEL``'s model, for the requests it can answer: a chat model forces chat requests, an
        embedding model embedding requests; the operator's switch for one never takes the other down."""
        name = self.overrides.force_model
        if not name:
            return None
        spec = self.catalog.get(name)
        return spec if (spec.mode == "embedding") == needs.embedding else None

    def _plan_key(self, model: str | None, task: str | None, requirements: Requirements | None,
                  strategy: str | None, needs: HardNeeds, input_tokens: int, message_count: int, artifacts: int,
                  creative: bool, downgrade: bool) -> tuple[Any, ...] | None:
        """Everything a plan depends on, or None when it must not be memoized."""
        cfg = self.config
        if cfg.experiments.strategy_split:
            return None
        rc = cfg.routing
        cx = cfg.complexity
        # The complexity score is a function of these (see policy.complexity.score_request), not of the
        # raw counts: two requests with the same shape get the same score and the same escalation.
        shape = (input_tokens > cx.long_input_tokens, message_count > cx.many_messages, artifacts, creative,
                 cx.threshold, cx.artifacts_weight, cx.artifacts_cap, cx.creative_weight) if cx.enabled else None
        uf = rc.universal_fallback
        paths = rc.fallback_paths
        return (model, task, requirements, strategy, needs, downgrade, shape, self.runtime_strategy(),
                self.enabled_providers(), self.catalog.version, rc.default_strategy,
                rc.max_candidates, uf if isinstance(uf, str) or uf is None else tuple(uf),
                tuple(s if isinstance(s, str) else (s.provider, s.model) for s in rc.cross_provider_chain),
                tuple((k, tuple(v)) for k, v in paths.items()) if paths else None,
                tuple((name, tuple(ps.fallbacks)) for name, ps in cfg.providers.items() if ps.fallbacks))

    def _plan(self, *, model: str | None, task: str | None, requirements: Requirements | None,
              strategy: str | None, user: str | None, request_id: str, needs: HardNeeds, input_tokens: int,
              message_count: int, artifacts: int, requires_creative_writing: bool, downgrade: bool) -> RoutePlan:
        enabled = self.enabled_providers()
        if model is not None and task is None and requirements is None:
            if model.startswith("task:"):
                task = model[5:]
            elif model == "auto":
                requirements = Requirements()
            elif model in self.tasks and self.catalog.find(model) is None:
                task = model
            else:
                named = self.catalog.find(model)
                if named is None:
                    raise self.unknown_model(model)
                spec = self.catalog.migrate(named)
                targets, dropped = self._extend([spec], enabled, needs, universal=False)
                if spec is not named and spec.id in dropped:
                    dropped[spec.id] += f" (in place of {named.id}, which is deprecated)"
                return RoutePlan(targets=targets, primary=1 if targets and targets[0].id == spec.id else 0,
                                 selection_reason=f"model {spec.id} requested explicitly" if spec is named else
                                 f"model {named.id} requested explicitly; deprecated, so its replacement {spec.id}",
                                 explicit=True,
                                 dropped=dropped)

        if downgrade:
            strategy = "cost_optimized"

        if task is not None:
            return self._plan_task(task, strategy, user, request_id, needs, enabled, input_tokens,
                                   message_count, artifacts, requires_creative_writing, downgrade)
        req = needs.as_requirements(requirements or Requirements())
        name = strategy or ("cost_optimized" if req.effective_strategy == "economy" else
                            "quality_optimized" if req.effective_strategy == "quality" else None)
        sname, arm, origin = self.strategy_for(requested=name, task=None, user=user, request_id=request_id)
        scfg = self.strategies[sname]
        forced = self._forced(needs)
        if forced is not None:
            forced = self.catalog.migrate(forced)
            targets, dropped = self._extend([forced], enabled, needs, universal=False)
            return RoutePlan(targets, 1, None, sname, arm, f"FORCE_MODEL={forced.id}", scfg.max_cost_per_request,
                             requirements=req, dropped=dropped)
        req = req.merged(strategy=_SELECTION_OF[scfg.selection], economy_mode=False)
        primaries, why = self._select(req, enabled)
        if scfg.selection == "adaptive":
            primaries, why = self._adaptive(None, primaries, why, enabled, needs)
        targets, dropped = self._extend(primaries, enabled, needs, universal=True, hard_req=req)
        reason = f"{why}; strategy {sname} ({origin})"
        if downgrade:
            reason += "; downgraded to cost_optimized by budget"
        return RoutePlan(targets, len(primaries), None, sname, arm, reason, scfg.max_cost_per_request,
                         requirements=req, dropped=dropped)

    def _plan_task(self, task_name: str, strategy: str | None, user: str | None, request_id: str,
                   needs: HardNeeds, enabled: frozenset[str], input_tokens: int, message_count: int,
                   artifacts: int, creative: bool, downgrade: bool) -> RoutePlan:
        spec_task = self.tasks.get(task_name)
        if spec_task is None:
            raise UnknownTaskError(task_name, self.tasks)
        sname, arm, origin = self.strategy_for(requested=strategy, task=spec_task, user=user,
                                               request_id=request_id)
        notes: list[str] = []
        complexity: ComplexityScore | None = None
        if self.config.complexity.enabled and not spec_task.is_embedding:
            complexity = score_request(self.config.complexity, input_tokens=input_tokens,
                                       message_count=message_count, artifacts=artifacts,
                                       requires_creative_writing=creative)
            if complexity.score > self.config.complexity.threshold and not downgrade:
                target_task = spec_task.escalate_to
                if target_task and target_task in self.tasks and target_task != task_name:
                    notes.append(f"{complexity.describe()} > {self.config.complexity.threshold:.2f}: "
                                 f"escalated to task {target_task}")
                    spec_task = self.tasks[target_task]
                else:
                    notes.append(f"{complexity.describe()} > {self.config.complexity.threshold:.2f}: "
                                 f"escalated to quality_optimized")
                    sname, origin = "quality_optimized", "complexity escalation"
        scfg = self.strategies[sname]
        if downgrade:
            notes.append("downgraded to cost_optimized by budget")
        if spec_task.is_embedding:
            needs = HardNeeds(embedding=True)

        picked: list[ModelSpec] = []
        why: str
        ov = self.overrides
        env_default = ov.task_models.get(spec_task.name)
        strategy_model = scfg.models.get(spec_task.name)
        forced = self._forced(needs)
        if forced is not None:
            picked = [forced]
            why = f"FORCE_MODEL={picked[0].id}"
        elif env_default:
            picked = [self.catalog.get(env_default)] + [self.catalog.get(m) for m in spec_task.models]
            why = f"DEFAULT_{spec_task.name.upper()}_MODEL={picked[0].id}"
        elif strategy_model:
            picked = [self.catalog.get(strategy_model)] + [self.catalog.get(m) for m in spec_task.models]
            why = f"strategy {sname} names {picked[0].id} for {spec_task.name}"
        elif spec_task.models:
            picked = [self.catalog.get(m) for m in spec_task.models]
            why = f"task {spec_task.name} priority list"
        else:
            req = needs.as_requirements(spec_task.requirements).merged(
                strategy=_SELECTION_OF[scfg.selection], economy_mode=False)
            picked, why = self._select(req, enabled)
        picked = [self.catalog.migrate(m) for m in picked]
        if scfg.selection == "adaptive" and not (forced or env_default or strategy_model):
            picked, why = self._adaptive(spec_task.name, _dedupe(picked), why, enabled, needs)
        if downgrade and not forced:
            picked = sorted(picked, key=blended_price)  # stable: ties keep the list's order
        extra = [self.catalog.get(m) for m in spec_task.fallbacks]
        if scfg.fallback_model:
            extra.append(self.catalog.get(scfg.fallback_model))
        primary = _dedupe(picked)
        targets, dropped = self._extend(primary + [self.catalog.migrate(m) for m in extra], enabled, needs,
                                        universal=not forced,
                                        hard_req=needs.as_requirements(spec_task.requirements))
        reason = "; ".join([f"task {spec_task.name}: {why}", f"strategy {sname} ({origin})", *notes])
        params: dict[str, Any] = {}
        if spec_task.max_tokens is not None:
            params["max_tokens"] = spec_task.max_tokens
        if spec_task.temperature is not None:
            params["temperature"] = spec_task.temperature
        if not targets:
            raise NoCandidatesError(self._nothing_usable(reason, primary, dropped), dropped)
        return RoutePlan(targets, min(len(primary), len(targets)), spec_task.name, sname, arm, reason,
                         scfg.max_cost_per_request, params, spec_task.requirements, False, complexity, dropped)

    def _adaptive(self, task: str | None, picked: list[ModelSpec], why: str, enabled: frozenset[str],
                  needs: HardNeeds) -> tuple[list[ModelSpec], str]:
        """Let the bandit order the usable primaries; unusable ones keep their place after them."""
        if self.adaptive is None:
            return picked, why
        usable = [m for m in picked if m.provider in enabled and needs.allows(m)]
        rest = [m for m in picked if m not in usable]
        ranked, reason = self.adaptive.rank_explained(task, usable)
        return ranked + rest, f"{reason}; {why}"

    def _select(self, req: Requirements, enabled: frozenset[str]) -> tuple[list[ModelSpec], str]:
        sel = self.selector.select(req, limit=self.config.routing.max_candidates, providers=enabled)
        if not sel.candidates:
            raise NoCandidatesError(self._no_match(sel.explanation, enabled))
        first = sel.candidates[0]
        return [c.model for c in sel.candidates], f"selected {first.model.id}: {first.reason}"

    def _no_match(self, explanation: str, enabled: frozenset[str]) -> str:
        if not enabled:
            return ("no provider has credentials: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, "
                    "GROQ_API_KEY, ... or configure providers in the config file")
        return f"no model meets the requirements: {explanation} (enabled providers: {', '.join(sorted(enabled))})"

    def _nothing_usable(self, reason: str, primary: list[ModelSpec], dropped: dict[str, str]) -> str:
        why = "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:6])
        return f"no usable target ({reason}); dropped: {why or 'none'}"

    # ------------------------------------------------------------------ fallback chains

    def _extend(self, primaries: list[ModelSpec], enabled: frozenset[str], needs: HardNeeds, *,
                universal: bool, hard_req: Requirements | None = None) -> tuple[list[ModelSpec], dict[str, str]]:
        rc = self.config.routing
        chain: list[ModelSpec] = list(primaries)
        get = self.catalog.find
        paths = self.fallback_paths
        for m in primaries:
            for fid in paths.get(m.id, ()):
                s = get(fid)
                if s is not None:
                    chain.append(s)
        for prov in _dedupe_str(m.provider for m in primaries):
            ps = self.config.providers.get(prov)
            for fid in (ps.fallbacks if ps is not None else ()):
                s = get(fid) or get(f"{prov}/{fid}")
                if s is not None:
                    chain.append(s)
        for step in rc.cross_provider_chain:
            if isinstance(step, str):
                s = get(step)
            else:
                s = get(f"{step.provider}/{step.model}") if step.provider else None
                s = s or get(step.model)
            if s is not None:
                chain.append(s)
        if universal:
            uf = rc.universal_fallback
            if uf:
                for fid in [uf] if isinstance(uf, str) else uf:
                    s = get(fid)
                    if s is not None:
                        chain.append(s)
            elif not needs.embedding:
                req = needs.as_requirements(Requirements(strategy="economy"))
                sel = self.selector.select(req, limit=1, providers=enabled)
                chain.extend(c.model for c in sel.candidates)
        out: list[ModelSpec] = []
        dropped: dict[str, str] = {}
        seen: set[str] = set()
        for s in chain:
            s = self.catalog.migrate(s) if s.deprecated else s
            if s.id in seen:
                continue
            seen.add(s.id)
            if s.provider not in enabled:
                dropped[s.id] = f"provider {s.provider} not configured"
            elif not needs.allows(s):
                dropped[s.id] = needs.missing(s)
            else:
                out.append(s)
        return out, dropped


_PLAN_CACHE_SIZE = 1024


def _copy_plan(p: RoutePlan) -> RoutePlan:
    """A copy whose lists and dicts the caller may change without touching the memoized plan."""
    return RoutePlan(list(p.targets), p.primary, p.task, p.strategy, p.experiment_arm, p.selection_reason,
                     p.max_cost_per_request, dict(p.task_params), p.requirements, p.explicit, p.complexity,
                     dict(p.dropped))


def _dedupe(specs: list[ModelSpec]) -> list[ModelSpec]:
    seen: set[str] = set()
    out = []
    for s in specs:
        if s.id not in seen:
            seen.add(s.id)
            out.append(s)
    return out


def _dedupe_str(items: Any) -> list[str]:
    return list(dict.fromkeys(items))
