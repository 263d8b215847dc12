"""Circuit breakers: one per key ("provider:<name>", "model:<provider/model>"), kept in a registry.

Owns: ``BreakerConfig``, ``BreakerState``, ``BreakerTransition``, ``Permit`` and ``BreakerRegistry``
(``allow``/``allow_sync`` -> ``Permit | None``; the permit reports ``success``/``failure``/``release``).

What counts: a failure counts only when ``isinstance(exc, ProviderError) and exc.counts_for_breaker``
(5xx, 529, timeouts, connection errors, malformed 2xx, broken streams). 4xx, 429, quota errors,
cancellation and anything that is not a ``ProviderError`` are neutral: they free a half-open slot
and count for nothing. In ``rate`` mode a call slower than ``slow_call_threshold_s`` also counts
toward the slow-call rate (Resilience4j semantics).

States: CLOSED -> OPEN after ``failure_threshold`` consecutive counted failures (``count`` mode) or
when the failure rate (or slow-call rate) over the last ``window_size`` calls reaches its threshold
after at least ``min_calls`` (``rate`` mode). OPEN refuses everything for ``recovery_time``; the
next ``allow()`` after that moves to HALF_OPEN and admits up to ``half_open_max_calls`` probes.
When that many probes have succeeded the breaker closes; any probe failure re-opens it with a fresh
recovery timer, and so does a probe that has not reported within ``probe_timeout`` (checked on
the next ``allow()``), so a hung probe cannot hold the breaker half-open.

State: with a process-local backend (memory) the registry's own cells are the state and the fast
path is a dict lookup and a float compare, with no ``await``. With a shared backend (Redis) the
cells are a read-through cache: CLOSED/HALF_OPEN views are trusted for ``sync_interval`` seconds,
an OPEN view until its retry time, so a healthy target costs one read per key per replica per
``sync_interval``. Transitions, shared failure counts and probe claims are written through the
backend (atomic ``incr`` for counts and claims), in the background, in order, per key.

A registry belongs to one event loop (the sync facade runs its loop in one thread); it takes no
locks on the fast path.

Must not touch: retries, fallback order, throttling (a 429 is not a breaker trip), metrics
libraries (``on_transition`` callbacks are the hook), the network beyond the state backend.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Literal

from modelplex.errors import ConfigError, ProviderError, error_kind
from modelplex.resilience.clock import Clock, SystemClock
from modelplex.state.base import StateBackend, StateUnavailableError

_log = logging.getLogger("modelplex.breaker")

_FAILED = 1
_SLOW = 2


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker trips and recovers. Defaults follow seed 002: 3 failures, 300 s, 1 probe."""

    failure_threshold: int = 3
    """``count`` mode: consecutive counted failures that open the breaker."""
    recovery_time: float = 300.0
    """Seconds OPEN before the next ``allow()`` moves to HALF_OPEN."""
    half_open_max_calls: int = 1
    """Probes admitted while HALF_OPEN; the breaker closes when this many have succeeded."""
    probe_timeout: float = 30.0
    """A probe that has not reported after this long counts as failed."""
    mode: Literal["count", "rate"] = "count"
    window_size: int = 20
    """``rate`` mode: the sliding window, in calls."""
    min_calls: int = 10
    """``rate`` mode: calls in the window before rates are judged."""
    failure_rate_threshold: float = 0.5
    """``rate`` mode: open when failed/calls >= this."""
    slow_call_threshold_s: float | None = None
    """``rate`` mode: a call slower than this is slow (``None``: no slow-call tracking)."""
    slow_call_rate_threshold: float = 1.0
    """``rate`` mode: open when slow/calls >= this."""

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"expected {expected}, got {getattr(self, name)!r}", key=f"breaker.{name}")

        if not isinstance(self.failure_threshold, int) or self.failure_threshold < 1:
            raise bad("failure_threshold", "an integer >= 1")
        if not (self.recovery_time >= 0 and math.isfinite(self.recovery_time)):
            raise bad("recovery_time", "a finite number of seconds >= 0")
        if not isinstance(self.half_open_max_calls, int) or self.half_open_max_calls < 1:
            raise bad("half_open_max_calls", "an integer >= 1")
        if not (self.probe_timeout > 0 and math.isfinite(self.probe_timeout)):
            raise bad("probe_timeout", "a finite number of seconds > 0")
        if self.mode not in ("count", "rate"):
            raise bad("mode", "'count' or 'rate'")
        if not isinstance(self.window_size, int) or self.window_size < 1:
            raise bad("window_size", "an integer >= 1")
        if not isinstance(self.min_calls, int) or not 1 <= self.min_calls <= self.window_size:
            raise bad("min_calls", f"an integer between 1 and window_size ({self.window_size})")
        if not 0 < self.failure_rate_threshold <= 1:
            raise bad("failure_rate_threshold", "a fraction in (0, 1]")
        if self.slow_call_threshold_s is not None and not self.slow_call_threshold_s > 0:
            raise bad("slow_call_threshold_s", "a number of seconds > 0 or null")
        if not 0 < self.slow_call_rate_threshold <= 1:
            raise bad("slow_call_rate_threshold", "a fraction in (0, 1]")

    _ALIASES = {
        "recovery_timeout": "recovery_time",
        "recovery_timeout_seconds": "recovery_time",
        "recovery_time_s": "recovery_time",
        "half_open_requests": "half_open_max_calls",
        "probe_timeout_s": "probe_timeout",
    }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, file: str | None = None) -> BreakerConfig:
        """Build from a config mapping; accepts seed 002's names (``recovery_timeout_seconds``...)."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = cls._ALIASES.get(raw_key, raw_key)
            if key not in known:
                raise ConfigError(f"unknown breaker setting; expected one of {', '.join(sorted(known))}",
                                  file=file, key=f"circuit_breaker.{raw_key}")
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(str(e), file=file) from None


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """One state change, as given to ``on_transition`` callbacks. ``at`` is epoch seconds."""

    key: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    at: float


class _Cell:
    """One breaker's state. Owned by the registry; never shared between registries."""

    __slots__ = (
        "claim_blocked_until",
        "config",
        "episode",
        "epoch",
        "failures",
        "gen",
        "key",
        "last_task",
        "lock",
        "next_probe",
        "open_until",
        "opened_wall",
        "pending",
        "probe_ok",
        "probes",
        "shared_failures",
        "state",
        "valid_until",
        "win_fail",
        "win_slow",
        "window",
    )

    def __init__(self, key: str, config: BreakerConfig) -> None:
        self.key = key
        self.config = config
        self.state = BreakerState.CLOSED
        self.epoch = 0
        self.failures = 0
        self.window: deque[int] = deque(maxlen=config.window_size)
        self.win_fail = 0
        self.win_slow = 0
        self.open_until = 0.0
        self.opened_wall: float | None = None
        self.probes: dict[int, float] = {}
        self.probe_ok = 0
        self.next_probe = 0
        # shared mode only
        self.gen = 0
        self.episode = 0
        self.valid_until = -math.inf
        self.pending = 0
        self.shared_failures = 0.0
        self.claim_blocked_until = -math.inf
        self.lock: asyncio.Lock | None = None
        self.last_task: asyncio.Task[None] | None = None


