"""modelplex: a model registry and router for LLM applications.

Applications name a task or requirements; modelplex picks the model from its catalog, calls the
provider, retries, falls back, trips breakers, records usage and cost, and enforces budgets.

Importing this package is light: names are resolved lazily on first use, so no HTTP client,
server, database driver or botocore is imported until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    # types
    "Message": "modelplex.types",
    "ChatRequest": "modelplex.types",
    "EmbedRequest": "modelplex.types",
    "Usage": "modelplex.types",
    "ToolCall": "modelplex.types",
    "Response": "modelplex.types",
    "StreamChunk": "modelplex.types",
    "EmbeddingResponse": "modelplex.types",
    "Attempt": "modelplex.types",
    "Requirements": "modelplex.types",
    # catalog
    "Catalog": "modelplex.catalog",
    "ModelSpec": "modelplex.catalog",
    "ProviderSpec": "modelplex.catalog",
    "load_catalog": "modelplex.catalog",
    # selection
    "select": "modelplex.selection",
    "Selector": "modelplex.selection",
    "Candidate": "modelplex.selection",
    "Selection": "modelplex.selection",
    # routing
    "Router": "modelplex.router",
    # errors
    "errors": "modelplex",
}

__all__ = [*sorted(_LAZY), "__version__"]

if TYPE_CHECKING:  # re-exported lazily through __getattr__
    from modelplex.catalog import Catalog, ModelSpec, ProviderSpec, load_catalog  # noqa: F401
    from modelplex.router import Router  # noqa: F401
    from modelplex.selection import Candidate, Selection, Selector, select  # noqa: F401
    from modelplex.types import (  # noqa: F401
        Attempt,
        ChatRequest,
        EmbeddingResponse,
        EmbedRequest,
        Message,
        Requirements,
        Response,
        StreamChunk,
        ToolCall,
        Usage,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelplex' has no attribute {name!r}")
    if name == "errors":
        return importlib.import_module("modelplex.errors")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
