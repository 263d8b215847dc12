"""The Gemini API protocol (Google AI Studio, ``generativelanguage.googleapis.com/v1beta``).

Owns: ``GeminiAdapter`` (protocol ``"gemini"``): pure conversion of OpenAI-shaped requests into
``models/{m}:generateContent`` / ``:streamGenerateContent?alt=sse`` / ``:embedContent`` /
``:batchEmbedContents`` bodies, parsing of ``GenerateContentResponse`` objects (whole and streamed),
and classification of Google's ``{"error": {"code", "status", "details"}}`` bodies.

Decisions (documented here because they are choices, not facts of the API):

* The key travels in the ``x-goog-api-key`` header, never in the URL.
* Schemas go out as JSON Schema (``responseJsonSchema``, ``parametersJsonSchema``), pruned to the
  keywords Gemini documents. A model whose catalog entry sets ``api_requirements.schema_dialect:
  openapi`` gets the older OpenAPI-subset ``responseSchema``/``parameters`` instead ($refs inlined,
  ``["T", "null"]`` -> ``nullable``).
* ``reasoning_effort`` (models with the ``reasoning`` capability only) becomes
  ``thinkingConfig.thinkingBudget`` — none 0, minimal 512, low 1024, medium 8192, high 24576,
  xhigh 32768 (override per model with ``api_requirements.thinking_budgets``), clamped to the model's
  documented ``api_requirements.thinking_budget_range`` (2.5 Pro cannot turn thinking off: 128-32768;
  2.5 Flash: 0-24576) — or, when ``api_requirements.thinking: level`` (Gemini 3 and later),
  ``thinkingConfig.thinkingLevel`` (none/minimal MINIMAL, low LOW, medium MEDIUM, high/xhigh HIGH; override
  per model with ``api_requirements.thinking_levels``). Unless the effort is ``none``, ``includeThoughts``
  asks for thought summaries, which reach callers as ``StreamChunk.reasoning_delta`` and
  ``usage.provider_details["thoughts"]``.
* Tool-call ids: Gemini's ``functionCall`` usually has no id, so ids are ``call_<responseId>_<n>`` (n counts
  the calls in one response; the response id keeps ids unique across the turns of a conversation, a random
  token stands in when a response has none). A ``thoughtSignature`` on the call (Gemini 3 requires it back
  on the next turn) is carried inside the id after ``__thought__`` and restored on the way out. Ids are
  never sent back; Gemini pairs ``functionResponse`` parts with calls by name and order.
* A prompt blocked by ``promptFeedback.blockReason`` (HTTP 200, no candidates) is returned as an empty
  response with ``finish_reason="content_filter"``; the reason is in ``usage.provider_details``.
* Errors: ``RESOURCE_EXHAUSTED`` is a ``RateLimitError`` unless a structured ``QuotaFailure`` detail
  names a per-day quota (``quotaId`` containing ``PerDay``), which no short wait fixes: then it is a
  ``QuotaExceededError``. ``ErrorInfo.reason`` ``API_KEY_INVALID`` (sent with a 400) is an
  ``AuthenticationError``. A too-long prompt is a plain 400 ``INVALID_ARGUMENT`` with no structured
  code; its message ("The input token count (N) exceeds the maximum number of tokens allowed (M)"),
  read only on that status, makes it a ``ContextWindowExceededError``, so the router can fall over to a
  larger window. ``RetryInfo`` supplies ``retry_after`` when no header does. No other decision reads
  the message.
* Embeddings: one input -> ``:embedContent``; several -> ``:batchEmbedContents``. Gemini reports no
  token usage for embeddings, so usage is counted locally and flagged ``estimated``.

Must not touch: sockets (``base.Adapter`` does the I/O), retries, fallbacks, accounting.
Credentials never reach URLs, logs, exception text or ``repr``.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote_to_bytes

import orjson

from modelplex.catalog.params import param_name, split_params
from modelplex.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    ProviderNotConfiguredError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    redact,
    status_error,
)
from modelplex.providers.base import Adapter, StreamDecoder, WireRequest, add_turn
from modelplex.types import (
    ChatRequest,
    EmbeddingResponse,
    EmbedRequest,
    Message,
    Response,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec

log = logging.getLogger(__name__)

BadRequestFactory = Callable[[str], BadRequestError]
"""Builds the ``BadRequestError`` a request that cannot be expressed on the wire raises before sending."""
Invalid = Callable[[str], InvalidResponseError]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
THOUGHT_SEP = "__thought__"
"""Separates a synthesized tool-call id from the call's ``thoughtSignature``."""
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")

