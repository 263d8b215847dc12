"""Compatibility layers: the seed designs' own interfaces, as thin shims over the ``Router``.

Code written against one of the seed documents keeps its calls and moves onto modelplex:

* ``compat.resume_lm``   — seed 000, Resume-LM's ``ModelRegistry`` (LangGraph, requirement dicts,
  fallback paths, token estimates, ``model_usage`` state tracking, provider configuration);
* ``compat.registry``    — seed 001, the metadata registry (``get_model_metadata``,
  ``validate_model_parameters``, ``calculate_request_cost``, ``convert_request_for_model`` ...);
* ``compat.factory``     — seed 002, ``ModelFactory.get_chat_model`` with prefix-based provider
  resolution and per-provider circuit breakers;
* ``compat.bizpilot``    — seed 003, ``execute_fast_task`` / ``execute_reasoning_task`` /
  ``execute_summarization_task`` returning ``LLMResponse``;
* ``compat.cv_selector`` — seed 004, ``IntelligentModelSelector`` and ``processing_metadata``.

docs/migration.md shows, per seed, the call-by-call mapping onto modelplex's own API.

Owns: the default-router registry the seeds' module-level functions fall back on when they are not
given a router (``get_default_router`` / ``set_default_router``), and per-router default objects
(``default_for``). It is an explicit registry: nothing else in modelplex reads it.

Must not touch: routing, selection, retries or accounting. The shims map names and shapes onto
``Router``/``Catalog``/``Selector``/``Planner`` calls and own no routing logic of their own.
The submodules are imported on demand, so ``import modelplex.compat`` stays light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from modelplex.router import Router

T = TypeVar("T")

_lock = threading.RLock()
_router: Router | None = None
_objects: dict[str, Any] = {}


def get_default_router() -> Router:
    """The router the module-level shims use when none is passed.

    Built on first use from the environment (``$MODELPLEX_CONFIG`` when set, provider keys such as
    ``OPENAI_API_KEY`` and ``GROQ_API_KEY`` otherwise) unless ``set_default_router`` installed one.
    """
    global _router
    with _lock:
        if _router is None:
            from modelplex.router import Router

            _router = Router()
        return _router


def set_default_router(router: Router | None) -> None:
    """Install ``router`` as the default (``None`` forgets it; the next use builds one from the
    environment). Per-router default objects (``default_for``) are dropped with the old router."""
    global _router
    with _lock:
        _router = router
        _objects.clear()


def resolve_router(router: Router | None) -> Router:
    """``router`` itself, or the default router."""
    return router if router is not None else get_default_router()


def default_for(key: str, build: Callable[[Router], T]) -> T:
    """The default router's shared object named ``key``, built by ``build(router)`` on first use
    (e.g. the ``ModelFactory`` behind seed 002's class-level calls)."""
    with _lock:
        router = get_default_router()
        obj = _objects.get(key)
        if obj is None:
            obj = build(router)
            _objects[key] = obj
        return obj  # type: ignore[no-any-return]


__all__ = ["default_for", "get_default_router", "resolve_router", "set_default_router"]
