"""The one way a serving route answers a routed chat request, whatever its wire format.

Owns: ``ChatRoute`` (the skeleton of a chat-like route: request id, in-flight gauge, body size, auth,
reading the body, resolving the model, the key's admission, the error answer), ``send_openai_error``, and
``answer_complete`` and ``answer_stream``: given what a route parsed
(messages, model parameters, the router's keyword arguments, the admission), call the router, write the
answer in the route's format and do the bookkeeping every chat-like route shares: the client going
away (a 499, no answer written), routing headers, metrics, stream outcomes, and settling the key's
token bucket with the real usage. ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/messages``
differ only in how they parse a body and render an answer (``render`` for a complete one, a
``StreamEncoder`` for a stream).

Must not touch: parsing and wire shapes (the routes own them), error mapping (``server.errors``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from modelplex.ids import new_request_id
from modelplex.server.auth import Principal, check_target
from modelplex.server.errors import openai_error_body, retry_after_header
from modelplex.server.gateway import Extension, estimate_tokens, fallback_from_attempts
from modelplex.server.http import (
    DisconnectWatch,
    Receive,
    RequestHead,
    Scope,
    Send,
    check_length,
    parse_object,
    read_body,
    send_body,
)
from modelplex.server.sse import StreamEncoder, stream_response
from modelplex.types import Usage

if TYPE_CHECKING:
    from modelplex.server.gateway import Admission, Gateway
    from modelplex.types import Response

ExtraHeaders = Sequence[tuple[bytes, bytes]]


async def send_openai_error(gw: Gateway, send: Send, exc: BaseException, route: str, request_id: str,
                            started: float) -> int:
    """Answer ``exc`` as an OpenAI error object (with any ``retry-after``) and count it."""
    info = gw.error_info(exc, route, request_id)
    headers = [(b"x-modelplex-request-id", request_id.encode()), *retry_after_header(info)]
    await send_body(send, info.status, openai_error_body(info), headers)
    gw.metrics.observe(route, info.status, time.perf_counter() - started)
    return info.status


@dataclass(slots=True)
class ChatInput:
    """What a chat-like route parsed from its body, in the router's terms."""

    model: Any
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    stream: bool
    ext: Extension
    user: str | None
    include_usage: bool = False
    timeout: float | None = None


class ChatRoute:
    """A route that answers chat-like requests. Subclasses set ``route`` and ``convert`` or ``parse`` (the body
    -> ``ChatInput``), and implement ``render`` (a ``Response`` -> the JSON body) and ``encoder`` (the stream's
    ``StreamEncoder``); ``extra_headers`` and ``send_error`` (OpenAI's error shape) may be overridden."""

    route: ClassVar[str]

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._in_flight = gw.metrics.in_flight.labels(self.route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        started = time.perf_counter()
        request_id = new_request_id()
        self._in_flight.inc()
        try:
            head = RequestHead(scope)
            check_length(head, gw.max_body)
            principal = await gw.auth.inference(head)
            body = await read_body(receive, gw.max_body, head.content_length)
            await self.serve(principal, body, receive, send, started, request_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.send_error(send, exc, request_id, started)
        finally:
            self._in_flight.dec()

    convert: ClassVar[Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any], bool, str | None]]]
    """For routes whose body converts to ``(messages, params, stream, user)`` (the default ``parse``)."""

    def parse(self, data: dict[str, Any]) -> ChatInput:
        messages, params, stream, user = type(self).convert(data)
        return ChatInput(data.get("model"), messages, params, stream, Extension.parse(data.get("modelplex")), user)

    def render(self, resp: Response, data: dict[str, Any], request_id: str) -> bytes:
        raise NotImplementedError

    def encoder(self, chat: ChatInput, data: dict[str, Any], request_id: str) -> StreamEncoder:
        raise NotImplementedError

    def extra_headers(self, request_id: str) -> ExtraHeaders:
        return ()

    async def serve(self, principal: Principal, body: bytes, receive: Receive, send: Send, started: float,
                    request_id: str) -> None:
        """Parse, resolve the model (with the key's allow-list), take the key's admission, answer."""
        gw = self.gw
        data = parse_object(body)
        chat = self.parse(data)
        target = gw.resolve_target(chat.model)
        check_target(principal, gw.ext_task_target(target, chat.ext))
        kwargs = gw.route_kwargs(target, chat.ext, user=chat.user, request_id=request_id, principal=principal)
        if chat.timeout is not None:
            kwargs["timeout"] = min(chat.timeout, gw.config.routing.deadline)
        admission = await gw.admit(principal, estimate_tokens(len(body), chat.params.get("max_tokens")))
        extra = self.extra_headers(request_id)
        if chat.stream:
            await answer_stream(gw, self.route, receive, send, chat.messages, chat.params, kwargs, admission, started,
                                request_id, self.encoder(chat, data, request_id), extra)
        else:
            await answer_complete(gw, self.route, receive, send, chat.messages, chat.params, kwargs, admission,
                                  started, request_id, lambda resp: self.render(resp, data, request_id), extra)

    async def send_error(self, send: Send, exc: BaseException, request_id: str, started: float) -> None:
        await send_openai_error(self.gw, send, exc, self.route, request_id, started)


