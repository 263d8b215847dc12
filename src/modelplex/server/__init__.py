"""The HTTP gateway: OpenAI- and Anthropic-compatible serving routes, API keys, the admin API,
health and Prometheus metrics.

Owns: re-exporting ``create_app`` (the app factory) and the pieces a caller may need to extend or
embed the gateway. Importing ``modelplex`` does not import this package; importing this package
imports Starlette and prometheus-client (the ``[server]`` extra).

Must not touch: routing, providers, accounting internals (the gateway uses them through the Router).
"""

from __future__ import annotations

from modelplex.server.app import app_from_env, create_app
from modelplex.server.errors import GatewayError
from modelplex.server.gateway import Gateway
from modelplex.server.keys import (
    ApiKey,
    KeyManager,
    KeyStore,
    MemoryKeyStore,
    PostgresKeyStore,
    SqliteKeyStore,
)

__all__ = [
    "ApiKey",
    "Gateway",
    "GatewayError",
    "KeyManager",
    "KeyStore",
    "MemoryKeyStore",
    "PostgresKeyStore",
    "SqliteKeyStore",
    "app_from_env",
    "create_app",
]
