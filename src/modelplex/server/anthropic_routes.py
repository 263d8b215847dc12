"""The Anthropic Messages-compatible ingress: ``POST /v1/messages``.

Owns: ``to_router_request`` (an Anthropic Messages body -> OpenAI-shaped messages plus OpenAI-named
parameters: system, text/image/tool_use/tool_result blocks, tools, tool_choice, stop_sequences,
max_tokens, metadata.user_id, thinking), ``message_object`` (a ``Response`` in Anthropic's
``message`` shape), ``AnthropicEventEncoder`` (router chunks -> the real event sequence:
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``,
``content_block_stop``, ``message_delta``, ``message_stop``) and the ``Messages`` route. Errors on
this route use Anthropic's error shape (``{"type": "error", "error": {"type", "message"}}``).

Any routed model can answer: an Anthropic SDK client may name ``openai/gpt-4o-mini``, a task or
``auto``, and gets a Claude-shaped answer.

Anthropic-only marks ride on the OpenAI-shaped messages for the Anthropic adapter, and the OpenAI wire
strips them: ``cache_control`` on content parts, tools and messages; signed ``thinking`` /
``redacted_thinking`` blocks of an assistant turn as its ``thinking_blocks``; a ``tool_result``'s
``is_error`` as the tool message's ``is_error`` (its text also says ``Error: ...`` for other models).
Answers to a request with ``thinking`` on carry thinking blocks: an Anthropic upstream's, signed; other
providers' streamed reasoning as unsigned ``thinking`` (never sent back). ``stop_reason:
stop_sequence`` and the matched ``stop_sequence`` come from an Anthropic upstream, which names it.

Must not touch: auth internals, the router's logic, error mapping (``server.errors``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from modelplex.catalog.validation import FLOAT_RANGES, TEMPERATURE_RANGES
from modelplex.parameters import is_number
from modelplex.server.errors import (
    ErrorInfo,
    anthropic_error_body,
    anthropic_error_object,
    invalid_request,
    retry_after_header,
)
from modelplex.server.gateway import stream_extension
from modelplex.server.http import (
    Send,
    send_body,
)
from modelplex.server.openai_routes import FORBIDDEN_FIELDS
from modelplex.server.serving import ChatInput, ChatRoute
from modelplex.server.sse import EndTracking, sse_event
from modelplex.types import Response, StreamChunk, ToolCallDelta, Usage

if TYPE_CHECKING:
    from modelplex.server.gateway import Gateway

log = logging.getLogger("modelplex.server")

_SAMPLING_RANGES = (("temperature", TEMPERATURE_RANGES["anthropic"]), ("top_p", FLOAT_RANGES["top_p"]))
"""The Messages API's bounds (the catalog's parameter validation holds them)."""

_FIELDS = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p",
                     "top_k", "tools", "tool_choice", "stream", "metadata", "thinking", "service_tier",
                     "modelplex"})

_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _bad(message: str, param: str) -> Exception:
    return invalid_request(message, param=param)


# ------------------------------------------------------------------------------------------ request conversion


def _cached(out: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """``out`` with ``block``'s ``cache_control`` mark, if it has one (the Anthropic adapter sends it on;
    the OpenAI wire strips it unless the vendor takes it)."""
    if "cache_control" in block:
        out["cache_control"] = block["cache_control"]
    return out


def _text_of_blocks(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _bad(f"{where} must be a string or a list of text blocks", where)
    parts = []
    for i, b in enumerate(blocks):
        if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise _bad(f"{where}[{i}] must be a text block", f"{where}[{i}]")
        parts.append(b["text"])
    return "\n\n".join(parts) if len(parts) > 1 else "".join(parts)


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source")
    if isinstance(src, dict) and src.get("type") == "base64" and isinstance(src.get("data"), str) \
            and isinstance(src.get("media_type"), str):
        return {"type": "image_url", "image_url": {"url": f"data:{src['media_type']};base64,{src['data']}"}}
    if isinstance(src, dict) and src.get("type") == "url" and isinstance(src.get("url"), str):
        return {"type": "image_url", "image_url": {"url": src["url"]}}
    raise _bad(f"{where}.source must be a base64 or url image source", f"{where}.source")


def _tool_result_content(content: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    """(text, image parts) of a tool_result's content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of blocks", f"{where}.content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for i, b in enumerate(content):
        if not isinstance(b, dict):
            raise _bad(f"{where}.content[{i}] must be a block", f"{where}.content[{i}]")
        if b.get("type") == "text" and isinstance(b.get("text"), str):
            texts.append(b["text"])
        elif b.get("type") == "image":
            images.append(_image_part(b, f"{where}.content[{i}]"))
        else:
            raise _bad(f"{where}.content[{i}]: unsupported block type {b.get('type')!r}", f"{where}.content[{i}]")
    return "\n".join(texts), images


