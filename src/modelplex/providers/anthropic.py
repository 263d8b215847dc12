"""The Anthropic Messages protocol (``POST {base_url}/v1/messages``).

Owns: ``AnthropicAdapter`` (protocol ``"anthropic"``) and its pure functions: OpenAI-shaped messages and
parameters -> a Messages body, a Messages body -> ``Response``, Anthropic error bodies -> typed errors,
and the SSE event decoder. Also ``count_tokens_to_wire`` for ``/v1/messages/count_tokens``.

Must not touch: retries, fallbacks, budgets, accounting (the router composes those), sockets
(``base.Adapter`` does the I/O). Credentials never reach logs, exception messages or ``repr``.

Request mapping
    * ``system``/``developer`` messages are lifted, in order, into the top-level ``system``: a string, or a
      list of text blocks when any of them carries ``cache_control``.
    * Consecutive same-role turns are merged; ``tool`` messages become ``tool_result`` blocks in a user
      turn (placed first in that turn, as the API requires); assistant ``tool_calls`` become ``tool_use``
      blocks with the parsed JSON arguments as ``input``. Tool-call ids pass through
      ``base.portable_tool_id`` in both places, so ids from another provider (Gemini's carry ``/``, ``+``
      and ``=``) meet Anthropic's ``^[a-zA-Z0-9_-]+$`` and each call still pairs with its result.
      ``image_url`` parts become ``image`` blocks (``data:`` URLs -> base64 source, other URLs -> url
      source); ``file`` parts with PDF data become ``document`` blocks. Parts already in Anthropic's shape (``image`` with ``source``, ``document``,
      ``thinking``, ``redacted_thinking`` ...) pass through unchanged. An assistant message's
      ``thinking_blocks`` (the blocks ``Response.provider_details["thinking_blocks"]`` gives, as LiteLLM
      names them) open its turn when the request has thinking on, as a tool-use continuation with
      thinking requires; other protocols drop the key. A ``tool`` message's ``is_error: true`` becomes the
      ``tool_result``'s ``is_error``.
    * ``max_tokens`` is required by the API: the caller's ``max_tokens`` (or ``max_completion_tokens``),
      else ``spec.default_params["max_tokens"]``, else ``min(spec.max_output_tokens, 4096)``. The router
      copies ``default_params`` into the request, so a value equal to the catalog default counts as the
      default, not as the caller's (``caller_max_tokens``).
    * ``stop`` -> ``stop_sequences``; ``user`` -> ``metadata.user_id``; tools -> ``{name, description,
      input_schema}``; ``tool_choice`` auto/required/none/function -> auto/any/none/tool;
      ``parallel_tool_calls=False`` -> ``disable_parallel_tool_use``.

Settings (model ``api_requirements`` override the provider ``profile``)
    ``anthropic_version`` (default ``2023-06-01``); ``anthropic_beta`` (str or list, always sent);
    ``auth`` (``"x-api-key"`` default, or ``"bearer"`` for ``Authorization: Bearer``);
    ``sampling_params`` (``False`` drops temperature/top_p/top_k; also implied by API version
    ``2026-10-21`` and later, which rejects them even at default values); ``temperature_with_top_p``
    (``True``: the model accepts both; by default, when a request sets both, only ``temperature`` is sent,
    because Sonnet 4.5, Haiku 4.5, Opus 4.1 and later answer 400 to the pair and Anthropic advises
    altering one);
    ``thinking`` (``"budget"`` default: ``{"type": "enabled", "budget_tokens": N}``; ``"adaptive"``:
    ``{"type": "adaptive"}`` plus ``output_config.effort``, for the models that removed budgets);
    ``thinking_display`` (``"summarized"``/``"omitted"``);
    ``structured_output`` (``"output_config"``: native ``output_config.format``; ``"output_format_beta"``:
    the older top-level ``output_format`` with the ``structured-outputs-2025-11-13`` beta header;
    ``"tool"``: always a forced tool). Native output is used only when the model also has the
    ``structured_output`` capability and one of the native values is set.

Reasoning
    ``reasoning_effort`` applies only to models with the ``reasoning`` capability (ignored otherwise;
    ``"none"`` means no thinking). Budget mode maps ``minimal`` 1024, ``low`` 2048, ``medium`` 8192,
    ``high`` 16384, ``xhigh`` 32768, ``max`` 65536 tokens (``THINKING_BUDGETS``). Anthropic counts thinking
    inside ``max_tokens``: with a caller ``max_tokens`` the budget is clipped to at most half of it
    (never below the API minimum of 1024; a ``max_tokens`` too small for that raises
    ``UnsupportedParameterError``); without one, ``max_tokens`` becomes the default plus the budget, capped
    at the model's output limit. With thinking on, the API accepts no temperature/top_k changes, so
    those are omitted and ``top_p`` is raised to at least 0.95. Adaptive mode maps the effort to
    ``output_config.effort`` (``minimal`` -> ``low``). Anthropic rejects thinking together with a forced
    ``tool_choice`` (``any``/``tool``: the caller's ``required`` or named function, or our structured-output
    tool), so a forced choice wins: it is the caller's explicit contract, and thinking is not sent (logged
    at INFO).

Structured output (``response_format``)
    ``json_schema``: native as above, else a forced tool named from the schema name whose
    ``input_schema`` is the schema. When the caller also passes tools, ``tool_choice`` becomes ``any``
    (the model must call one of them or ours) unless the caller named a function. ``json_object``: always a
    forced tool with a free-form object schema (Anthropic has no JSON mode and prefill is rejected by
    current models and by thinking). On our tool's reply, ``content`` is the tool input JSON and it is not
    reported in ``tool_calls``; streamed, its ``input_json_delta`` fragments arrive as ``delta`` text.
    Being a forced ``tool_choice``, this path sends no thinking (see Reasoning).

Streaming
    Text, tool-call and thinking deltas map to ``StreamChunk`` fields. ``signature_delta`` has no field
    of its own: the final chunk's ``raw`` is ``{"thinking_blocks": [...]}`` (thinking text and signature,
    or the redacted block), the blocks a non-streaming answer puts in ``provider_details``, ready to echo
    back on a tool-use continuation.

Errors
    Classified from ``error.type`` and ``error.details.error_code``, never from message text:
    ``invalid_request_error`` -> ``BadRequestError``; ``request_too_large`` (413, also without a JSON
    body: Cloudflare answers it) -> ``BadRequestError``, since it is a byte limit (32 MB), which a model
    with a larger window does not lift; ``authentication_error`` -> ``AuthenticationError``;
    ``permission_error`` -> ``PermissionDeniedError``; ``not_found_error`` -> ``NotFoundError``;
    ``rate_limit_error`` -> ``RateLimitError`` (but ``QuotaExceededError`` when the code names a spend
    limit: the 429 a usage tier's monthly cap produces has no retry-after and does not clear by
    retrying); ``billing_error`` -> ``QuotaExceededError``; ``api_error``/``timeout_error`` ->
    ``ServerError``; ``overloaded_error`` -> ``OverloadedError``. A prompt longer than the window is a
    plain 400 ``invalid_request_error`` whose only distinguishing mark is its message ("prompt is too
    long: N tokens > M maximum", "input length and `max_tokens` exceed context limit"): that message, and
    only on that type, makes it a ``ContextWindowExceededError``, so the router falls over to a larger
    window when its token pre-check (an estimate for Claude) let a prompt through. This is the one place
    the adapter reads error text. The same classification applies to an ``event: error`` inside a stream.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from modelplex.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextWindowExceededError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnsupportedParameterError,
    class_for_status,
    redact,
    status_error,
)
from modelplex.providers.base import (
    Adapter,
    ProviderConfig,
    StreamDecoder,
    WireRequest,
    add_turn,
    portable_tool_id,
    structured_tool_choice,
    thinking_blocks_of,
)
from modelplex.types import Response, StreamChunk, TokenCount, ToolCall, ToolCallDelta, Usage

if TYPE_CHECKING:
    import aiohttp

    from modelplex.catalog.schema import ModelSpec
    from modelplex.errors import InvalidResponseError
    from modelplex.types import ChatRequest, Message

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"
SAMPLING_REMOVED_VERSION = "2026-10-21"
"""API versions on or after this date reject ``temperature``, ``top_p`` and ``top_k``."""
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384,
                                    "xhigh": 32768, "max": 65536}
EFFORT_LEVELS: dict[str, str] = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
                                 "xhigh": "xhigh", "max": "max"}
JSON_OBJECT_TOOL = "json_response"

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

CONTEXT_MESSAGE = re.compile(r"prompt is too long|exceed(?:s|ed)? (?:the )?context (?:limit|window)", re.IGNORECASE)
"""The messages of the 400 a prompt longer than the window gets (no structured code says so)."""

_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request_error": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "billing_error": QuotaExceededError,
    "api_error": ServerError,
    "timeout_error": ServerError,
    "overloaded_error": OverloadedError,
    "request_too_large": BadRequestError,  # a byte limit (32 MB), not the token window: a bigger window won't help
    "conflict_error": ConflictError,
}
_CODE_CLASSES: dict[str, type[ProviderError]] = {
    "enforced_spend_limit_reached": QuotaExceededError,
    "contract_spend_limit_reached": QuotaExceededError,
    "linked_organization_spend_limit_reached": QuotaExceededError,
    "linked_organization_billing_unavailable": QuotaExceededError,
    "ramp_limit_exceeded": RateLimitError,
    "request_body_too_large_after_decoding": BadRequestError,
}
_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "conflict_error": 409, "request_too_large": 413, "rate_limit_error": 429,
    "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}
"""The status Anthropic uses for each type, for errors that arrive inside a 200 stream."""
_STATUS_TYPES: dict[int, str] = {413: "request_too_large"}
"""Statuses whose meaning at Anthropic differs from ``errors.class_for_status``, for bodies that are not JSON
(Cloudflare answers 413 before the request reaches the API)."""

_AUTH_HEADERS = frozenset({"x-api-key", "authorization"})
_OPENAI_PARTS = frozenset({"text", "image_url", "file", "input_audio"})
_TOOL_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.DOTALL)


# ------------------------------------------------------------------------------------------ helpers


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def usage_from_wire(u: Mapping[str, Any]) -> Usage:
    """Anthropic usage -> ``Usage``. Anthropic's ``input_tokens`` excludes cache reads and writes, so they
    are added back: ``Usage.input_tokens`` counts every prompt token."""
    uncached = _int(u.get("input_tokens"))
    read = _int(u.get("cache_read_input_tokens"))
    write = _int(u.get("cache_creation_input_tokens"))
    details_out = u.get("output_tokens_details")
    reasoning = _int(details_out.get("thinking_tokens")) if isinstance(details_out, Mapping) else 0
    extras = {k: u[k] for k in ("service_tier", "cache_creation", "server_tool_use", "inference_geo", "speed")
              if u.get(k) is not None}
    return Usage(input_tokens=uncached + read + write, output_tokens=_int(u.get("output_tokens")),
                 cache_read_tokens=read, cache_write_tokens=write, reasoning_tokens=reasoning,
                 provider_details=extras)


def finish_reason(stop_reason: Any) -> str:
    if stop_reason is None:
        return "unknown"
    return FINISH_REASONS.get(str(stop_reason), "unknown")


def tool_name_for(schema_name: Any, taken: Iterable[str] = ()) -> str:
    """A valid tool name (``[a-zA-Z0-9_-]{1,64}``) from a schema name, not colliding with ``taken``."""
    name = _TOOL_NAME_RE.sub("_", str(schema_name or "")).strip("_")[:64] or JSON_OBJECT_TOOL
    taken = set(taken)
    if name in taken:
        name = f"{name[:57]}_output"
    return name


def _tool_id(value: Any) -> str:
    """A tool-call id in the form Anthropic accepts (``portable_tool_id``: another provider's id, such as
    Gemini's, maps to the same ``toolu_`` digest in the call and in its result). A missing id stays empty, for
    the API to reject."""
    return portable_tool_id(str(value)) if value else ""


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for k, v in headers.items():
            if k.lower() == lname:
                return v
    return value


# ------------------------------------------------------------------------------------------ messages


def _data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a base64 ``data:`` URL, else ``None``."""
    m = _DATA_URL_RE.match(url)
    if m is None or ";base64" not in m.group("params"):
        return None
    return m.group("mime"), m.group("data")


class _Converter:
    """OpenAI-shaped messages -> Anthropic ``system`` and ``messages``. One per request."""

    def __init__(self, model: ModelSpec, *, thinking: bool = False) -> None:
        self.model = model
        self.thinking = thinking
        """Whether the request has thinking on: assistant ``thinking_blocks`` are sent back only then."""

    def unsupported(self, what: str) -> UnsupportedParameterError:
        return UnsupportedParameterError(self.model.id, [what])

    def bad(self, message: str) -> BadRequestError:
        return BadRequestError(message, model=self.model.id)

    # ---------------------------------------------------------------- parts

    def image(self, part: Mapping[str, Any]) -> dict[str, Any]:
        spec = part.get("image_url")
        url = spec.get("url") if isinstance(spec, Mapping) else spec
        if not isinstance(url, str) or not url:
            raise self.bad("image_url part without a url")
        if url.startswith("data:"):
            parsed = _data_url(url)
            if parsed is None:
                raise self.bad("image data URL must be base64-encoded")
            media, data = parsed
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}

    def file(self, part: Mapping[str, Any]) -> dict[str, Any]:
        spec = part.get("file")
        spec = spec if isinstance(spec, Mapping) else {}
        block: dict[str, Any]
        if isinstance(spec.get("file_data"), str):
            parsed = _data_url(spec["file_data"])
            if parsed is None:
                raise self.bad("file part: file_data must be a base64 data URL")
            media, data = parsed
            if media.startswith("image/"):
                return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
            block = {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}
        elif isinstance(spec.get("file_id"), str):
            block = {"type": "document", "source": {"type": "file", "file_id": spec["file_id"]}}
        else:
            raise self.bad("file part needs file_data or file_id")
        if isinstance(spec.get("filename"), str):
            block["title"] = spec["filename"]
        return block

    def part(self, part: Any) -> dict[str, Any] | None:
        if isinstance(part, str):
            return {"type": "text", "text": part} if part else None
        if not isinstance(part, Mapping):
            raise self.bad(f"content part must be an object, not {type(part).__name__}")
        kind = part.get("type")
        if kind not in _OPENAI_PARTS:
            return dict(part)  # already an Anthropic block (image/document/thinking/tool_use ...)
        block: dict[str, Any] | None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise self.bad("text part without text")
            block = {"type": "text", "text": text} if text or "cache_control" in part else None
        elif kind == "image_url":
            block = self.image(part)
        elif kind == "file":
            block = self.file(part)
        else:
            raise self.unsupported(f"content part {kind!r}")
        if block is not None and "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        return block

    def blocks(self, content: Any) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        if isinstance(content, list):
            return [b for b in (self.part(p) for p in content) if b is not None]
        raise self.bad(f"message content must be a string or a list, not {type(content).__name__}")

    def tool_use(self, call: Any) -> dict[str, Any]:
        if not isinstance(call, Mapping):
            raise self.bad("tool_calls entries must be objects")
        fn = call.get("function")
        fn = fn if isinstance(fn, Mapping) else {}
        args = fn.get("arguments")
        if isinstance(args, Mapping):
            parsed: Any = dict(args)
        else:
            try:
                parsed = orjson.loads(args) if args else {}
            except orjson.JSONDecodeError:
                raise self.bad(f"tool call {call.get('id')!r} has arguments that are not JSON") from None
        if not isinstance(parsed, dict):
            raise self.bad(f"tool call {call.get('id')!r} arguments must be a JSON object")
        return {"type": "tool_use", "id": _tool_id(call.get("id")), "name": str(fn.get("name") or ""),
                "input": parsed}

    def tool_result(self, message: Mapping[str, Any]) -> dict[str, Any]:
        content = message.get("content")
        result: Any = (content or "") if content is None or isinstance(content, str) else self.blocks(content)
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(message.get("tool_call_id"))}
        if result:
            block["content"] = result
        if message.get("is_error") is True:
            block["is_error"] = True
        if "cache_control" in message:
            block["cache_control"] = message["cache_control"]
        return block

    # ---------------------------------------------------------------- messages

    def convert(self, messages: list[Message]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []

        def add(role: str, blocks: list[dict[str, Any]]) -> None:
            add_turn(turns, role, blocks, "content")

        for message in messages:
            if not isinstance(message, Mapping):
                raise self.bad("each message must be an object")
            role = message.get("role")
            cache = message.get("cache_control")
            if role in ("system", "developer"):
                blocks = self.blocks(message.get("content"))
                for b in blocks:
                    if b.get("type") != "text":
                        raise self.unsupported(f"{b.get('type')!r} content in a {role} message")
                _mark_last(blocks, cache)
                system.extend(blocks)
            elif role == "user":
                blocks = self.blocks(message.get("content"))
                _mark_last(blocks, cache)
                add("user", blocks)
            elif role == "assistant":
                blocks = thinking_blocks_of(message.get("thinking_blocks"), self.bad) if self.thinking else []
                blocks += self.blocks(message.get("content"))
                blocks += [self.tool_use(tc) for tc in message.get("tool_calls") or ()]
                _mark_last(blocks, cache)
                add("assistant", blocks)
            elif role == "tool":
                add("user", [self.tool_result(message)])
            else:
                raise self.unsupported(f"message role {role!r}")

        for turn in turns:
            if turn["role"] == "user":  # tool results must open the turn
                content = turn["content"]
                turn["content"] = ([b for b in content if b.get("type") == "tool_result"]
                                   + [b for b in content if b.get("type") != "tool_result"])
        if turns and turns[-1]["role"] == "assistant":  # a prefill may not end in whitespace
            last = turns[-1]["content"]
            if last and last[-1].get("type") == "text":
                last[-1]["text"] = last[-1]["text"].rstrip()
                if not last[-1]["text"]:
                    last.pop()
            if not last:
                turns.pop()
        for turn in turns:  # a lone plain text block is sent the way callers write it: as a string
            only = turn["content"]
            if len(only) == 1 and only[0].get("type") == "text" and set(only[0]) == {"type", "text"}:
                turn["content"] = only[0]["text"]
        return _system_field(system), turns


def _mark_last(blocks: list[dict[str, Any]], cache_control: Any) -> None:
    if cache_control is not None and blocks:
        blocks[-1]["cache_control"] = cache_control


def _system_field(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    if not blocks:
        return None
    if any("cache_control" in b for b in blocks):
        return blocks
    return "\n\n".join(b["text"] for b in blocks)


# ------------------------------------------------------------------------------------------ tools


def _tool(tool: Any, model: ModelSpec) -> dict[str, Any]:
    if not isinstance(tool, Mapping):
        raise BadRequestError("tools entries must be objects", model=model.id)
    if tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        return dict(tool)  # an Anthropic tool (custom or server tool) passes through
    fn = tool["function"]
    out: dict[str, Any] = {"name": str(fn.get("name") or "")}
    if fn.get("description"):
        out["description"] = fn["description"]
    params = fn.get("parameters")
    out["input_schema"] = dict(params) if isinstance(params, Mapping) else {"type": "object", "properties": {}}
    if fn.get("strict") is not None:
        out["strict"] = bool(fn["strict"])
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping):
        if choice.get("type") == "function":
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
            return {"type": "tool", "name": str(name or "")}
        if choice.get("type") in ("auto", "any", "tool", "none"):
            return dict(choice)
    return None


def effective_params(req: ChatRequest, model: ModelSpec) -> dict[str, Any]:
    """The model's ``default_params`` overlaid with the request's (``None`` values dropped)."""
    params: dict[str, Any] = {k: v for k, v in model.default_params.items() if v is not None}
    params.update({k: v for k, v in req.params.items() if v is not None})
    return params


def caller_max_tokens(params: Mapping[str, Any], model: ModelSpec) -> int | None:
    """The output cap the caller set (``max_tokens``, else ``max_completion_tokens``), or ``None``.

    The router fills the model's ``default_params`` into the request before the adapter sees it (and
    ``effective_params`` does the same), so a value equal to the catalog default is read as that default,
    not as a caller's choice."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = params.get(name)
        if value and value != model.default_params.get(name):
            return int(value)
    return None


def fit_budget(budget: int, max_tokens: int, explicit: bool, model: ModelSpec) -> tuple[int, int]:
    """(max_tokens, budget_tokens) with ``MIN_THINKING_BUDGET <= budget < max_tokens``: a caller's
    (``explicit``) ``max_tokens`` clips the budget to half of it; a default one grows by the budget, up to
    the model's output limit. Claude's rule, shared with Claude on Bedrock."""
    if explicit:
        budget = min(budget, max(MIN_THINKING_BUDGET, max_tokens // 2))
    else:
        max_tokens = min(model.max_output_tokens, max_tokens + budget)
        budget = min(budget, max(MIN_THINKING_BUDGET, max_tokens // 2)) if budget >= max_tokens else budget
    if budget >= max_tokens:
        raise UnsupportedParameterError(
            model.id, [f"reasoning_effort with max_tokens={max_tokens} (thinking needs a budget of at least "
                       f"{MIN_THINKING_BUDGET} tokens below max_tokens)"])
    return max_tokens, budget


def _wants_thinking(effort: Any, model: ModelSpec) -> bool:
    """Whether ``reasoning_effort`` asks for thinking on this model (``"none"`` and non-reasoning models: no)."""
    return bool(effort) and effort != "none" and model.has("reasoning")


def _tool_names(tools: Iterable[Any]) -> list[str]:
    names: list[str] = []
    for t in tools:
        if not isinstance(t, Mapping):
            continue
        fn = t.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else t.get("name")
        if isinstance(name, str) and name:
            names.append(name)
    return names


def forced_tool_name(req: ChatRequest, model: ModelSpec, provider: ProviderConfig | None = None) -> str | None:
    """The name of the tool this adapter adds to carry ``response_format``, or ``None`` when the request
    uses no such tool (no response_format, or the model takes native structured output)."""
    params = effective_params(req, model)
    rf = params.get("response_format")
    if not isinstance(rf, Mapping):
        return None
    taken_names = _tool_names(params.get("tools") or ())
    if rf.get("type") == "json_object":
        return tool_name_for(JSON_OBJECT_TOOL, taken_names)
    if rf.get("type") == "json_schema":
        if _native_structured_mode(model, provider) is not None:
            return None
        js = rf.get("json_schema")
        return tool_name_for(js.get("name") if isinstance(js, Mapping) else None, taken_names)
    return None


def _setting(model: ModelSpec | None, provider: ProviderConfig | None, key: str, default: Any = None) -> Any:
    """A protocol setting: the model's ``api_requirements`` first, then the provider's ``profile``."""
    if model is not None and key in model.api_requirements:
        return model.api_requirements[key]
    if provider is not None and key in provider.profile:
        return provider.profile[key]
    return default


def _native_structured_mode(model: ModelSpec, provider: ProviderConfig | None) -> str | None:
    mode = _setting(model, provider, "structured_output")
    if model.has("structured_output") and mode in ("output_config", "output_format_beta"):
        return str(mode)
    return None


# ------------------------------------------------------------------------------------------ adapter


class AnthropicAdapter(Adapter):
    """Anthropic's Messages API: chat (streaming or not), token counting and a models health probe."""

    protocol: ClassVar[str] = "anthropic"

    def __init__(self, provider: ProviderConfig) -> None:
        super().__init__(provider)
        base = (provider.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._base = base[: -len("/v1")] if base.endswith("/v1") else base

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.name!r}, base_url={self._base!r})"

    # ------------------------------------------------------------------ headers and settings

    def api_version(self, model: ModelSpec | None = None) -> str:
        return str(_setting(model, self.provider, "anthropic_version", DEFAULT_API_VERSION))

    def headers(self, model: ModelSpec | None = None, request_headers: Mapping[str, str] | None = None,
                betas: Iterable[str] = ()) -> dict[str, str]:
        """Content type, version, credentials, betas, then the provider's and the request's extra headers
        (which may add betas but not replace the credentials)."""
        h: dict[str, str] = {"content-type": "application/json", "anthropic-version": self.api_version(model)}
        key = self.provider.api_key
        if key:
            if _setting(model, self.provider, "auth", "x-api-key") == "bearer":
                h["authorization"] = f"Bearer {key}"
            else:
                h["x-api-key"] = key
        beta: list[str] = []
        configured = _setting(model, self.provider, "anthropic_beta")
        if isinstance(configured, str):
            configured = [configured]
        for group in (configured or (), betas):
            beta.extend(str(b) for b in group)
        for extra in (self.provider.extra_headers, request_headers or {}):
            for k, v in extra.items():
                lk = k.lower()
                if lk in _AUTH_HEADERS and key:
                    continue  # one credential only: the API rejects x-api-key and Authorization together
                if lk == "anthropic-beta":
                    beta.extend(b.strip() for b in v.split(",") if b.strip())
                    continue
                h[lk] = v
        if beta:
            h["anthropic-beta"] = ",".join(dict.fromkeys(beta))
        return h

    # ------------------------------------------------------------------ request

    def build_body(self, req: ChatRequest, model: ModelSpec) -> tuple[dict[str, Any], list[str]]:
        """The Messages body for ``req`` and the beta flags it needs."""
        params = effective_params(req, model)
        body: dict[str, Any] = {"model": model.api_model, "messages": []}
        betas: list[str] = []

        tools = [_tool(t, model) for t in params.get("tools") or ()]
        choice = _tool_choice(params.get("tool_choice"))
        forced = self._apply_response_format(params, model, tools, choice, body, betas)
        if forced is not None:
            choice = forced

        caller_max = caller_max_tokens(params, model)
        max_tokens = caller_max or self._default_max_tokens(model)
        effort = params.get("reasoning_effort")
        forces_tool = bool(tools) and choice is not None and choice.get("type") in ("any", "tool")
        if forces_tool and _wants_thinking(effort, model):
            log.info("%s: tool_choice %r forces tool use, which Anthropic rejects with thinking; "
                     "reasoning_effort=%r is not sent", model.id, choice, effort)
        thinking = None if forces_tool else self._thinking(effort, model, body)
        if thinking is not None and thinking.get("type") == "enabled":
            max_tokens, thinking["budget_tokens"] = fit_budget(
                thinking["budget_tokens"], max_tokens, caller_max is not None, model)
        body["max_tokens"] = max_tokens
        if thinking is not None:
            body["thinking"] = thinking
        system, body["messages"] = _Converter(model, thinking=thinking is not None).convert(req.messages)
        if system is not None:
            body["system"] = system

        stop = params.get("stop")
        if stop:
            body["stop_sequences"] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        self._sampling(params, model, thinking is not None, body)
        metadata = params.get("metadata")
        user_id = params.get("user") or (metadata.get("user_id") if isinstance(metadata, Mapping) else None)
        if user_id:
            body["metadata"] = {"user_id": str(user_id)}
        tier = params.get("service_tier")
        if tier in ("auto", "standard_only"):
            body["service_tier"] = tier
        elif tier == "default":
            body["service_tier"] = "standard_only"

        if tools:
            body["tools"] = tools
            if params.get("parallel_tool_calls") is False:
                choice = dict(choice or {"type": "auto"})
                if choice.get("type") != "none":
                    choice["disable_parallel_tool_use"] = True
            if choice is not None:
                body["tool_choice"] = choice
        extra = params.get("extra_body")
        if isinstance(extra, Mapping):
            body.update(extra)
        if req.stream:
            body["stream"] = True
        return body, betas

    def chat_to_wire(self, req: ChatRequest, model: ModelSpec) -> WireRequest:
        body, betas = self.build_body(req, model)
        return WireRequest("POST", f"{self._base}/v1/messages", self.headers(model, req.extra_headers, betas),
                           dumps(body))

    def count_tokens_to_wire(self, req: ChatRequest, model: ModelSpec) -> WireRequest:
        """``POST /v1/messages/count_tokens`` for the prompt ``req`` would send (exact, server-side count)."""
        body, betas = self.build_body(req, model)
        keep = ("model", "messages", "system", "tools", "tool_choice", "thinking", "output_config", "output_format")
        counted = {k: body[k] for k in keep if k in body}
        return WireRequest("POST", f"{self._base}/v1/messages/count_tokens",
                           self.headers(model, req.extra_headers, betas), dumps(counted))

    def count_tokens_from_wire(self, payload: bytes, model: ModelSpec) -> TokenCount:
        data = self._json_object(payload, model)
        tokens = data.get("input_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise self._invalid(model, "count_tokens answer has no input_tokens")
        return TokenCount(tokens=tokens, exact=True, method="anthropic:count_tokens")

    async def count_tokens_remote(self, session: aiohttp.ClientSession, req: ChatRequest, model: ModelSpec, *,
                                  timeout: float | None = None) -> TokenCount:
        """The provider's own count of the prompt (one HTTP call; free, but rate limited)."""
        wire = self.count_tokens_to_wire(req, model)
        status, headers, body = await self._send(session, wire, model, timeout or self.provider.timeout)
        if status >= 400:
            raise self.classify_error(status, headers, body, model)
        return self.count_tokens_from_wire(body, model)

    def health_to_wire(self) -> WireRequest:
        h = self.headers()
        del h["content-type"]
        return WireRequest("GET", f"{self._base}/v1/models?limit=1", h)

    # ---------------------------------------------------------------- request pieces

    @staticmethod
    def _default_max_tokens(model: ModelSpec) -> int:
        default = model.default_params.get("max_tokens")
        if isinstance(default, int) and default > 0:
            return default
        return min(model.max_output_tokens, DEFAULT_MAX_TOKENS)

    def _thinking(self, effort: Any, model: ModelSpec, body: dict[str, Any]) -> dict[str, Any] | None:
        if not _wants_thinking(effort, model):
            return None
        effort = str(effort)
        display = _setting(model, self.provider, "thinking_display")
        if _setting(model, self.provider, "thinking", "budget") == "adaptive":
            thinking: dict[str, Any] = {"type": "adaptive"}
            level = EFFORT_LEVELS.get(effort)
            if level is None:
                raise UnsupportedParameterError(model.id, [f"reasoning_effort={effort!r}"])
            body.setdefault("output_config", {})["effort"] = level
        else:
            budget = THINKING_BUDGETS.get(effort)
            if budget is None:
                raise UnsupportedParameterError(model.id, [f"reasoning_effort={effort!r}"])
            thinking = {"type": "enabled", "budget_tokens": budget}
        if display in ("summarized", "omitted"):
            thinking["display"] = display
        return thinking

    def _sampling(self, params: Mapping[str, Any], model: ModelSpec, thinking: bool, body: dict[str, Any]) -> None:
        allowed = _setting(model, self.provider, "sampling_params", True) is not False
        if self.api_version(model) >= SAMPLING_REMOVED_VERSION:
            allowed = False
        if not allowed:
            return
        if not thinking:
            sent = {name: params[name] for name in ("temperature", "top_p", "top_k") if params.get(name) is not None}
            if "temperature" in sent and "top_p" in sent and \
                    _setting(model, self.provider, "temperature_with_top_p") is not True:
                del sent["top_p"]  # newer models reject the pair; Anthropic advises altering only one
            body.update(sent)
        elif params.get("top_p") is not None:
            body["top_p"] = max(float(params["top_p"]), 0.95)

    def _apply_response_format(self, params: Mapping[str, Any], model: ModelSpec, tools: list[dict[str, Any]],
                               choice: dict[str, Any] | None, body: dict[str, Any], betas: list[str]
                               ) -> dict[str, Any] | None:
        """Add native output format or our forced tool; returns the tool_choice that forces it, if any."""
        rf = params.get("response_format")
        if not isinstance(rf, Mapping) or rf.get("type") not in ("json_schema", "json_object"):
            return None
        taken = _tool_names(tools)
        if rf.get("type") == "json_schema":
            js = rf.get("json_schema")
            js = js if isinstance(js, Mapping) else {}
            schema = js.get("schema")
            schema = dict(schema) if isinstance(schema, Mapping) else {"type": "object"}
            mode = _native_structured_mode(model, self.provider)
            if mode == "output_config":
                body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}
                return None
            if mode == "output_format_beta":
                body["output_format"] = {"type": "json_schema", "schema": schema}
                betas.append(STRUCTURED_OUTPUTS_BETA)
                return None
            name = tool_name_for(js.get("name"), taken)
            tool: dict[str, Any] = {"name": name, "description": str(js.get("description") or
                                                                      "Respond with the final answer as this tool's input."),
                                    "input_schema": schema}
        else:
            name = tool_name_for(JSON_OBJECT_TOOL, taken)
            tool = {"name": name, "description": "Respond with the final answer as a JSON object in this tool's input.",
                    "input_schema": {"type": "object", "additionalProperties": True}}
        decision = structured_tool_choice(bool(tools), str(choice["type"]) if choice else None)
        tools.append(tool)
        if decision == "any":
            return {"type": "any"}
        if decision == "caller" and choice is not None:
            return choice
        return {"type": "tool", "name": name}

    # ------------------------------------------------------------------ response

    def chat_from_wire(self, payload: bytes, model: ModelSpec, headers: Mapping[str, str] | None = None,
                       *, req: ChatRequest | None = None) -> Response:
        """Parse a Messages answer. With ``req``, also unwrap a structured-output tool (``finish_response``)."""
        data = self._json_object(payload, model)
        if data.get("type") != "message" or not isinstance(data.get("content"), list):
            raise self._invalid(model, "response is not a message with a content list")
        texts: list[str] = []
        calls: list[ToolCall] = []
        thinking: list[dict[str, Any]] = []
        for block in data["content"]:
            if not isinstance(block, dict):
                raise self._invalid(model, "content block is not an object")
            kind = block.get("type")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise self._invalid(model, "text block without text")
                texts.append(block["text"])
            elif kind == "tool_use":
                if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
                    raise self._invalid(model, "tool_use block without name or input object")
                calls.append(ToolCall(id=str(block.get("id") or ""), name=block["name"],
                                      arguments=orjson.dumps(block["input"]).decode()))
            elif kind in ("thinking", "redacted_thinking"):
                thinking.append(block)
        usage_raw = data.get("usage")
        usage = usage_from_wire(usage_raw) if isinstance(usage_raw, Mapping) else Usage(estimated=True)
        details: dict[str, Any] = {"id": data.get("id"), "stop_reason": data.get("stop_reason")}
        if data.get("stop_sequence") is not None:
            details["stop_sequence"] = data["stop_sequence"]
        if data.get("stop_details") is not None:
            details["stop_details"] = data["stop_details"]
        if thinking:
            details["thinking_blocks"] = thinking
            details["thinking"] = "".join(str(b.get("thinking") or "") for b in thinking)
        resp = Response(
            content="".join(texts) if texts or not calls else None,
            model=model.id,
            provider=self.provider.name,
            usage=usage,
            finish_reason=finish_reason(data.get("stop_reason")),
            tool_calls=calls,
            provider_request_id=_header(headers, "request-id"),
            raw=data,
            provider_details=details,
        )
        return self.finish_response(resp, req, model) if req is not None else resp

    def finish_response(self, resp: Response, req: ChatRequest, model: ModelSpec) -> Response:
        """Request-dependent touches: our structured-output tool becomes ``content``; usage the provider
        did not send is estimated (flagged ``estimated``)."""
        name = forced_tool_name(req, model, self.provider)
        if name is not None:
            ours = [tc for tc in resp.tool_calls if tc.name == name]
            if ours:
                if resp.content:
                    resp.provider_details["text"] = resp.content
                resp.content = ours[0].arguments
                resp.tool_calls = [tc for tc in resp.tool_calls if tc.name != name]
                if resp.finish_reason == "tool_calls" and not resp.tool_calls:
                    resp.finish_reason = "stop"
        if resp.usage.estimated and resp.usage.input_tokens == 0 and resp.usage.output_tokens == 0:
            from modelplex.catalog.tokens import count_text

            resp.usage = Usage(input_tokens=self.count_tokens(req.messages, model).tokens,
                               output_tokens=count_text(resp.content or "", model).tokens, estimated=True)
        return resp

    async def complete(self, session: aiohttp.ClientSession, req: ChatRequest, model: ModelSpec, *,
                       timeout: float | None = None) -> Response:
        resp = await super().complete(session, req, model, timeout=timeout)
        return self.finish_response(resp, req, model)

    # ------------------------------------------------------------------ errors

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes, model: ModelSpec
                       ) -> ProviderError:
        parsed: Any = None
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            text = redact(body[:500].decode("utf-8", "replace"), self.provider.secrets()) if body else ""
            kind = _TYPE_CLASSES[_STATUS_TYPES[status]] if status in _STATUS_TYPES else None
            return status_error(status, kind=kind, provider=self.provider.name, model=model.id, headers=headers,
                                body=text, message=f"HTTP {status}", request_id=_header(headers, "request-id"))
        return self.error_from_body(status, headers, parsed, model)

    def error_from_body(self, status: int | None, headers: Mapping[str, str] | None, data: Mapping[str, Any],
                        model: ModelSpec) -> ProviderError:
        """An Anthropic error object (HTTP body or stream ``error`` event) -> the typed error."""
        err = data.get("error")
        err = err if isinstance(err, Mapping) else {}
        etype = err.get("type") if isinstance(err.get("type"), str) else None
        details = err.get("details")
        code = details.get("error_code") if isinstance(details, Mapping) else None
        code = code if isinstance(code, str) else None
        if status is None:
            status = _TYPE_STATUS.get(etype or "", 500)
        kind: type[ProviderError] | None = _CODE_CLASSES.get(code or "")
        if kind is None and etype == "invalid_request_error" and status != 400:
            generic = class_for_status(status)
            kind = generic if issubclass(generic, BadRequestError) or status in (404, 409) else BadRequestError
        message = err.get("message") if isinstance(err.get("message"), str) else ""
        if kind is None and etype == "invalid_request_error" and status == 400 and CONTEXT_MESSAGE.search(message):
            kind = ContextWindowExceededError
        if kind is None:
            kind = _TYPE_CLASSES.get(etype or "")
        message = redact(message[:500], self.provider.secrets())
        request_id = _header(headers, "request-id") or (data.get("request_id") if isinstance(
            data.get("request_id"), str) else None)
        return status_error(status, kind=kind, message=message or (etype or f"HTTP {status}"),
                            provider=self.provider.name, model=model.id, headers=headers, body=dict(data),
                            error_type=etype, error_code=code, request_id=request_id)

    # ------------------------------------------------------------------ streaming

    def new_stream_decoder(self, model: ModelSpec, req: ChatRequest) -> StreamDecoder:
        return AnthropicStreamDecoder(self, model, forced_tool_name(req, model, self.provider))


