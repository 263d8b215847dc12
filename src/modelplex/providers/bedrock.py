"""The Amazon Bedrock Runtime protocol: Converse, ConverseStream and InvokeModel embeddings.

Owns: ``BedrockAdapter`` (protocol ``"bedrock"``): pure conversion of OpenAI-shaped requests into
``/model/{modelId}/converse`` and ``/converse-stream`` bodies, SigV4 signing (``sign``), decoding of the
AWS event-stream framing (``_events``), parsing of Converse responses and stream events, Titan and
Cohere embeddings through ``/model/{modelId}/invoke``, and classification of AWS errors
(``x-amzn-ErrorType`` header, ``__type`` in the body, ``:exception-type`` frames mid-stream).

botocore is an optional extra (``modelplex[bedrock]``): it is imported inside functions only, so
``import modelplex`` never loads it.

Decisions:

* Authentication: SigV4 (service ``bedrock``) with the provider's access key, secret and session token,
  signed over exactly the URL aiohttp puts on the wire; with no AWS keys but an ``api_key``, a Bedrock API
  key is sent as ``Authorization: Bearer``. Credentials are resolved by the config layer.
* The model id is percent-encoded into the path as botocore does (``:`` -> ``%3A``, ``/`` -> ``%2F``).
* Usage: Bedrock's ``inputTokens`` excludes cache reads and writes, so ``input_tokens`` adds
  ``cacheReadInputTokens`` and ``cacheWriteInputTokens`` back. Converse reports no separate reasoning
  count (reasoning is inside ``outputTokens``).
* ``response_format``: ``json_schema`` and ``json_object`` become a tool named ``modelplex_json_output``
  whose input is returned as the content (finish ``stop``), unless the model's catalog entry sets
  ``api_requirements.structured_output: native``, which uses Converse's ``outputConfig.textFormat``. The
  tool is forced when the caller sent no tools; with the caller's tools, ``toolChoice`` is ``any`` (one of
  theirs or ours) unless the caller named one, as the Anthropic adapter does (``structured_tool_choice``).
* ``top_k`` goes to ``additionalModelRequestFields`` under the catalog's name for it (``top_k`` unless
  a model maps it, e.g. Nova's ``inferenceConfig.topK``).
* ``reasoning_effort`` (``reasoning`` models only) takes the form ``reasoning_style`` names: the catalog's
  ``param_mappings`` entry, else the family in the model id (``anthropic.claude-*`` -> ``thinking``,
  ``amazon.nova-*`` -> ``reasoning_config``); a model with neither has it dropped (logged at DEBUG).
  ``reasoning_config`` is Nova's ``reasoningConfig.maxReasoningEffort``. ``thinking`` is Claude's, with the
  Anthropic adapter's tables and rules: ``{"type": "enabled", "budget_tokens"}`` (at least 1024 and below
  ``maxTokens``: the caller's ``max_tokens`` clips the budget to half of it; a default one, the catalog's
  or 4096, grows by the budget up to the model's limit), or, when the catalog sets
  ``api_requirements.thinking: adaptive`` (the models that reject budgets), ``{"type": "adaptive"}`` with
  ``output_config.effort``. With thinking on, temperature and top_k are not sent and top_p is raised to at
  least 0.95. A forced tool (``tool_choice`` required or named, or the structured-output tool) keeps its
  contract and thinking is dropped, as Claude rejects the two together. Any other mapped name (e.g.
  ``output_config.effort``) gets the effort as is, at that path of ``additionalModelRequestFields``.
* Tool-call ids go out through ``portable_tool_id`` (Converse takes ``[a-zA-Z0-9_-]{1,64}``); in a user turn
  ``toolResult`` blocks come first, as Claude requires after a tool use.
* ``tool_choice: none`` has no Converse equivalent: tools are dropped unless the history holds tool
  blocks (Converse then requires ``toolConfig``), in which case they stay with no ``toolChoice``. A request
  with no tools whose history holds tool blocks gets a ``toolConfig`` of the tools the history called, each
  taking any object (``history_tool_specs``).
* Errors: by AWS error type, with one exception: a too-long prompt is a ``ValidationException`` with no
  structured code, whose message ("Input is too long for requested model", Claude's "prompt is too
  long", "too many input tokens") makes it a ``ContextWindowExceededError`` so the router can fall over
  to a larger window. ``ModelTimeoutException`` (408) is a
  ``RequestTimeoutError``; ``ModelNotReadyException`` and ``ServiceUnavailableException`` are
  ``OverloadedError``.
* Reasoning: the text is in ``usage.provider_details["reasoning"]``; signed reasoning and redacted
  content also come as Anthropic-shaped ``Response.provider_details["thinking_blocks"]`` (streamed: a
  chunk with ``raw={"thinking_block": ...}`` as each block closes). An assistant message's
  ``thinking_blocks`` go back as ``reasoningContent`` blocks opening its turn when the request has
  Claude's thinking on (a tool-use continuation with thinking needs them), and are dropped otherwise.
* Guardrail interventions (``stopReason`` ``guardrail_intervened``/``content_filtered``) are 200s with
  ``finish_reason="content_filter"``.
* ``health_to_wire`` is ``None``: bedrock-runtime has no cheap read-only call (listing models is the
  control-plane ``bedrock`` service, another host and another IAM permission).
* Embeddings: Titan takes one text per InvokeModel call, so several inputs are sent concurrently (at
  most ``EMBED_CONCURRENCY`` at once); Cohere takes up to 96 texts per call. Titan reports its token
  count; Cohere does not, so that usage is counted locally and flagged ``estimated``.

Must not touch: retries, fallbacks, accounting; credential discovery (env, profiles).
Credentials never reach URLs, logs, exception text or ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
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
    RequestTimeoutError,
    ServerError,
    redact,
    status_error,
)
from modelplex.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    EFFORT_LEVELS,
    THINKING_BUDGETS,
    caller_max_tokens,
    fit_budget,
)
from modelplex.providers.base import (
    Adapter,
    ProviderConfig,
    StreamDecoder,
    WireRequest,
    add_turn,
    load_json_object,
    portable_tool_id,
    structured_tool_choice,
    thinking_blocks_of,
)
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
    import aiohttp

    from modelplex.catalog.schema import ModelSpec

log = logging.getLogger(__name__)

BadRequestFactory = Callable[[str], BadRequestError]
Invalid = Callable[[str], InvalidResponseError]

SERVICE = "bedrock"
JSON_TOOL = "modelplex_json_output"
"""The forced tool that carries structured output on models without native support."""
HISTORY_TOOL = "modelplex_earlier_tool"
"""The placeholder tool of a request whose history holds tool results but no call to name them by
(``history_tool_specs``)."""
EMBED_CONCURRENCY = 8
COHERE_BATCH = 96

EXCEPTION_EVENT = "exception:"
"""``_events`` yields ``exception:<type>`` for ``:message-type: exception`` frames ..."""
ERROR_EVENT = "error:"
"""... ``error:<code>`` for ``:message-type: error`` frames ..."""
FRAMING_EVENT = "framing-error"
"""... and this when the bytes are not valid event-stream framing (bad CRC, bad lengths)."""

STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}

CONTEXT_MESSAGE = re.compile(r"input is too long|prompt is too long|too many input tokens|"
                             r"exceed(?:s|ed)? (?:the )?context (?:limit|window)", re.IGNORECASE)
"""The messages of the ``ValidationException`` a prompt longer than the window gets."""

ERROR_KINDS: Mapping[str, type[ProviderError]] = {
    "ThrottlingException": RateLimitError,
    "ServiceQuotaExceededException": QuotaExceededError,
    "ValidationException": BadRequestError,
    "ConflictException": ConflictError,
    "AccessDeniedException": PermissionDeniedError,
    "UnrecognizedClientException": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "IncompleteSignatureException": AuthenticationError,
    "MissingAuthenticationTokenException": AuthenticationError,
    "InvalidClientTokenId": AuthenticationError,
    "SignatureDoesNotMatch": AuthenticationError,
    "ResourceNotFoundException": NotFoundError,
    "ModelNotReadyException": OverloadedError,
    "ServiceUnavailableException": OverloadedError,
    "ModelTimeoutException": RequestTimeoutError,
    "InternalServerException": ServerError,
    "ModelErrorException": ServerError,
    "ModelStreamErrorException": ServerError,
}
"""AWS error type -> error class."""

ERROR_STATUS: Mapping[str, int] = {
    "ThrottlingException": 429, "ServiceQuotaExceededException": 400, "ValidationException": 400,
    "ConflictException": 400, "AccessDeniedException": 403, "ResourceNotFoundException": 404,
    "ModelNotReadyException": 429, "ServiceUnavailableException": 503, "ModelTimeoutException": 408,
    "InternalServerException": 500, "ModelErrorException": 424, "ModelStreamErrorException": 424,
}
"""The HTTP status of each error type (from the service model), for exceptions that arrive mid-stream."""

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}
_DOC_FORMATS = {"application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
                "application/vnd.ms-excel": "xls",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
                "text/html": "html", "text/plain": "txt", "text/markdown": "md"}
_INFERENCE_PARAMS = ("max_tokens", "temperature", "top_p", "stop")
_MAX_MESSAGE = 500


# ============================================================================ adapter


class BedrockAdapter(Adapter):
    """Bedrock Converse chat and streaming, InvokeModel embeddings, SigV4 signing."""

    protocol: ClassVar[str] = "bedrock"

    def __init__(self, provider: ProviderConfig, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(provider)
        self._clock = clock
        """Wall-clock seconds for SigV4 timestamps (injectable for deterministic signatures)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.name!r}, region={self.provider.region!r})"

    # ------------------------------------------------------------------ URLs, headers, signing

    def endpoint(self) -> str:
        if self.provider.base_url:
            return self.provider.base_url.rstrip("/")
        return f"https://bedrock-runtime.{self._region()}.amazonaws.com"

    def model_url(self, model: ModelSpec, action: str) -> str:
        return f"{self.endpoint()}/model/{quote(model.api_model, safe='')}/{action}"

    def headers(self, extra: Mapping[str, str] | None = None, *, stream: bool = False) -> dict[str, str]:
        h = {"Content-Type": "application/json",
             "Accept": "application/vnd.amazon.eventstream" if stream else "application/json"}
        h.update(self.provider.extra_headers)
        if extra:
            h.update(extra)
        for k in [k for k in h if k.lower() in ("authorization", "x-amz-date", "x-amz-security-token")]:
            del h[k]
        return h

    def sign(self, wire: WireRequest) -> WireRequest:
        """SigV4 over the request exactly as aiohttp will send it (yarl's form of the URL); or a Bedrock
        API key as a Bearer token when no AWS keys are configured.

        botocore's ``SigV4Auth`` computes the canonical request, string to sign and signature; its
        ``add_auth`` is not used because it logs the canonical request, session token included, at DEBUG.
        """
        import yarl

        url = str(yarl.URL(wire.url))
        p = self.provider
        if p.aws_access_key_id and p.aws_secret_access_key:
            auth_mod, aws_mod, cred_mod = _botocore(p.name, "auth", "awsrequest", "credentials")
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
            headers = dict(wire.headers)
            headers["X-Amz-Date"] = stamp
            if p.aws_session_token:
                headers["X-Amz-Security-Token"] = p.aws_session_token
            aws = aws_mod.AWSRequest(method=wire.method, url=url, data=wire.body or b"", headers=headers)
            aws.context["timestamp"] = stamp
            signer = auth_mod.SigV4Auth(cred_mod.Credentials(p.aws_access_key_id, p.aws_secret_access_key,
                                                             p.aws_session_token), SERVICE, self._region())
            signature = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
            signed = signer.signed_headers(signer.headers_to_sign(aws))
            headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={signer.scope(aws)}, "
                                        f"SignedHeaders={signed}, Signature={signature}")
            return WireRequest(wire.method, url, headers, wire.body)
        if p.api_key:
            return WireRequest(wire.method, url, {**wire.headers, "Authorization": f"Bearer {p.api_key}"},
                               wire.body)
        raise ProviderNotConfiguredError(p.name, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))

    def _region(self) -> str:
        if not self.provider.region:
            raise ProviderNotConfiguredError(self.provider.name, ("AWS_REGION", "AWS_DEFAULT_REGION"))
        return self.provider.region

    # ------------------------------------------------------------------ chat

    def chat_to_wire(self, req: ChatRequest, model: ModelSpec) -> WireRequest:
        body = self.chat_body(req, model)
        url = self.model_url(model, "converse-stream" if req.stream else "converse")
        return WireRequest("POST", url, self.headers(req.extra_headers, stream=req.stream), orjson.dumps(body))

    def chat_body(self, req: ChatRequest, model: ModelSpec) -> dict[str, Any]:
        """The Converse request body for ``req`` (pure)."""
        params, dropped = split_params(self.protocol, model, req.params)
        if dropped:
            log.debug("%s: dropping parameters %s unsupported by %s", self.provider.name, sorted(dropped),
                      model.id)
        bad = self._bad_request(model)
        system, messages = to_messages(req.messages, bad)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        additional: dict[str, Any] = {}
        tools = to_tool_specs(params.get("tools") or (), bad)
        choice: dict[str, Any] | None = None
        tc = params.get("tool_choice")
        if tools and tc is not None:
            choice = to_tool_choice(tc, bad)
            if choice is None and not _has_tool_blocks(messages):
                tools = []
        fmt = params.get("response_format")
        if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
            schema, schema_name, description = _schema_of(fmt)
            if model.api_requirements.get("structured_output") == "native" and fmt.get("type") == "json_schema":
                body["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
                    "schema": orjson.dumps(schema).decode(), "name": schema_name,
                    **({"description": description} if description else {})}}}}
            else:
                decision = structured_tool_choice(bool(tools), _choice_kind(tc))
                tools = [*tools, {"toolSpec": {
                    "name": JSON_TOOL, "description": description or f"Return the answer as {schema_name}.",
                    "inputSchema": {"json": schema}}}]
                if decision == "any":
                    choice = {"any": {}}
                elif decision == "ours" or choice is None:
                    choice = {"tool": {"name": JSON_TOOL}}
        if not tools and _has_tool_blocks(messages):  # Converse requires a toolConfig with tool blocks
            tools = history_tool_specs(messages)
        if tools:
            body["toolConfig"] = {"tools": tools, **({"toolChoice": choice} if choice else {})}
        effort = params.get("reasoning_effort")
        if effort is not None and model.has("reasoning"):
            forced = choice is not None and ("tool" in choice or "any" in choice)
            params = self._reasoning(str(effort).lower(), model, params, additional, forced=forced, bad=bad)
        inference = self.inference_config(params, model)
        if inference:
            body["inferenceConfig"] = inference
        top_k = params.get("top_k")
        name = param_name(self.protocol, model, "top_k")
        if top_k is not None and name:
            _set_path(additional, name, top_k)
        if additional:
            body["additionalModelRequestFields"] = additional
        if "thinking" not in additional and any("thinking_blocks" in m for m in req.messages):
            _drop_reasoning(messages)  # signed reasoning goes back only to a request that thinks
        metadata = params.get("metadata")
        if isinstance(metadata, Mapping) and metadata:
            body["requestMetadata"] = {str(k): str(v) for k, v in metadata.items()}
        tier = params.get("service_tier")
        if isinstance(tier, str) and tier != "auto":
            body["serviceTier"] = {"type": tier}
        extra = params.get("extra_body")
        if isinstance(extra, Mapping):
            _deep_merge(body, extra)
        return body

    def inference_config(self, params: Mapping[str, Any], model: ModelSpec) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in _INFERENCE_PARAMS:
            value = params.get(p)
            name = param_name(self.protocol, model, p)
            if value is None or not name:
                continue
            if p == "stop":
                value = [value] if isinstance(value, str) else list(value)
            out[_camel(name)] = value
        if "maxTokens" not in out and model.api_requirements.get("max_tokens_required"):
            out["maxTokens"] = model.max_output_tokens
        return out

    def _reasoning(self, effort: str, model: ModelSpec, params: dict[str, Any], additional: dict[str, Any], *,
                   forced: bool, bad: BadRequestFactory) -> dict[str, Any]:
        """Place ``reasoning_effort`` in ``additional`` (see the module docstring); returns ``params`` as the
        chosen form allows them (Claude's thinking changes sampling and ``max_tokens``)."""
        style = reasoning_style(model)
        if style is None:
            log.debug("%s: dropping reasoning_effort: no known reasoning parameter for %s", self.provider.name,
                      model.id)
            return params
        if style == "thinking" and forced:
            if effort != "none":
                log.info("%s: a forced tool, which Claude rejects with thinking, wins over reasoning_effort=%r "
                         "on %s", self.provider.name, effort, model.id)
            return params
        if style == "thinking":
            fields, params = claude_thinking(effort, model, params, bad)
            additional.update(fields)
        elif style == "reasoning_config":
            if effort == "none":
                additional["reasoningConfig"] = {"type": "disabled"}
            else:
                level = {"minimal": "low", "xhigh": "high"}.get(effort, effort)
                if level not in ("low", "medium", "high"):
                    raise bad(f"unsupported reasoning_effort {effort!r}")
                additional["reasoningConfig"] = {"type": "enabled", "maxReasoningEffort": level}
        else:
            _set_path(additional, style, effort)
        return params

    def chat_from_wire(self, payload: bytes, model: ModelSpec, headers: Mapping[str, str] | None = None
                       ) -> Response:
        data = self._json_object(payload, model)
        resp = parse_converse(data, model_id=model.id, provider=self.provider.name,
                              invalid=lambda m: self._invalid(model, m))
        resp.provider_request_id = _request_id(headers)
        return resp

    def new_stream_decoder(self, model: ModelSpec, req: ChatRequest) -> StreamDecoder:
        return BedrockStreamDecoder(self, model)

    async def _events(self, content: aiohttp.StreamReader | AsyncIterator[bytes]
                      ) -> AsyncIterator[tuple[str | None, bytes]]:
        """AWS event-stream frames -> ``(event type, JSON payload)``; exception and error frames as
        ``exception:<type>`` / ``error:<code>``; broken framing as ``framing-error``. ``content`` is the
        body's bytes (a ``StreamReader``, or any async iterable of byte chunks)."""
        (eventstream,) = _botocore(self.provider.name, "eventstream")
        framing = (eventstream.ParserError, ValueError, KeyError, IndexError, struct.error)
        buffer = eventstream.EventStreamBuffer()
        source = content.iter_any() if hasattr(content, "iter_any") else content
        async for data in source:
            buffer.add_data(data)
            while True:
                try:
                    message = next(buffer)
                except StopIteration:
                    break
                except framing as exc:
                    yield FRAMING_EVENT, type(exc).__name__.encode()
                    return
                yield decode_frame(message.headers, message.payload)

    # ------------------------------------------------------------------ errors

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes, model: ModelSpec
                       ) -> ProviderError:
        try:
            data: Any = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        data = data if isinstance(data, Mapping) else {}
        etype = error_type(headers, data)
        secrets = self.provider.secrets()
        message = data.get("message") or data.get("Message")
        if message is None and not data and body:
            message = body[:_MAX_MESSAGE].decode("utf-8", "replace")
        text = redact(str(message or "")[:_MAX_MESSAGE], secrets)
        safe = {k: v for k, v in data.items() if k not in ("message", "Message")}
        if text:
            safe["message"] = text
        kind = ERROR_KINDS.get(etype or "")
        if etype == "ValidationException" and CONTEXT_MESSAGE.search(text):
            kind = ContextWindowExceededError
        return status_error(status, kind=kind, message=text, provider=self.provider.name,
                            model=model.id, headers=headers, body=safe or None, error_type=etype,
                            request_id=_request_id(headers))

    def stream_exception(self, etype: str, payload: bytes, model: ModelSpec) -> ProviderError:
        """An exception frame (``:exception-type`` is the member name, e.g. ``throttlingException``)."""
        name = etype[:1].upper() + etype[1:]
        return self.classify_error(ERROR_STATUS.get(name, 500), {"x-amzn-ErrorType": name}, payload, model)

    # ------------------------------------------------------------------ embeddings

    def embed_wires(self, req: EmbedRequest, model: ModelSpec) -> list[tuple[EmbedRequest, WireRequest]]:
        """The InvokeModel requests an embedding call needs, each with the slice of inputs it carries."""
        if not req.input:
            raise self._bad_request(model)("embedding request has no input")
        fmt = embed_format(model, self._bad_request(model))
        url = self.model_url(model, "invoke")
        out: list[tuple[EmbedRequest, WireRequest]] = []
        if fmt == "titan":
            for text in req.input:
                body: dict[str, Any] = {"inputText": text}
                dims = req.params.get("dimensions")
                if dims:
                    body["dimensions"] = int(dims)
                if req.params.get("normalize") is not None:
                    body["normalize"] = bool(req.params["normalize"])
                sub = EmbedRequest(input=[text], params=req.params, request_id=req.request_id)
                out.append((sub, WireRequest("POST", url, self.headers(), orjson.dumps(body))))
            return out
        for i in range(0, len(req.input), COHERE_BATCH):
            texts = list(req.input[i:i + COHERE_BATCH])
            body = {"texts": texts, "input_type": cohere_input_type(req.params)}
            if req.params.get("truncate"):
                body["truncate"] = str(req.params["truncate"]).upper()
            if req.params.get("dimensions"):
                body["output_dimension"] = int(req.params["dimensions"])
            sub = EmbedRequest(input=texts, params=req.params, request_id=req.request_id)
            out.append((sub, WireRequest("POST", url, self.headers(), orjson.dumps(body))))
        return out

    def embed_to_wire(self, req: EmbedRequest, model: ModelSpec) -> WireRequest:
        wires = self.embed_wires(req, model)
        if len(wires) != 1:
            raise self._bad_request(model)(
                f"{model.api_model} needs {len(wires)} InvokeModel calls for {len(req.input)} inputs; "
                "use embed() or embed_wires()")
        return wires[0][1]

    def embed_from_wire(self, payload: bytes, model: ModelSpec, req: EmbedRequest) -> EmbeddingResponse:
        def invalid(message: str) -> InvalidResponseError:
            return self._invalid(model, message)

        data = load_json_object(payload, invalid)
        raw = data.get("embeddings")
        vectors: Any
        if "embedding" in data:
            vectors = [data["embedding"]]
        elif isinstance(raw, Mapping):  # Cohere with embedding_types: {"float": [[...]]}
            vectors = raw.get("float")
        else:
            vectors = raw
        if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
            raise invalid("embedding response has no vectors")
        if len(vectors) != len(req.input):
            raise invalid(f"expected {len(req.input)} embeddings, got {len(vectors)}")
        count = data.get("inputTextTokenCount")
        if isinstance(count, int):
            usage = Usage(input_tokens=count)
        else:
            from modelplex.catalog.tokens import count_text

            usage = Usage(input_tokens=sum(count_text(t, model).tokens for t in req.input), estimated=True)
        return EmbeddingResponse(embeddings=vectors, model=model.id, provider=self.provider.name, usage=usage)

    async def embed(self, session: aiohttp.ClientSession, req: EmbedRequest, model: ModelSpec, *,
                    timeout: float | None = None) -> EmbeddingResponse:
        started = time.perf_counter()
        wires = self.embed_wires(req, model)
        limit = asyncio.Semaphore(EMBED_CONCURRENCY)
        budget = timeout or self.provider.timeout

        async def one(sub: EmbedRequest, wire: WireRequest) -> EmbeddingResponse:
            async with limit:
                status, headers, body = await self._send(session, wire, model, budget)
            if status >= 400:
                raise self.classify_error(status, headers, body, model)
            return self.embed_from_wire(body, model, sub)

        tasks = [asyncio.ensure_future(one(sub, wire)) for sub, wire in wires]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        usage = Usage()
        vectors: list[list[float]] = []
        for part in parts:
            vectors.extend(part.embeddings)
            usage = usage + part.usage
        return EmbeddingResponse(embeddings=vectors, model=model.id, provider=self.provider.name, usage=usage,
                                 latency_ms=(time.perf_counter() - started) * 1000.0, request_id=req.request_id)

    # ------------------------------------------------------------------ helpers

    def _bad_request(self, model: ModelSpec) -> BadRequestFactory:
        provider = self.provider.name

        def bad(message: str) -> BadRequestError:
            return BadRequestError(message, provider=provider, model=model.id)

        return bad


