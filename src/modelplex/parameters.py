"""The value check of the OpenAI-named model parameters, shared by the router and the gateway.

Owns: ``VALUE_CHECKS`` (each parameter's accepted values, with the OpenAI API's own bounds, so that a
request is refused alike whichever provider it is routed to), ``value_problem(name, value)`` and the
library's ``check_params(params)``: an unknown name or a mistyped value is an ``InvalidRequestError``
naming the parameter, raised before anything is planned or sent. A model's own narrower limits (an
output limit, Anthropic's temperature range) stay the catalog's (``catalog.validation``) and the
provider's business; which models take which parameter is ``catalog.params``.

Must not touch: the gateway's request bodies beyond these values (the routes own their fields),
conversion to any wire format (``providers``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelplex.catalog.params import PARAMS
from modelplex.catalog.validation import (
    DEFAULT_TEMPERATURE_RANGE,
    FLOAT_RANGES,
    TOP_LOGPROBS_MAX,
    is_int,
    is_number,
)
from modelplex.errors import InvalidRequestError


def is_positive_int(v: Any) -> bool:
    return is_int(v) and v >= 1


def _in_range(low: float, high: float) -> tuple[Callable[[Any], bool], str]:
    """A number in [low, high] (NaN and infinities are outside every range)."""
    return (lambda v: is_number(v) and low <= v <= high), f"a number between {low:g} and {high:g}"


def _is_stop(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list | tuple) and len(v) <= 16 and all(isinstance(s, str) for s in v))


def _is_tools(v: Any) -> bool:
    """A list of tools; each function tool has a name and, if any, an object of parameters. Other tool
    types (a provider's built-in tools) are left to the adapter and the provider."""
    if not isinstance(v, list | tuple):
        return False
    for t in v:
        if not isinstance(t, Mapping):
            return False
        if t.get("type", "function") != "function":
            continue
        fn = t.get("function")
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            return False
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], Mapping):
            return False
        if not _optional_fields(fn):
            return False
    return True


def _optional_fields(spec: Mapping[str, Any]) -> bool:
    """``description`` (a string) and ``strict`` (a boolean), when set, in a function or a JSON schema
    format: a provider would read ``strict: "no"`` as true."""
    return (spec.get("description") is None or isinstance(spec["description"], str)) and (
        spec.get("strict") is None or isinstance(spec["strict"], bool))


def _is_tool_choice(v: Any) -> bool:
    if isinstance(v, str):
        return v in ("none", "auto", "required")
    if isinstance(v, Mapping):
        fn = v.get("function")
        return v.get("type") == "function" and isinstance(fn, Mapping) and isinstance(fn.get("name"), str)
    return False


def _is_response_format(v: Any) -> bool:
    if not isinstance(v, Mapping):
        return False
    kind = v.get("type")
    if kind in ("text", "json_object"):
        return True
    if kind == "json_schema":
        js = v.get("json_schema")
        return isinstance(js, Mapping) and isinstance(js.get("name"), str) and bool(js["name"]) and (
            js.get("schema") is None or isinstance(js["schema"], Mapping)) and _optional_fields(js)
    return False


LOGIT_BIAS_RANGE = (-100, 100)


def _is_logit_bias(v: Any) -> bool:
    """Token ids (strings of digits, as JSON object keys are) to biases in [-100, 100]."""
    if not isinstance(v, Mapping):
        return False
    low, high = LOGIT_BIAS_RANGE
    return all(isinstance(k, str) and k.isascii() and k.isdigit() and is_number(b) and low <= b <= high
               for k, b in v.items())


METADATA_MAX_KEYS, METADATA_MAX_KEY, METADATA_MAX_VALUE = 16, 64, 512


def _is_metadata(v: Any) -> bool:
    """OpenAI's request metadata: at most 16 string keys (64 characters) with string values (512)."""
    return isinstance(v, Mapping) and len(v) <= METADATA_MAX_KEYS and all(
        isinstance(k, str) and len(k) <= METADATA_MAX_KEY and isinstance(x, str) and len(x) <= METADATA_MAX_VALUE
        for k, x in v.items())


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_object(v: Any) -> bool:
    return isinstance(v, Mapping)