THINKING_BUDGETS: Mapping[str, int] = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192,
                                       "high": 24576, "xhigh": 32768}
THINKING_LEVELS: Mapping[str, str] = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW",
                                      "medium": "MEDIUM", "high": "HIGH", "xhigh": "HIGH"}
"""Gemini 3's levels are MINIMAL, LOW, MEDIUM and HIGH; a model that lacks one or has more says so in
``api_requirements.thinking_levels``."""

FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MALFORMED_RESPONSE": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
}
"""Gemini ``finishReason`` -> normalized finish reason; anything else is ``unknown``."""

CONTEXT_MESSAGE = re.compile(r"input token count \(\d+\) exceeds the maximum number of tokens|exceeds the "
                             r"maximum number of tokens allowed", re.IGNORECASE)
"""The message of the 400 ``INVALID_ARGUMENT`` a prompt longer than the window gets."""

STATUS_KINDS: Mapping[str, type[ProviderError]] = {
    "INVALID_ARGUMENT": BadRequestError,
    "FAILED_PRECONDITION": BadRequestError,
    "OUT_OF_RANGE": BadRequestError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "ABORTED": ConflictError,
    "RESOURCE_EXHAUSTED": RateLimitError,
    "UNAVAILABLE": OverloadedError,
    "INTERNAL": ServerError,
    "UNKNOWN": ServerError,
    "DATA_LOSS": ServerError,
    "DEADLINE_EXCEEDED": ServerError,
}
"""google.rpc ``status`` -> error class (the HTTP status decides when the body has none)."""

AUTH_REASONS: frozenset[str] = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "ACCESS_TOKEN_EXPIRED",
                                          "ACCESS_TOKEN_INVALID", "CREDENTIALS_MISSING"})
"""``ErrorInfo.reason`` values that mean the credential itself is bad, whatever the HTTP status."""

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_MAX_MESSAGE = 500

_GEN_PARAMS: tuple[str, ...] = ("temperature", "top_p", "top_k", "max_tokens", "stop", "n", "seed",
                                "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs")
"""OpenAI-named parameters that land in ``generationConfig`` under their (camelCased) Gemini name."""

_JSON_SCHEMA_KEYS: frozenset[str] = frozenset({
    "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum", "items",
    "prefixItems", "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf", "properties",
    "additionalProperties", "required", "propertyOrdering",
})
"""The JSON Schema keywords ``responseJsonSchema`` documents; others are pruned."""

_OPENAPI_KEYS: frozenset[str] = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
    "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example", "anyOf",
    "propertyOrdering", "default", "items", "minimum", "maximum",
})
"""Fields of Gemini's OpenAPI-subset ``Schema`` object."""


# ============================================================================ adapter


