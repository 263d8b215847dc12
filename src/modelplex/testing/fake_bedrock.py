"""The fake Amazon Bedrock Runtime: Converse, ConverseStream and InvokeModel embeddings, on loopback.

Owns: the Bedrock routes of ``FakeProviderServer`` (``add_routes(app, server)``), an AWS event-stream
frame encoder (``encode_frame``: prelude with total and headers lengths, prelude CRC32, typed headers,
payload, message CRC32), the rendering of Converse bodies and streams, Titan/Cohere embedding bodies,
faults in Bedrock's format (``x-amzn-ErrorType`` header + ``{"message": ...}`` body; mid-stream
``:message-type: exception`` frames), and ``verify_sigv4`` for tests that check a signature in full.

Behaviour a client can rely on:

* ``Authorization`` must look like SigV4 for service ``bedrock``
  (``AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/bedrock/aws4_request, SignedHeaders=...,
  Signature=<64 hex>`` with ``host`` and ``x-amz-date`` signed), or be a Bedrock API key
  (``Bearer ...``). Otherwise 403 ``MissingAuthenticationTokenException`` / ``IncompleteSignatureException``.
* A conversation with ``toolUse``/``toolResult`` blocks and no ``toolConfig`` tools is a 400
  ``ValidationException``, as Converse answers it.
* ``inferenceConfig.maxTokens`` truncates (``stopReason: max_tokens``), ``stopSequences`` cut
  (``stop_sequence``); a forced ``toolChoice.tool`` is answered with that tool, whose input is the reply
  parsed as a JSON object (or ``{"text": reply}``); ``toolChoice.any`` with the first tool, its input valid
  for the tool's schema.
* Faults: ``rate_limit`` 429 ``ThrottlingException``; ``quota`` 400 ``ServiceQuotaExceededException``;
  ``context_window`` 400 ``ValidationException`` (Bedrock has no structured code for it);
  ``content_policy`` a 200 with ``stopReason: guardrail_intervened``; ``auth`` 403
  ``UnrecognizedClientException``; ``permission`` 403 ``AccessDeniedException``; ``not_found`` 404
  ``ResourceNotFoundException``; ``overloaded`` 503 ``ServiceUnavailableException`` (429
  ``ModelNotReadyException`` when the fault's status is 429); ``server_error`` 500
  ``InternalServerException`` (424 ``ModelErrorException``); ``malformed`` a non-JSON body, or frames with
  a bad CRC on a stream; ``truncated`` a stream with no ``messageStop``/``metadata``; ``stream_cut`` drops
  the connection after ``after_chunks`` deltas — or, when the fault has a ``status``, sends the matching
  exception frame (``throttlingException``, ``internalServerException`` ...) instead; ``failed_generation``
  ends with ``stopReason: malformed_model_output`` after ``after_chunks`` text pieces.

Must not touch: fault selection and transport faults (``server.FakeProviderServer.begin`` does those).
"""

from __future__ import annotations

import binascii
import hashlib
import math
import random
import re
import struct
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from modelplex.testing.fake_openai import dummy_from_schema
from modelplex.testing.server import FakeProviderServer, approx_tokens

if TYPE_CHECKING:
    from modelplex.testing.faults import Fault
    from modelplex.testing.server import Turn

PROTOCOL = "bedrock"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
TITAN_DIMENSIONS = 1024
COHERE_DIMENSIONS = 1024
GUARDRAIL_MESSAGE = "Sorry, the model cannot answer this question."

_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/bedrock/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")

STATUS_TYPES: dict[int, str] = {400: "ValidationException", 403: "AccessDeniedException",
                                404: "ResourceNotFoundException", 408: "ModelTimeoutException",
                                424: "ModelErrorException", 429: "ThrottlingException",
                                500: "InternalServerException", 503: "ServiceUnavailableException"}
STREAM_EXCEPTIONS: dict[int, str] = {400: "validationException", 424: "modelStreamErrorException",
                                     429: "throttlingException", 500: "internalServerException",
                                     503: "serviceUnavailableException"}
