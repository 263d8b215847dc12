"""The planner's plan memo is never stale: every input a plan depends on, changed at run time, gives the
plan a fresh computation gives (``Planner._plan``, the uncached core), and each caller gets its own copy.

The planner is only planned with here: providers have credentials but are never called (no network).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from modelplex.catalog import Pricing, load_catalog
from modelplex.catalog.schema import ModelSpec
from modelplex.compat.resume_lm import ModelRegistry
from modelplex.config import CrossProviderStep
from modelplex.errors import UnknownTaskError
from modelplex.policy.experiments import choose_arm
from modelplex.policy.overrides import EnvOverrides
from modelplex.policy.planner import HardNeeds, Planner, RoutePlan
from modelplex.router import Router
from modelplex.types import Requirements

BASE_URL = "http://127.0.0.1:9"  # never contacted: these tests only plan
CAPS = ["tool_calling", "json_mode", "structured_output", "streaming", "system_messages"]


def models() -> list[dict[str, Any]]:
    return [
        {"id": "alpha/small", "context_window": 8_000, "max_output_tokens": 2_000, "capabilities": CAPS,
         "category": "basic", "quality": 40, "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
        {"id": "alpha/large", "context_window": 200_000, "max_output_tokens": 8_000, "capabilities": CAPS,
         "category": "comprehensive", "quality": 85, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "beta/mid", "context_window": 64_000, "max_output_tokens": 4_000, "capabilities": CAPS,
         "category": "reasoning", "quality": 70, "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        {"id": "claude/sonnet", "context_window": 200_000, "max_output_tokens": 8_000,
         "capabilities": ["tool_calling", "streaming", "system_messages", "structured_output"],
         "category": "comprehensive", "quality": 88, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "alpha/embed", "mode": "embedding", "context_window": 8_000, "max_output_tokens": 1,
         "embedding_dimensions": 8, "pricing": {"input_per_mtok": 0.02}},
    ]


def config(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {
            "alpha": {"protocol": "openai", "base_url": BASE_URL + "/v1", "api_key": "sk-alpha"},
            "beta": {"protocol": "openai", "base_url": BASE_URL + "/v1", "api_key_env": "BETA_KEY"},
            "claude": {"protocol": "anthropic", "base_url": BASE_URL, "api_key": "sk-claude"},
        },
        "models": models(),
        "tasks": {
            "work": {"models": ["alpha/small", "beta/mid"], "max_tokens": 300},
            "pick": {"requirements": {"min_context": 50_000}},
            "deep": {"models": ["claude/sonnet"]},
            "climb": {"models": ["alpha/small"], "escalate_to": "deep"},
        },
        "accounting": {"sink": "none"},
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


@pytest.fixture
def build() -> Iterator[Any]:
    routers: list[Router] = []

    def make(env: dict[str, str] | None = None, adaptive: Any = None, **extra: Any) -> Router:
        r = Router.from_config(config(**extra), catalog=load_catalog(bundled=False),
                               env={"BETA_KEY": "sk-beta"} if env is None else env, adaptive=adaptive)
        routers.append(r)
        return r

    yield make
    for r in routers:
        r.close()


_DEFAULTS: dict[str, Any] = dict(model=None, task=None, requirements=None, strategy=None, user=None,
                                 request_id="", needs=HardNeeds(), input_tokens=0, message_count=0, artifacts=0,
                                 requires_creative_writing=False, downgrade=False)


def uncached(planner: Planner, **kwargs: Any) -> RoutePlan:
    """The plan computed from scratch, bypassing the memo (and any counting wrapper)."""
    return Planner._plan(planner, **{**_DEFAULTS, **kwargs})


def ids(plan: RoutePlan) -> list[str]:
    return [s.id for s in plan.targets]


def check(planner: Planner, **kwargs: Any) -> RoutePlan:
    """Plan twice through the memo; both answers must equal the uncached plan."""
    first = planner.plan(**kwargs)
    second = planner.plan(**kwargs)
    fresh = uncached(planner, **kwargs)
    assert first == fresh, kwargs
    assert second == fresh, kwargs
    return second


class CountingPlanner:
    """Counts the uncached computations of one planner (to prove the memo is in use)."""

    def __init__(self, planner: Planner, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = planner._plan

        def counted(**kwargs: Any) -> RoutePlan:
            self.calls += 1
            return real(**kwargs)

        monkeypatch.setattr(planner, "_plan", counted)


# ----------------------------------------------------------------------------- copies


@pytest.mark.parametrize("kwargs", [
    {"task": "work"},
    {"task": "pick", "strategy": "cost_optimized"},
    {"model": "alpha/small"},
    {"model": "auto"},
    {"requirements": Requirements(min_context=50_000)},
    {"task": "work", "needs": HardNeeds(tool_calling=True, json=True)},
    {"task": "embedding"},
])
def test_a_repeat_is_an_equal_private_copy(build: Any, monkeypatch: pytest.MonkeyPatch,
                                           kwargs: dict[str, Any]) -> None:
    r = build(routing={"universal_fallback": "claude/sonnet"})
    planner = r.planner
    counter = CountingPlanner(planner, monkeypatch)
    first = planner.plan(**kwargs)
    snapshot = dataclasses.replace(first, targets=list(first.targets), task_params=dict(first.task_params),
                                   dropped=dict(first.dropped))
    second = planner.plan(**kwargs)
    assert counter.calls == 1  # memoized
    assert second == snapshot and second is not first
    assert second.targets is not first.targets
    assert second.task_params is not first.task_params and second.dropped is not first.dropped
    # a caller changing its plan (the router may) touches neither the memo nor the next caller's plan
    for plan in (first, second):
        plan.targets.reverse()
        plan.targets.append(r.catalog.get("alpha/large"))
        plan.task_params["max_tokens"] = 1
        plan.task_params["temperature"] = 2.0
        plan.dropped["x/y"] = "made up"
        plan.primary = 99
        plan.selection_reason = "changed"
    third = planner.plan(**kwargs)
    assert counter.calls == 1
    assert third == snapshot == uncached(planner, **kwargs)


def test_unknown_task_raises_every_time(build: Any) -> None:
    planner = build().planner
    for _ in range(3):
        with pytest.raises(UnknownTaskError):
            planner.plan(task="nope")
        with pytest.raises(UnknownTaskError):
            planner.plan(model="task:nope")
    assert ids(check(planner, task="work")) == ["alpha/small", "beta/mid"]  # a good request still plans


# ----------------------------------------------------------------------------- catalog and providers


def test_catalog_changes_are_seen(build: Any) -> None:
    r = build()
    planner = r.planner
    assert check(planner, task="pick", strategy="cost_optimized").targets[0].id == "beta/mid"
    assert ids(check(planner, model="alpha/small", needs=HardNeeds(tool_calling=True)))[0] == "alpha/small"
    # replace claude/sonnet with a price that makes it the cheapest: a new catalog version
    sonnet = r.catalog.get("claude/sonnet")
    r.catalog.add(sonnet.model_copy(update={"pricing": Pricing(input_per_mtok=0.01, output_per_mtok=0.01)}))
    assert check(planner, task="pick", strategy="cost_optimized").targets[0].id == "claude/sonnet"
    # alpha/small loses tool calling: a request that needs tools drops it
    small = r.catalog.get("alpha/small")
    r.catalog.add(small.model_copy(update={"capabilities": frozenset({"streaming"})}))
    plan = check(planner, model="alpha/small", needs=HardNeeds(tool_calling=True))
    assert "alpha/small" not in ids(plan) and "alpha/small" in plan.dropped
    # a model added later is found by selection
    r.catalog.add(ModelSpec(id="alpha/huge", provider="alpha", context_window=2_000_000, category="comprehensive",
                            quality=99, capabilities=frozenset(CAPS),
                            pricing=Pricing(input_per_mtok=1.0, output_per_mtok=1.0)))
    assert check(planner, task="pick", strategy="quality_optimized").targets[0].id == "alpha/huge"


def test_enabled_providers_from_refresh_providers(build: Any) -> None:
    r = build(env={})  # beta's key is not set
    planner = r.planner
    plan = check(planner, task="work")
    assert ids(plan) == ["alpha/small"] and "beta/mid" in plan.dropped
    r.env["BETA_KEY"] = "sk-beta"
    r.refresh_providers()
    assert ids(check(planner, task="work")) == ["alpha/small", "beta/mid"]
    del r.env["BETA_KEY"]
    r.refresh_providers()
    assert ids(check(planner, task="work")) == ["alpha/small"]


def test_enabled_providers_from_a_callable(build: Any) -> None:
    r = build()
    enabled = {"alpha", "beta", "claude"}
    planner = Planner(r.config, r.catalog, r.selector, lambda: frozenset(enabled), {})
    assert ids(check(planner, task="deep")) == ["claude/sonnet", "alpha/small"]
    assert check(planner, task="pick", strategy="quality_optimized").targets[0].id == "claude/sonnet"
    enabled.discard("claude")
    plan = check(planner, task="deep")
    assert ids(plan) == ["alpha/small"] and "claude/sonnet" in plan.dropped
    plan = check(planner, task="pick", strategy="quality_optimized")
    assert plan.targets[0].id == "alpha/large"
    assert "claude/sonnet" not in ids(plan)
    enabled.add("claude")
    assert check(planner, task="pick", strategy="quality_optimized").targets[0].id == "claude/sonnet"


# ----------------------------------------------------------------------------- strategies and overrides


def test_runtime_strategy_changes_are_seen(build: Any) -> None:
    r = build()
    planner = r.planner
    default = check(planner, task="pick")
    assert default.strategy == "balanced"
    r.runtime_strategy = "quality_optimized"
    plan = check(planner, task="pick")
    assert plan.strategy == "quality_optimized" and plan.targets[0].id == "claude/sonnet"
    r.runtime_strategy = "cost_optimized"
    plan = check(planner, task="pick")
    assert plan.strategy == "cost_optimized" and plan.targets[0].id == "beta/mid"
    r.runtime_strategy = None
    assert check(planner, task="pick") == default


def test_reloaded_environment_overrides_are_seen(build: Any) -> None:
    r = build()
    planner = r.planner
    assert check(planner, task="pick").strategy == "balanced"
    planner.reload_env({"MODEL_SELECTION_STRATEGY": "cost_optimized"})
    assert check(planner, task="pick").targets[0].id == "beta/mid"
    planner.reload_env({"MODEL_SELECTION_STRATEGY": "quality_optimized"})
    assert check(planner, task="pick").targets[0].id == "claude/sonnet"
    planner.reload_env({"FORCE_MODEL": "alpha/large"})
    assert ids(check(planner, task="work")) == ["alpha/large"]
    assert check(planner, model="auto").selection_reason == "FORCE_MODEL=alpha/large"
    assert ids(check(planner, model="beta/mid"))[0] == "beta/mid"  # explicit models are not forced
    planner.reload_env({"DEFAULT_WORK_MODEL": "claude/sonnet"})
    plan = check(planner, task="work")
    assert ids(plan)[:3] == ["claude/sonnet", "alpha/small", "beta/mid"]
    assert "DEFAULT_WORK_MODEL" in plan.selection_reason
    planner.reload_env({})
    assert ids(check(planner, task="work")) == ["alpha/small", "beta/mid"]


def test_overrides_reloaded_again_and_again_are_seen(build: Any) -> None:
    """Each reload makes a new overrides object; an old one, once freed, may share a later one's id().
    A memo keyed on id(overrides) then serves the plan of an environment that is no longer set."""
    planner = build().planner
    for _ in range(20):
        planner.reload_env({"FORCE_MODEL": "beta/mid"})
        assert ids(planner.plan(task="work")) == ["beta/mid"]
        planner.reload_env({})
        planner.reload_env({"FORCE_MODEL": "claude/sonnet"})
        assert ids(planner.plan(task="work")) == ["claude/sonnet"]
        planner.reload_env({})
        assert ids(planner.plan(task="work")) == ["alpha/small", "beta/mid"]


def test_overrides_assigned_directly_are_seen(build: Any) -> None:
    """``overrides`` is a public attribute (the admin API and the compat layers read it); setting it must not
    leave the plans of the previous overrides in the memo (only ``reload_env`` forgets them)."""
    planner = build().planner
    assert ids(planner.plan(task="work")) == ["alpha/small", "beta/mid"]
    planner.overrides = EnvOverrides(force_model="claude/sonnet")
    assert ids(planner.plan(task="work")) == ["claude/sonnet"]
    planner.overrides = EnvOverrides()
    assert ids(planner.plan(task="work")) == ["alpha/small", "beta/mid"]


def test_an_experiment_split_gives_each_user_their_arm(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    split = {"cost_optimized": 50.0, "quality_optimized": 50.0}
    r = build(experiments={"strategy_split": split})
    users = [f"user-{i}" for i in range(50)]
    cheap = next(u for u in users if choose_arm(split, u) == "cost_optimized")
    best = next(u for u in users if choose_arm(split, u) == "quality_optimized")
    counter = CountingPlanner(r.planner, monkeypatch)
    for _ in range(3):
        for user, arm, first in ((cheap, "cost_optimized", "beta/mid"), (best, "quality_optimized", "claude/sonnet")):
            plan = r.planner.plan(task="pick", user=user, request_id="same-request")
            assert plan.experiment_arm == arm and plan.strategy == arm
            assert plan.targets[0].id == first
            assert plan == uncached(r.planner, task="pick", user=user, request_id="same-request")
    assert counter.calls == 6  # never memoized: the arm depends on the caller
    # anonymous traffic is split by request id
    by_request = {rid: r.planner.plan(task="pick", request_id=rid).experiment_arm for rid in users}
    assert set(by_request.values()) == {"cost_optimized", "quality_optimized"}
    assert all(arm == choose_arm(split, rid) for rid, arm in by_request.items())


class Bandit:
    """A stand-in for the adaptive chooser: ranks by a list the test changes."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.calls = 0

    def rank_explained(self, task: str | None, usable: list[ModelSpec]) -> tuple[list[ModelSpec], str]:
        self.calls += 1
        rank = {mid: i for i, mid in enumerate(self.order)}
        return sorted(usable, key=lambda m: rank.get(m.id, len(rank))), f"bandit order {self.order}"