class AnthropicStreamDecoder(StreamDecoder):
    """Messages SSE events -> ``StreamChunk``s. The final chunk (at ``message_stop``) carries the finish
    reason and the full usage, and in ``raw`` the matched ``stop_sequence`` (when one ended the answer) and,
    when the answer had thinking, ``thinking_blocks``: the blocks with their signatures, as non-streaming
    answers give them in ``provider_details``. Each thinking block also comes whole, as it closes, in a
    chunk of its own (``raw={"thinking_block": {...}}``, no text). ``ping`` and unknown events are ignored
    (the API may add event types)."""

    def __init__(self, adapter: AnthropicAdapter, model: ModelSpec, forced_tool: str | None = None) -> None:
        self._adapter = adapter
        self._model = model
        self._forced = forced_tool
        self._done = False
        self._started = False
        self._usage: dict[str, Any] | None = None
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._blocks: dict[int, str] = {}  # content index -> "text" | "tool" | "ours" | "thinking" | "other"
        self._tool_index: dict[int, int] = {}  # content index -> OpenAI-style tool call ordinal
        self._thinking: dict[int, dict[str, Any]] = {}  # content index -> thinking block, rebuilt from deltas
        self._user_tools = 0
        self._ours_seen = False
        self.message_id: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage_so_far(self) -> Usage | None:
        """``message_start``'s usage (the prompt's tokens), merged with any ``message_delta`` usage since."""
        return usage_from_wire(self._usage) if self._usage else None

    def _invalid(self, message: str) -> InvalidResponseError:
        return self._adapter._invalid(self._model, message)

    def feed(self, event: str | None, data: bytes) -> list[StreamChunk]:
        if self._done:
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._invalid(f"stream event {event or '?'} is not valid JSON") from None
        if not isinstance(obj, dict):
            raise self._invalid("stream event is not a JSON object")
        kind = obj.get("type") or event
        if kind == "error":
            raise self._adapter.error_from_body(None, None, obj, self._model)
        if kind == "message_start":
            return self._message_start(obj)
        if not self._started and kind in ("content_block_start", "content_block_delta", "message_delta",
                                          "message_stop"):
            raise self._invalid(f"stream event {kind} before message_start")
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_delta":
            return self._block_delta(obj)
        if kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason") is not None:
                self._stop_reason = str(delta["stop_reason"])
            if isinstance(delta, Mapping) and isinstance(delta.get("stop_sequence"), str):
                self._stop_sequence = delta["stop_sequence"]
            usage = obj.get("usage")
            if isinstance(usage, Mapping):
                self._usage = {**(self._usage or {}), **{k: v for k, v in usage.items() if v is not None}}
            return []
        if kind == "message_stop":
            self._done = True
            return [self._final()]
        if kind == "content_block_stop":
            return self._block_stop(obj)
        return []  # ping, and event types added later

    def close(self) -> list[StreamChunk]:
        if not self._done:
            raise self._invalid("stream ended without message_stop")
        return []

    # ---------------------------------------------------------------- events

    def _message_start(self, obj: Mapping[str, Any]) -> list[StreamChunk]:
        message = obj.get("message")
        if not isinstance(message, Mapping):
            raise self._invalid("message_start without a message")
        self._started = True
        self.message_id = message.get("id") if isinstance(message.get("id"), str) else None
        usage = message.get("usage")
        if isinstance(usage, Mapping):
            self._usage = {k: v for k, v in usage.items() if v is not None}
        return []

    def _block_start(self, obj: Mapping[str, Any]) -> list[StreamChunk]:
        index = obj.get("index")
        block = obj.get("content_block")
        if not isinstance(index, int) or not isinstance(block, Mapping):
            raise self._invalid("content_block_start without index or content_block")
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = "text"
            text = block.get("text")
            if text and not self._forced:
                return [StreamChunk(delta=str(text))]
            return []
        if kind == "tool_use":
            name = str(block.get("name") or "")
            initial = block.get("input")
            initial_json = orjson.dumps(initial).decode() if isinstance(initial, dict) and initial else ""
            if self._forced is not None and name == self._forced:
                self._blocks[index] = "ours"
                self._ours_seen = True
                return [StreamChunk(delta=initial_json)] if initial_json else []
            self._blocks[index] = "tool"
            ordinal = self._user_tools
            self._user_tools += 1
            self._tool_index[index] = ordinal
            return [StreamChunk(tool_calls=[ToolCallDelta(index=ordinal, id=str(block.get("id") or ""), name=name,
                                                          arguments=initial_json)])]
        if kind in ("thinking", "redacted_thinking"):
            self._blocks[index] = "thinking"
            self._thinking[index] = dict(block)
            text = block.get("thinking")
            return [StreamChunk(reasoning_delta=str(text))] if text else []
        self._blocks[index] = "other"
        return []

    def _block_delta(self, obj: Mapping[str, Any]) -> list[StreamChunk]:
        index = obj.get("index")
        delta = obj.get("delta")
        if not isinstance(index, int) or not isinstance(delta, Mapping):
            raise self._invalid("content_block_delta without index or delta")
        block = self._blocks.get(index)
        if block is None:
            raise self._invalid(f"content_block_delta for unknown block {index}")
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if not isinstance(text, str):
                raise self._invalid("text_delta without text")
            return [StreamChunk(delta=text)] if text and not self._forced else []
        if kind == "input_json_delta":
            part = delta.get("partial_json")
            if not isinstance(part, str):
                raise self._invalid("input_json_delta without partial_json")
            if block == "ours":
                return [StreamChunk(delta=part)] if part else []
            if block == "tool":
                return [StreamChunk(tool_calls=[ToolCallDelta(index=self._tool_index[index], arguments=part)])]
            return []
        if kind == "thinking_delta":
            text = delta.get("thinking")
            if text and index in self._thinking:
                thinking = self._thinking[index]
                thinking["thinking"] = str(thinking.get("thinking") or "") + str(text)
            return [StreamChunk(reasoning_delta=str(text))] if text else []
        if kind == "signature_delta":
            signature = delta.get("signature")
            if not isinstance(signature, str):
                raise self._invalid("signature_delta without signature")
            if index in self._thinking:
                self._thinking[index]["signature"] = signature
            return []
        return []  # citations_delta, and delta types added later

    def _block_stop(self, obj: Mapping[str, Any]) -> list[StreamChunk]:
        """A thinking block, whole (text and signature, or the redacted data), as it closes: the signature
        arrives last, so this is the first moment the block can be echoed back."""
        index = obj.get("index")
        block = self._thinking.get(index) if isinstance(index, int) else None
        return [StreamChunk(raw={"thinking_block": dict(block)})] if block is not None else []

    def _final(self) -> StreamChunk:
        reason = finish_reason(self._stop_reason)
        if reason == "tool_calls" and self._ours_seen and self._user_tools == 0:
            reason = "stop"
        usage = usage_from_wire(self._usage) if self._usage is not None else None
        raw: dict[str, Any] = {}
        if self._thinking:
            raw["thinking_blocks"] = [self._thinking[i] for i in sorted(self._thinking)]
        if self._stop_sequence is not None:
            raw["stop_sequence"] = self._stop_sequence
        return StreamChunk(finish_reason=reason, usage=usage, raw=raw or None)
