"""``POST /v1/messages/count_tokens``: Anthropic's token-counting endpoint, answered locally.

Owns: the ``CountTokens`` route. The body is an Anthropic Messages body without ``max_tokens``
(``model``, ``messages``, ``system``, ``tools``, ``tool_choice``, ``thinking``, ``modelplex``);
it is converted like ``/v1/messages`` and planned like a real request (a model, a task or
``auto``, the token pre-check, the caller's allow-list), and the prompt is counted for the model
that would answer it first (``Router.count_tokens``). Nothing is sent upstream and no budget or
rate limit is charged. The answer is Anthropic's shape, ``{"input_tokens": N}``; the headers
``x-modelplex-model`` / ``x-modelplex-provider`` name the model counted for and
``x-modelplex-token-count`` says ``exact`` (a real tokenizer) or ``estimate`` (the calibrated
heuristic of a model whose tokenizer is not public).

Must not touch: the request conversion (``anthropic_routes``), auth internals, the router's logic.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from modelplex.ids import new_request_id
from modelplex.server import http
from modelplex.server.anthropic_routes import send_anthropic_error, to_router_request
from modelplex.server.auth import check_target
from modelplex.server.errors import invalid_request
from modelplex.server.gateway import Extension

if TYPE_CHECKING:
    from modelplex.server.gateway import Gateway

_NOT_ACCEPTED = ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k", "metadata",
                 "service_tier")
"""Messages fields that do not belong in a count (Anthropic's count_tokens rejects them too)."""


class CountTokens:
    """``POST /v1/messages/count_tokens`` (an ASGI callable: Starlette treats a plain function as a
    request handler, so this stays a class)."""

    route = "count_tokens"

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        gw, started, request_id = self.gw, time.perf_counter(), new_request_id()
        try:
            head = http.RequestHead(scope)
            http.check_length(head, gw.max_body)
            principal = await gw.auth.inference(head)
            data = http.parse_object(await http.read_body(receive, gw.max_body, head.content_length))
            for name in _NOT_ACCEPTED:
                if name in data:
                    raise invalid_request(f"{name}: Extra inputs are not permitted", param=name,
                                          code="unknown_parameter")
            messages, params, _, user = to_router_request({**data, "max_tokens": 1})
            del params["max_tokens"]
            ext = Extension.parse(data.get("modelplex"))
            target = gw.resolve_target(data.get("model"))
            check_target(principal, gw.ext_task_target(target, ext))
            kwargs = gw.route_kwargs(target, ext, user=user, request_id=request_id, principal=principal)
            for name in ("request_id", "api_key_id", "tags"):  # a count is not a request: nothing is recorded
                kwargs.pop(name, None)
            spec, count = gw.router.count_tokens(messages, **kwargs, **params)
        except Exception as exc:
            await send_anthropic_error(gw, send, exc, self.route, request_id, started)
            return
        headers = gw.routing_headers(request_id, spec.id, spec.provider)
        headers += [(b"x-modelplex-token-count", b"exact" if count.exact else b"estimate"),
                    (b"request-id", f"req_{request_id}".encode())]
        await http.send_body(send, 200, orjson.dumps({"input_tokens": count.tokens}), headers)
        gw.metrics.observe(self.route, 200, time.perf_counter() - started)


__all__ = ["CountTokens"]
