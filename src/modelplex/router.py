"""The router: the public entry point and its attempt loop.

Owns: ``Router`` — ``complete``/``acomplete``, ``stream``/``astream``, ``embed``/``aembed``,
``feedback``, ``warm_up``, ``close``. Its body is one loop over the planned attempts that composes
the pieces, each of which lives elsewhere:

    plan (policy.Planner) -> for each target:
        breaker.allow -> throttle check -> token pre-check -> budget.reserve
        -> adapter call (retry policy decides retry / fall over / raise)
        -> settle, account, callbacks

It does not classify errors (errors + adapters), decide retries (resilience.retry), keep breaker
state (resilience.breaker), store usage (accounting) or pick models (selection, policy).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelplex.accounting.budgets import BudgetDowngradeSignal, BudgetManager
from modelplex.accounting.records import UsageRecord
from modelplex.catalog import Catalog, load_catalog
from modelplex.catalog.params import split_params, unsupported
from modelplex.config import Config, load_config
from modelplex.errors import (
    AllAttemptsFailedError,
    APITimeoutError,
    BudgetExceededError,
    ContentPolicyError,
    ContextWindowExceededError,
    InvalidRequestError,
    ModelNotAllowedError,
    ModelplexError,
    NoCandidatesError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
    UnsupportedParameterError,
    error_kind,
)
from modelplex.ids import new_request_id
from modelplex.messages import check_embedding_input, check_messages
from modelplex.parameters import check_params
from modelplex.policy.adaptive import AdaptiveChooser
from modelplex.policy.planner import HardNeeds, Planner, RoutePlan
from modelplex.policy.references import check_references
from modelplex.providers import adapter_class
from modelplex.providers.base import Adapter, ProviderConfig
from modelplex.providers.credentials import ProviderStatus, missing_credentials_error, resolve_providers
from modelplex.resilience.breaker import BreakerConfig, BreakerRegistry, BreakerState, Permit
from modelplex.resilience.clock import Clock, SystemClock
from modelplex.resilience.retry import RetryPolicy
from modelplex.resilience.throttle import ThrottleRegistry
from modelplex.selection import Selector
from modelplex.state import make_state
from modelplex.state.memory import MemoryState
from modelplex.transport import LoopThread, SessionFactory, SessionPool, after_fork
from modelplex.types import (
    Attempt,
    ChatRequest,
    EmbeddingResponse,
    EmbedRequest,
    Message,
    Requirements,
    Response,
    StreamChunk,
    TokenCount,
    Usage,
)

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec

log = logging.getLogger("modelplex.router")

_BYTES_BOUND_MAX = 2048
"""Prompts up to this many bytes are bounded by their size in the budget estimate instead of counted."""
_REPLY_PRIMING = 3

Callback = Callable[..., Any]


@dataclass(slots=True)
class _Call:
    """Everything one logical request carries through the loop."""

    request_id: str
    messages: list[Message]
    params: dict[str, Any]
    plan: RoutePlan
    user: str | None
    api_key_id: str | None
    tags: list[str]
    deadline: float
    started: float
    wall_start: float
    kind: str = "chat"
    attempts: list[Attempt] = field(default_factory=list)
    prompt_bytes: int = 0
    max_tokens: int = 0
    """The request's output cap (``params["max_tokens"]``), 0 when it sets none."""
    fit_bytes: int = 0
    """What must fit a target's window: the whole prompt; for embeddings, the largest input."""
    input_estimate: int | None = None
    """Tokens of what must fit (counted once, for the first target whose window the bytes do not settle)."""
    plan_args: dict[str, Any] = field(default_factory=dict)
    """The planner arguments, kept so that a budget downgrade can re-plan the same request once."""
    downgraded: bool = False
    allowed_models: tuple[str, ...] | None = None
    """Glob patterns over catalog ids that every target must match (``None``: no restriction)."""
    held: tuple[tuple[Permit, Permit | None], float] | None = None
    """A stream's breaker permits (and its time to the first chunk), resolved when the stream ends."""
    abandoned: tuple[ModelSpec, Usage, float] | None = None
    """A non-streaming attempt the caller cancelled after it was sent: its target, the usage charged for it
    (the prompt and the output's worst case, flagged estimated: the provider still produces and bills the
    answer) and that usage's cost."""


