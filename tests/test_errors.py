"""``errors.redact``: secrets and the masked forms providers echo never reach a message; config errors' helpers."""

from __future__ import annotations

import pytest

from modelplex.errors import ConfigError, did_you_mean, invalid_value_message, redact

KEY = "sk-upstream-1234567890"


@pytest.mark.parametrize("text", [
    f"Incorrect API key provided: {KEY}.",
    "Incorrect API key provided: sk-upstr*********7890. You can find your API key at ...",
    "key sk-u...7890 was refused",
    "key sk-ups\u2022\u2022\u2022\u20227890 was refused",
])
def test_a_key_and_its_masked_forms_are_redacted(text: str) -> None:
    out = redact(text, [KEY])
    assert "7890" not in out and "sk-u" not in out and "***" in out


def test_text_that_only_shares_the_last_characters_is_left_alone() -> None:
    assert redact("order 7890 shipped; sk-other***7890", [KEY]) == "order 7890 shipped; sk-other***7890"
    assert redact("short secrets are not masked-matched: abc***wxyz", ["abcdefgwxyz"]) == \
        "short secrets are not masked-matched: abc***wxyz"


@pytest.mark.parametrize("text", [
    "you sent key sk-upstream-12345",  # a truncated echo: the key's first characters
    'auth "Bearer sk-upstream-1234567890" rejected; partial sk-upstream-123',
    "Invalid key sk-upstre (first 9 characters)",
])
def test_the_start_of_a_key_of_eight_characters_or_more_is_redacted(text: str) -> None:
    out = redact(text, [KEY])
    assert "sk-upstr" not in out and "***" in out


def test_words_a_key_shares_with_ordinary_messages_are_kept() -> None:
    """Only leading runs count: llama.cpp's documented placeholder key ends in an ordinary word."""
    assert redact("messages.0.content: Field required", ["sk-no-key-required"]) == \
        "messages.0.content: Field required"
    assert redact("the stream refused the request (1234567 tokens, sk-upst)", [KEY]) == \
        "the stream refused the request (1234567 tokens, sk-upst)"


def test_a_config_error_located_inside_a_file() -> None:
    inner = ConfigError("unknown capability 'visoin'", key="capabilities")
    outer = inner.located(file="c.yaml", prefix="tasks.t.requirements")
    assert (outer.file, outer.key, outer.message) == ("c.yaml", "tasks.t.requirements.capabilities",
                                                      "unknown capability 'visoin'")
    assert str(outer) == "c.yaml: tasks.t.requirements.capabilities: unknown capability 'visoin'"
    assert ConfigError("bad").located(prefix="tasks.t.requirements").key == "tasks.t.requirements"


def test_did_you_mean() -> None:
    assert did_you_mean("routng", ["routing", "server"]) == " (did you mean 'routing'?)"
    assert did_you_mean("zzz", ["routing"]) == ""


@pytest.mark.parametrize("kind, key, value, says", [
    ("int_parsing", "server.port", "x", "bad (got 'x')"),
    ("int_parsing", "server.port", [1], "bad"),
    ("string_type", "providers.openai.timeout", "sk-live-SECRET", "bad"),
    ("model_type", "providers.openai", "sk-live-SECRET", "expected a mapping (got a string)"),
    ("model_type", "routing.retry", 3, "expected a mapping (got 3)"),
    ("string_type", "server.admin_key", 123, "bad"),
    ("string_type", "accounting.dsn", 123, "bad"),
])
def test_invalid_value_message_quotes_only_what_is_safe(kind: str, key: str, value: object, says: str) -> None:
    assert invalid_value_message(kind, "bad", key, value) == says