def test_the_adaptive_order_follows_the_bandit(build: Any) -> None:
    bandit = Bandit()
    r = build(adaptive=bandit)
    planner = r.planner
    bandit.order = ["beta/mid", "alpha/small"]
    assert ids(planner.plan(task="work", strategy="adaptive"))[:2] == ["beta/mid", "alpha/small"]
    bandit.order = ["alpha/small", "beta/mid"]
    assert ids(planner.plan(task="work", strategy="adaptive"))[:2] == ["alpha/small", "beta/mid"]
    bandit.order = ["beta/mid"]
    assert ids(planner.plan(task="work", strategy="adaptive"))[:2] == ["beta/mid", "alpha/small"]
    # the runtime setting and requirement-based selection go through the bandit too
    r.runtime_strategy = "adaptive"
    bandit.order = ["claude/sonnet", "alpha/large"]
    first = planner.plan(requirements=Requirements(min_context=50_000))
    bandit.order = ["alpha/large", "claude/sonnet"]
    second = planner.plan(requirements=Requirements(min_context=50_000))
    assert ids(first).index("claude/sonnet") < ids(first).index("alpha/large")
    assert ids(second).index("alpha/large") < ids(second).index("claude/sonnet")
    assert bandit.calls == 5


# ----------------------------------------------------------------------------- routing settings at run time