MAX_USER = 512
"""Characters of an end-user id (``user``): it is stored in an indexed column (PostgreSQL refuses an index
row over about 2,700 bytes, which 512 four-byte characters stay under)."""

VALUE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": _in_range(*DEFAULT_TEMPERATURE_RANGE),
    "top_p": _in_range(*FLOAT_RANGES["top_p"]),
    "top_k": (is_positive_int, "a positive integer"),
    "frequency_penalty": _in_range(*FLOAT_RANGES["frequency_penalty"]),
    "presence_penalty": _in_range(*FLOAT_RANGES["presence_penalty"]),
    "seed": (is_int, "an integer"),
    "max_tokens": (is_positive_int, "a positive integer"),
    "n": (lambda v: is_int(v) and v == 1, "1 (one choice per request)"),
    "logprobs": (_is_bool, "a boolean"),
    "top_logprobs": (lambda v: is_int(v) and 0 <= v <= TOP_LOGPROBS_MAX, f"an integer between 0 and {TOP_LOGPROBS_MAX}"),
    "logit_bias": (_is_logit_bias, "an object mapping token ids (strings of digits) to numbers between "
                                   f"{LOGIT_BIAS_RANGE[0]} and {LOGIT_BIAS_RANGE[1]}"),
    "parallel_tool_calls": (_is_bool, "a boolean"),
    "reasoning_effort": (_is_str, "a string"),
    "service_tier": (_is_str, "a string"),
    "metadata": (_is_metadata, f"an object of at most {METADATA_MAX_KEYS} string values (keys up to "
                               f"{METADATA_MAX_KEY} characters, values up to {METADATA_MAX_VALUE})"),
    "stop": (_is_stop, "a string or a list of at most 16 strings"),
    "tools": (_is_tools, "a list of function tools ({type: function, function: {name, parameters?, "
                         "description?: string, strict?: boolean}})"),
    "tool_choice": (_is_tool_choice, "none, auto, required or {type: function, function: {name}}"),
    "response_format": (_is_response_format, "{type: text | json_object | json_schema (with json_schema.name; "
                                             "schema an object, strict a boolean)}"),
    "dimensions": (is_positive_int, "a positive integer"),
    "user": (lambda v: isinstance(v, str) and len(v) <= MAX_USER, f"a string of at most {MAX_USER} characters"),
    "timeout": (lambda v: is_number(v) and v > 0, "a positive number of seconds"),
    "extra_body": (_is_object, "an object (fields merged into the provider's request body)"),
}
"""Every parameter a caller may pass and the values it takes."""

assert set(PARAMS) <= VALUE_CHECKS.keys(), "every parameter in the vocabulary has a value check"


def value_problem(name: str, value: Any) -> str | None:
    """What ``value`` should have been for parameter ``name`` (``None``: it is fine, or the name has no
    check). ``None`` itself is always fine: it means "not set"."""
    check = VALUE_CHECKS.get(name)
    if check is None or value is None or check[0](value):
        return None
    return check[1]


def check_params(params: Mapping[str, Any]) -> None:
    """``InvalidRequestError`` (``param`` set) for the first unknown name or mistyped value in ``params``."""
    for name, value in params.items():
        check = VALUE_CHECKS.get(name)
        if check is None:
            raise InvalidRequestError(f"unknown parameter {name!r}; known parameters: {', '.join(VALUE_CHECKS)}",
                                      name)
        if value is not None and not check[0](value):
            raise InvalidRequestError(f"'{name}' must be {check[1]}, got {shown_value(value)}", name)


def shown_value(value: Any) -> str:
    """A mistyped value as an error shows it: numbers and booleans as they are, anything else by its type
    (a string or an object may be long, or hold what should not be echoed into a log)."""
    if isinstance(value, bool | int | float):
        return repr(value)
    return type(value).__name__