class Router:
    """Route requests by task, requirements or model, with fallbacks, breakers, budgets and accounting.

    Build it with ``Router.from_config(path_or_dict)`` (or ``Router()`` for environment-only
    configuration). Every collaborator can be injected for tests: ``catalog``, ``env``, ``clock``,
    ``session_factory``, ``state``, ``recorder`` (accounting) and ``budgets``.
    """

    def __init__(self, config: Config | Mapping[str, Any] | str | Path | None = None, *,
                 catalog: Catalog | None = None, env: Mapping[str, str] | None = None,
                 clock: Clock | None = None, session_factory: SessionFactory | None = None,
                 state: Any = None, recorder: Any = None, budgets: BudgetManager | None = None,
                 performance: Any = None, adaptive: AdaptiveChooser | None = None) -> None:
        self.config = load_config(config, env)
        self.env = dict(os.environ if env is None else env)
        self.catalog = self.config.build_catalog(catalog if catalog is not None else load_catalog())
        check_references(self.config, self.catalog)  # once, here: a typo fails now, not every request
        self.clock: Clock = clock or SystemClock()
        self.providers: dict[str, ProviderConfig] = {}
        self.provider_status: dict[str, ProviderStatus] = {}
        self._adapters: dict[str, Adapter] = {}
        self.refresh_providers()
        self.selector = Selector(self.catalog)
        self.runtime_strategy: str | None = None
        self.adaptive = adaptive if adaptive is not None else AdaptiveChooser(clock=self.clock)
        self.planner = Planner(self.config, self.catalog, self.selector, self.enabled_providers, self.env,
                               lambda: self.runtime_strategy, adaptive=self.adaptive)
        self.state = state if state is not None else make_state(self.config.state.url, self.clock)
        self._owns_state = state is None
        """Whether ``aclose`` closes ``state`` (one this router made; an injected one is the caller's)."""
        if budgets is None:
            manager = BudgetManager(self.config.budgets, self.state, self.clock,
                                    reservation_ttl=max(600.0, 2 * self.config.routing.deadline))
            budgets = manager if manager.enabled else None
        b = self.config.routing.breaker
        self.breakers = BreakerRegistry(BreakerConfig(
            failure_threshold=b.failure_threshold, recovery_time=b.recovery_time,
            half_open_max_calls=b.half_open_max_calls, probe_timeout=b.probe_timeout, mode=b.mode,
            window_size=b.window_size, min_calls=b.min_calls, failure_rate_threshold=b.failure_rate_threshold,
            slow_call_threshold_s=b.slow_call_threshold_s), self.state, self.clock)
        r = self.config.routing.retry
        self.retry = RetryPolicy(max_retries_per_target=r.max_retries_per_target,
                                 max_total_attempts=r.max_total_attempts, base_delay=r.base_delay,
                                 max_delay=r.max_delay, retry_after_cap=r.retry_after_cap)
        self.throttles = ThrottleRegistry(self.clock)
        self.sessions = SessionPool(session_factory)
        self._loop_thread = LoopThread()
        self._own_recorder = recorder is None
        if recorder is None:
            from modelplex.accounting.recorder import make_recorder

            recorder = make_recorder(self.config.accounting, clock=self.clock, env=self.env)
        if performance is None:
            from modelplex.accounting.performance import PerformanceTracker

            performance = PerformanceTracker(clock=self.clock)
        self.recorder = recorder
        self._recorder_mode: str | None = None  # None: not started; "loop": on a caller's loop; "thread"
        self.budgets = budgets
        self.performance = performance
        self.on_attempt: list[Callback] = []
        self._exit_hook = _close_at_exit(self)
        self.on_success: list[Callback] = []
        self.on_failure: list[Callback] = []
        self.on_record: list[Callback] = []
        """Called with each ``UsageRecord`` (every kind, success or failure), e.g. by the dashboard."""
        self._enabled = frozenset(self.providers)
        self._inherited: list[Any] = []
        """A parent process's started recorder, in a forked child (see ``_after_fork``)."""
        after_fork(self)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, path_or_dict: Config | Mapping[str, Any] | str | Path | None = None, **kwargs: Any
                    ) -> Router:
        return cls(path_or_dict, **kwargs)

    def refresh_providers(self) -> None:
        enabled, statuses = resolve_providers(self.config, self.catalog, self.env)
        self.providers = enabled
        self.provider_status = {s.name: s for s in statuses}
        self._adapters = {}
        self._enabled = frozenset(enabled)
        planner = getattr(self, "planner", None)  # absent while __init__ runs
        if planner is not None:
            planner.invalidate()

    def enabled_providers(self) -> frozenset[str]:
        return self._enabled

    def adapter(self, provider: str) -> Adapter:
        a = self._adapters.get(provider)
        if a is None:
            pc = self.providers.get(provider)
            if pc is None:
                raise missing_credentials_error(self.provider_status.get(provider), provider)
            a = adapter_class(pc.protocol)(pc)
            self._adapters[provider] = a
        return a

    def secrets(self) -> list[str]:
        return [s for pc in self.providers.values() for s in pc.secrets()]

    # ------------------------------------------------------------------ planning helpers

    def _new_call(self, messages: list[Message] | None, params: dict[str, Any], *, model: str | None,
                  task: str | None, requirements: Requirements | Mapping[str, Any] | None,
                  strategy: str | None, user: str | None, request_id: str | None, tags: list[str] | None,
                  api_key_id: str | None, timeout: float | None, context: Mapping[str, Any] | None,
                  needs: HardNeeds, kind: str, downgrade: bool = False,
                  allowed_models: Sequence[str] | None = None) -> _Call:
        if params:
            check_params(params)
        rid = request_id or new_request_id()
        msgs = list(messages or [])
        if isinstance(requirements, Mapping):
            requirements = Requirements.from_dict(dict(requirements))
        prompt_bytes = sum(_message_bytes(m) for m in msgs)
        if params and params.get("tools"):  # tool definitions are prompt tokens too: the estimate holds them
            prompt_bytes += _json_bytes(params["tools"])
        # An embedding request's inputs each meet the model's window on their own; a chat prompt as a whole.
        fit_bytes = max(map(_message_bytes, msgs), default=0) if kind == "embedding" else prompt_bytes
        ctx = context or {}
        artifacts = ctx.get("artifacts", 0)
        artifacts_n = len(artifacts) if isinstance(artifacts, (list, tuple)) else int(artifacts or 0)
        if model is None and task is None and requirements is None:
            model = "auto" if kind != "embedding" else None
            if kind == "embedding":
                task = "embedding"
        plan_args: dict[str, Any] = dict(
            model=model, task=task, requirements=requirements, strategy=strategy, user=user, request_id=rid,
            needs=needs, input_tokens=fit_bytes // 4, message_count=len(msgs), artifacts=artifacts_n,
            requires_creative_writing=bool(ctx.get("requires_creative_writing")))
        allowed = _allow_patterns(allowed_models)
        plan = _restrict(self.planner.plan(**plan_args, downgrade=downgrade), allowed)
        if not plan.targets:
            if plan.explicit and plan.dropped:
                mid, why = next(iter(plan.dropped.items()))
                prov = mid.split("/", 1)[0]
                if prov not in self._enabled:
                    raise missing_credentials_error(self.provider_status.get(prov), prov)
                raise NoCandidatesError(f"{mid}: {why}", plan.dropped)
            raise NoCandidatesError(plan.selection_reason or "no target", plan.dropped)
        merged = {**plan.task_params, **params}
        now = self.clock.now()
        deadline = now + (timeout or self.config.routing.deadline)
        return _Call(rid, msgs, merged, plan, user, api_key_id, list(tags or []), deadline, now, self.clock.wall(),
                     kind, prompt_bytes=prompt_bytes, max_tokens=int(merged.get("max_tokens") or 0),
                     fit_bytes=fit_bytes, plan_args=plan_args, downgraded=downgrade, allowed_models=allowed)

    def _input_tokens(self, call: _Call, spec: ModelSpec) -> int:
        if call.input_estimate is None:
            from modelplex.catalog.tokens import count_messages

            if call.kind == "embedding":
                call.input_estimate = count_messages([max(call.messages, key=_message_bytes)], spec).tokens
            else:
                call.input_estimate = count_messages(call.messages, spec, tools=call.params.get("tools") or None).tokens
        return call.input_estimate

    def _fits(self, call: _Call, spec: ModelSpec) -> bool:
        """Token pre-check. UTF-8 bytes bound the token count from above, so most prompts need no count."""
        out = call.max_tokens
        margin = self.config.routing.token_safety_margin
        if call.fit_bytes + out + margin <= spec.input_limit and call.fit_bytes + out <= spec.context_window:
            return True
        n = self._input_tokens(call, spec)
        return n + margin <= spec.input_limit and n + out <= spec.context_window

    def _prompt_tokens_bound(self, call: _Call, spec: ModelSpec) -> int:
        """An upper bound of the prompt's tokens for the worst-case estimate. A token is at least one
        UTF-8 byte, so a short prompt is bounded by its size (plus the reply priming) without running
        a tokenizer; a long one is counted, so that its hold is not several times too large."""
        if call.prompt_bytes <= _BYTES_BOUND_MAX:
            return call.prompt_bytes + _REPLY_PRIMING
        return self._input_tokens(call, spec)

    def _estimate_cost(self, call: _Call, spec: ModelSpec) -> float:
        out = int(call.max_tokens or spec.default_params.get("max_tokens") or
                  min(spec.max_output_tokens, 4096))
        n = self._prompt_tokens_bound(call, spec) if call.kind != "embedding" else call.prompt_bytes // 3 + 1
        p = spec.pricing
        return (n * p.input_per_mtok + (out if call.kind != "embedding" else 0) * p.output_per_mtok) / 1e6

    def _prepare_params(self, spec: ModelSpec, params: dict[str, Any]) -> dict[str, Any]:
        protocol = self.providers[spec.provider].protocol
        kept, dropped = split_params(protocol, spec, params)
        if dropped and (not self.config.routing.drop_unsupported_params or "dimensions" in dropped):
            # a vector's length is part of the answer's contract, never a hint to drop
            raise UnsupportedParameterError(spec.id, dropped)
        dims = kept.get("dimensions")
        if dims is not None and spec.embedding_dimensions is not None and dims > spec.embedding_dimensions:
            raise InvalidRequestError(f"'dimensions' {dims} exceeds {spec.id}'s {spec.embedding_dimensions}",
                                      param="dimensions")
        return kept

    def _skip_reason(self, call: _Call, spec: ModelSpec, min_context: int) -> tuple[str, str] | None:
        if spec.context_window <= min_context:
            return "skipped_context", f"window {spec.context_window} not larger than the failed one"
        if call.kind != "embedding" and call.max_tokens > spec.max_output_tokens:
            return "skipped_context", f"max_tokens exceeds the output limit of {spec.max_output_tokens:,}"
        if not self._fits(call, spec):
            return "skipped_context", "prompt + max_tokens exceed the window"
        if self.throttles.is_throttled(f"model:{spec.id}"):
            return "skipped_throttled", "throttled after a 429"
        return None

    # ------------------------------------------------------------------ the attempt loop

    async def _permits(self, spec: ModelSpec) -> tuple[Permit, Permit | None] | str:
        """Breaker permits for one attempt (provider, then model), or why the target is refused."""
        permit_p = await self.breakers.allow(f"provider:{spec.provider}")
        if permit_p is None:
            return f"provider {spec.provider} breaker open"
        if not self.config.routing.model_breakers:
            return permit_p, None
        permit_m = await self.breakers.allow(f"model:{spec.id}")
        if permit_m is None:
            permit_p.release()
            return f"model {spec.id} breaker open"
        return permit_p, permit_m

    def _tripped(self, spec: ModelSpec) -> bool:
        """Whether the target's provider or model breaker is open (a retry here would only be refused)."""
        breakers = self.breakers
        return (breakers.state(f"provider:{spec.provider}") is BreakerState.OPEN
                or breakers.state(f"model:{spec.id}") is BreakerState.OPEN)

    async def _reserve(self, call: _Call, spec: ModelSpec) -> tuple[bool, Any]:
        """Check the strategy's cost cap and reserve the worst case in the budgets.
        Returns (admitted, reservation); not admitted means skip this target."""
        plan = call.plan
        if self.budgets is None and plan.max_cost_per_request is None:
            return True, None
        estimate = self._estimate_cost(call, spec)
        if plan.max_cost_per_request is not None and estimate > plan.max_cost_per_request:
            self._attempt(call, spec, "skipped_budget",
                          detail=f"estimate ${estimate:.4f} > strategy cap ${plan.max_cost_per_request}")
            return False, None
        if self.budgets is None:
            return True, None
        try:
            reservation = await self.budgets.reserve(
                request_id=call.request_id, user=call.user, api_key_id=call.api_key_id, amount=estimate,
                started=call.wall_start, downgraded=call.downgraded)
        except BudgetExceededError as exc:
            self._attempt(call, spec, "skipped_budget", exc, detail=str(exc))
            raise
        return True, reservation

    async def _run(self, call: _Call, send: Callable[[Adapter, ModelSpec, dict[str, Any], float], Any]) -> Any:
        """Try each target in the plan; return (result, spec, reservation) of the first success.

        Every attempt asks the breakers first, so each failed try counts; a retry that finds the breaker
        open moves on to the next target.
        """
        plan = call.plan
        last_error: BaseException | None = None
        refused: UnsupportedParameterError | None = None
        min_context = 0
        total = 0
        for spec in plan.targets:
            skip = self._skip_reason(call, spec, min_context)
            if skip is not None:
                self._attempt(call, spec, skip[0], detail=skip[1])
                continue
            try:
                params = self._prepare_params(spec, call.params)
            except UnsupportedParameterError as exc:  # this target cannot honour the request; another may
                self._attempt(call, spec, "skipped_unsupported", exc, detail=str(exc))
                refused = refused or exc
                continue
            got = await self._permits(spec)
            if isinstance(got, str):  # before the budget: a target that is cooling down costs no hold
                self._attempt(call, spec, "skipped_breaker", detail=got)
                continue
            permits: tuple[Permit, Permit | None] | None = got
            try:
                admitted, reservation = await self._reserve(call, spec)
            except BaseException:
                _release(got)
                raise
            if not admitted:
                _release(got)
                continue
            retry_n = 0
            succeeded = False
            try:
                adapter = self.adapter(spec.provider)
                timeout = self.providers[spec.provider].timeout
                while True:
                    if permits is None:  # a retry asks the breakers again
                        got = await self._permits(spec)
                        if isinstance(got, str):
                            self._attempt(call, spec, "skipped_breaker", detail=got, retry=retry_n)
                            break
                        permits = got
                    remaining = call.deadline - self.clock.now()
                    if remaining <= _MIN_ATTEMPT_S:  # nothing is sent: the target is not to blame
                        _release(permits)
                        self._attempt(call, spec, "skipped_deadline", detail="deadline exceeded", retry=retry_n)
                        raise AllAttemptsFailedError(f"deadline exceeded for request {call.request_id}",
                                                     call.attempts, last_error, self._shortest_cooldown(call))
                    total += 1
                    t0 = self.clock.now()
                    try:
                        result = await send(adapter, spec, params, min(remaining, timeout))
                    except ProviderError as exc:
                        latency = self.clock.now() - t0
                        _fail(permits, exc, latency)
                        permits = None
                        last_error = exc
                        self._attempt(call, spec, "error", exc, latency, retry_n)
                        if isinstance(exc, RateLimitError):
                            self.throttles.mark(f"model:{spec.id}", exc.retry_after)
                        decision = self.retry.decide(exc, retry_n,
                                                     deadline_remaining=call.deadline - self.clock.now())
                        if (decision.action == "retry" and total < self.retry.max_total_attempts
                                and not self._tripped(spec)):  # a breaker this failure opened: fall over now
                            retry_n += 1
                            await self.clock.sleep(decision.delay)
                            continue
                        if decision.action == "raise":
                            raise
                        if isinstance(exc, ContentPolicyError) and not self.config.routing.content_policy_fallback:
                            raise
                        if isinstance(exc, ContextWindowExceededError):
                            min_context = max(min_context, spec.context_window)
                        break
                    except BaseException:  # cancellation, a bug: neutral for the breaker
                        _release(permits)
                        permits = None
                        if sys.exc_info()[0] is asyncio.CancelledError:
                            self._attempt(call, spec, "cancelled", latency=self.clock.now() - t0, retry=retry_n)
                            if call.kind != "stream":  # a stream charges what it generated (astream)
                                try:
                                    usage = self._abandoned_usage(call, spec)
                                    call.abandoned = (spec, usage, self.catalog.cost_of_usage(spec, usage))
                                except Exception:  # the cancellation must go on; the hold is then released
                                    log.exception("could not estimate abandoned request %s", call.request_id)
                        raise
                    latency = self.clock.now() - t0
                    if call.kind == "stream":  # judged when the stream ends: a broken one counts as a failure
                        call.held = (permits, latency)
                    else:
                        permits[0].success(latency)
                        if permits[1] is not None:
                            permits[1].success(latency)
                    self._attempt(call, spec, "success", None, latency, retry_n)
                    succeeded = True
                    return result, spec, reservation
            finally:
                if permits is not None and not succeeded:  # e.g. building the adapter failed
                    _release(permits)
                if not succeeded and reservation is not None:
                    if call.abandoned is not None and call.abandoned[0] is spec:
                        await _shielded(self.budgets.settle(reservation, call.abandoned[2]))
                    else:
                        await _shielded(self.budgets.release(reservation))
            if total >= self.retry.max_total_attempts:
                break
        if last_error is None and call.attempts and all(a.outcome == "skipped_context" for a in call.attempts):
            last_error = self._too_large(call)  # nothing was sent: the request itself is too large
        if refused is not None and total == 0:  # nothing was sent, and a parameter is why: say so
            raise refused
        raise AllAttemptsFailedError(
            f"all {len(call.attempts)} attempt(s) failed for request {call.request_id} "
            f"({call.plan.selection_reason})", call.attempts, last_error, self._shortest_cooldown(call))

    async def _run_budgeted(self, call: _Call,
                            send: Callable[[Adapter, ModelSpec, dict[str, Any], float], Any]) -> Any:
        """``_run``, re-planned once with ``downgrade=True`` when the budget says so (``on_exceed:
        downgrade``). The manager never signals a downgraded call, so this loops at most once."""
        try:
            return await self._run(call, send)
        except BudgetDowngradeSignal as signal:
            if call.downgraded:
                raise signal.as_rejection() from None
            plan = _restrict(self.planner.plan(**call.plan_args, downgrade=True), call.allowed_models,
                             refuse=False)
            if not plan.targets:
                raise signal.as_rejection() from None
            log.info("budget_downgrade request_id=%s scope=%s needed_usd=%.6f: re-planned (%s)",
                     call.request_id, signal.scope, signal.needed_usd, plan.selection_reason)
            call.plan = plan
            call.downgraded = True
            return await self._run(call, send)

    async def _settle(self, reservation: Any, cost: float) -> None:
        """Settle a reservation to completion even if the caller is cancelled meanwhile. In-process state
        settles without suspending, so nothing can interrupt it and no shielding task is needed."""
        assert self.budgets is not None
        if type(self.budgets.state) is MemoryState:  # exactly: a subclass might suspend
            await self.budgets.settle(reservation, cost)
        else:
            await _shielded(self.budgets.settle(reservation, cost))

    async def _settle_partial(self, reservation: Any, spec: ModelSpec, exc: StreamInterruptedError) -> None:
        usage = exc.partial_usage if isinstance(exc.partial_usage, Usage) else Usage()
        await self._settle(reservation, self.catalog.cost_of_usage(spec, usage))

    def _too_large(self, call: _Call) -> ContextWindowExceededError:
        """The error for a plan whose every target was skipped because the prompt plus ``max_tokens``
        does not fit its window, named after the largest window among them."""
        out = call.max_tokens
        if call.kind != "embedding" and out > max(t.max_output_tokens for t in call.plan.targets):
            top = max(call.plan.targets, key=lambda t: t.max_output_tokens)
            return ContextWindowExceededError(
                f"max_tokens {out:,} exceeds the output limit of every one of the {len(call.plan.targets)} candidate "
                f"model(s); the largest is {top.max_output_tokens:,} ({top.id}). Nothing was sent.",
                provider=top.provider, model=top.id)
        spec = max(call.plan.targets, key=lambda t: t.context_window)
        prompt = self._input_tokens(call, spec)  # counted already by the window check that skipped it
        asked = (f"an input of {prompt:,} tokens does" if call.kind == "embedding" else
                 f"{prompt:,} prompt tokens" + (f" plus max_tokens {out:,}" if out else "") + " do")
        return ContextWindowExceededError(
            f"{asked} not fit the context window of any of the {len(call.plan.targets)} candidate model(s); "
            f"the largest is {spec.context_window:,} tokens (input limit {spec.input_limit:,}). Nothing was sent.",
            provider=spec.provider, model=spec.id)

    def _shortest_cooldown(self, call: _Call) -> float | None:
        waits = [w for spec in call.plan.targets for w in (self.breakers.retry_in(f"provider:{spec.provider}"),
                                                           self.breakers.retry_in(f"model:{spec.id}"),
                                                           self.throttles.is_throttled(f"model:{spec.id}"))
                 if w]
        return min(waits) if waits else None

    def _attempt(self, call: _Call, spec: ModelSpec, outcome: str, exc: BaseException | None = None,
                 latency: float = 0.0, retry: int = 0, detail: str | None = None) -> None:
        a = Attempt(target=spec.id, provider=spec.provider, outcome=outcome,  # type: ignore[arg-type]
                    error_type=error_kind(exc) if exc is not None else None,
                    status_code=getattr(exc, "status_code", None), latency_ms=round(latency * 1000, 3),
                    retry=retry, detail=detail)
        call.attempts.append(a)
        if log.isEnabledFor(logging.INFO):
            if outcome == "success":
                log.info("attempt ok request_id=%s task_type=%s model=%s retry=%d latency_ms=%.1f",
                         call.request_id, call.plan.task, spec.id, retry, a.latency_ms)
            else:
                log.warning("attempt %s request_id=%s task_type=%s model=%s retry=%d error=%s status=%s%s",
                            outcome, call.request_id, call.plan.task, spec.id, retry, a.error_type,
                            a.status_code, f" detail={detail}" if detail else "")
        for cb in self.on_attempt:
            _safe_callback(cb, a, call.request_id)

    # ------------------------------------------------------------------ accounting

    def _record(self, call: _Call, spec: ModelSpec | None, usage: Usage | None, cost: float, *, success: bool,
                error: BaseException | None, ttft_ms: float | None = None,
                fallback_used: bool | None = None) -> None:
        if self.recorder is None and self.performance is None and self.adaptive is None and not self.on_record:
            return
        u = usage or Usage()
        rec = UsageRecord(
            request_id=call.request_id, ts=call.wall_start, kind=call.kind, task=call.plan.task,
            strategy=call.plan.strategy, experiment_arm=call.plan.experiment_arm, user=call.user,
            api_key_id=call.api_key_id, tags=call.tags, model=spec.id if spec else None,
            provider=spec.provider if spec else None, attempts=[a.to_dict() for a in call.attempts],
            attempt_count=len(call.attempts),
            fallback_used=_fallback_used(call, spec) if fallback_used is None else fallback_used,
            input_tokens=u.input_tokens, output_tokens=u.output_tokens, cached_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens, reasoning_tokens=u.reasoning_tokens, cost_usd=cost,
            provider_cost_usd=u.provider_cost_usd, usage_estimated=u.estimated,
            latency_ms=round((self.clock.now() - call.started) * 1000, 3), ttft_ms=ttft_ms, success=success,
            error_type=error_kind(error) if error is not None else None,
            selection_reason=call.plan.selection_reason)
        if self.recorder is not None:
            if self._recorder_mode is None:
                self._start_recorder_thread()
            self.recorder.record(rec)
        if self.performance is not None:
            self.performance.observe(rec)
        if self.adaptive is not None:
            self.adaptive.observe(rec)
        for cb in self.on_record:
            _safe_callback(cb, rec)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start background services (the usage writer) on the running loop. The gateway calls this in
        its lifespan; library users need not: the writer then starts on its own thread at first use."""
        if self.recorder is not None and self._recorder_mode is None:
            self._recorder_mode = "loop"
            await self.recorder.start()

    def _after_fork(self) -> None:
        """In a forked child: the recorder the parent started has no writer thread here, and its database
        connection, journal lock and queue are the parent's. A recorder this router built is replaced by
        a new one from the same settings (its own connection and journal slot; it starts on first use);
        the parent keeps writing what it queued. An injected recorder is the caller's to manage."""
        if self._recorder_mode is None or not self._own_recorder or self.recorder is None:
            return
        from modelplex.accounting.recorder import make_recorder

        self._inherited.append(self.recorder)
        self.recorder = make_recorder(self.config.accounting, clock=self.clock, env=self.env)
        self._recorder_mode = None

    def _start_recorder_thread(self) -> None:
        assert self.recorder is not None
        self._recorder_mode = "thread"
        try:
            self.recorder.start_background()
        except Exception:  # the recorder journals what it cannot write; a start failure must not fail requests
            log.exception("usage recorder could not start; records stay queued and journaled")

    async def _close_state(self) -> None:
        """Close the state this router made: Redis connections, and a degraded fallback's last attempt to
        merge its outage spend into Redis (``FallbackState.close``)."""
        if not self._owns_state:
            return
        self._owns_state = False
        try:
            await self.state.close()
        except Exception:  # closing must not fail the program's shutdown
            log.warning("closing the state backend failed", exc_info=True)

    async def _close_recorder(self) -> None:
        rec, mode = self.recorder, self._recorder_mode
        self._recorder_mode = None
        if rec is None or mode is None:
            return
        if mode == "loop":
            await rec.aclose(timeout=10.0)
        else:
            await asyncio.get_running_loop().run_in_executor(None, rec.close)

    # ------------------------------------------------------------------ chat

    async def acomplete(self, messages: list[Message] | None = None, *, model: str | None = None,
                        task: str | None = None, requirements: Requirements | Mapping[str, Any] | None = None,
                        strategy: str | None = None, user: str | None = None, tags: list[str] | None = None,
                        request_id: str | None = None, api_key_id: str | None = None,
                        timeout: float | None = None, context: Mapping[str, Any] | None = None,
                        response_model: type | None = None, allowed_models: Sequence[str] | None = None,
                        **params: Any) -> Response:
        """Complete a chat request. Name a ``task``, ``requirements`` or a ``model`` (or none: ``auto``).
        ``allowed_models`` (glob patterns over catalog ids, such as an API key's allow-list) keeps only
        the targets it matches, fallbacks included; ``ModelNotAllowedError`` when it matches none."""
        check_messages(messages)
        if response_model is not None:
            from modelplex.structured import complete_structured

            return await complete_structured(self, messages or [], response_model, model=model, task=task,
                                             requirements=requirements, strategy=strategy, user=user, tags=tags,
                                             request_id=request_id, api_key_id=api_key_id, timeout=timeout,
                                             context=context, allowed_models=allowed_models, **params)
        needs = _needs_of(messages, params)  # type: ignore[arg-type]  # checked above
        try:
            call = self._new_call(messages, params, model=model, task=task, requirements=requirements,
                                  strategy=strategy, user=user, request_id=request_id, tags=tags,
                                  api_key_id=api_key_id, timeout=timeout, context=context, needs=needs,
                                  kind="chat", allowed_models=allowed_models)
        except BudgetExceededError:
            raise
        return await self._complete_call(call)

    async def _complete_call(self, call: _Call) -> Response:
        async def send(adapter: Adapter, spec: ModelSpec, params: dict[str, Any], tmo: float) -> Response:
            req = ChatRequest(messages=call.messages, params=params, stream=False, request_id=call.request_id)
            return await adapter.complete(self.sessions.get(), req, spec, timeout=tmo)

        try:
            resp, spec, reservation = await self._run_budgeted(call, send)
        except BaseException as exc:
            self._record_failure(call, exc)
            for cb in self.on_failure:
                _safe_callback(cb, exc, call.request_id)
            raise
        if resp.usage.input_tokens == 0 and resp.usage.output_tokens == 0:  # no usage sent: never silently zero
            resp.usage = self._estimate_response_usage(call, spec, resp)
        resp.cost_usd = self.catalog.cost_of_usage(spec, resp.usage)
        try:
            if reservation is not None:
                await self._settle(reservation, resp.cost_usd)
        finally:  # the call happened: it is recorded even if the caller is cancelled while settling
            resp.request_id = call.request_id
            resp.latency_ms = round((self.clock.now() - call.started) * 1000, 3)
            resp.task = call.plan.task
            resp.strategy = call.plan.strategy
            resp.experiment_arm = call.plan.experiment_arm
            resp.attempts = call.attempts
            resp.fallback_used = _fallback_used(call, spec)
            resp.selection_reason = call.plan.selection_reason
            resp.model = spec.id
            resp.provider = spec.provider
            self._record(call, spec, resp.usage, resp.cost_usd, success=True, error=None,
                         fallback_used=resp.fallback_used)
        for cb in self.on_success:
            _safe_callback(cb, resp)
        return resp

    def complete(self, messages: list[Message] | None = None, **kwargs: Any) -> Response:
        """Synchronous ``acomplete``: runs on the router's background loop; safe from many threads."""
        return self._loop_thread.run(self.acomplete(messages, **kwargs))

    # ------------------------------------------------------------------ streaming

    async def astream(self, messages: list[Message] | None = None, *, model: str | None = None,
                      task: str | None = None, requirements: Requirements | Mapping[str, Any] | None = None,
                      strategy: str | None = None, user: str | None = None, tags: list[str] | None = None,
                      request_id: str | None = None, api_key_id: str | None = None,
                      timeout: float | None = None, context: Mapping[str, Any] | None = None,
                      allowed_models: Sequence[str] | None = None, **params: Any) -> AsyncIterator[StreamChunk]:
        """Stream a chat request. Retries and fallbacks happen only before the first chunk reaches the
        caller; after it, a broken stream raises ``StreamInterruptedError`` with the partial usage.
        The last chunk carries ``usage`` and ``cost_usd``. ``allowed_models`` as in ``acomplete``."""
        needs = _needs_of(check_messages(messages), params)
        call = self._new_call(messages, params, model=model, task=task, requirements=requirements,
                              strategy=strategy, user=user, request_id=request_id, tags=tags,
                              api_key_id=api_key_id, timeout=timeout, context=context, needs=needs, kind="stream",
                              allowed_models=allowed_models)
        idle = self.config.routing.stream_idle_timeout

        async def send(adapter: Adapter, spec: ModelSpec, params: dict[str, Any], tmo: float
                       ) -> tuple[AsyncIterator[StreamChunk], StreamChunk]:
            req = ChatRequest(messages=call.messages, params=params, stream=True, request_id=call.request_id)
            it = adapter.stream(self.sessions.get(), req, spec, timeout=tmo, idle_timeout=idle).__aiter__()
            try:  # failures before the first chunk are retried / fall over; the deadline bounds the wait for it
                async with asyncio.timeout(tmo):
                    first = await it.__anext__()
            except TimeoutError:
                raise APITimeoutError(f"no first chunk within {tmo:g}s", provider=spec.provider,
                                      model=spec.id) from None
            except StopAsyncIteration:  # a 200 whose stream held nothing (only ``data: [DONE]``): retryable
                from modelplex.errors import InvalidResponseError

                raise InvalidResponseError("the stream ended before its first chunk", provider=spec.provider,
                                           model=spec.id) from None
            return it, first

        try:
            (it, first), spec, reservation = await self._run_budgeted(call, send)
        except BaseException as exc:
            self._record_failure(call, exc)
            for cb in self.on_failure:
                _safe_callback(cb, exc, call.request_id)
            raise
        from modelplex.providers.base import add_generated

        ttft_ms = round((self.clock.now() - call.started) * 1000, 3)
        usage: Usage | None = None
        text: list[str] = []  # all that was generated (text, refusal, reasoning, tool calls), for an estimate
        error: BaseException | None = None
        done = False
        try:
            chunk: StreamChunk | None = first
            while chunk is not None:
                chunk.model = spec.id
                chunk.provider = spec.provider
                if chunk.usage is not None:
                    usage = chunk.usage
                    chunk.cost_usd = self.catalog.cost_of_usage(spec, usage)
                add_generated(chunk, text)
                yield chunk
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    chunk = None
            if usage is None:  # the provider sent none: never silently zero; say it is an estimate
                usage = self._estimate_stream_usage(call, spec, "".join(text))
                yield StreamChunk(usage=usage, model=spec.id, provider=spec.provider,
                                  cost_usd=self.catalog.cost_of_usage(spec, usage))
            done = True
        except StreamInterruptedError as exc:
            error = exc
            if isinstance(exc.partial_usage, Usage):
                usage = exc.partial_usage
            raise
        except BaseException as exc:  # cancellation / client disconnect / GeneratorExit
            error = exc
            raise
        finally:
            self._end_stream_attempt(call, error if not done else None)
            if usage is None:
                usage = self._estimate_stream_usage(call, spec, "".join(text))
            cost = self.catalog.cost_of_usage(spec, usage)
            try:
                if reservation is not None:
                    await self._settle(reservation, cost)
            finally:
                self._record(call, spec, usage, cost, success=done, error=error, ttft_ms=ttft_ms)
            if done:
                for cb in self.on_success:
                    _safe_callback(cb, call.request_id)
            else:
                for cb in self.on_failure:
                    _safe_callback(cb, error, call.request_id)

    def _end_stream_attempt(self, call: _Call, error: BaseException | None) -> None:
        """Resolve a stream's breaker permits now that it ended: a success when it completed, a failure when
        it broke (the attempt, recorded as a success at the first chunk, becomes an error), neutral when the
        caller went away."""
        held, call.held = call.held, None
        if held is None:
            return
        permits, latency = held
        if error is None:
            permits[0].success(latency)
            if permits[1] is not None:
                permits[1].success(latency)
        elif isinstance(error, StreamInterruptedError):
            _fail(permits, error, latency)
            if call.attempts and call.attempts[-1].outcome == "success":
                last = call.attempts[-1]
                last.outcome, last.error_type = "error", error_kind(error)
                last.status_code = getattr(error, "status_code", None)
        else:
            _release(permits)

    def _estimate_response_usage(self, call: _Call, spec: ModelSpec, resp: Response) -> Usage:
        """An answer whose provider sent no usage (some OpenAI-compatible servers and proxies, a Gemini or
        Bedrock body without it): counted locally and flagged ``estimated``, as a stream's would be."""
        from modelplex.catalog.tokens import count_text

        out = "".join([resp.content or "", resp.refusal or "", *(tc.name + tc.arguments for tc in resp.tool_calls)])
        u = resp.usage
        return Usage(input_tokens=self._input_tokens(call, spec), output_tokens=count_text(out, spec).tokens if out
                     else 0, provider_cost_usd=u.provider_cost_usd, estimated=True,
                     provider_details=u.provider_details)

    def _record_failure(self, call: _Call, exc: BaseException) -> None:
        """Record a request that produced no answer: at no cost, unless it was sent and then abandoned
        (``_Call.abandoned``), which is charged as the provider will bill it."""
        if call.abandoned is not None:
            target, usage, cost = call.abandoned
            self._record(call, target, usage, cost, success=False, error=exc)
        else:
            self._record(call, None, None, 0.0, success=False, error=exc)

    def _abandoned_usage(self, call: _Call, spec: ModelSpec) -> Usage:
        """What a non-streaming attempt cancelled after it was sent is charged: the prompt, and the output's
        worst case (the bound its reservation held), flagged ``estimated``."""
        if call.kind == "embedding":  # every input is billed, not only the largest (what _input_tokens counts)
            from modelplex.catalog.tokens import count_messages

            return Usage(input_tokens=count_messages(call.messages, spec).tokens, estimated=True)
        out = int(call.max_tokens or spec.default_params.get("max_tokens") or min(spec.max_output_tokens, 4096))
        return Usage(input_tokens=self._input_tokens(call, spec), output_tokens=out, estimated=True)

    def _estimate_stream_usage(self, call: _Call, spec: ModelSpec, text: str) -> Usage:
        """A stream's usage when the provider sent none: the prompt with its tool definitions (as the adapter
        counts a stream cut upstream, and as a complete answer's estimate does), and ``text``, everything the
        stream generated (``providers.base.add_generated``)."""
        from modelplex.catalog.tokens import count_text

        return Usage(input_tokens=self._input_tokens(call, spec), output_tokens=count_text(text, spec).tokens,
                     estimated=True)

    def stream(self, messages: list[Message] | None = None, **kwargs: Any) -> Iterator[StreamChunk]:
        """Synchronous ``astream``: chunks are produced on the background loop and handed over a queue."""
        agen = self.astream(messages, **kwargs)
        loop_thread = self._loop_thread
        try:
            while True:
                try:
                    chunk = loop_thread.run(agen.__anext__())
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            loop_thread.run(agen.aclose())

    # ------------------------------------------------------------------ embeddings

    async def aembed(self, input: list[str] | str, *, model: str | None = None, task: str | None = None,
                     user: str | None = None, tags: list[str] | None = None, request_id: str | None = None,
                     api_key_id: str | None = None, timeout: float | None = None,
                     allowed_models: Sequence[str] | None = None, **params: Any) -> EmbeddingResponse:
        texts = check_embedding_input(input)
        msgs: list[Message] = [{"role": "user", "content": t} for t in texts]
        call = self._new_call(msgs, params, model=model, task=task if model is None else None, requirements=None,
                              strategy=None, user=user, request_id=request_id, tags=tags, api_key_id=api_key_id,
                              timeout=timeout, context=None, needs=HardNeeds(embedding=True), kind="embedding",
                              allowed_models=allowed_models)

        async def send(adapter: Adapter, spec: ModelSpec, params: dict[str, Any], tmo: float) -> EmbeddingResponse:
            req = EmbedRequest(input=texts, params=params, request_id=call.request_id)
            return await adapter.embed(self.sessions.get(), req, spec, timeout=tmo)

        try:
            resp, spec, reservation = await self._run_budgeted(call, send)
        except BaseException as exc:
            self._record_failure(call, exc)
            raise
        resp.cost_usd = self.catalog.cost_of_usage(spec, resp.usage)
        try:
            if reservation is not None:
                await self._settle(reservation, resp.cost_usd)
        finally:
            resp.attempts = call.attempts
            resp.model = spec.id
            resp.provider = spec.provider
            resp.request_id = call.request_id
            self._record(call, spec, resp.usage, resp.cost_usd, success=True, error=None)
        return resp

    def embed(self, input: list[str] | str, **kwargs: Any) -> EmbeddingResponse:
        return self._loop_thread.run(self.aembed(input, **kwargs))

    # ------------------------------------------------------------------ misc

    def feedback(self, request_id: str, score: float, comment: str | None = None) -> bool:
        """Attach a quality score (0..1) to a finished request; feeds performance stats and ``adaptive``.
        Returns whether the performance statistics knew the request (this process finished it within
        their feedback window); the score is queued for the usage store either way.

        ``InvalidRequestError`` (a ``ValueError``, ``param`` naming the argument) unless ``request_id`` is a
        non-empty string, ``score`` a real number (not a bool or a string) from 0 to 1 (NaN and infinities
        are outside) and ``comment`` ``None`` or a string; nothing is recorded then."""
        import math
        from numbers import Real

        from modelplex.parameters import shown_value

        if not isinstance(request_id, str) or not request_id:
            shown = "an empty string" if request_id == "" else shown_value(request_id)
            raise InvalidRequestError(f"'request_id' must be a non-empty string, got {shown}", "request_id")
        if not isinstance(score, Real) or isinstance(score, bool) or not math.isfinite(float(score)) \
                or not 0.0 <= float(score) <= 1.0:
            raise InvalidRequestError(f"'score' must be a number from 0 to 1, got {shown_value(score)}", "score")
        if comment is not None and not isinstance(comment, str):
            raise InvalidRequestError(f"'comment' must be None or a string, got {shown_value(comment)}", "comment")
        score = float(score)
        if self.recorder is not None and hasattr(self.recorder, "feedback"):
            self.recorder.feedback(request_id, score, comment)
        known = False
        if self.performance is not None and hasattr(self.performance, "feedback"):
            known = bool(self.performance.feedback(request_id, score))
        if self.adaptive is not None:
            self.adaptive.feedback(request_id, score)
        return known

    async def awarm_up(self, models: list[str] | None = None) -> dict[str, bool]:
        """Pre-open connections to each model's provider (health checks); returns provider -> ok."""
        names = {self.catalog.get(m).provider for m in models} if models else set(self.providers)
        out: dict[str, bool] = {}
        for prov in sorted(names & set(self.providers)):
            status = await self.adapter(prov).health_check(self.sessions.get())
            out[prov] = status.ok
        return out

    def warm_up(self, models: list[str] | None = None) -> dict[str, bool]:
        return self._loop_thread.run(self.awarm_up(models))

    def count_tokens(self, messages: list[Message], *, model: str | None = None, task: str | None = None,
                     requirements: Requirements | Mapping[str, Any] | None = None, strategy: str | None = None,
                     user: str | None = None, tools: list[dict[str, Any]] | None = None,
                     allowed_models: Sequence[str] | None = None, **params: Any) -> tuple[ModelSpec, TokenCount]:
        """The prompt tokens of a request, counted for the model that would answer it first: the request
        is planned exactly as ``acomplete`` would plan it (task, requirements or model, the enabled
        providers), and the first target the attempt loop would not skip (the token pre-check, a
        throttle) is the one counted for; the plan's first when every target would be skipped. Nothing
        is sent and no budget is touched. Returns that model and the count (``TokenCount.exact`` says
        whether a real tokenizer counted it)."""
        from modelplex.catalog.tokens import count_messages

        if tools:
            params["tools"] = tools
        call = self._new_call(messages, params, model=model, task=task, requirements=requirements,
                              strategy=strategy, user=user, request_id=None, tags=None, api_key_id=None,
                              timeout=None, context=None, needs=_needs_of(check_messages(messages), params), kind="chat",
                              allowed_models=allowed_models)
        targets = call.plan.targets
        spec = next((t for t in targets if self._skip_reason(call, t, 0) is None), targets[0])
        return spec, count_messages(call.messages, spec, tools=tools or None)

    def validate_request(self, model: str, params: Mapping[str, Any]) -> list[str]:
        spec = self.catalog.get(model)
        protocol = self.catalog.provider(spec.provider).protocol
        return unsupported(protocol, spec, params)

    async def aclose(self) -> None:
        """Flush usage records and close connections."""
        self._exit_hook = None
        await self._close_recorder()
        await self._close_state()
        await self.sessions.aclose_current()
        await self.sessions.aclose_orphans()
        if self._loop_thread.started:
            fut = self._loop_thread.submit(self.sessions.aclose_current())
            await asyncio.wrap_future(fut)
            self._loop_thread.stop()

    def close(self) -> None:
        """Synchronous ``aclose`` for programs that use the sync API. A router not closed by the program is
        closed at interpreter exit, so the usage records still queued are written, not lost."""
        self._exit_hook = None
        if self._recorder_mode == "thread" and self.recorder is not None:
            self._recorder_mode = None
            self.recorder.close()
        if self._loop_thread.started or self.sessions.has_orphans():
            self._loop_thread.run(self._close_recorder())
            self._loop_thread.run(self._close_state())
            self._loop_thread.run(self.sessions.aclose_current())
            self._loop_thread.run(self.sessions.aclose_orphans())  # sessions of loops asyncio.run closed
            self._loop_thread.stop()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------------------------------------


