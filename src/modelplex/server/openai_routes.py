"""The OpenAI-compatible serving routes: chat completions, embeddings, models.

Owns: ``POST /v1/chat/completions`` (``ChatCompletions``: non-streaming and SSE streaming, tools,
``response_format``), ``POST /v1/embeddings`` (``Embeddings``: float or base64), ``GET /v1/models``
and ``GET /v1/models/{id}`` (``Models``), the request checks for those bodies (``parse_chat``,
clear 400s, no pydantic) and the OpenAI wire shapes of the answers (``completion_body``,
``OpenAIChunkEncoder``), which the official SDKs parse unchanged.

Every route is a raw ASGI callable: orjson bytes in, orjson bytes out. Routing metadata goes out
in ``x-modelplex-*`` headers (and, for non-streaming answers, a ``modelplex`` object in the body).

Must not touch: auth internals, the router's logic, error mapping (``server.errors``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import struct
import time
from typing import TYPE_CHECKING, Any

import orjson

from modelplex.ids import new_request_id
from modelplex.messages import check_embedding_input, check_messages
from modelplex.parameters import VALUE_CHECKS, is_number, is_positive_int, value_problem
from modelplex.server.auth import Principal, check_target
from modelplex.server.errors import (
    ErrorInfo,
    GatewayError,
    invalid_request,
    not_found,
    openai_error_object,
)
from modelplex.server.gateway import (
    Extension,
    allowed_models_kwarg,
    check_user,
    estimate_tokens,
    stream_extension,
)
from modelplex.server.http import (
    Receive,
    RequestHead,
    Scope,
    Send,
    check_length,
    parse_object,
    read_body,
    send_body,
    send_json,
)
from modelplex.server.serving import NOTHING_USED, ChatInput, ChatRoute, send_openai_error
from modelplex.types import Response, StreamChunk, TokenLogprobs, Usage

if TYPE_CHECKING:
    from modelplex.server.gateway import Gateway

# ------------------------------------------------------------------------------------------ request checks

FORBIDDEN_FIELDS = frozenset({"api_base", "base_url", "api_key", "api_version", "custom_llm_provider",
                              "organization", "azure_endpoint", "azure_ad_token", "extra_headers", "headers",
                              "aws_access_key_id", "aws_secret_access_key", "aws_region_name", "vertex_project",
                              "vertex_credentials", "proxy", "endpoint"})
"""Fields that would point the gateway at another upstream or hand it credentials: always a 400."""

IGNORED_FIELDS = frozenset({"store", "prompt_cache_key", "safety_identifier", "verbosity", "modalities",
                            "stream_options", "user", "modelplex", "model", "messages", "stream", "timeout"})
"""Accepted and handled by the gateway itself (or harmless and not forwarded)."""

CHAT_PARAMS = frozenset(VALUE_CHECKS) - {"dimensions", "user", "timeout", "extra_body"}
"""The model parameters a chat body forwards to the router (``user`` and ``timeout`` are read by the route
itself; ``extra_body`` is a library option: the OpenAI SDK merges its fields into the body)."""


def check_params(data: dict[str, Any], allowed_extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The model parameters of a chat body, by their OpenAI names; 400 for unknown or mistyped ones."""
    params: dict[str, Any] = {}
    for name, value in data.items():
        if name in FORBIDDEN_FIELDS:
            raise invalid_request(f"'{name}' is not accepted: the gateway chooses upstreams and credentials "
                                  "itself", param=name, code="forbidden_parameter")
        if name not in CHAT_PARAMS:
            if name in IGNORED_FIELDS or name in allowed_extra:
                continue
            if name == "max_completion_tokens":
                if value is not None:
                    if not is_positive_int(value):
                        raise invalid_request("'max_completion_tokens' must be a positive integer", param=name)
                    params["max_tokens"] = value
                continue
            if name in ("functions", "function_call"):
                raise invalid_request(f"'{name}' is deprecated; use 'tools' and 'tool_choice'", param=name)
            raise invalid_request(f"Unrecognized request argument supplied: {name}", param=name,
                                  code="unknown_parameter")
        if value is None:
            continue
        expected = value_problem(name, value)
        if expected is not None:
            raise invalid_request(f"'{name}' must be {expected}", param=name)
        if name == "max_tokens" and "max_tokens" in params:
            continue  # max_completion_tokens wins
        params[name] = value
    return params