# ============================================================================ streaming


class BedrockStreamDecoder(StreamDecoder):
    """ConverseStream events -> chunks. ``metadata`` (usage) is terminal; ``messageStop`` carries the reason."""

    def __init__(self, adapter: BedrockAdapter, model: ModelSpec) -> None:
        self._adapter = adapter
        self._model = model
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool ordinal
        self._json_blocks: set[int] = set()
        self._reasoning: dict[int, dict[str, str]] = {}  # contentBlockIndex -> text / signature / redacted
        self._stop: str | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: bytes) -> Iterable[StreamChunk]:
        if self._done:
            return ()
        event = event or ""
        if event.startswith(EXCEPTION_EVENT):
            raise self._adapter.stream_exception(event[len(EXCEPTION_EVENT):], data, self._model)
        if event.startswith(ERROR_EVENT):
            code = event[len(ERROR_EVENT):] or "InternalServerException"
            raise self._adapter.stream_exception(code, orjson.dumps({"message": data.decode("utf-8", "replace")}),
                                                 self._model)
        if event == FRAMING_EVENT:
            raise self._adapter._invalid(self._model, f"malformed event-stream frame ({data.decode()})")
        obj = self._adapter._json_object(data, self._model) if data.strip() else {}
        if event == "contentBlockStart":
            return self._block_start(obj)
        if event == "contentBlockDelta":
            return self._block_delta(obj)
        if event == "contentBlockStop":
            return self._block_stop(obj)
        if event == "messageStop":
            self._stop = str(obj.get("stopReason") or "")
            return ()
        if event == "metadata":
            self._done = True
            usage = parse_usage(obj.get("usage"))
            metrics = obj.get("metrics")
            if usage is not None and isinstance(metrics, Mapping) and "latencyMs" in metrics:
                usage.provider_details["latency_ms"] = metrics["latencyMs"]
            return (StreamChunk(finish_reason=self._finish(), usage=usage, raw=obj),)
        return ()  # messageStart, contentBlockStop and unknown events carry nothing for the caller

    def _finish(self) -> str:
        reason = STOP_REASONS.get(self._stop or "", "unknown" if self._stop else "stop")
        if reason == "tool_calls" and not self._tools:
            return "stop"  # only the structured-output tool was used
        return reason

    def _block_start(self, obj: Mapping[str, Any]) -> Iterable[StreamChunk]:
        start = obj.get("start")
        tool = start.get("toolUse") if isinstance(start, Mapping) else None
        if not isinstance(tool, Mapping):
            return ()
        block = int(obj.get("contentBlockIndex") or 0)
        if tool.get("name") == JSON_TOOL:
            self._json_blocks.add(block)
            return ()
        ordinal = self._tools.setdefault(block, len(self._tools))
        return (StreamChunk(tool_calls=[ToolCallDelta(index=ordinal, id=str(tool.get("toolUseId") or ""),
                                                      name=str(tool.get("name") or ""))], raw=obj),)

    def _block_delta(self, obj: Mapping[str, Any]) -> Iterable[StreamChunk]:
        delta = obj.get("delta")
        if not isinstance(delta, Mapping):
            return ()
        block = int(obj.get("contentBlockIndex") or 0)
        if isinstance(delta.get("text"), str):
            return (StreamChunk(delta=delta["text"], raw=obj),)
        tool = delta.get("toolUse")
        if isinstance(tool, Mapping):
            partial = str(tool.get("input") or "")
            if block in self._json_blocks:
                return (StreamChunk(delta=partial, raw=obj),)
            ordinal = self._tools.setdefault(block, len(self._tools))
            return (StreamChunk(tool_calls=[ToolCallDelta(index=ordinal, arguments=partial)], raw=obj),)
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, Mapping):
            kept = self._reasoning.setdefault(block, {})
            for key in ("text", "signature", "redactedContent"):
                if isinstance(reasoning.get(key), str):
                    kept[key] = kept.get(key, "") + reasoning[key]
            if isinstance(reasoning.get("text"), str):
                return (StreamChunk(reasoning_delta=reasoning["text"], raw=obj),)
        return ()

    def _block_stop(self, obj: Mapping[str, Any]) -> Iterable[StreamChunk]:
        """A reasoning block, whole, as it closes (``raw={"thinking_block": ...}``, Anthropic's shape, as the
        Anthropic decoder gives it), when it was signed or redacted: the one a continuation sends back."""
        kept = self._reasoning.pop(int(obj.get("contentBlockIndex") or 0), None)
        if not kept:
            return ()
        if "redactedContent" in kept:
            whole = {"type": "redacted_thinking", "data": kept["redactedContent"]}
        elif "signature" in kept:
            whole = {"type": "thinking", "thinking": kept.get("text", ""), "signature": kept["signature"]}
        else:
            return ()
        return (StreamChunk(raw={"thinking_block": whole}),)

    def close(self) -> Iterable[StreamChunk]:
        if self._done:
            return ()
        if self._stop is not None:  # messageStop arrived, metadata did not: the answer is whole, usage unknown
            self._done = True
            return (StreamChunk(finish_reason=self._finish()),)
        raise self._adapter._invalid(self._model, "stream ended without messageStop/metadata")


