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
from types import MappingProxyType
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
from modelplex.providers.base import StreamDecoder, load_json_object
from modelplex.types import (
    ChatRequest,
    EmbeddingResponse,
    Message,
    Response,
    StreamChunk,
    TokenLogprobs,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, with the plain ``dict`` orjson gives (and ``None``) decided first:
    the ABC check costs several times a type comparison."""
    if type(value) is dict:
        return True
    return value is not None and isinstance(value, Mapping)


# ----------------------------------------------------------------------------------------- requests

MESSAGE_KEYS: frozenset[str] = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call",
     # vendor extensions callers pass on purpose: DeepSeek/Mistral prefix completion, DeepSeek reasoning
     "prefix", "reasoning_content"}
)
"""Message keys the chat-completions wire accepts; anything else is modelplex-side metadata and is dropped."""

CLIENT_ONLY_PARAMS: frozenset[str] = frozenset({"timeout"})
"""OpenAI-named parameters that govern the client, never the request body."""


def clean_messages(messages: list[Message], *, cache_control: bool = False) -> list[dict[str, Any]]:
    """The messages as the wire takes them. Messages that need no change are passed through unchanged.

    ``cache_control`` marks (Anthropic's prompt-caching breakpoints) are kept only for a vendor whose
    profile says it takes them (``cache_control: true``, as OpenRouter does), on content parts, where
    such vendors read them: a mark on a message itself moves to its last part. Otherwise they are
    removed, since strict OpenAI-compatible servers answer 400 to the unknown key, and a content list
    left with text parts only is sent as one string (as Anthropic-style callers' cached system prompts
    would have been without the mark)."""
    keep = MESSAGE_KEYS.issuperset
    return [m if keep(m) and (type(c := m.get("content")) is not list or not _has_marked_parts(c))
            else _wire_message(m, cache_control) for m in messages]


def _has_marked_parts(content: Any) -> bool:
    if type(content) is not list:
        return False
    for p in content:
        if "cache_control" in p if type(p) is dict else _is_mapping(p) and "cache_control" in p:
            return True
    return False


def _wire_message(m: Message, cache_control: bool) -> dict[str, Any]:
    """``m`` with only the wire's keys, its ``cache_control`` marks kept on parts or removed (see above)."""
    out = {k: v for k, v in m.items() if k in MESSAGE_KEYS}
    content = out.get("content")
    if cache_control:
        mark = m.get("cache_control")
        if mark is not None and isinstance(content, str) and content:
            out["content"] = [{"type": "text", "text": content, "cache_control": mark}]
        elif mark is not None and type(content) is list and content and _is_mapping(content[-1]):
            out["content"] = [*content[:-1], {**content[-1], "cache_control": mark}]
        return out
    if _has_marked_parts(content):
        parts = [{k: v for k, v in p.items() if k != "cache_control"} if _is_mapping(p) else p for p in content]
        if all(_is_mapping(p) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in parts):
            out["content"] = "\n\n".join(p["text"] for p in parts)
        else:
            out["content"] = parts
    return out


def _uncached_tools(tools: Any) -> Any:
    """``tools`` without Anthropic's ``cache_control`` marks (see ``clean_messages``)."""
    if type(tools) is not list or not any(_is_mapping(t) and "cache_control" in t for t in tools):
        return tools
    return [{k: v for k, v in t.items() if k != "cache_control"} if _is_mapping(t) else t for t in tools]


def set_path(body: dict[str, Any], name: str, value: Any) -> None:
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
    body: dict[str, Any] = {}
    if model_field is not None:
        body["model"] = model_field
    caching = bool(profile.get("cache_control", False))
    body["messages"] = clean_messages(req.messages, cache_control=caching)
    dropped_names: list[str] = []
    extra: Any = None
    if req.params or spec.default_params:  # with neither there is nothing to place
        extra = _place_params(body, protocol, req.params, spec, profile, dropped_names)
        if not caching and "tools" in body:
            body["tools"] = _uncached_tools(body["tools"])
    if req.stream:
        body["stream"] = True
        if profile.get("stream_usage", True):
            body["stream_options"] = {"include_usage": True}
    if _is_mapping(extra):
        body.update(extra)
    return body, dropped_names


def _place_params(body: dict[str, Any], protocol: str, params: Mapping[str, Any], spec: ModelSpec,
                  profile: Mapping[str, Any], dropped_names: list[str]) -> Any:
    """Put the supported parameters (with the model's defaults) into ``body`` under their wire names;
    append the names of the unsupported ones to ``dropped_names``. Returns ``extra_body`` (or ``None``)."""
    kept, dropped = split_params(protocol, spec, params)
    extra = kept.pop("extra_body", None)
    dropped_names.extend(dropped)
    max_tokens_param = profile.get("max_tokens_param")
    for key, value in kept.items():
        if key in CLIENT_ONLY_PARAMS:
            continue
        name = param_name(protocol, spec, key)
        if key == "max_tokens" and max_tokens_param and "max_tokens" not in spec.param_mappings:
            name = str(max_tokens_param)
        if name is None:
            dropped_names.append(key)
        elif "." in name:
            set_path(body, name, value)
        else:
            body[name] = value
    return extra


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


dumps: Callable[[Any], bytes] = orjson.dumps
"""A body as JSON bytes (``orjson.dumps`` itself: a wrapper would add a Python call per request)."""


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
    norm = _FINISH.get(reason if type(reason) is str else str(reason), "unknown")
    if norm == "stop" and has_tool_calls:
        return "tool_calls"
    return norm


def _int(value: Any) -> int:
    """A token figure as an ``int``: floats truncate; bools, strings and anything else count 0."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def _count(section: Mapping[str, Any], key: str) -> int:
    """``_int(section.get(key))``, without the second call for the plain ``int`` a JSON body carries."""
    value = section.get(key)
    return value if type(value) is int else _int(value)


_EMPTY: Mapping[str, Any] = MappingProxyType({})

_PROMPT_DETAIL_KEYS: tuple[tuple[str, str], ...] = (
    ("audio_tokens", "audio_input_tokens"),
    ("image_tokens", "image_input_tokens"),
)
"""``prompt_tokens_details`` figures kept in ``provider_details`` (wire name, our name), in order."""

_COMPLETION_DETAIL_KEYS: tuple[tuple[str, str], ...] = (
    ("audio_tokens", "audio_output_tokens"),
    ("accepted_prediction_tokens", "accepted_prediction_tokens"),
    ("rejected_prediction_tokens", "rejected_prediction_tokens"),
    ("image_tokens", "image_output_tokens"),
)
"""``completion_tokens_details`` figures kept in ``provider_details`` (wire name, our name), in order."""

_PASSED_THROUGH: tuple[str, ...] = ("cost_details", "is_byok")
"""OpenRouter usage fields copied verbatim into ``provider_details`` when present and not null."""


def _usage_details(u: Mapping[str, Any], ptd: Mapping[str, Any], ctd: Mapping[str, Any]) -> dict[str, Any]:
    """``provider_details`` of a usage object: the non-zero detail figures, then OpenRouter's extras."""
    details: dict[str, Any] = {}
    if ptd:
        for key, out in _PROMPT_DETAIL_KEYS:
            v = _count(ptd, key)
            if v:
                details[out] = v
    if ctd:
        for key, out in _COMPLETION_DETAIL_KEYS:
            v = _count(ctd, key)
            if v:
                details[out] = v
    for key in _PASSED_THROUGH:
        v = u.get(key)
        if v is not None:
            details[key] = v
    return details


def _cost(value: Any) -> float | None:
    """A provider-reported cost as a float; ``None`` unless it is a number (bools are not)."""
    if value is None or isinstance(value, bool):
        return None
    return float(value) if isinstance(value, int | float) else None


_PLAIN_USAGE_KEYS: frozenset[str] = frozenset(
    {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details"}
)
"""The keys of a usage object without vendor extras (no cost, no DeepSeek cache figures, no OpenRouter fields)."""


def _adds_nothing(section: Any) -> bool:
    """True when a details section cannot contribute a figure: absent, null, or a ``dict`` whose values are
    all falsy (``0``, ``null`` ...), each of which ``_int`` counts as 0."""
    if not section:
        return True
    return type(section) is dict and not any(section.values())


def parse_usage(u: Mapping[str, Any]) -> Usage:
    """OpenAI usage -> ``Usage``. ``prompt_tokens`` already includes cached tokens and
    ``completion_tokens`` already includes reasoning tokens, which is ``Usage``'s convention.

    Also reads DeepSeek's ``prompt_cache_hit_tokens``, OpenRouter's ``cost`` (-> ``provider_cost_usd``)
    and ``cache_write_tokens``; other vendor figures go to ``provider_details``.

    The common shape, plain counts with all-zero (or no) details as OpenAI and most compatible servers
    send, takes a short path; it yields exactly what ``_parse_usage_full`` would.
    """
    if (type(u) is dict and u.keys() <= _PLAIN_USAGE_KEYS and _adds_nothing(u.get("prompt_tokens_details"))
            and _adds_nothing(u.get("completion_tokens_details"))):
        # positional, in Usage's field order: a keyword call to a dataclass costs about twice as much
        return Usage(_count(u, "prompt_tokens"), _count(u, "completion_tokens"), 0, 0, 0, None, False, {})
    return _parse_usage_full(u)


def _parse_usage_full(u: Mapping[str, Any]) -> Usage:
    """``parse_usage`` for any usage object: details, vendor cache figures, cost and extras."""
    ptd = u.get("prompt_tokens_details")
    if not _is_mapping(ptd):
        ptd = _EMPTY
    ctd = u.get("completion_tokens_details")
    if not _is_mapping(ctd):
        ctd = _EMPTY
    prompt = _count(u, "prompt_tokens")
    completion = _count(u, "completion_tokens")
    reasoning = _count(ctd, "reasoning_tokens") if ctd else 0
    if reasoning and _count(u, "total_tokens") == prompt + completion + reasoning:
        # a server that counts reasoning outside completion_tokens (its total gives it away)
        completion += reasoning
    cached = (_count(ptd, "cached_tokens") if ptd else 0) or _count(u, "prompt_cache_hit_tokens")
    cache_write = _count(ptd, "cache_write_tokens") if ptd else 0
    return Usage(prompt, completion, cached, cache_write, reasoning, _cost(u.get("cost")), False,
                 _usage_details(u, ptd, ctd))


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # a few compatible servers answer with content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def parse_tool_calls(message: Mapping[str, Any]) -> list[ToolCall]:
    """The message's ``tool_calls`` (entries that are not objects are skipped), else its legacy
    ``function_call``; ``[]`` straight away for a message with neither."""
    raw = message.get("tool_calls")
    legacy = message.get("function_call")
    if not raw and legacy is None:
        return []
    calls: list[ToolCall] = []
    for tc in raw or ():
        if not _is_mapping(tc):
            continue
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):  # some servers send an object
            args = orjson.dumps(args).decode() if args is not None else ""
        calls.append(ToolCall(id=str(tc.get("id") or ""), name=str(fn.get("name") or ""), arguments=args))
    if not calls and _is_mapping(legacy):
        calls.append(ToolCall(id="", name=str(legacy.get("name") or ""), arguments=str(legacy.get("arguments") or "")))
    return calls


def parse_chat(data: dict[str, Any], *, model_id: str, provider: str,
               invalid: Callable[[str], InvalidResponseError]) -> Response:
    """A chat-completions object -> ``Response`` (first choice). Raises ``invalid(...)`` when malformed.

    ``message.refusal`` goes to ``Response.refusal`` (never into ``content``); ``choices[0].logprobs`` to
    ``Response.logprobs``."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise invalid("response has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise invalid("first choice has no message")
    tool_calls = parse_tool_calls(message) if "tool_calls" in message or "function_call" in message else []
    content = message.get("content")
    if content is not None and type(content) is not str:  # content parts, or whatever else a server sent
        content = _content_text(content)
    usage_raw = data.get("usage")
    usage = parse_usage(usage_raw) if _is_mapping(usage_raw) else Usage()
    finish = normalize_finish(choice.get("finish_reason"), bool(tool_calls))
    # the leading fields positionally and the rest set after: keyword calls to a dataclass cost twice as much
    resp = Response(content, model_id, provider, usage, finish, tool_calls)
    rid = data.get("id")
    resp.provider_request_id = rid if isinstance(rid, str) else None
    resp.raw = data
    refusal = message.get("refusal")
    if refusal and type(refusal) is str:  # the refusal stays apart from content, as OpenAI's SDK reads it
        resp.refusal = refusal
    logprobs = choice.get("logprobs")
    if logprobs is not None:
        resp.logprobs = parse_logprobs(logprobs)
    return resp


def _token_list(value: Any) -> list[dict[str, Any]] | None:
    return [t for t in value if _is_mapping(t)] if isinstance(value, list) else None


def parse_logprobs(value: Any) -> TokenLogprobs | None:
    """A choice's ``logprobs`` object as ``{"content": [...] | None, "refusal": [...] | None}`` (token entries
    that are not objects are skipped); ``None`` when it has neither list."""
    if not _is_mapping(value):
        return None
    content = _token_list(value.get("content"))
    refusal = _token_list(value.get("refusal"))
    if content is None and refusal is None:
        return None
    return {"content": content, "refusal": refusal}


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
    ``delta.refusal`` pieces become ``refusal_delta`` and a choice's ``logprobs`` the chunk's ``logprobs``;
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
        obj = load_json_object(data, self._invalid, what="stream event")
        err = obj.get("error")
        if err is not None or event == "error":
            raise self._classify(err if isinstance(err, dict) else {"message": str(err or obj)})
        chunk = self._chunk(obj)
        return [chunk] if chunk is not None else []

    def _chunk(self, obj: dict[str, Any]) -> StreamChunk | None:
        delta_text = ""
        reasoning = ""
        refusal = ""
        logprobs: TokenLogprobs | None = None
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
                    rf = delta.get("refusal")
                    if isinstance(rf, str):
                        refusal = rf
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
                if choice.get("logprobs") is not None:
                    logprobs = parse_logprobs(choice["logprobs"])
                reason = choice.get("finish_reason")
                if reason is not None:
                    finish = normalize_finish(reason, self._saw_tool_calls)
                    self._finished = True
        usage_raw = obj.get("usage")
        if not _is_mapping(usage_raw):
            x_groq = obj.get("x_groq")
            usage_raw = x_groq.get("usage") if _is_mapping(x_groq) else None
        usage = parse_usage(usage_raw) if _is_mapping(usage_raw) else None
        if not (delta_text or reasoning or refusal or tool_deltas or finish or usage or logprobs):
            return None
        chunk = StreamChunk(delta=delta_text, tool_calls=tool_deltas, finish_reason=finish, usage=usage,
                            reasoning_delta=reasoning)
        if refusal or logprobs:
            chunk.refusal_delta = refusal
            chunk.logprobs = logprobs
        return chunk

    def close(self) -> list[StreamChunk]:
        if not self._done and not self._finished:
            raise self._invalid("stream ended without [DONE] or a finish reason")
        return []