def check_tools(params: dict[str, Any]) -> None:
    """``tools`` and ``tool_choice`` together, as the Chat Completions API checks them (their values are
    checked already): only function tools (a provider's built-in tool, such as ``web_search``, would reach
    only some upstreams, and be refused by the others), and a ``tool_choice`` only with tools, naming one of
    them. 400 ``invalid_request_error`` with ``param`` otherwise."""
    tools = params.get("tools") or ()
    names: set[str] = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type", "function")
        if kind != "function":
            raise invalid_request(f"Invalid value for 'tools[{i}].type': only function tools are supported "
                                  f"(got {str(kind)[:40]!r})", param=f"tools[{i}].type", code="invalid_value")
        names.add(tool["function"]["name"])
    choice = params.get("tool_choice")
    if choice is None:
        return
    if not tools:
        raise invalid_request("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                              "specified.", param="tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in names:
        raise invalid_request(f"Invalid value for 'tool_choice': no function named "
                              f"{choice['function']['name'][:64]!r} in 'tools'.", param="tool_choice")


def parse_chat(data: dict[str, Any]) -> ChatInput:
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid_request("'stream' must be a boolean", param="stream")
    opts = data.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict):
            raise invalid_request("'stream_options' must be an object", param="stream_options")
        iu = opts.get("include_usage", False)
        if not isinstance(iu, bool):
            raise invalid_request("'stream_options.include_usage' must be a boolean", param="stream_options")
        include_usage = iu
    user = check_user(data.get("user"))
    timeout = data.get("timeout")
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
        raise invalid_request("'timeout' must be a positive number of seconds", param="timeout")
    params = check_params(data)
    check_tools(params)
    return ChatInput(model=data.get("model"), messages=check_messages(data.get("messages")),
                     params=params, stream=stream, ext=Extension.parse(data.get("modelplex")),
                     user=user or None, include_usage=include_usage,
                     timeout=float(timeout) if timeout is not None else None)


# ------------------------------------------------------------------------------------------ wire shapes

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


def finish_reason(value: str | None) -> str:
    return _FINISH.get(value or "stop", "stop")


def usage_object(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.total_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def logprobs_object(logprobs: TokenLogprobs | None) -> dict[str, Any] | None:
    """A choice's ``logprobs`` as OpenAI writes it (both lists present, ``null`` when empty), or ``None``."""
    if logprobs is None:
        return None
    return {"content": logprobs.get("content"), "refusal": logprobs.get("refusal")}


def completion_object(resp: Response, request_id: str, created: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": resp.content, "refusal": resp.refusal,
                               "annotations": []}
    if resp.tool_calls:
        message["tool_calls"] = [tc.to_openai() for tc in resp.tool_calls]
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs_object(resp.logprobs),
                     "finish_reason": "tool_calls" if resp.tool_calls and resp.finish_reason in ("stop", "tool_calls")
                     else finish_reason(resp.finish_reason)}],
        "usage": usage_object(resp.usage),
        "system_fingerprint": None,
        "modelplex": {"request_id": request_id, "provider": resp.provider, "cost_usd": resp.cost_usd,
                      "latency_ms": resp.latency_ms, "fallback_used": resp.fallback_used,
                      "attempts": len(resp.attempts), "task": resp.task, "strategy": resp.strategy,
                      "selection_reason": resp.selection_reason, "usage_estimated": resp.usage.estimated},
    }


def completion_body(resp: Response, request_id: str, created: int) -> bytes:
    return orjson.dumps(completion_object(resp, request_id, created))