NOTHING_USED = Usage()
"""What a request that failed is charged against its key's TPM: nothing (its estimate is given back).
A request the client abandoned keeps its estimate: the upstream may have spent the tokens."""


async def answer_complete(gw: Gateway, route: str, receive: Receive, send: Send, messages: list[Any],
                          params: dict[str, Any], kwargs: dict[str, Any], admission: Admission, started: float,
                          request_id: str, render: Callable[[Response], bytes], extra_headers: ExtraHeaders = ()
                          ) -> None:
    watch = DisconnectWatch(receive, gw.watches)
    try:
        resp = await gw.router.acomplete(messages, **kwargs, **params)
    except asyncio.CancelledError:
        if not watch.disconnected:
            raise
        watch.absorb()
        gw.metrics.observe(route, 499, time.perf_counter() - started)
        await gw.settle(admission, None)
        return
    except Exception:
        await gw.settle(admission, NOTHING_USED)
        raise
    finally:
        watch.stop()
    if watch.disconnected:
        watch.absorb()
    headers = gw.routing_headers(request_id, resp.model, resp.provider, cost_usd=resp.cost_usd,
                                 fallback=resp.fallback_used, attempts=len(resp.attempts), task=resp.task,
                                 strategy=resp.strategy)
    headers.extend(extra_headers)
    await send_body(send, 200, render(resp), headers)
    gw.metrics.observe(route, 200, time.perf_counter() - started, model=resp.model, provider=resp.provider,
                       fallback=resp.fallback_used)
    await gw.settle(admission, resp.usage)


async def answer_stream(gw: Gateway, route: str, receive: Receive, send: Send, messages: list[Any],
                        params: dict[str, Any], kwargs: dict[str, Any], admission: Admission, started: float,
                        request_id: str, encoder: StreamEncoder, extra_headers: ExtraHeaders = ()) -> None:
    watch = DisconnectWatch(receive, gw.watches)
    agen = gw.router.astream(messages, **kwargs, **params)
    try:
        opened = await gw.first_chunk(route, agen, watch, started, request_id)
    except Exception:
        await gw.settle(admission, NOTHING_USED)
        raise
    if opened is None:
        return
    first, attempts = opened
    fallback = fallback_from_attempts(attempts, first.model)
    headers = gw.routing_headers(request_id, first.model, first.provider, fallback=fallback, attempts=len(attempts))
    headers.extend(extra_headers)
    outcome = await stream_response(send, agen, first, encoder, headers, watch,
                                    lambda e: gw.error_info(e, route, request_id))
    gw.metrics.stream_outcomes.labels(route, outcome.status).inc()
    status = 200 if outcome.status == "completed" else 499 if outcome.status == "disconnected" else 502
    gw.metrics.observe(route, status, time.perf_counter() - started, model=first.model, provider=first.provider,
                       fallback=fallback)
    await gw.settle(admission, outcome.usage)


__all__ = ["ChatInput", "ChatRoute", "answer_complete", "answer_stream", "send_openai_error"]