def test_routing_settings_changed_at_run_time(build: Any) -> None:
    r = build()
    planner = r.planner
    rc = r.config.routing
    assert ids(check(planner, model="alpha/small")) == ["alpha/small"]
    # fallback paths: set, then grown in place
    rc.fallback_paths = {"alpha/small": ["beta/mid"]}
    assert ids(check(planner, model="alpha/small")) == ["alpha/small", "beta/mid"]
    rc.fallback_paths["alpha/small"].append("claude/sonnet")
    assert ids(check(planner, model="alpha/small")) == ["alpha/small", "beta/mid", "claude/sonnet"]
    rc.fallback_paths["alpha/small"].remove("beta/mid")
    assert ids(check(planner, model="alpha/small")) == ["alpha/small", "claude/sonnet"]
    rc.fallback_paths = {}
    assert ids(check(planner, model="alpha/small")) == ["alpha/small"]
    # the cross-provider chain: grown in place
    rc.cross_provider_chain.append("beta/mid")
    assert ids(check(planner, model="alpha/small")) == ["alpha/small", "beta/mid"]
    rc.cross_provider_chain.append(CrossProviderStep(provider="claude", model="sonnet"))
    assert ids(check(planner, model="alpha/small")) == ["alpha/small", "beta/mid", "claude/sonnet"]
    rc.cross_provider_chain.clear()
    assert ids(check(planner, model="alpha/small")) == ["alpha/small"]
    # the universal fallback: a name, a list, the list changed in place, then the default again
    default_universal = ids(check(planner, task="deep"))
    assert default_universal == ["claude/sonnet", "alpha/small"]  # the cheapest chat model
    rc.universal_fallback = "alpha/large"
    assert ids(check(planner, task="deep")) == ["claude/sonnet", "alpha/large"]
    rc.universal_fallback = ["beta/mid"]
    assert ids(check(planner, task="deep")) == ["claude/sonnet", "beta/mid"]
    rc.universal_fallback.append("alpha/large")
    assert ids(check(planner, task="deep")) == ["claude/sonnet", "beta/mid", "alpha/large"]
    rc.universal_fallback = None
    assert ids(check(planner, task="deep")) == default_universal
    # the default strategy and the candidate count
    assert check(planner, task="pick").strategy == "balanced"
    rc.default_strategy = "cost_optimized"
    plan = check(planner, task="pick")
    assert plan.strategy == "cost_optimized" and plan.targets[0].id == "beta/mid"
    rc.default_strategy = "quality_optimized"
    assert check(planner, task="pick").targets[0].id == "claude/sonnet"
    rc.max_candidates = 1
    assert check(planner, task="pick").primary == 1
    rc.max_candidates = 3
    assert check(planner, task="pick").primary == 3


