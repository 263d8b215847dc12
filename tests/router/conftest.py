"""Fixtures for routing tests: a fake provider on loopback, a small catalog of models served by it
under three providers (two OpenAI-compatible, one Anthropic), and a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelplex.catalog import load_catalog
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.server import FakeProviderServer

KEY = "sk-routing-test-SECRET-42"


def models() -> list[dict[str, Any]]:
    caps = ["tool_calling", "json_mode", "structured_output", "streaming", "system_messages"]
    return [
        {"id": "alpha/small", "context_window": 8_000, "max_output_tokens": 2_000, "capabilities": caps,
         "category": "basic", "quality": 40, "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
        {"id": "alpha/large", "context_window": 200_000, "max_output_tokens": 8_000, "capabilities": caps,
         "category": "comprehensive", "quality": 85, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "beta/mid", "context_window": 64_000, "max_output_tokens": 4_000, "capabilities": caps,
         "category": "reasoning", "quality": 70, "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        {"id": "claude/sonnet", "context_window": 200_000, "max_output_tokens": 8_000,
         "capabilities": ["tool_calling", "streaming", "system_messages", "structured_output"],
         "category": "comprehensive", "quality": 88, "default_params": {"max_tokens": 1024},
         "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "alpha/embed", "mode": "embedding", "context_window": 8_000, "max_output_tokens": 1,
         "embedding_dimensions": 8, "pricing": {"input_per_mtok": 0.02}},
    ]


def config(base_url: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {
            "alpha": {"protocol": "openai", "base_url": base_url + "/v1", "api_key": KEY},
            "beta": {"protocol": "openai", "base_url": base_url + "/v1", "api_key": KEY},
            "claude": {"protocol": "anthropic", "base_url": base_url, "api_key": KEY},
        },
        "models": models(),
        "accounting": {"sink": "none"},
        "routing": {"retry": {"base_delay": 0.5, "max_delay": 4}},
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(protocols=("openai", "anthropic")) as server:
        yield server


@pytest.fixture
def make_config():
    """The routing test config as a function of the fake's base URL, for tests that build their own Router."""
    return config


@pytest.fixture
def secret_key() -> str:
    return KEY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_router(fake: FakeProviderServer, clock: FakeClock):
    routers: list[Router] = []

    def build(env: dict[str, str] | None = None, **extra: Any) -> Router:
        r = Router.from_config(config(fake.base_url, **extra), catalog=load_catalog(bundled=False),
                               env=env or {}, clock=clock)
        routers.append(r)
        return r

    yield build
    for r in routers:
        await r.aclose()
