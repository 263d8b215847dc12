"""The unified value types every layer speaks.

Owns: messages (OpenAI-shaped dicts, the lingua franca), ``ChatRequest``, ``EmbedRequest``,
``Usage`` (the one usage type), ``ToolCall``, ``Response``, ``StreamChunk``, ``TokenLogprobs``,
``EmbeddingResponse``, ``Attempt`` and ``Requirements``.

Must not touch: I/O, pydantic (these are slotted dataclasses so the hot path stays cheap),
provider wire formats (each adapter converts to and from these types).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypedDict

# ---------------------------------------------------------------------------------------------
# Messages: OpenAI chat-completions shape is the lingua franca. Adapters convert.
# ---------------------------------------------------------------------------------------------


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: dict[str, str]  # {"url": "https://..." | "data:image/png;base64,..."}


class TokenLogprobs(TypedDict):
    """Log probabilities of an answer's tokens, in OpenAI's ``choices[].logprobs`` shape: ``content`` and
    ``refusal`` are lists of ``{"token", "logprob", "bytes", "top_logprobs": [...]}`` (``None`` when absent)."""

    content: list[dict[str, Any]] | None
    refusal: list[dict[str, Any]] | None


class Message(TypedDict, total=False):
    """One chat message. ``content`` is a string or a list of content parts."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[dict[str, Any]]  # OpenAI shape: {"id", "type": "function", "function": {"name", "arguments"}}
    tool_call_id: str


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "unknown"]
"""Normalized finish reasons. Every adapter maps its provider's reasons onto these."""

FINISH_REASONS: frozenset[str] = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "error", "unknown"}
)


def message_text(message: Message | dict[str, Any]) -> str:
    """The text of a message: a string content, or its text parts joined."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


# ---------------------------------------------------------------------------------------------
# Usage: the one usage type. Cost is computed from this and nothing else.
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """Token usage of one call.

    ``input_tokens`` counts every prompt token *including* cache reads and writes, so that
    ``input_tokens - cache_read_tokens - cache_write_tokens`` is the uncached remainder.
    Adapters whose provider reports them separately (Anthropic) add them up.
    ``output_tokens`` includes ``reasoning_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    provider_cost_usd: float | None = None
    """Cost reported by the provider itself (OpenRouter does); stored beside our own."""
    estimated: bool = False
    """True when the provider sent no usage and the figures are our estimate."""
    provider_details: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        cost: float | None
        if self.provider_cost_usd is None and other.provider_cost_usd is None:
            cost = None
        else:
            cost = (self.provider_cost_usd or 0.0) + (other.provider_cost_usd or 0.0)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            provider_cost_usd=cost,
            estimated=self.estimated or other.estimated,
            provider_details={**self.provider_details, **other.provider_details},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "provider_cost_usd": self.provider_cost_usd,
            "estimated": self.estimated,
        }


@dataclass(slots=True)
class TokenCount:
    """A token count and how it was obtained."""

    tokens: int
    exact: bool
    method: str  # e.g. "tiktoken:o200k_base" or "heuristic:claude"


