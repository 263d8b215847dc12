"""The SQLite usage sink: stdlib ``sqlite3``, one dedicated writer thread, reads on another.

Owns: ``SQLiteSink``. All writes run on one thread that owns the write connection (WAL,
``synchronous=NORMAL``, ``busy_timeout``): each ``write_batch`` is one ``BEGIN IMMEDIATE``
transaction of two ``INSERT`` statements (records, then attempts).

The rows travel as one JSON array per table, bound as a single parameter and unpacked by SQLite
itself (``INSERT ... SELECT value ->> 0, ... FROM json_each(?)``): the unpacking runs inside
``sqlite3_step``, which releases the GIL, so the event loop keeps running while a batch is stored.
Binding the same rows one value at a time holds the GIL for every value (about 40 per record, a dozen
of them ``None``/``bool`` going through ``sqlite3``'s adapter protocol). The JSON path is used only
where it is exact: the writer checks at start that this SQLite reads back what orjson writes
(strings, floats to the last bit, integers, booleans as 0/1), and a batch holding a string with NUL
(SQLite's JSON text ends there) or a non-finite float (orjson writes ``null``) is bound value by
value instead: multi-row ``INSERT`` statements in chunks of 256, 128, ... 1 (at most nine statement
shapes per table, all kept prepared). Reads run on a second thread with its own read-only
connection, so a report never waits behind a batch (WAL readers see the last committed state).

Must not touch: queueing, journaling, the schema itself (``migrations/sqlite``, applied by ``migrate``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import operator
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson

from modelplex.accounting.migrate import apply_sqlite, sqlite_version
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
    pack_record,
    record_row,
    row_to_dict,
    sort_cost_tracking,
    sort_performance,
)

T = TypeVar("T")

SQL = SQLBuilder(placeholder=lambda i: "?", success_int="r.success", is_success="r.success = 1",
                 day_expr="date(r.ts, 'unixepoch')")
_INSERT_RECORDS = SQL.insert_records()
_INSERT_ATTEMPTS = SQL.insert_attempts()
_CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
"""Rows per multi-row INSERT: 256 x 29 record columns stays under SQLite's 32,766 bound parameters."""


def _json_insert(table: str, columns: Sequence[str], conflict: str) -> str:
    """An ``INSERT`` of ``table``'s rows from one bound JSON array of row arrays (``columns`` order).
    ``WHERE true`` keeps SQLite's parser from reading ``ON CONFLICT`` as a join constraint."""
    values = ", ".join(f"value ->> {i}" for i in range(len(columns)))
    return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM json_each(?) WHERE true "
            f"ON CONFLICT ({conflict}) DO NOTHING")


_JSON_INSERT_RECORDS = _json_insert("usage_records", RECORD_COLUMNS, "request_id")
"""Also the records of packed rows (``pack_record``): their last element, the attempts, is not read."""
_JSON_INSERT_ATTEMPTS = _json_insert("usage_attempts", ATTEMPT_COLUMNS, "request_id, idx")
_PACKED_INSERT_ATTEMPTS = (
    f"INSERT INTO usage_attempts ({', '.join(ATTEMPT_COLUMNS)}) SELECT r.value ->> 0, a.key, "
    + ", ".join(f"a.value ->> {i}" for i in range(len(ATTEMPT_COLUMNS) - 2))
    + f" FROM json_each(?) AS r, json_each(r.value, '$[{len(RECORD_COLUMNS)}]') AS a WHERE true "
    "ON CONFLICT (request_id, idx) DO NOTHING")
"""The attempts of packed rows: each row's last element, joined to the row's request id."""
_RECORD_FLOATS = operator.itemgetter(*(i for i, c in enumerate(RECORD_COLUMNS) if c in (
    "ts", "cost_usd", "provider_cost_usd", "latency_ms", "ttft_ms", "quality_score")))
