"""Server-sent events: framing, and the one loop that streams router chunks to a client.

Owns: ``sse_data``/``sse_event`` framing, ``StreamEncoder`` (the protocol each wire format
implements: OpenAI chunks in ``openai_routes``, Anthropic events in ``anthropic_routes``),
``StreamOutcome`` and ``stream_response``, which

* sends the 200 and the headers only once the first chunk exists (errors before it are ordinary
  JSON errors with a status, decided by the caller),
* writes each chunk as soon as the generator would have to wait for the next one (the chunks it
  has ready together, as one upstream read often brings, go out in one write),
* on an upstream failure after the first byte, writes the encoder's error event and ends the
  body WITHOUT the terminal event (so clients see a failed stream, never a silently short one),
* always closes the router's generator (``aclose``), so its ``finally`` settles the budget and
  records usage exactly once, whether the stream ended, failed, or the client went away.

Must not touch: chunk shapes (the encoders own them), error mapping (``server.errors``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from modelplex.server.errors import ErrorInfo
from modelplex.server.http import DisconnectWatch, Headers, Send
from modelplex.types import StreamChunk, Usage

log = logging.getLogger("modelplex.server")

SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no")]


def sse_data(payload: bytes) -> bytes:
    """``data: <payload>`` framed as one event."""
    return b"data: " + payload + b"\n\n"


def sse_event(event: bytes, payload: bytes) -> bytes:
    """``event: <name>`` plus ``data: <payload>``."""
    return b"event: " + event + b"\ndata: " + payload + b"\n\n"


def sse_json(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class StreamEncoder(Protocol):
    """Turns router chunks into one wire format's bytes."""

    def start(self, first: StreamChunk) -> bytes:
        """Bytes that open the stream (role chunk, ``message_start``...)."""

    def chunk(self, chunk: StreamChunk) -> bytes:
        """Bytes for one chunk (may be empty)."""

    def finish(self) -> bytes:
        """Bytes that close a successful stream (usage chunk and ``[DONE]``, ``message_stop``...)."""

    def error(self, info: ErrorInfo) -> bytes:
        """An in-stream error event, sent after the first byte when the upstream fails."""


class EndTracking:
    """For encoders: ``note_end`` keeps the last usage, its cost and the finish reason the chunks carried,
    for the closing event."""

    __slots__ = ("cost_usd", "finish_reason", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.cost_usd: float | None = None
        self.finish_reason: str | None = None

    def note_end(self, c: StreamChunk) -> None:
        if c.usage is not None:
            self.usage = c.usage
            self.cost_usd = c.cost_usd
        if c.finish_reason is not None:
            self.finish_reason = c.finish_reason


@dataclass(slots=True)
class StreamOutcome:
    """How a stream ended: ``completed``, ``failed`` (with ``error``) or ``disconnected``."""

    status: str = "completed"
    usage: Usage | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    error: BaseException | None = None
    chunks: int = 0


FLUSH_BYTES = 65_536
"""Events that are ready together go out in one write, up to this many bytes."""
_NOT_STARTED = object()


class _Reyield:
    """Hands a value that an inner awaitable yielded to the event loop on to the running task, and
    returns what the task sends back: the other half of ``_finish``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _finish(step: Any, yielded: Any) -> Any:
    """Await the rest of ``step`` (a coroutine-like ``__anext__`` awaitable, already started by hand,
    which yielded ``yielded``): exactly what ``await step`` would have done from that point, with
    cancellation and errors passed through."""
    while True:
        try:
            sent = await _Reyield(yielded)
        except GeneratorExit:
            step.close()
            raise
        except BaseException as exc:  # cancellation (client gone, shutdown) goes to the generator
            try:
                yielded = step.throw(exc)
            except StopIteration as done:
                return done.value
            continue
        try:
            yielded = step.send(sent)
        except StopIteration as done:
            return done.value


async def _abandon(step: Any, yielded: Any) -> None:
    """Cancel a step that was started by hand and is no longer awaited, and run it to its end, as a
    cancellation of ``await step`` would have: the generator sees ``CancelledError`` where it waits,
    and is left finished or suspended at a ``yield`` (so ``aclose`` works)."""
    try:
        yielded = step.throw(asyncio.CancelledError())
    except (Exception, asyncio.CancelledError):
        return
    try:
        await _finish(step, yielded)
    except (Exception, asyncio.CancelledError):
        pass


async def stream_response(send: Send, agen: AsyncIterator[StreamChunk], first: StreamChunk,
                          encoder: StreamEncoder, headers: Headers, watch: DisconnectWatch,
                          classify: Callable[[BaseException], ErrorInfo]) -> StreamOutcome:
    """Stream ``first`` and the rest of ``agen`` to the client as SSE. Never raises for upstream or
    client failures (they are reported in the outcome); re-raises only a cancellation that did not
    come from the client going away (server shutdown).

    Every event is written as soon as the generator would have to wait for the next one (never
    later); the events it has ready without waiting (an upstream read that brought several, the
    end of the stream) are written together, in one ASGI ``send``."""
    out = StreamOutcome()
    ready: list[bytes] = []
    size = 0
    chunk: StreamChunk = first
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})
        ready.append(encoder.start(first))
        while True:
            out.chunks += 1
            if chunk.usage is not None:
                out.usage = chunk.usage
                out.cost_usd = chunk.cost_usd
            if chunk.finish_reason is not None:
                out.finish_reason = chunk.finish_reason
            data = encoder.chunk(chunk)
            if data:
                ready.append(data)
                size += len(data)
            try:
                step = agen.__anext__()
            except StopAsyncIteration:  # an iterator that ends without an awaitable
                break
            advance = getattr(step, "send", None) if size < FLUSH_BYTES else None
            yielded: Any = _NOT_STARTED
            if advance is not None:
                try:
                    yielded = advance(None)
                except StopIteration as done:  # the next chunk was ready: no wait, no write yet
                    chunk = done.value
                    continue
                except StopAsyncIteration:
                    break
            if ready:  # the generator must wait (or the batch is full): what is ready goes out first
                body = b"".join(ready)
                ready.clear()
                size = 0
                try:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                except GeneratorExit:
                    raise
                except BaseException:  # e.g. cancelled while the server waited to write to a slow client
                    if yielded is not _NOT_STARTED:
                        await _abandon(step, yielded)
                    raise
            try:
                chunk = await (step if yielded is _NOT_STARTED else _finish(step, yielded))
            except StopAsyncIteration:
                break
        watch.stop()
        ready.append(encoder.finish())
        await send({"type": "http.response.body", "body": b"".join(ready), "more_body": False})
    except asyncio.CancelledError:
        if not watch.disconnected:
            raise
        out.status = "disconnected"
    except Exception as exc:  # upstream failure after the first byte: error event, no terminal event
        out.status = "failed"
        out.error = exc
        watch.stop()
        info = classify(exc)
        log.warning("stream failed after first byte: %s (%s)", info.code, type(exc).__name__)
        try:
            await send({"type": "http.response.body", "body": b"".join(ready) + encoder.error(info),
                        "more_body": False})
        except Exception:  # the client may be gone too
            pass
    finally:
        watch.stop()
        if isinstance(agen, AsyncGenerator):
            try:
                await agen.aclose()
            except Exception:  # closing a failed generator re-raises nothing useful here
                pass
        watch.absorb()
    return out


__all__ = [
    "SSE_HEADERS",
    "EndTracking",
    "StreamEncoder",
    "StreamOutcome",
    "sse_data",
    "sse_event",
    "sse_json",
    "stream_response",
]
