"""Seed 003 (BizPilot's task routing: ``execute_*_task`` returning ``LLMResponse``), over the ``Router``.

The seed's names keep working: ``execute_fast_task``, ``execute_reasoning_task``,
``execute_summarization_task`` and ``execute_task(task_type, ...)`` (async), each returning the seed's
``LLMResponse(content, model_used, finish_reason, usage)``. Agents still never name a model.

Mapping onto modelplex:

* the seed's task types are modelplex tasks of the same names — ``fast``, ``reasoning``,
  ``summarization`` and ``fallback`` are built in (requirements plus a default strategy, over
  whichever providers have credentials);
* the seed's ``MODEL_REGISTRY`` (task -> models in priority order) becomes configuration:
  ``registry_to_config(MODEL_REGISTRY)`` gives ``tasks.<task>.models`` (the priority lists) and
  ``routing.universal_fallback`` (the ``fallback`` list, tried after a task's own models);
  ``Router.from_config(...)`` takes it as is, or merged into a larger config;
* ``FORCE_MODEL`` and ``DEFAULT_<TASK>_MODEL`` are honoured by the planner, as in the seed;
* the fallback order is the seed's: the task's models in order, then the universal fallback. When
  everything fails the router raises ``AllAttemptsFailedError`` listing each attempt; this module
  re-raises it as ``TaskExecutionError``, which is both that error and the seed's ``RuntimeError``.

``LLMResponse.model_used`` is the catalog id of the model that answered (``groq/openai/gpt-oss-120b``),
and ``usage`` the seed's token dict (``prompt_tokens``, ``completion_tokens``, ``total_tokens``);
``provider``, ``cost_usd``, ``latency_ms``, ``fallback_used``, ``attempts`` and ``request_id`` are extra
fields with defaults, so the seed's own ``LLMResponse(...)`` constructions in tests still work.

Must not touch: routing, fallback or override logic (the planner and router own them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelplex.compat import resolve_router
from modelplex.errors import AllAttemptsFailedError
from modelplex.types import Message, Response

if TYPE_CHECKING:
    from modelplex.catalog import Catalog
    from modelplex.router import Router

SEED_TASKS: tuple[str, ...] = ("fast", "reasoning", "summarization", "fallback")
"""The seed's task types; each is a built-in modelplex task of the same name."""


@dataclass(slots=True)
class LLMResponse:
    """The seed's response type, with routing extras."""

    content: str
    model_used: str
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)
    provider: str = ""
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    fallback_used: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)
    request_id: str = ""
    task: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_response(cls, resp: Response) -> LLMResponse:
        u = resp.usage
        return cls(content=resp.content or "", model_used=resp.model, finish_reason=resp.finish_reason,
                   usage={"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                          "total_tokens": u.total_tokens},
                   provider=resp.provider, cost_usd=resp.cost_usd, latency_ms=resp.latency_ms,
                   fallback_used=resp.fallback_used, attempts=[a.to_dict() for a in resp.attempts],
                   request_id=resp.request_id, task=resp.task,
                   tool_calls=[tc.to_openai() for tc in resp.tool_calls])


class TaskExecutionError(AllAttemptsFailedError, RuntimeError):
    """Every model of the task and the universal fallback failed: the seed's ``RuntimeError`` with
    diagnostics (``attempts`` lists each target, outcome, error type and status)."""


def registry_to_config(model_registry: Mapping[str, Sequence[str]], provider: str = "groq", *,
                       catalog: Catalog | None = None) -> dict[str, Any]:
    """The seed's ``MODEL_REGISTRY`` as modelplex configuration.

    The seed is Groq-only, so its names are ``provider``'s model names and get ``provider`` as prefix:
    ``llama-3.1-8b-instant`` -> ``groq/llama-3.1-8b-instant``. Groq's own names may contain a vendor
    slash (``openai/gpt-oss-120b`` -> ``groq/openai/gpt-oss-120b``), so a slash alone does not make a
    name a catalog id. A name is kept as it is when it is already a catalog id and not also one of
    ``provider``'s models: ``groq/openai/gpt-oss-20b``, or another provider's model such as
    ``anthropic/claude-sonnet-4-6`` (a registry that grew past the seed). A name the catalog does not
    know is kept when it already starts with ``provider/`` and prefixed otherwise. ``catalog`` is the
    bundled catalog by default; pass one with your overlay (``load_catalog([overlay])``) when the config
    adds models under ``models:``.
    The ``fallback`` list becomes both the ``fallback`` task and ``routing.universal_fallback``.
    """
    if catalog is None:
        from modelplex.catalog import load_catalog

        catalog = load_catalog()

    def is_id(name: str) -> bool:
        spec = catalog.find(name)
        return spec is not None and spec.id == name

    def qualify(name: str) -> str:
        prefixed = f"{provider}/{name}"
        if is_id(prefixed):
            return prefixed  # the provider's model, even when its name has a vendor slash
        if is_id(name) or name.startswith(f"{provider}/"):
            return name
        return prefixed

    tasks = {task: {"models": [qualify(m) for m in models]} for task, models in model_registry.items()}
    config: dict[str, Any] = {"tasks": tasks}
    if "fallback" in tasks:
        config["routing"] = {"universal_fallback": list(tasks["fallback"]["models"])}
    return config


async def execute_task(task_type: str, messages: list[Message], max_tokens: int | None = None,
                       temperature: float | None = None, *, router: Router | None = None,
                       **params: Any) -> LLMResponse:
    """Run ``messages`` as ``task_type`` (any modelplex task; ``UnknownTaskError`` otherwise)."""
    r = resolve_router(router)
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    try:
        resp = await r.acomplete(list(messages), task=task_type, **params)
    except AllAttemptsFailedError as exc:
        head = str(exc).split("\n", 1)[0]
        raise TaskExecutionError(f"task_type={task_type}: {head}", exc.attempts, exc.last_error,
                                 exc.retry_after) from exc
    return LLMResponse.from_response(resp)


async def execute_fast_task(messages: list[Message], max_tokens: int | None = None, temperature: float | None = None,
                            *, router: Router | None = None, **params: Any) -> LLMResponse:
    """Tool calls, routing and short answers."""
    return await execute_task("fast", messages, max_tokens, temperature, router=router, **params)


async def execute_reasoning_task(messages: list[Message], max_tokens: int | None = None,
                                 temperature: float | None = None, *, router: Router | None = None,
                                 **params: Any) -> LLMResponse:
    """Multi-step planning, analysis and decisions."""
    return await execute_task("reasoning", messages, max_tokens, temperature, router=router, **params)


async def execute_summarization_task(messages: list[Message], max_tokens: int | None = None,
                                     temperature: float | None = None, *, router: Router | None = None,
                                     **params: Any) -> LLMResponse:
    """Condensing, rewriting and reporting."""
    return await execute_task("summarization", messages, max_tokens, temperature, router=router, **params)


__all__ = [
    "SEED_TASKS",
    "LLMResponse",
    "TaskExecutionError",
    "execute_fast_task",
    "execute_reasoning_task",
    "execute_summarization_task",
    "execute_task",
    "registry_to_config",
]
