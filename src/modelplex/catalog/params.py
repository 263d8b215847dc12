"""Parameter vocabulary and each protocol's names for it (data, not code).

Owns: the OpenAI-named parameter set callers use, and per protocol the provider's name for each
(``None``: the protocol has no such parameter). A model can override a name through
``ModelSpec.param_mappings`` (e.g. OpenAI reasoning models take ``max_completion_tokens``) and
narrow the set through ``ModelSpec.supported_params``.

Names are the providers' canonical field names; where a protocol nests them (Gemini's
``generationConfig``, Bedrock's ``inferenceConfig``) the adapter places them, and the table's
``PLACEMENT`` says where, for the docs and ``catalog.param_mapping``.

Must not touch: wire bodies (adapters build those), I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec

PARAMS: tuple[str, ...] = (
    "temperature", "top_p", "top_k", "max_tokens", "stop", "n", "seed", "frequency_penalty",
    "presence_penalty", "logprobs", "top_logprobs", "logit_bias", "user", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "reasoning_effort", "service_tier", "metadata",
    "timeout", "dimensions",
)
"""Every parameter a caller may pass, by its OpenAI name (``top_k`` from Anthropic/Gemini)."""

EMBEDDING_ONLY: frozenset[str] = frozenset({"dimensions"})
"""Parameters only embedding models take (``mode: embedding``); no chat model supports them."""

RESPONSES_PARAMS: dict[str, str] = {
    "temperature": "temperature", "top_p": "top_p", "max_tokens": "max_output_tokens", "tools": "tools",
    "tool_choice": "tool_choice", "parallel_tool_calls": "parallel_tool_calls", "response_format": "text.format",
    "reasoning_effort": "reasoning.effort", "user": "user", "metadata": "metadata", "service_tier": "service_tier",
    "timeout": "timeout",
}
"""What a model served only by OpenAI's Responses API (``api_requirements.endpoint: responses``) takes, and
the Responses field for it; it has no ``stop``, ``n``, ``seed``, penalties, ``logit_bias`` or ``logprobs``."""


def responses_only(spec: ModelSpec | None) -> bool:
    """Whether ``spec`` is served by OpenAI's Responses API instead of chat completions."""
    return spec is not None and spec.api_requirements.get("endpoint") == "responses"

_OPENAI: dict[str, str | None] = {p: p for p in PARAMS} | {"top_k": None, "metadata": None}
"""OpenAI's chat completions. ``metadata`` is not sent: OpenAI takes it only with ``store: true`` (a 400
otherwise), which modelplex never sends; a model whose server takes it anyway can map it (``param_mappings``).
The Responses API takes it (``RESPONSES_PARAMS``)."""

PROTOCOL_PARAMS: dict[str, dict[str, str | None]] = {
    "openai": _OPENAI,
    "azure": dict(_OPENAI),
    "anthropic": {
        "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "max_tokens": "max_tokens",
        "stop": "stop_sequences", "n": None, "seed": None, "frequency_penalty": None,
        "presence_penalty": None, "logprobs": None, "top_logprobs": None, "logit_bias": None,
        "user": "metadata.user_id", "tools": "tools", "tool_choice": "tool_choice",
        "parallel_tool_calls": "tool_choice.disable_parallel_tool_use", "response_format": "output_format",
        "reasoning_effort": "thinking", "service_tier": "service_tier", "metadata": "metadata",
        "timeout": "timeout", "dimensions": None,
    },
    "gemini": {
        "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "max_tokens": "max_output_tokens",
        "stop": "stop_sequences", "n": "candidate_count", "seed": "seed",
        "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
        "logprobs": "response_logprobs", "top_logprobs": "logprobs", "logit_bias": None, "user": None,
        "tools": "function_declarations", "tool_choice": "function_calling_config",
        "parallel_tool_calls": None, "response_format": "response_mime_type",
        "reasoning_effort": "thinking_config", "service_tier": None, "metadata": "labels", "timeout": "timeout",
        "dimensions": "output_dimensionality",
    },
    "bedrock": {
        "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "max_tokens": "max_tokens",
        "stop": "stop_sequences", "n": None, "seed": None, "frequency_penalty": None,
        "presence_penalty": None, "logprobs": None, "top_logprobs": None, "logit_bias": None, "user": None,
        "tools": "tool_config.tools", "tool_choice": "tool_config.tool_choice",
        "parallel_tool_calls": None, "response_format": "output_config", "reasoning_effort": "reasoning_config",
        "service_tier": "service_tier", "metadata": "request_metadata", "timeout": "timeout",
        "dimensions": "dimensions",
    },
}

