"""Runtime settings chosen through the admin API, persisted so replicas share them and restarts keep them.

Owns: ``RuntimeSettings`` (today: the routing strategy set by ``PUT /api/v1/models/settings``, or
``None`` for "back to the configured default") and ``SettingsStore``, which writes it to

* the state backend when that is shared (Redis), so every replica picks it up within one refresh
  interval, and
* the gateway's database table ``gateway_settings`` (SQLite or PostgreSQL), so it survives restarts,

and reads back whichever copy is newer.

Must not touch: strategy validation and the router (``server.admin`` validates and applies),
state-backend internals.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from modelplex.server.db import PostgresDB, SqliteDB
from modelplex.state.base import StateBackend, StateUnavailableError

log = logging.getLogger("modelplex.server")

STATE_KEY = "settings:runtime"
SCHEMA_VERSION = 1
_TABLE_SQL = ("CREATE TABLE IF NOT EXISTS gateway_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
              "updated_at DOUBLE PRECISION NOT NULL)")
_ROW = "runtime"


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    strategy: str | None = None
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "updated_at": self.updated_at}

    @classmethod
    def from_value(cls, value: Any) -> RuntimeSettings | None:
        if not isinstance(value, dict):
            return None
        strategy = value.get("strategy")
        updated = value.get("updated_at")
        if (strategy is not None and not isinstance(strategy, str)) or not isinstance(updated, (int, float)):
            return None
        return cls(strategy, float(updated))


class SettingsStore:
    """Persists ``RuntimeSettings`` to the shared state backend and the database."""

    def __init__(self, state: StateBackend | None, db: SqliteDB | PostgresDB | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.db = db
        self._clock = clock

    @property
    def shared(self) -> bool:
        return self.state is not None and bool(self.state.shared)

    async def start(self) -> None:
        if self.db is not None:
            await self.db.ensure("settings", SCHEMA_VERSION, [_TABLE_SQL])

    async def load(self) -> RuntimeSettings | None:
        """The newest stored settings, or ``None`` when nothing was ever saved."""
        found: list[RuntimeSettings] = []
        if self.shared:
            assert self.state is not None
            try:
                got = RuntimeSettings.from_value(await self.state.get(STATE_KEY))
            except StateUnavailableError:
                got = None
            if got is not None:
                found.append(got)
        got_db = await self._db_read()
        if got_db is not None:
            found.append(got_db)
        return max(found, key=lambda s: s.updated_at) if found else None

    async def save(self, strategy: str | None) -> RuntimeSettings:
        settings = RuntimeSettings(strategy, self._clock())
        if self.shared:
            assert self.state is not None
            try:
                await self.state.set(STATE_KEY, settings.to_dict())
            except StateUnavailableError:
                log.warning("runtime settings saved to the database only: the shared state backend is unreachable")
        await self._db_write(settings)
        log.info("runtime strategy set to %s", strategy or "(configured default)")
        return settings

    async def health(self) -> dict[str, Any]:
        return {"shared_state": self.shared, "database": self.db is not None}

    # ------------------------------------------------------------------ database

    async def _db_read(self) -> RuntimeSettings | None:
        if isinstance(self.db, SqliteDB):
            row = await self.db.run(lambda c: c.execute("SELECT value FROM gateway_settings WHERE name = ?",
                                                        (_ROW,)).fetchone())
            value = row[0] if row is not None else None
        elif isinstance(self.db, PostgresDB):
            pool = await self.db.pool()
            value = await pool.fetchval("SELECT value FROM gateway_settings WHERE name = $1", _ROW)
        else:
            return None
        if value is None:
            return None
        try:
            return RuntimeSettings.from_value(orjson.loads(value))
        except orjson.JSONDecodeError:
            return None

    async def _db_write(self, settings: RuntimeSettings) -> None:
        value = orjson.dumps(settings.to_dict()).decode()
        if isinstance(self.db, SqliteDB):
            def write(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO gateway_settings (name, value, updated_at) VALUES (?, ?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                             "updated_at = excluded.updated_at", (_ROW, value, settings.updated_at))

            await self.db.run(write)
        elif isinstance(self.db, PostgresDB):
            pool = await self.db.pool()
            await pool.execute("INSERT INTO gateway_settings (name, value, updated_at) VALUES ($1, $2, $3) "
                               "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, "
                               "updated_at = EXCLUDED.updated_at", _ROW, value, settings.updated_at)


__all__ = ["STATE_KEY", "RuntimeSettings", "SettingsStore"]
