"""Raw ASGI plumbing for the serving routes: headers, bounded body reads, JSON answers, disconnects.

Owns: ``RequestHead`` (the few request headers the gateway reads, found in one pass),
``read_body`` (Content-Length check plus a running count of streamed bytes, so an oversized body
is refused before it is buffered), ``parse_object`` (orjson, a clear 400 on anything but a JSON
object), ``send_body``/``send_json`` and ``DisconnectWatch`` (cancels the handler's task when the
client goes away, so an upstream call in flight is cancelled and its generator closed; with a
``WatchScheduler`` the watching starts only for calls still running after ``WATCH_AFTER_S``).

The serving routes are ASGI callables rather than Starlette request handlers: no ``Request``
object, no validation layer, bytes in and bytes out.

Must not touch: auth, routing, error mapping (``server.errors``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from modelplex.server.errors import invalid_request, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CT = (b"content-type", b"application/json")


class RequestHead:
    """The request headers the gateway looks at, lower-cased names, raw values."""

    __slots__ = ("authorization", "content_length", "x_api_key")

    def __init__(self, scope: Scope) -> None:
        self.authorization: bytes | None = None
        self.x_api_key: bytes | None = None
        self.content_length: int | None = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                self.authorization = value
            elif name == b"x-api-key" or name == b"api-key":
                self.x_api_key = value
            elif name == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    raise invalid_request("Content-Length is not a number") from None

    def credential(self) -> str | None:
        """The presented key: ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""
        if self.authorization is not None:
            raw = self.authorization.decode("latin-1").strip()
            scheme, _, rest = raw.partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                return rest.strip()
        if self.x_api_key is not None:
            value = self.x_api_key.decode("latin-1").strip()
            return value or None
        return None


def check_length(head: RequestHead, limit: int) -> None:
    """413 at once when the declared Content-Length is over the limit (before auth or reading)."""
    if head.content_length is not None and head.content_length > limit:
        raise too_large(limit)


async def read_body(receive: Receive, limit: int, content_length: int | None) -> bytes:
    """The whole request body, refusing with 413 as soon as it is known to exceed ``limit``."""
    if content_length is not None and content_length > limit:
        raise too_large(limit)
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 for empty, malformed or non-object bodies."""
    if not body:
        raise invalid_request("The request body is empty; expected a JSON object.", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.",
                              code="invalid_json") from None
    if not isinstance(data, dict):
        raise invalid_request(f"The request body must be a JSON object, not {type(data).__name__}.",
                              code="invalid_json")
    return data


async def send_body(send: Send, status: int, body: bytes, headers: Headers,
                    content_type: tuple[bytes, bytes] = JSON_CT) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [content_type, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(send: Send, status: int, obj: Any, headers: Headers | None = None) -> None:
    await send_body(send, status, orjson.dumps(obj), headers or [])


WATCH_AFTER_S = 0.1
"""Disconnect watchers start this long (up to twice this long) into a call: answers that are faster
(a gateway under load included) never pay for a watching task, and the client of a model call,
which takes longer, is watched for the rest of it. A disconnect is noticed at most 0.2 s late."""


class WatchScheduler:
    """Starts the ``DisconnectWatch``es of calls that are still running ``after_s`` (at most twice
    that) after they were registered, from one timer per event loop instead of a task per request.

    Two generations: a tick starts the watches registered before the previous tick and ages the rest;
    the timer runs only while watches are waiting. A watch stopped before its tick never costs a task.
    """

    __slots__ = ("_handle", "_loop", "_old", "_young", "after_s")

    def __init__(self, after_s: float = WATCH_AFTER_S) -> None:
        self.after_s = after_s
        self._young: set[DisconnectWatch] = set()
        self._old: set[DisconnectWatch] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def add(self, watch: DisconnectWatch) -> None:
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:  # idle, or the app moved to another loop
            self._loop = loop
            self._young, self._old = set(), set()
            self._handle = loop.call_later(self.after_s, self._tick, loop)
        self._young.add(watch)

    def discard(self, watch: DisconnectWatch) -> None:
        self._young.discard(watch)
        self._old.discard(watch)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:  # a timer left on a loop the app no longer runs on
            return
        due, self._old, self._young = self._old, self._young, set()
        self._handle = loop.call_later(self.after_s, self._tick, loop) if self._old else None
        for watch in due:
            watch.start()


class DisconnectWatch:
    """Watch ``receive`` for ``http.disconnect`` and cancel the current task when it comes.

    Start it only after the body has been read (it consumes ``receive``). ``stop()`` ends the
    watch; ``disconnected`` says whether the client went away. Without a ``scheduler`` the watching
    task starts at once; with one it starts only if the call is still running after the scheduler's
    delay (``WATCH_AFTER_S``), so a disconnect is noticed at most that much later, and an answer
    faster than that is written to the closed connection (which the server drops) instead.
    """

    __slots__ = ("_receive", "_scheduler", "_task", "_watcher", "disconnected")

    def __init__(self, receive: Receive, scheduler: WatchScheduler | None = None) -> None:
        self.disconnected = False
        self._task = asyncio.current_task()
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self._scheduler = scheduler
        if scheduler is None:
            self.start()
        else:
            scheduler.add(self)

    def start(self) -> None:
        """Begin watching now (the scheduler calls this)."""
        if self._watcher is None and self._task is not None and not self._task.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        receive = self._receive
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                if self._task is not None and not self._task.done():
                    self._task.cancel()
                return

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.discard(self)
            self._scheduler = None
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()

    def absorb(self) -> None:
        """After a disconnect-triggered ``CancelledError`` was handled: clear the cancel request so
        the handler can finish its bookkeeping (Python 3.11+ ``Task.uncancel``)."""
        if self.disconnected and self._task is not None:
            uncancel = getattr(self._task, "uncancel", None)
            if uncancel is not None:
                while self._task.cancelling():
                    uncancel()


__all__ = [
    "JSON_CT",
    "WATCH_AFTER_S",
    "DisconnectWatch",
    "Headers",
    "Receive",
    "RequestHead",
    "Scope",
    "Send",
    "WatchScheduler",
    "check_length",
    "parse_object",
    "read_body",
    "send_body",
    "send_json",
]
