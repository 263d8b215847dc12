"""``modelplex.responses_input``: Responses API request shapes read into chat-completions terms."""

from __future__ import annotations

import pytest

from modelplex.errors import InvalidRequestError
from modelplex.responses_input import chat_response_format, chat_tool_choice, chat_tools, input_messages


def test_items_become_chat_messages_with_calls_joined_to_their_assistant_turn() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Look: "},
                                     {"type": "input_image", "image_url": "https://x.test/a.png"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "ok"}]},
    ]
    assert input_messages(items, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look: "},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png",
                                                                         "detail": "auto"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]


@pytest.mark.parametrize(("items", "param"), [
    ([], "input"),
    ([{"role": "robot", "content": "hi"}], "input[0]"),
    ([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}], "input[0].content[0].image_url"),
    ([{"type": "item_reference", "id": "x"}], "input[0].type"),
])
def test_malformed_input_names_the_part(items: list, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        input_messages(items, None)
    assert err.value.param == param


def test_tools_tool_choice_and_text_format() -> None:
    assert chat_tools([{"type": "function", "name": "f", "strict": True}]) == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}},
                                          "strict": True}}]
    with pytest.raises(InvalidRequestError):
        chat_tools([{"type": "web_search"}])
    assert chat_tool_choice({"type": "function", "name": "f"}) == {"type": "function", "function": {"name": "f"}}
    assert chat_response_format({"format": {"type": "text"}}) is None
    assert chat_response_format({"format": {"type": "json_schema", "name": "n", "schema": {}}}) == {
        "type": "json_schema", "json_schema": {"name": "n", "schema": {}}}