class GeminiAdapter(Adapter):
    """Gemini ``generateContent`` chat, streaming, embeddings and a list-models health probe."""

    protocol: ClassVar[str] = "gemini"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.name!r}, base_url={self._root()!r})"

    # ------------------------------------------------------------------ URLs and headers

    def _root(self) -> str:
        """``{base_url}/v1beta`` (a base URL that already ends in the version is used as is)."""
        base = (self.provider.base_url or DEFAULT_BASE_URL).rstrip("/")
        return base if base.endswith("/" + API_VERSION) else f"{base}/{API_VERSION}"

    def model_path(self, model: ModelSpec) -> str:
        """``models/{name}`` (or a tuned model's own ``tunedModels/{name}``), escaped for a URL path."""
        name = model.api_model
        if name.startswith("models/"):
            name = name[len("models/"):]
        if "/" in name:  # tunedModels/xyz
            return "/".join(quote(seg, safe="") for seg in name.split("/"))
        return "models/" + quote(name, safe="")

    def resource_name(self, model: ModelSpec) -> str:
        """The ``model`` field batch requests carry: ``models/{name}``."""
        name = model.api_model
        return name if "/" in name else f"models/{name}"

    def headers(self, extra: Mapping[str, str] | None = None, *, json_body: bool = True) -> dict[str, str]:
        """Content type, the provider's and the request's extra headers, then the key (which they cannot
        replace)."""
        h: dict[str, str] = {}
        if json_body:
            h["Content-Type"] = "application/json"
        h.update(self.provider.extra_headers)
        if extra:
            h.update(extra)
        for k in [k for k in h if k.lower() in ("x-goog-api-key", "authorization")]:
            del h[k]
        key = self.provider.api_key
        if key:
            h["x-goog-api-key"] = key
        elif self.provider.spec is None or self.provider.spec.requires_key:
            envs = self.provider.spec.api_key_env if self.provider.spec is not None else ()
            raise ProviderNotConfiguredError(self.provider.name, envs or ("GEMINI_API_KEY", "GOOGLE_API_KEY"))
        return h

    # ------------------------------------------------------------------ chat

    def chat_to_wire(self, req: ChatRequest, model: ModelSpec) -> WireRequest:
        body = self.chat_body(req, model)
        action = "streamGenerateContent?alt=sse" if req.stream else "generateContent"
        url = f"{self._root()}/{self.model_path(model)}:{action}"
        return WireRequest("POST", url, self.headers(req.extra_headers), orjson.dumps(body))

    def chat_body(self, req: ChatRequest, model: ModelSpec) -> dict[str, Any]:
        """The ``GenerateContentRequest`` body for ``req`` (pure)."""
        params, dropped = split_params(self.protocol, model, req.params)
        if dropped:
            log.debug("%s: dropping parameters %s unsupported by %s", self.provider.name, sorted(dropped),
                      model.id)
        system, contents = to_contents(req.messages, self._bad_request(model))
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        openapi = model.api_requirements.get("schema_dialect") == "openapi"
        tools = params.get("tools")
        if tools:
            body["tools"] = to_tools(tools, openapi=openapi, bad=self._bad_request(model))
        choice = params.get("tool_choice")
        if choice is not None and (tools or choice == "none"):
            body["toolConfig"] = {"functionCallingConfig": to_tool_choice(choice, self._bad_request(model))}
        gen = self.generation_config(params, model, openapi=openapi)
        if gen:
            body["generationConfig"] = gen
        metadata = params.get("metadata")
        if isinstance(metadata, Mapping) and metadata and param_name(self.protocol, model, "metadata"):
            body["labels"] = {str(k): str(v) for k, v in metadata.items()}
        extra = params.get("extra_body")
        if isinstance(extra, Mapping):
            _deep_merge(body, extra)
        return body

    def generation_config(self, params: Mapping[str, Any], model: ModelSpec, *, openapi: bool = False
                          ) -> dict[str, Any]:
        gen: dict[str, Any] = {}
        for p in _GEN_PARAMS:
            value = params.get(p)
            if value is None:
                continue
            name = param_name(self.protocol, model, p)
            if not name:
                continue
            if p == "stop":
                value = [value] if isinstance(value, str) else list(value)
            gen[_camel(name)] = value
        fmt = params.get("response_format")
        if isinstance(fmt, Mapping):
            kind = fmt.get("type")
            if kind in ("json_object", "json_schema"):
                gen["responseMimeType"] = "application/json"
            if kind == "json_schema":
                spec = fmt.get("json_schema") or {}
                schema = spec.get("schema") if isinstance(spec, Mapping) else None
                if isinstance(schema, Mapping):
                    if openapi:
                        gen["responseSchema"] = to_openapi_schema(schema)
                    else:
                        gen["responseJsonSchema"] = clean_json_schema(schema)
        effort = params.get("reasoning_effort")
        if effort is not None and model.has("reasoning"):
            gen["thinkingConfig"] = thinking_config(str(effort), model, self._bad_request(model))
        return gen

    def chat_from_wire(self, payload: bytes, model: ModelSpec, headers: Mapping[str, str] | None = None
                       ) -> Response:
        data = self._json_object(payload, model)
        if isinstance(data.get("error"), Mapping):
            raise self._error_from_object(data, 0, headers or {}, model)
        return parse_response(data, model_id=model.id, provider=self.provider.name,
                              invalid=lambda m: self._invalid(model, m))

    def new_stream_decoder(self, model: ModelSpec, req: ChatRequest) -> StreamDecoder:
        return GeminiStreamDecoder(self, model)

    # ------------------------------------------------------------------ errors

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes, model: ModelSpec
                       ) -> ProviderError:
        try:
            data: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, Mapping):
            text = redact(body[:_MAX_MESSAGE].decode("utf-8", "replace"), self.provider.secrets())
            return status_error(status, message=text, provider=self.provider.name, model=model.id,
                                headers=headers, body=text or None)
        return self._error_from_object(data, status, headers, model)

    def _error_from_object(self, data: Mapping[str, Any], status: int, headers: Mapping[str, str],
                           model: ModelSpec) -> ProviderError:
        err = data.get("error")
        err = err if isinstance(err, Mapping) else {}
        code = err.get("code")
        if status < 400:  # an in-band error (a 200 body or a stream event): its own code is the status
            status = code if isinstance(code, int) and not isinstance(code, bool) and code >= 400 else 500
        gstatus = err.get("status") if isinstance(err.get("status"), str) else None
        details = [d for d in err.get("details") or () if isinstance(d, Mapping)]
        reason = next((d.get("reason") for d in details if d.get("@type") == _ERROR_INFO), None)
        kind = error_kind(gstatus, reason, details)
        secrets = self.provider.secrets()
        message = redact(str(err.get("message") or "")[:_MAX_MESSAGE], secrets)
        if kind in (None, BadRequestError) and gstatus == "INVALID_ARGUMENT" and CONTEXT_MESSAGE.search(message):
            kind = ContextWindowExceededError
        safe_body = _redact_obj(dict(data), secrets)
        exc = status_error(status, kind=kind, message=message, provider=self.provider.name, model=model.id,
                           headers=headers, body=safe_body, error_type=gstatus,
                           error_code=reason if isinstance(reason, str) else None)
        if exc.retry_after is None:
            exc.retry_after = retry_delay(details)
        return exc

    # ------------------------------------------------------------------ embeddings

    def embed_to_wire(self, req: EmbedRequest, model: ModelSpec) -> WireRequest:
        if not req.input:
            raise self._bad_request(model)("embedding request has no input")
        options = embed_options(req.params)
        root = f"{self._root()}/{self.model_path(model)}"
        if len(req.input) == 1:
            body: dict[str, Any] = {"model": self.resource_name(model),
                                    "content": {"parts": [{"text": req.input[0]}]}, **options}
            return WireRequest("POST", f"{root}:embedContent", self.headers(), orjson.dumps(body))
        requests = [{"model": self.resource_name(model), "content": {"parts": [{"text": t}]}, **options}
                    for t in req.input]
        return WireRequest("POST", f"{root}:batchEmbedContents", self.headers(),
                           orjson.dumps({"requests": requests}))

    def embed_from_wire(self, payload: bytes, model: ModelSpec, req: EmbedRequest) -> EmbeddingResponse:
        data = self._json_object(payload, model)
        vectors: list[list[float]]
        if isinstance(data.get("embedding"), Mapping):
            vectors = [_values(data["embedding"], lambda m: self._invalid(model, m))]
        elif isinstance(data.get("embeddings"), list):
            vectors = [_values(e, lambda m: self._invalid(model, m)) for e in data["embeddings"]]
        else:
            raise self._invalid(model, "embedding response has neither 'embedding' nor 'embeddings'")
        if len(vectors) != len(req.input):
            raise self._invalid(model, f"expected {len(req.input)} embeddings, got {len(vectors)}")
        meta = data.get("usageMetadata")
        prompt = meta.get("promptTokenCount") if isinstance(meta, Mapping) else None
        if isinstance(prompt, int):
            usage = Usage(input_tokens=prompt)
        else:
            from modelplex.catalog.tokens import count_text

            usage = Usage(input_tokens=sum(count_text(t, model).tokens for t in req.input), estimated=True)
        return EmbeddingResponse(embeddings=vectors, model=model.id, provider=self.provider.name, usage=usage)

    def health_to_wire(self) -> WireRequest:
        return WireRequest("GET", f"{self._root()}/models?pageSize=1", self.headers(json_body=False))

    # ------------------------------------------------------------------ helpers

    def _bad_request(self, model: ModelSpec) -> BadRequestFactory:
        provider = self.provider.name

        def bad(message: str) -> BadRequestError:
            return BadRequestError(message, provider=provider, model=model.id)

        return bad


