"""The gateway context every route shares, and the request steps common to all serving routes.

Owns: ``Gateway`` (the router, the authenticator, the key manager, metrics, settings and limits
of one app) with the shared steps of a serving request:

* ``resolve_target`` — what ``model`` names: a catalog id or alias, ``task:<name>``, a bare task
  name, or ``auto`` (the planner's own rules, so the allow-list is checked against what will
  actually be planned);
* ``route_kwargs`` — the router keyword arguments for a target plus the ``modelplex`` body
  extension (``requirements``, ``strategy``, ``task``, ``tags``, ``user``);
* ``admit``/``settle`` — the key's RPM/TPM limits (``RateLimiter`` over the router's state
  backend: shared by replicas with Redis) and its USD budgets (registered with the router's
  ``BudgetManager.set_key_budget``, which applies them in every ``reserve`` for that key; a
  ``BudgetManager`` is created on first need when the router has none);
* ``track``/``untrack`` — the attempts of an in-flight stream, from the router's ``on_attempt``
  hook, so stream headers can report fallbacks and attempts;
* ``error_info`` — ``server.errors.classify`` with every known secret redacted, logged once.

Must not touch: wire formats (the route modules), the router's attempt loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from modelplex.errors import UnknownTaskError
from modelplex.parameters import MAX_USER, value_problem
from modelplex.resilience.ratelimit import RateLimiter
from modelplex.server.auth import Authenticator, Principal, Target
from modelplex.server.db import DatabaseUnavailableError
from modelplex.server.errors import ErrorInfo, classify, invalid_request
from modelplex.server.http import DisconnectWatch, WatchScheduler
from modelplex.server.metrics import GatewayMetrics
from modelplex.types import Attempt, Requirements, StreamChunk, Usage

if TYPE_CHECKING:
    from modelplex.config import Config
    from modelplex.router import Router
    from modelplex.server.keys import ApiKey, KeyManager
    from modelplex.server.settings_store import SettingsStore

log = logging.getLogger("modelplex.server")

@dataclass(slots=True)
class Admission:
    """What ``admit`` took, so ``settle`` can correct the TPM charge."""

    key_id: str | None = None
    tpm: int | None = None
    estimated_tokens: int = 0


_NO_ADMISSION = Admission()

_REQ_BOOL = {"tool_calling", "economy_mode", "include_deprecated"}
_REQ_INT = {"min_context", "min_output_tokens"}
_REQ_FLOAT = {"max_input_price", "max_output_price"}
_REQ_SET = {"capabilities", "providers_allow", "providers_deny", "input_modalities", "output_modalities"}
_REQ_STR = {"provider", "category", "response_format", "mode", "strategy"}


def parse_requirements(value: Any) -> Requirements:
    """``modelplex.requirements`` -> ``Requirements``, with a 400 for wrong keys or types."""
    if not isinstance(value, dict):
        raise invalid_request("modelplex.requirements must be an object", param="modelplex.requirements")
    req = Requirements.from_dict(value)  # ConfigError (-> 400) on an unknown key
    for f in fields(req):
        v = getattr(req, f.name)
        name = f.name
        ok = True
        if name in _REQ_BOOL:
            ok = isinstance(v, bool)
        elif name in _REQ_INT:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif name in _REQ_FLOAT:
            ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)
        elif name in _REQ_SET:
            ok = all(isinstance(x, str) for x in v)
        elif name in _REQ_STR:
            ok = v is None or isinstance(v, str)
        if not ok:
            raise invalid_request(f"modelplex.requirements.{name} has the wrong type",
                                  param=f"modelplex.requirements.{name}")
    if req.mode not in ("chat", "embedding"):
        raise invalid_request("modelplex.requirements.mode must be 'chat' or 'embedding'",
                              param="modelplex.requirements.mode")
    if req.strategy not in ("economy", "balanced", "quality"):
        raise invalid_request("modelplex.requirements.strategy must be economy, balanced or quality; use "
                              "modelplex.strategy for a named strategy", param="modelplex.requirements.strategy")
    return req


def check_user(user: Any) -> str | None:
    """A request's ``user`` (end-user id): ``None``, or a string of at most ``MAX_USER`` characters (it is
    stored in an indexed column, which PostgreSQL limits)."""
    expected = value_problem("user", user)  # the parameter's one value check (parameters.VALUE_CHECKS)
    if expected is not None:
        raise invalid_request(f"'user' must be {expected}", param="user")
    return user


@dataclass(slots=True)
class Extension:
    """The ``modelplex`` object of a request body."""

    requirements: Requirements | None = None
    strategy: str | None = None
    task: str | None = None
    tags: list[str] | None = None
    user: str | None = None

    @classmethod
    def parse(cls, value: Any) -> Extension:
        if value is None:
            return _NO_EXTENSION
        if not isinstance(value, dict):
            raise invalid_request("modelplex must be an object", param="modelplex")
        unknown = set(value) - {"requirements", "strategy", "task", "tags", "user"}
        if unknown:
            raise invalid_request(f"unknown modelplex field(s): {', '.join(sorted(unknown))}; expected "
                                  "requirements, strategy, task, tags, user", param="modelplex")
        ext = cls()
        if value.get("requirements") is not None:
            ext.requirements = parse_requirements(value["requirements"])
        for name in ("strategy", "task", "user"):
            v = value.get(name)
            if v is not None and (not isinstance(v, str) or not v or len(v) > MAX_USER):
                raise invalid_request(f"modelplex.{name} must be a non-empty string of at most {MAX_USER} characters",
                                      param=f"modelplex.{name}")
            setattr(ext, name, v)
        tags = value.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or len(tags) > 64:
                raise invalid_request("modelplex.tags must be a list of at most 64 strings", param="modelplex.tags")
            ext.tags = list(tags)
        return ext


_NO_EXTENSION = Extension()


class Gateway:
    """One app's shared context. Routes hold a reference; nothing here is global."""

    def __init__(self, router: Router, config: Config, *, auth: Authenticator, keys: KeyManager | None,
                 metrics: GatewayMetrics, settings: SettingsStore, no_auth: bool,
                 extra_secrets: tuple[str, ...] = ()) -> None:
        self.router = router
        self.config = config
        self.auth = auth
        self.keys = keys
        self.metrics = metrics
        self.settings = settings
        self.no_auth = no_auth
        self.max_body = config.server.max_body_bytes
        self.limiter = RateLimiter(router.state)
        self.watches = WatchScheduler()
        """Starts the disconnect watch of calls that outlast ``server.http.WATCH_AFTER_S``."""
        self._extra_secrets = tuple(s for s in extra_secrets if s)
        self._inflight_attempts: dict[str, list[Attempt]] = {}
        self._budget_keys: dict[str, ApiKey] = {}
        self.started_at = time.time()
        self.settings_updated_at: float | None = None

    # ------------------------------------------------------------------ hooks

    def attach(self) -> None:
        """Register the router hooks (undone by ``detach``)."""
        self.router.on_attempt.append(self._on_attempt)
        self.router.on_record.append(self.metrics.on_record)

    def detach(self) -> None:
        if self._on_attempt in self.router.on_attempt:
            self.router.on_attempt.remove(self._on_attempt)
        if self.metrics.on_record in self.router.on_record:
            self.router.on_record.remove(self.metrics.on_record)

    def _on_attempt(self, attempt: Attempt, request_id: str = "") -> None:
        self.metrics.on_attempt(attempt, request_id)
        tracked = self._inflight_attempts.get(request_id)
        if tracked is not None:
            tracked.append(attempt)

    def track(self, request_id: str) -> None:
        self._inflight_attempts[request_id] = []

    def untrack(self, request_id: str) -> list[Attempt]:
        return self._inflight_attempts.pop(request_id, [])

    async def first_chunk(self, route: str, agen: AsyncIterator[StreamChunk], watch: DisconnectWatch,
                          started: float, request_id: str) -> tuple[StreamChunk, list[Attempt]] | None:
        """Wait for a routed stream's first chunk (retries and fallbacks happen before it), tracking its
        attempts. ``None`` when the client went away first (recorded as a 499); other errors propagate."""
        self.track(request_id)
        try:
            first = await agen.__anext__()
        except asyncio.CancelledError:
            self.untrack(request_id)
            watch.stop()
            if not watch.disconnected:
                raise
            watch.absorb()
            self.metrics.observe(route, 499, time.perf_counter() - started)
            return None
        except BaseException:
            self.untrack(request_id)
            watch.stop()
            raise
        attempts = self.untrack(request_id)
        self.metrics.ttft.labels(route).observe(time.perf_counter() - started)
        return first, attempts

    # ------------------------------------------------------------------ secrets and errors

    def secrets(self) -> list[str]:
        return [*self.router.secrets(), *self._extra_secrets]

    def error_info(self, exc: BaseException, route: str, request_id: str) -> ErrorInfo:
        info = classify(exc, self.secrets())
        if info.status >= 500:
            if info.code == "internal_error":
                log.error("internal error route=%s request_id=%s", route, request_id, exc_info=exc)
            elif isinstance(exc, DatabaseUnavailableError):
                pass  # the key manager says once that the store went away and once that it is back
            else:
                log.warning("upstream failure route=%s request_id=%s status=%d code=%s error=%s", route,
                            request_id, info.status, info.code, type(exc).__name__)
        return info

    # ------------------------------------------------------------------ targets

    def resolve_target(self, model: Any, *, param: str = "model") -> Target:
        """What ``model`` names, by the planner's rules; 400 when it is missing, 404 when unknown."""
        if not isinstance(model, str) or not model:
            raise invalid_request(f"'{param}' is required and must be a non-empty string", param=param)
        planner = self.router.planner
        if model == "auto":
            return Target("auto", "auto", model)
        if model.startswith("task:"):
            name = model[5:]
            if not planner.is_task(name):
                raise UnknownTaskError(name, planner.task_names())
            return Target("task", name, model)
        catalog = self.router.catalog
        spec = catalog.find(model)
        if spec is None:
            if planner.is_task(model):
                return Target("task", model, model)
            raise planner.unknown_model(model)
        return Target("model", spec.id, model)

    def route_kwargs(self, target: Target, ext: Extension, *, user: str | None, request_id: str,
                     principal: Principal) -> dict[str, Any]:
        """The router keyword arguments (not the model parameters) for one request."""
        kw: dict[str, Any] = {"request_id": request_id, "api_key_id": principal.key_id,
                              "user": ext.user or user}
        if target.kind == "model":
            if ext.requirements is not None or ext.task is not None:
                raise invalid_request("modelplex.requirements and modelplex.task need model 'auto' (a named "
                                      "model is used as named)", param="modelplex")
            kw["model"] = target.name
        elif target.kind == "task":
            if ext.requirements is not None:
                raise invalid_request("modelplex.requirements need model 'auto'; a task brings its own",
                                      param="modelplex.requirements")
            kw["task"] = target.name
        elif ext.task is not None:
            if not self.router.planner.is_task(ext.task):
                raise UnknownTaskError(ext.task, self.router.planner.task_names())
            if ext.requirements is not None:
                raise invalid_request("give modelplex.task or modelplex.requirements, not both",
                                      param="modelplex")
            kw["task"] = ext.task
        elif ext.requirements is not None:
            kw["requirements"] = ext.requirements
        else:
            kw["model"] = "auto"
        if ext.strategy is not None:
            kw["strategy"] = ext.strategy
        tags = list(ext.tags or ())
        key = principal.key
        if key is not None and not key.prompt_logging:
            tags.append("no_prompt_logging")
        if tags:
            kw["tags"] = tags
        kw.update(allowed_models_kwarg(principal))
        return kw

    def ext_task_target(self, target: Target, ext: Extension) -> Target:
        """For ``auto`` with ``modelplex.task``, the allow-list applies to that task."""
        if target.kind == "auto" and ext.task is not None:
            return Target("task", ext.task, target.requested)
        return target

    # ------------------------------------------------------------------ limits

    async def admit(self, principal: Principal, estimated_tokens: int) -> Admission:
        """Take one request and the estimated tokens from the key's RPM/TPM buckets (429 when
        refused) and bind its USD budget for the router's reservation."""
        key = principal.key
        if key is None:
            return _NO_ADMISSION
        if key.rpm is not None or key.tpm is not None:
            await self.limiter.acquire(f"key:{key.id}", rpm=key.rpm, tpm=key.tpm,
                                       tokens=estimated_tokens if key.tpm is not None else 0)
        if self._budget_keys.get(key.id) is not key and (key.has_budget or key.id in self._budget_keys):
            self.register_key_budget(key)
        if key.tpm is None:
            return _NO_ADMISSION  # nothing for settle to correct
        return Admission(key.id, key.tpm, estimated_tokens)

    async def settle(self, admission: Admission, usage: Usage | None) -> None:
        """Charge the TPM bucket the difference between the estimate and the actual tokens."""
        if admission.key_id is None or admission.tpm is None:
            return
        actual = usage.total_tokens if usage is not None else admission.estimated_tokens
        try:
            await self.limiter.record_tokens(f"key:{admission.key_id}", tpm=admission.tpm,
                                             estimated=admission.estimated_tokens, actual=actual)
        except Exception:  # bookkeeping must never fail a finished request
            log.warning("could not record tokens for key %s", admission.key_id, exc_info=True)

    def register_key_budget(self, key: ApiKey) -> None:
        """Tell the budget manager about a key's own limits (or their removal, for a revoked key)."""
        from modelplex.accounting.budgets import BudgetManager, KeyBudget

        router = self.router
        if router.budgets is None:
            if not key.has_budget:
                return
            router.budgets = BudgetManager(self.config.budgets, router.state, router.clock)
        setter = getattr(router.budgets, "set_key_budget", None)
        if setter is None:
            log.warning("the budget manager cannot take per-key budgets; key %s's limits are not enforced", key.id)
            return
        if key.has_budget and key.active:
            setter(key.id, KeyBudget(daily_usd=key.daily_usd, monthly_usd=key.monthly_usd))
            self._budget_keys[key.id] = key
        else:
            setter(key.id, None)
            self._budget_keys.pop(key.id, None)

    # ------------------------------------------------------------------ headers

    @staticmethod
    def routing_headers(request_id: str, model: str | None, provider: str | None, *, cost_usd: float | None = None,
                        fallback: bool | None = None, attempts: int | None = None, task: str | None = None,
                        strategy: str | None = None) -> list[tuple[bytes, bytes]]:
        h = [(b"x-modelplex-request-id", request_id.encode())]
        if model:
            h.append((b"x-modelplex-model", model.encode()))
        if provider:
            h.append((b"x-modelplex-provider", provider.encode()))
        if cost_usd is not None:
            h.append((b"x-modelplex-cost-usd", format_usd(cost_usd).encode()))
        if fallback is not None:
            h.append((b"x-modelplex-fallback", b"true" if fallback else b"false"))
        if attempts is not None:
            h.append((b"x-modelplex-attempts", str(attempts).encode()))
        if task:
            h.append((b"x-modelplex-task", task.encode()))
        if strategy:
            h.append((b"x-modelplex-strategy", strategy.encode()))
        return h


