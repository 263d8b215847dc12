"""Pure helpers for the OpenAI chat-completions wire format, shared by the OpenAI-compatible and Azure adapters.

Owns: cleaning messages for the wire, building the request body from OpenAI-named parameters (through
the catalog's parameter mappings), parsing chat and embedding bodies, normalizing usage and finish
reasons, the SSE stream decoder, and classifying error bodies by their *structured* ``code``/``type``
(never by their English message).

Must not touch: I/O, URLs and authentication headers (the adapters own those), logging configuration.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from modelplex.catalog.params import param_name, split_params
from modelplex.errors import (
    AuthenticationError,
    ContentPolicyError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    redact,
    status_error,
)
from modelplex.providers.base import StreamDecoder
from modelplex.types import (
    ChatRequest,
    EmbeddingResponse,
    Message,
    Response,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec

# ----------------------------------------------------------------------------------------- requests

MESSAGE_KEYS: frozenset[str] = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call",
     # vendor extensions callers pass on purpose: DeepSeek/Mistral prefix completion, DeepSeek reasoning
     "prefix", "reasoning_content"}
)
"""Message keys the chat-completions wire accepts; anything else is modelplex-side metadata and is dropped."""

CLIENT_ONLY_PARAMS: frozenset[str] = frozenset({"timeout"})
"""OpenAI-named parameters that govern the client, never the request body."""


def clean_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as the wire takes them. Messages that need no change are passed through unchanged."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.keys() <= MESSAGE_KEYS:
            out.append(m)  # type: ignore[arg-type]
        else:
            out.append({k: v for k, v in m.items() if k in MESSAGE_KEYS})
    return out


def _set_path(body: dict[str, Any], name: str, value: Any) -> None:
    """Set ``body[name]``; a dotted name (``metadata.user_id``) nests."""
    if "." not in name:
        body[name] = value
        return
    *parents, leaf = name.split(".")
    node = body
    for p in parents:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {}
            node[p] = child
        node = child
    node[leaf] = value


def build_chat_body(protocol: str, req: ChatRequest, spec: ModelSpec, *, model_field: str | None,
                    profile: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The chat-completions body for ``req``, and the names of the parameters dropped as unsupported.

    ``model_field`` is the body's ``model`` (``None`` omits it, as Azure's deployments path wants).
    Parameters are renamed through the catalog (``max_tokens`` -> ``max_completion_tokens`` for
    reasoning models, or the provider profile's ``max_tokens_param``). ``extra_body`` is merged last,
    verbatim. Streaming bodies ask for usage (``stream_options.include_usage``) unless the profile
    says ``stream_usage: false``.
    """
    kept, dropped = split_params(protocol, spec, req.params)
    body: dict[str, Any] = {}
    if model_field is not None:
        body["model"] = model_field
    body["messages"] = clean_messages(req.messages)
    extra = kept.pop("extra_body", None)
    dropped_names = list(dropped)
    max_tokens_param = profile.get("max_tokens_param")
    for key, value in kept.items():
        if key in CLIENT_ONLY_PARAMS:
            continue
        name = param_name(protocol, spec, key)
        if key == "max_tokens" and max_tokens_param and "max_tokens" not in spec.param_mappings:
            name = str(max_tokens_param)
        if name is None:
            dropped_names.append(key)
            continue
        _set_path(body, name, value)
    if req.stream:
        body["stream"] = True
        if profile.get("stream_usage", True):
            body["stream_options"] = {"include_usage": True}
    if isinstance(extra, Mapping):
        body.update(extra)
    return body, dropped_names


def build_embed_body(texts: list[str], params: Mapping[str, Any], *, model_field: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if model_field is not None:
        body["model"] = model_field
    body["input"] = texts
    if params.get("dimensions") is not None:
        body["dimensions"] = int(params["dimensions"])
    if params.get("user") is not None:
        body["user"] = params["user"]
    body["encoding_format"] = "float"
    extra = params.get("extra_body")
    if isinstance(extra, Mapping):
        body.update(extra)
    return body


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)


# ----------------------------------------------------------------------------------------- responses