# ============================================================================ streaming


class GeminiStreamDecoder(StreamDecoder):
    """Each SSE ``data:`` is a whole ``GenerateContentResponse``; the one with ``finishReason`` ends it."""

    def __init__(self, adapter: GeminiAdapter, model: ModelSpec) -> None:
        self._adapter = adapter
        self._model = model
        self._calls = 0
        self._id_prefix: str | None = None  # from the first chunk: each chunk carries the same responseId
        self._usage: Usage | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: bytes) -> Iterable[StreamChunk]:
        if self._done or not data.strip():
            return ()
        obj = self._adapter._json_object(data, self._model)
        if isinstance(obj.get("error"), Mapping):
            raise self._adapter._error_from_object(obj, 0, {}, self._model)
        usage = parse_usage(obj.get("usageMetadata"))
        if usage is not None:
            self._usage = usage
        candidates = obj.get("candidates")
        if not candidates:
            feedback = obj.get("promptFeedback")
            if isinstance(feedback, Mapping) and feedback.get("blockReason"):
                self._done = True
                blocked = self._usage or Usage()
                blocked.provider_details["block_reason"] = feedback["blockReason"]
                return (StreamChunk(finish_reason="content_filter", usage=blocked, raw=obj),)
            return ()
        cand = first_candidate(candidates)
        if cand is None:  # another candidate's chunk (n > 1): only the first is streamed to the caller
            return ()
        if self._id_prefix is None:
            self._id_prefix = call_id_prefix(obj)
        text, thoughts, calls = split_parts(cand, start=self._calls, id_prefix=self._id_prefix)
        deltas = [ToolCallDelta(index=self._calls + i, id=c.id, name=c.name, arguments=c.arguments)
                  for i, c in enumerate(calls)]
        self._calls += len(calls)
        chunk = StreamChunk(delta=text, reasoning_delta=thoughts, tool_calls=deltas, raw=obj)
        reason = cand.get("finishReason")
        if reason:
            chunk.finish_reason = finish_reason(reason, has_calls=self._calls > 0)
            chunk.usage = self._usage
            self._done = True
        if chunk.delta or chunk.reasoning_delta or chunk.tool_calls or chunk.finish_reason:
            return (chunk,)
        return ()

    def close(self) -> Iterable[StreamChunk]:
        if not self._done:
            raise self._adapter._invalid(self._model, "stream ended without a finishReason")
        return ()