def _convert_user(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list) or not content:
        raise _bad(f"{where}.content must be a string or a non-empty list of blocks", f"{where}.content")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, b in enumerate(content):
        bw = f"{where}.content[{i}]"
        if not isinstance(b, dict):
            raise _bad(f"{bw} must be a block", bw)
        kind = b.get("type")
        if kind == "text":
            if not isinstance(b.get("text"), str):
                raise _bad(f"{bw}.text must be a string", bw)
            parts.append(_cached({"type": "text", "text": b["text"]}, b))
        elif kind == "image":
            parts.append(_cached(_image_part(b, bw), b))
        elif kind == "tool_result":
            if not isinstance(b.get("tool_use_id"), str):
                raise _bad(f"{bw}.tool_use_id is required", bw)
            text, images = _tool_result_content(b.get("content"), bw)
            tool: dict[str, Any] = {"role": "tool", "tool_call_id": b["tool_use_id"], "content": text}
            if b.get("is_error") is True:  # the flag for Anthropic upstreams, the words for the others
                tool["content"] = f"Error: {text}" if text else "Error"
                tool["is_error"] = True
            out.append(_cached(tool, b))
            parts.extend(images)
        else:
            raise _bad(f"{bw}: unsupported block type {kind!r} (text, image and tool_result are accepted)", bw)
    if parts:
        if all(p["type"] == "text" and "cache_control" not in p for p in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts) if len(parts) == 1
                        else "\n\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _convert_assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of blocks", f"{where}.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    cache: Any = None
    for i, b in enumerate(content):
        bw = f"{where}.content[{i}]"
        if not isinstance(b, dict):
            raise _bad(f"{bw} must be a block", bw)
        kind = b.get("type")
        if kind == "text" and isinstance(b.get("text"), str):
            texts.append(b["text"])
        elif kind == "tool_use":
            if not isinstance(b.get("id"), str) or not isinstance(b.get("name"), str):
                raise _bad(f"{bw} needs id and name", bw)
            args = b.get("input", {})
            calls.append({"id": b["id"], "type": "function",
                          "function": {"name": b["name"], "arguments": orjson.dumps(args).decode()}})
        elif kind == "thinking":
            # signed thinking goes back to Anthropic models (a tool-use continuation with thinking needs
            # it); unsigned thinking, which this gateway streams from other providers' reasoning, cannot
            if isinstance(b.get("thinking"), str) and isinstance(b.get("signature"), str) and b["signature"]:
                thinking.append({"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]})
            continue
        elif kind == "redacted_thinking":
            if isinstance(b.get("data"), str) and b["data"]:
                thinking.append({"type": "redacted_thinking", "data": b["data"]})
            continue
        else:
            raise _bad(f"{bw}: unsupported block type {kind!r}", bw)
        if "cache_control" in b:  # the adapter marks the turn's last block: the prefix may end a block later
            cache = b["cache_control"]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    if thinking:
        msg["thinking_blocks"] = thinking
    if cache is not None:
        msg["cache_control"] = cache
    return msg


def _convert_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("'tools' must be a list", "tools")
    out = []
    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise _bad(f"{where} needs a name", where)
        if t.get("type") not in (None, "custom"):
            raise _bad(f"{where}: server tools ({t.get('type')}) are not supported; define a custom tool", where)
        schema = t.get("input_schema", {"type": "object", "properties": {}})
        if not isinstance(schema, dict):
            raise _bad(f"{where}.input_schema must be an object", where)
        fn: dict[str, Any] = {"name": t["name"], "parameters": schema}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        out.append(_cached({"type": "function", "function": fn}, t))
    return out


def _convert_tool_choice(choice: Any, params: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise _bad("'tool_choice' must be an object", "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        params["tool_choice"] = "auto"
    elif kind == "any":
        params["tool_choice"] = "required"
    elif kind == "none":
        params["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        params["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad("'tool_choice.type' must be auto, any, tool (with name) or none", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        params["parallel_tool_calls"] = False


def to_router_request(data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any], bool, str | None]:
    """(messages, params, stream, user) for the router, from an Anthropic Messages body."""
    for name in data:
        if name in FORBIDDEN_FIELDS:
            raise invalid_request(f"'{name}' is not accepted: the gateway chooses upstreams and credentials itself",
                                  param=name, code="forbidden_parameter")
        if name not in _FIELDS:
            raise invalid_request(f"{name}: Extra inputs are not permitted", param=name, code="unknown_parameter")
    max_tokens = data.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("'max_tokens' is required and must be a positive integer", "max_tokens")
    params: dict[str, Any] = {"max_tokens": max_tokens}
    messages: list[dict[str, Any]] = []
    system = data.get("system")
    if system is not None:
        text = _text_of_blocks(system, "system")
        if isinstance(system, list) and any("cache_control" in b for b in system):
            messages.append({"role": "system", "content": [_cached({"type": "text", "text": b["text"]}, b)
                                                           for b in system]})
        elif text:
            messages.append({"role": "system", "content": text})
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list", "messages")
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object", where)
        role = m.get("role")
        if role == "user":
            messages.extend(_convert_user(m.get("content"), where))
        elif role == "assistant":
            messages.append(_convert_assistant(m.get("content"), where))
        else:
            raise _bad(f"{where}.role must be 'user' or 'assistant'", f"{where}.role")
    for name, (low, high) in _SAMPLING_RANGES:
        v = data.get(name)
        if v is not None:
            if not is_number(v) or not low <= v <= high:
                raise _bad(f"'{name}' must be a number between {low:g} and {high:g}", name)
            params[name] = v
    top_k = data.get("top_k")
    if top_k is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise _bad("'top_k' must be a positive integer", "top_k")
        params["top_k"] = top_k
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("'stop_sequences' must be a list of strings", "stop_sequences")
        if stops:
            params["stop"] = stops
    if data.get("tools") is not None:
        tools = _convert_tools(data["tools"])
        if tools:
            params["tools"] = tools
    if data.get("tool_choice") is not None:
        _convert_tool_choice(data["tool_choice"], params)
        if params.get("tool_choice") == "none" and "tools" not in params:
            params.pop("tool_choice")
    thinking = data.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
            raise _bad("'thinking' must be {type: enabled, budget_tokens} or {type: disabled}", "thinking")
        if thinking["type"] != "disabled":
            budget = thinking.get("budget_tokens")
            budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else 4096
            params["reasoning_effort"] = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
    if isinstance(data.get("service_tier"), str):
        params["service_tier"] = data["service_tier"]
    user: str | None = None
    meta = data.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise _bad("'metadata' must be an object", "metadata")
        uid = meta.get("user_id")
        if uid is not None and not isinstance(uid, str):
            raise _bad("'metadata.user_id' must be a string", "metadata.user_id")
        user = uid or None
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream")
    return messages, params, stream, user


# ------------------------------------------------------------------------------------------ answers


def anthropic_usage(u: Usage) -> dict[str, Any]:
    """Anthropic counts ``input_tokens`` without cache reads and writes; ``Usage`` includes them."""
    return {"input_tokens": max(0, u.input_tokens - u.cache_read_tokens - u.cache_write_tokens),
            "output_tokens": u.output_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens,
            "cache_read_input_tokens": u.cache_read_tokens}


def stop_reason(resp_finish: str | None, has_tool_calls: bool) -> str:
    if has_tool_calls and resp_finish in (None, "stop", "tool_calls"):
        return "tool_use"
    return _STOP_REASON.get(resp_finish or "stop", "end_turn")


def _tool_input(arguments: str) -> Any:
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def wants_thinking(data: dict[str, Any]) -> bool:
    """Whether the request asked for thinking (answers then carry thinking blocks, as Anthropic's do)."""
    thinking = data.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _thinking_blocks(resp: Response) -> list[dict[str, Any]]:
    """The answer's signed thinking blocks (an Anthropic upstream's, verbatim)."""
    blocks = resp.provider_details.get("thinking_blocks")
    if not isinstance(blocks, list):
        return []
    return [b for b in blocks if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]


def _stop_sequence(raw: Any) -> str | None:
    value = raw.get("stop_sequence") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _with_sequence(reason: str, sequence: str | None) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence``: a matched sequence makes ``end_turn`` ``stop_sequence``."""
    return ("stop_sequence", sequence) if reason == "end_turn" and sequence is not None else (reason, None)


def message_object(resp: Response, request_id: str, *, thinking: bool = False) -> dict[str, Any]:
    content: list[dict[str, Any]] = _thinking_blocks(resp) if thinking else []
    if resp.content:
        content.append({"type": "text", "text": resp.content})
    if resp.refusal:  # another protocol's refusal reads as Anthropic's: its text, with stop_reason "refusal"
        content.append({"type": "text", "text": resp.refusal})
    for tc in resp.tool_calls:
        content.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": _tool_input(tc.arguments)})
    reason = "refusal" if resp.refusal else stop_reason(resp.finish_reason, bool(resp.tool_calls))
    reason, sequence = _with_sequence(reason, _stop_sequence(resp.provider_details))
    return {"id": f"msg_{request_id}", "type": "message", "role": "assistant", "model": resp.model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": anthropic_usage(resp.usage)}


class _ToolUse:
    """One tool call of the answer, as the encoder streams it: its arguments so far, and whether its block is
    waiting (its arguments buffered), open or closed."""

    __slots__ = ("arguments", "id", "name", "state")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments = ""
        self.state = "waiting"

    def complete(self) -> bool:
        """Whether the arguments so far are a whole JSON value (no later fragment could extend them)."""
        try:
            orjson.loads(self.arguments)
        except orjson.JSONDecodeError:
            return False
        return True


class AnthropicEventEncoder(EndTracking):
    """Router chunks -> Anthropic Messages stream events.

    Anthropic's content blocks are sequential: one opens, gets its deltas and closes before the next opens.
    An OpenAI-protocol upstream may interleave the argument fragments of parallel tool calls, so a tool call
    that starts while another tool block is open waits, its fragments buffered: it opens (with them as one
    ``input_json_delta``) once the open block's arguments are whole JSON, or at the end. Text that arrives
    while a tool block's arguments are not whole yet is held back the same way, and sent after that block
    closes: closing it early would leave its later fragments nowhere to go."""

    def __init__(self, request_id: str, *, thinking: bool = False) -> None:
        super().__init__()
        self._request_id = request_id
        self._thinking = thinking
        self._index = -1
        self._open: str | None = None
        self._pinged = False
        self._tools: dict[int, _ToolUse] = {}  # the upstream's tool-call index -> its block
        self._waiting: list[_ToolUse] = []  # tool calls whose block has not opened yet, in order
        self._active: _ToolUse | None = None  # the open tool block
        self._held: list[str] = []  # text that came while the open tool block's arguments were incomplete
        self._any_tool = False
        self._refused = False
        self._stop_sequence: str | None = None

    @staticmethod
    def _event(name: bytes, obj: dict[str, Any]) -> bytes:
        return sse_event(name, orjson.dumps(obj))

    def start(self, first: StreamChunk) -> bytes:
        message = {"id": f"msg_{self._request_id}", "type": "message", "role": "assistant", "model": first.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0}}
        return self._event(b"message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        if self._active is not None:
            self._active.state = "closed"
            self._active = None
        return self._event(b"content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _arguments(self, fragment: str) -> bytes:
        return self._event(b"content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                    "delta": {"type": "input_json_delta", "partial_json": fragment}})

    def _open_tool(self, tool: _ToolUse) -> bytes:
        out = self._open_block("tool", {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}})
        self._active = tool
        tool.state = "open"
        return out + self._arguments(tool.arguments) if tool.arguments else out

    def _advance(self) -> bytes:
        """Open waiting tool blocks, in order, while no open tool block may still get arguments."""
        out = b""
        while self._waiting and (self._active is None or self._active.complete()):
            out += self._open_tool(self._waiting.pop(0))
        return out

    def _tool_call(self, t: ToolCallDelta) -> bytes:
        tool = self._tools.get(t.index)
        if tool is None:
            self._any_tool = True
            tool = self._tools[t.index] = _ToolUse(t.id or f"toolu_{self._request_id}_{t.index}", t.name or "")
            self._waiting.append(tool)
        elif tool.state == "waiting":  # an id or a name that came after the call's first fragment
            tool.id = t.id or tool.id
            tool.name = tool.name or t.name or ""
        if tool.state == "closed":
            if t.arguments.strip():
                log.debug("request %s: arguments for tool call %d after its block closed were dropped",
                          self._request_id, t.index)
            return b""
        tool.arguments += t.arguments
        out = self._arguments(t.arguments) if tool is self._active and t.arguments else b""
        if self._held and tool is self._active and tool.complete():
            out += self._release_held()
        return out + self._advance() if self._waiting else out

    def _text(self, text: str) -> bytes:
        out = b"" if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
        return out + self._event(b"content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                          "delta": {"type": "text_delta", "text": text}})

    def _release_held(self) -> bytes:
        """The text held back while a tool block's arguments were incomplete, as one text block."""
        text, self._held = "".join(self._held), []
        return self._text(text)

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = kind
        out += self._event(b"content_block_start", {"type": "content_block_start", "index": self._index,
                                                    "content_block": block})
        if not self._pinged:
            self._pinged = True
            out += self._event(b"ping", {"type": "ping"})
        return out

    def _thinking_open(self) -> bytes:
        """Open a thinking block unless one is open."""
        if self._open == "thinking":
            return b""
        return self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})

    def _thought(self, c: StreamChunk) -> bytes:
        """Thinking as Anthropic streams it: ``thinking_delta`` events, then the block's ``signature_delta``
        when the upstream signed it (a redacted block arrives whole)."""
        out = b""
        if c.reasoning_delta:
            out += self._thinking_open()
            out += self._event(b"content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                        "delta": {"type": "thinking_delta",
                                                                  "thinking": c.reasoning_delta}})
        block = c.raw.get("thinking_block") if isinstance(c.raw, dict) else None
        if isinstance(block, dict) and block.get("type") == "redacted_thinking":
            out += self._open_block("redacted", {"type": "redacted_thinking", "data": str(block.get("data") or "")})
            out += self._close()
        elif isinstance(block, dict) and block.get("signature"):
            out += self._thinking_open()  # open already, unless its text was empty (display omitted)
            out += self._event(b"content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                        "delta": {"type": "signature_delta",
                                                                  "signature": str(block["signature"])}})
            out += self._close()
        return out

    def chunk(self, c: StreamChunk) -> bytes:
        out = self._thought(c) if self._thinking and (c.reasoning_delta or c.raw is not None) else b""
        if c.finish_reason is not None:
            self._stop_sequence = _stop_sequence(c.raw)
        for text in (c.delta, c.refusal_delta):  # a refusal streams as text and ends with stop_reason "refusal"
            if not text:
                continue
            if self._held or (self._active is not None and not self._active.complete()):
                self._held.append(text)  # sent once the tool block's arguments are whole
                continue
            out += self._text(text)
        if c.refusal_delta:
            self._refused = True
        for t in c.tool_calls:
            out += self._tool_call(t)
        self.note_end(c)
        return out

    def finish(self) -> bytes:
        out = self._release_held() if self._held else b""
        out += self._close()
        for tool in self._waiting:  # the tool calls still waiting, each a whole block now
            out += self._open_tool(tool) + self._close()
        self._waiting.clear()
        if not self._pinged:
            out += self._event(b"ping", {"type": "ping"})
        used = self.usage or Usage()
        reason, sequence = _with_sequence("refusal" if self._refused else
                                          stop_reason(self.finish_reason, self._any_tool), self._stop_sequence)
        out += self._event(b"message_delta", {"type": "message_delta",
                                              "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                              "usage": anthropic_usage(used),
                                              "modelplex": stream_extension(self._request_id, self.cost_usd, used)})
        return out + self._event(b"message_stop", {"type": "message_stop"})

    def error(self, info: ErrorInfo) -> bytes:
        return self._event(b"error", anthropic_error_object(info))


