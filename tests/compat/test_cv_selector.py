"""Seed 004's IntelligentModelSelector over the planner: rules as tasks/strategies/requirements, metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from modelplex.catalog import load_catalog
from modelplex.compat.cv_selector import IntelligentModelSelector, processing_metadata
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.faults import Fault
from modelplex.testing.server import FakeProviderServer

CAPS = ["tool_calling", "json_mode", "structured_output", "streaming", "system_messages"]


def seed_models() -> list[dict[str, Any]]:
    """The seed's 2025 registry, as live entries served by the fake."""
    def chat(mid: str, window: int, category: str, quality: int, inp: float, out: float) -> dict[str, Any]:
        return {"id": mid, "context_window": window, "max_output_tokens": 16_384, "capabilities": CAPS,
                "category": category, "quality": quality, "pricing": {"input_per_mtok": inp, "output_per_mtok": out}}

    return [
        chat("openai/gpt-4o-mini", 128_000, "basic", 60, 0.15, 0.6),
        chat("openai/gpt-4o", 64_000, "comprehensive", 75, 2.5, 10.0),
        chat("anthropic/claude-sonnet-4", 200_000, "comprehensive", 85, 3.0, 15.0),
        chat("anthropic/claude-opus-4-1", 200_000, "comprehensive", 90, 15.0, 75.0),
        {"id": "openai/text-embedding-3-small", "mode": "embedding", "context_window": 8_191, "quality": 62.3,
         "embedding_dimensions": 1536, "pricing": {"input_per_mtok": 0.02}},
        {"id": "openai/text-embedding-3-large", "mode": "embedding", "context_window": 8_191, "quality": 64.6,
         "embedding_dimensions": 3072, "pricing": {"input_per_mtok": 0.13}},
    ]


def config(base_url: str) -> dict[str, Any]:
    providers = {p: {"protocol": "openai", "base_url": base_url + "/v1", "api_key": f"sk-{p}"}
                 for p in ("openai", "anthropic")}
    # the seed's MODEL_STRATEGIES["balanced"]: per-task models and a cost cap
    strategies = {"balanced": {"selection": "balanced", "max_cost_per_request": 0.15,
                               "models": {"job_parsing": "openai/gpt-4o", "cv_generation": "openai/gpt-4o"}}}
    return {"providers": providers, "models": seed_models(), "strategies": strategies,
            "accounting": {"sink": "none"}, "routing": {"retry": {"max_retries_per_target": 0}}}


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture
async def router(fake: FakeProviderServer) -> AsyncIterator[Router]:
    r = Router.from_config(config(fake.base_url), catalog=load_catalog(bundled=False), env={}, clock=FakeClock())
    yield r
    await r.aclose()


def words(n: int) -> str:
    return " ".join(f"skill{i % 50}" for i in range(n))


# ----------------------------------------------------------------------------- job parsing


def test_job_parsing_rules(router: Router) -> None:
    sel = IntelligentModelSelector(router)
    long_jd = {"job_description": words(1_200)}
    assert sel.select_model_for_task("job_parsing", long_jd) == "anthropic/claude-opus-4-1"
    decision = sel.last_decision
    assert decision is not None and decision.rule == "job_parsing_long_description"
    assert decision.strategy == "quality_optimized" and "requirements" in decision.route
    assert "long_context" in decision.route["requirements"].capabilities  # gpt-4o's 64k window is excluded
    assert "openai/gpt-4o" not in decision.fallbacks
    assert sel.select_model_for_task("job_parsing", {"job_description": words(120)}) == "openai/gpt-4o-mini"
    assert sel.last_decision.rule == "job_parsing_short_description"
    # in between: the strategy in force (routing.default_strategy, balanced) and its job_parsing model ...
    medium = {"job_description": words(500)}
    assert sel.select_model_for_task("job_parsing", medium) == "openai/gpt-4o"
    # ... a pinned strategy ...
    assert IntelligentModelSelector(router, strategy="cost_optimized").select_model_for_task(
        "job_parsing", medium) == "openai/gpt-4o-mini"
    router.runtime_strategy = "cost_optimized"  # ... and the settings API's switch reaches the selector too
    assert sel.select_model_for_task("job_parsing", medium) == "openai/gpt-4o-mini"