def decode_frame(headers: Mapping[str, Any], payload: bytes) -> tuple[str, bytes]:
    """One event-stream message -> ``(event, payload)`` per the module's event naming."""
    kind = headers.get(":message-type")
    if kind == "exception":
        return EXCEPTION_EVENT + str(headers.get(":exception-type") or ""), payload
    if kind == "error":
        return ERROR_EVENT + str(headers.get(":error-code") or ""), str(headers.get(":error-message") or "").encode()
    return str(headers.get(":event-type") or ""), payload


# ============================================================================ pure conversions: requests


def to_messages(messages: Iterable[Message], bad: BadRequestFactory) -> tuple[list[dict[str, Any]],
                                                                            list[dict[str, Any]]]:
    """OpenAI-shaped messages -> (``system`` blocks, Converse ``messages``). Tool results become
    ``toolResult`` blocks in a user turn; consecutive turns of one role are merged."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        add_turn(out, role, blocks, "content")

    docs = 0
    for msg in messages:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(b for b in content_blocks(msg.get("content"), bad, 0)[0] if "text" in b)
        elif role == "user":
            blocks, docs = content_blocks(msg.get("content"), bad, docs)
            add("user", blocks)
        elif role == "assistant":
            blocks = reasoning_blocks(msg.get("thinking_blocks"), bad)
            more, docs = content_blocks(msg.get("content"), bad, docs)
            blocks += more
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                if not fn.get("name"):
                    raise bad("assistant tool call without a function name")
                blocks.append({"toolUse": {"toolUseId": portable_tool_id(str(call.get("id") or "")),
                                           "name": fn["name"], "input": _arguments(fn.get("arguments"))}})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"toolResult": {"toolUseId": portable_tool_id(str(msg.get("tool_call_id") or "")),
                                         "content": tool_result_content(msg.get("content"))}}])
        else:
            raise bad(f"unsupported message role {role!r}")
    for turn in out:
        if turn["role"] == "user":  # tool results open the turn that follows a tool use (stable sort)
            turn["content"].sort(key=lambda b: "toolResult" not in b)
    return system, out


def reasoning_blocks(value: Any, bad: BadRequestFactory) -> list[dict[str, Any]]:
    """An assistant message's ``thinking_blocks`` (``base.thinking_blocks_of``) -> Converse
    ``reasoningContent`` blocks: signed reasoning text, or the redacted content."""
    return [{"reasoningContent": {"reasoningText": {"text": b["thinking"], "signature": b["signature"]}}}
            if b["type"] == "thinking" else {"reasoningContent": {"redactedContent": b["data"]}}
            for b in thinking_blocks_of(value, bad)]


def thinking_block_of(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Converse ``reasoningContent`` block -> Anthropic's thinking block (``None`` when unsigned: it could
    not be sent back)."""
    rc = block.get("reasoningContent")
    if not isinstance(rc, Mapping):
        return None
    rt = rc.get("reasoningText")
    if isinstance(rt, Mapping) and isinstance(rt.get("text"), str) and isinstance(rt.get("signature"), str):
        return {"type": "thinking", "thinking": rt["text"], "signature": rt["signature"]}
    if isinstance(rc.get("redactedContent"), str):
        return {"type": "redacted_thinking", "data": rc["redactedContent"]}
    return None