# ============================================================================ pure conversions: requests


def to_contents(messages: Iterable[Message], bad: BadRequestFactory) -> tuple[list[dict[str, Any]],
                                                                          list[dict[str, Any]]]:
    """OpenAI-shaped messages -> (``systemInstruction`` parts, ``contents``).

    system/developer -> system parts; assistant -> role ``model``; user and tool -> role ``user``
    (a tool result is a ``functionResponse`` named after the call it answers). Consecutive contents
    of one role are merged, as Gemini expects strictly alternating turns.
    """
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        add_turn(contents, role, parts, "parts")

    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(p for p in content_parts(msg.get("content"), bad) if "text" in p)
        elif role == "user":
            add("user", content_parts(msg.get("content"), bad) or [{"text": ""}])
        elif role == "assistant":
            parts = [p for p in content_parts(msg.get("content"), bad) if p.get("text") != ""]
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                name = fn.get("name")
                if not name:
                    raise bad("assistant tool call without a function name")
                call_id = str(call.get("id") or "")
                names[call_id] = name
                part: dict[str, Any] = {"functionCall": {"name": name, "args": _arguments(fn.get("arguments"))}}
                signature = call_id.partition(THOUGHT_SEP)[2]
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            add("model", parts)
        elif role == "tool":
            call_id = str(msg.get("tool_call_id") or "")
            name = names.get(call_id) or msg.get("name")
            if not name:
                raise bad(f"tool message {call_id!r} answers no earlier tool call")
            add("user", [{"functionResponse": {"name": name, "response": tool_response(msg.get("content"))}}])
        else:
            raise bad(f"unsupported message role {role!r}")
    return system, contents


def content_parts(content: Any, bad: BadRequestFactory) -> list[dict[str, Any]]:
    """A message's content (string or OpenAI content parts) -> Gemini parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            parts.append({"text": p.get("text", "")})
        elif kind == "image_url":
            image = p.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            parts.append(media_part(str(url or ""), bad))
        elif kind == "input_audio":
            audio = p.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format', 'wav')}",
                                         "data": audio.get("data", "")}})
        elif kind == "file":
            file = p.get("file") or {}
            if file.get("file_data"):
                parts.append(media_part(str(file["file_data"]), bad))
            elif file.get("file_id"):
                parts.append({"fileData": {"fileUri": str(file["file_id"])}})
            else:
                raise bad("file content part has neither file_data nor file_id")
        else:
            raise bad(f"unsupported content part type {kind!r}")
    return parts


def media_part(url: str, bad: BadRequestFactory) -> dict[str, Any]:
    """A data URL -> ``inlineData``; any other URI -> ``fileData`` (MIME type guessed from the name)."""
    if url.startswith("data:"):
        mime_type, data = parse_data_url(url, bad)
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    if not url:
        raise bad("media part without a URL")
    file: dict[str, Any] = {"fileUri": url}
    guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
    if guessed:
        file["mimeType"] = guessed
    return {"fileData": file}


def parse_data_url(url: str, bad: BadRequestFactory) -> tuple[str, str]:
    """``data:<mime>[;base64],<data>`` -> (mime, base64 data)."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise bad("malformed data URL")
    meta = header[5:].split(";")
    mime = meta[0] or "application/octet-stream"
    if "base64" in meta[1:]:
        return mime, data.strip()
    return mime, base64.b64encode(unquote_to_bytes(data)).decode()