def _json_bytes(value: Any) -> int:
    """The size of ``value`` as JSON (its ``repr`` when it is not JSON), a bound of its tokens."""
    import orjson

    try:
        return len(orjson.dumps(value))
    except TypeError:
        return len(repr(value))


def _message_bytes(m: Message) -> int:
    c = m.get("content")
    n = 8
    if isinstance(c, str):
        n += len(c.encode("utf-8")) if not c.isascii() else len(c)
    elif isinstance(c, list):
        for part in c:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    n += len(t.encode("utf-8"))
                elif part.get("type") == "image_url":
                    n += 1500  # flat estimate per image, as the token counter does
                else:  # audio and files: their payload's size, so that a large one is counted, never left out
                    n += _payload_bytes(part)
    for tc in m.get("tool_calls") or ():
        fn = tc.get("function") or {}
        n += len(str(fn.get("arguments", ""))) + len(str(fn.get("name", ""))) + 8
    return n


def _payload_bytes(part: Mapping[str, Any]) -> int:
    """The size of an audio or file part's inline data (``input_audio.data``, ``file.file_data``). A file
    counts at least ``_BYTES_BOUND_MAX`` more, so that a prompt with a file always goes to the token counter:
    a small PDF's pages can cost far more tokens than its bytes."""
    body = part.get(part.get("type") or "")
    if not isinstance(body, Mapping):
        return 0
    data = body.get("data") if "data" in body else body.get("file_data")
    size = len(data) if isinstance(data, str) else 0
    return size if part.get("type") == "input_audio" else size + _BYTES_BOUND_MAX + 1


