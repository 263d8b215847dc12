"""The PostgreSQL usage sink: an asyncpg pool, one round trip per table per batch.

Owns: ``PostgresSink``. A batch is one transaction of two statements,
``INSERT ... SELECT * FROM unnest($1::text[], $2::float8[], ...) ON CONFLICT DO NOTHING`` for the
records and the same for their attempts: column arrays instead of per-row round trips, and the
command status gives the number of rows newly written. ``schema`` (optional) puts every table
in that schema (created if missing) through the pool's ``search_path``; several deployments or
test runs can share one database that way.

asyncpg is imported when the sink starts (the ``[postgres]`` extra), never at package import.

Must not touch: queueing, journaling, the schema itself (``migrations/postgres``, applied by ``migrate``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from modelplex.accounting.migrate import apply_postgres, postgres_version
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks.base import (
    ATTEMPT_COLUMNS,
    RECORD_COLUMNS,
    Cursor,
    FeedbackEntry,
    SQLBuilder,
    UsageSink,
    aggregate_rows,
    attempt_row_to_dict,
    attempt_rows,
    check_filters,
    check_group,
    normalize_view_row,
    record_row,
    row_to_dict,
    sort_cost_tracking,
    sort_performance,
)
from modelplex.errors import ConfigError

SQL = SQLBuilder(placeholder=lambda i: f"${i}", success_int="r.success::int", is_success="r.success",
                 day_expr="to_char(to_timestamp(r.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')")

_RECORD_TYPES: dict[str, str] = {
    "ts": "float8", "attempt_count": "int4", "fallback_used": "bool", "input_tokens": "int8",
    "output_tokens": "int8", "cached_tokens": "int8", "cache_write_tokens": "int8", "reasoning_tokens": "int8",
    "cost_usd": "float8", "provider_cost_usd": "float8", "usage_estimated": "bool", "latency_ms": "float8",
    "ttft_ms": "float8", "success": "bool", "quality_score": "float8",
}
_ATTEMPT_TYPES: dict[str, str] = {"idx": "int4", "status_code": "int4", "latency_ms": "float8", "retry": "int4"}


def _unnest_insert(table: str, columns: Sequence[str], types: dict[str, str], conflict: str) -> str:
    arrays = ", ".join(f"${i + 1}::{types.get(c, 'text')}[]" for i, c in enumerate(columns))
    return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({conflict}) DO NOTHING")


_INSERT_RECORDS = _unnest_insert("usage_records", RECORD_COLUMNS, _RECORD_TYPES, "request_id")
_INSERT_ATTEMPTS = _unnest_insert("usage_attempts", ATTEMPT_COLUMNS, _ATTEMPT_TYPES, "request_id, idx")
_UPSERT_FEEDBACK = SQL.upsert_feedback()
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _inserted(status: str) -> int:
    """``INSERT 0 17`` -> 17."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


