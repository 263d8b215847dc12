"""Provider adapters: one module per wire protocol, registered by protocol name.

Owns: the protocol registry. Built-in protocols register through the same ``register_protocol`` path
a user's custom adapter uses; they are imported lazily so ``import modelplex`` stays light.
OpenAI-compatible vendors (OpenRouter, Groq, DeepSeek, Ollama, vLLM ...) are *data* in
``catalog/data/providers.yaml``, not code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelplex.providers.base import Adapter

_BUILTIN: dict[str, str] = {
    "openai": "modelplex.providers.openai_compat:OpenAIAdapter",
    "azure": "modelplex.providers.azure:AzureOpenAIAdapter",
    "anthropic": "modelplex.providers.anthropic:AnthropicAdapter",
    "gemini": "modelplex.providers.gemini:GeminiAdapter",
    "bedrock": "modelplex.providers.bedrock:BedrockAdapter",
}
_registry: dict[str, type[Adapter]] = {}


def register_protocol(name: str, adapter: type[Adapter]) -> None:
    """Register (or replace) the adapter class for a protocol name."""
    _registry[name] = adapter


def unregister_protocol(name: str) -> None:
    _registry.pop(name, None)


def adapter_class(protocol: str) -> type[Adapter]:
    cls = _registry.get(protocol)
    if cls is not None:
        return cls
    target = _BUILTIN.get(protocol)
    if target is None:
        from modelplex.errors import ConfigError

        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {sorted(set(_BUILTIN) | set(_registry))}")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    register_protocol(protocol, cls)
    return cls


def protocols() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registry))