"""The exception members ConverseStream may send mid-stream, by HTTP status."""


def add_routes(app: web.Application, server: FakeProviderServer) -> None:
    routes = _BedrockRoutes(server)
    app.router.add_post(r"/model/{model_id:.+}/converse", routes.converse)
    app.router.add_post(r"/model/{model_id:.+}/converse-stream", routes.converse_stream)
    app.router.add_post(r"/model/{model_id:.+}/invoke", routes.invoke)


# ============================================================================ event-stream encoding


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + b"\x07" + struct.pack("!H", len(raw_value)) + raw_value


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: ``[total len][headers len][prelude CRC][headers][payload][message CRC]``,
    big-endian, CRC32 over the prelude and then over everything before the final CRC; headers are
    string-typed (type 7)."""
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def event_frame(event_type: str, body: Mapping[str, Any]) -> bytes:
    return encode_frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                        orjson.dumps(body))


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, orjson.dumps({"message": message}))


# ============================================================================ errors


def error_response(status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
                   ) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{error_type}:{ERROR_NAMESPACE}",
                                 "x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})})


def fault_response(fault: Fault) -> web.Response | None:
    """The HTTP answer for an error fault, or ``None`` when the fault is not an error status."""
    kind = fault.kind
    retry = FakeProviderServer.retry_headers(fault)
    if kind == "rate_limit":
        return error_response(429, "ThrottlingException", "Too many requests, please wait before trying again.",
                              retry)
    if kind == "quota":
        return error_response(400, "ServiceQuotaExceededException",
                              "Your request exceeded the service quota for tokens per day.", retry)
    if kind == "context_window":
        return error_response(400, "ValidationException", "Input is too long for requested model.")
    if kind == "auth":
        return error_response(403, "UnrecognizedClientException", "The security token included in the request is "
                                                                 "invalid.")
    if kind == "permission":
        return error_response(403, "AccessDeniedException", "You don't have access to the model with the specified "
                                                           "model ID.")
    if kind == "not_found":
        return error_response(404, "ResourceNotFoundException", "Could not resolve the foundation model from the "
                                                               "provided model identifier.")
    if kind == "bad_request":
        return error_response(400, "ValidationException", "Malformed input request, please reformat your input "
                                                         "and try again.")
    if kind == "overloaded":
        if fault.status == 429:
            return error_response(429, "ModelNotReadyException", "Model is not ready for inference.", retry)
        return error_response(fault.status or 503, "ServiceUnavailableException",
                              "Bedrock is unable to process your request.", retry)
    if kind == "server_error":
        status = fault.status or 500
        if status == 424:
            return error_response(424, "ModelErrorException", "The model returned an error.")
        return error_response(status, STATUS_TYPES.get(status, "InternalServerException"),
                              "The server encountered an internal error.", retry)
    if kind == "status":
        status = fault.status or 500
        return error_response(status, STATUS_TYPES.get(status, "InternalServerException"), f"fake status {status}",
                              retry)
    return None


def check_auth(request: web.Request) -> web.Response | None:
    """403 unless the request carries a well-formed SigV4 header for ``bedrock`` or a Bearer API key."""
    auth = request.headers.get("Authorization", "")
    if not auth:
        return error_response(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if auth.startswith("Bearer ") and len(auth) > len("Bearer "):
        return None
    m = _SIGV4.match(auth)
    amz_date = request.headers.get("X-Amz-Date", "")
    if m is None or not amz_date.startswith(m["date"]):
        return error_response(403, "IncompleteSignatureException",
                              "Authorization header requires a SigV4 'Credential', 'SignedHeaders' and 'Signature' "
                              "for service bedrock, and a matching X-Amz-Date.")
    signed = set(m["signed"].split(";"))
    if not {"host", "x-amz-date"} <= signed:
        return error_response(403, "IncompleteSignatureException", "SignedHeaders must include host and x-amz-date.")
    return None


def verify_sigv4(method: str, url: str, headers: Mapping[str, str], body: bytes, *, secret_key: str,
                 session_token: str | None = None) -> bool:
    """Recompute the SigV4 signature of a received request, as AWS does, and compare.

    ``url`` must be the URL as sent (its raw, still percent-encoded path). Only the headers named in
    ``SignedHeaders`` are used. Needs botocore (a test-time dependency).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    lower = {k.lower(): v for k, v in headers.items()}
    m = _SIGV4.match(lower.get("authorization", ""))
    if m is None:
        return False
    signed = m["signed"].split(";")
    kept = {name: lower[name] for name in signed if name in lower and name != "host"}
    request = AWSRequest(method=method, url=url, data=body, headers=kept)
    request.context["timestamp"] = lower.get("x-amz-date", "")
    auth = SigV4Auth(Credentials(m["key"], secret_key, session_token), "bedrock", m["region"])
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return bool(expected == m["signature"])


