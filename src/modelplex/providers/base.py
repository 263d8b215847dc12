"""The adapter contract, and the thin I/O every protocol shares.

Owns: ``ProviderConfig`` (a provider with its resolved credentials), ``WireRequest``, the ``Adapter``
base class, SSE framing, a stream's read timing (the first chunk within the attempt's time, then the idle
timeout between reads), the usage charged for a stream that breaks (``partial_usage``, counting all it
generated: ``add_generated``), and the mapping of transport failures (aiohttp exceptions, timeouts,
truncated streams) and failed generations (finish reason ``error``) onto the typed errors.

A protocol module subclasses ``Adapter`` and writes *pure* functions:
``chat_to_wire``, ``chat_from_wire``, ``classify_error``, ``new_stream_decoder`` and, where the
protocol has them, ``embed_to_wire``/``embed_from_wire``. The I/O methods here (``complete``,
``stream``, ``embed``) call those and do nothing else. The HTTP session is passed in on every
call, so tests aim adapters at fake providers on loopback.

Must not touch: retries, breakers, fallbacks, budgets, accounting (the router composes those).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson

from modelplex.errors import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    InvalidResponseError,
    ProviderError,
    StreamInterruptedError,
)
from modelplex.types import (
    ChatRequest,
    EmbeddingResponse,
    EmbedRequest,
    Response,
    StreamChunk,
    TokenCount,
    Usage,
)

if TYPE_CHECKING:
    import aiohttp

    from modelplex.catalog.schema import ModelSpec, ProviderSpec


@dataclass(slots=True)
class ProviderConfig:
    """A provider ready to call: its spec plus resolved credentials and settings.

    ``repr`` never shows credentials.
    """

    name: str
    protocol: str
    base_url: str = ""
    api_key: str | None = field(default=None, repr=False)
    extra_headers: dict[str, str] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    # Azure
    api_version: str | None = None
    deployments: dict[str, str] = field(default_factory=dict)
    """Catalog model name (or id) -> Azure deployment name."""
    use_v1_path: bool = False
    # Bedrock
    region: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    # timeouts (seconds)
    timeout: float = 60.0
    connect_timeout: float = 10.0
    spec: ProviderSpec | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Every credential value, for redaction."""
        return [s for s in (self.api_key, self.aws_secret_access_key, self.aws_session_token,
                            self.aws_access_key_id) if s]


@dataclass(slots=True)
class WireRequest:
    """An HTTP request as a pure function produced it: nothing sent yet."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(slots=True)
class HealthStatus:
    provider: str
    ok: bool
    latency_ms: float
    detail: str = ""


class StreamDecoder(ABC):
    """Turns a protocol's stream events into ``StreamChunk``s. One instance per stream.

    ``feed`` receives one SSE event (``event`` name or ``None``, raw ``data`` bytes) — or, for
    Bedrock, one decoded event-stream message. ``close`` is called at the end of the byte stream;
    it raises ``InvalidResponseError`` when the protocol's terminal event never came (a truncated
    stream), otherwise yields any final chunk.
    """

    @abstractmethod
    def feed(self, event: str | None, data: bytes) -> Iterable[StreamChunk]: ...

    @abstractmethod
    def close(self) -> Iterable[StreamChunk]: ...

    @property
    def done(self) -> bool:
        """True once the protocol's terminal event arrived; later bytes are ignored."""
        return False

    @property
    def usage_so_far(self) -> Usage | None:
        """The usage the provider reported before its final chunk (Anthropic's ``message_start`` gives the
        prompt's tokens), for the charge of a stream that breaks before the end; ``None`` by default."""
        return None


_EOL = re.compile(rb"\r\n|\r|\n")