def _drop_reasoning(messages: list[dict[str, Any]]) -> None:
    """Remove sent-back reasoning blocks (the request has thinking off)."""
    for turn in messages:
        if turn.get("role") == "assistant":
            turn["content"] = [b for b in turn["content"] if "reasoningContent" not in b]


def content_blocks(content: Any, bad: BadRequestFactory, docs: int) -> tuple[list[dict[str, Any]], int]:
    """Content (string or OpenAI parts) -> Converse content blocks; empty text is skipped (Converse
    rejects blank text). ``docs`` numbers unnamed documents."""
    if content is None:
        return [], docs
    if isinstance(content, str):
        return ([{"text": content}] if content else []), docs
    blocks: list[dict[str, Any]] = []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            if p.get("text"):
                blocks.append({"text": p["text"]})
        elif kind == "image_url":
            image = p.get("image_url")
            url = str((image.get("url") if isinstance(image, Mapping) else image) or "")
            blocks.append({"image": image_block(url, bad)})
        elif kind == "file":
            file = p.get("file") or {}
            if not file.get("file_data"):
                raise bad("bedrock takes files as data URLs (file.file_data)")
            mime, data = parse_data_url(str(file["file_data"]), bad)
            fmt = _DOC_FORMATS.get(mime)
            if fmt is None:
                raise bad(f"unsupported document type {mime!r}")
            docs += 1
            blocks.append({"document": {"format": fmt, "name": _doc_name(file.get("filename"), docs),
                                        "source": {"bytes": data}}})
        else:
            raise bad(f"unsupported content part type {kind!r}")
    return blocks, docs