PLACEMENT: dict[str, str] = {
    "gemini": "generationConfig (camelCase on the wire: maxOutputTokens, stopSequences, topP ...)",
    "bedrock": "inferenceConfig (camelCase on the wire: maxTokens, stopSequences, topP); top_k via "
               "additionalModelRequestFields",
    "anthropic": "top-level fields of the Messages body",
    "openai": "top-level fields of the chat-completions body",
    "azure": "top-level fields of the chat-completions body",
}


def param_name(protocol: str, spec: ModelSpec | None, param: str) -> str | None:
    """The provider's name for ``param`` on this model, or ``None`` when unsupported."""
    if spec is not None:
        if spec.supported_params is not None and param not in spec.supported_params:
            return None
        if param in EMBEDDING_ONLY and spec.mode != "embedding":
            return None
        if param in spec.param_mappings:
            return spec.param_mappings[param]
        if responses_only(spec) and protocol in ("openai", "azure"):
            return RESPONSES_PARAMS.get(param)
    return PROTOCOL_PARAMS.get(protocol, _OPENAI).get(param)


_SUPPORTED_MEMO: dict[tuple[str, int], tuple[ModelSpec | None, frozenset[str]]] = {}


def supported(protocol: str, spec: ModelSpec | None) -> frozenset[str]:
    """The OpenAI-named parameters ``spec`` takes over ``protocol``. Memoized per (protocol, spec object):
    specs are immutable, and the memo holds the spec so that its id cannot be reused while cached."""
    memo_key = (protocol, id(spec))
    hit = _SUPPORTED_MEMO.get(memo_key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    result = _supported(protocol, spec)
    if len(_SUPPORTED_MEMO) >= 8192:
        _SUPPORTED_MEMO.clear()
    _SUPPORTED_MEMO[memo_key] = (spec, result)
    return result


def _supported(protocol: str, spec: ModelSpec | None) -> frozenset[str]:
    table: Mapping[str, str | None] = PROTOCOL_PARAMS.get(protocol, _OPENAI)
    if responses_only(spec) and protocol in ("openai", "azure"):
        table = RESPONSES_PARAMS
    names = {p for p, v in table.items() if v is not None}
    if spec is not None:
        names |= set(spec.param_mappings)
        if spec.supported_params is not None:
            names &= set(spec.supported_params)
        if spec.mode != "embedding":
            names -= EMBEDDING_ONLY
    return frozenset(names)


def unsupported(protocol: str, spec: ModelSpec | None, params: Iterable[str]) -> list[str]:
    """Parameters among ``params`` the model cannot take (unknown names included)."""
    ok = supported(protocol, spec)
    return [p for p in params if p not in ok]


def split_params(protocol: str, spec: ModelSpec | None, params: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(supported, dropped) by OpenAI name, with the model's ``default_params`` filled in."""
    ok = supported(protocol, spec)
    kept: dict[str, Any] = dict(spec.default_params) if spec is not None else {}
    dropped: dict[str, Any] = {}
    for k, v in params.items():
        if v is None:
            continue
        if k in ok or k == "extra_body":
            kept[k] = v
        else:
            dropped[k] = v
    return kept, dropped