def tool_response(content: Any) -> dict[str, Any]:
    """A tool message's content -> ``functionResponse.response``: a JSON object as is; anything else
    (text, arrays, scalars) under ``result``."""
    text = content if isinstance(content, str) else (
        "".join(p.get("text", "") for p in content if isinstance(p, Mapping)) if content else "")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def to_tools(tools: Iterable[Mapping[str, Any]], *, openapi: bool, bad: BadRequestFactory) -> list[dict[str, Any]]:
    """OpenAI function tools -> one ``functionDeclarations`` tool; Gemini-native tools (dicts with no
    ``type``, e.g. ``{"googleSearch": {}}``) pass through."""
    declarations: list[dict[str, Any]] = []
    native: list[dict[str, Any]] = []
    for tool in tools:
        kind = tool.get("type")
        if kind is None:
            native.append(dict(tool))
            continue
        if kind != "function":
            raise bad(f"unsupported tool type {kind!r}")
        fn = tool.get("function") or {}
        if not fn.get("name"):
            raise bad("function tool without a name")
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, Mapping) and (params.get("properties") or params.get("type") not in (None, "object")):
            if openapi:
                decl["parameters"] = to_openapi_schema(params)
            else:
                decl["parametersJsonSchema"] = clean_json_schema(params)
        declarations.append(decl)
    out: list[dict[str, Any]] = [{"functionDeclarations": declarations}] if declarations else []
    return out + native


def to_tool_choice(choice: Any, bad: BadRequestFactory) -> dict[str, Any]:
    """OpenAI ``tool_choice`` -> ``functionCallingConfig``."""
    if choice == "auto":
        return {"mode": "AUTO"}
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "required":
        return {"mode": "ANY"}
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise bad(f"unsupported tool_choice {choice!r}")


def thinking_config(effort: str, model: ModelSpec, bad: BadRequestFactory) -> dict[str, Any]:
    """``reasoning_effort`` -> ``thinkingConfig`` (see the module docstring for the mapping)."""
    effort = effort.lower()
    thoughts = {"includeThoughts": True} if effort != "none" else {}
    if model.api_requirements.get("thinking") == "level":
        levels = {**THINKING_LEVELS, **(model.api_requirements.get("thinking_levels") or {})}
        if effort not in levels:
            raise bad(f"unsupported reasoning_effort {effort!r}; expected one of {sorted(levels)}")
        return {"thinkingLevel": levels[effort], **thoughts}
    budgets = {**THINKING_BUDGETS, **(model.api_requirements.get("thinking_budgets") or {})}
    if effort not in budgets:
        raise bad(f"unsupported reasoning_effort {effort!r}; expected one of {sorted(budgets)}")
    budget = int(budgets[effort])
    low, high = model.api_requirements.get("thinking_budget_range") or (budget, budget)
    return {"thinkingBudget": min(max(budget, int(low)), int(high)), **thoughts}


def embed_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """Embedding parameters -> ``EmbedContentRequest`` fields."""
    out: dict[str, Any] = {}
    dims = params.get("dimensions") or params.get("output_dimensionality")
    if dims:
        out["outputDimensionality"] = int(dims)
    task = params.get("task_type")
    if task:
        out["taskType"] = str(task).upper()
    if params.get("title"):
        out["title"] = str(params["title"])
    return out


