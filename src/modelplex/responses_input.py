"""The OpenAI Responses API's request shapes, read into chat-completions terms.

Owns: ``input_messages`` (``input`` items and ``instructions`` -> chat messages: message items keep their
role, with text, image and file parts; ``function_call`` items join the assistant turn before them as
``tool_calls``; ``function_call_output`` items become ``tool`` messages; reasoning items are dropped),
``chat_tools``, ``chat_tool_choice`` and ``chat_response_format``. Malformed input raises
``InvalidRequestError`` naming the part (``input[2].content``). Shared by the gateway's ``/v1/responses``
and the fake provider's, so both read a request the same way; the opposite direction (a chat request
as a Responses request) is ``providers._responses_wire``.

Must not touch: I/O, routing, parameter values (the gateway checks those as for chat completions).
"""

from __future__ import annotations

from typing import Any

from modelplex.errors import InvalidRequestError

_ROLES = frozenset({"user", "assistant", "system", "developer"})


def _part(part: Any, where: str) -> dict[str, Any]:
    """One Responses input content part as a chat content part."""
    if not isinstance(part, dict):
        raise InvalidRequestError(f"{where} must be an object", param=where)
    kind = part.get("type")
    if kind == "refusal" and isinstance(part.get("refusal"), str):  # an earlier answer, sent back
        return {"type": "text", "text": part["refusal"]}
    if kind in ("input_text", "output_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError(f"{where}.text must be a string", param=f"{where}.text")
        return {"type": "text", "text": text}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequestError(f"{where}.image_url must be a URL or a data: URL (file_id images are not "
                                  "supported: modelplex stores no files)", param=f"{where}.image_url")
        return {"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}}
    if kind == "input_file":
        if not isinstance(part.get("file_data"), str):
            raise InvalidRequestError(f"{where} needs file_data (file_id is not supported: modelplex stores no "
                                  "files)", param=where)
        return {"type": "file", "file": {k: part[k] for k in ("file_data", "filename") if k in part}}
    raise InvalidRequestError(f"{where}.type {kind!r} is not supported; expected input_text, input_image or "
                          "input_file", param=f"{where}.type")


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = [_part(p, f"{where}[{i}]") for i, p in enumerate(content)]
        if all(p["type"] == "text" for p in parts):
            return "".join(p["text"] for p in parts)
        return parts
    raise InvalidRequestError(f"{where} must be a string or a non-empty list of content parts", param=where)


def input_messages(value: Any, instructions: Any) -> list[dict[str, Any]]:
    """``input`` (a string or a list of items) and ``instructions`` as chat messages."""
    messages: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequestError("'instructions' must be a string", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
        return messages
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("'input' must be a string or a non-empty list of items", param="input")
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where} must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise InvalidRequestError(f"{where}.role must be user, assistant, system or developer", param=where)
            messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments")
            if not (isinstance(call_id, str) and call_id and isinstance(name, str) and name and isinstance(args, str)):
                raise InvalidRequestError(f"{where} needs call_id, name and arguments (strings)", param=where)
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and (last.get("tool_calls") or
                                                                      isinstance(last.get("content"), str)):
                last.setdefault("tool_calls", []).append(call)  # one assistant turn: its text, then its calls
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequestError(f"{where}.call_id must be a non-empty string", param=f"{where}.call_id")
            if isinstance(output, list):
                output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
            if not isinstance(output, str):
                raise InvalidRequestError(f"{where}.output must be a string", param=f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # a previous answer's reasoning, echoed back: no other provider can read it
        else:
            raise InvalidRequestError(f"{where}.type {kind!r} is not supported; expected message, function_call, "
                                  "function_call_output or reasoning", param=f"{where}.type")
    return messages


def chat_tools(value: Any) -> list[dict[str, Any]]:
    """Responses function tools (flat: ``{type, name, parameters}``) as chat-completions tools."""
    if not isinstance(value, list):
        raise InvalidRequestError("'tools' must be a list", param="tools")
    out = []
    for i, t in enumerate(value):
        if not isinstance(t, dict) or t.get("type") != "function":
            kind = t.get("type") if isinstance(t, dict) else None
            raise InvalidRequestError(f"tools[{i}]: only function tools are supported (got {kind!r}); built-in tools "
                                  "need OpenAI's own servers", param=f"tools[{i}]")
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"tools[{i}].name must be a non-empty string", param=f"tools[{i}].name")
        fn: dict[str, Any] = {"name": name, "parameters": t.get("parameters") or {"type": "object", "properties": {}}}
        if t.get("description") is not None:
            fn["description"] = t["description"]
        if t.get("strict") is not None:
            fn["strict"] = bool(t["strict"])
        out.append({"type": "function", "function": fn})
    return out


def chat_tool_choice(value: Any) -> Any:
    """A Responses ``tool_choice`` (``{type: function, name}`` for one tool) in chat-completions form."""
    if value in ("none", "auto", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    raise InvalidRequestError("'tool_choice' must be none, auto, required or {type: function, name}", param="tool_choice")


def chat_response_format(text: Any) -> dict[str, Any] | None:
    """A Responses ``text`` object as ``response_format`` (``None``: plain text)."""
    if not isinstance(text, dict):
        raise InvalidRequestError("'text' must be an object", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt.get("name"), str) and isinstance(fmt.get("schema"), dict):
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError("'text.format' must be {type: text}, {type: json_object} or {type: json_schema, name, "
                          "schema}", param="text.format")


__all__ = ["chat_response_format", "chat_tool_choice", "chat_tools", "input_messages"]
