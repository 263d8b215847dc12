"""OpenAI's Responses API (``POST /v1/responses``) as the wire of models that have no chat completions.

Owns the pure conversions for catalog models with ``api_requirements.endpoint: responses`` (OpenAI's
``*-pro`` and ``*-codex`` models, some ``*-chat-latest`` ones): ``build_responses_body`` (a chat
request -> a Responses request), ``parse_response`` (a ``response`` object -> ``Response``: ``output_text``
parts -> ``content``, ``refusal`` parts -> ``refusal``) and ``ResponsesStreamDecoder`` (the semantic SSE
events -> ``StreamChunk``s). ``OpenAIAdapter`` picks this wire per model; errors are classified by
``_openai_wire.classify`` (same error objects).

Request mapping (chat-completions names on the left):

* messages -> ``input`` items: ``system``/``developer``/``user``/``assistant`` messages keep their
  role (text parts become ``input_text``, image parts ``input_image``, files ``input_file``; an
  assistant's text becomes ``output_text``); an assistant's ``tool_calls`` become ``function_call``
  items and ``tool`` messages ``function_call_output`` items, linked by ``call_id``;
* ``max_tokens`` -> ``max_output_tokens``; ``tools`` -> flat function tools (``strict`` false unless
  the caller set it, as on chat completions); ``tool_choice`` ``{type: function, name}``;
  ``response_format`` -> ``text.format``; ``reasoning_effort`` -> ``reasoning.effort``;
* ``store`` is false (chat completions store nothing unless asked); ``extra_body`` is merged last.

Parameters the Responses API has no field for (``stop``, ``n``, ``seed``, the penalties,
``logit_bias``, ``logprobs``) are not offered for these models (``catalog.params.RESPONSES_PARAMS``).

Must not touch: I/O (``base.Adapter``), routing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from modelplex.catalog.params import RESPONSES_PARAMS, split_params
from modelplex.providers._openai_wire import CLIENT_ONLY_PARAMS, set_path
from modelplex.providers.base import StreamDecoder, load_json_object
from modelplex.types import Response, StreamChunk, ToolCall, ToolCallDelta, Usage

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.errors import InvalidResponseError, ProviderError
    from modelplex.types import ChatRequest, Message

Classifier = Callable[[dict[str, Any]], "ProviderError"]

_INCOMPLETE_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


# ----------------------------------------------------------------------------------------- requests


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else str(content)


def _input_part(part: Any) -> dict[str, Any]:
    """One chat content part as a Responses input content part."""
    if not isinstance(part, dict):
        return {"type": "input_text", "text": str(part)}
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": str(part.get("text") or "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        out: dict[str, Any] = {"type": "input_image", "image_url": url,
                               "detail": (image.get("detail") if isinstance(image, dict) else None) or "auto"}
        return out
    if kind == "file":
        f = part.get("file") if isinstance(part.get("file"), dict) else {}
        return {"type": "input_file", **{k: v for k, v in f.items() if k in ("file_id", "file_data", "filename")}}
    return dict(part)  # already a Responses part (input_text, input_image, input_file ...)


def _content(role: str, content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return content or ""
    if role == "assistant":
        return [{"type": "output_text", "text": _text_of(content)}]
    return [_input_part(p) for p in content] if isinstance(content, list) else str(content)


def input_items(messages: list[Message]) -> list[dict[str, Any]]:
    """Chat messages as Responses ``input`` items (see the module docstring)."""
    items: list[dict[str, Any]] = []
    for m in messages:
        role = str(m.get("role") or "user")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": str(m.get("tool_call_id") or ""),
                          "output": _text_of(m.get("content"))})
            continue
        content = m.get("content")
        calls = m.get("tool_calls") if role == "assistant" else None
        if content or not calls:
            items.append({"role": role, "content": _content(role, content)})
        for tc in calls or ():
            if not isinstance(tc, dict):
                continue
            fn = tc.get("function") or {}
            args = fn.get("arguments")
            items.append({"type": "function_call", "call_id": str(tc.get("id") or ""),
                          "name": str(fn.get("name") or ""),
                          "arguments": args if isinstance(args, str) else orjson.dumps(args or {}).decode()})
    return items


def _tool(tool: Any) -> Any:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        return tool  # a Responses tool already (web_search, file_search ...), or the caller's own shape
    fn = tool["function"]
    out: dict[str, Any] = {"type": "function", "name": fn.get("name")}
    if fn.get("description") is not None:
        out["description"] = fn["description"]
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = bool(fn.get("strict", False))
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


def _text_format(fmt: Any) -> dict[str, Any] | None:
    """``response_format`` as ``text.format`` (``None``: nothing to send)."""
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        js = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
        out = {"type": "json_schema", "name": js.get("name") or "response",
               "schema": js.get("schema") or {"type": "object"}}
        for key in ("strict", "description"):
            if js.get(key) is not None:
                out[key] = js[key]
        return out
    if kind in ("json_object", "text"):
        return {"type": kind}
    return None


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "tools": lambda tools: [_tool(t) for t in tools or ()], "tool_choice": _tool_choice,
    "response_format": _text_format}
"""Parameters whose value changes shape on this wire; the rest go as they are, under ``RESPONSES_PARAMS``'s name."""