def _needs_of(messages: list[Message], params: Mapping[str, Any]) -> HardNeeds:
    rf = params.get("response_format")
    json_needed = isinstance(rf, Mapping) and rf.get("type") in ("json_object", "json_schema")
    vision = False
    for m in messages:
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            vision = True
            break
    tools = bool(params.get("tools"))
    if not (tools or json_needed or vision):
        return _NO_NEEDS
    return HardNeeds(tool_calling=tools, json=json_needed, vision=vision)


_NO_NEEDS = HardNeeds()


def _allow_patterns(allowed_models: Sequence[str] | None) -> tuple[str, ...] | None:
    """``allowed_models`` as a tuple of glob patterns, or ``None`` when it restricts nothing."""
    if allowed_models is None:
        return None
    if isinstance(allowed_models, str):
        raise TypeError("allowed_models must be a list of glob patterns, not a string")
    patterns = tuple(allowed_models)
    return None if "*" in patterns else patterns


def _restrict(plan: RoutePlan, allowed: tuple[str, ...] | None, *, refuse: bool = True) -> RoutePlan:
    """``plan`` (the caller's own copy) without the targets ``allowed`` does not match, fallbacks
    included. With ``refuse``, a plan that had targets and keeps none raises ``ModelNotAllowedError``."""
    if allowed is None or not plan.targets:
        return plan
    kept = [t for t in plan.targets if any(fnmatchcase(t.id, p) for p in allowed)]
    if len(kept) == len(plan.targets):
        return plan
    kept_ids = {t.id for t in kept}
    left_out = {t.id: "not in the allowed models" for t in plan.targets if t.id not in kept_ids}
    if not kept and refuse:
        raise ModelNotAllowedError(
            f"none of the models this request routes to is allowed ({', '.join(left_out)}; allowed: "
            f"{', '.join(allowed) or 'none'})", left_out)
    plan.primary = sum(1 for t in plan.targets[:plan.primary] if t.id in kept_ids)
    plan.targets = kept
    plan.dropped.update(left_out)
    return plan