_ATTEMPT_FLOATS = operator.itemgetter(ATTEMPT_COLUMNS.index("latency_ms"), ATTEMPT_COLUMNS.index("latency_ms"))
"""(Twice, so that the getter returns a tuple, as the records' one does.)"""
_not_none = functools.partial(operator.is_not, None)
_JSON_PROBE: tuple[tuple[Any, ...], ...] = (
    ("h\u00e9llo \U0001f600 \"q\" \\ \n\t", 0.1, 1, True),
    ("", 1e-07 * 3, 9_223_372_036_854_775_807, False),
    (None, 5e-324, -(2 ** 63), None),
    ("x", 1.7976931348623157e308, 0, True),
    ("y", 2.5e-06 * 123_457, 17, False),
    ("z", 1234567.000001, 3, True),
    ("w", 0.30000000000000004, 4, False),
)
"""Rows the writer round-trips through ``json_each`` at start: the JSON path is used only if every
value comes back exactly (booleans as 0/1, as ``sqlite3`` binds them)."""


def _json_reads_back_exactly(conn: sqlite3.Connection) -> bool:
    """Whether this SQLite has ``json_each`` and ``->>`` and returns every probe value bit for bit."""
    try:
        got = conn.execute("SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
                           (orjson.dumps(_JSON_PROBE),)).fetchall()
    except sqlite3.Error:
        return False
    want = [tuple(int(v) if isinstance(v, bool) else v for v in row) for row in _JSON_PROBE]
    return [tuple(row) for row in got] == want and all(
        type(a) is type(b) for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True))


def _as_json(rows: Sequence[tuple[Any, ...]], floats: operator.itemgetter[Any]) -> bytes | None:
    """``rows`` as one JSON array for ``json_each``, or ``None`` when JSON would not carry them exactly:
    a value orjson refuses (the value-by-value path then raises the same data error), a string with
    NUL, or a non-finite float in one of the ``floats`` columns. The floats are summed: a sum is finite
    only if every term is (a finite sum that overflows merely sends the batch the slower way)."""
    try:
        data = orjson.dumps(rows, option=orjson.OPT_STRICT_INTEGER)  # larger integers would read back as REAL
    except orjson.JSONEncodeError:
        return None
    if b"\\u0000" in data:
        return None
    total = sum(filter(_not_none, itertools.chain.from_iterable(map(floats, rows))), 0.0)
    return data if total - total == 0.0 else None


def _transaction(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
    """``fn()`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out


@functools.cache
def _multi_row(sql: str, rows: int) -> str:
    """``sql`` (one ``VALUES (...)`` group) with ``rows`` groups."""
    head, rest = sql.split(" VALUES ", 1)
    group, tail = rest.split(")", 1)
    return f"{head} VALUES {', '.join([group + ')'] * rows)}{tail}"


def _insert_rows(conn: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    i, n = 0, len(rows)
    for size in _CHUNKS:
        while n - i >= size:
            chunk = rows[i:i + size]
            conn.execute(_multi_row(sql, size), list(itertools.chain.from_iterable(chunk)))
            i += size
_UPSERT_FEEDBACK = SQL.upsert_feedback()



@functools.cache
def _bind_none_and_bool_directly() -> None:
    """Register identity adapters for ``None`` and ``bool`` (unless the application registered its own).

    ``sqlite3`` binds an exact ``int``, ``float`` or ``str`` straight away, but sends ``None`` and ``bool``
    through its adapter protocol, and with no adapter registered that ends in a failed attribute lookup
    on ``PrepareProtocol`` that formats an ``AttributeError`` message and throws it away: about 0.5 µs per
    value, and a usage row has a dozen of them (measured in the writer thread: 6.2 µs per row of nine
    ``None``/``bool`` values against 2.3 µs with these adapters). The adapters change no stored value:
    ``None`` still binds NULL and ``bool`` still binds the integer 0 or 1."""
    for kind, adapt in ((type(None), {}.get), (bool, int)):
        if (kind, sqlite3.PrepareProtocol) not in getattr(sqlite3, "adapters", {}):
            sqlite3.register_adapter(kind, adapt)


DEFAULT_BUSY_TIMEOUT_MS = 5_000
WRITER_CACHE_KIB = 2_048
"""The writer's page cache (2 MiB, SQLite's default). Measured on 200,000 records: 64 MiB wrote no faster
(72-76k records/s at 2, 8 and 64 MiB) but grew the process with the store, up to the full 64 MiB: the
gateway's RSS rose 44% over 100,000 requests with it, 8% with 8 MiB and 2.5% with 2 MiB."""