def build_responses_body(protocol: str, req: ChatRequest, spec: ModelSpec, *, model_field: str | None
                         ) -> tuple[dict[str, Any], list[str]]:
    """The Responses body for ``req``, and the names of the parameters dropped as unsupported."""
    body: dict[str, Any] = {}
    if model_field is not None:
        body["model"] = model_field
    body["input"] = input_items(req.messages)
    kept, dropped = split_params(protocol, spec, req.params)
    dropped_names = list(dropped)
    extra = kept.pop("extra_body", None)
    for key, value in kept.items():
        if key in CLIENT_ONLY_PARAMS:
            continue
        name = RESPONSES_PARAMS.get(key)
        if name is None:
            dropped_names.append(key)
            continue
        convert = _CONVERT.get(key)
        if convert is not None and (value := convert(value)) is None:
            continue
        set_path(body, name, value)
    body["store"] = False
    if req.stream:
        body["stream"] = True
    if isinstance(extra, Mapping):
        body.update(extra)
    return body, dropped_names


# ----------------------------------------------------------------------------------------- responses


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(u: Mapping[str, Any]) -> Usage:
    """A Responses ``usage`` object: ``input_tokens`` (cache reads included, as ``Usage`` counts them),
    ``input_tokens_details.cached_tokens``, ``output_tokens`` (reasoning included) and
    ``output_tokens_details.reasoning_tokens``."""
    inp = u.get("input_tokens_details")
    out = u.get("output_tokens_details")
    return Usage(input_tokens=_int(u.get("input_tokens")), output_tokens=_int(u.get("output_tokens")),
                 cache_read_tokens=_int(inp.get("cached_tokens")) if isinstance(inp, dict) else 0,
                 reasoning_tokens=_int(out.get("reasoning_tokens")) if isinstance(out, dict) else 0)


def _finish(data: Mapping[str, Any], has_tool_calls: bool) -> str:
    if data.get("status") == "incomplete":
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE_FINISH.get(str(reason), "length")
    return "tool_calls" if has_tool_calls else "stop"


def parse_response(data: dict[str, Any], *, model_id: str, provider: str,
                   invalid: Callable[[str], InvalidResponseError], classify_error: Classifier) -> Response:
    """A ``response`` object -> ``Response``. A ``failed`` response raises its classified error."""
    if data.get("status") == "failed" or (data.get("error") and not data.get("output")):
        err = data.get("error")
        raise classify_error(err if isinstance(err, dict) else {"message": str(err or "response failed")})
    output = data.get("output")
    if not isinstance(output, list):
        raise invalid("response has no output list")
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif kind == "function_call":
            args = item.get("arguments")
            calls.append(ToolCall(id=str(item.get("call_id") or item.get("id") or ""), name=str(item.get("name") or ""),
                                  arguments=args if isinstance(args, str) else orjson.dumps(args or {}).decode()))
        elif kind == "reasoning":
            for s in item.get("summary") or ():
                if isinstance(s, dict) and isinstance(s.get("text"), str):
                    reasoning.append(s["text"])
    usage_raw = data.get("usage")
    usage = parse_usage(usage_raw) if isinstance(usage_raw, dict) else Usage()
    resp = Response("".join(texts) if texts else None, model_id, provider, usage, _finish(data, bool(calls)), calls)
    rid = data.get("id")
    resp.provider_request_id = rid if isinstance(rid, str) else None
    resp.raw = data
    resp.refusal = "".join(refusals) or None
    if reasoning:
        resp.provider_details["reasoning_summary"] = "\n\n".join(reasoning)
    return resp


