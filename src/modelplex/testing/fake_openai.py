"""The fake OpenAI and Azure OpenAI provider: OpenAI's wire format, rendered as the real services render it.

Owns: ``add_routes(app, server)``, which serves

* OpenAI (protocol ``"openai"`` in the fault plan): ``POST /v1/chat/completions``, ``POST /v1/embeddings``,
  ``GET /v1/models``, and ``POST /v1/responses`` (the Responses API, rendered by ``fake_responses``; Azure
  serves it on ``/openai/v1/responses``);
* Azure (protocol ``"azure"``): ``POST /openai/deployments/{deployment}/chat/completions`` and
  ``.../embeddings`` and ``GET /openai/models`` (each needs ``api-version``, else a 404 as Azure answers),
  and the v1 API ``POST /openai/v1/chat/completions``, ``/openai/v1/embeddings``, ``GET /openai/v1/models``.

Bodies are shaped exactly as OpenAI sends them (``chat.completion`` with ``refusal``/``logprobs``,
detailed usage, ``system_fingerprint``; Azure adds ``prompt_filter_results`` and per-choice
``content_filter_results``, and its streams open with a chunk that has no choices). Streams are
``chat.completion.chunk`` events: a role chunk, content (or tool-call argument) deltas, a finish chunk,
the usage chunk with ``choices: []`` when ``stream_options.include_usage`` asks, then ``data: [DONE]``.

Deterministic content:

* a tool call when the request has tools and ``Behavior.tool_call`` is set, ``tool_choice`` is
  ``"required"`` or names a function, or the last user message mentions a tool by name; not after a
  tool result unless ``tool_choice`` forces it (so agent loops end). Arguments come from
  ``Behavior.tool_call["arguments"]`` or are dummy values for the tool's required parameters;
* JSON for ``response_format`` ``json_object`` (``{"reply": text}``) or ``json_schema`` (dummy values
  for the schema's required properties, ``$ref``/``anyOf``/``enum`` resolved);
* a refusal when the reply text (``Behavior.reply``) starts with ``REFUSAL_MARKER``: ``content`` null and
  the rest of the text in ``message.refusal`` (streams: ``delta.refusal`` pieces; the Responses API: a
  ``refusal`` content part and ``response.refusal.delta`` events), whatever ``response_format`` asked;
* per-token ``logprobs`` (4-character tokens, with ``top_logprobs`` alternatives) when the request asks
  ``logprobs: true``, on the message and on each stream chunk;
* usage from the fakes' 4-characters-a-token count; prompts of 1024+ tokens are "cached" on repeat
  (``cached_tokens`` in 128-token steps, as OpenAI does); ``reasoning_effort`` adds reasoning tokens.

Faults are rendered in OpenAI's error format (Azure's for Azure routes). ``rate_limit`` sends the
server's ``Retry-After``/``retry-after-ms`` plus ``x-ratelimit-*`` headers (the reset headers only when
the fault gives a numeric wait, so a garbage ``Retry-After`` stays unusable). An API key equal to
``"invalid"`` gets a 401; OpenAI routes accept a missing key (local servers such as Ollama take none),
Azure routes do not.

Must not touch: fault selection, capture and transport faults (``server.FakeProviderServer``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import random
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web

from modelplex.testing import fake_responses
from modelplex.testing.server import approx_tokens
from modelplex.types import message_text

if TYPE_CHECKING:
    from modelplex.testing.faults import Behavior, Fault
    from modelplex.testing.server import FakeProviderServer, Turn

Flavor = Literal["openai", "azure"]

ERROR_FAULTS = frozenset({"rate_limit", "quota", "context_window", "content_policy", "auth", "permission",
                          "not_found", "bad_request", "server_error", "overloaded", "status"})
"""Faults answered with an error status (the rest shape a 200 or the transport)."""

FINGERPRINT = "fp_f2cd28694a"
DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "o4-mini",
                  "text-embedding-3-small", "text-embedding-3-large")
REASONING_TOKENS = {"minimal": 0, "low": 32, "medium": 128, "high": 512}
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
_CHARS_PER_TOKEN = 4
REFUSAL_MARKER = "[refusal]"
"""A reply text starting with this is answered as a refusal of the text after it."""

_SAFE = {"filtered": False, "severity": "safe"}
_AZURE_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_AZURE_PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": {
    **_AZURE_FILTERS, "jailbreak": {"filtered": False, "detected": False}}}]


def add_routes(app: web.Application, server: FakeProviderServer) -> None:
    fake = FakeOpenAI(server)
    r = app.router
    r.add_post("/v1/chat/completions", fake.chat_openai)
    r.add_post("/v1/embeddings", fake.embeddings_openai)
    r.add_get("/v1/models", fake.models_openai)
    r.add_post("/openai/deployments/{deployment}/chat/completions", fake.chat_azure_deployment)
    r.add_post("/openai/deployments/{deployment}/embeddings", fake.embeddings_azure_deployment)
    r.add_get("/openai/models", fake.models_azure)
    r.add_post("/openai/v1/chat/completions", fake.chat_azure_v1)
    r.add_post("/openai/v1/embeddings", fake.embeddings_azure_v1)
    r.add_get("/openai/v1/models", fake.models_azure_v1)
    r.add_post("/v1/responses", fake.responses_openai)
    r.add_post("/openai/v1/responses", fake.responses_azure_v1)


# ----------------------------------------------------------------------------------------- content


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def dummy_from_schema(schema: Any, text: str = "example", defs: dict[str, Any] | None = None,
                      depth: int = 0) -> Any:
    """A value valid against a simple JSON schema: required properties filled with dummy values."""
    if not isinstance(schema, dict) or depth > 12:
        return None
    if defs is None:
        defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        return dummy_from_schema(defs.get(ref.rsplit("/", 1)[-1], {}), text, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return dummy_from_schema((non_null or options)[0], text, defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required")
        keys = required if isinstance(required, list) else list(props)
        return {k: dummy_from_schema(props.get(k, {}), text, defs, depth + 1) for k in keys}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if schema.get("maxItems") is not None:
            count = min(count, int(schema["maxItems"]))
        return [dummy_from_schema(schema.get("items") or {}, text, defs, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        value: float = 1
        if schema.get("minimum") is not None:
            value = max(value, schema["minimum"])
        if schema.get("exclusiveMinimum") is not None:
            value = max(value, schema["exclusiveMinimum"] + 1)
        if schema.get("maximum") is not None:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    formatted = {"date": "2024-01-01", "date-time": "2024-01-01T00:00:00Z", "email": "user@example.com",
                 "uri": "https://example.com", "uuid": "00000000-0000-4000-8000-000000000000"}.get(fmt or "")
    if formatted is not None:
        return formatted
    s = text or "example"
    if schema.get("maxLength") is not None:
        s = s[: int(schema["maxLength"])]
    if schema.get("minLength") is not None and len(s) < int(schema["minLength"]):
        s = s + "x" * (int(schema["minLength"]) - len(s))
    return s


def prompt_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for m in messages:
        if not isinstance(m, dict):
            continue
        parts.append(message_text(m))
        for tc in m.get("tool_calls") or ():
            if isinstance(tc, dict):
                fn = tc.get("function") or {}
                parts.append(f"{fn.get('name', '')}({fn.get('arguments', '')})")
    return "\n".join(p for p in parts if p)


def embedding_vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
    vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(v * v for v in vec) ** 0.5 or 1.0
    return [v / norm for v in vec]


def token_logprobs(text: str, top: int) -> list[dict[str, Any]]:
    """Deterministic log probabilities for ``text``: one entry per 4-character token, as OpenAI shapes them,
    each with ``top`` alternatives (the token itself first)."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(text), _CHARS_PER_TOKEN):
        token = text[i: i + _CHARS_PER_TOKEN]
        logprob = -round(hashlib.sha256(token.encode()).digest()[0] / 512, 6)
        alternatives = [(token, logprob)] + [(f"{token}~{k}", logprob - k) for k in range(1, top)]
        out.append({"token": token, "logprob": logprob, "bytes": list(token.encode()),
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                     for t, lp in alternatives[:top]]})
    return out


