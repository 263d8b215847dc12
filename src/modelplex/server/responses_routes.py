"""The OpenAI Responses API as a gateway route: ``POST /v1/responses`` over the router.

Owns: ``Responses`` (the route: non-streaming and SSE streaming), ``to_router_request`` (a Responses
body -> chat messages and OpenAI-named parameters, with clear 400s; the input items, tools and formats
are read by ``modelplex.responses_input``, which the fake provider shares), ``response_object`` (a router
``Response`` -> a ``response`` object) and ``ResponsesEventEncoder`` (router chunks -> the semantic
stream events: ``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` (``response.refusal.delta`` for a refusal
part), ``response.function_call_arguments.delta`` ..., the matching ``.done`` events, then
``response.completed`` or ``response.incomplete``; each with a ``sequence_number``). The official SDK's
``client.responses.create``/``.stream`` parse them unchanged.

What is served: text and image/file input, instructions, function tools and their results
(``function_call``/``function_call_output`` items), ``tool_choice``, ``text.format`` (JSON object or
schema), ``reasoning.effort``, ``max_output_tokens``, ``temperature``/``top_p``, ``user``, ``metadata`` and
the ``modelplex`` extension, routed like chat completions (any model, ``task:<name>``, ``auto``). The
gateway keeps no conversation state: ``previous_response_id``, ``conversation``, stored prompts and
built-in tools (web search, file search, computer use ...) are a 400 that says so; ``store`` is
accepted and answered ``false``. Reasoning items sent back in ``input`` are dropped (another provider
could not read them).

Must not touch: the router's logic, auth internals, error mapping (``server.errors``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelplex.messages import check_messages
from modelplex.responses_input import chat_response_format, chat_tool_choice, chat_tools, input_messages
from modelplex.server.errors import ErrorInfo, invalid_request
from modelplex.server.gateway import stream_extension
from modelplex.server.openai_routes import FORBIDDEN_FIELDS, check_params
from modelplex.server.serving import ChatInput, ChatRoute
from modelplex.server.sse import EndTracking, sse_event
from modelplex.types import Response, StreamChunk, ToolCall, Usage

STATEFUL = {"previous_response_id": "this gateway stores no responses: send the whole conversation in 'input'",
            "conversation": "this gateway keeps no conversations: send the whole conversation in 'input'",
            "prompt": "stored prompts are not supported: send 'instructions' and 'input'",
            "background": "background responses are not supported"}
"""Fields that need state the gateway does not keep: a 400 naming what to do instead (when truthy)."""

ACCEPTED = frozenset({"model", "input", "instructions", "stream", "store", "user", "modelplex", "metadata",
                      "safety_identifier", "prompt_cache_key", "truncation", "include", "stream_options",
                      "service_tier", "top_logprobs", "max_tool_calls"})
"""Read here or harmless; everything else is a model parameter checked below, or a 400."""

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


# ------------------------------------------------------------------------------------------ requests


def to_router_request(data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any], bool, str | None]:
    """(messages, OpenAI-named parameters, stream, user) for a Responses body; 400s say what is wrong."""
    for name, why in STATEFUL.items():
        if data.get(name):
            raise invalid_request(f"'{name}' is not supported: {why}", param=name, code="unsupported_parameter")
    chat: dict[str, Any] = {}
    for name, value in data.items():
        if name in FORBIDDEN_FIELDS or name in ACCEPTED or name in STATEFUL or value is None:
            continue
        if name == "max_output_tokens":
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise invalid_request("'max_output_tokens' must be a positive integer", param=name)
            chat["max_tokens"] = value
        elif name == "tools":
            tools = chat_tools(value)
            if tools:
                chat["tools"] = tools
        elif name == "tool_choice":
            chat["tool_choice"] = chat_tool_choice(value)
        elif name == "text":
            fmt = chat_response_format(value)
            if fmt is not None:
                chat["response_format"] = fmt
        elif name == "reasoning":
            if not isinstance(value, dict):
                raise invalid_request("'reasoning' must be an object", param=name)
            if value.get("effort") is not None:
                chat["reasoning_effort"] = value["effort"]
        elif name in ("temperature", "top_p", "parallel_tool_calls"):
            chat[name] = value
        else:
            raise invalid_request(f"Unrecognized request argument supplied: {name}", param=name,
                                  code="unknown_parameter")
    for name in FORBIDDEN_FIELDS & data.keys():
        chat[name] = data[name]  # check_params refuses them with the gateway's one message
    for name in ("service_tier", "metadata"):
        if data.get(name) is not None:
            chat[name] = data[name]
    params = check_params(chat)
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("'stream' must be a boolean", param="stream")
    for name in ("user", "safety_identifier"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise invalid_request(f"'{name}' must be a string", param=name)
    user = data.get("user") or data.get("safety_identifier")
    messages = check_messages(input_messages(data.get("input"), data.get("instructions")))
    return messages, params, bool(stream), user or None


# ------------------------------------------------------------------------------------------ answers


def usage_object(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


_PARTS = {"output_text": ("text", "response.output_text", text_part),
          "refusal": ("refusal", "response.refusal", refusal_part)}
"""A message content part's type -> (its text field, the prefix of its ``.delta``/``.done`` events, its maker)."""