def add_turn(turns: list[dict[str, Any]], role: str, items: list[dict[str, Any]], field: str = "content") -> None:
    """Append ``items`` as a turn of ``role``, merged into the previous turn when it has the same role
    (Anthropic, Gemini and Bedrock require alternating roles). Empty ``items`` add nothing."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][field].extend(items)
    else:
        turns.append({"role": role, field: items})


async def iter_sse(content: aiohttp.StreamReader | AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """Yield ``(event, data)`` per Server-Sent Event, per the WHATWG framing rules (lines end with
    ``\\r\\n``, ``\\n`` or ``\\r``; multi-line data joined with ``\\n``; comments ignored).

    Reads whatever bytes have arrived (``StreamReader.iter_any``; any async iterable of byte chunks or
    lines otherwise) and splits them here: one await per network read rather than one per line."""
    event: str | None = None
    data: list[bytes] = []
    source = content.iter_any() if hasattr(content, "iter_any") else content
    chunks = source.__aiter__()
    rest = b""
    done = False
    while not done:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            done = True
            if not rest:
                break
            lines = [rest[:-1] if rest.endswith(b"\r") else rest]
            rest = b""
        else:
            if not chunk:
                continue
            buf = rest + chunk if rest else chunk
            held = buf.endswith(b"\r")  # maybe the first half of a CRLF: the next chunk decides
            lines = _EOL.split(buf[:-1] if held else buf)
            rest = lines.pop() + b"\r" if held else lines.pop()
        for line in lines:
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = None, []
                continue
            if line[0] == 58:  # ":" starts a comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode()
    if data:
        yield event, b"\n".join(data)



_TOOL_ID_OK = re.compile(r"[A-Za-z0-9_-]{1,64}")


def portable_tool_id(tool_id: str) -> str:
    """A tool-call id that Anthropic (``^[a-zA-Z0-9_-]+$``) and Bedrock (the same, at most 64 characters)
    accept. An id already in that form is kept; any other (another provider's, such as Gemini's ids that
    carry a base64 thought signature) becomes ``toolu_`` and a digest of it, so that a conversation moved
    between providers by a fallback keeps each call and its result paired: the call and the result map
    to the same id."""
    if _TOOL_ID_OK.fullmatch(tool_id):
        return tool_id
    return "toolu_" + hashlib.blake2b(tool_id.encode("utf-8"), digest_size=16).hexdigest()


def thinking_blocks_of(value: Any, bad: Callable[[str], BadRequestError]) -> list[dict[str, Any]]:
    """An assistant message's ``thinking_blocks`` (Anthropic's shape, as ``Response.provider_details`` gives
    them), checked and copied: signed ``thinking`` blocks and ``redacted_thinking`` blocks, nothing else.
    The Anthropic and Bedrock adapters send them back, each in its own form."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad("thinking_blocks must be a list of thinking blocks")
    out: list[dict[str, Any]] = []
    for b in value:
        kind = b.get("type") if isinstance(b, Mapping) else None
        if kind == "thinking" and isinstance(b.get("thinking"), str) and isinstance(b.get("signature"), str):
            out.append({"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]})
        elif kind == "redacted_thinking" and isinstance(b.get("data"), str):
            out.append({"type": "redacted_thinking", "data": b["data"]})
        else:
            raise bad("thinking_blocks entries must be thinking blocks (thinking and signature) or "
                      "redacted_thinking blocks (data)")
    return out


StructuredChoice = Literal["any", "caller", "ours"]


def structured_tool_choice(has_tools: bool, caller: str | None) -> StructuredChoice:
    """The tool choice of a request whose ``response_format`` travels as a tool of ours (Anthropic, Bedrock),
    from whether the caller sent tools of its own and the kind of its ``tool_choice`` (``auto``, ``any``
    (OpenAI's ``required``), ``tool`` (a named function), ``none``, or ``None`` when unset):

    * no tools of the caller's: ``ours``, our tool is forced;
    * tools, and a choice that lets the model use them (unset, ``auto``, ``any``): ``any``, the model must
      call one of them or ours (forcing ours would make the caller's tools uncallable);
    * a named function: ``caller``, the caller's choice stands;
    * ``none``: ``ours``.

    Both adapters map the decision onto their own wire shape, so the same request behaves alike on both."""
    if not has_tools or caller == "none":
        return "ours"
    if caller == "tool":
        return "caller"
    return "any"


def load_json_object(payload: bytes, invalid: Callable[[str], InvalidResponseError], *,
                     what: str = "response body") -> dict[str, Any]:
    """``payload`` (a ``what``: a response body, a stream event) parsed as a JSON object; ``invalid(message)``
    is raised for anything else."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise invalid(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid(f"{what} is not a JSON object")
    return data


@functools.lru_cache(maxsize=64, typed=True)
def request_timeout(total: float, sock_connect: float) -> aiohttp.ClientTimeout:
    """The ``ClientTimeout`` of a non-streaming request. aiohttp's ``ClientTimeout`` is frozen, so one object
    serves every request with the same figures; the cache is bounded because the router may pass the time
    left before a call's deadline, which varies."""
    import aiohttp

    return aiohttp.ClientTimeout(total=total, sock_connect=sock_connect)


@functools.lru_cache(maxsize=16)
def _stream_timeout(sock_connect: float) -> aiohttp.ClientTimeout:
    """The ``ClientTimeout`` of a streaming request: only the connect is aiohttp's to bound; the reads are
    bounded by ``_ReadClock`` (the first chunk by the attempt's time, later ones by the idle timeout)."""
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_connect=sock_connect, sock_read=None)


class _ReadClock:
    """The time limits of one stream's reads. Until the first chunk has been passed on, every wait (for the
    answer's headers, for each read) ends by ``first_by``: ``timeout`` seconds from the start, so a model that
    takes long to start is waited for as long as the attempt may last. After it, each read waits at most
    ``idle`` seconds."""

    __slots__ = ("_loop", "first_by", "idle", "started")

    def __init__(self, timeout: float, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.first_by = self._loop.time() + timeout
        self.idle = idle
        self.started = False
        """Set once a chunk has been passed on."""

    async def reads(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        """``content``'s bytes as they arrive, each read within its limit (``TimeoutError`` otherwise)."""
        chunks = content.iter_any().__aiter__()
        loop = self._loop
        while True:
            async with asyncio.timeout_at(loop.time() + self.idle if self.started else self.first_by):
                try:
                    data = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            yield data


def add_generated(chunk: StreamChunk, out: list[str]) -> None:
    """Append what ``chunk`` generated to ``out``: its text, refusal and reasoning, and its tool calls' names
    and argument fragments. A stream's output estimate counts all of it, as the non-streaming estimate
    counts an answer's content, refusal and tool calls."""
    if chunk.delta:
        out.append(chunk.delta)
    if chunk.refusal_delta:
        out.append(chunk.refusal_delta)
    if chunk.reasoning_delta:
        out.append(chunk.reasoning_delta)
    for call in chunk.tool_calls:
        if call.name:
            out.append(call.name)
        if call.arguments:
            out.append(call.arguments)


def partial_usage(reported: Usage | None, output_tokens: int, input_tokens: Callable[[], int], *,
                  final: bool = False) -> Usage:
    """The usage of a stream that ended early, having generated ``output_tokens`` (counted locally from what
    arrived). The provider's own figures win where it sent them: a ``final`` usage (a chunk's, such as the
    one that came with a failed generation's end) whose output covers what arrived is kept as it is;
    otherwise its input tokens (Anthropic's ``message_start`` reports them first) are kept and the output is
    the larger of its count and the local one. The rest is estimated (``input_tokens()`` counts the prompt
    with its tool definitions), and the usage says so."""
    if final and reported is not None and reported.input_tokens > 0 and reported.output_tokens >= output_tokens:
        return reported
    if reported is None or reported.input_tokens <= 0:
        counted = reported.output_tokens if reported is not None else 0
        return Usage(input_tokens=input_tokens(), output_tokens=max(output_tokens, counted), estimated=True)
    return Usage(input_tokens=reported.input_tokens, output_tokens=max(output_tokens, reported.output_tokens),
                 cache_read_tokens=reported.cache_read_tokens, cache_write_tokens=reported.cache_write_tokens,
                 estimated=True, provider_details=dict(reported.provider_details))


class Adapter(ABC):
    """One wire protocol. Subclasses implement the pure functions; I/O lives here."""

    protocol: ClassVar[str]

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider

    # ------------------------------------------------------------------ pure functions

    @abstractmethod
    def chat_to_wire(self, req: ChatRequest, model: ModelSpec) -> WireRequest:
        """Build the HTTP request for a chat call (streaming when ``req.stream``)."""

    @abstractmethod
    def chat_from_wire(self, payload: bytes, model: ModelSpec, headers: Mapping[str, str] | None = None
                       ) -> Response:
        """Parse a 2xx chat body. Raises ``InvalidResponseError`` on a malformed or truncated body."""

    @abstractmethod
    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes, model: ModelSpec
                       ) -> ProviderError:
        """Map a non-2xx answer onto the typed hierarchy, from the status and the body's structured
        error type/code (never its English message). Uses ``errors.status_error``."""

    @abstractmethod
    def new_stream_decoder(self, model: ModelSpec, req: ChatRequest) -> StreamDecoder: ...

    def embed_to_wire(self, req: EmbedRequest, model: ModelSpec) -> WireRequest:
        raise NotImplementedError(f"{self.protocol} adapter has no embeddings")

    def embed_from_wire(self, payload: bytes, model: ModelSpec, req: EmbedRequest) -> EmbeddingResponse:
        raise NotImplementedError(f"{self.protocol} adapter has no embeddings")

    def health_to_wire(self) -> WireRequest | None:
        """A cheap authenticated request that proves the provider answers (e.g. list models)."""
        return None

    def sign(self, wire: WireRequest) -> WireRequest:
        """Hook for request signing (Bedrock SigV4). Identity by default."""
        return wire

    # ------------------------------------------------------------------ helpers for subclasses

    def count_tokens(self, messages: list[Any], model: ModelSpec, *, tools: list[dict[str, Any]] | None = None
                     ) -> TokenCount:
        """The prompt's tokens (with its tool definitions, which are prompt tokens too), counted locally."""
        from modelplex.catalog.tokens import count_messages

        return count_messages(messages, model, tools=tools)

    def _invalid(self, model: ModelSpec, message: str, body: Any = None) -> InvalidResponseError:
        return InvalidResponseError(message, provider=self.provider.name, model=model.id, body=body)

    def _json_object(self, payload: bytes, model: ModelSpec) -> dict[str, Any]:
        """A 2xx body parsed as a JSON object, or ``InvalidResponseError``."""
        return load_json_object(payload, lambda message: self._invalid(model, message))

    # ------------------------------------------------------------------ I/O

    async def _send(self, session: aiohttp.ClientSession, wire: WireRequest, model: ModelSpec,
                    timeout: float) -> tuple[int, Mapping[str, str], bytes]:
        wire = self.sign(wire)
        try:
            async with session.request(
                wire.method, wire.url, headers=wire.headers, data=wire.body,
                timeout=request_timeout(timeout, min(timeout, self.provider.connect_timeout)),
            ) as resp:
                body = await resp.read()
                return resp.status, resp.headers, body
        except TimeoutError as exc:
            raise APITimeoutError(f"no answer within {timeout:g}s", provider=self.provider.name,
                                  model=model.id) from exc
        except Exception as exc:
            err = self._transport_error(exc, model)
            if err is None:
                raise
            raise err from exc

    def _transport_error(self, exc: Exception, model: ModelSpec) -> ProviderError | None:
        """The typed error for an aiohttp failure of a non-streaming request; ``None`` for any other exception.
        (aiohttp is imported here, on failure only: the happy path pays no import statement.)"""
        import aiohttp

        if isinstance(exc, aiohttp.ClientPayloadError):
            return InvalidResponseError("truncated response body", provider=self.provider.name, model=model.id)
        if isinstance(exc, aiohttp.ClientError):
            return APIConnectionError(f"connection failed: {type(exc).__name__}", provider=self.provider.name,
                                      model=model.id)
        return None

    async def complete(self, session: aiohttp.ClientSession, req: ChatRequest, model: ModelSpec, *,
                       timeout: float | None = None) -> Response:
        started = time.perf_counter()
        wire = self.chat_to_wire(req, model)
        status, headers, body = await self._send(session, wire, model, timeout or self.provider.timeout)
        if status >= 400:
            raise self.classify_error(status, headers, body, model)
        resp = self.chat_from_wire(body, model, headers)
        if resp.finish_reason == "error":
            details = resp.usage.provider_details
            reason = details.get("finish_reason") or details.get("stop_reason")
            raise self._failed_generation(model, reason if isinstance(reason, str) else None)
        resp.latency_ms = (time.perf_counter() - started) * 1000.0
        resp.request_id = req.request_id
        return resp

    async def embed(self, session: aiohttp.ClientSession, req: EmbedRequest, model: ModelSpec, *,
                    timeout: float | None = None) -> EmbeddingResponse:
        started = time.perf_counter()
        wire = self.embed_to_wire(req, model)
        status, headers, body = await self._send(session, wire, model, timeout or self.provider.timeout)
        if status >= 400:
            raise self.classify_error(status, headers, body, model)
        resp = self.embed_from_wire(body, model, req)
        resp.latency_ms = (time.perf_counter() - started) * 1000.0
        resp.request_id = req.request_id
        return resp

    async def health_check(self, session: aiohttp.ClientSession, *, timeout: float = 5.0) -> HealthStatus:
        from modelplex.catalog.schema import ModelSpec

        started = time.perf_counter()
        wire = self.health_to_wire()
        if wire is None:
            return HealthStatus(self.provider.name, True, 0.0, "no health endpoint; assumed up")
        probe = ModelSpec(id=f"{self.provider.name}/health", provider=self.provider.name, context_window=1)
        try:
            status, headers, body = await self._send(session, wire, probe, timeout)
        except ProviderError as exc:
            return HealthStatus(self.provider.name, False, (time.perf_counter() - started) * 1000, exc.kind)
        ms = (time.perf_counter() - started) * 1000
        if status >= 400:
            return HealthStatus(self.provider.name, False, ms,
                                self.classify_error(status, headers, body, probe).kind)
        return HealthStatus(self.provider.name, True, ms, "ok")

    async def stream(self, session: aiohttp.ClientSession, req: ChatRequest, model: ModelSpec, *,
                     timeout: float | None = None, idle_timeout: float | None = None
                     ) -> AsyncIterator[StreamChunk]:
        """Yield chunks. The wait for the first chunk (the answer's status and headers included) is bounded by
        ``timeout``, the attempt's time: a model may take long to start. After the first chunk, each network read
        waits at most ``idle_timeout`` (``routing.stream_idle_timeout``). Failure before the first chunk raises
        the ordinary (retryable) error; after it, ``StreamInterruptedError`` with the partial usage (the
        provider's own figures where it sent them before the failure, estimated from what arrived otherwise).
        A chunk whose ``finish_reason`` is ``error`` (a generation the provider reports as failed) is not
        passed on: it is an ``InvalidResponseError``, so a stream that failed that way is never an answer."""
        import aiohttp

        timeout = timeout or self.provider.timeout
        idle = idle_timeout or timeout
        wire = self.sign(self.chat_to_wire(req, model))
        decoder = self.new_stream_decoder(model, req)
        clock = _ReadClock(timeout, idle)
        text: list[str] = []
        generated: list[str] = []
        usage_seen: Usage | None = None
        try:
            async with asyncio.timeout_at(clock.first_by):
                resp = await session.request(
                    wire.method, wire.url, headers=wire.headers, data=wire.body,
                    timeout=_stream_timeout(min(timeout, self.provider.connect_timeout)))
            async with resp:
                if resp.status >= 400:
                    async with asyncio.timeout_at(clock.first_by):
                        body = await resp.read()
                    raise self.classify_error(resp.status, resp.headers, body, model)
                async for event, data in self._events(clock.reads(resp.content)):
                    for chunk in decoder.feed(event, data):
                        if chunk.usage is not None:
                            usage_seen = chunk.usage
                        if chunk.finish_reason == "error":
                            raise self._failed_generation(model)
                        if chunk.delta:
                            text.append(chunk.delta)
                        add_generated(chunk, generated)
                        clock.started = True
                        yield chunk
                    if decoder.done:
                        break
                for chunk in decoder.close():
                    if chunk.usage is not None:
                        usage_seen = chunk.usage
                    if chunk.finish_reason == "error":
                        raise self._failed_generation(model)
                    add_generated(chunk, generated)
                    clock.started = True
                    yield chunk
        except ProviderError as exc:
            if clock.started and not isinstance(exc, StreamInterruptedError):
                raise self._interrupted(exc, req, model, text, generated, usage_seen, decoder) from exc
            raise
        except TimeoutError as exc:
            message = f"stream idle for {idle:g}s" if clock.started else f"no first chunk within {timeout:g}s"
            err = APITimeoutError(message, provider=self.provider.name, model=model.id)
            if clock.started:
                raise self._interrupted(err, req, model, text, generated, usage_seen, decoder) from exc
            raise err from exc
        except aiohttp.ClientError as exc:
            err2: ProviderError = APIConnectionError(f"stream broke: {type(exc).__name__}",
                                                     provider=self.provider.name, model=model.id)
            if isinstance(exc, aiohttp.ClientPayloadError):
                err2 = InvalidResponseError("truncated stream", provider=self.provider.name, model=model.id)
            if clock.started:
                raise self._interrupted(err2, req, model, text, generated, usage_seen, decoder) from exc
            raise err2 from exc

    async def _events(self, content: aiohttp.StreamReader | AsyncIterator[bytes]
                      ) -> AsyncIterator[tuple[str | None, bytes]]:
        """The stream's events from its bytes; SSE by default. Bedrock overrides this with AWS event-stream
        framing."""
        async for item in iter_sse(content):
            yield item

    def _failed_generation(self, model: ModelSpec, reason: str | None = None) -> InvalidResponseError:
        """The error for an answer that ends with finish reason ``error``: the provider says the generation
        failed (Gemini's ``MALFORMED_FUNCTION_CALL``, Bedrock's ``malformed_model_output`` ...). Retryable: the
        same request may well succeed on a retry, or on another model."""
        why = f" ({reason})" if reason else ""
        return InvalidResponseError(f"the model's generation failed{why}; the answer is not usable",
                                    provider=self.provider.name, model=model.id, error_code=reason)

    def _interrupted(self, cause: ProviderError, req: ChatRequest, model: ModelSpec, text: list[str],
                     generated: list[str], usage_seen: Usage | None, decoder: StreamDecoder
                     ) -> StreamInterruptedError:
        """The error for a stream that broke after its first chunk: ``text`` is the answer's text so far,
        ``generated`` everything the stream generated (``add_generated``), ``usage_seen`` the usage a chunk
        carried (the provider's count), else the decoder's ``usage_so_far`` (a partial one) is used."""
        from modelplex.catalog.tokens import count_text

        out = "".join(generated)
        reported = usage_seen if usage_seen is not None else decoder.usage_so_far
        tools = req.params.get("tools") or None
        usage = partial_usage(reported, count_text(out, model).tokens if out else 0,
                              lambda: self.count_tokens(req.messages, model, tools=tools).tokens,
                              final=usage_seen is not None)
        return StreamInterruptedError(
            f"stream interrupted after first chunk ({cause.kind})",
            partial_usage=usage, partial_content="".join(text),
            provider=self.provider.name, model=model.id, status_code=cause.status_code,
            request_id=cause.request_id,
        )
