"""The fake OpenAI Responses API: requests read and answers rendered as ``POST /v1/responses`` does.

Owns the pure pieces ``fake_openai`` serves ``/v1/responses`` (and Azure's ``/openai/v1/responses``)
with: ``chat_view`` (a Responses request as the chat-shaped body the fake's reply logic reads, through
``modelplex.responses_input``: ``input`` items -> messages, flat function tools -> chat tools,
``text.format`` -> ``response_format``; plus ``max_output_tokens`` and ``reasoning.effort``), ``responses_usage``, ``response_object`` (a ``response``
with ``reasoning``, ``message`` and ``function_call`` output items) and ``stream_events`` (the
semantic SSE events: ``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` (``response.refusal.delta`` for a
refusal) ..., ``response.function_call_arguments.delta`` ..., ``response.output_item.done``, then ``response.completed`` or ``response.incomplete``; each with
a ``sequence_number``; no ``[DONE]``).

Must not touch: routes, faults, the reply logic itself (``fake_openai``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from modelplex.errors import InvalidRequestError
from modelplex.responses_input import chat_response_format, chat_tool_choice, chat_tools, input_messages

Split = Callable[[str], list[str]]


def chat_view(body: dict[str, Any]) -> dict[str, Any] | str:
    """The chat-completions-shaped body for a Responses request, or why the request is malformed (read
    by ``modelplex.responses_input``, as the gateway reads it; built-in tools are left out, not refused)."""
    try:
        view: dict[str, Any] = {"model": body.get("model"),
                                "messages": input_messages(body.get("input"), body.get("instructions"))}
        tools = chat_tools([t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"])
        if tools:
            view["tools"] = tools
        if body.get("tool_choice") is not None:
            view["tool_choice"] = chat_tool_choice(body["tool_choice"])
        fmt = chat_response_format(body["text"]) if body.get("text") is not None else None
    except InvalidRequestError as exc:
        return str(exc)
    if fmt is not None:
        view["response_format"] = fmt
    if body.get("max_output_tokens") is not None:
        view["max_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        view["reasoning_effort"] = reasoning["effort"]
    return view


def responses_usage(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if chat_usage is None:
        return None
    return {"input_tokens": chat_usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": chat_usage["prompt_tokens_details"]["cached_tokens"]},
            "output_tokens": chat_usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": chat_usage["completion_tokens_details"]["reasoning_tokens"]},
            "total_tokens": chat_usage["total_tokens"]}


def _item_id(prefix: str, rid: str, n: int) -> str:
    return f"{prefix}_{hashlib.sha256(f'{rid}:{n}'.encode()).hexdigest()[:48]}"


def output_items(rid: str, content: str | None, tool_calls: list[dict[str, Any]], reasoning_tokens: int, *,
                 refusal: str | None = None) -> list[dict[str, Any]]:
    """The ``output`` items: a reasoning item (when the model reasoned), then the function calls, or else one
    message whose content is an ``output_text`` part or, for a refusal, a ``refusal`` part."""
    items: list[dict[str, Any]] = []
    if reasoning_tokens:
        items.append({"id": _item_id("rs", rid, 0), "type": "reasoning", "summary": []})
    for i, tc in enumerate(tool_calls):
        fn = tc["function"]
        items.append({"id": _item_id("fc", rid, i + 1), "type": "function_call", "status": "completed",
                      "arguments": fn["arguments"], "call_id": tc["id"], "name": fn["name"]})
    if not tool_calls:
        part = ({"type": "refusal", "refusal": refusal} if refusal is not None else
                {"type": "output_text", "annotations": [], "logprobs": [], "text": content or ""})
        items.append({"id": _item_id("msg", rid, 0), "type": "message", "status": "completed", "role": "assistant",
                      "content": [part]})
    return items


def response_object(body: dict[str, Any], *, rid: str, model: str, created: int, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    """A ``response`` object as the API returns it (``status`` ``completed``, ``incomplete`` or ``in_progress``)."""
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None, "model": model, "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": None, "service_tier": "default", "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_logprobs": 0, "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "usage": usage, "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def stream_events(final: dict[str, Any], split: Split) -> Iterator[tuple[str, bytes]]:
    """(text for pacing, SSE event) pairs that stream ``final`` (a finished ``response_object``)."""
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        obj = {"type": kind, "sequence_number": next(seq), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"

    opening = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    yield "", event("response.created", response=opening)
    yield "", event("response.in_progress", response=opening)
    for index, item in enumerate(final["output"]):
        kind = item["type"]
        if kind == "message":
            yield "", event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "content": []})
            for content_index, done in enumerate(item["content"]):
                at = {"item_id": item["id"], "output_index": index, "content_index": content_index}
                if done["type"] == "refusal":
                    field, prefix, extra = "refusal", "response.refusal", {}
                else:
                    field, prefix, extra = "text", "response.output_text", {"logprobs": []}
                yield "", event("response.content_part.added", **at, part={**done, field: ""})
                for piece in split(done[field]):
                    yield piece, event(f"{prefix}.delta", **at, delta=piece, **extra)
                yield "", event(f"{prefix}.done", **at, **{field: done[field]}, **extra)
                yield "", event("response.content_part.done", **at, part=done)
        elif kind == "function_call":
            yield "", event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "arguments": ""})
            for piece in split(item["arguments"]):
                yield piece, event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                                   delta=piece)
            yield "", event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            arguments=item["arguments"])
        else:
            yield "", event("response.output_item.added", output_index=index, item=item)
        yield "", event("response.output_item.done", output_index=index, item=item)
    terminal = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield "", event(terminal, response=final)


__all__ = ["chat_view", "output_items", "response_object", "responses_usage", "stream_events"]
