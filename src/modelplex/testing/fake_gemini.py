"""The fake Gemini API: ``/v1beta/models/{model}:generateContent`` and friends, on loopback.

Owns: the Gemini routes of ``FakeProviderServer`` (``add_routes(app, server)``) and their rendering:
``GenerateContentResponse`` JSON with ``usageMetadata``, the ``?alt=sse`` stream, ``embedContent`` /
``batchEmbedContents`` vectors, the models list, and faults in Google's error format
(``{"error": {"code", "message", "status", "details": [...]}}``).

Behaviour a client can rely on:

* The key must arrive in ``x-goog-api-key``. A ``?key=`` query parameter is answered with 400 (modelplex
  never puts keys in URLs, and this fake holds it to that); a missing header with 403
  ``PERMISSION_DENIED``, as Google does.
* ``generationConfig.maxOutputTokens`` truncates the reply (``finishReason: MAX_TOKENS``);
  ``stopSequences`` cut it (``STOP``); a ``thinkingConfig`` adds ``thoughtsTokenCount`` (and a thought
  part when ``includeThoughts``).
* Faults: ``rate_limit`` 429 ``RESOURCE_EXHAUSTED`` with a per-minute ``QuotaFailure`` and, when the fault
  sets a retry time, a ``RetryInfo`` detail plus the ``Retry-After`` header; ``quota`` 429 with a per-day
  ``QuotaFailure``; ``context_window`` 400 ``INVALID_ARGUMENT`` (Gemini sends no structured code for it);
  ``content_policy`` a 200 whose ``promptFeedback.blockReason`` is ``SAFETY``; ``auth`` 400 with
  ``ErrorInfo.reason: API_KEY_INVALID``; ``overloaded`` 503 ``UNAVAILABLE``; ``stream_cut`` drops the
  connection after ``after_chunks`` events — or, when the fault has a ``status``, sends Google's in-band
  ``{"error": ...}`` event instead; ``truncated`` ends a stream with no ``finishReason``;
  ``failed_generation`` ends the answer with ``finishReason: MALFORMED_FUNCTION_CALL`` (after
  ``after_chunks`` text events on a stream).
* A function call answers ``Behavior.tool_call``, or a call forced by ``functionCallingConfig.mode: ANY``
  (the first allowed function, with arguments valid for its schema).

Must not touch: fault selection and transport faults (``server.FakeProviderServer.begin`` does those).
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from modelplex.testing.fake_openai import dummy_from_schema
from modelplex.testing.server import FakeProviderServer, approx_tokens

if TYPE_CHECKING:
    from modelplex.testing.faults import Fault
    from modelplex.testing.server import Turn

PROTOCOL = "gemini"
DEFAULT_DIMENSIONS = 768
INPUT_TOKEN_LIMIT = 1_048_576
LISTED_MODELS: tuple[str, ...] = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "gemini-embedding-001")

STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_HELP = {"@type": "type.googleapis.com/google.rpc.Help",
         "links": [{"description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}


def add_routes(app: web.Application, server: FakeProviderServer) -> None:
    routes = _GeminiRoutes(server)
    app.router.add_post("/v1beta/models/{target}", routes.post)
    app.router.add_post("/v1beta/tunedModels/{target}", routes.post)
    app.router.add_get("/v1beta/models", routes.list_models)


# ============================================================================ bodies


def error_body(status: int, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Google's error object for an HTTP status."""
    err: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        err["details"] = details
    return {"error": err}


def error_response(status: int, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(error_body(status, message, details)),
                        content_type="application/json", headers=headers)


def quota_failure(quota_id: str, metric: str, model: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": f"generativelanguage.googleapis.com/{metric}", "quotaId": quota_id,
                            "quotaDimensions": {"location": "global", "model": model}}]}


def retry_info(fault: Fault) -> dict[str, Any] | None:
    seconds: float | None = None
    if isinstance(fault.retry_after, int | float):
        seconds = float(fault.retry_after)
    elif fault.retry_after_ms is not None:
        seconds = fault.retry_after_ms / 1000.0
    if seconds is None:
        return None
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds:g}s"}