def _fallback_used(call: _Call, spec: ModelSpec | None) -> bool:
    if spec is None:
        return False
    attempts = call.attempts
    if len(attempts) == 1 and call.plan.targets and call.plan.targets[0] is spec:
        return False  # the common case: the first target answered at once
    primary_ids = {s.id for s in call.plan.targets[: max(1, call.plan.primary)]}
    return spec.id not in primary_ids or any(a.outcome != "success" and a.target != spec.id for a in attempts)


def _close_at_exit(router: Router) -> Callable[[], None]:
    """Register (and return) an exit hook that closes ``router`` if the program has not: it flushes the usage
    records still queued (the writer thread is a daemon, which exit would otherwise stop mid-queue) and
    closes the HTTP sessions. It holds the router weakly, so an unreferenced router is still collected, and
    does nothing once the program closed the router itself.

    The hook runs with ``threading``'s exit callbacks, before ``concurrent.futures`` stops taking work (the
    writer and the SQLite sink need their executors); ``atexit`` would run after that."""
    ref = weakref.ref(router)

    def hook() -> None:
        r = ref()
        if r is None or r._exit_hook is not hook:
            return
        try:
            r.close()
        except Exception:  # exit must go on; say what was not flushed
            log.warning("closing the router at exit failed; queued usage records may be lost", exc_info=True)

    register = getattr(threading, "_register_atexit", atexit.register)
    try:
        register(hook)
    except RuntimeError:  # the interpreter is already shutting down
        pass
    return hook


_MIN_ATTEMPT_S = 0.01
"""Time left before the deadline below which no attempt is started (it could not get an answer)."""


def _release(permits: tuple[Permit, Permit | None]) -> None:
    permits[0].release()
    if permits[1] is not None:
        permits[1].release()


def _fail(permits: tuple[Permit, Permit | None], exc: BaseException, latency: float) -> None:
    permits[0].failure(exc, latency)
    if permits[1] is not None:
        permits[1].failure(exc, latency)


def _safe_callback(cb: Callback, *args: Any) -> None:
    try:
        cb(*args)
    except Exception:  # a user's callback must never break a request
        log.exception("callback %r failed", cb)


async def _shielded(coro: Any) -> Any:
    """Run accounting/budget bookkeeping to completion even if the caller is cancelled."""
    task = asyncio.ensure_future(coro)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:  # keep waiting: the bookkeeping must finish; re-raise after
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    return task.result()


__all__ = ["ModelplexError", "Router"]
