"""The fake Anthropic Messages API: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``, ``GET /v1/models``.

Owns: Anthropic's exact bodies, SSE streams (``event:`` lines with JSON ``data``, in the API's order:
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``..., ``content_block_stop``,
``message_delta``, ``message_stop``) and error bodies (``{"type": "error", "error": {"type", "message"},
"request_id"}`` with a ``request-id`` header); request validation like the real server's (credentials,
``anthropic-version``, required ``model``/``max_tokens``/``messages``, roles, ``tool_use``/``tool_result``
pairing, thinking budgets and, with thinking on, the signed thinking that must open the assistant turn a
tool result answers, sampling parameters removed in API version 2026-10-21); tool-use replies
(``Behavior.tool_call``, or a tool forced by ``tool_choice``, with an input built from the schema's
required properties); native structured output (``output_config.format``); thinking blocks; prompt
caching (the first request with a ``cache_control`` prefix writes it, identical later ones read it,
with no minimum length); and every fault in Anthropic's own format.

Fault rendering (``FaultKind`` -> what a client sees):
    ``rate_limit`` 429 ``rate_limit_error`` with ``retry-after`` and ``anthropic-ratelimit-requests-reset``;
    ``quota`` 402 ``billing_error`` (``status=429``: the usage-tier spend cap, ``rate_limit_error`` with
    ``details.error_code = enforced_spend_limit_reached`` and no retry-after); ``context_window`` 400
    ``invalid_request_error`` "prompt is too long" (Anthropic's real answer, which carries no structured
    code; ``status=413``: ``request_too_large``); ``content_policy`` a 200 answer with ``stop_reason:
    refusal`` and ``stop_details`` (Anthropic refuses in-band, not with a 4xx); ``auth`` 401;
    ``permission`` 403; ``not_found`` 404; ``bad_request`` 400; ``server_error`` 500 ``api_error`` (504 ->
    ``timeout_error``, 529 -> ``overloaded_error``); ``overloaded`` 529 ``overloaded_error`` before the stream
    starts, or with ``status=200`` on a stream an ``event: error`` after ``after_chunks`` deltas;
    ``malformed`` a body (or an event) that is not JSON; ``truncated`` half a JSON body, or a stream
    without ``message_stop``; ``stream_cut`` the connection dropped after ``after_chunks`` deltas (or half
    way through a body); ``slow`` ``delay`` seconds before each delta (or before the body).

Must not touch: fault selection and capture (``server.FakeProviderServer.begin``), other protocols.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from modelplex.testing.server import approx_tokens

if TYPE_CHECKING:
    from modelplex.testing.faults import Fault
    from modelplex.testing.server import FakeProviderServer, Turn

API_VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})
SAMPLING_REMOVED_VERSION = "2026-10-21"
MIN_THINKING_BUDGET = 1024
KNOWN_MODELS: tuple[tuple[str, str], ...] = (
    ("claude-opus-4-8", "Claude Opus 4.8"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
    ("claude-opus-4-7", "Claude Opus 4.7"),
)
"""What ``GET /v1/models`` lists, besides the models the server has behaviours for."""

_STATUS_TYPES: dict[int, str] = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                                 403: "permission_error", 404: "not_found_error", 409: "conflict_error",
                                 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                                 504: "timeout_error", 529: "overloaded_error"}
ERROR_FAULTS = frozenset({"rate_limit", "quota", "context_window", "auth", "permission", "not_found", "bad_request",
                          "server_error", "overloaded", "status"})
"""Faults answered with an error status; the others shape a 200 answer (or the transport, in ``begin``)."""
_BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking",
                          "search_result", "server_tool_use", "web_search_tool_result", "container_upload"})


class InvalidRequest(Exception):
    """A request the real API would reject with 400 ``invalid_request_error`` (or ``status``)."""

    def __init__(self, message: str, status: int = 400, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type or _STATUS_TYPES.get(status, "invalid_request_error")


def _new_id(prefix: str) -> str:
    return f"{prefix}_01{uuid.uuid4().hex[:22]}"


def error_body(error_type: str, message: str, request_id: str, error_code: str | None = None) -> bytes:
    err: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        err["details"] = {"error_code": error_code}
    return orjson.dumps({"type": "error", "error": err, "request_id": request_id})


def error_response(status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None,
                   error_code: str | None = None) -> web.Response:
    rid = _new_id("req")
    return web.Response(status=status, body=error_body(error_type, message, rid, error_code),
                        content_type="application/json", headers={"request-id": rid, **(headers or {})})


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# ------------------------------------------------------------------------------------------ request reading


def _block_text(block: Any) -> str:
    """The text a block contributes to the prompt (for the fakes' token counts)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "tool_use":
        return f"{block.get('name')} {orjson.dumps(block.get('input') or {}).decode()}"
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return " ".join(_block_text(b) for b in content)
        return str(content or "")
    if kind == "thinking":
        return str(block.get("thinking") or "")
    if kind in ("image", "document"):
        return "[" + str(kind) + "]"
    return ""


def _content_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _segments(body: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """The prompt in cache order (tools, system, messages): ``(text, has cache_control)`` per piece."""
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            yield orjson.dumps({k: v for k, v in tool.items() if k != "cache_control"}).decode(), \
                "cache_control" in tool
    system = body.get("system")
    if isinstance(system, str):
        yield system, False
    elif isinstance(system, list):
        for block in system:
            yield _block_text(block), isinstance(block, dict) and "cache_control" in block
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            for block in _content_blocks(message.get("content")):
                yield _block_text(block), isinstance(block, dict) and "cache_control" in block


def prompt_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    return "\n".join(text for text, _ in _segments(body) if text)


def cached_prefix(body: dict[str, Any]) -> str | None:
    """The prompt up to and including its last ``cache_control`` breakpoint, or ``None``."""
    pieces: list[str] = []
    last = -1
    for text, marked in _segments(body):
        if text:
            pieces.append(text)
        if marked:
            last = len(pieces)
    return "\n".join(pieces[:last]) if last > 0 else None


def example_for(schema: Any, depth: int = 0) -> Any:
    """A value satisfying ``schema``'s types, enums and required properties (for forced tools)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_for(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else list(props)
        return {name: example_for(props.get(name, {"type": "string"}), depth + 1) for name in required}
    if kind == "array":
        n = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        return [example_for(schema.get("items", {"type": "string"}), depth + 1) for _ in range(n)]
    if kind == "integer":
        return int(schema.get("minimum", 1)) if isinstance(schema.get("minimum"), int | float) else 1
    if kind == "number":
        return float(schema.get("minimum", 1.0)) if isinstance(schema.get("minimum"), int | float) else 1.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


# ------------------------------------------------------------------------------------------ validation


def validate_headers(request: web.Request) -> None:
    key = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not key and not auth.lower().startswith("bearer "):
        raise InvalidRequest("x-api-key header is required", 401)
    version = request.headers.get("anthropic-version")
    if not version:
        raise InvalidRequest("anthropic-version: header is required")
    if version not in API_VERSIONS:
        raise InvalidRequest(f"anthropic-version: {version!r} is not a valid version")


def _check_blocks(content: Any, where: str, role: str, version: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content and role == "user":
            raise InvalidRequest(f"{where}.content: user messages must have non-empty content")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a valid string or list")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidRequest(f"{where}.content.{j}.type: unknown content block type {kind!r}")
        if block["type"] == "text" and not block.get("text"):
            raise InvalidRequest(f"{where}.content.{j}: text content blocks must be non-empty")
        if block["type"] == "image":
            src = block.get("source")
            if not isinstance(src, dict) or src.get("type") not in ("base64", "url", "file"):
                raise InvalidRequest(f"{where}.content.{j}.source: image source must be base64, url or file")
        if block["type"] == "tool_use" and (not block.get("id") or not isinstance(block.get("input"), dict)):
            raise InvalidRequest(f"{where}.content.{j}: tool_use blocks need an id and an input object")
        if block["type"] == "tool_result" and not block.get("tool_use_id"):
            raise InvalidRequest(f"{where}.content.{j}.tool_use_id: Field required")
        if block["type"] in ("tool_use", "thinking", "redacted_thinking") and role != "assistant":
            raise InvalidRequest(f"{where}.content.{j}: {block['type']} blocks are only allowed in assistant messages")
        if block["type"] == "tool_result" and role != "user":
            raise InvalidRequest(f"{where}.content.{j}: tool_result blocks are only allowed in user messages")
        if block["type"] == "document" and role == "assistant" and version >= SAMPLING_REMOVED_VERSION:
            raise InvalidRequest(f"{where}.content.{j}: document blocks are not allowed in assistant messages")
    return content


def validate_body(body: Any, version: str, *, count_only: bool = False) -> None:
    """Raise ``InvalidRequest`` where the real API answers 400."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    if not count_only:
        mt = body.get("max_tokens")
        if mt is None:
            raise InvalidRequest("max_tokens: Field required")
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            raise InvalidRequest("max_tokens: Input should be an integer greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Field required")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    system = body.get("system")
    if system is not None and not isinstance(system, str) and (
            not isinstance(system, list) or any(not isinstance(b, dict) or b.get("type") != "text" for b in system)):
        raise InvalidRequest("system: Input should be a valid string or a list of text blocks")
    pending: set[str] = set()
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise InvalidRequest(f"{where}: Input should be a valid dictionary")
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'")
        blocks = _check_blocks(m.get("content"), where, role, version)
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        stray = results - pending
        if stray:
            raise InvalidRequest(f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                                 f"{', '.join(sorted(map(str, stray)))}. Each `tool_result` block must have a "
                                 f"corresponding `tool_use` block in the previous message.")
        missing = pending - results
        if missing:
            raise InvalidRequest(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                                 f"immediately after: {', '.join(sorted(missing))}. Each `tool_use` block must "
                                 f"have a corresponding `tool_result` block in the next message.")
        pending = {str(b["id"]) for b in blocks if b.get("type") == "tool_use"} if role == "assistant" else set()
    for name in ("temperature", "top_p", "top_k"):
        if name in body and version >= SAMPLING_REMOVED_VERSION:
            raise InvalidRequest(f"{name}: is not supported on API version {version}")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
        raise InvalidRequest("temperature: Input should be between 0 and 1")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise InvalidRequest("stop_sequences: Input should be a list of strings")
    _validate_tools(body)
    _validate_thinking(body, count_only)
    fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
    fmt = fmt or body.get("output_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "json_schema"
                            or not isinstance(fmt.get("schema"), dict)):
        raise InvalidRequest("output_config.format: expected {type: json_schema, schema: {...}}")


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise InvalidRequest(f"tools.{k}.name: Field required")
            if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
                raise InvalidRequest(f"tools.{k}.custom.input_schema: Field required")
            names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise InvalidRequest("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                                 "'tool', 'none'")
        if not tools:
            raise InvalidRequest("tool_choice: may only be specified while providing tools")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise InvalidRequest(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")


def _validate_thinking(body: dict[str, Any], count_only: bool) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        raise InvalidRequest("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
            raise InvalidRequest(f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                                 f"{MIN_THINKING_BUDGET}")
        if not count_only and budget >= body["max_tokens"]:
            raise InvalidRequest("max_tokens: must be greater than thinking.budget_tokens")
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
            raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")
        if "temperature" in body and body["temperature"] != 1:
            raise InvalidRequest("temperature may only be set to 1 when thinking is enabled")
    if thinking["type"] != "disabled":
        _validate_thinking_turns(body.get("messages"))


def _validate_thinking_turns(messages: Any) -> None:
    """With thinking on, the assistant turn a ``tool_result`` answers must open with its thinking, and a
    thinking block's signature must be the one this server gave it (the real API checks both)."""
    if not isinstance(messages, list):
        return
    for i, m in enumerate(messages):
        for j, b in enumerate(m.get("content") if isinstance(m, dict) and isinstance(m.get("content"), list) else ()):
            if isinstance(b, dict) and b.get("type") == "thinking" and b.get("signature") != _signature(
                    str(b.get("thinking") or "")):
                raise InvalidRequest(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    last = messages[-1] if messages else None
    if not (isinstance(last, dict) and last.get("role") == "user" and isinstance(last.get("content"), list)
            and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])):
        return
    turn = next((k for k in range(len(messages) - 2, -1, -1)
                 if isinstance(messages[k], dict) and messages[k].get("role") == "assistant"), None)
    content = messages[turn].get("content") if turn is not None else None
    first = content[0] if isinstance(content, list) and content else None
    kind = first.get("type") if isinstance(first, dict) else "text"
    if kind not in ("thinking", "redacted_thinking"):
        raise InvalidRequest(
            f"messages.{turn}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{kind}`. "
            "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
            "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
            "thinking blocks from previous turns. To avoid this requirement, disable `thinking`.")


# ------------------------------------------------------------------------------------------ the reply


@dataclass(slots=True)
class Reply:
    """One Messages answer, ready to render as a body or a stream."""

    message_id: str
    model: str
    thinking: str | None
    text: str
    tool: dict[str, Any] | None  # {"id", "name", "input"}
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, Any] | None
    stop_details: dict[str, Any] | None = None
    text_chunks: list[str] = field(default_factory=list)

    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.thinking is not None:
            blocks.append({"type": "thinking", "thinking": self.thinking, "signature": _signature(self.thinking)})
        if self.text:
            blocks.append({"type": "text", "text": self.text})
        if self.tool is not None:
            blocks.append({"type": "tool_use", **self.tool})
        return blocks

    def message(self, *, streaming: bool = False) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
            "content": [] if streaming else self.content(),
            "stop_reason": None if streaming else self.stop_reason,
            "stop_sequence": None if streaming else self.stop_sequence,
        }
        if not streaming and self.stop_details is not None:
            msg["stop_details"] = self.stop_details
        if self.usage is not None:
            msg["usage"] = dict(self.usage, output_tokens=1) if streaming else self.usage
        return msg


def _signature(thinking: str) -> str:
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


@dataclass
class AnthropicFake:
    """The route handlers, with the fake's prompt cache. One per application."""

    server: FakeProviderServer
    clock: Callable[[], float] = time.time
    cache: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ routes

    async def messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _parse(raw)
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else ""
        turn = await self.server.begin(request, "anthropic", model, raw, body, prompt_text(body))
        version = request.headers.get("anthropic-version", "")
        try:
            validate_headers(request)
            if turn.fault is not None and turn.fault.kind in ERROR_FAULTS \
                    and not self._midstream_overload(turn.fault, body):
                return self.fault_response(turn.fault, turn)
            validate_body(body, version)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.error_type, exc.message)
        assert isinstance(body, dict)
        reply = self.build_reply(body, turn)
        if body.get("stream"):
            return await self.stream(request, reply, turn)
        return await self.respond(request, reply, turn)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _parse(raw)
        model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else ""
        turn = await self.server.begin(request, "anthropic", model, raw, body, prompt_text(body))
        try:
            validate_headers(request)
            if turn.fault is not None and turn.fault.kind in ERROR_FAULTS:
                return self.fault_response(turn.fault, turn)
            validate_body(body, request.headers.get("anthropic-version", ""), count_only=True)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.error_type, exc.message)
        return web.json_response({"input_tokens": turn.input_tokens}, headers={"request-id": _new_id("req")})

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        turn = await self.server.begin(request, "anthropic", "", b"", None, "")
        try:
            validate_headers(request)
            if turn.fault is not None and turn.fault.kind in ERROR_FAULTS:
                return self.fault_response(turn.fault, turn)
            limit = int(request.query.get("limit", "20"))
        except InvalidRequest as exc:
            return error_response(exc.status, exc.error_type, exc.message)
        except ValueError:
            return error_response(400, "invalid_request_error", "limit: Input should be a valid integer")
        models = self.models()
        after = request.query.get("after_id")
        if after:
            ids = [m["id"] for m in models]
            models = models[ids.index(after) + 1:] if after in ids else []
        page = models[: max(1, min(limit, 1000))]
        return web.json_response({"data": page, "has_more": len(models) > len(page),
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None},
                                 headers={"request-id": _new_id("req")})

    async def get_model(self, request: web.Request, wanted: str) -> web.StreamResponse:
        try:
            validate_headers(request)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.error_type, exc.message)
        for m in self.models():
            if m["id"] == wanted:
                return web.json_response(m, headers={"request-id": _new_id("req")})
        return error_response(404, "not_found_error", f"model: {wanted}")

    def models(self) -> list[dict[str, Any]]:
        created = "2025-01-01T00:00:00Z"
        known = dict(KNOWN_MODELS)
        for name in self.server.per_model:
            known.setdefault(name, name)
        return [{"type": "model", "id": mid, "display_name": display, "created_at": created, "lifecycle": "active"}
                for mid, display in known.items()]

    # ------------------------------------------------------------------ building the answer

    def build_reply(self, body: dict[str, Any], turn: Turn) -> Reply:
        behavior = turn.behavior
        text = turn.text
        tool = self._tool_reply(body, turn)
        fmt = body.get("output_config", {}).get("format") if isinstance(body.get("output_config"), dict) else None
        fmt = fmt or body.get("output_format")
        if isinstance(fmt, dict) and behavior.reply is None:
            text = orjson.dumps(example_for(fmt.get("schema"))).decode()
        if tool is not None:
            text = ""
        thinking = None
        if isinstance(body.get("thinking"), dict) and body["thinking"].get("type") in ("enabled", "adaptive"):
            thinking = f"Working through the request step by step before answering ({len(text)} chars)."
            if body["thinking"].get("display") == "omitted":
                thinking = ""
        stop_reason, stop_sequence = ("tool_use" if tool is not None else "end_turn"), None
        if tool is None:
            hits = [(text.find(s), s) for s in body.get("stop_sequences") or () if s and s in text]
            if hits:
                pos, stop_sequence = min(hits)
                text, stop_reason = text[:pos], "stop_sequence"
            if approx_tokens(text) > body["max_tokens"]:
                text, stop_reason, stop_sequence = text[: body["max_tokens"] * 4], "max_tokens", None
        stop_details = None
        if turn.fault is not None and turn.fault.kind == "content_policy":
            text, tool, thinking, stop_reason, stop_sequence = "", None, None, "refusal", None
            stop_details = {"type": "refusal", "category": "general_harms",
                            "explanation": "This request was declined by the fake provider's content policy."}
        out_text = text if tool is None else orjson.dumps(tool["input"]).decode()
        thinking_tokens = approx_tokens(thinking) + 8 if thinking is not None else 0
        output_tokens = (approx_tokens(out_text) if out_text else 1) + thinking_tokens
        usage = self._usage(body, turn, output_tokens, thinking_tokens) if behavior.include_usage else None
        chunks = turn.behavior.stream_chunks
        return Reply(_new_id("msg"), turn.model, thinking, text, tool, stop_reason, stop_sequence, usage,
                     stop_details, self.server.split_chunks(text, chunks) if text else [])

    def _tool_reply(self, body: dict[str, Any], turn: Turn) -> dict[str, Any] | None:
        tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {"type": "auto"}
        if choice.get("type") == "none":
            return None
        wanted = turn.behavior.tool_call
        if choice.get("type") == "tool":
            tool = next(t for t in tools if t.get("name") == choice.get("name"))
            if wanted is not None and wanted.get("name") == tool["name"]:
                args = wanted.get("arguments") or {}
            else:
                args = example_for(tool.get("input_schema")) or {}
            return {"id": _new_id("toolu"), "name": tool["name"], "input": args}
        if wanted is not None:
            return {"id": _new_id("toolu"), "name": str(wanted.get("name")), "input": wanted.get("arguments") or {}}
        if choice.get("type") == "any" and tools:
            return {"id": _new_id("toolu"), "name": tools[0]["name"],
                    "input": example_for(tools[0].get("input_schema")) or {}}
        return None

    def _usage(self, body: dict[str, Any], turn: Turn, output_tokens: int, thinking_tokens: int) -> dict[str, Any]:
        total = turn.input_tokens
        read = write = 0
        prefix = cached_prefix(body)
        if prefix is not None:
            key = hashlib.sha256(f"{turn.model}\x00{prefix}".encode()).hexdigest()
            size = min(approx_tokens(prefix), total)
            if key in self.cache:
                read = size
            else:
                self.cache.add(key)
                write = size
        usage: dict[str, Any] = {"input_tokens": total - read - write, "cache_creation_input_tokens": write,
                                 "cache_read_input_tokens": read, "output_tokens": output_tokens,
                                 "service_tier": "standard"}
        if write:
            usage["cache_creation"] = {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0}
        if thinking_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
        return usage

    # ------------------------------------------------------------------ rendering

    async def respond(self, request: web.Request, reply: Reply, turn: Turn) -> web.StreamResponse:
        fault = turn.fault
        payload = orjson.dumps(reply.message())
        headers = {"request-id": _new_id("req")}
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "malformed":
            return web.Response(body=b"<html>upstream said: not json", content_type="application/json",
                                headers=headers)
        if fault is not None and fault.kind == "truncated":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json", headers=headers)
        if fault is not None and fault.kind == "stream_cut":
            resp = web.StreamResponse(headers={**headers, "Content-Type": "application/json",
                                               "Content-Length": str(len(payload))})
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
            await self.server.abort_stream(resp, request)
            return resp
        return web.Response(body=payload, content_type="application/json", headers=headers)

    async def stream(self, request: web.Request, reply: Reply, turn: Turn) -> web.StreamResponse:
        fault = turn.fault
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", "request-id": _new_id("req")})
        await resp.prepare(request)
        await resp.write(sse("message_start", {"type": "message_start", "message": reply.message(streaming=True)}))
        if fault is not None and fault.kind == "malformed":
            await resp.write(b"event: content_block_start\ndata: {\"type\": \"content_block_start\", \"ind\n\n")
            await resp.write_eof()
            return resp
        deltas = 0
        cut_after = fault.after_chunks if fault is not None and fault.kind in ("stream_cut", "overloaded") else None
        for event, data in self._events(reply):
            if cut_after is not None and (event == "message_delta"
                                          or (event == "content_block_delta" and deltas >= cut_after)):
                return await self._break(resp, request, fault)  # a short reply still breaks before its end
            if event == "content_block_delta":
                await self.server.pace(turn.behavior, fault, _delta_text(data))
                deltas += 1
            if event == "message_stop" and fault is not None and fault.kind == "truncated":
                break
            await resp.write(sse(event, data))
        await resp.write_eof()
        return resp

    async def _break(self, resp: web.StreamResponse, request: web.Request, fault: Fault | None
                     ) -> web.StreamResponse:
        if fault is not None and fault.kind == "overloaded":
            await resp.write(sse("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"},
                                           "request_id": _new_id("req")}))
            await resp.write_eof()
            return resp
        await self.server.abort_stream(resp, request)
        return resp

    def _events(self, reply: Reply) -> Iterator[tuple[str, dict[str, Any]]]:
        index = 0
        pinged = False

        def start(block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
            nonlocal pinged
            yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            if not pinged:
                pinged = True
                yield "ping", {"type": "ping"}

        def delta(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": payload}

        def stop() -> tuple[str, dict[str, Any]]:
            return "content_block_stop", {"type": "content_block_stop", "index": index}

        if reply.thinking is not None:
            yield from start({"type": "thinking", "thinking": "", "signature": ""})
            for piece in self.server.split_chunks(reply.thinking, 2) if reply.thinking else []:
                yield delta({"type": "thinking_delta", "thinking": piece})
            yield delta({"type": "signature_delta", "signature": _signature(reply.thinking)})
            yield stop()
            index += 1
        if reply.text:
            yield from start({"type": "text", "text": ""})
            for piece in reply.text_chunks:
                yield delta({"type": "text_delta", "text": piece})
            yield stop()
            index += 1
        if reply.tool is not None:
            yield from start({"type": "tool_use", "id": reply.tool["id"], "name": reply.tool["name"], "input": {}})
            arguments = orjson.dumps(reply.tool["input"]).decode()
            for piece in self.server.split_chunks(arguments, 3):
                yield delta({"type": "input_json_delta", "partial_json": piece})
            yield stop()
        message_delta: dict[str, Any] = {"type": "message_delta",
                                         "delta": {"stop_reason": reply.stop_reason,
                                                   "stop_sequence": reply.stop_sequence}}
        if reply.stop_details is not None:
            message_delta["delta"]["stop_details"] = reply.stop_details
        if reply.usage is not None:
            message_delta["usage"] = {k: reply.usage[k] for k in
                                      ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                       "output_tokens", "output_tokens_details") if k in reply.usage}
        yield "message_delta", message_delta
        yield "message_stop", {"type": "message_stop"}

    # ------------------------------------------------------------------ faults

    @staticmethod
    def _midstream_overload(fault: Fault, body: Any) -> bool:
        return fault.kind == "overloaded" and fault.status == 200 and isinstance(body, dict) \
            and bool(body.get("stream"))

    def fault_response(self, fault: Fault, turn: Turn) -> web.Response:
        kind = fault.kind
        if kind == "rate_limit":
            headers = self.server.retry_headers(fault)
            headers.update({"anthropic-ratelimit-requests-limit": "50",
                            "anthropic-ratelimit-requests-remaining": "0"})
            if isinstance(fault.retry_after, int | float):
                reset = dt.datetime.fromtimestamp(self.clock() + float(fault.retry_after), dt.UTC)
                headers["anthropic-ratelimit-requests-reset"] = reset.isoformat().replace("+00:00", "Z")
            return error_response(429, "rate_limit_error",
                                  "This request would exceed the rate limit for your organization of 50 requests "
                                  "per minute.", headers=headers)
        if kind == "quota":
            if fault.status == 429:
                return error_response(429, "rate_limit_error",
                                      "You have reached your API usage limits: your organization has crossed its "
                                      "monthly API usage threshold.", error_code="enforced_spend_limit_reached")
            if fault.status == 400:
                return error_response(400, "invalid_request_error",
                                      "This request would exceed your organization's spend limit.")
            return error_response(402, "billing_error",
                                  "Your credit balance is too low to access the Anthropic API.")
        if kind == "context_window":
            if fault.status == 413:
                return error_response(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
            return error_response(400, "invalid_request_error",
                                  f"prompt is too long: {turn.input_tokens + 200_000} tokens > 200000 maximum")
        if kind == "auth":
            return error_response(401, "authentication_error", "invalid x-api-key")
        if kind == "permission":
            return error_response(403, "permission_error",
                                  "Your API key does not have permission to use the specified resource.")
        if kind == "not_found":
            return error_response(404, "not_found_error", f"model: {turn.model}")
        if kind == "bad_request":
            return error_response(400, "invalid_request_error", "messages: invalid request (fault injected)")
        if kind == "overloaded":
            return error_response(529, "overloaded_error", "Overloaded")
        status = fault.status or 500
        etype = _STATUS_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        headers = self.server.retry_headers(fault)
        return error_response(status, etype, "Internal server error" if status >= 500 else f"HTTP {status}",
                              headers=headers)


def _delta_text(data: dict[str, Any]) -> str:
    delta = data.get("delta") or {}
    return str(delta.get("text") or delta.get("partial_json") or delta.get("thinking") or "")


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def models_middleware(fake: AnthropicFake) -> Any:
    """Serve ``GET /v1/models[/{id}]`` for Anthropic clients. OpenAI's fake owns the same path, so the
    ``anthropic-version`` header decides (every Anthropic client sends it); when no route matched at all
    (a server without the OpenAI protocol), this answers too, with Anthropic's header errors."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if request.method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            unmatched = request.match_info.http_exception is not None
            if "anthropic-version" in request.headers or unmatched:
                if path == "/v1/models":
                    return await fake.list_models(request)
                return await fake.get_model(request, path[len("/v1/models/"):])
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


FAKE_KEY = web.AppKey("anthropic_fake", AnthropicFake)
"""Where the application keeps its ``AnthropicFake`` (tests reach the prompt cache through it)."""


def add_routes(app: web.Application, server: FakeProviderServer) -> None:
    """Register the Anthropic routes on the shared fake application."""
    fake = AnthropicFake(server)
    app[FAKE_KEY] = fake
    app.router.add_post("/v1/messages", fake.messages)
    app.router.add_post("/v1/messages/count_tokens", fake.count_tokens)
    app.middlewares.append(models_middleware(fake))