# ============================================================================ bodies


def _texts(blocks: Any) -> list[str]:
    out: list[str] = []
    for b in blocks or ():
        if not isinstance(b, dict):
            continue
        if isinstance(b.get("text"), str):
            out.append(b["text"])
        elif isinstance(b.get("toolResult"), dict):
            for c in b["toolResult"].get("content") or ():
                if isinstance(c, dict):
                    out.append(c["text"] if isinstance(c.get("text"), str) else orjson.dumps(c.get("json")).decode())
        elif isinstance(b.get("toolUse"), dict):
            out.append(orjson.dumps(b["toolUse"].get("input")).decode())
    return out


def as_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request as OpenAI-shaped messages (text flattened), for ``Behavior.reply`` callables."""
    msgs: list[dict[str, Any]] = []
    if body.get("system"):
        msgs.append({"role": "system", "content": "\n".join(_texts(body["system"]))})
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            msgs.append({"role": m.get("role", "user"), "content": "\n".join(_texts(m.get("content")))})
    return msgs


def _has_tool_blocks(body: dict[str, Any]) -> bool:
    return any(isinstance(b, dict) and ("toolUse" in b or "toolResult" in b)
               for m in body.get("messages") or () if isinstance(m, dict) for b in m.get("content") or ())


def embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _padding(n: int) -> str:
    """Bedrock pads events with a ``p`` field so payload sizes leak nothing; clients ignore it."""
    return "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[: max(1, n % 40)]


# ============================================================================ routes


class _BedrockRoutes:
    def __init__(self, server: FakeProviderServer) -> None:
        self.server = server

    async def _begin(self, request: web.Request) -> tuple[Turn, Any, web.Response | None]:
        model = request.match_info["model_id"]
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and "messages" in parsed:
            prompt = "\n".join(m["content"] for m in as_messages(parsed))
        elif isinstance(parsed, dict):
            prompt = "\n".join([str(parsed.get("inputText") or ""), *map(str, parsed.get("texts") or ())])
        else:
            prompt = ""
        messages = as_messages(parsed) if isinstance(parsed, dict) and "messages" in parsed else []
        turn = await self.server.begin(request, PROTOCOL, model, raw, parsed, prompt, messages=messages)
        denied = check_auth(request)
        if denied is not None:
            return turn, parsed, denied
        if not isinstance(parsed, dict):
            return turn, parsed, error_response(400, "ValidationException", "Malformed input request: body is not "
                                                                            "a JSON object.")
        if _has_tool_blocks(parsed) and not (parsed.get("toolConfig") or {}).get("tools"):
            return turn, parsed, error_response(400, "ValidationException", "The toolConfig field must be defined "
                                                                            "when using toolUse and toolResult "
                                                                            "content blocks.")
        if turn.fault is not None:
            answer = fault_response(turn.fault)
            if answer is not None:
                return turn, parsed, answer
        return turn, parsed, None

    # ------------------------------------------------------------------ converse

    def _answer(self, turn: Turn, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
        """(content blocks, stopReason, usage) for a healthy answer."""
        inference = body.get("inferenceConfig") or {}
        text = turn.text
        fault = turn.fault
        if fault is not None and fault.kind == "content_policy":
            text = GUARDRAIL_MESSAGE
            usage = {"inputTokens": turn.input_tokens, "outputTokens": 0, "totalTokens": turn.input_tokens}
            return [{"text": text}], "guardrail_intervened", usage
        if fault is not None and fault.kind == "failed_generation":  # the first after_chunks pieces, then the end
            pieces = FakeProviderServer.split_chunks(text, turn.behavior.stream_chunks)[:fault.after_chunks]
            output = approx_tokens("".join(pieces)) if pieces else 0
            usage = {"inputTokens": turn.input_tokens, "outputTokens": output,
                     "totalTokens": turn.input_tokens + output}
            return [{"text": p} for p in pieces], "malformed_model_output", usage
        stop = "end_turn"
        for seq in inference.get("stopSequences") or ():
            if seq and seq in text:
                text, stop = text[: text.index(seq)], "stop_sequence"
        limit = inference.get("maxTokens")
        if isinstance(limit, int) and approx_tokens(text) > limit:
            text, stop = text[: max(0, limit * 4)], "max_tokens"
        tool_choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        choice = tool_choice.get("tool")
        call = turn.behavior.tool_call
        if call is None and "any" in tool_choice:  # a call is forced: the first tool, with schema-valid input
            specs = [t.get("toolSpec") for t in (body.get("toolConfig") or {}).get("tools") or ()
                     if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)]
            if specs:
                schema = (specs[0].get("inputSchema") or {}).get("json") or {"type": "object"}
                call = {"name": specs[0].get("name"), "arguments": dummy_from_schema(schema) or {}}
        blocks: list[dict[str, Any]]
        if call is not None:
            blocks = [{"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": call["name"],
                                   "input": call.get("arguments") or {}}}]
            stop = "tool_use"
            output = approx_tokens(orjson.dumps(call).decode())
        elif isinstance(choice, dict) and choice.get("name"):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                value = None
            blocks = [{"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": choice["name"],
                                   "input": value if isinstance(value, dict) else {"text": text}}}]
            stop = "tool_use"
            output = approx_tokens(text)
        else:
            blocks = [{"text": text}]
            output = approx_tokens(text)
        usage = {"inputTokens": turn.input_tokens, "outputTokens": output, "totalTokens": turn.input_tokens + output}
        return blocks, stop, usage

    async def converse(self, request: web.Request) -> web.StreamResponse:
        turn, body, answer = await self._begin(request)
        if answer is not None:
            return answer
        fault = turn.fault
        if fault is not None and fault.kind == "malformed":
            return web.Response(status=200, body=b"<html>bad gateway</html>", content_type="application/json")
        blocks, stop, usage = self._answer(turn, body)
        data: dict[str, Any] = {"output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop,
                                "metrics": {"latencyMs": 123}}
        if turn.behavior.include_usage:
            data["usage"] = usage
        payload = orjson.dumps(data)
        if fault is not None and fault.kind == "truncated":
            payload = payload[: len(payload) // 2]
        if fault is not None and fault.kind == "stream_cut":
            await FakeProviderServer.abort_stream(web.StreamResponse(), request)
            raise ConnectionResetError("fault: stream_cut")
        return web.Response(status=200, body=payload, content_type="application/json",
                            headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        turn, body, answer = await self._begin(request)
        if answer is not None:
            return answer
        fault = turn.fault
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/vnd.amazon.eventstream",
                                                       "x-amzn-RequestId": str(uuid.uuid4())})
        await resp.prepare(request)
        if fault is not None and fault.kind == "malformed":
            frame = bytearray(event_frame("messageStart", {"role": "assistant"}))
            frame[-1] ^= 0xFF  # break the message CRC
            await resp.write(bytes(frame))
            await resp.write_eof()
            return resp
        blocks, stop, usage = self._answer(turn, body)
        frames: list[tuple[bytes, str]] = [(event_frame("messageStart", {"role": "assistant", "p": _padding(3)}), "")]
        deltas = 0
        for index, block in enumerate(blocks):
            if "toolUse" in block:
                tool = block["toolUse"]
                frames.append((event_frame("contentBlockStart", {
                    "start": {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}},
                    "contentBlockIndex": index, "p": _padding(index)}), ""))
                args = orjson.dumps(tool["input"]).decode()
                for piece in FakeProviderServer.split_chunks(args, turn.behavior.stream_chunks):
                    frames.append((event_frame("contentBlockDelta", {"delta": {"toolUse": {"input": piece}},
                                                                     "contentBlockIndex": index}), piece))
                    deltas += 1
            else:
                for piece in FakeProviderServer.split_chunks(block["text"], turn.behavior.stream_chunks):
                    frames.append((event_frame("contentBlockDelta", {"delta": {"text": piece},
                                                                     "contentBlockIndex": index,
                                                                     "p": _padding(len(piece))}), piece))
                    deltas += 1
            frames.append((event_frame("contentBlockStop", {"contentBlockIndex": index}), ""))
        terminal = [(event_frame("messageStop", {"stopReason": stop, "p": _padding(7)}), "")]
        if turn.behavior.include_usage:
            terminal.append((event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 321},
                                                      "p": _padding(11)}), ""))
        cut_at: int | None = None
        if fault is not None and fault.kind == "stream_cut":
            seen = 0
            for i, (_, piece) in enumerate(frames):
                if piece:
                    seen += 1
                    if seen == max(1, fault.after_chunks):
                        cut_at = i + 1
                        break
            cut_at = cut_at if cut_at is not None else len(frames)
        elif fault is None or fault.kind != "truncated":
            frames.extend(terminal)
        for i, (frame, piece) in enumerate(frames):
            if cut_at is not None and i == cut_at:
                break
            if piece:
                await FakeProviderServer.pace(turn.behavior, fault, piece)
            await resp.write(frame)
        if cut_at is not None:
            if fault is not None and fault.status:
                member = STREAM_EXCEPTIONS.get(fault.status, "internalServerException")
                await resp.write(exception_frame(member, "The stream failed on the server side."))
                await resp.write_eof()
                return resp
            await FakeProviderServer.abort_stream(resp, request)
            return resp
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ invoke (embeddings)

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        turn, body, answer = await self._begin(request)
        if answer is not None:
            return answer
        if turn.fault is not None and turn.fault.kind == "malformed":
            return web.Response(status=200, body=b"not json", content_type="application/json")
        rid = {"x-amzn-RequestId": str(uuid.uuid4())}
        if isinstance(body.get("inputText"), str):
            dims = int(body.get("dimensions") or TITAN_DIMENSIONS)
            if dims not in (256, 512, 1024):
                return error_response(400, "ValidationException", "Malformed input request: dimensions must be "
                                                                  "one of 256, 512, 1024.")
            vec = embedding(body["inputText"], dims)
            return web.json_response({"embedding": vec, "embeddingsByType": {"float": vec},
                                      "inputTextTokenCount": approx_tokens(body["inputText"])}, headers=rid)
        texts = body.get("texts")
        if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
            if len(texts) > 96:
                return error_response(400, "ValidationException", "Malformed input request: texts may hold at "
                                                                  "most 96 items.")
            if not body.get("input_type"):
                return error_response(400, "ValidationException", "Malformed input request: #: required key "
                                                                  "[input_type] not found")
            dims = int(body.get("output_dimension") or COHERE_DIMENSIONS)
            return web.json_response({"embeddings": [embedding(t, dims) for t in texts], "id": str(uuid.uuid4()),
                                      "response_type": "embeddings_floats", "texts": texts}, headers=rid)
        return error_response(400, "ValidationException", "Malformed input request: this fake serves Titan "
                                                          "(inputText) and Cohere (texts) embedding bodies only.")