_FINISH: dict[str, str] = {
    "stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop",
    "length": "length", "max_tokens": "length", "model_length": "length",
    "tool_calls": "tool_calls", "function_call": "tool_calls", "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


def normalize_finish(reason: Any, has_tool_calls: bool = False) -> str:
    """Map a wire finish reason onto ``types.FINISH_REASONS``.

    Some OpenAI-compatible servers (Ollama, older vLLM) say ``stop`` for a turn that made tool calls;
    that turn is reported as ``tool_calls``.
    """
    if reason is None:
        return "tool_calls" if has_tool_calls else "unknown"
    norm = _FINISH.get(str(reason), "unknown")
    if norm == "stop" and has_tool_calls:
        return "tool_calls"
    return norm


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


_DETAIL_KEYS: tuple[tuple[str, str, str], ...] = (
    ("prompt_tokens_details", "audio_tokens", "audio_input_tokens"),
    ("prompt_tokens_details", "image_tokens", "image_input_tokens"),
    ("completion_tokens_details", "audio_tokens", "audio_output_tokens"),
    ("completion_tokens_details", "accepted_prediction_tokens", "accepted_prediction_tokens"),
    ("completion_tokens_details", "rejected_prediction_tokens", "rejected_prediction_tokens"),
    ("completion_tokens_details", "image_tokens", "image_output_tokens"),
)


def parse_usage(u: Mapping[str, Any]) -> Usage:
    """OpenAI usage -> ``Usage``. ``prompt_tokens`` already includes cached tokens and
    ``completion_tokens`` already includes reasoning tokens, which is ``Usage``'s convention.

    Also reads DeepSeek's ``prompt_cache_hit_tokens``, OpenRouter's ``cost`` (-> ``provider_cost_usd``)
    and ``cache_write_tokens``; other vendor figures go to ``provider_details``.
    """
    ptd = u.get("prompt_tokens_details")
    ptd = ptd if isinstance(ptd, Mapping) else {}
    ctd = u.get("completion_tokens_details")
    ctd = ctd if isinstance(ctd, Mapping) else {}
    cached = _int(ptd.get("cached_tokens")) or _int(u.get("prompt_cache_hit_tokens"))
    cost = u.get("cost")
    details: dict[str, Any] = {}
    for section, key, out in _DETAIL_KEYS:
        src = ptd if section == "prompt_tokens_details" else ctd
        v = _int(src.get(key))
        if v:
            details[out] = v
    for key in ("cost_details", "is_byok"):
        if key in u and u[key] is not None:
            details[key] = u[key]
    prompt = _int(u.get("prompt_tokens"))
    completion = _int(u.get("completion_tokens"))
    reasoning = _int(ctd.get("reasoning_tokens"))
    if reasoning and _int(u.get("total_tokens")) == prompt + completion + reasoning:
        # a server that counts reasoning outside completion_tokens (its total gives it away)
        completion += reasoning
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cache_read_tokens=cached,
        cache_write_tokens=_int(ptd.get("cache_write_tokens")),
        reasoning_tokens=reasoning,
        provider_cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        provider_details=details,
    )


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # a few compatible servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def parse_tool_calls(message: Mapping[str, Any]) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for tc in message.get("tool_calls") or ():
        if not isinstance(tc, Mapping):
            continue
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):  # some servers send an object
            args = orjson.dumps(args).decode() if args is not None else ""
        calls.append(ToolCall(id=str(tc.get("id") or ""), name=str(fn.get("name") or ""), arguments=args))
    legacy = message.get("function_call")
    if not calls and isinstance(legacy, Mapping):
        calls.append(ToolCall(id="", name=str(legacy.get("name") or ""), arguments=str(legacy.get("arguments") or "")))
    return calls


