"""The shared message check: what passes, and the param each malformed shape names."""

from __future__ import annotations

from typing import Any

import pytest

from modelplex.errors import InvalidRequestError
from modelplex.messages import check_messages

OK: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "be brief"}, {"role": "developer", "content": "x"},
     {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]}],
    [{"role": "user", "content": "weather?"},
     {"role": "assistant", "content": None,
      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
     {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
    [{"role": "user", "content": "hi", "name": "ann"}],
    # every image_url form the adapters read: OpenAI's object (any detail) and the bare URL some SDKs send
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": d}}
                                  for d in ("auto", "low", "high", "original")]
      + [{"type": "image_url", "image_url": "data:image/png;base64,AAAA"},
         {"type": "image_url", "image_url": {"url": "u", "detail": None}},
         {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
         {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"}},
         {"type": "file", "file": {"file_id": "file-1"}},
         {"type": "document", "source": {"type": "text"}}]}],  # a provider's own block: the adapter's business
]


@pytest.mark.parametrize("messages", OK)
def test_well_formed_messages_pass_unchanged(messages: list[dict[str, Any]]) -> None:
    assert check_messages(messages) is messages


@pytest.mark.parametrize("messages, param, words", [
    (None, "messages", "got NoneType"),
    ([], "messages", "got an empty list"),
    ("hello", "messages", "for one prompt, pass"),
    (["hello"], "messages[0]", "must be an object, got str"),
    ([{"role": "x", "content": "a"}], "messages[0].role", "got 'x'"),
    ([{"content": "a"}], "messages[0].role", "got None"),
    ([{"role": "user"}], "messages[0].content", "required for role 'user'"),
    ([{"role": "user", "content": 5}], "messages[0].content", "got int"),
    ([{"role": "user", "content": ["text"]}], "messages[0].content[0]", "with a 'type'"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "r"}], "messages[1].tool_call_id", "required"),
    ([{"role": "user", "content": "a", "tool_calls": []}], "messages[0].tool_calls", "assistant message"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]}],
     "messages[0].tool_calls[0]", "needs id"),
    # found by fuzzing the gateway: accepted, then forwarded (or refused later by an adapter, as "upstream")
    ([{"role": "user", "content": [{"type": "image_url", "image_url": 3}]}],
     "messages[0].content[0].image_url", "must be {url: string, detail?: auto | low | high | original}"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
     "messages[0].content[0].image_url", "{url: string"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": ""}]}],
     "messages[0].content[0].image_url", "{url: string"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]}],
     "messages[0].content[0].image_url", "detail?: auto"),
    ([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}],
     "messages[0].content[1].text", "must be a string"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages[0].content[0].text", "a string"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": 1}]}],
     "messages[0].content[0].input_audio", "{data: base64 string"),
    ([{"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf"}}]}],
     "messages[0].content[0].file", "file_data or file_id"),
    ([{"role": "user", "content": [{"type": "file", "file": {"file_id": 7}}]}],
     "messages[0].content[0].file", "file_data or file_id"),
    ([{"role": "user", "content": []}], "messages[0].content", "must not be an empty list"),
    ([{"role": "user", "content": "a", "name": 5}], "messages[0].name", "must be a string, got int"),
    ([{"role": "assistant", "content": None,
       "tool_calls": [{"id": "c", "type": "custom", "function": {"name": "f", "arguments": "{}"}}]}],
     "messages[0].tool_calls[0].type", "must be 'function'"),
    ([{"role": "assistant", "content": None,
       "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}],
     "messages[0].tool_calls[0]", "arguments (strings)"),
])
def test_malformed_messages_name_the_part(messages: Any, param: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as e:
        check_messages(messages)
    assert e.value.param == param and words in str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("value, words", [
    (None, "non-empty list of strings"), ([], "non-empty list of strings"), ("", "must not contain an empty string"),
    (["a", ""], "input[1]"), (["a", 3], "got int at input[1]"), ([[1, 2], [3]], "token-array input"),
    ([1, 2, 3], "token-array input"), ({"text": "a"}, "non-empty list of strings"),
])
def test_embedding_input_refusals_name_the_input(value: Any, words: str) -> None:
    from modelplex.messages import check_embedding_input

    with pytest.raises(InvalidRequestError) as err:
        check_embedding_input(value)
    assert err.value.param == "input" and words in str(err.value)


def test_embedding_input_passes_as_a_list_of_texts() -> None:
    from modelplex.messages import check_embedding_input

    assert check_embedding_input("one") == ["one"]
    assert check_embedding_input(("a", "b")) == ["a", "b"]