def test_a_replaced_cross_provider_chain_is_seen(build: Any) -> None:
    """A chain replaced by an equal-length one whose steps reuse the freed steps' memory must not be served
    the old chain's plan (a memo keyed on the steps' id() would be)."""
    r = build()
    planner = r.planner
    rc = r.config.routing
    for _ in range(20):
        rc.cross_provider_chain = [CrossProviderStep(provider="beta", model="mid")]
        assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "beta/mid"]
        rc.cross_provider_chain = []
        rc.cross_provider_chain = [CrossProviderStep(provider="claude", model="sonnet")]
        assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "claude/sonnet"]
        rc.cross_provider_chain = ["".join(["beta/", "mid"])]
        assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "beta/mid"]
        rc.cross_provider_chain[0] = "x"
        rc.cross_provider_chain[0] = "".join(["claude/", "sonnet"])
        assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "claude/sonnet"]
        rc.cross_provider_chain = []


def test_provider_chains_changed_at_run_time_are_seen(build: Any) -> None:
    """A provider's ``fallbacks`` chain changed in place (as ``ModelRegistry.configure_providers`` does) or a
    replaced ``providers`` table must give the new chain."""
    r = build()
    planner = r.planner
    assert ids(check(planner, model="alpha/small")) == ["alpha/small"]
    ModelRegistry(r).configure_providers({"alpha": {"fallbacks": ["beta/mid"]}})
    assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "beta/mid"]
    r.config.providers["alpha"].fallbacks = ["claude/sonnet"]
    assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "claude/sonnet"]
    r.config.providers["alpha"].fallbacks = []
    assert ids(planner.plan(model="alpha/small")) == ["alpha/small"]
    original = r.config.providers
    for _ in range(20):
        table = {k: v.model_copy() for k, v in original.items()}
        table["alpha"].fallbacks = ["beta/mid"]
        r.config.providers = table
        del table
        assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "beta/mid"]
        r.config.providers = {k: v.model_copy() for k, v in original.items()}
        table = {k: v.model_copy() for k, v in original.items()}
        table["alpha"].fallbacks = ["claude/sonnet"]
        r.config.providers = table
        del table
        assert ids(planner.plan(model="alpha/small")) == ["alpha/small", "claude/sonnet"]