class SQLiteSink(UsageSink):
    """Usage records in a SQLite file (``":memory:"`` works too, with reads on the writer thread)."""

    name: ClassVar[str] = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        self.path = str(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._start_lock = threading.Lock()
        self._started = False
        self.schema_version = 0
        self.json_rows = False
        """Whether batches travel as JSON (decided when the writer opens; see the module docstring)."""

    # ------------------------------------------------------------------ threads and connections

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                               cached_statements=64)
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        _bind_none_and_bool_directly()
        if read_only:
            conn.execute("PRAGMA query_only = ON")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        return conn

    async def _on(self, executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if executor is None:
            raise RuntimeError("SQLiteSink is not started (await sink.start() first) or is closed")
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._on(self._writer, lambda: fn(self._wconn))  # type: ignore[arg-type]

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._memory:
            return await self._write(fn)
        return await self._on(self._reader, lambda: fn(self._rconn))  # type: ignore[arg-type]

    async def start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelplex-sqlite-writer")
            if not self._memory:
                self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelplex-sqlite-reader")
        try:
            if not self._memory:
                Path(self.path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)

            def open_writer() -> int:
                self._wconn = self._connect(read_only=False)
                apply_sqlite(self._wconn)
                self.json_rows = _json_reads_back_exactly(self._wconn)
                return sqlite_version(self._wconn)

            self.schema_version = await self._on(self._writer, open_writer)
            if self._reader is not None:
                def open_reader() -> None:
                    self._rconn = self._connect(read_only=True)

                await self._on(self._reader, open_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        with self._start_lock:
            writer, reader = self._writer, self._reader
            self._writer = self._reader = None
            self._started = False
        for executor, attr in ((reader, "_rconn"), (writer, "_wconn")):
            if executor is None:
                continue

            def shut(attr: str = attr) -> None:
                conn = getattr(self, attr)
                setattr(self, attr, None)
                if conn is not None:
                    conn.close()

            try:
                await asyncio.get_running_loop().run_in_executor(executor, shut)
            finally:
                executor.shutdown(wait=True)

    # ------------------------------------------------------------------ writes

    def packer(self) -> Callable[[UsageRecord], bytes | None] | None:
        """``pack_record`` once the writer has found that this SQLite reads JSON back exactly."""
        return pack_record if self.json_rows else None

    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        if not records:
            return 0
        batch = list(records)

        def write(conn: sqlite3.Connection) -> int:
            rows = [record_row(r) for r in batch]
            attempts = [row for r in batch if r.attempts for row in attempt_rows(r)]
            json_rows = self.json_rows

            def insert() -> int:
                before = conn.total_changes
                self._insert(conn, rows, json_rows, _JSON_INSERT_RECORDS, _RECORD_FLOATS, _INSERT_RECORDS)
                new = conn.total_changes - before
                if attempts:
                    self._insert(conn, attempts, json_rows, _JSON_INSERT_ATTEMPTS, _ATTEMPT_FLOATS,
                                 _INSERT_ATTEMPTS)
                return new

            return _transaction(conn, insert)

        return await self._write(write)

    async def write_packed(self, packed: Sequence[bytes]) -> int:
        """Packed rows (``pack_record``) joined into one JSON array, which both statements unpack."""
        if not packed:
            return 0
        if not self.json_rows:
            return await super().write_packed(packed)
        batch = list(packed)

        def write(conn: sqlite3.Connection) -> int:
            payload = b"[" + b",".join(batch) + b"]"

            def insert() -> int:
                before = conn.total_changes
                conn.execute(_JSON_INSERT_RECORDS, (payload,))
                new = conn.total_changes - before
                conn.execute(_PACKED_INSERT_ATTEMPTS, (payload,))
                return new

            return _transaction(conn, insert)

        return await self._write(write)

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], json_rows: bool, json_sql: str,
                floats: operator.itemgetter[Any], sql: str) -> None:
        payload = _as_json(rows, floats) if json_rows else None
        if payload is not None:
            conn.execute(json_sql, (payload,))
        else:
            _insert_rows(conn, sql, rows)

    async def add_feedback_batch(self, entries: Sequence[FeedbackEntry]) -> None:
        if not entries:
            return
        rows = [(e.request_id, float(e.score), e.comment, float(e.ts)) for e in entries]

        def write(conn: sqlite3.Connection) -> None:
            _transaction(conn, lambda: conn.executemany(_UPSERT_FEEDBACK, rows))

        await self._write(write)

    async def add_feedback(self, request_id: str, score: float, comment: str | None = None,
                           ts: float | None = None) -> None:
        import time

        await self.add_feedback_batch([FeedbackEntry(request_id, float(score), comment,
                                                     time.time() if ts is None else float(ts))])

    # ------------------------------------------------------------------ reads

    async def query(self, since: float | None = None, until: float | None = None, *, limit: int | None = None,
                    with_attempts: bool = False, newest_first: bool = False, after: Cursor | None = None,
                    **filters: Any) -> list[dict[str, Any]]:
        f = check_filters(filters)
        sql, params = SQL.select_records(since, until, f, limit, newest_first, after)
        asql, aparams = SQL.select_attempts(since, until, f)

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            conn.execute("BEGIN")  # one snapshot for records and attempts
            try:
                out = [row_to_dict(row[:-1], row[-1]) for row in conn.execute(sql, params)]
                if with_attempts and out:
                    by_id = {d["request_id"]: d for d in out}
                    for row in conn.execute(asql, aparams):
                        d = by_id.get(row[0])
                        if d is not None:
                            d["attempts"].append(attempt_row_to_dict(row))
            finally:
                conn.execute("COMMIT")
            return out

        return await self._read(read)

    async def aggregate(self, since: float | None = None, until: float | None = None, *, by: str = "model",
                        **filters: Any) -> list[dict[str, Any]]:
        sql, params = SQL.aggregate(check_group(by), since, until, check_filters(filters))
        return aggregate_rows(await self._read(lambda c: c.execute(sql, params).fetchall()))

    async def spend(self, since: float | None = None, until: float | None = None, *, user: str | None = None,
                    api_key_id: str | None = None) -> float:
        sql, params = SQL.spend(since, until, check_filters({"user": user, "api_key_id": api_key_id}))
        return float(await self._read(lambda c: c.execute(sql, params).fetchone()[0]))

    async def performance_metrics(self) -> list[dict[str, Any]]:
        sql = SQL.performance()
        rows = await self._read(lambda c: c.execute(sql).fetchall())
        return sort_performance([normalize_view_row(SQL.PERFORMANCE_COLUMNS, r) for r in rows])

    async def cost_tracking(self, since_day: str | None = None, until_day: str | None = None
                            ) -> list[dict[str, Any]]:
        sql, params = SQL.cost_tracking(since_day, until_day)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return sort_cost_tracking([normalize_view_row(SQL.COST_COLUMNS, r) for r in rows])

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (ValueError, TypeError, OverflowError, sqlite3.IntegrityError, sqlite3.DataError,
                                sqlite3.InterfaceError))

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sink": self.name, "path": self.path, "ok": False}
        try:
            out["schema_version"] = await self._read(sqlite_version)
            out["ok"] = True
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out


__all__ = ["SQLiteSink"]
