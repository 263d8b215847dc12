"""Fault injection and behaviour for the fake providers.

Owns: ``Fault`` (what goes wrong with one request), ``Behavior`` (latency shape and reply),
``Outage`` (a scheduled window), and ``FaultPlan`` (which fault the next request gets: queued
one-shot faults, seeded random faults, and outages, each optionally scoped to a protocol or model).

Must not touch: HTTP. The server asks the plan and renders the answer in its protocol's format.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "rate_limit",  # 429 with optional Retry-After / retry-after-ms
    "quota",  # quota/credits exhausted (protocol's own shape: 429 insufficient_quota, 402 ...)
    "context_window",  # 400 with the protocol's context-length error type/code
    "content_policy",  # 400 with the protocol's content-filter error
    "auth",  # 401
    "permission",  # 403
    "not_found",  # 404 model not found / retired
    "bad_request",  # 400 invalid_request
    "server_error",  # 500 (or `status`)
    "overloaded",  # 529 for anthropic, 503 elsewhere
    "status",  # any status in `status`, with a generic body
    "timeout",  # hang for `delay` seconds before answering (client should time out)
    "reset",  # close the connection without an answer
    "stream_cut",  # streaming: drop the connection after `after_chunks` chunks
    "malformed",  # 200 with a body that is not JSON
    "truncated",  # 200 with JSON cut in half (stream: events stop without the terminal event)
    "slow",  # slow drip: `delay` seconds between stream chunks
    "empty_stream",  # streaming (OpenAI-compatible): a 200 whose stream is only `data: [DONE]`
    "failed_generation",  # 200 whose answer ends with the protocol's failed-generation reason (Gemini
    # MALFORMED_FUNCTION_CALL, Bedrock malformed_model_output); a stream sends `after_chunks` text chunks first
]


@dataclass(slots=True)
class Fault:
    kind: FaultKind
    status: int | None = None
    retry_after: float | str | None = None
    """Sent as ``Retry-After``; a string is sent verbatim (e.g. an HTTP date or garbage)."""
    retry_after_ms: float | None = None
    after_chunks: int = 1
    delay: float = 30.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)


@dataclass(slots=True)
class Behavior:
    """How a healthy answer looks: latency and content."""

    ttft_s: float = 0.0
    """Delay before the first byte (non-streaming: before the whole answer)."""
    tokens_per_s: float = 0.0
    """Stream pacing; 0 means as fast as possible."""
    reply: str | Callable[[str, list[dict[str, Any]]], str] | None = None
    """Fixed reply text, or a function (model, messages) -> text. ``None``: a deterministic echo."""
    stream_chunks: int = 4
    """How many text chunks a streamed reply is split into."""
    include_usage: bool = True
    """False: the fake omits usage entirely (tests the router's estimate path)."""
    tool_call: dict[str, Any] | None = None
    """When set ({"name":..., "arguments": {...}}), the reply is this tool call instead of text."""


@dataclass(slots=True)
class Outage:
    """Requests between ``start`` and ``end`` seconds after the server started get ``fault``."""

    start: float
    end: float
    fault: Fault = field(default_factory=lambda: Fault("server_error", status=503))
    protocol: str | None = None
    model: str | None = None


@dataclass(slots=True)
class _Rule:
    fault: Fault
    protocol: str | None
    model: str | None
    remaining: int  # -1: forever
    probability: float = 1.0

    def matches(self, protocol: str, model: str) -> bool:
        return (self.protocol is None or self.protocol == protocol) and (
            self.model is None or self.model == model
        )


class FaultPlan:
    """Decides the fault for each request. Thread-safe; seeded for reproducibility."""

    def __init__(self, seed: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._queue: deque[_Rule] = deque()
        self._random: list[_Rule] = []
        self._outages: list[Outage] = []
        self._rng = random.Random(seed)
        self._clock = clock
        self._t0 = clock()

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._random.clear()
            self._outages.clear()
            self._t0 = self._clock()

    def restart_clock(self) -> None:
        """Make outage windows count from now (the server calls this when it starts)."""
        with self._lock:
            self._t0 = self._clock()

    def fail_next(self, fault: Fault, times: int = 1, *, protocol: str | None = None,
                  model: str | None = None) -> None:
        """The next ``times`` matching requests get ``fault`` (``times=-1``: every one until reset)."""
        with self._lock:
            self._queue.append(_Rule(fault, protocol, model, times))

    def fail_randomly(self, fault: Fault, probability: float, *, protocol: str | None = None,
                      model: str | None = None) -> None:
        with self._lock:
            self._random.append(_Rule(fault, protocol, model, -1, probability))

    def add_outage(self, outage: Outage) -> None:
        with self._lock:
            self._outages.append(outage)

    def take(self, protocol: str, model: str) -> Fault | None:
        with self._lock:
            for rule in list(self._queue):
                if rule.matches(protocol, model):
                    if rule.remaining > 0:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._queue.remove(rule)
                    return rule.fault
            elapsed = self._clock() - self._t0
            for o in self._outages:
                if o.start <= elapsed < o.end and (o.protocol in (None, protocol)) and (o.model in (None, model)):
                    return o.fault
            for rule in self._random:
                if rule.matches(protocol, model) and self._rng.random() < rule.probability:
                    return rule.fault
        return None


def load_scenario(data: dict[str, Any]) -> tuple[FaultPlan, Behavior, dict[str, Behavior]]:
    """Build a plan and behaviours from a scenario mapping (the ``--scenario`` YAML file).

    Shape::

        seed: 7
        behavior: {ttft_s: 0.05, tokens_per_s: 400}
        models: {"gpt-4o-mini": {ttft_s: 0.02}}
        random_faults: [{fault: {kind: rate_limit, retry_after: 1}, probability: 0.02, protocol: openai}]
        outages: [{start: 20, end: 40, protocol: anthropic, fault: {kind: server_error, status: 503}}]
    """
    plan = FaultPlan(seed=int(data.get("seed", 0)))
    default = Behavior(**(data.get("behavior") or {}))
    per_model = {name: Behavior(**cfg) for name, cfg in (data.get("models") or {}).items()}
    for item in data.get("random_faults") or []:
        plan.fail_randomly(Fault.from_dict(item["fault"]), float(item.get("probability", 0.01)),
                           protocol=item.get("protocol"), model=item.get("model"))
    for item in data.get("outages") or []:
        fault = Fault.from_dict(item.get("fault") or {"kind": "server_error", "status": 503})
        plan.add_outage(Outage(float(item["start"]), float(item["end"]), fault, item.get("protocol"),
                               item.get("model")))
    return plan, default, per_model
