"""The one way a serving route answers a routed chat request, whatever its wire format.

Owns: ``answer`` (with ``answer_complete`` and ``answer_stream`` behind it): given what a route parsed
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
from typing import TYPE_CHECKING, Any

from modelplex.server.gateway import fallback_from_attempts
from modelplex.server.http import DisconnectWatch, Receive, Send, send_body
from modelplex.server.sse import StreamEncoder, stream_response

if TYPE_CHECKING:
    from modelplex.server.gateway import Admission, Gateway
    from modelplex.types import Response

ExtraHeaders = Sequence[tuple[bytes, bytes]]


async def answer(gw: Gateway, route: str, receive: Receive, send: Send, messages: list[Any], params: dict[str, Any],
                 kwargs: dict[str, Any], admission: Admission, started: float, request_id: str, *, stream: bool,
                 render: Callable[[Response], bytes], encoder: Callable[[], StreamEncoder],
                 extra_headers: ExtraHeaders = ()) -> None:
    """Route one request and write its answer: ``render(resp)`` as a JSON body, or ``encoder()``'s events."""
    if stream:
        await answer_stream(gw, route, receive, send, messages, params, kwargs, admission, started, request_id,
                            encoder(), extra_headers)
    else:
        await answer_complete(gw, route, receive, send, messages, params, kwargs, admission, started, request_id,
                              render, extra_headers)


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
                       usage=resp.usage, cost_usd=resp.cost_usd, fallback=resp.fallback_used)
    await gw.settle(admission, resp.usage)


async def answer_stream(gw: Gateway, route: str, receive: Receive, send: Send, messages: list[Any],
                        params: dict[str, Any], kwargs: dict[str, Any], admission: Admission, started: float,
                        request_id: str, encoder: StreamEncoder, extra_headers: ExtraHeaders = ()) -> None:
    watch = DisconnectWatch(receive, gw.watches)
    agen = gw.router.astream(messages, **kwargs, **params)
    opened = await gw.first_chunk(route, agen, watch, started, request_id)
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
                       usage=outcome.usage, cost_usd=outcome.cost_usd, fallback=fallback)
    await gw.settle(admission, outcome.usage)


__all__ = ["answer", "answer_complete", "answer_stream"]