def fault_response(fault: Fault, model: str, input_tokens: int) -> web.Response | None:
    """The HTTP answer for an error fault, or ``None`` when the fault is not an error status."""
    kind = fault.kind
    if kind == "rate_limit":
        details = [quota_failure("GenerateRequestsPerMinutePerProjectPerModel",
                                 "generate_content_requests_per_minute", model), _HELP]
        info = retry_info(fault)
        if info:
            details.append(info)
        return error_response(429, "You exceeded your current quota, please check your plan and billing details.",
                              details, FakeProviderServer.retry_headers(fault))
    if kind == "quota":
        details = [quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                                 "generate_content_free_tier_requests", model), _HELP]
        info = retry_info(fault)
        if info:
            details.append(info)
        return error_response(429, "You exceeded your current quota, please check your plan and billing details.",
                              details, FakeProviderServer.retry_headers(fault))
    if kind == "context_window":
        return error_response(400, f"The input token count ({max(input_tokens, INPUT_TOKEN_LIMIT + 1)}) exceeds "
                                   f"the maximum number of tokens allowed ({INPUT_TOKEN_LIMIT}).")
    if kind == "auth":
        return error_response(400, "API key not valid. Please pass a valid API key.", [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": "API key not valid. Please pass a valid API key."}])
    if kind == "permission":
        return error_response(403, "The caller does not have permission")
    if kind == "not_found":
        return error_response(404, f"models/{model} is not found for API version v1beta, or is not supported "
                                   "for generateContent.")
    if kind == "bad_request":
        return error_response(400, "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"")
    if kind == "overloaded":
        return error_response(fault.status or 503, "The model is overloaded. Please try again later.")
    if kind == "server_error":
        return error_response(fault.status or 500, "An internal error has occurred. Please retry or report "
                                                   "in https://developers.generativeai.google/guide/troubleshooting")
    if kind == "status":
        status = fault.status or 500
        return error_response(status, f"fake status {status}", headers=FakeProviderServer.retry_headers(fault))
    return None


def embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def forced_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call a request forces (``functionCallingConfig.mode: ANY``): the first allowed function, with
    arguments valid for its schema, as Gemini must answer with a function call then."""
    cfg = field(field(body, "toolConfig"), "functionCallingConfig")
    if not isinstance(cfg, dict) or str(field(cfg, "mode") or "").upper() != "ANY":
        return None
    decls = [d for t in body.get("tools") or () if isinstance(t, dict)
             for d in field(t, "functionDeclarations") or () if isinstance(d, dict) and d.get("name")]
    allowed = field(cfg, "allowedFunctionNames") or [d["name"] for d in decls]
    decl = next((d for d in decls if d["name"] in allowed), None)
    if decl is None:
        return None
    schema = field(decl, "parametersJsonSchema") or decl.get("parameters") or {"type": "object"}
    return {"name": decl["name"], "arguments": dummy_from_schema(schema) or {}}


def field(obj: Any, camel: str) -> Any:
    """A request field by its JSON name or its proto name: Google's proto-JSON parser accepts both
    (the google-genai SDK sends e.g. ``thinking_budget``)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def _texts(parts: Any) -> list[str]:
    out: list[str] = []
    for p in parts or ():
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("text"), str):
            out.append(p["text"])
        elif isinstance(p.get("functionResponse"), dict):
            out.append(orjson.dumps(p["functionResponse"].get("response")).decode())
        elif isinstance(p.get("functionCall"), dict):
            out.append(orjson.dumps(p["functionCall"]).decode())
    return out


def as_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request as OpenAI-shaped messages, for ``Behavior.reply`` callables."""
    msgs: list[dict[str, Any]] = []
    system = field(body, "systemInstruction")
    if isinstance(system, dict):
        msgs.append({"role": "system", "content": "\n".join(_texts(system.get("parts")))})
    for c in body.get("contents") or ():
        if isinstance(c, dict):
            role = "assistant" if c.get("role") == "model" else "user"
            msgs.append({"role": role, "content": "\n".join(_texts(c.get("parts")))})
    return msgs


# ============================================================================ routes


class _GeminiRoutes:
    def __init__(self, server: FakeProviderServer) -> None:
        self.server = server

    async def post(self, request: web.Request) -> web.StreamResponse:
        target = request.match_info["target"]
        model, _, method = target.rpartition(":")
        body_bytes = await request.read()
        try:
            parsed: Any = orjson.loads(body_bytes) if body_bytes else {}
        except orjson.JSONDecodeError:
            parsed = None
        prompt = "\n".join(m["content"] for m in as_messages(parsed)) if isinstance(parsed, dict) else ""
        if isinstance(parsed, dict) and method == "embedContent":
            prompt = "\n".join(_texts((parsed.get("content") or {}).get("parts")))
        elif isinstance(parsed, dict) and method == "batchEmbedContents":
            prompt = "\n".join(t for r in parsed.get("requests") or () if isinstance(r, dict)
                               for t in _texts((r.get("content") or {}).get("parts")))
        messages = as_messages(parsed) if isinstance(parsed, dict) else []
        turn = await self.server.begin(request, PROTOCOL, model, body_bytes, parsed, prompt, messages=messages)
        denied = self._auth(request)
        if denied is not None:
            return denied
        if not isinstance(parsed, dict):
            return error_response(400, "Invalid JSON payload received.")
        if method in ("generateContent", "streamGenerateContent"):
            stream = method == "streamGenerateContent"
            if stream and request.query.get("alt") != "sse":
                return error_response(400, "this fake serves streamGenerateContent only with alt=sse")
            return await self._generate(request, turn, parsed, stream=stream)
        if method in ("embedContent", "batchEmbedContents"):
            return self._embed(turn, parsed, batch=method == "batchEmbedContents")
        return error_response(404, f"Method {method!r} not found for {model}.")

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        turn = await self.server.begin(request, PROTOCOL, "", b"", None, "", messages=[])
        denied = self._auth(request)
        if denied is not None:
            return denied
        if turn.fault is not None:
            answer = fault_response(turn.fault, "", 0)
            if answer is not None:
                return answer
        names = list(dict.fromkeys([*LISTED_MODELS, *self.server.per_model]))
        models = [{"name": f"models/{n}", "version": "001", "displayName": n, "inputTokenLimit": INPUT_TOKEN_LIMIT,
                   "outputTokenLimit": 65536,
                   "supportedGenerationMethods": (["embedContent"] if "embedding" in n
                                                  else ["generateContent", "countTokens"])}
                  for n in names]
        return web.json_response({"models": models})

    @staticmethod
    def _auth(request: web.Request) -> web.Response | None:
        if "key" in request.query:
            return error_response(400, "API keys in the URL are refused by this fake: send x-goog-api-key.")
        if not request.headers.get("x-goog-api-key"):
            return error_response(403, "Method doesn't allow unregistered callers (callers without established "
                                       "identity). Please use API Key or other form of API consumer identity "
                                       "to call this API.")
        return None

    # ------------------------------------------------------------------ generate

    async def _generate(self, request: web.Request, turn: Turn, body: dict[str, Any], *, stream: bool
                        ) -> web.StreamResponse:
        fault = turn.fault
        if fault is not None:
            answer = fault_response(fault, turn.model, turn.input_tokens)
            if answer is not None:
                return answer
            if fault.kind == "malformed":
                return web.Response(status=200, body=b"<html>upstream hiccup</html>", content_type="application/json")
        rid = uuid.uuid4().hex[:22]
        if fault is not None and fault.kind == "content_policy":
            blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
                "usageMetadata": {"promptTokenCount": turn.input_tokens, "totalTokenCount": turn.input_tokens},
                "modelVersion": turn.model, "responseId": rid}
            if stream:
                return await self._sse(request, [blocked], turn, cut_after=None)
            return web.json_response(blocked)
        if fault is not None and fault.kind == "failed_generation":
            return await self._failed(request, turn, rid, stream=stream)
        gen = field(body, "generationConfig") or {}
        text = turn.text
        finish = "STOP"
        for stop in field(gen, "stopSequences") or ():
            if stop and stop in text:
                text = text[: text.index(stop)]
        limit = field(gen, "maxOutputTokens")
        if isinstance(limit, int) and approx_tokens(text) > limit:
            text, finish = text[: max(0, limit * 4)], "MAX_TOKENS"
        output = approx_tokens(text)
        thinking = field(gen, "thinkingConfig") or {}
        budget = field(thinking, "thinkingBudget")
        thoughts = 0
        if thinking and budget != 0:
            thoughts = max(1, min(2 * output, budget if isinstance(budget, int) and budget > 0 else 2 * output))
        usage: dict[str, Any] = {"promptTokenCount": turn.input_tokens, "candidatesTokenCount": output,
                                 "totalTokenCount": turn.input_tokens + output + thoughts,
                                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": turn.input_tokens}]}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        thought_parts = ([{"text": "Considering the request.", "thought": True}]
                         if field(thinking, "includeThoughts") else [])
        call = turn.behavior.tool_call or forced_call(body)
        if call is not None:
            parts: list[list[dict[str, Any]]] = [[
                *thought_parts, {"functionCall": {"name": call["name"], "args": call.get("arguments") or {}}}]]
            usage["candidatesTokenCount"] = approx_tokens(orjson.dumps(call).decode())
            usage["totalTokenCount"] = turn.input_tokens + usage["candidatesTokenCount"] + thoughts
        elif stream:
            pieces = FakeProviderServer.split_chunks(text, turn.behavior.stream_chunks)
            parts = [[{"text": p}] for p in pieces]
            parts[0] = thought_parts + parts[0]
        else:
            parts = [[*thought_parts, {"text": text}]]
        events: list[dict[str, Any]] = []
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            cand: dict[str, Any] = {"content": {"parts": p, "role": "model"}, "index": 0}
            if last:
                cand["finishReason"] = finish
            event: dict[str, Any] = {"candidates": [cand], "modelVersion": turn.model, "responseId": rid}
            if turn.behavior.include_usage:
                event["usageMetadata"] = usage if last else {
                    "promptTokenCount": turn.input_tokens, "totalTokenCount": turn.input_tokens,
                    "promptTokensDetails": usage["promptTokensDetails"]}
            events.append(event)
        if not stream:
            data = orjson.dumps(events[0])
            if fault is not None and fault.kind == "truncated":
                return web.Response(status=200, body=data[: len(data) // 2], content_type="application/json")
            if fault is not None and fault.kind == "stream_cut":
                await FakeProviderServer.abort_stream(web.StreamResponse(), request)
                raise ConnectionResetError("fault: stream_cut")
            return web.Response(status=200, body=data, content_type="application/json")
        cut_after: int | None = None
        if fault is not None and fault.kind == "truncated":
            for e in events:
                e["candidates"][0].pop("finishReason", None)
                e.pop("usageMetadata", None)
        if fault is not None and fault.kind == "stream_cut":
            cut_after = max(1, fault.after_chunks)
            for e in events[cut_after - 1:]:
                e["candidates"][0].pop("finishReason", None)
        return await self._sse(request, events, turn, cut_after=cut_after)

    async def _failed(self, request: web.Request, turn: Turn, rid: str, *, stream: bool) -> web.StreamResponse:
        """A generation that failed: ``finishReason: MALFORMED_FUNCTION_CALL`` on a candidate without content, as
        Gemini ends one (a stream sends the fault's ``after_chunks`` text pieces first)."""
        assert turn.fault is not None
        pieces = FakeProviderServer.split_chunks(turn.text, turn.behavior.stream_chunks)[:turn.fault.after_chunks]
        output = approx_tokens("".join(pieces)) if pieces else 0
        usage = {"promptTokenCount": turn.input_tokens, "candidatesTokenCount": output,
                 "totalTokenCount": turn.input_tokens + output}
        final = {"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0,
                                 "finishMessage": "Malformed function call: print(default_api.lookup(city=Paris)"}],
                 "usageMetadata": usage, "modelVersion": turn.model, "responseId": rid}
        if not stream:
            return web.json_response(final)
        events: list[dict[str, Any]] = [
            {"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
             "modelVersion": turn.model, "responseId": rid} for p in pieces]
        return await self._sse(request, [*events, final], turn, cut_after=None)

    async def _sse(self, request: web.Request, events: list[dict[str, Any]], turn: Turn, *,
                   cut_after: int | None) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream",
                                                       "Cache-Control": "no-cache"})
        await resp.prepare(request)
        fault = turn.fault
        for i, event in enumerate(events):
            if cut_after is not None and i == cut_after:
                if fault is not None and fault.status:
                    err = error_body(fault.status, "An internal error has occurred.")
                    await resp.write(b"data: " + orjson.dumps(err) + b"\r\n\r\n")
                    await resp.write_eof()
                    return resp
                await FakeProviderServer.abort_stream(resp, request)
                return resp
            if i:
                text = "".join(p.get("text", "") for p in event["candidates"][0]["content"]["parts"]) \
                    if event.get("candidates") else ""
                await FakeProviderServer.pace(turn.behavior, fault, text)
            await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        if cut_after is not None and cut_after >= len(events):
            await FakeProviderServer.abort_stream(resp, request)
            return resp
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ embeddings

    def _embed(self, turn: Turn, body: dict[str, Any], *, batch: bool) -> web.StreamResponse:
        if turn.fault is not None:
            answer = fault_response(turn.fault, turn.model, turn.input_tokens)
            if answer is not None:
                return answer
            if turn.fault.kind == "malformed":
                return web.Response(status=200, body=b"not json", content_type="application/json")
        if not batch:
            content = body.get("content")
            if not isinstance(content, dict):
                return error_response(400, "* EmbedContentRequest.content: contents is not specified")
            dims = int(field(body, "outputDimensionality") or DEFAULT_DIMENSIONS)
            return web.json_response({"embedding": {"values": embedding("\n".join(_texts(content.get("parts"))),
                                                                        dims)}})
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return error_response(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        out = []
        for i, r in enumerate(requests):
            if not isinstance(r, dict) or r.get("model") != f"models/{turn.model}":
                return error_response(400, f"* BatchEmbedContentsRequest.requests[{i}].model: model must match "
                                           f"the parent model models/{turn.model}")
            dims = int(field(r, "outputDimensionality") or DEFAULT_DIMENSIONS)
            out.append({"values": embedding("\n".join(_texts((r.get("content") or {}).get("parts"))), dims)})
        return web.json_response({"embeddings": out})