# ----------------------------------------------------------------------------- complexity


def test_complexity_escalation_follows_each_request(build: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    r = build(complexity={"threshold": 0.25})  # a long prompt alone (0.3) escalates
    planner = r.planner
    counter = CountingPlanner(planner, monkeypatch)
    short = dict(task="pick", input_tokens=100, message_count=1)
    long = dict(task="pick", input_tokens=50_000, message_count=1)
    longer = dict(task="pick", input_tokens=90_000, message_count=1)
    for _ in range(3):
        plan = planner.plan(**short)
        assert plan.strategy == "balanced" and plan.complexity is not None and plan.complexity.score == 0.0
        assert plan == uncached(planner, **short)
        plan = planner.plan(**long)
        assert plan.strategy == "quality_optimized" and plan.targets[0].id == "claude/sonnet"
        assert "escalated to quality_optimized" in plan.selection_reason
        assert plan == uncached(planner, **long)
        assert planner.plan(**longer) == uncached(planner, **longer)  # same score: the same plan
    # a task with escalate_to switches task when the request is complex
    assert ids(check(planner, task="climb", input_tokens=10))[0] == "alpha/small"
    plan = check(planner, task="climb", input_tokens=10_000)
    assert plan.task == "deep" and ids(plan)[0] == "claude/sonnet"
    # a budget downgrade does not escalate
    plan = check(planner, task="climb", input_tokens=10_000, downgrade=True)
    assert plan.task == "climb" and plan.strategy == "cost_optimized"
    # the threshold and the switch are read at every call
    calls = counter.calls
    r.config.complexity.threshold = 0.5
    assert check(planner, **long).strategy == "balanced"
    r.config.complexity.threshold = 0.25
    assert check(planner, **long).strategy == "quality_optimized"
    r.config.complexity.enabled = False
    plan = check(planner, **long)
    assert plan.strategy == "balanced" and plan.complexity is None
    assert counter.calls > calls


@pytest.mark.parametrize(("features", "escalated"), [
    ({"input_tokens": 2_001}, True),  # long input: 0.3
    ({"input_tokens": 2_000}, False),  # not more than long_input_tokens
    ({"message_count": 13}, False),  # many messages: 0.2
    ({"message_count": 13, "artifacts": 2}, True),  # 0.2 + 0.1
    ({"artifacts": 5}, False),  # 0.25: not above the threshold
    ({"artifacts": 6}, True),  # 0.30
    ({"artifacts": 60}, True),  # capped at 0.4
    ({"requires_creative_writing": True}, True),  # 0.3
])
def test_every_complexity_feature_is_honoured(build: Any, features: dict[str, Any], escalated: bool) -> None:
    planner = build(complexity={"threshold": 0.25}).planner
    quiet = dict(task="pick", input_tokens=10, message_count=1)
    for kwargs in (quiet, {**quiet, **features}, quiet, {**quiet, **features}):
        plan = check(planner, **kwargs)
        assert (plan.strategy == "quality_optimized") is (escalated and kwargs is not quiet)


def test_complexity_settings_changed_at_run_time(build: Any) -> None:
    r = build(complexity={"threshold": 0.25})
    planner = r.planner
    cx = r.config.complexity
    request = dict(task="pick", input_tokens=5_000, message_count=10, artifacts=3)
    assert check(planner, **request).strategy == "quality_optimized"  # long input
    cx.long_input_tokens = 10_000
    assert check(planner, **request).strategy == "balanced"  # 0.15 of artifacts only
    cx.many_messages = 5
    assert check(planner, **request).strategy == "quality_optimized"  # 0.2 + 0.15
    cx.artifacts_weight = 0.0
    assert check(planner, **request).strategy == "balanced"  # 0.2
    cx.artifacts_weight = 0.05
    cx.artifacts_cap = 0.01
    assert check(planner, **request).strategy == "balanced"  # 0.2 + 0.01
    creative = {**request, "requires_creative_writing": True}
    assert check(planner, **creative).strategy == "quality_optimized"
    cx.creative_weight = 0.0
    assert check(planner, **creative).strategy == "balanced"