def test_job_parsing_default_rule_uses_the_strategy_in_force(fake: FakeProviderServer) -> None:
    """docs/migration.md: "otherwise -> the strategy's job_parsing_model" is the strategy in force (the
    selector's ``strategy_name``) and its ``models.job_parsing``, not the built-in task's own default
    (cost_optimized), which the planner ranks above routing.default_strategy."""
    medium = {"job_description": words(500)}
    r = Router.from_config(config(fake.base_url), catalog=load_catalog(bundled=False), env={}, clock=FakeClock())
    sel = IntelligentModelSelector(r)
    assert sel.strategy_name == "balanced"
    decision = sel.decide("job_parsing", medium)
    assert decision.rule == "job_parsing_default_strategy"
    assert decision.strategy == sel.strategy_name == "balanced"
    assert decision.model == "openai/gpt-4o"  # strategies.balanced.models.job_parsing
    assert decision.route["strategy"] == "balanced"  # the call is sent with the same strategy
    assert "strategy in force (balanced)" in decision.reason
    assert "strategy balanced (default)" in decision.reason  # honest: routing.default_strategy, not the request
    assert "(request)" not in decision.reason and "task default" not in decision.reason
    # another routing.default_strategy is followed the same way
    cfg = config(fake.base_url)
    cfg["routing"]["default_strategy"] = "cost_optimized"
    r2 = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=FakeClock())
    sel2 = IntelligentModelSelector(r2)
    d2 = sel2.decide("job_parsing", medium)
    assert d2.strategy == sel2.strategy_name == "cost_optimized" and d2.model == "openai/gpt-4o-mini"
    # MODEL_SELECTION_STRATEGY ranks above the task default in the planner: same strategy, reason says so
    r3 = Router.from_config(config(fake.base_url), catalog=load_catalog(bundled=False),
                            env={"MODEL_SELECTION_STRATEGY": "quality_optimized"}, clock=FakeClock())
    sel3 = IntelligentModelSelector(r3)
    d3 = sel3.decide("job_parsing", medium)
    assert d3.strategy == sel3.strategy_name == "quality_optimized"
    assert "strategy quality_optimized (MODEL_SELECTION_STRATEGY)" in d3.reason
    # an A/B arm is the user's arm, and the planner keeps it (experiment attribution)
    cfg4 = config(fake.base_url)
    cfg4["experiments"] = {"strategy_split": {"balanced": 50, "cost_optimized": 50}}
    r4 = Router.from_config(cfg4, catalog=load_catalog(bundled=False), env={}, clock=FakeClock())
    sel4 = IntelligentModelSelector(r4)
    for user in ("alice", "bob", "carol", "dave"):
        arm = r4.planner.strategy_for(requested=None, task=None, user=user, request_id="")[0]
        d4 = sel4.decide("job_parsing", {**medium, "user": user})
        assert d4.strategy == arm and f"experiment arm {arm}" in d4.reason
        assert d4.model == ("openai/gpt-4o" if arm == "balanced" else "openai/gpt-4o-mini")


# ----------------------------------------------------------------------------- CV generation


def test_cv_generation_rules(router: Router) -> None:
    sel = IntelligentModelSelector(router)
    simple = {"job_description": words(300), "artifacts": [{"id": 1}, {"id": 2}]}
    assert sel.select_model_for_task("cv_generation", simple) == "openai/gpt-4o-mini"
    assert sel.last_decision.rule == "cv_generation_economy" and sel.last_decision.complexity == pytest.approx(0.1)
    medium = {"job_description": words(300), "artifacts": list(range(8)), "requires_creative_writing": True}
    assert sel.select_model_for_task("cv_generation", medium) == "openai/gpt-4o"  # balanced: the strategy's model
    assert sel.last_decision.rule == "cv_generation_balanced" and sel.last_decision.complexity == pytest.approx(0.7)
    many = {"job_description": words(300), "artifacts": list(range(12))}
    assert sel.select_model_for_task("cv_generation", many) == "anthropic/claude-opus-4-1"
    assert sel.last_decision.rule == "cv_generation_premium" and sel.last_decision.strategy == "quality_optimized"
    experimental = IntelligentModelSelector(router, strategy="experimental")
    experimental.select_model_for_task("cv_generation", many)
    assert experimental.last_decision.strategy == "experimental"  # a quality strategy in force is kept
    # complexity over the threshold: the planner's own escalation (cv_generation -> reasoning) applies too
    heavy = {"job_description": words(3_000), "artifacts": list(range(8)), "requires_creative_writing": True}
    assert sel.select_model_for_task("cv_generation", heavy) == "anthropic/claude-opus-4-1"
    assert sel.last_decision.complexity == pytest.approx(1.0)
    assert "escalated to task reasoning" in sel.last_decision.reason