def parse_chat(data: dict[str, Any], *, model_id: str, provider: str,
               invalid: Callable[[str], InvalidResponseError]) -> Response:
    """A chat-completions object -> ``Response`` (first choice). Raises ``invalid(...)`` when malformed."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise invalid("response has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise invalid("first choice has no message")
    tool_calls = parse_tool_calls(message)
    content = _content_text(message.get("content"))
    if content is None and isinstance(message.get("refusal"), str):
        content = message["refusal"]
    usage_raw = data.get("usage")
    usage = parse_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage()
    return Response(
        content=content,
        model=model_id,
        provider=provider,
        usage=usage,
        finish_reason=normalize_finish(choice.get("finish_reason"), bool(tool_calls)),
        tool_calls=tool_calls,
        provider_request_id=data.get("id") if isinstance(data.get("id"), str) else None,
        raw=data,
    )


def _decode_vector(value: Any) -> list[float] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, str):  # encoding_format=base64: little-endian float32
        floats = array("f")
        floats.frombytes(base64.b64decode(value))
        if sys.byteorder != "little":
            floats.byteswap()
        return floats.tolist()
    return None


def parse_embeddings(data: dict[str, Any], *, model_id: str, provider: str, expected: int,
                     invalid: Callable[[str], InvalidResponseError]) -> EmbeddingResponse:
    items = data.get("data")
    if not isinstance(items, list):
        raise invalid("embedding response has no data")
    ordered: list[tuple[int, list[float]]] = []
    for pos, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid("embedding item is not an object")
        vec = _decode_vector(item.get("embedding"))
        if vec is None:
            raise invalid("embedding item has no vector")
        idx = item.get("index")
        ordered.append((idx if isinstance(idx, int) else pos, vec))
    ordered.sort(key=lambda p: p[0])
    if len(ordered) != expected:
        raise invalid(f"expected {expected} embeddings, got {len(ordered)}")
    u = data.get("usage")
    prompt = _int(u.get("prompt_tokens")) if isinstance(u, Mapping) else 0
    cost = u.get("cost") if isinstance(u, Mapping) else None
    usage = Usage(input_tokens=prompt,
                  provider_cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool)
                  else None)
    return EmbeddingResponse(embeddings=[v for _, v in ordered], model=model_id, provider=provider, usage=usage)


# ----------------------------------------------------------------------------------------- errors

_CONTEXT_CODES = frozenset({"context_length_exceeded", "context_window_exceeded"})
_POLICY_CODES = frozenset({"content_filter", "content_policy_violation", "invalid_prompt",
                           "ResponsibleAIPolicyViolation"})
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "quota_exceeded"})
_NOT_FOUND_CODES = frozenset({"model_not_found", "DeploymentNotFound", "deployment_not_found"})
_RATE_CODES = frozenset({"rate_limit_exceeded", "rate_limit_error", "requests", "tokens"})
_AUTH_CODES = frozenset({"invalid_api_key", "authentication_error"})
_OVERLOADED_CODES = frozenset({"overloaded", "overloaded_error", "engine_overloaded", "server_overloaded"})

_MAX_MESSAGE = 1000


def error_object(body: bytes) -> dict[str, Any] | None:
    """The ``error`` object of an error body: ``{"error": {...}}``, ``{"error": "text"}``, or a flat
    ``{"object": "error", "message": ..., "code": ...}`` as vLLM sends. ``None`` when not JSON."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        return err
    if isinstance(err, str):
        return {"message": err}
    if "message" in data or "code" in data:
        return data
    return None


def _code_str(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value)


def kind_for(status: int | None, code: str | None, etype: str | None, inner: str | None
             ) -> type[ProviderError] | None:
    """The typed error a structured ``code``/``type`` (and Azure's ``innererror.code``) calls for;
    ``None`` leaves the decision to the HTTP status."""
    tags = {t for t in (code, etype, inner) if t}
    if tags & _CONTEXT_CODES:
        return ContextWindowExceededError
    if tags & _POLICY_CODES:
        return ContentPolicyError
    if tags & _QUOTA_CODES:
        return QuotaExceededError
    if tags & _NOT_FOUND_CODES:
        return NotFoundError
    if status is None or status < 400:
        # an in-band error (mid-stream, or OpenRouter's 200 with an error body): only the tags speak
        if tags & _RATE_CODES:
            return RateLimitError
        if tags & _AUTH_CODES:
            return AuthenticationError
        if tags & _OVERLOADED_CODES:
            return OverloadedError
        if "permission_denied" in tags:
            return PermissionDeniedError
        return ServerError
    if status == 503 or tags & _OVERLOADED_CODES:
        return OverloadedError
    return None


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    v = headers.get(name)
    if v is not None:
        return v
    lname = name.lower()
    for k, val in headers.items():
        if k.lower() == lname:
            return val
    return None


def request_id_of(headers: Mapping[str, str] | None) -> str | None:
    return header(headers, "x-request-id") or header(headers, "apim-request-id")


