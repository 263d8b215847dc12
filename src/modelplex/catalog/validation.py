"""Parameter validation against one model's catalog facts.

Owns: ``ParameterIssue`` and ``validate_parameters(spec, protocol, params, input_tokens)``: which
OpenAI-named parameters the model cannot take, which values are out of range, whether
``max_tokens`` and the prompt fit the model's limits, and whether the model is deprecated;
``deprecation_text`` (the one wording of a deprecation, shared with ``Catalog.migrate``).

Must not touch: model lookup (``catalog.store`` resolves the spec and protocol first), I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelplex.catalog.params import PARAMS
from modelplex.catalog.params import supported as supported_params
from modelplex.catalog.schema import ModelSpec

IssueCode = Literal["unsupported", "exceeds_output_limit", "exceeds_context", "invalid_value", "deprecated_model"]

PASSTHROUGH_PARAMS = frozenset({"extra_body", "extra_headers", "stream", "stream_options"})
"""Request options that are not model parameters and never produce an issue."""

MAX_TOKENS_NAMES = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""Names callers use for the output budget; all are checked as ``max_tokens``."""

TEMPERATURE_RANGES: dict[str, tuple[float, float]] = {"anthropic": (0.0, 1.0), "bedrock": (0.0, 1.0)}
DEFAULT_TEMPERATURE_RANGE = (0.0, 2.0)
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}
INT_MINIMUMS: dict[str, int] = {"n": 1, "top_k": 1, "top_logprobs": 0}
TOP_LOGPROBS_MAX = 20

PARAM_CAPABILITY: dict[str, str] = {
    "tools": "tool_calling",
    "tool_choice": "tool_calling",
    "parallel_tool_calls": "tool_calling",
    "reasoning_effort": "reasoning",
}
"""Parameter -> the capability a model needs for the parameter to mean anything."""


@dataclass(frozen=True, slots=True)
class ParameterIssue:
    """One problem with a parameter for a model. ``param`` is the caller's name for it (``model``
    for ``deprecated_model``, ``input_tokens`` when the prompt alone is too long)."""

    param: str
    code: IssueCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"param": self.param, "code": self.code, "message": self.message}


def _fmt(n: int) -> str:
    return f"{n:,}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def deprecation_text(spec: ModelSpec) -> str:
    dep = spec.deprecation
    text = f"{spec.id} is deprecated"
    if dep.date is not None:
        text += f" (retirement date {dep.date.isoformat()})"
    if dep.replacement:
        text += f"; use {dep.replacement}"
    if dep.note:
        text += f". {dep.note}"
    return text


def validate_parameters(spec: ModelSpec, protocol: str, params: Mapping[str, Any], *,
                        input_tokens: int | None = None) -> list[ParameterIssue]:
    """Every problem with ``params`` (OpenAI names; ``None`` values are ignored) for ``spec`` on
    ``protocol``; empty when all is well."""
    ok = supported_params(protocol, spec)
    issues: list[ParameterIssue] = []
    if spec.deprecation.deprecated:
        issues.append(ParameterIssue("model", "deprecated_model", deprecation_text(spec)))
    for name, value in params.items():
        if value is None or name in PASSTHROUGH_PARAMS:
            continue
        canonical = "max_tokens" if name in MAX_TOKENS_NAMES else name
        if canonical not in ok:
            if canonical in PARAMS or canonical in spec.param_mappings:
                why = f"{name} is not supported by {spec.id} ({protocol} protocol)"
            else:
                why = f"unknown parameter {name!r}; known parameters: {', '.join(PARAMS)}"
            issues.append(ParameterIssue(name, "unsupported", why))
            continue
        issue = _check_value(spec, protocol, name, canonical, value)
        if issue is not None:
            issues.append(issue)
    issues.extend(_check_context(spec, params, input_tokens))
    return issues


