"""The gateway's own database tables: connections and schema versions, SQLite and PostgreSQL.

Owns: ``SqliteDB`` (one stdlib connection used from worker threads under a lock, WAL, a busy
timeout) and ``PostgresDB`` (an asyncpg pool, imported lazily), each with ``ensure(component,
version, statements)``: run ``CREATE TABLE IF NOT EXISTS`` statements and record the component's
schema version in ``gateway_schema``; a database with a *newer* version than this code knows is
refused with a clear error rather than written to.

The gateway's tables (``gateway_schema``, ``gateway_api_keys``, ``gateway_settings``) live in the
same database as usage records by default but are created here, not by the accounting migrations.

Must not touch: usage tables (accounting owns them), what the rows mean (keys, settings_store).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from modelplex.errors import ConfigError

T = TypeVar("T")

_SCHEMA_TABLE = ("CREATE TABLE IF NOT EXISTS gateway_schema (component TEXT PRIMARY KEY, "
                 "version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")


def _newer(component: str, found: int, known: int, where: str) -> ConfigError:
    return ConfigError(f"{where} has gateway table '{component}' at schema version {found}, newer than this "
                       f"modelplex understands ({known}); upgrade modelplex")


class SqliteDB:
    """A SQLite file shared with the usage sink. Calls run on worker threads, one at a time."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = str(path)
        self._busy = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy)}")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            self._conn = conn
        return self._conn

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return fn(self._connect())

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._locked, fn)

    async def ensure(self, component: str, version: int, statements: Sequence[str]) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_SCHEMA_TABLE.replace("DOUBLE PRECISION", "REAL"))
                row = conn.execute("SELECT version FROM gateway_schema WHERE component = ?", (component,)).fetchone()
                if row is not None and int(row[0]) > version:
                    raise _newer(component, int(row[0]), version, self.path)
                for stmt in statements:
                    conn.execute(stmt)
                if row is None or int(row[0]) < version:
                    conn.execute("INSERT INTO gateway_schema (component, version, applied_at) VALUES (?, ?, ?) "
                                 "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                                 "applied_at = excluded.applied_at", (component, version, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.run(apply)

    async def health(self) -> dict[str, Any]:
        try:
            await self.run(lambda c: c.execute("SELECT 1").fetchone())
        except Exception as exc:
            return {"backend": "sqlite", "ok": False, "error": type(exc).__name__}
        return {"backend": "sqlite", "ok": True}

    async def close(self) -> None:
        def shut() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(shut)


class PostgresDB:
    """An asyncpg pool (lazily imported: the ``[postgres]`` extra). ``schema`` sets the search path."""

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 4) -> None:
        self.dsn = dsn
        self.schema = schema
        self._min = min_size
        self._max = max_size
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    try:
                        import asyncpg
                    except ImportError:
                        raise ConfigError("the PostgreSQL key store needs asyncpg: pip install "
                                          "'modelplex[postgres]'") from None
                    settings = {"search_path": self.schema} if self.schema else None
                    self._pool = await asyncpg.create_pool(self.dsn, min_size=self._min, max_size=self._max,
                                                           server_settings=settings)
        return self._pool

    async def ensure(self, component: str, version: int, statements: Sequence[str]) -> None:
        pool = await self.pool()
        async with pool.acquire() as conn, conn.transaction():
            # one replica at a time creates tables (CREATE ... IF NOT EXISTS races otherwise)
            await conn.execute("SELECT pg_advisory_xact_lock(7342001)")
            await conn.execute(_SCHEMA_TABLE)
            found = await conn.fetchval("SELECT version FROM gateway_schema WHERE component = $1", component)
            if found is not None and int(found) > version:
                raise _newer(component, int(found), version, "the PostgreSQL database")
            for stmt in statements:
                await conn.execute(stmt)
            if found is None or int(found) < version:
                await conn.execute("INSERT INTO gateway_schema (component, version, applied_at) VALUES ($1, $2, $3) "
                                   "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, "
                                   "applied_at = EXCLUDED.applied_at", component, version, time.time())

    async def health(self) -> dict[str, Any]:
        try:
            pool = await self.pool()
            await pool.fetchval("SELECT 1")
        except Exception as exc:
            return {"backend": "postgres", "ok": False, "error": type(exc).__name__}
        return {"backend": "postgres", "ok": True}

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


__all__ = ["PostgresDB", "SqliteDB"]