def format_usd(value: float) -> str:
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def estimate_tokens(body_bytes: int, max_tokens: Any) -> int:
    """A cheap upper-ish estimate for the TPM bucket: a token per 4 body bytes plus max_tokens."""
    out = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0
    return body_bytes // 4 + max(0, out)


def stream_extension(request_id: str, cost_usd: float | None, usage: Usage) -> dict[str, Any]:
    """The ``modelplex`` object that closes a stream (beside its usage): what it cost at catalog prices."""
    return {"request_id": request_id, "cost_usd": cost_usd, "usage_estimated": usage.estimated}


def fallback_from_attempts(attempts: list[Attempt], model: str | None) -> bool:
    """A stream fell back when an earlier attempt targeted another model."""
    return any(a.target != model for a in attempts if a.outcome != "success")


def allowed_models_kwarg(principal: Principal) -> dict[str, Any]:
    """``{"allowed_models": ...}`` when the key's model allow-list names models, else ``{}``: the router
    then keeps only the targets the list matches, fallbacks included. ``["*"]`` restricts nothing, and
    an empty list (a task-only key: it may not name models) leaves routed requests to the task
    allow-list."""
    key = principal.key
    if key is None or not key.allowed_models or "*" in key.allowed_models:
        return {}
    return {"allowed_models": key.allowed_models}


__all__ = ["Admission", "Extension", "Gateway", "allowed_models_kwarg", "estimate_tokens", "fallback_from_attempts",
           "format_usd", "parse_requirements", "stream_extension"]