def classify(status: int | None, headers: Mapping[str, str] | None, err: dict[str, Any] | None, *,
             provider: str, model: str, secrets: Iterable[str]) -> ProviderError:
    """Build the typed error for an error object (``None`` when the body was not JSON).

    ``status`` is ``None`` for an in-band error (an ``{"error": ...}`` event mid-stream); a numeric
    ``code`` (OpenRouter) or ``status`` field in the object then stands in for it.
    The kept message and body are redacted of every credential.
    """
    err = err or {}
    code = _code_str(err.get("code"))
    etype = _code_str(err.get("type"))
    inner_obj = err.get("innererror")
    inner = _code_str(inner_obj.get("code")) if isinstance(inner_obj, dict) else None
    secrets = list(secrets)
    if status is None or status < 400:
        for candidate in (err.get("code"), err.get("status")):
            if isinstance(candidate, int) and not isinstance(candidate, bool) and candidate >= 400:
                status = candidate
                break
            if isinstance(candidate, str) and candidate.isdigit() and int(candidate) >= 400:
                status = int(candidate)
                break
    kind = kind_for(status, code, etype, inner)
    message = err.get("message")
    text = redact(str(message), secrets)[:_MAX_MESSAGE] if message else ""
    safe_body: dict[str, Any] | None = None
    if err:
        safe_body = _redacted({k: v for k, v in err.items() if k != "message"}, secrets)
        if text:
            safe_body["message"] = text
    rid = request_id_of(headers)
    if status is None or status < 400:
        cls = kind or ServerError
        return cls(text, provider=provider, model=model, request_id=rid, body=safe_body,
                   error_type=etype, error_code=code)
    return status_error(status, kind=kind, message=text, provider=provider, model=model, headers=headers or {},
                        body=safe_body, error_type=etype, error_code=code or inner, request_id=rid)


def _redacted(obj: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    text = orjson.dumps(obj, default=str).decode()
    clean = redact(text, secrets)
    if clean == text:
        return obj
    try:
        out = orjson.loads(clean)
    except orjson.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


# ----------------------------------------------------------------------------------------- streams

Classifier = Callable[[dict[str, Any]], ProviderError]


class OpenAIStreamDecoder(StreamDecoder):
    """Chat-completions SSE -> ``StreamChunk``s.

    Each ``data: {chat.completion.chunk}`` event becomes at most one chunk (first choice only); the
    usage chunk (``choices: []``, sent when ``include_usage`` was asked) becomes ``StreamChunk(usage=...)``;
    ``data: [DONE]`` ends the stream. An ``{"error": ...}`` event raises the classified error. ``close``
    raises ``InvalidResponseError`` when the stream stopped with neither ``[DONE]`` nor a finish reason.
    """

    __slots__ = ("_classify", "_done", "_finished", "_invalid", "_saw_tool_calls")

    def __init__(self, classify_event: Classifier, invalid: Callable[[str], InvalidResponseError]) -> None:
        self._classify = classify_event
        self._invalid = invalid
        self._done = False
        self._finished = False
        self._saw_tool_calls = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: bytes) -> list[StreamChunk]:
        if self._done:
            return []
        if data.strip() == b"[DONE]":
            self._done = True
            return []
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise self._invalid("stream event is not valid JSON") from None
        if not isinstance(obj, dict):
            raise self._invalid("stream event is not a JSON object")
        err = obj.get("error")
        if err is not None or event == "error":
            raise self._classify(err if isinstance(err, dict) else {"message": str(err or obj)})
        chunk = self._chunk(obj)
        return [chunk] if chunk is not None else []

    def _chunk(self, obj: dict[str, Any]) -> StreamChunk | None:
        delta_text = ""
        reasoning = ""
        tool_deltas: list[ToolCallDelta] = []
        finish: str | None = None
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    content = delta.get("content")
                    if isinstance(content, str):
                        delta_text = content
                    r = delta.get("reasoning_content") or delta.get("reasoning")
                    if isinstance(r, str):
                        reasoning = r
                    for tc in delta.get("tool_calls") or ():
                        if not isinstance(tc, dict):
                            continue
                        fn = tc.get("function") or {}
                        args = fn.get("arguments")
                        tool_deltas.append(ToolCallDelta(
                            index=_int(tc.get("index")), id=tc.get("id") or None, name=fn.get("name") or None,
                            arguments=args if isinstance(args, str) else ("" if args is None else
                                                                          orjson.dumps(args).decode()),
                        ))
                if tool_deltas:
                    self._saw_tool_calls = True
                reason = choice.get("finish_reason")
                if reason is not None:
                    finish = normalize_finish(reason, self._saw_tool_calls)
                    self._finished = True
        usage_raw = obj.get("usage")
        if not isinstance(usage_raw, Mapping):
            x_groq = obj.get("x_groq")
            usage_raw = x_groq.get("usage") if isinstance(x_groq, Mapping) else None
        usage = parse_usage(usage_raw) if isinstance(usage_raw, Mapping) else None
        if not (delta_text or reasoning or tool_deltas or finish or usage):
            return None
        return StreamChunk(delta=delta_text, tool_calls=tool_deltas, finish_reason=finish, usage=usage,
                           reasoning_delta=reasoning)

    def close(self) -> list[StreamChunk]:
        if not self._done and not self._finished:
            raise self._invalid("stream ended without [DONE] or a finish reason")
        return []