def logprobs_object(text: str, top: int | None, *, refusal: bool = False) -> dict[str, Any] | None:
    """A choice's ``logprobs`` for ``text`` (``None`` unless the request asked: ``top`` is its ``top_logprobs``)."""
    if top is None:
        return None
    tokens = token_logprobs(text, top)
    return {"content": None, "refusal": tokens} if refusal else {"content": tokens, "refusal": None}


def _top_logprobs(body: dict[str, Any]) -> int | None:
    """``top_logprobs`` when the request asks for ``logprobs`` (0 without it), else ``None``."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 0


@dataclass(slots=True)
class Reply:
    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    refusal: str | None = None


# ----------------------------------------------------------------------------------------- the fake


class FakeOpenAI:
    """Request handlers for one ``FakeProviderServer``. State (ids, the prompt cache) lives here."""

    def __init__(self, server: FakeProviderServer) -> None:
        self.server = server
        self._seq = itertools.count(1)
        self._cache: set[bytes] = set()

    # ------------------------------------------------------------------ routes

    async def chat_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "openai", None)

    async def chat_azure_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "azure", None)

    async def chat_azure_deployment(self, request: web.Request) -> web.StreamResponse:
        if "api-version" not in request.query:
            return _azure_not_found()
        return await self._chat(request, "azure", request.match_info["deployment"])

    async def embeddings_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._embeddings(request, "openai", None)

    async def embeddings_azure_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._embeddings(request, "azure", None)

    async def embeddings_azure_deployment(self, request: web.Request) -> web.StreamResponse:
        if "api-version" not in request.query:
            return _azure_not_found()
        return await self._embeddings(request, "azure", request.match_info["deployment"])

    async def models_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._models(request, "openai")

    async def models_azure(self, request: web.Request) -> web.StreamResponse:
        if "api-version" not in request.query:
            return _azure_not_found()
        return await self._models(request, "azure")

    async def models_azure_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._models(request, "azure")

    # ------------------------------------------------------------------ chat

    async def _chat(self, request: web.Request, flavor: Flavor, deployment: str | None) -> web.StreamResponse:
        raw = await request.read()
        body = _loads(raw)
        if not isinstance(body, dict):
            return self._error(flavor, 400, "We could not parse the JSON body of your request. (HINT: This likely "
                               "means you aren't using your HTTP library correctly.)", "invalid_request_error")
        model = deployment or body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(flavor, 400, "you must provide a model parameter", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(flavor, 400, "[] is too short - 'messages'", "invalid_request_error",
                               param="messages", code="empty_array")
        prompt = prompt_text(messages)
        turn = await self._begin(request, flavor, model, raw, body, prompt)
        if isinstance(turn, web.Response):
            return turn
        reply = self._reply(turn, body)
        usage = self._usage(turn, body, reply, prompt)
        rid = f"chatcmpl-{hashlib.sha256(f'{next(self._seq)}:{model}'.encode()).hexdigest()[:29]}"
        if body.get("stream"):
            return await self._stream(request, turn, body, reply, usage, flavor, rid, model)
        return await self._complete(request, turn, body, reply, usage, flavor, rid, model)

    async def _begin(self, request: web.Request, flavor: Flavor, model: str, raw: bytes, body: dict[str, Any],
                     prompt: str) -> Turn | web.Response:
        """The request's turn (captured, its fault drawn), or the error answer its key or fault calls for."""
        turn = await self.server.begin(request, flavor, model, raw, body, prompt)
        denied = self._auth_failure(request, flavor)
        if denied is not None:
            return denied
        if turn.fault is not None and turn.fault.kind in ERROR_FAULTS:
            return self._fault(turn.fault, flavor, model)
        return turn

    def _tool_call(self, body: dict[str, Any], behavior: Behavior) -> tuple[str, str] | None:
        tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
        functions = {str((t.get("function") or {}).get("name")): t.get("function") or {} for t in tools}
        functions.pop("None", None)
        choice = body.get("tool_choice")
        if not functions or choice == "none":
            return None
        forced: str | None = None
        if isinstance(choice, dict):
            forced = (choice.get("function") or {}).get("name")
        elif choice == "required":
            forced = next(iter(functions))
        messages = body.get("messages") or []
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        name: str | None = forced
        args: Any = None
        if forced is None and last.get("role") != "tool":
            if behavior.tool_call is not None:
                name = behavior.tool_call.get("name") or next(iter(functions))
                args = behavior.tool_call.get("arguments")
            elif last.get("role") == "user":
                said = message_text(last)
                name = next((n for n in functions if n in said), None)
        elif forced is not None and behavior.tool_call is not None and behavior.tool_call.get("name") == forced:
            args = behavior.tool_call.get("arguments")
        if name is None:
            return None
        if args is None:
            args = dummy_from_schema((functions.get(name) or {}).get("parameters") or {"type": "object"})
        arguments = args if isinstance(args, str) else orjson.dumps(args).decode()
        return name, arguments

    def _reply(self, turn: Turn, body: dict[str, Any]) -> Reply:
        effort = body.get("reasoning_effort")
        reasoning = REASONING_TOKENS.get(effort, 0) if isinstance(effort, str) else 0
        if turn.text.startswith(REFUSAL_MARKER):
            refusal = turn.text[len(REFUSAL_MARKER):].strip()
            return Reply(None, [], "stop", approx_tokens(refusal) + reasoning, reasoning, refusal)
        call = self._tool_call(body, turn.behavior)
        if call is not None:
            name, arguments = call
            call_id = "call_" + hashlib.sha256(f"{name}:{arguments}:{next(self._seq)}".encode()).hexdigest()[:24]
            tc = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            return Reply(None, [tc], "tool_calls", approx_tokens(name + arguments) + reasoning, reasoning)
        fmt = body.get("response_format")
        text = turn.text
        if fmt and turn.behavior.reply is not None and _is_json(turn.text):
            pass  # a scripted JSON reply is sent verbatim, valid for the schema or not
        elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
            text = orjson.dumps({"reply": turn.text}).decode()
        elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
            text = orjson.dumps(dummy_from_schema(schema, turn.text)).decode()
        tokens = turn.output_tokens if text == turn.text else approx_tokens(text)
        max_out = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(max_out, int) and max_out > 0 and tokens + reasoning > max_out:
            # honour the limit as OpenAI does: cut the text and say so
            keep = max(0, max_out - reasoning)
            text = text[: keep * _CHARS_PER_TOKEN]
            tokens, finish = keep, "length"
        return Reply(text, [], finish, tokens + reasoning, reasoning)

    def _cached_tokens(self, prompt: str, prompt_tokens: int) -> int:
        """OpenAI-style automatic prompt caching: a repeated prefix of 1024+ tokens is served from the
        cache, in 128-token steps."""
        if prompt_tokens < CACHE_MIN_TOKENS:
            return 0
        data = prompt.encode()
        step = CACHE_STEP_TOKENS * _CHARS_PER_TOKEN
        h = hashlib.sha256()
        cached = 0
        pos = 0
        fresh: list[bytes] = []
        while pos + step <= len(data):
            h.update(data[pos: pos + step])
            pos += step
            if pos >= CACHE_MIN_TOKENS * _CHARS_PER_TOKEN:
                key = h.copy().digest()
                if key in self._cache:
                    cached = pos // _CHARS_PER_TOKEN
                else:
                    fresh.append(key)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache.update(fresh)
        return min(cached, prompt_tokens)

    def _usage(self, turn: Turn, body: dict[str, Any], reply: Reply, prompt: str) -> dict[str, Any] | None:
        if not turn.behavior.include_usage:
            return None
        prompt_tokens = turn.input_tokens
        completion = reply.completion_tokens
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self._cached_tokens(prompt, prompt_tokens), "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    async def _complete(self, request: web.Request, turn: Turn, body: dict[str, Any], reply: Reply,
                        usage: dict[str, Any] | None, flavor: Flavor, rid: str, model: str) -> web.StreamResponse:
        fault = turn.fault
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": reply.refusal,
                                   "annotations": []}
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        top = None if reply.tool_calls else _top_logprobs(body)
        logprobs = logprobs_object(reply.refusal or reply.content or "", top, refusal=reply.refusal is not None)
        choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": logprobs,
                                  "finish_reason": reply.finish_reason}
        obj: dict[str, Any] = {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                               "choices": [choice]}
        if usage is not None:
            obj["usage"] = usage
        obj["service_tier"] = "default"
        obj["system_fingerprint"] = FINGERPRINT
        if flavor == "azure":
            choice["content_filter_results"] = _AZURE_FILTERS
            obj["prompt_filter_results"] = _AZURE_PROMPT_FILTERS
        payload = orjson.dumps(obj)
        headers = self._ok_headers(flavor)
        if fault is not None and fault.kind == "malformed":
            return web.Response(status=200, body=b"upstream connect error or disconnect/reset before headers",
                                headers=headers, content_type="application/json")
        if fault is not None and fault.kind == "truncated":
            return web.Response(status=200, body=payload[: len(payload) // 2], headers=headers,
                                content_type="application/json")
        if fault is not None and fault.kind == "stream_cut":
            resp = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
            resp.content_length = len(payload)
            await resp.prepare(request)
            await resp.write(payload[: len(payload) // 2])
            await self.server.abort_stream(resp, request)
            return resp
        return web.Response(status=200, body=payload, headers=headers, content_type="application/json")

    async def _stream(self, request: web.Request, turn: Turn, body: dict[str, Any], reply: Reply,
                      usage: dict[str, Any] | None, flavor: Flavor, rid: str, model: str) -> web.StreamResponse:
        fault, behavior = turn.fault, turn.behavior
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage")) and usage is not None
        created = int(time.time())
        resp = web.StreamResponse(status=200, headers={**self._ok_headers(flavor),
                                                       "Content-Type": "text/event-stream; charset=utf-8",
                                                       "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: dict[str, Any] | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            if flavor == "azure":
                choice["content_filter_results"] = {} if finish else _AZURE_FILTERS
            obj: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                                   "service_tier": "default", "system_fingerprint": FINGERPRINT,
                                   "choices": [choice]}
            if include_usage:
                obj["usage"] = None
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        pieces: list[tuple[str, bytes]] = []  # (text for pacing, event)
        top = _top_logprobs(body)
        if reply.tool_calls:
            first = [{"index": i, "id": tc["id"], "type": "function",
                      "function": {"name": tc["function"]["name"], "arguments": ""}}
                     for i, tc in enumerate(reply.tool_calls)]
            role = chunk({"role": "assistant", "content": None, "tool_calls": first, "refusal": None})
            for i, tc in enumerate(reply.tool_calls):
                for part in self.server.split_chunks(tc["function"]["arguments"], behavior.stream_chunks):
                    pieces.append((part, chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})))
        elif reply.refusal is not None:  # OpenAI opens a refusal with no content and an empty refusal
            role = chunk({"role": "assistant", "content": None, "refusal": ""})
            for part in self.server.split_chunks(reply.refusal, behavior.stream_chunks):
                pieces.append((part, chunk({"refusal": part}, logprobs=logprobs_object(part, top, refusal=True))))
        else:
            role = chunk({"role": "assistant", "content": "", "refusal": None})
            for part in self.server.split_chunks(reply.content or "", behavior.stream_chunks):
                pieces.append((part, chunk({"content": part}, logprobs=logprobs_object(part, top))))

        try:
            if fault is not None and fault.kind == "empty_stream":  # some OpenAI-compatible servers, on a failure
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            if flavor == "azure":
                await resp.write(b"data: " + orjson.dumps({"choices": [], "created": 0, "id": "", "model": "",
                                                           "object": "",
                                                           "prompt_filter_results": _AZURE_PROMPT_FILTERS})
                                 + b"\n\n")
            await resp.write(role)
            if fault is not None and fault.kind == "malformed":
                await resp.write(b'data: {"id": "' + rid.encode() + b'", "choices": [{"delta": \n\n')
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            for sent, (text, event) in enumerate(pieces):
                if fault is not None and fault.kind == "stream_cut" and sent >= fault.after_chunks:
                    await self.server.abort_stream(resp, request)
                    return resp
                await self.server.pace(behavior, fault, text)
                await resp.write(event)
            if fault is not None and fault.kind == "truncated":
                await resp.write_eof()
                return resp
            await resp.write(chunk({}, reply.finish_reason))
            if include_usage:
                obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "service_tier": "default", "system_fingerprint": FINGERPRINT, "choices": [],
                       "usage": usage}
                await resp.write(b"data: " + orjson.dumps(obj) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):  # the client went away
            pass
        return resp

    # ------------------------------------------------------------------ the Responses API

    async def responses_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._responses(request, "openai")

    async def responses_azure_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._responses(request, "azure")

    async def _responses(self, request: web.Request, flavor: Flavor) -> web.StreamResponse:
        """``POST /v1/responses``: the same replies, faults and usage as chat completions, in the Responses
        API's shapes (``fake_responses``)."""
        raw = await request.read()
        body = _loads(raw)
        if not isinstance(body, dict):
            return self._error(flavor, 400, "We could not parse the JSON body of your request.",
                               "invalid_request_error")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(flavor, 400, "Missing required parameter: 'model'.", "invalid_request_error",
                               param="model", code="missing_required_parameter")
        view = fake_responses.chat_view(body)
        if isinstance(view, str):
            return self._error(flavor, 400, view, "invalid_request_error", param="input")
        prompt = prompt_text(view["messages"])
        turn = await self._begin(request, flavor, model, raw, body, prompt)
        if isinstance(turn, web.Response):
            return turn
        reply = self._reply(turn, view)
        usage = fake_responses.responses_usage(self._usage(turn, view, reply, prompt))
        rid = f"resp_{hashlib.sha256(f'{next(self._seq)}:{model}'.encode()).hexdigest()[:48]}"
        output = fake_responses.output_items(rid, reply.content, reply.tool_calls, reply.reasoning_tokens,
                                             refusal=reply.refusal)
        final = fake_responses.response_object(body, rid=rid, model=model, created=int(time.time()),
                                               status="incomplete" if reply.finish_reason == "length" else "completed",
                                               output=output, usage=usage)
        fault, headers = turn.fault, self._ok_headers(flavor)
        if not body.get("stream"):
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            payload = orjson.dumps(final)
            if fault is not None and fault.kind == "malformed":
                payload = b"upstream connect error or disconnect/reset before headers"
            elif fault is not None and fault.kind == "truncated":
                payload = payload[: len(payload) // 2]
            return web.Response(status=200, body=payload, headers=headers, content_type="application/json")
        resp = web.StreamResponse(status=200, headers={**headers, "Content-Type": "text/event-stream; charset=utf-8",
                                                       "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            sent = 0
            for text, event in fake_responses.stream_events(
                    final, lambda t: self.server.split_chunks(t, turn.behavior.stream_chunks)):
                if fault is not None and fault.kind == "malformed" and sent == 2:
                    await resp.write(b'event: response.output_text.delta\ndata: {"type": "response.outp\n\n')
                if fault is not None and fault.kind == "stream_cut" and text and sent >= fault.after_chunks:
                    await self.server.abort_stream(resp, request)
                    return resp
                if fault is not None and fault.kind == "truncated" and event.startswith(
                        (b"event: response.completed", b"event: response.incomplete")):
                    break
                if text:
                    await self.server.pace(turn.behavior, fault, text)
                    sent += 1
                await resp.write(event)
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):  # the client went away
            pass
        return resp

    # ------------------------------------------------------------------ embeddings and models

    async def _embeddings(self, request: web.Request, flavor: Flavor, deployment: str | None
                          ) -> web.StreamResponse:
        raw = await request.read()
        body = _loads(raw)
        if not isinstance(body, dict):
            return self._error(flavor, 400, "We could not parse the JSON body of your request.",
                               "invalid_request_error")
        model = deployment or body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(flavor, 400, "you must provide a model parameter", "invalid_request_error")
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            return self._error(flavor, 400, "'$.input' is invalid. Please check the API reference.",
                               "invalid_request_error", param="input")
        turn = await self.server.begin(request, flavor, model, raw, body, "\n".join(texts))
        denied = self._auth_failure(request, flavor)
        if denied is not None:
            return denied
        fault = turn.fault
        if fault is not None and fault.kind in ERROR_FAULTS:
            return self._fault(fault, flavor, model)
        dims = body.get("dimensions")
        if not isinstance(dims, int) or dims <= 0:
            dims = 3072 if "large" in model else 1536
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = embedding_vector(text, dims)
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(approx_tokens(t) for t in texts)
        obj = {"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        payload = orjson.dumps(obj)
        headers = self._ok_headers(flavor)
        if fault is not None and fault.kind == "malformed":
            payload = b"<html><body>bad gateway</body></html>"
        elif fault is not None and fault.kind == "truncated":
            payload = payload[: len(payload) // 2]
        elif fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        return web.Response(status=200, body=payload, headers=headers, content_type="application/json")

    async def _models(self, request: web.Request, flavor: Flavor) -> web.StreamResponse:
        turn = await self.server.begin(request, flavor, "", b"", None, "")
        denied = self._auth_failure(request, flavor)
        if denied is not None:
            return denied
        if turn.fault is not None and turn.fault.kind in ERROR_FAULTS:
            return self._fault(turn.fault, flavor, "")
        names = list(dict.fromkeys([*DEFAULT_MODELS, *self.server.per_model]))
        data = [{"id": n, "object": "model", "created": 1715367049, "owned_by": "system"} for n in names]
        return web.json_response({"object": "list", "data": data}, headers=self._ok_headers(flavor),
                                 dumps=lambda o: orjson.dumps(o).decode())

    # ------------------------------------------------------------------ auth, headers, errors

    def _auth_failure(self, request: web.Request, flavor: Flavor) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        key: str | None = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if key is None and flavor == "azure":
            key = request.headers.get("api-key")
        if flavor == "azure" and not key:
            return _json(401, {"error": {"code": "401", "message": "Access denied due to missing subscription "
                                         "key. Make sure to include subscription key when making requests to "
                                         "an API."}})
        if key == "invalid":
            return self._auth_error(flavor)
        return None

    def _auth_error(self, flavor: Flavor) -> web.Response:
        if flavor == "azure":
            return _json(401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key "
                                         "or wrong API endpoint. Make sure to provide a valid key for an active "
                                         "subscription and use a correct regional API endpoint for your "
                                         "resource."}})
        return self._error(flavor, 401, "Incorrect API key provided: inva***lid. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                           code="invalid_api_key")

    def _ok_headers(self, flavor: Flavor) -> dict[str, str]:
        n = next(self._seq)
        rid = hashlib.sha256(f"req:{n}".encode()).hexdigest()
        if flavor == "azure":
            uuid = f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:32]}"
            return {"apim-request-id": uuid, "x-request-id": uuid, "x-ms-region": "East US",
                    "x-ratelimit-remaining-requests": "999", "x-ratelimit-remaining-tokens": "99000"}
        return {"x-request-id": f"req_{rid[:32]}", "openai-processing-ms": "12", "openai-version": "2020-10-01",
                "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999",
                "x-ratelimit-reset-requests": "6ms", "x-ratelimit-limit-tokens": "30000000",
                "x-ratelimit-remaining-tokens": "29999000", "x-ratelimit-reset-tokens": "0s"}

    def _error(self, flavor: Flavor, status: int, message: str, etype: str | None, *, param: str | None = None,
               code: str | None = None, headers: dict[str, str] | None = None,
               inner: dict[str, Any] | None = None) -> web.Response:
        err: dict[str, Any]
        if flavor == "azure":
            err = {"code": code or str(status), "message": message}
            if param is not None:
                err["param"] = param
            if etype is not None:
                err["type"] = etype
            if inner is not None:
                err["status"] = status
                err["innererror"] = inner
        else:
            err = {"message": message, "type": etype, "param": param, "code": code}
        rid = hashlib.sha256(f"err:{next(self._seq)}".encode()).hexdigest()[:32]
        return _json(status, {"error": err}, {"x-request-id": f"req_{rid}", **(headers or {})})

    def _fault(self, fault: Fault, flavor: Flavor, model: str) -> web.Response:
        kind = fault.kind
        if kind == "rate_limit":
            headers = self.server.retry_headers(fault)
            headers.update({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
                            "x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "0"})
            wait: float | None = None
            if fault.retry_after_ms is not None:
                wait = fault.retry_after_ms / 1000
            elif isinstance(fault.retry_after, int | float):
                wait = float(fault.retry_after)
            if wait is not None:
                headers["x-ratelimit-reset-requests"] = f"{wait:g}s"
                headers["x-ratelimit-reset-tokens"] = f"{wait:g}s"
            if flavor == "azure":
                secs = f"{wait:g}" if wait is not None else "1"
                return self._error(flavor, 429, "Requests to the ChatCompletions_Create Operation under Azure OpenAI "
                                   "API version 2024-10-21 have exceeded token rate limit of your current OpenAI "
                                   f"S0 pricing tier. Please retry after {secs} seconds.", None, code="429",
                                   headers=headers)
            return self._error(flavor, 429, f"Rate limit reached for {model} in organization org-fake on requests "
                               "per min (RPM): Limit 500, Used 500, Requested 1.", "requests",
                               code="rate_limit_exceeded", headers=headers)
        if kind == "quota":
            return self._error(flavor, 429, "You exceeded your current quota, please check your plan and billing "
                               "details.", "insufficient_quota", code="insufficient_quota")
        if kind == "context_window":
            return self._error(flavor, 400, "This model's maximum context length is 128000 tokens. However, your "
                               "messages resulted in 130123 tokens. Please reduce the length of the messages.",
                               "invalid_request_error", param="messages", code="context_length_exceeded")
        if kind == "content_policy":
            if flavor == "azure":
                inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "jailbreak": {"filtered": False, "detected": False},
                    "self_harm": {"filtered": False, "severity": "safe"},
                    "sexual": {"filtered": False, "severity": "safe"},
                    "violence": {"filtered": True, "severity": "medium"}}}
                return self._error(flavor, 400, "The response was filtered due to the prompt triggering Azure "
                                   "OpenAI's content management policy.", None, param="prompt",
                                   code="content_filter", inner=inner)
            return self._error(flavor, 400, "Your request was rejected as a result of our safety system.",
                               "invalid_request_error", code="content_filter")
        if kind == "auth":
            return self._auth_error(flavor)
        if kind == "permission":
            return self._error(flavor, 403, f"You are not allowed to sample from {model}.", "invalid_request_error",
                               code="model_not_available" if flavor == "openai" else "PermissionDenied")
        if kind == "not_found":
            if flavor == "azure":
                return self._error(flavor, 404, "The API deployment for this resource does not exist. If you "
                                   "created the deployment within the last 5 minutes, please wait a moment and "
                                   "try again.", None, code="DeploymentNotFound")
            return self._error(flavor, 404, f"The model `{model}` does not exist or you do not have access to it.",
                               "invalid_request_error", code="model_not_found")
        if kind == "bad_request":
            return self._error(flavor, 400, "Invalid value for 'temperature': must be between 0 and 2.",
                               "invalid_request_error", param="temperature", code="invalid_value")
        if kind == "overloaded":
            return self._error(flavor, fault.status or 503, "That model is currently overloaded with other "
                               "requests. You can retry your request.", "server_error", code="server_overloaded")
        status = fault.status or 500
        if kind == "server_error":
            return self._error(flavor, status, "The server had an error while processing your request. Sorry about "
                               "that!", "server_error")
        etype = "server_error" if status >= 500 else "invalid_request_error"
        return self._error(flavor, status, f"fault: status {status}", etype)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), headers=headers, content_type="application/json")


def _azure_not_found() -> web.Response:
    return _json(404, {"error": {"code": "404", "message": "Resource not found"}})


def _embedding_inputs(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) for v in value):  # one input as token ids
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) for v in value):
            return [" ".join(map(str, v)) for v in value]
    return None
