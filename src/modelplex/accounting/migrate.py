"""Versioned schema migrations for the usage store, applied in order and exactly once.

Owns: reading ``migrations/<dialect>/NNN_name.sql`` from the package, the ``schema_migrations``
table (``version``, ``name``, ``applied_at``) and applying what is missing — ``apply_sqlite(conn)``
(one ``BEGIN IMMEDIATE`` transaction, so two processes cannot both apply a version) and
``apply_postgres(conn)`` (one transaction under a per-schema advisory lock). Both are idempotent:
running them again applies nothing.

Adding a migration is adding ``003_what.sql`` to both dialect folders; never edit an applied one.

Must not touch: reading or writing usage rows (the sinks do).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

log = logging.getLogger("modelplex.accounting.migrate")

Dialect = Literal["sqlite", "postgres"]

_NAME_RE = re.compile(r"^(\d+)_([A-Za-z0-9_]+)\.sql$")

SCHEMA_MIGRATIONS_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)
SCHEMA_MIGRATIONS_POSTGRES = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    """Every migration of ``dialect``, in version order. Raises ``ValueError`` on a duplicate version."""
    folder = resources.files("modelplex.accounting").joinpath("migrations", dialect)
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _NAME_RE.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two {dialect} migrations have version {version}: "
                             f"{found[version].name} and {match.group(2)}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def latest_version(dialect: Dialect) -> int:
    ms = migrations(dialect)
    return ms[-1].version if ms else 0


def split_sqlite(script: str) -> list[str]:
    """Split a script into complete statements (``sqlite3.complete_statement`` decides; comments kept)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.splitlines(keepends=True):
        buf.append(line)
        text = "".join(buf)
        if sqlite3.complete_statement(text):
            if _has_code(text):
                out.append(text.strip())
            buf = []
    rest = "".join(buf)
    if _has_code(rest):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {rest.strip()[:80]!r}")
    return out


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def _warn_newer(dialect: Dialect, done: set[int]) -> None:
    known = latest_version(dialect)
    newer = sorted(v for v in done if v > known)
    if newer:
        log.warning("usage store has schema version(s) %s newer than this modelplex knows (%d); "
                    "leaving them alone", newer, known)


def apply_sqlite(conn: sqlite3.Connection, *, clock: Any = time.time) -> list[int]:
    """Apply the missing SQLite migrations in one transaction; returns the versions applied."""
    conn.execute(SCHEMA_MIGRATIONS_SQLITE)
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    applied: list[int] = []
    try:
        done = {int(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}
        for m in migrations("sqlite"):
            if m.version in done:
                continue
            for statement in split_sqlite(m.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (m.version, m.name, float(clock())))
            applied.append(m.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    _warn_newer("sqlite", done)
    if applied:
        log.info("usage store (sqlite): applied migrations %s", applied)
    return applied


def sqlite_version(conn: sqlite3.Connection) -> int:
    """The highest applied version (0 when the store has never been migrated)."""
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)


async def apply_postgres(conn: Any, *, clock: Any = time.time) -> list[int]:
    """Apply the missing PostgreSQL migrations (``conn`` is an asyncpg connection) in one transaction,
    under an advisory lock keyed by the current schema; returns the versions applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':modelplex-migrations'))")
        await conn.execute(SCHEMA_MIGRATIONS_POSTGRES)
        done = {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for m in migrations("postgres"):
            if m.version in done:
                continue
            await conn.execute(m.sql)
            await conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                               m.version, m.name, float(clock()))
            applied.append(m.version)
    _warn_newer("postgres", done)
    if applied:
        log.info("usage store (postgres): applied migrations %s", applied)
    return applied


async def postgres_version(conn: Any) -> int:
    import asyncpg

    try:
        value = await conn.fetchval("SELECT MAX(version) FROM schema_migrations")
    except asyncpg.exceptions.UndefinedTableError:  # never migrated
        return 0
    return int(value or 0)


__all__ = [
    "Migration",
    "apply_postgres",
    "apply_sqlite",
    "latest_version",
    "migrations",
    "postgres_version",
    "split_sqlite",
    "sqlite_version",
]