def _check_value(spec: ModelSpec, protocol: str, name: str, canonical: str, value: Any) -> ParameterIssue | None:
    needed = PARAM_CAPABILITY.get(canonical)
    if needed is not None and needed not in spec.capabilities:
        return ParameterIssue(name, "unsupported", f"{name} needs {needed}, which {spec.id} lacks")
    if canonical == "max_tokens":
        if not is_int(value) or value < 1:
            return ParameterIssue(name, "invalid_value", f"{name} must be a positive integer, got {value!r}")
        if value > spec.max_output_tokens:
            return ParameterIssue(name, "exceeds_output_limit",
                                  f"{name} {value} exceeds the model's output limit of {_fmt(spec.max_output_tokens)}")
        return None
    if canonical == "dimensions":
        if not is_int(value) or value < 1:
            return ParameterIssue(name, "invalid_value", f"{name} must be a positive integer, got {value!r}")
        if spec.embedding_dimensions is not None and value > spec.embedding_dimensions:
            return ParameterIssue(name, "invalid_value", f"{name} {value} exceeds the model's "
                                                         f"{_fmt(spec.embedding_dimensions)} dimensions")
        return None
    if canonical == "temperature":
        low, high = _temperature_range(spec, protocol)
        return _check_range(name, value, low, high)
    if canonical in FLOAT_RANGES:
        low, high = FLOAT_RANGES[canonical]
        return _check_range(name, value, low, high)
    if canonical in INT_MINIMUMS:
        minimum = INT_MINIMUMS[canonical]
        if not is_int(value) or value < minimum:
            return ParameterIssue(name, "invalid_value", f"{name} must be an integer >= {minimum}, got {value!r}")
        if canonical == "top_logprobs" and value > TOP_LOGPROBS_MAX:
            return ParameterIssue(name, "invalid_value", f"{name} must be at most {TOP_LOGPROBS_MAX}, got {value!r}")
        return None
    if canonical == "seed" and not is_int(value):
        return ParameterIssue(name, "invalid_value", f"seed must be an integer, got {value!r}")
    if canonical == "logprobs" and not isinstance(value, bool):
        return ParameterIssue(name, "invalid_value", f"logprobs must be true or false, got {value!r}")
    if canonical == "stop" and not (isinstance(value, str) or (
            isinstance(value, list | tuple) and all(isinstance(s, str) for s in value))):
        return ParameterIssue(name, "invalid_value", f"stop must be a string or a list of strings, got {value!r}")
    if canonical == "response_format" and isinstance(value, Mapping):
        return _check_response_format(spec, name, value)
    return None


def _temperature_range(spec: ModelSpec, protocol: str) -> tuple[float, float]:
    raw = spec.api_requirements.get("temperature_range")
    if isinstance(raw, list | tuple) and len(raw) == 2 and all(is_number(x) for x in raw):
        return float(raw[0]), float(raw[1])
    return TEMPERATURE_RANGES.get(protocol, DEFAULT_TEMPERATURE_RANGE)


def _check_range(name: str, value: Any, low: float, high: float) -> ParameterIssue | None:
    if not is_number(value) or not (low <= value <= high):
        return ParameterIssue(name, "invalid_value", f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return None


def _check_response_format(spec: ModelSpec, name: str, value: Mapping[str, Any]) -> ParameterIssue | None:
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        return ParameterIssue(name, "invalid_value",
                              f"response_format type must be text, json_object or json_schema, got {kind!r}")
    if kind == "json_schema" and "structured_output" not in spec.capabilities:
        return ParameterIssue(name, "unsupported", f"{spec.id} has no structured_output (json_schema)")
    if kind == "json_object" and not ({"json_mode", "structured_output"} & spec.capabilities):
        return ParameterIssue(name, "unsupported", f"{spec.id} has no json_mode")
    return None


def _check_context(spec: ModelSpec, params: Mapping[str, Any], input_tokens: int | None) -> list[ParameterIssue]:
    if input_tokens is None:
        return []
    if input_tokens > spec.input_limit:
        return [ParameterIssue("input_tokens", "exceeds_context",
                               f"input of {_fmt(input_tokens)} tokens exceeds the model's input limit of "
                               f"{_fmt(spec.input_limit)}")]
    max_tokens = next((params[k] for k in MAX_TOKENS_NAMES if params.get(k) is not None), None)
    if is_int(max_tokens) and max_tokens > 0 and input_tokens + max_tokens > spec.context_window:
        return [ParameterIssue("max_tokens", "exceeds_context",
                               f"input of {_fmt(input_tokens)} tokens plus max_tokens {max_tokens} exceeds the "
                               f"context window of {_fmt(spec.context_window)}")]
    return []