# ----------------------------------------------------------------------------- embeddings and reasons


def test_embedding_rules_and_selection_reason(router: Router) -> None:
    sel = IntelligentModelSelector(router)
    assert sel.select_model_for_task("embedding", {"use_case": "semantic_analysis"}) == "openai/text-embedding-3-large"
    assert sel.select_model_for_task("embedding", {"use_case": "similarity"}) == "openai/text-embedding-3-small"
    reason = sel.get_selection_reason("openai/text-embedding-3-small", {"use_case": "similarity"})
    assert reason.startswith("embedding_economy: use case similarity: cost-efficient embeddings; task embedding")
    recomputed = sel.get_selection_reason("x", {"job_description": words(120)}, task_type="job_parsing")
    assert recomputed.startswith("job_parsing_short_description: short job description (120 words < 200)")
    with pytest.raises(KeyError):
        sel.get_selection_reason("anthropic/claude-sonnet-4")
    assert sel.select_model_for_task("analytical", {}) == sel.last_decision.model
    assert sel.last_decision.rule == "analytical_default"


# ----------------------------------------------------------------------------- running calls


async def test_acomplete_returns_processing_metadata(router: Router, fake) -> None:
    sel = IntelligentModelSelector(router)
    ctx = {"job_description": words(150), "company_name": "Acme"}
    messages = [{"role": "system", "content": "You are a job description parser. Return only valid JSON."},
                {"role": "user", "content": ctx["job_description"]}]
    resp, meta = await sel.acomplete("job_parsing", ctx, messages, temperature=0.1, max_tokens=1000)
    assert meta["model_used"] == resp.model == "openai/gpt-4o-mini"
    assert meta["strategy"] == "cost_optimized" and meta["selection_rule"] == "job_parsing_short_description"
    assert meta["tokens_used"] == resp.usage.total_tokens > 0
    assert meta["cost_usd"] == pytest.approx(resp.cost_usd) and meta["cost_usd"] > 0
    assert meta["processing_time_ms"] == resp.latency_ms and meta["fallback_used"] is False
    assert meta["selection_reason"] == sel.get_selection_reason("openai/gpt-4o-mini")
    assert resp.task == "job_parsing"
    assert fake.captured[-1].json["temperature"] == 0.1 and fake.captured[-1].json["max_tokens"] == 1000
    # the selected model fails: the router falls over and the metadata says so
    fake.plan.fail_next(Fault("not_found"), times=-1, model="gpt-4o-mini")
    resp, meta = await sel.acomplete("job_parsing", ctx, messages, quality_score=0.87)
    assert meta["fallback_used"] is True and meta["model_used"] != "openai/gpt-4o-mini"
    assert meta["attempts"][0]["target"] == "openai/gpt-4o-mini" and meta["attempts"][0]["outcome"] == "error"
    assert meta["quality_score"] == 0.87


async def test_aembed_uses_the_use_case_rule(router: Router) -> None:
    sel = IntelligentModelSelector(router)
    resp, meta = await sel.aembed(["python developer", "data engineer"], use_case="complex_matching")
    assert meta["model_used"] == "openai/text-embedding-3-large" and meta["fallback_used"] is False
    assert len(resp.embeddings) == 2 and len(resp.embeddings[0]) == 3072
    assert processing_metadata(resp)["selection_reason"] == ""