def image_block(url: str, bad: BadRequestFactory) -> dict[str, Any]:
    """A data URL -> inline bytes (base64 in JSON); ``s3://`` -> ``s3Location``. Bedrock fetches no HTTP URLs."""
    if url.startswith("s3://"):
        ext = url.rsplit(".", 1)[-1].lower()
        fmt = {"jpg": "jpeg"}.get(ext, ext)
        if fmt not in ("png", "jpeg", "gif", "webp"):
            raise bad(f"cannot tell the image format of {url!r}")
        return {"format": fmt, "source": {"s3Location": {"uri": url}}}
    if not url.startswith("data:"):
        raise bad("bedrock takes images as data URLs or s3:// URIs, not HTTP URLs")
    mime, data = parse_data_url(url, bad)
    fmt = _IMAGE_FORMATS.get(mime)
    if fmt is None:
        raise bad(f"unsupported image type {mime!r}")
    return {"format": fmt, "source": {"bytes": data}}


def parse_data_url(url: str, bad: BadRequestFactory) -> tuple[str, str]:
    """``data:<mime>[;base64],<data>`` -> (mime, base64 data)."""
    import base64

    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise bad("malformed data URL")
    meta = header[5:].split(";")
    mime = (meta[0] or "application/octet-stream").lower()
    if "base64" in meta[1:]:
        return mime, data.strip()
    return mime, base64.b64encode(unquote_to_bytes(data)).decode()


