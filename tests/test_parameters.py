"""The shared parameter value check: what passes, what is refused, and what the error says."""

from __future__ import annotations

from typing import Any

import pytest

from modelplex.catalog.params import PARAMS
from modelplex.errors import InvalidRequestError
from modelplex.parameters import VALUE_CHECKS, check_params, value_problem

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("params", [
    {},
    {"temperature": 0, "top_p": 1.0, "max_tokens": 1, "n": 1, "seed": -3, "stop": "x"},
    {"stop": ["a", "b"], "tools": [TOOL, {"type": "web_search"}], "tool_choice": "required"},
    {"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}},
    {"response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 20},
    {"metadata": {"a": "b"}, "logit_bias": {"1": 2}, "reasoning_effort": "high", "service_tier": "auto"},
    {"dimensions": 256, "user": "u", "timeout": 0.5, "extra_body": {"x": 1}, "temperature": None},
    {"logit_bias": {"50256": -100, "0": 100, "12": 0.5}, "metadata": {f"k{i}": "v" * 512 for i in range(16)}},
    {"logit_bias": {}, "metadata": {}},
    {"tools": [{"type": "function", "function": {"name": "f", "description": "d", "strict": True}}],
     "response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": None, "description": "d"}}},
])
def test_well_formed_parameters_pass(params: dict[str, Any]) -> None:
    check_params(params)


@pytest.mark.parametrize("params, param, words", [
    ({"temperature": "hot"}, "temperature", "between 0 and 2, got str"),
    ({"temperature": 2.5}, "temperature", "got 2.5"),
    ({"temperature": float("inf")}, "temperature", "got inf"),
    ({"top_p": True}, "top_p", "got True"),
    ({"max_tokens": 0}, "max_tokens", "positive integer, got 0"),
    ({"max_tokens": 10.0}, "max_tokens", "got 10.0"),
    ({"n": 3}, "n", "one choice per request"),
    ({"stop": ["a"] * 17}, "stop", "at most 16"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools", "function tools"),
    ({"tools": ["f"]}, "tools", "got list"),
    ({"tool_choice": "any"}, "tool_choice", "none, auto, required"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema.name"),
    ({"top_logprobs": 21}, "top_logprobs", "between 0 and 20"),
    ({"dimensions": 0}, "dimensions", "positive integer"),
    ({"extra_body": "x"}, "extra_body", "an object"),
    ({"temprature": 0.1}, "temprature", "unknown parameter 'temprature'"),
    # found by fuzzing the gateway: accepted and forwarded
    ({"logit_bias": {"x": "y"}}, "logit_bias", "token ids (strings of digits) to numbers between -100 and 100"),
    ({"logit_bias": {"1": 200}}, "logit_bias", "between -100 and 100, got dict"),
    ({"logit_bias": {"1": True}}, "logit_bias", "token ids"),
    ({"logit_bias": {"-1": 5}}, "logit_bias", "token ids"),
    ({"logit_bias": {"1": float("nan")}}, "logit_bias", "token ids"),
    ({"logit_bias": [1, 2]}, "logit_bias", "got list"),
    ({"metadata": {"a": {"b": 1}}}, "metadata", "string values"),
    ({"metadata": {"a": 1}}, "metadata", "string values"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "keys up to 64"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": "no"}}]}, "tools", "strict?: boolean"),
    ({"tools": [{"type": "function", "function": {"name": "f", "description": 3}}]}, "tools", "description?"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": "yes"}}},
     "response_format", "strict a boolean"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": ""}}}, "response_format", "json_schema.name"),
    ({"stop": [1, 2]}, "stop", "list of at most 16 strings"),
    ({"seed": 1.5}, "seed", "an integer, got 1.5"),
])
def test_refused_parameters_name_the_parameter(params: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        check_params(params)
    assert err.value.param == param
    assert words in str(err.value)


def test_a_string_value_is_described_by_its_type_not_echoed() -> None:
    with pytest.raises(InvalidRequestError) as err:
        check_params({"metadata": "sk-secret-value"})
    assert "sk-secret" not in str(err.value) and "got str" in str(err.value)


def test_every_vocabulary_parameter_has_a_check_and_none_means_unset() -> None:
    assert set(PARAMS) <= set(VALUE_CHECKS)
    assert all(value_problem(name, None) is None for name in VALUE_CHECKS)
    assert value_problem("no_such_name", object()) is None
