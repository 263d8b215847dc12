"""Usage sinks: where usage records are stored — memory, SQLite or PostgreSQL, one interface.

Owns: re-exporting the sinks and ``make_sink(cfg)``, which builds the one ``accounting.sink``
names. The SQL sinks are imported on demand; the PostgreSQL one imports asyncpg only when it starts.

Must not touch: queueing and journaling (``accounting.recorder``, ``accounting.journal``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from modelplex.accounting.sinks.base import FeedbackEntry, UsageSink
from modelplex.accounting.sinks.memory import MemorySink, NullSink
from modelplex.errors import ConfigError

if TYPE_CHECKING:
    from modelplex.config import AccountingConfig

DEFAULT_DB = "modelplex.db"
DB_ENV = "MODELPLEX_DB"


def sqlite_path(cfg: AccountingConfig, env: Mapping[str, str] | None = None) -> str:
    """``accounting.path``, else ``$MODELPLEX_DB``, else ``./modelplex.db``."""
    env = os.environ if env is None else env
    return cfg.path or env.get(DB_ENV) or DEFAULT_DB


def make_sink(cfg: AccountingConfig, *, env: Mapping[str, str] | None = None, schema: str | None = None
              ) -> UsageSink:
    """The sink ``cfg.sink`` names (not started: ``await sink.start()``). ``schema`` applies to PostgreSQL."""
    if cfg.sink == "memory":
        return MemorySink()
    if cfg.sink == "none":
        return NullSink()
    if cfg.sink == "sqlite":
        from modelplex.accounting.sinks.sqlite import SQLiteSink

        return SQLiteSink(sqlite_path(cfg, env))
    if cfg.sink == "postgres":
        if not cfg.dsn:
            raise ConfigError("accounting.sink is postgres but accounting.dsn is not set", key="accounting.dsn")
        from modelplex.accounting.sinks.postgres import PostgresSink

        return PostgresSink(cfg.dsn, schema=schema)
    raise ConfigError(f"unknown sink {cfg.sink!r}", key="accounting.sink")


__all__ = ["DB_ENV", "DEFAULT_DB", "FeedbackEntry", "MemorySink", "NullSink", "UsageSink", "make_sink",
           "sqlite_path"]