def message_item(request_id: str, parts: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": f"msg_{request_id}", "type": "message", "status": status, "role": "assistant", "content": parts}


def call_item(request_id: str, index: int, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {"id": f"fc_{request_id}_{index}", "type": "function_call", "status": status, "call_id": call.id,
            "name": call.name, "arguments": call.arguments}


def _envelope(data: dict[str, Any], request_id: str, created: int, model: str, status: str,
              finish: str | None) -> dict[str, Any]:
    """The ``response`` object's fields other than ``output`` and ``usage`` (the request's settings echoed)."""
    reason = _INCOMPLETE.get(finish or "") if status == "incomplete" else None
    text = data.get("text") if isinstance(data.get("text"), dict) else {"format": {"type": "text"}}
    reasoning = data.get("reasoning") if isinstance(data.get("reasoning"), dict) else {}
    return {"id": f"resp_{request_id}", "object": "response", "created_at": created, "status": status,
            "background": False, "error": None, "incomplete_details": {"reason": reason} if reason else None,
            "instructions": data.get("instructions"), "max_output_tokens": data.get("max_output_tokens"),
            "model": model, "output": [], "parallel_tool_calls": data.get("parallel_tool_calls", True),
            "previous_response_id": None, "reasoning": {"effort": reasoning.get("effort"), "summary": None},
            "store": False, "temperature": data.get("temperature"), "text": text,
            "tool_choice": data.get("tool_choice", "auto"), "tools": data.get("tools") or [],
            "top_p": data.get("top_p"), "truncation": "disabled", "usage": None, "user": data.get("user"),
            "metadata": data.get("metadata") or {}}


def _status(finish: str | None) -> str:
    return "incomplete" if finish in _INCOMPLETE else "completed"


def response_object(resp: Response, data: dict[str, Any], request_id: str, created: int) -> dict[str, Any]:
    obj = _envelope(data, request_id, created, resp.model, _status(resp.finish_reason), resp.finish_reason)
    parts = []
    if resp.content or not (resp.refusal or resp.tool_calls):  # an empty answer is one empty text part
        parts.append(text_part(resp.content or ""))
    if resp.refusal:
        parts.append(refusal_part(resp.refusal))
    if parts:
        obj["output"].append(message_item(request_id, parts))
    obj["output"].extend(call_item(request_id, i, tc) for i, tc in enumerate(resp.tool_calls))
    obj["usage"] = usage_object(resp.usage)
    obj["modelplex"] = {"request_id": request_id, "provider": resp.provider, "cost_usd": resp.cost_usd,
                        "latency_ms": resp.latency_ms, "fallback_used": resp.fallback_used,
                        "attempts": len(resp.attempts), "task": resp.task, "strategy": resp.strategy,
                        "selection_reason": resp.selection_reason, "usage_estimated": resp.usage.estimated}
    return obj


class ResponsesEventEncoder(EndTracking):
    """Router chunks -> the Responses API's stream events (see the module docstring).

    Items open as their first delta arrives (the answer's text as one ``message`` item, with an
    ``output_text`` part for text and a ``refusal`` part for a refusal; each tool call as a
    ``function_call`` item) and close, with their ``.done`` events, when another item opens or the
    stream ends. The closing ``response.completed`` (``response.incomplete`` for ``length`` or
    ``content_filter``) carries every item, the usage and a ``modelplex`` object with the cost. When the
    upstream fails mid-stream, the item being written ends ``incomplete`` and ``response.failed`` closes the
    stream (``error``)."""

    __slots__ = ("_created", "_data", "_items", "_model", "_open", "_request_id", "_seq")

    def __init__(self, request_id: str, created: int, data: dict[str, Any]) -> None:
        super().__init__()
        self._request_id = request_id
        self._created = created
        self._data = data
        self._seq = 0
        self._items: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item receiving deltas
        self._model = ""

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = orjson.dumps({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1
        return sse_event(kind.encode(), payload)

    def _response(self, status: str) -> dict[str, Any]:
        return _envelope(self._data, self._request_id, self._created, self._model, status, self.finish_reason)

    def start(self, first: StreamChunk) -> bytes:
        self._model = first.model
        opening = self._response("in_progress")
        return (self._event("response.created", response=opening) +
                self._event("response.in_progress", response=opening))

    def _close_part(self, item: dict[str, Any], index: int) -> bytes:
        """The ``.done`` events of the message's last content part (text or refusal)."""
        content_index = len(item["content"]) - 1
        part = item["content"][content_index]
        field, prefix, _ = _PARTS[part["type"]]
        extra = {"logprobs": []} if part["type"] == "output_text" else {}
        return (self._event(f"{prefix}.done", item_id=item["id"], output_index=index, content_index=content_index,
                            **{field: part[field]}, **extra) +
                self._event("response.content_part.done", item_id=item["id"], output_index=index,
                            content_index=content_index, part=part))

    def _close_open(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = len(self._items) - 1
        item["status"] = "completed"
        if item["type"] == "message":
            return (self._close_part(item, index) if item["content"] else b"") + self._event(
                "response.output_item.done", output_index=index, item=item)
        return (self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            arguments=item["arguments"]) +
                self._event("response.output_item.done", output_index=index, item=item))

    def _message(self, kind: str, delta: str) -> bytes:
        """Add ``delta`` to the open message's last content part of type ``kind`` (``output_text`` or
        ``refusal``), opening the message item and that part as needed."""
        out = b""
        item = self._open
        if item is None or item["type"] != "message":
            out += self._close_open()
            item = message_item(self._request_id if not self._items else f"{self._request_id}_{len(self._items)}", [],
                                status="in_progress")
            self._items.append(item)
            self._open = item
            out += self._event("response.output_item.added", output_index=len(self._items) - 1, item=item)
        index = len(self._items) - 1
        parts: list[dict[str, Any]] = item["content"]
        field, prefix, make = _PARTS[kind]
        if not parts or parts[-1]["type"] != kind:
            if parts:
                out += self._close_part(item, index)
            parts.append(make(""))
            out += self._event("response.content_part.added", item_id=item["id"], output_index=index,
                               content_index=len(parts) - 1, part=parts[-1])
        if not delta:
            return out
        parts[-1][field] += delta
        extra = {"logprobs": []} if kind == "output_text" else {}
        return out + self._event(f"{prefix}.delta", item_id=item["id"], output_index=index,
                                 content_index=len(parts) - 1, delta=delta, **extra)

    def _call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item["type"] != "function_call" or item["_index"] != index:
            out += self._close_open()
            item = call_item(self._request_id, index, ToolCall(call_id or "", name or "", ""), status="in_progress")
            item["_index"] = index
            self._items.append(item)
            self._open = item
            shown = {k: v for k, v in item.items() if k != "_index"}
            out += self._event("response.output_item.added", output_index=len(self._items) - 1, item=shown)
        if arguments:
            item["arguments"] += arguments
            out += self._event("response.function_call_arguments.delta", item_id=item["id"],
                               output_index=len(self._items) - 1, delta=arguments)
        return out

    def chunk(self, c: StreamChunk) -> bytes:
        out = b""
        if c.delta:
            out += self._message("output_text", c.delta)
        if c.refusal_delta:
            out += self._message("refusal", c.refusal_delta)
        for t in c.tool_calls:
            out += self._call(t.index, t.id, t.name, t.arguments or "")
        self.note_end(c)
        return out

    def finish(self) -> bytes:
        out = self._close_open()
        if not self._items:  # an empty answer is still one (empty) message, as the API sends it
            out += self._message("output_text", "") + self._close_open()
        status = _status(self.finish_reason)
        final = self._response(status)
        final["output"] = [{k: v for k, v in item.items() if k != "_index"} for item in self._items]
        usage = self.usage or Usage()
        final["usage"] = usage_object(usage)
        final["modelplex"] = stream_extension(self._request_id, self.cost_usd, usage)
        return out + self._event("response.completed" if status == "completed" else "response.incomplete",
                                 response=final)

    def _abandon_open(self) -> bytes:
        """End the item that was receiving deltas when the stream failed: ``response.output_item.done`` with
        ``status: incomplete``, and none of the ``.done`` events that would say its text or arguments are
        final (``output_text.done``, ``content_part.done``, ``function_call_arguments.done``)."""
        item, self._open = self._open, None
        if item is None:
            return b""
        item["status"] = "incomplete"
        shown = {k: v for k, v in item.items() if k != "_index"}
        return self._event("response.output_item.done", output_index=len(self._items) - 1, item=shown)

    def error(self, info: ErrorInfo) -> bytes:
        """The item cut short ends ``incomplete`` (items finished before it stay ``completed``), then an
        ``error`` event and ``response.failed`` with what was produced so far, as the API ends a response that
        fails mid-stream: the SDK yields them, and has no ``response.completed`` to offer."""
        out = self._abandon_open()
        failed = self._response("failed")
        failed["output"] = [{k: v for k, v in item.items() if k != "_index"} for item in self._items]
        # the response object's error code is one of the API's own (the SDK's type enumerates them); the
        # ``error`` event carries the gateway's code
        failed["error"] = {"code": "rate_limit_exceeded" if info.status == 429 else "server_error",
                           "message": info.message}
        return (out + self._event("error", code=info.code or info.type, message=info.message, param=info.param) +
                self._event("response.failed", response=failed))


# ------------------------------------------------------------------------------------------ the route


class Responses(ChatRoute):
    """``POST /v1/responses``."""

    route = "responses"

    convert = staticmethod(to_router_request)

    def render(self, resp: Response, data: dict[str, Any], request_id: str) -> bytes:
        return orjson.dumps(response_object(resp, data, request_id, int(time.time())))

    def encoder(self, chat: ChatInput, data: dict[str, Any], request_id: str) -> ResponsesEventEncoder:
        return ResponsesEventEncoder(request_id, int(time.time()), data)


__all__ = ["Responses", "ResponsesEventEncoder", "response_object", "to_router_request"]
