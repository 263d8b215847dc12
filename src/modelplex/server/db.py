"""The gateway's own database tables: connections and schema versions, SQLite and PostgreSQL.

Owns: ``SqliteDB`` (one stdlib connection used from worker threads under a lock, WAL, a busy
timeout) and ``PostgresDB`` (an asyncpg pool, imported lazily), each with ``ensure(component,
version, statements)``: run ``CREATE TABLE IF NOT EXISTS`` statements and record the component's
schema version in ``gateway_schema``; a database with a *newer* version than this code knows is
refused with a clear error rather than written to.

The gateway's tables (``gateway_schema``, ``gateway_api_keys``, ``gateway_settings``) live in the
same database as usage records by default but are created here, not by the accounting migrations.

Also ``DatabaseUnavailableError`` and ``is_unavailable(exc)``: the one test for "the database could
not be reached" (refused or dropped connections, timeouts, a server shutting down, SQLite's file
locked past its busy timeout), as opposed to a bug or bad data.

Must not touch: usage tables (accounting owns them), what the rows mean (keys, settings_store).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from modelplex.errors import ConfigError, ModelplexError

T = TypeVar("T")


class DatabaseUnavailableError(ModelplexError):
    """A database the gateway needs did not answer (the gateway answers 503 with a Retry-After)."""

    retry_after = 5.0

    def __init__(self, what: str, cause: BaseException) -> None:
        self.what = what
        self.cause = cause
        super().__init__(f"{what} is unreachable ({type(cause).__name__})")


_NETWORK_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ENETUNREACH", "ENETDOWN", "EHOSTUNREACH", "EHOSTDOWN",
    "ETIMEDOUT", "EPIPE") if hasattr(errno, name))
_SQLITE_UNAVAILABLE = frozenset(getattr(sqlite3, name) for name in ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")
                                if hasattr(sqlite3, name))


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says a database could not be reached, not that a query or its data was wrong."""
    if isinstance(exc, DatabaseUnavailableError | ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, OSError):  # asyncpg passes the socket's own errors on; a file error is not one
        return exc.errno in _NETWORK_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(code, int) and (code & 0xFF) in _SQLITE_UNAVAILABLE  # extended codes: SQLITE_BUSY_*
    asyncpg = sys.modules.get("asyncpg")  # an asyncpg error implies asyncpg is imported
    if asyncpg is None:
        return False
    ex = asyncpg.exceptions
    # not InterfaceError: it also reports the caller's own mistakes (wrong argument count, a busy connection)
    return isinstance(exc, ex.PostgresConnectionError | ex.CannotConnectNowError | ex.OperatorInterventionError
                      | ex.TooManyConnectionsError)

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


CONNECT_TIMEOUT_S = 5.0
"""How long a new PostgreSQL connection may take (asyncpg's default is 60 s): a lookup waiting on an
unreachable host holds its request that long."""


class PostgresDB:
    """An asyncpg pool (lazily imported: the ``[postgres]`` extra). ``schema`` sets the search path."""

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 0, max_size: int = 4) -> None:
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
                                                           server_settings=settings, timeout=CONNECT_TIMEOUT_S)
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


__all__ = ["DatabaseUnavailableError", "PostgresDB", "SqliteDB", "is_unavailable"]