class PostgresSink(UsageSink):
    name: ClassVar[str] = "postgres"

    def __init__(self, dsn: str, *, schema: str | None = None, min_size: int = 0, max_size: int = 4,
                 command_timeout: float = 30.0) -> None:
        if not dsn:
            raise ConfigError("accounting.sink is postgres but no dsn is set", key="accounting.dsn")
        if schema is not None and not _IDENT.match(schema):
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}", key="accounting.schema")
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.command_timeout = command_timeout
        self._pool: Any = None
        self.schema_version = 0

    def _require(self) -> Any:
        if self._pool is None:
            raise RuntimeError("PostgresSink is not started (await sink.start() first) or is closed")
        return self._pool

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            import asyncpg
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigError("accounting.sink postgres needs asyncpg: pip install 'modelplex[postgres]'",
                              key="accounting.sink") from None
        settings: dict[str, str] = {"application_name": "modelplex"}
        if self.schema:
            conn = await asyncpg.connect(self.dsn, timeout=self.command_timeout)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                await conn.close()
            settings["search_path"] = self.schema
        pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size, max_size=self.max_size,
                                         command_timeout=self.command_timeout, server_settings=settings)
        try:
            async with pool.acquire() as conn:
                await apply_postgres(conn)
                self.schema_version = await postgres_version(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # ------------------------------------------------------------------ writes

    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        pool = self._require()
        rows = [record_row(r) for r in records]
        attempts = [row for r in records if r.attempts for row in attempt_rows(r)]
        async with pool.acquire() as conn, conn.transaction():
            status = await conn.execute(_INSERT_RECORDS, *_columns(rows, len(RECORD_COLUMNS)))
            if attempts:
                await conn.execute(_INSERT_ATTEMPTS, *_columns(attempts, len(ATTEMPT_COLUMNS)))
        return _inserted(status)

    async def add_feedback_batch(self, entries: Sequence[FeedbackEntry]) -> None:
        if not entries:
            return
        pool = self._require()
        rows = [(e.request_id, float(e.score), e.comment, float(e.ts)) for e in entries]
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(_UPSERT_FEEDBACK, rows)

    async def add_feedback(self, request_id: str, score: float, comment: str | None = None,
                           ts: float | None = None) -> None:
        await self.add_feedback_batch([FeedbackEntry(request_id, float(score), comment,
                                                     time.time() if ts is None else float(ts))])

    # ------------------------------------------------------------------ reads

    async def query(self, since: float | None = None, until: float | None = None, *, limit: int | None = None,
                    with_attempts: bool = False, newest_first: bool = False, after: Cursor | None = None,
                    **filters: Any) -> list[dict[str, Any]]:
        f = check_filters(filters)
        sql, params = SQL.select_records(since, until, f, limit, newest_first, after)
        pool = self._require()
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            out = [row_to_dict(tuple(row)[:-1], row[-1]) for row in await conn.fetch(sql, *params)]
            if with_attempts and out:
                asql, aparams = SQL.select_attempts(since, until, f)
                by_id = {d["request_id"]: d for d in out}
                for row in await conn.fetch(asql, *aparams):
                    d = by_id.get(row[0])
                    if d is not None:
                        d["attempts"].append(attempt_row_to_dict(tuple(row)))
        return out

    async def aggregate(self, since: float | None = None, until: float | None = None, *, by: str = "model",
                        **filters: Any) -> list[dict[str, Any]]:
        sql, params = SQL.aggregate(check_group(by), since, until, check_filters(filters))
        rows = await self._require().fetch(sql, *params)
        return aggregate_rows(tuple(r) for r in rows)

    async def spend(self, since: float | None = None, until: float | None = None, *, user: str | None = None,
                    api_key_id: str | None = None) -> float:
        sql, params = SQL.spend(since, until, check_filters({"user": user, "api_key_id": api_key_id}))
        return float(await self._require().fetchval(sql, *params))

    async def performance_metrics(self) -> list[dict[str, Any]]:
        rows = await self._require().fetch(SQL.performance())
        return sort_performance([normalize_view_row(SQL.PERFORMANCE_COLUMNS, tuple(r)) for r in rows])

    async def cost_tracking(self, since_day: str | None = None, until_day: str | None = None
                            ) -> list[dict[str, Any]]:
        sql, params = SQL.cost_tracking(since_day, until_day)
        rows = await self._require().fetch(sql, *params)
        return sort_cost_tracking([normalize_view_row(SQL.COST_COLUMNS, tuple(r)) for r in rows])

    def is_data_error(self, exc: BaseException) -> bool:
        if isinstance(exc, (ValueError, TypeError, OverflowError)):
            return True
        try:
            import asyncpg
        except ImportError:  # pragma: no cover
            return False
        # 22 data exception, 23 integrity violation, 54 program limit exceeded (a value too large for an
        # index row, "index row requires 12024 bytes, maximum size is 8191"): the record, not the store.
        return isinstance(exc, (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError,
                                asyncpg.exceptions.ProgramLimitExceededError))

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sink": self.name, "schema": self.schema, "ok": False}
        try:
            async with self._require().acquire() as conn:
                out["schema_version"] = await postgres_version(conn)
            out["ok"] = True
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out


__all__ = ["PostgresSink"]
