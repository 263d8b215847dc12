"""``structured.parse``: a reply checked against the caller's pydantic model, with a readable error."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from modelplex.errors import StructuredOutputError
from modelplex.structured import parse


class Weather(BaseModel):
    city: str
    temperature_c: float


def test_fenced_json_is_parsed() -> None:
    assert parse(Weather, '```json\n{"city": "Oslo", "temperature_c": -3}\n```') == Weather(city="Oslo",
                                                                                           temperature_c=-3)


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "answer does not validate: 1 error(s): Invalid JSON: expected ident at line 1 column 2"),
    ('{"city": "Oslo", "temperature_c": "cold"}',
     "answer does not validate: 1 error(s): Input should be a valid number, unable to parse string as a number "
     "at temperature_c"),
])
def test_an_invalid_answer_says_what_and_where(text: str, message: str) -> None:
    with pytest.raises(StructuredOutputError) as info:
        parse(Weather, text)
    assert str(info.value) == message and info.value.raw == text