# ------------------------------------------------------------------------------------------ route


async def send_anthropic_error(gw: Gateway, send: Send, exc: BaseException, route: str, request_id: str,
                               started: float) -> None:
    """Answer ``exc`` in Anthropic's error shape (with ``request-id`` and any ``retry-after``) and count it."""
    info = gw.error_info(exc, route, request_id)
    headers = [(b"x-modelplex-request-id", request_id.encode()), (b"request-id", f"req_{request_id}".encode()),
               *retry_after_header(info)]
    await send_body(send, info.status, anthropic_error_body(info, f"req_{request_id}"), headers)
    gw.metrics.observe(route, info.status, time.perf_counter() - started)


class Messages(ChatRoute):
    """``POST /v1/messages``."""

    route = "messages"

    convert = staticmethod(to_router_request)

    def render(self, resp: Response, data: dict[str, Any], request_id: str) -> bytes:
        return orjson.dumps(message_object(resp, request_id, thinking=wants_thinking(data)))

    def encoder(self, chat: ChatInput, data: dict[str, Any], request_id: str) -> AnthropicEventEncoder:
        return AnthropicEventEncoder(request_id, thinking=wants_thinking(data))

    def extra_headers(self, request_id: str) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"request-id", f"req_{request_id}".encode()),)

    async def send_error(self, send: Send, exc: BaseException, request_id: str, started: float) -> None:
        await send_anthropic_error(self.gw, send, exc, self.route, request_id, started)


__all__ = ["AnthropicEventEncoder", "Messages", "anthropic_usage", "message_object", "send_anthropic_error",
           "to_router_request"]