def tool_result_content(content: Any) -> list[dict[str, Any]]:
    """A tool message's content -> ``toolResult.content``: a JSON object as a ``json`` block, else text."""
    text = content if isinstance(content, str) else (
        "".join(p.get("text", "") for p in content if isinstance(p, Mapping)) if content else "")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return [{"json": value}]
    return [{"text": text or "(empty)"}]


def to_tool_specs(tools: Iterable[Mapping[str, Any]], bad: BadRequestFactory) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for tool in tools:
        if tool.get("type") != "function":
            raise bad(f"unsupported tool type {tool.get('type')!r}")
        fn = tool.get("function") or {}
        if not fn.get("name"):
            raise bad("function tool without a name")
        spec: dict[str, Any] = {"name": fn["name"],
                                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    return specs


def to_tool_choice(choice: Any, bad: BadRequestFactory) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` -> Converse ``toolChoice`` (``None`` for ``none``, which Converse lacks)."""
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if choice == "none":
        return None
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name:
            return {"tool": {"name": name}}
    raise bad(f"unsupported tool_choice {choice!r}")


def history_tool_specs(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A ``toolConfig``'s tools for a conversation that has tool blocks but a request with no tools: Converse
    rejects ``toolUse``/``toolResult`` blocks without a ``toolConfig``. Each tool the history called, by name,
    with a schema that takes any object (the definitions were not sent); no ``toolChoice``. A history with
    results only (no call to name) gets one placeholder tool."""
    names: list[str] = []
    for m in messages:
        for b in m.get("content") or ():
            use = b.get("toolUse") if isinstance(b, Mapping) else None
            name = use.get("name") if isinstance(use, Mapping) else None
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return [{"toolSpec": {"name": name, "description": "A tool called earlier in this conversation; its "
                          "definition was not sent with this request.",
                          "inputSchema": {"json": {"type": "object"}}}} for name in names or [HISTORY_TOOL]]


def _choice_kind(choice: Any) -> str | None:
    """An OpenAI ``tool_choice``'s kind for ``structured_tool_choice``: auto, any, tool, none or ``None``."""
    if choice is None:
        return None
    if choice == "required":
        return "any"
    if isinstance(choice, str):
        return choice
    return "tool"


def reasoning_style(model: ModelSpec) -> str | None:
    """How ``reasoning_effort`` goes on the wire for ``model``: the catalog's ``param_mappings`` name for it,
    else by the family in Bedrock's model id, as ``embed_format`` reads it (``anthropic.claude-*`` ->
    ``thinking``, ``amazon.nova-*`` -> ``reasoning_config``, optionally behind a region prefix); ``None`` when
    neither says."""
    mapped = model.param_mappings.get("reasoning_effort")
    if mapped:
        return mapped
    name = model.api_model.lower()
    if "anthropic.claude" in name:
        return "thinking"
    if "amazon.nova" in name:
        return "reasoning_config"
    return None


def claude_thinking(effort: str, model: ModelSpec, params: Mapping[str, Any], bad: BadRequestFactory
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Claude's thinking for ``effort`` -> (``additionalModelRequestFields`` entries, ``params`` as thinking
    allows them). ``none`` is no thinking; the budgets, effort levels and budget fitting are the Anthropic
    adapter's, so a request means the same on both."""
    if effort == "none":
        return {}, dict(params)
    out = {k: v for k, v in params.items() if k not in ("temperature", "top_k")}
    if params.get("top_p") is not None:
        out["top_p"] = max(float(params["top_p"]), 0.95)
    if model.api_requirements.get("thinking") == "adaptive":
        level = EFFORT_LEVELS.get(effort)
        if level is None:
            raise bad(f"unsupported reasoning_effort {effort!r}; expected one of {sorted(EFFORT_LEVELS)}")
        return {"thinking": {"type": "adaptive"}, "output_config": {"effort": level}}, out
    budgets = {**THINKING_BUDGETS, **(model.api_requirements.get("thinking_budgets") or {})}
    if effort not in budgets:
        raise bad(f"unsupported reasoning_effort {effort!r}; expected one of {sorted(budgets)}")
    caller_max = caller_max_tokens(params, model)
    max_tokens = caller_max or int(params.get("max_tokens") or min(model.max_output_tokens, DEFAULT_MAX_TOKENS))
    out["max_tokens"], budget = fit_budget(int(budgets[effort]), max_tokens, caller_max is not None, model)
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}, out


def cohere_input_type(params: Mapping[str, Any]) -> str:
    explicit = params.get("input_type")
    if explicit:
        return str(explicit)
    task = str(params.get("task_type") or "").upper()
    return {"RETRIEVAL_QUERY": "search_query", "CLASSIFICATION": "classification",
            "CLUSTERING": "clustering"}.get(task, "search_document")


def embed_format(model: ModelSpec, bad: BadRequestFactory) -> str:
    """``titan`` or ``cohere``: the catalog's ``api_requirements.embed_format``, else Bedrock's model-id
    convention (``amazon.titan-embed-*``, ``cohere.embed-*``, optionally behind a region prefix)."""
    fmt = model.api_requirements.get("embed_format")
    if fmt in ("titan", "cohere"):
        return str(fmt)
    name = model.api_model.lower()
    if "amazon.titan-embed" in name:
        return "titan"
    if "cohere.embed" in name:
        return "cohere"
    raise bad(f"no InvokeModel embedding format known for {model.api_model}; set api_requirements.embed_format")


# ============================================================================ pure conversions: responses


def parse_converse(data: Mapping[str, Any], *, model_id: str, provider: str, invalid: Invalid) -> Response:
    """A Converse response -> ``Response``."""
    output = data.get("output")
    message = output.get("message") if isinstance(output, Mapping) else None
    if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
        raise invalid("response has no output.message.content")
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    json_output: str | None = None
    for block in message["content"]:
        if not isinstance(block, Mapping):
            continue
        if isinstance(block.get("text"), str):
            text.append(block["text"])
        elif isinstance(block.get("toolUse"), Mapping):
            tool = block["toolUse"]
            args = orjson.dumps(tool.get("input") if tool.get("input") is not None else {}).decode()
            if tool.get("name") == JSON_TOOL:
                json_output = args
            else:
                calls.append(ToolCall(id=str(tool.get("toolUseId") or f"call_{len(calls)}"),
                                      name=str(tool.get("name") or ""), arguments=args))
        elif isinstance(block.get("reasoningContent"), Mapping):
            rt = block["reasoningContent"].get("reasoningText")
            if isinstance(rt, Mapping) and isinstance(rt.get("text"), str):
                reasoning.append(rt["text"])
            signed = thinking_block_of(block)
            if signed is not None:
                thinking.append(signed)
    stop = data.get("stopReason")
    finish = STOP_REASONS.get(str(stop), "unknown") if stop else "stop"
    if json_output is not None and not calls:
        finish = "stop" if finish == "tool_calls" else finish
    usage = parse_usage(data.get("usage")) or Usage()
    metrics = data.get("metrics")
    if isinstance(metrics, Mapping) and "latencyMs" in metrics:
        usage.provider_details["latency_ms"] = metrics["latencyMs"]
    if reasoning:
        usage.provider_details["reasoning"] = "".join(reasoning)
    if stop:
        usage.provider_details["stop_reason"] = stop
    content = json_output if json_output is not None else "".join(text)
    return Response(content=content if content or not calls else None, model=model_id, provider=provider,
                    usage=usage, finish_reason=finish, tool_calls=calls, raw=data,
                    provider_details={"thinking_blocks": thinking} if thinking else {})


def parse_usage(raw: Any) -> Usage | None:
    """Converse ``usage`` -> ``Usage``; ``input_tokens`` adds the cache reads and writes Bedrock reports apart."""
    if not isinstance(raw, Mapping):
        return None

    def n(key: str) -> int:
        v = raw.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    read, write = n("cacheReadInputTokens"), n("cacheWriteInputTokens")
    return Usage(input_tokens=n("inputTokens") + read + write, output_tokens=n("outputTokens"),
                 cache_read_tokens=read, cache_write_tokens=write)


def error_type(headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The AWS error type: ``x-amzn-ErrorType`` (``Name:namespace``), else the body's ``__type``
    (``ns#Name``) or ``code``."""
    raw: Any = None
    for k, v in headers.items():
        if k.lower() == "x-amzn-errortype":
            raw = v
            break
    raw = raw or body.get("__type") or body.get("code") or body.get("Code")
    if not isinstance(raw, str) or not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1] or None


# ============================================================================ small helpers


def _botocore(provider: str, *modules: str) -> tuple[Any, ...]:
    import importlib

    try:
        return tuple(importlib.import_module(f"botocore.{m}") for m in modules)
    except ImportError:
        raise ProviderNotConfiguredError(provider, detail="botocore is missing: pip install 'modelplex[bedrock]'") \
            from None


def _request_id(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == "x-amzn-requestid":
            return v
    return None


def _schema_of(fmt: Mapping[str, Any]) -> tuple[dict[str, Any], str, str | None]:
    spec = fmt.get("json_schema") if fmt.get("type") == "json_schema" else None
    if isinstance(spec, Mapping) and isinstance(spec.get("schema"), Mapping):
        return dict(spec["schema"]), str(spec.get("name") or "json_output"), spec.get("description")
    return {"type": "object"}, "a JSON object", None


def _has_tool_blocks(messages: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[leaf] = value


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"value": raw}
    return value if isinstance(value, dict) else {"value": value}


_DOC_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


def _doc_name(filename: Any, n: int) -> str:
    """A document name Converse accepts (letters, digits, single spaces, hyphens, parentheses, brackets)."""
    stem = str(filename or "").rsplit(".", 1)[0]
    clean = re.sub(r"\s+", " ", _DOC_NAME_BAD.sub("-", stem)).strip()
    return clean[:200] or f"document-{n}"


def _deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = value