# ----------------------------------------------------------------------------------------- streams


class ResponsesStreamDecoder(StreamDecoder):
    """The Responses API's semantic SSE events -> ``StreamChunk``s.

    ``response.output_text.delta`` -> text, ``response.refusal.delta`` -> ``refusal_delta``; a
    ``function_call`` output item opens a tool call (its ``call_id`` and name) and
    ``response.function_call_arguments.delta`` extends it, indexed by call in order of appearance;
    ``response.reasoning_summary_text.delta`` -> ``reasoning_delta``. ``response.completed``/
    ``response.incomplete`` end the stream with the finish reason and usage; ``response.failed`` and
    ``error`` events raise the classified error. ``close`` raises ``InvalidResponseError`` when no terminal
    event came. There is no ``[DONE]`` sentinel."""

    __slots__ = ("_calls", "_classify", "_count", "_done", "_invalid")

    def __init__(self, classify_event: Classifier, invalid: Callable[[str], InvalidResponseError]) -> None:
        self._classify = classify_event
        self._invalid = invalid
        self._done = False
        self._calls: dict[Any, int] = {}
        """Output index (and item id) of each function call -> its tool-call index."""
        self._count = 0

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: bytes) -> list[StreamChunk]:
        if self._done or not data.strip():
            return []
        obj = load_json_object(data, self._invalid, what="stream event")
        kind = obj.get("type") or event
        if kind == "response.output_text.delta":
            delta = obj.get("delta")
            return [StreamChunk(delta=delta)] if isinstance(delta, str) and delta else []
        if kind == "response.refusal.delta":
            delta = obj.get("delta")
            return [StreamChunk(refusal_delta=delta)] if isinstance(delta, str) and delta else []
        if kind == "response.reasoning_summary_text.delta":
            delta = obj.get("delta")
            return [StreamChunk(reasoning_delta=delta)] if isinstance(delta, str) and delta else []
        if kind == "response.output_item.added":
            item = obj.get("item")
            if not isinstance(item, dict) or item.get("type") != "function_call":
                return []
            index = self._count
            self._count += 1
            self._calls[obj.get("output_index", item.get("id"))] = index
            if item.get("id") is not None:
                self._calls.setdefault(item["id"], index)
            args = item.get("arguments")
            return [StreamChunk(tool_calls=[ToolCallDelta(
                index=index, id=str(item.get("call_id") or item.get("id") or "") or None,
                name=str(item.get("name") or "") or None, arguments=args if isinstance(args, str) else "")])]
        if kind == "response.function_call_arguments.delta":
            delta = obj.get("delta")
            index = self._calls.get(obj.get("output_index"), self._calls.get(obj.get("item_id")))
            if index is None or not isinstance(delta, str) or not delta:
                return []
            return [StreamChunk(tool_calls=[ToolCallDelta(index=index, arguments=delta)])]
        if kind in ("response.completed", "response.incomplete"):
            self._done = True
            resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
            usage_raw = resp.get("usage")
            return [StreamChunk(finish_reason=_finish(resp, self._count > 0),
                                usage=parse_usage(usage_raw) if isinstance(usage_raw, dict) else None)]
        if kind == "response.failed":
            self._done = True
            resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
            err = resp.get("error")
            raise self._classify(err if isinstance(err, dict) else {"message": "response failed"})
        if kind == "error":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
            raise self._classify({k: v for k, v in err.items() if k in ("message", "type", "code", "param")})
        return []

    def close(self) -> list[StreamChunk]:
        if not self._done:
            raise self._invalid("stream ended before response.completed")
        return []


__all__ = ["ResponsesStreamDecoder", "build_responses_body", "input_items", "parse_response", "parse_usage"]
