"""Server-sent events: framing, and the one loop that streams router chunks to a client.

Owns: ``sse_data``/``sse_event`` framing, ``StreamEncoder`` (the protocol each wire format
implements: OpenAI chunks in ``openai_routes``, Anthropic events in ``anthropic_routes``),
``StreamOutcome`` and ``stream_response``, which

* sends the 200 and the headers only once the first chunk exists (errors before it are ordinary
  JSON errors with a status, decided by the caller),
* writes each chunk as it arrives,
* on an upstream failure after the first byte, writes the encoder's error event and ends the
  body WITHOUT the terminal event (so clients see a failed stream, never a silently short one),
* always closes the router's generator (``aclose``), so its ``finally`` settles the budget and
  records usage exactly once, whether the stream ended, failed, or the client went away.

Must not touch: chunk shapes (the encoders own them), error mapping (``server.errors``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

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


@dataclass(slots=True)
class StreamOutcome:
    """How a stream ended: ``completed``, ``failed`` (with ``error``) or ``disconnected``."""

    status: str = "completed"
    usage: Usage | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    error: BaseException | None = None
    chunks: int = 0


async def stream_response(send: Send, agen: AsyncIterator[StreamChunk], first: StreamChunk,
                          encoder: StreamEncoder, headers: Headers, watch: DisconnectWatch,
                          classify: Callable[[BaseException], ErrorInfo]) -> StreamOutcome:
    """Stream ``first`` and the rest of ``agen`` to the client as SSE. Never raises for upstream or
    client failures (they are reported in the outcome); re-raises only a cancellation that did not
    come from the client going away (server shutdown)."""
    out = StreamOutcome()
    chunk: StreamChunk | None = first
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})
        pending = encoder.start(first)
        while chunk is not None:
            out.chunks += 1
            if chunk.usage is not None:
                out.usage = chunk.usage
                out.cost_usd = chunk.cost_usd
            if chunk.finish_reason is not None:
                out.finish_reason = chunk.finish_reason
            data = encoder.chunk(chunk)
            if pending:
                data = pending + data
                pending = b""
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            try:
                chunk = await agen.__anext__()
            except StopAsyncIteration:
                chunk = None
        watch.stop()
        await send({"type": "http.response.body", "body": encoder.finish(), "more_body": False})
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
            await send({"type": "http.response.body", "body": encoder.error(info), "more_body": False})
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


__all__ = ["SSE_HEADERS", "StreamEncoder", "StreamOutcome", "sse_data", "sse_event", "sse_json",
           "stream_response"]
