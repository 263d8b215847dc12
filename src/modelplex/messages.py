"""The shape check of OpenAI-style chat messages, shared by the router and the gateway.

Owns: ``check_messages(messages)``: a non-empty list of message objects with a known role, string or
part-list content (each OpenAI part type with its field well-formed: ``PART_CHECKS``), a string
``name``, ``tool_call_id`` on tool messages and well-formed ``tool_calls`` on assistant messages. The
common case (one user message with string content) returns before any of that. It checks just enough for a clear, typed error before anything is sent
(``InvalidRequestError`` with ``param`` in the OpenAI API's notation, ``messages[2].role``); what a
provider accepts beyond that (which part types, which roles in which order) stays the adapters' and
the providers' business.

``check_embedding_input(value)`` does the same for an embeddings request's ``input``: a string or a
non-empty list of strings, none of them empty (the OpenAI API refuses an empty input too).

Must not touch: conversion to any wire format (``providers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelplex.errors import InvalidRequestError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})


def _is_image_url(v: Any) -> bool:
    """OpenAI's ``{"url", "detail"?}``, or a bare URL string (some SDKs send one; every adapter reads both)."""
    if isinstance(v, str):
        return bool(v)
    return (isinstance(v, dict) and isinstance(v.get("url"), str) and bool(v["url"])
            and (v.get("detail") is None or v["detail"] in IMAGE_DETAILS))


def _is_input_audio(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("data"), str) and bool(v["data"]) \
        and isinstance(v.get("format"), str) and bool(v["format"])


def _is_file(v: Any) -> bool:
    return isinstance(v, dict) and (isinstance(v.get("file_data"), str) or isinstance(v.get("file_id"), str)) \
        and all(v.get(k) is None or isinstance(v[k], str) for k in ("file_data", "file_id", "filename"))


PART_CHECKS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "text": ("text", lambda v: isinstance(v, str), "a string"),
    "image_url": ("image_url", _is_image_url, "{url: string, detail?: auto | low | high | original} (or the URL as a string)"),
    "input_audio": ("input_audio", _is_input_audio, "{data: base64 string, format: string such as wav or mp3}"),
    "file": ("file", _is_file, "{file_data or file_id: string, filename?: string}"),
}
"""The OpenAI content part types: the field each carries, its check and what it should have been. Other
types (a provider's own blocks) are the adapters' business."""


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """``messages`` itself when its shape is right; otherwise ``InvalidRequestError`` naming the part."""
    if not isinstance(messages, list) or not messages:
        hint = (" (for one prompt, pass [{'role': 'user', 'content': ...}])"
                if isinstance(messages, str) else "")
        got = "an empty list" if isinstance(messages, list) else type(messages).__name__
        raise InvalidRequestError(f"'messages' must be a non-empty list of message objects, got {got}{hint}",
                                  "messages")
    for i, m in enumerate(messages):
        if type(m) is dict and m.get("role") == "user" and type(m.get("content")) is str and len(m) == 2:
            continue  # the common case: nothing more to check
        _check_message(i, m)
    return messages


def _check_message(i: int, m: Any) -> None:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise InvalidRequestError(f"{where} must be an object, got {type(m).__name__}", where)
    role = m.get("role")
    if role not in ROLES:
        raise InvalidRequestError(f"{where}.role must be one of {', '.join(sorted(ROLES))}, got {role!r}",
                                  f"{where}.role")
    content = m.get("content")
    if content is None:
        if role != "assistant":
            raise InvalidRequestError(f"{where}.content is required for role {role!r}", f"{where}.content")
    elif isinstance(content, list):
        if not content:
            raise InvalidRequestError(f"{where}.content must not be an empty list", f"{where}.content")
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidRequestError(f"{where}.content[{j}] must be an object with a 'type'",
                                          f"{where}.content[{j}]")
            check = PART_CHECKS.get(part["type"])
            if check is not None and not check[1](part.get(check[0])):
                raise InvalidRequestError(f"{where}.content[{j}].{check[0]} must be {check[2]}",
                                          f"{where}.content[{j}].{check[0]}")
    elif not isinstance(content, str):
        raise InvalidRequestError(f"{where}.content must be a string, a list of parts or null, got "
                                  f"{type(content).__name__}", f"{where}.content")
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequestError(f"{where}.name must be a string, got {type(name).__name__}", f"{where}.name")
    if role == "tool" and not isinstance(m.get("tool_call_id"), str):
        raise InvalidRequestError(f"{where}.tool_call_id is required for role 'tool'", f"{where}.tool_call_id")
    calls = m.get("tool_calls")
    if calls is not None:
        if role != "assistant" or not isinstance(calls, list):
            raise InvalidRequestError(f"{where}.tool_calls must be a list on an assistant message",
                                      f"{where}.tool_calls")
        for j, tc in enumerate(calls):
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) \
                    or not isinstance(fn.get("arguments", ""), str) or not isinstance(tc.get("id"), str):
                raise InvalidRequestError(f"{where}.tool_calls[{j}] needs id and function.name/arguments (strings)",
                                          f"{where}.tool_calls[{j}]")
            if tc.get("type", "function") != "function":
                raise InvalidRequestError(f"{where}.tool_calls[{j}].type must be 'function'",
                                          f"{where}.tool_calls[{j}].type")


__all__ = ["PART_CHECKS", "ROLES", "check_embedding_input", "check_messages"]


def check_embedding_input(value: Any) -> list[str]:
    """The texts of an embeddings ``input``; ``InvalidRequestError`` (``param`` ``input``) for anything else."""
    texts = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else None
    if not texts:
        raise InvalidRequestError("'input' must be a string or a non-empty list of strings", "input")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            if all(isinstance(v, int | list) and not isinstance(v, bool) for v in texts):
                raise InvalidRequestError("token-array input is not supported; send text", "input")
            raise InvalidRequestError(f"'input' must be a string or a list of strings, got {type(text).__name__} "
                                      f"at input[{i}]", "input")
        if not text:
            raise InvalidRequestError("'input' must not contain an empty string" + (f" (input[{i}])" if
                                      not isinstance(value, str) else ""), "input")
    return list(texts)