class OpenAIChunkEncoder:
    """Router chunks -> ``chat.completion.chunk`` SSE events, byte-shaped as OpenAI sends them: text in
    ``delta.content``, a refusal in ``delta.refusal``, each chunk's token ``logprobs`` beside its delta.

    The constant part of every chunk (id, created, model) is serialised once.
    """

    __slots__ = ("_created", "_done_finish", "_head", "_include_usage", "_request_id", "_tail", "cost_usd", "usage")

    def __init__(self, request_id: str, created: int, include_usage: bool) -> None:
        self._request_id = request_id
        self._created = created
        self._include_usage = include_usage
        self._head = b""
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self._done_finish = False
        self.usage: Usage | None = None
        self.cost_usd: float | None = None

    def _frame(self, choice: dict[str, Any]) -> bytes:
        return self._head + b'"choices":[' + orjson.dumps(choice) + b"]" + self._tail

    def start(self, first: StreamChunk) -> bytes:
        self._head = (b'data: {"id":"chatcmpl-' + self._request_id.encode() +
                      b'","object":"chat.completion.chunk","created":' + str(self._created).encode() +
                      b',"model":' + orjson.dumps(first.model) + b',"system_fingerprint":null,')
        # a refusal opens as OpenAI opens one: no content, an empty refusal
        opening = ({"role": "assistant", "content": None, "refusal": ""} if first.refusal_delta and not first.delta
                   else {"role": "assistant", "content": "", "refusal": None})
        return self._frame({"index": 0, "delta": opening, "logprobs": None, "finish_reason": None})

    def chunk(self, c: StreamChunk) -> bytes:
        out = b""
        delta: dict[str, Any] = {}
        if c.delta:
            delta["content"] = c.delta
        if c.refusal_delta:
            delta["refusal"] = c.refusal_delta
        if c.reasoning_delta:
            delta["reasoning_content"] = c.reasoning_delta
        if c.tool_calls:
            calls = []
            for t in c.tool_calls:
                call: dict[str, Any] = {"index": t.index}
                fn: dict[str, Any] = {}
                if t.id:
                    call["id"] = t.id
                    call["type"] = "function"
                if t.name:
                    fn["name"] = t.name
                fn["arguments"] = t.arguments or ""
                call["function"] = fn
                calls.append(call)
            delta["tool_calls"] = calls
        if delta or c.logprobs is not None:
            out = self._frame({"index": 0, "delta": delta, "logprobs": logprobs_object(c.logprobs),
                               "finish_reason": None})
        if c.usage is not None:
            self.usage = c.usage
            self.cost_usd = c.cost_usd
        if c.finish_reason is not None and not self._done_finish:
            self._done_finish = True
            out += self._frame({"index": 0, "delta": {}, "logprobs": None,
                                "finish_reason": finish_reason(c.finish_reason)})
        return out

    def finish(self) -> bytes:
        out = b""
        if not self._done_finish:
            out = self._frame({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"})
        if self._include_usage:
            usage = self.usage or Usage()
            out += (self._head + b'"choices":[],"usage":' + orjson.dumps(usage_object(usage)) + b',"modelplex":' +
                    orjson.dumps(stream_extension(self._request_id, self.cost_usd, usage)) + b"}\n\n")
        return out + b"data: [DONE]\n\n"

    def error(self, info: ErrorInfo) -> bytes:
        return b"data: " + orjson.dumps({"error": openai_error_object(info)}) + b"\n\n"


# ------------------------------------------------------------------------------------------ routes


class ChatCompletions(ChatRoute):
    """``POST /v1/chat/completions``."""

    route = "chat"

    def parse(self, data: dict[str, Any]) -> ChatInput:
        return parse_chat(data)

    def render(self, resp: Response, data: dict[str, Any], request_id: str) -> bytes:
        return completion_body(resp, request_id, int(time.time()))

    def encoder(self, chat: ChatInput, data: dict[str, Any], request_id: str) -> OpenAIChunkEncoder:
        return OpenAIChunkEncoder(request_id, int(time.time()), chat.include_usage)


# ------------------------------------------------------------------------------------------ embeddings


def encode_embedding(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


class Embeddings:
    """``POST /v1/embeddings``."""

    route = "embeddings"
    _FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user", "modelplex"})

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        started = time.perf_counter()
        request_id = new_request_id()
        try:
            head = RequestHead(scope)
            check_length(head, gw.max_body)
            principal = await gw.auth.inference(head)
            body = await read_body(receive, gw.max_body, head.content_length)
            data = parse_object(body)
            for name in data:
                if name in FORBIDDEN_FIELDS:
                    raise invalid_request(f"'{name}' is not accepted", param=name, code="forbidden_parameter")
                if name not in self._FIELDS:
                    raise invalid_request(f"Unrecognized request argument supplied: {name}", param=name,
                                          code="unknown_parameter")
            texts = check_embedding_input(data.get("input"))
            fmt = data.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise invalid_request("'encoding_format' must be float or base64", param="encoding_format")
            params: dict[str, Any] = {}
            dims = data.get("dimensions")
            if dims is not None:
                if not is_positive_int(dims):
                    raise invalid_request("'dimensions' must be a positive integer", param="dimensions")
                params["dimensions"] = dims
            user = check_user(data.get("user"))
            ext = Extension.parse(data.get("modelplex"))
            target = gw.resolve_target(data.get("model"))
            check_target(principal, target)
            kw: dict[str, Any] = {"request_id": request_id, "api_key_id": principal.key_id,
                                  "user": ext.user or user or None, "tags": ext.tags}
            if target.kind == "model":
                kw["model"] = target.name
            elif target.kind == "task":
                kw["task"] = target.name
            kw.update(allowed_models_kwarg(principal))
            admission = await gw.admit(principal, estimate_tokens(len(body), 0))
            try:
                resp = await gw.router.aembed(texts, **kw, **params)
            except Exception:
                await gw.settle(admission, NOTHING_USED)
                raise
            payload = {"object": "list",
                       "data": [{"object": "embedding", "index": i, "embedding": encode_embedding(v, fmt)}
                                for i, v in enumerate(resp.embeddings)],
                       "model": resp.model,
                       "usage": {"prompt_tokens": resp.usage.input_tokens, "total_tokens": resp.usage.input_tokens}}
            headers = gw.routing_headers(request_id, resp.model, resp.provider, cost_usd=resp.cost_usd,
                                         attempts=len(resp.attempts))
            await send_body(send, 200, orjson.dumps(payload), headers)
            gw.metrics.observe(self.route, 200, time.perf_counter() - started, model=resp.model,
                               provider=resp.provider)
            await gw.settle(admission, resp.usage)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await send_openai_error(gw, send, exc, self.route, request_id, started)


# ------------------------------------------------------------------------------------------ models


def _created(as_of: dt.date | None) -> int:
    if as_of is None:
        return 0
    return int(dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.UTC).timestamp())


def model_entries(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """Models whose provider is enabled, then tasks as ``task:<name>``, then ``auto``; all filtered
    by the key's allow-list."""
    router = gw.router
    enabled = router.enabled_providers()
    key = principal.key
    out: list[dict[str, Any]] = []
    for spec in sorted(router.catalog.models(), key=lambda s: s.id):
        if spec.provider not in enabled or spec.deprecation.deprecated:
            continue
        if key is not None and not key.allows_model(spec.id):
            continue
        out.append({"id": spec.id, "object": "model", "created": _created(spec.as_of), "owned_by": spec.provider})
    for name in router.planner.task_names():
        if key is None or key.allows_task(name):
            out.append({"id": f"task:{name}", "object": "model", "created": 0, "owned_by": "modelplex"})
    if key is None or key.allows_task("auto"):
        out.append({"id": "auto", "object": "model", "created": 0, "owned_by": "modelplex"})
    return out


def _hidden_model(gw: Gateway, principal: Principal, wanted: str) -> Exception:
    """The 404 for a model ``GET /v1/models/{model}`` does not list. A deprecated model that the key may
    use, at an enabled provider, is hidden from the list because requests naming it are served by its
    replacement: the answer says so (retirement date, and the replacement when the key may use that
    too, also in ``suggestions``). Anything else gets the one message that reveals nothing."""
    generic = not_found(f"The model {wanted!r} does not exist or this key may not use it.",
                        code="model_not_found", param="model")
    catalog = gw.router.catalog
    spec = catalog.find(wanted)
    key = principal.key
    enabled = gw.router.enabled_providers()
    if spec is None or not spec.deprecation.deprecated or spec.provider not in enabled \
            or (key is not None and not key.allows_model(spec.id)):
        return generic
    dep = spec.deprecation
    message = f"The model {spec.id!r} is deprecated"
    if dep.date is not None:
        message += f" (retirement date {dep.date.isoformat()})"
    message += " and is not listed"
    target = catalog.replacement_of(spec)
    usable = target is not spec and not target.deprecation.deprecated and target.provider in enabled \
        and (key is None or key.allows_model(target.id))
    if usable:
        message += f"; requests naming it are served by its replacement, {target.id!r}"
    return GatewayError(404, message + ".", type="not_found_error", code="model_not_found", param="model",
                        extra={"suggestions": [target.id]} if usable else None)


class Models:
    """``GET /v1/models`` and ``GET /v1/models/{model}``."""

    route = "models"

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        started = time.perf_counter()
        request_id = new_request_id()
        try:
            principal = await gw.auth.inference(RequestHead(scope))
            entries = model_entries(gw, principal)
            wanted = (scope.get("path_params") or {}).get("model")
            if wanted is None:
                await send_json(send, 200, {"object": "list", "data": entries})
            else:
                match = next((e for e in entries if e["id"] == wanted), None)
                if match is None:
                    spec = gw.router.catalog.find(wanted)
                    match = next((e for e in entries if spec is not None and e["id"] == spec.id), None)
                if match is None:
                    raise _hidden_model(gw, principal, wanted)
                await send_json(send, 200, match)
            gw.metrics.observe(self.route, 200, time.perf_counter() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await send_openai_error(gw, send, exc, self.route, request_id, started)


__all__ = ["ChatCompletions", "Embeddings", "Models", "OpenAIChunkEncoder", "check_messages", "check_params",
           "check_tools", "completion_body", "completion_object", "parse_chat", "usage_object"]