def clean_json_schema(schema: Any) -> Any:
    """Prune a JSON Schema to the keywords ``responseJsonSchema``/``parametersJsonSchema`` accept.

    ``definitions`` becomes ``$defs``; ``const`` becomes a one-value ``enum``; a ``$ref`` keeps only
    ``$``-keywords beside it, as Gemini requires.
    """
    if isinstance(schema, list):
        return [clean_json_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    src = dict(schema)
    if "definitions" in src and "$defs" not in src:
        src["$defs"] = src.pop("definitions")
    if "const" in src and "enum" not in src:
        src["enum"] = [src.pop("const")]
    if "$ref" in src:
        ref = str(src["$ref"]).replace("#/definitions/", "#/$defs/")
        return {k: (ref if k == "$ref" else clean_json_schema(v)) for k, v in src.items() if k.startswith("$")}
    out: dict[str, Any] = {}
    for key, value in src.items():
        if key not in _JSON_SCHEMA_KEYS:
            continue
        if key in ("properties", "$defs") and isinstance(value, Mapping):
            out[key] = {name: clean_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "prefixItems"):
            out[key] = clean_json_schema(value)
        else:
            out[key] = value
    return out


def to_openapi_schema(schema: Mapping[str, Any], _defs: Mapping[str, Any] | None = None,
                      _depth: int = 0) -> dict[str, Any]:
    """JSON Schema -> Gemini's OpenAPI-subset ``Schema``: ``$ref`` inlined (cycles cut at depth 8),
    ``type: [T, "null"]`` and ``anyOf: [.., {type: null}]`` -> ``nullable``, ``const`` -> ``enum``,
    enums as strings (the subset has string enums only), unsupported keys dropped."""
    defs = {**(_defs or {}), **(schema.get("$defs") or schema.get("definitions") or {})}
    if "$ref" in schema:
        target = str(schema["$ref"]).rsplit("/", 1)[-1]
        if _depth >= 8 or target not in defs:
            return {"type": "OBJECT"}
        merged = {**defs[target], **{k: v for k, v in schema.items() if k != "$ref"}}
        return to_openapi_schema(merged, defs, _depth + 1)
    src = dict(schema)
    if "const" in src and "enum" not in src:
        src["enum"] = [src.pop("const")]
    out: dict[str, Any] = {}
    nullable = False
    typ = src.get("type")
    if isinstance(typ, list):
        kinds = [t for t in typ if t != "null"]
        nullable = len(kinds) != len(typ)
        typ = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            out["anyOf"] = [{"type": str(t).upper()} for t in kinds]
    if typ == "null":
        nullable, typ = True, None
    if isinstance(typ, str):
        out["type"] = typ.upper()
    variants = src.get("anyOf") or src.get("oneOf")
    if isinstance(variants, list):
        rest = [v for v in variants if isinstance(v, Mapping) and v.get("type") != "null"]
        nullable = nullable or len(rest) != len(variants)
        converted = [to_openapi_schema(v, defs, _depth + 1) for v in rest]
        if len(converted) == 1:
            out = {**converted[0], **out}
        elif converted:
            out["anyOf"] = converted
    for key, value in src.items():
        if key in ("type", "anyOf", "oneOf") or key not in _OPENAPI_KEYS:
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {n: to_openapi_schema(s, defs, _depth + 1) for n, s in value.items()
                        if isinstance(s, Mapping)}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = to_openapi_schema(value, defs, _depth + 1)
        elif key == "enum" and isinstance(value, list):
            out[key] = [str(v) for v in value]
            out["type"] = "STRING"
            out["format"] = "enum"
        else:
            out[key] = value
    if nullable:
        out["nullable"] = True
    return out


# ============================================================================ pure conversions: responses


def parse_response(data: Mapping[str, Any], *, model_id: str, provider: str, invalid: Invalid) -> Response:
    """A ``GenerateContentResponse`` -> ``Response`` (first candidate)."""
    usage = parse_usage(data.get("usageMetadata")) or Usage()
    details = usage.provider_details
    if data.get("modelVersion"):
        details["model_version"] = data["modelVersion"]
    candidates = data.get("candidates")
    rid = data.get("responseId") if isinstance(data.get("responseId"), str) else None
    if not candidates:
        feedback = data.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            details["block_reason"] = feedback["blockReason"]
            return Response(content="", model=model_id, provider=provider, usage=usage,
                            finish_reason="content_filter", provider_request_id=rid, raw=data)
        raise invalid("response has no candidates and no promptFeedback.blockReason")
    cand = first_candidate(candidates)
    if cand is None:
        raise invalid("no candidate with index 0")
    text, thoughts, calls = split_parts(cand, start=0, id_prefix=call_id_prefix(data))
    if thoughts:
        details["thoughts"] = thoughts
    reason = cand.get("finishReason")
    finish = finish_reason(reason, has_calls=bool(calls)) if reason else ("tool_calls" if calls else "stop")
    if reason:
        details["finish_reason"] = reason
    return Response(content=text if text or not calls else None, model=model_id, provider=provider, usage=usage,
                    finish_reason=finish, tool_calls=calls, provider_request_id=rid, raw=data)


def first_candidate(candidates: Any) -> Mapping[str, Any] | None:
    """The candidate with ``index`` 0 (an absent index is 0), or ``None``."""
    for cand in candidates if isinstance(candidates, list) else ():
        if isinstance(cand, Mapping) and not cand.get("index"):
            return cand
    return None


def call_id_prefix(data: Mapping[str, Any]) -> str:
    """``call_<responseId>_``, the start of the ids synthesized for one response's calls (a random token when
    the response has no id), so that ids do not repeat across the turns of a conversation."""
    rid = data.get("responseId")
    token = _NOT_ID.sub("", rid) if isinstance(rid, str) else ""
    return f"call_{token or uuid.uuid4().hex[:16]}_"


def split_parts(candidate: Mapping[str, Any], *, start: int, id_prefix: str) -> tuple[str, str, list[ToolCall]]:
    """A candidate's parts -> (text, thought text, tool calls numbered from ``start``, ids ``id_prefix<n>``
    unless Gemini gave one)."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for part in parts or ():
        if not isinstance(part, Mapping):
            continue
        if "functionCall" in part and isinstance(part["functionCall"], Mapping):
            fc = part["functionCall"]
            call_id = str(fc.get("id") or f"{id_prefix}{start + len(calls)}")
            if part.get("thoughtSignature"):
                call_id += THOUGHT_SEP + str(part["thoughtSignature"])
            args = fc.get("args")
            calls.append(ToolCall(id=call_id, name=str(fc.get("name", "")),
                                  arguments=orjson.dumps(args if args is not None else {}).decode()))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thoughts), calls


def finish_reason(reason: str, *, has_calls: bool) -> str:
    mapped = FINISH_REASONS.get(reason, "unknown")
    return "tool_calls" if mapped == "stop" and has_calls else mapped


def parse_usage(meta: Any) -> Usage | None:
    """``usageMetadata`` -> ``Usage``. ``promptTokenCount`` already includes cached content;
    tool-use prompt tokens are input; thoughts are output (and reasoning)."""
    if not isinstance(meta, Mapping):
        return None

    def n(key: str) -> int:
        v = meta.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    thoughts = n("thoughtsTokenCount")
    usage = Usage(input_tokens=n("promptTokenCount") + n("toolUsePromptTokenCount"),
                  output_tokens=n("candidatesTokenCount") + thoughts,
                  cache_read_tokens=n("cachedContentTokenCount"), reasoning_tokens=thoughts)
    if n("toolUsePromptTokenCount"):
        usage.provider_details["tool_use_prompt_tokens"] = n("toolUsePromptTokenCount")
    return usage


# ============================================================================ pure conversions: errors


def error_kind(gstatus: str | None, reason: Any, details: list[Mapping[str, Any]]) -> type[ProviderError] | None:
    """The error class from the structured fields (``None``: let the HTTP status decide)."""
    if reason in AUTH_REASONS:
        return AuthenticationError
    if gstatus == "RESOURCE_EXHAUSTED" and daily_quota_exhausted(details):
        return QuotaExceededError
    return STATUS_KINDS.get(gstatus or "")


def daily_quota_exhausted(details: list[Mapping[str, Any]]) -> bool:
    """True when a ``QuotaFailure`` violation names a per-day quota (its ``quotaId``, an identifier such
    as ``GenerateRequestsPerDayPerProjectPerModel-FreeTier``)."""
    for d in details:
        if d.get("@type") != _QUOTA_FAILURE:
            continue
        for v in d.get("violations") or ():
            if isinstance(v, Mapping) and "PerDay" in str(v.get("quotaId") or ""):
                return True
    return False


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def retry_delay(details: list[Mapping[str, Any]]) -> float | None:
    """Seconds from a ``RetryInfo.retryDelay`` detail (``"13s"``, ``"0.5s"`` or ``{seconds, nanos}``)."""
    for d in details:
        if d.get("@type") != _RETRY_INFO:
            continue
        delay = d.get("retryDelay")
        if isinstance(delay, str):
            m = _DURATION.match(delay)
            if m:
                return float(m.group(1))
        elif isinstance(delay, Mapping):
            return float(delay.get("seconds") or 0) + float(delay.get("nanos") or 0) / 1e9
    return None


# ============================================================================ small helpers


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's JSON arguments -> ``functionCall.args`` (an object; anything else under ``value``)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"value": raw}
    return value if isinstance(value, dict) else {"value": value}


def _values(obj: Any, invalid: Invalid) -> list[float]:
    values = obj.get("values") if isinstance(obj, Mapping) else None
    if not isinstance(values, list):
        raise invalid("embedding without 'values'")
    return values


def _deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = value


def _redact_obj(obj: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    if not secrets:
        return obj
    text = orjson.dumps(obj, default=str).decode()
    clean = redact(text, secrets)
    return obj if clean == text else orjson.loads(clean)
