"""The worked example of docs/routing.md, run for real against the fake provider."""

from __future__ import annotations

import warnings

from modelplex.resilience.breaker import BreakerState
from modelplex.router import Router
from modelplex.testing.faults import Fault


async def test_docs_worked_example(fake, clock):
    cfg = {
        "providers": {"groq": {"api_key": "gsk-test", "base_url": fake.base_url + "/v1"},
                      "openrouter": {"api_key": "sk-or-test", "base_url": fake.base_url + "/v1"}},
        "tasks": {"reasoning": {"models": ["groq/openai/gpt-oss-120b"]}},
        "routing": {"fallback_paths": {"groq/openai/gpt-oss-120b": ["groq/llama-3.3-70b-versatile",
                                                                    "groq/qwen/qwen3.8-27b"]},
                    "cross_provider_chain": ["openrouter/openai/gpt-6-luna"],
                    "universal_fallback": "groq/openai/gpt-oss-20b"},
        "accounting": {"sink": "none"},
    }
    router = Router.from_config(cfg, env={}, clock=clock)
    fake.plan.fail_next(Fault("server_error", status=503), times=-1, model="openai/gpt-oss-120b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resp = await router.acomplete([{"role": "user", "content": "Plan the launch."}], task="reasoning")
    assert [(a.target, a.outcome, a.status_code, a.retry) for a in resp.attempts] == [
        ("groq/openai/gpt-oss-120b", "error", 503, 0),
        ("groq/openai/gpt-oss-120b", "error", 503, 1),
        ("groq/openai/gpt-oss-120b", "error", 503, 2),
        ("groq/qwen/qwen3.8-27b", "skipped_breaker", None, 0),
        ("openrouter/openai/gpt-6-luna", "success", None, 0),
    ]
    assert resp.fallback_used and resp.model == "openrouter/openai/gpt-6-luna"
    assert resp.selection_reason == ("task reasoning: task reasoning priority list; "
                                     "strategy balanced (default)")
    assert any("llama-3.3-70b-versatile" in str(w.message) for w in caught)
    assert router.breakers.state("provider:groq") == BreakerState.OPEN
    await router.aclose()