@dataclass(slots=True)
class ToolCall:
    """A normalized tool call. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


# ---------------------------------------------------------------------------------------------
# Requests as adapters receive them
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ChatRequest:
    """A chat request for one concrete model, as the router hands it to an adapter.

    ``params`` holds OpenAI-named parameters (``temperature``, ``top_p``, ``max_tokens``, ``stop``,
    ``tools``, ``tool_choice``, ``response_format``, ``seed``, ``frequency_penalty``,
    ``presence_penalty``, ``n``, ``logprobs``, ``user``, ``parallel_tool_calls``,
    ``reasoning_effort`` …). Each adapter maps them to its provider's names through the catalog's
    parameter mappings, or reports them unsupported.
    """

    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    request_id: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class EmbedRequest:
    input: list[str]
    params: dict[str, Any] = field(default_factory=dict)  # dimensions, encoding_format, task_type ...
    request_id: str = ""


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

AttemptOutcome = Literal["success", "error", "skipped_breaker", "skipped_context", "skipped_budget",
                         "skipped_throttled", "skipped_deadline", "skipped_unsupported", "cancelled"]


@dataclass(slots=True)
class Attempt:
    """One try at one target, as recorded in ``Response.attempts`` and in the error on failure."""

    target: str  # canonical model id, provider/model
    provider: str
    outcome: AttemptOutcome
    error_type: str | None = None
    status_code: int | None = None
    latency_ms: float = 0.0
    retry: int = 0  # 0 for the first try at this target, 1 for the first retry ...
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "provider": self.provider, "outcome": self.outcome,
                "error_type": self.error_type, "status_code": self.status_code, "latency_ms": self.latency_ms,
                "retry": self.retry, "detail": self.detail}


@dataclass(slots=True)
class Response:
    """A completed chat call. Adapters fill the call fields; the router fills the routing fields."""

    content: str | None
    model: str  # canonical catalog id, provider/model
    provider: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    parsed: Any = None
    request_id: str = ""
    provider_request_id: str | None = None
    # routing
    task: str | None = None
    strategy: str | None = None
    experiment_arm: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    fallback_used: bool = False
    selection_reason: str = ""
    raw: Any = None
    provider_details: dict[str, Any] = field(default_factory=dict)
    """Protocol extras with no unified field (e.g. Anthropic thinking blocks with their signatures)."""
    refusal: str | None = None
    """The model's refusal to answer (OpenAI's ``message.refusal``, a Responses ``refusal`` part). It is never
    copied into ``content``, which stays the answer's text (``None`` or empty on a refusal)."""
    logprobs: TokenLogprobs | None = None
    """Token log probabilities, when the request asked for ``logprobs`` and the protocol returns them
    (OpenAI-compatible chat completions); ``None`` otherwise."""

    def with_routing(self, **changes: Any) -> Response:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "content": self.content,
            "refusal": self.refusal,
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "tool_calls": [tc.to_openai() for tc in self.tool_calls],
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "task": self.task,
            "strategy": self.strategy,
            "experiment_arm": self.experiment_arm,
            "attempts": [a.to_dict() for a in self.attempts],
            "fallback_used": self.fallback_used,
            "selection_reason": self.selection_reason,
        }


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call. ``index`` groups fragments of one call."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class StreamChunk:
    """One streamed event. Text arrives in ``delta`` (a refusal's text in ``refusal_delta``, never in
    ``delta``); the last chunk carries ``usage`` and ``finish_reason``. The router adds
    ``model``/``provider`` and, at the end, ``cost_usd``."""

    delta: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    provider: str = ""
    cost_usd: float | None = None
    reasoning_delta: str = ""
    raw: Any = None
    refusal_delta: str = ""
    logprobs: TokenLogprobs | None = None
    """The log probabilities of this chunk's tokens (OpenAI-compatible streams, when asked)."""


@dataclass(slots=True)
class EmbeddingResponse:
    embeddings: list[list[float]]
    model: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    request_id: str = ""
    attempts: list[Attempt] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Requirements: what a caller asks of a model instead of naming it
# ---------------------------------------------------------------------------------------------

Strategy = Literal["economy", "balanced", "quality"]


@dataclass(frozen=True, slots=True)
class Requirements:
    """What the caller needs. Every key the seeds use, plus allow/deny lists, price caps and modalities.

    Frozen and hashable, so selection results can be cached by value.
    """

    provider: str | None = None
    capabilities: frozenset[str] = frozenset()
    category: str | None = None  # primary category: basic, reasoning, creative, analytical, comprehensive
    min_context: int = 0
    min_output_tokens: int = 0
    tool_calling: bool = False
    response_format: str | None = None  # "json" | "json_schema" | "text"
    economy_mode: bool = False  # the seeds' flag; means strategy "economy"
    providers_allow: frozenset[str] = frozenset()
    providers_deny: frozenset[str] = frozenset()
    input_modalities: frozenset[str] = frozenset()
    output_modalities: frozenset[str] = frozenset()
    max_input_price: float | None = None  # USD per million tokens
    max_output_price: float | None = None
    include_deprecated: bool = False
    mode: Literal["chat", "embedding"] = "chat"
    strategy: Strategy = "balanced"

    @property
    def effective_strategy(self) -> Strategy:
        return "economy" if self.economy_mode else self.strategy

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Requirements:
        """Build from the seeds' dictionaries (``requires_tool_calling``, ``primary_category`` …)."""
        from modelplex.errors import ConfigError, did_you_mean

        aliases = {
            "required_capabilities": "capabilities",
            "primary_category": "category",
            "min_context_window": "min_context",
            "context_window": "min_context",
            "min_tokens_out": "min_output_tokens",
            "max_tokens_out": "min_output_tokens",
            "min_output": "min_output_tokens",
            "requires_tool_calling": "tool_calling",
            "needs": "capabilities",
            "allow_providers": "providers_allow",
            "deny_providers": "providers_deny",
            "providers": "providers_allow",
            "economy": "economy_mode",
        }
        set_fields = {"capabilities", "providers_allow", "providers_deny", "input_modalities",
                      "output_modalities"}
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = aliases.get(key, key)
            if name not in known:
                names = sorted(known | set(aliases))
                raise ConfigError(f"unknown requirement {key!r}{did_you_mean(key, names)}; expected one of {names}",
                                  key=key)
            if name in set_fields:
                value = frozenset([value] if isinstance(value, str) else (value or ()))
            if name == "category" and value is not None:
                value = str(getattr(value, "value", value))
            kwargs[name] = value
        if kwargs.get("strategy") == "cost_optimized":
            kwargs["strategy"] = "economy"
        elif kwargs.get("strategy") == "quality_optimized":
            kwargs["strategy"] = "quality"
        return cls(**kwargs)

    def merged(self, **changes: Any) -> Requirements:
        return replace(self, **changes)
