"""docs/adaptive.md's code blocks run as written, and what it says turns ``adaptive`` on does: per call,
per task (a configured task replaces the built-in one, so the block repeats its requirements), and
``routing.default_strategy: adaptive`` reaches requirement requests but not the built-in tasks, whose
own default strategies rank above it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelplex.catalog import load_catalog
from modelplex.policy.adaptive import AdaptiveChooser
from modelplex.policy.tasks import BUILTIN_TASKS
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.server import FakeProviderServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "adaptive.md"
MESSAGES = [{"role": "user", "content": "Summarize: the quarterly report shows growth."}]


def blocks(lang: str) -> list[str]:
    """The doc's fenced ``lang`` blocks, list-item indentation removed."""
    found = re.findall(r"^( *)```(\w*)\n(.*?)^\1```", DOC.read_text(), re.S | re.M)
    return ["\n".join(line[len(indent):] for line in body.splitlines())
            for indent, kind, body in found if kind == lang]


@pytest.fixture
def build(threaded_fake: FakeProviderServer, make_config) -> Iterator[Any]:
    routers: list[Router] = []

    def make(**extra: Any) -> Router:
        r = Router.from_config(make_config(threaded_fake.base_url, **extra), catalog=load_catalog(bundled=False),
                               env={}, clock=FakeClock())
        routers.append(r)
        return r

    yield make
    for r in routers:
        r.close()


def ran_adaptive(resp: Any) -> bool:
    return resp.strategy == "adaptive" and "adaptive: " in resp.selection_reason


def test_per_call_block_runs_adaptive_and_takes_feedback(build) -> None:
    (code,) = [b for b in blocks("python") if "router.complete" in b]
    router = build()
    ns: dict[str, Any] = {"router": router, "messages": MESSAGES}
    exec(code, ns)  # task="summarize" raised UnknownTaskError: the built-in task is "summarization"
    resp = ns["resp"]
    assert resp.task == "summarization" and ran_adaptive(resp)
    arm = next(a for a in router.adaptive.snapshot()["arms"] if a["model"] == resp.model)
    assert arm["task"] == "summarization" and arm["feedback_n"] == 1


def test_per_task_block_runs_adaptive_and_keeps_the_builtin_requirements(build) -> None:
    (code,) = blocks("yaml")
    config = yaml.safe_load(code)
    assert config["tasks"]["summarization"]["strategy"] == "adaptive"
    router = build(**config)
    resp = router.complete(MESSAGES, task="summarization")
    assert ran_adaptive(resp)
    assert router.planner.tasks["summarization"].requirements == BUILTIN_TASKS["summarization"].requirements


def test_default_strategy_reaches_requirement_requests_not_builtin_tasks(build) -> None:
    router = build(routing={"default_strategy": "adaptive"})
    for task in ("fast", "reasoning", "summarization", "analytical", "fallback"):
        resp = router.complete(MESSAGES, task=task)
        assert resp.strategy == BUILTIN_TASKS[task].strategy and not ran_adaptive(resp), task
    assert ran_adaptive(router.complete(MESSAGES, requirements={}))
    assert ran_adaptive(router.complete(MESSAGES, model="auto"))
    # a configured task without a strategy of its own falls to routing.default_strategy
    configured = build(routing={"default_strategy": "adaptive"}, tasks={"summarization": {"models": ["alpha/large"]}})
    assert ran_adaptive(configured.complete(MESSAGES, task="summarization"))
    # the operator's switches outrank the task defaults
    router.runtime_strategy = "adaptive"
    assert ran_adaptive(router.complete(MESSAGES, task="fast"))
    text = DOC.read_text()
    assert "does not\nreach the built-in tasks" in text and 'task="summarize"' not in text


def test_constructor_block_matches_the_signature() -> None:
    (code,) = [b for b in blocks("python") if b.lstrip().startswith("AdaptiveChooser(")]
    chooser = eval(code, {"AdaptiveChooser": AdaptiveChooser})  # the documented defaults are accepted
    assert chooser.exploration == AdaptiveChooser().exploration