class Permit:
    """Leave to make one call. Report exactly one outcome; later reports are ignored.

    ``success(latency_s)``: the call worked. ``failure(exc)``: it failed; counted only when
    ``exc`` is a ``ProviderError`` with ``counts_for_breaker``, neutral otherwise. ``release()``:
    neutral outcome (cancelled, 4xx, never sent); frees a half-open slot. ``latency_s`` defaults
    to the time since the permit was issued.
    """

    __slots__ = ("_cell", "_done", "_epoch", "_probe", "_registry", "started")

    def __init__(self, registry: BreakerRegistry, cell: _Cell, probe: int | None, started: float) -> None:
        self._registry = registry
        self._cell = cell
        self._epoch = cell.epoch
        self._probe = probe
        self._done = False
        self.started = started

    @property
    def key(self) -> str:
        return self._cell.key

    @property
    def is_probe(self) -> bool:
        return self._probe is not None

    def success(self, latency_s: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._registry._record(self, False, latency_s, None)

    def failure(self, exc: BaseException, latency_s: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        if isinstance(exc, ProviderError) and exc.counts_for_breaker:
            self._registry._record(self, True, latency_s, exc)
        else:
            self._registry._release(self)

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        self._registry._release(self)

    def __repr__(self) -> str:
        return f"Permit(key={self.key!r}, probe={self.is_probe})"


TransitionCallback = Callable[[BreakerTransition], None]


class BreakerRegistry:
    """All breakers of one process, by key. See the module docstring for the semantics."""

    def __init__(self, config: BreakerConfig | None = None, state: StateBackend | None = None,
                 clock: Clock | None = None, *, overrides: Mapping[str, BreakerConfig] | None = None,
                 shared: bool | None = None, sync_interval: float = 1.0,
                 on_transition: list[TransitionCallback] | None = None) -> None:
        self.config = config or BreakerConfig()
        self._state = state
        self._clock: Clock = clock or SystemClock()
        self._overrides = dict(overrides or {})
        self.shared = bool(state is not None and (state.shared if shared is None else shared))
        self._sync_interval = sync_interval
        self.on_transition: list[TransitionCallback] = list(on_transition or [])
        self._cells: dict[str, _Cell] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ queries

    def config_for(self, key: str) -> BreakerConfig:
        return self._overrides.get(key, self.config)

    def _cell(self, key: str) -> _Cell:
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell(key, self.config_for(key))
        return cell

    def state(self, key: str) -> BreakerState:
        """The current state as last decided (an OPEN breaker past its recovery time stays OPEN
        until the next ``allow()``)."""
        cell = self._cells.get(key)
        return BreakerState.CLOSED if cell is None else cell.state

    def retry_in(self, key: str) -> float | None:
        """Seconds until ``key`` may admit a call again: ``None`` when CLOSED, 0 when a probe is
        admissible now. The gateway uses the minimum across targets for ``Retry-After``."""
        cell = self._cells.get(key)
        if cell is None or cell.state is BreakerState.CLOSED:
            return None
        now = self._clock.now()
        if cell.state is BreakerState.OPEN:
            return max(0.0, cell.open_until - now)
        cfg = cell.config
        if len(cell.probes) + cell.probe_ok < cfg.half_open_max_calls and now >= cell.claim_blocked_until:
            return 0.0
        if cell.probes:
            return max(0.0, min(cell.probes.values()) + cfg.probe_timeout - now)
        return max(0.0, cell.claim_blocked_until - now)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{key: {state, failures, opened_at (epoch s | None), retry_in_s, probe_due}}`` for every known
        key, for reports (health, dashboard, metrics) — not for decisions.

        ``state`` is the state as a caller would find it now: an OPEN breaker whose recovery time has
        passed is reported ``half_open`` (the next ``allow()`` admits a probe), although it moves there
        only on that call (``state()`` keeps the decided state). ``probe_due`` is true when the next call
        would be admitted as a probe (``retry_in_s`` is 0)."""
        out: dict[str, dict[str, Any]] = {}
        now = self._clock.now()
        for key, cell in self._cells.items():
            state = cell.state
            failures = cell.win_fail if cell.config.mode == "rate" and state is BreakerState.CLOSED \
                else cell.failures
            if state is BreakerState.OPEN and now >= cell.open_until:
                state = BreakerState.HALF_OPEN  # recovery time elapsed; no call has come to move it yet
            retry = self.retry_in(key)
            out[key] = {
                "state": state.value,
                "failures": failures,
                "opened_at": cell.opened_wall,
                "retry_in_s": retry,
                "probe_due": retry == 0.0,
            }
        return out

    # ------------------------------------------------------------------ admission

    def allow_sync(self, key: str) -> Permit | None:
        """Admit or refuse without awaiting. With a shared backend this uses the cached view only,
        and refuses where a half-open probe would need a shared claim (use ``allow`` there)."""
        cell = self._cells.get(key) or self._cell(key)
        now = self._clock.now()
        if cell.state is BreakerState.CLOSED:
            return Permit(self, cell, None, now)
        if self.shared:
            if cell.state is BreakerState.HALF_OPEN:
                self._expire_probes(cell, now)
            return None
        if cell.state is BreakerState.OPEN:
            if now < cell.open_until:
                return None
            self._transition(cell, BreakerState.HALF_OPEN, "recovery time elapsed")
        elif self._expire_probes(cell, now):
            return None
        return self._admit_probe(cell, now)

    async def allow(self, key: str) -> Permit | None:
        """Admit or refuse. Works for every backend; with a local one it never suspends."""
        if not self.shared:
            return self.allow_sync(key)
        cell = self._cells.get(key) or self._cell(key)
        now = self._clock.now()
        if now >= cell.valid_until:
            if cell.pending and cell.last_task is not None:
                await asyncio.wait({cell.last_task})  # our own writes land first (never cancels them)
            await self._pull(cell)
            now = self._clock.now()
        if cell.state is BreakerState.CLOSED:
            return Permit(self, cell, None, now)
        if cell.state is BreakerState.OPEN:
            if now < cell.open_until:
                return None
        else:
            if self._expire_probes(cell, now):
                return None
            if len(cell.probes) + cell.probe_ok >= cell.config.half_open_max_calls:
                return None
            if now < cell.claim_blocked_until:
                return None  # another replica holds the probe slots; ask again after sync_interval
        return await self._claim(cell)

    def _admit_probe(self, cell: _Cell, now: float) -> Permit | None:
        if len(cell.probes) + cell.probe_ok >= cell.config.half_open_max_calls:
            return None
        probe_id = cell.next_probe
        cell.next_probe += 1
        cell.probes[probe_id] = now
        return Permit(self, cell, probe_id, now)

    def _expire_probes(self, cell: _Cell, now: float) -> bool:
        """Treat a probe that outlived ``probe_timeout`` as failed. True if the breaker re-opened."""
        if cell.probes and now - min(cell.probes.values()) >= cell.config.probe_timeout:
            self._transition(cell, BreakerState.OPEN,
                             f"probe did not report within {cell.config.probe_timeout:g}s")
            return True
        return False

    # ------------------------------------------------------------------ outcomes

    def _record(self, permit: Permit, failed: bool, latency_s: float | None, exc: BaseException | None) -> None:
        cell = permit._cell
        if permit._epoch != cell.epoch:
            return  # issued before a transition: its outcome says nothing about the current state
        cfg = cell.config
        if latency_s is None:
            latency_s = self._clock.now() - permit.started
        slow = cfg.mode == "rate" and cfg.slow_call_threshold_s is not None and latency_s > cfg.slow_call_threshold_s
        if permit._probe is not None:
            cell.probes.pop(permit._probe, None)
            if failed or slow:
                why = f"probe failed ({error_kind(exc)})" if failed and exc is not None \
                    else f"probe slower than {cfg.slow_call_threshold_s:g}s"
                self._transition(cell, BreakerState.OPEN, why)
                return
            cell.probe_ok += 1
            if cell.probe_ok >= cfg.half_open_max_calls:
                self._transition(cell, BreakerState.CLOSED, f"{cell.probe_ok} probe(s) succeeded")
            elif self.shared:
                self._push_probe_success(cell)
            return
        if cell.state is not BreakerState.CLOSED:
            return
        if cfg.mode == "count":
            if failed:
                cell.failures += 1
                if self.shared:
                    self._push_failure(cell)
                if cell.failures >= cfg.failure_threshold:
                    self._transition(cell, BreakerState.OPEN,
                                     f"{cell.failures} consecutive failures, last {error_kind(exc) if exc else '?'}")
            elif cell.failures or cell.shared_failures:
                cell.failures = 0
                if self.shared:
                    self._push_reset(cell)
            return
        window = cell.window
        if len(window) == window.maxlen:
            old = window[0]
            cell.win_fail -= old & _FAILED
            cell.win_slow -= (old & _SLOW) >> 1
        flags = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        window.append(flags)
        cell.win_fail += flags & _FAILED
        cell.win_slow += (flags & _SLOW) >> 1
        n = len(window)
        if n < cfg.min_calls:
            return
        if cell.win_fail / n >= cfg.failure_rate_threshold:
            cell.failures = cell.win_fail
            self._transition(cell, BreakerState.OPEN,
                             f"failure rate {cell.win_fail}/{n} >= {cfg.failure_rate_threshold:g}")
        elif cfg.slow_call_threshold_s is not None and cell.win_slow / n >= cfg.slow_call_rate_threshold:
            cell.failures = cell.win_fail
            self._transition(cell, BreakerState.OPEN,
                             f"slow-call rate {cell.win_slow}/{n} >= {cfg.slow_call_rate_threshold:g} "
                             f"(> {cfg.slow_call_threshold_s:g}s)")

    def _release(self, permit: Permit) -> None:
        cell = permit._cell
        if permit._probe is None or permit._epoch != cell.epoch:
            return
        if cell.probes.pop(permit._probe, None) is not None and self.shared:
            self._push_probe_release(cell)

    # ------------------------------------------------------------------ transitions

    def _transition(self, cell: _Cell, to: BreakerState, reason: str, *, push: bool = True,
                    remaining: float | None = None, opened_wall: float | None = None) -> None:
        frm = cell.state
        now = self._clock.now()
        wall = self._clock.wall()
        cell.state = to
        cell.epoch += 1
        cell.probes.clear()
        cell.probe_ok = 0
        cell.claim_blocked_until = -math.inf
        if to is BreakerState.OPEN:
            cell.open_until = now + (cell.config.recovery_time if remaining is None else remaining)
            cell.opened_wall = wall if opened_wall is None else opened_wall
            cell.valid_until = cell.open_until
        elif to is BreakerState.CLOSED:
            cell.failures = 0
            cell.window.clear()
            cell.win_fail = cell.win_slow = 0
            cell.opened_wall = None
            cell.valid_until = now + self._sync_interval
        else:
            cell.valid_until = now + self._sync_interval
        if self.shared and push:
            self._push_transition(cell, to, wall)
        level = logging.WARNING if to is BreakerState.OPEN else logging.INFO
        _log.log(level, "breaker_transition key=%s from=%s to=%s reason=%r", cell.key, frm.value, to.value,
                 reason, extra={"breaker_key": cell.key, "breaker_from": frm.value, "breaker_to": to.value,
                                "breaker_reason": reason})
        if self.on_transition:
            event = BreakerTransition(cell.key, frm, to, reason, wall)
            for callback in list(self.on_transition):
                try:
                    callback(event)
                except Exception:
                    _log.exception("breaker on_transition callback failed for %s", cell.key)

    def reset(self, key: str | None = None) -> None:
        """Force one breaker (or all) CLOSED, e.g. from the admin API."""
        for k in ([key] if key is not None else list(self._cells)):
            cell = self._cells.get(k)
            if cell is not None and cell.state is not BreakerState.CLOSED:
                self._transition(cell, BreakerState.CLOSED, "reset")
            elif cell is not None:
                cell.failures = 0
                cell.window.clear()
                cell.win_fail = cell.win_slow = 0
                if self.shared:
                    self._push_reset(cell)

    # ------------------------------------------------------------------ shared state (Redis)

    def _k(self, key: str, part: str = "") -> str:
        return f"breaker:{key}{':' + part if part else ''}"

    def _spawn(self, cell: _Cell, op: Callable[[StateBackend], Awaitable[None]]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _log.debug("breaker %s: no running loop, shared state not updated", cell.key)
            return
        if cell.lock is None:
            cell.lock = asyncio.Lock()
        cell.pending += 1
        task = loop.create_task(self._run_push(cell, op))
        cell.last_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_push(self, cell: _Cell, op: Callable[[StateBackend], Awaitable[None]]) -> None:
        assert cell.lock is not None and self._state is not None
        try:
            async with cell.lock:  # FIFO: writes for one key land in the order they were decided
                await op(self._state)
        except StateUnavailableError as e:
            _log.warning("breaker %s: shared state not updated: %s", cell.key, e)
        except Exception:
            _log.exception("breaker %s: shared state update failed", cell.key)
        finally:
            cell.pending -= 1

    def _record_ttl(self, cfg: BreakerConfig) -> float:
        return cfg.recovery_time + cfg.probe_timeout + 3600.0

    def _push_transition(self, cell: _Cell, to: BreakerState, wall: float) -> None:
        cfg = cell.config
        epoch = cell.epoch
        record: dict[str, Any] = {"state": to.value, "at": wall}
        if to is BreakerState.OPEN:
            record.update(opened_at=cell.opened_wall, until=wall + (cell.open_until - self._clock.now()))
        elif to is BreakerState.HALF_OPEN:
            record.update(episode=cell.episode, probe_until=wall + cfg.probe_timeout)
        key = cell.key

        async def op(state: StateBackend) -> None:
            gen = int(await state.incr(self._k(key, "gen"), 1))
            record["gen"] = gen
            if to is BreakerState.OPEN:
                record["episode"] = gen
            await state.set(self._k(key), record, ttl=self._record_ttl(cfg))
            if to is BreakerState.CLOSED:
                await state.delete(self._k(key, "fails"))
                cell.shared_failures = 0.0
            cell.gen = max(cell.gen, gen)
            if to is BreakerState.OPEN and cell.epoch == epoch:
                cell.episode = gen

        self._spawn(cell, op)

    def _push_failure(self, cell: _Cell) -> None:
        cfg = cell.config
        epoch = cell.epoch

        async def op(state: StateBackend) -> None:
            n = await state.incr(self._k(cell.key, "fails"), 1, ttl=max(cfg.recovery_time, 60.0))
            cell.shared_failures = n
            if n >= cfg.failure_threshold and cell.epoch == epoch and cell.state is BreakerState.CLOSED:
                cell.failures = max(cell.failures, int(n))
                self._transition(cell, BreakerState.OPEN, f"{int(n)} consecutive failures across replicas")

        self._spawn(cell, op)

    def _push_reset(self, cell: _Cell) -> None:
        async def op(state: StateBackend) -> None:
            await state.delete(self._k(cell.key, "fails"))
            cell.shared_failures = 0.0

        self._spawn(cell, op)

    def _push_probe_success(self, cell: _Cell) -> None:
        cfg = cell.config
        epoch, episode = cell.epoch, cell.episode

        async def op(state: StateBackend) -> None:
            n = await state.incr(self._k(cell.key, f"ok:{episode}"), 1, ttl=self._record_ttl(cfg))
            if n >= cfg.half_open_max_calls and cell.epoch == epoch:
                self._transition(cell, BreakerState.CLOSED, f"{int(n)} probes succeeded across replicas")

        self._spawn(cell, op)

    def _push_probe_release(self, cell: _Cell) -> None:
        episode = cell.episode

        async def op(state: StateBackend) -> None:
            await state.incr(self._k(cell.key, f"probe:{episode}"), -1)

        self._spawn(cell, op)

    async def _pull(self, cell: _Cell) -> None:
        """Refresh the cached view of one breaker from the shared record."""
        assert self._state is not None
        try:
            record = await self._state.get(self._k(cell.key))
        except StateUnavailableError as e:
            _log.debug("breaker %s: shared state unreadable: %s", cell.key, e)
            cell.valid_until = self._clock.now() + self._sync_interval
            return
        if cell.pending:
            return  # a local decision is being written; it is newer than what we read
        self._apply(cell, record if isinstance(record, dict) else None)

    def _apply(self, cell: _Cell, record: dict[str, Any] | None) -> None:
        now, wall = self._clock.now(), self._clock.wall()
        gen = int(record.get("gen", 0)) if record else 0
        if record is None:
            if cell.gen and cell.state is not BreakerState.CLOSED and not cell.probes:
                cell.gen = 0
                self._transition(cell, BreakerState.CLOSED, "shared record expired or cleared", push=False)
        elif gen > cell.gen:
            cell.gen = gen
            cell.episode = int(record.get("episode", gen))
            remote = record.get("state")
            if remote == BreakerState.OPEN.value:
                remaining = max(0.0, float(record.get("until", wall)) - wall)
                opened = record.get("opened_at")
                if cell.state is BreakerState.OPEN:
                    cell.open_until = now + remaining
                    cell.opened_wall = opened
                else:
                    self._transition(cell, BreakerState.OPEN, "opened by another replica", push=False,
                                     remaining=remaining, opened_wall=opened)
            elif remote == BreakerState.HALF_OPEN.value:
                if wall >= float(record.get("probe_until", math.inf)):
                    self._transition(cell, BreakerState.OPEN, "another replica's probe did not report")
                elif cell.state is not BreakerState.HALF_OPEN:
                    self._transition(cell, BreakerState.HALF_OPEN, "probing on another replica", push=False)
            elif cell.state is not BreakerState.CLOSED:
                self._transition(cell, BreakerState.CLOSED, "closed by another replica", push=False)
        elif (record.get("state") == BreakerState.HALF_OPEN.value and not cell.probes
              and wall >= float(record.get("probe_until", math.inf))):
            self._transition(cell, BreakerState.OPEN, "another replica's probe did not report")
        if cell.state is BreakerState.OPEN:
            cell.valid_until = cell.open_until
        else:
            cell.valid_until = now + self._sync_interval

    async def _claim(self, cell: _Cell) -> Permit | None:
        """Claim a half-open probe slot across replicas (atomic incr on the episode's counter)."""
        assert self._state is not None
        cfg = cell.config
        epoch = cell.epoch
        claimed: float | None
        try:
            claimed = await self._state.incr(self._k(cell.key, f"probe:{cell.episode}"), 1,
                                             ttl=self._record_ttl(cfg))
        except StateUnavailableError as e:
            _log.debug("breaker %s: probe claim not shared: %s", cell.key, e)
            claimed = None
        now = self._clock.now()
        if cell.epoch != epoch:  # the world moved while we waited; decide again from the cache
            if cell.state is BreakerState.CLOSED:
                return Permit(self, cell, None, now)
            return None
        if claimed is not None and claimed > cfg.half_open_max_calls:
            self._push_probe_release(cell)  # undo the refused claim so released slots stay usable
            if cell.state is BreakerState.OPEN:
                self._transition(cell, BreakerState.HALF_OPEN, "probing on another replica", push=False)
            cell.claim_blocked_until = now + self._sync_interval
            return None
        if cell.state is BreakerState.OPEN:
            self._transition(cell, BreakerState.HALF_OPEN, "recovery time elapsed")
        return self._admit_probe(cell, now)

    # ------------------------------------------------------------------ lifecycle

    async def flush(self) -> None:
        """Wait until every pending shared-state write has landed (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
