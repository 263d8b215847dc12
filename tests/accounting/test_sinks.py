"""One suite, three sinks (memory, SQLite, PostgreSQL): the same assertions for each."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelplex.accounting.migrate import apply_sqlite, latest_version, migrations, split_sqlite
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks import MemorySink, NullSink, UsageSink, make_sink
from modelplex.accounting.sinks.base import FeedbackEntry, attribution, record_dict, record_from_dict
from modelplex.config import AccountingConfig
from modelplex.errors import ConfigError

D0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
DAY = 86_400.0


def attempt(target: str, outcome: str, *, status: int | None = None, error: str | None = None,
            latency: float = 0.0, retry: int = 0) -> dict[str, Any]:
    return {"target": target, "provider": target.split("/")[0], "outcome": outcome, "error_type": error,
            "status_code": status, "latency_ms": latency, "retry": retry, "detail": None}


def history() -> list[UsageRecord]:
    mini, sonnet = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4"
    return [
        UsageRecord("r1", ts=D0 + 3600, task="fast", strategy="cost_optimized", user="alice", api_key_id="k1",
                    model=mini, provider="openai", attempts=[attempt(mini, "success", latency=99.5)],
                    attempt_count=1, input_tokens=1000, output_tokens=200, cached_tokens=100, cost_usd=0.0003,
                    latency_ms=100.0, ttft_ms=40.0, selection_reason="task fast: selected"),
        UsageRecord("r2", ts=D0 + 7200, task="reasoning", strategy="quality_optimized", user="bob",
                    api_key_id="k2", model=sonnet, provider="anthropic",
                    attempts=[attempt("openai/gpt-4o", "error", status=500, error="server_error", latency=20.0),
                              attempt(sonnet, "success", latency=280.0)],
                    attempt_count=2, fallback_used=True, input_tokens=3000, output_tokens=800,
                    reasoning_tokens=300, cache_write_tokens=50, cost_usd=0.01, provider_cost_usd=0.0101,
                    latency_ms=300.0, tags=["cv", "prod"]),
        UsageRecord("r3", ts=D0 + DAY + 10, task="fast", strategy="cost_optimized", user="alice", api_key_id="k1",
                    attempts=[attempt(mini, "error", status=503, error="server_error", latency=50.0),
                              attempt("groq/llama", "skipped_breaker")],
                    attempt_count=2, success=False, error_type="all_attempts_failed", latency_ms=50.0,
                    usage_estimated=True),
        UsageRecord("r4", ts=D0 + DAY + 20, task="fast", strategy="cost_optimized", user="bob", api_key_id="k1",
                    model=mini, provider="openai", attempts=[attempt(mini, "success")], attempt_count=1,
                    input_tokens=2000, output_tokens=300, cost_usd=0.0005, latency_ms=200.0),
        UsageRecord("r5", ts=D0 + 2 * DAY, kind="embedding", model="openai/text-embedding-3-small",
                    provider="openai", attempts=[attempt("openai/text-embedding-3-small", "success")],
                    attempt_count=1, input_tokens=500, cost_usd=0.00001, latency_ms=40.0, tags=["a", "b"]),
    ]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def sink(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UsageSink]:
    if request.param == "memory":
        s: UsageSink = MemorySink()
        await s.start()
        yield s
        await s.close()
        return
    if request.param == "sqlite":
        from modelplex.accounting.sinks.sqlite import SQLiteSink

        s = SQLiteSink(tmp_path / "usage.db")
        await s.start()
        yield s
        await s.close()
        return
    dsn = request.getfixturevalue("postgres_dsn")
    import asyncpg

    from modelplex.accounting.sinks.postgres import PostgresSink

    schema = f"mpx_test_{uuid.uuid4().hex[:12]}"
    s = PostgresSink(dsn, schema=schema)
    await s.start()
    try:
        yield s
    finally:
        await s.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_a_value_the_store_cannot_index_is_set_aside_not_the_sink(sink: UsageSink, tmp_path: Path) -> None:
    """A 16,000-character random ``user`` exceeds PostgreSQL's index row limit (program limit exceeded,
    SQLSTATE 54000): the recorder must set that one record aside and store the rest, not mark the sink
    down and journal every later batch behind it."""
    import secrets

    from modelplex.accounting.journal import Journal
    from modelplex.accounting.recorder import UsageRecorder

    r = UsageRecorder(sink, journal=Journal(tmp_path / "j"), batch_size=10, flush_interval=60)
    await r.start()
    recs = history()
    huge = UsageRecord("huge", ts=D0, user=secrets.token_urlsafe(12_000), cost_usd=0.001, latency_ms=1.0)
    for x in (*recs[:2], huge, *recs[2:]):
        r.record(x)
    await r.flush()
    s = r.stats()
    stored = {d["request_id"] for d in await sink.query(limit=100)}
    assert {x.request_id for x in recs} <= stored
    assert (s["sink_ok"], s["failed_batches"], s["spilled"]) == (True, 0, 0)
    assert s["written"] + s["rejected"] == len(recs) + 1
    if sink.name == "postgres":
        assert s["rejected"] == 1 and "huge" not in stored
    await r.aclose(close_sink=False)


async def test_round_trip(sink: UsageSink) -> None:
    recs = history()
    assert await sink.write_batch(recs) == 5
    got = await sink.query(with_attempts=True)
    assert [d["request_id"] for d in got] == ["r1", "r2", "r3", "r4", "r5"]
    for d, rec in zip(got, recs, strict=True):
        assert d == record_dict(rec)
        assert record_from_dict(d) == rec
    r2 = got[1]
    assert r2["tags"] == ["cv", "prod"] and r2["fallback_used"] is True and r2["provider_cost_usd"] == 0.0101
    assert got[2]["success"] is False and got[2]["usage_estimated"] is True and got[2]["model"] is None
    plain = await sink.query()
    assert all(d["attempts"] == [] for d in plain)
    assert plain[1]["attempt_count"] == 2


async def test_idempotent_on_request_id(sink: UsageSink) -> None:
    recs = history()
    assert await sink.write_batch(recs) == 5
    assert await sink.write_batch(recs) == 0
    changed = UsageRecord("r1", ts=D0, cost_usd=99.0, model="x/y", provider="x")
    assert await sink.write_batch([changed, UsageRecord("r6", ts=D0 + 5, cost_usd=1.0)]) == 1
    got = await sink.query(with_attempts=True)
    assert sorted(d["request_id"] for d in got) == ["r1", "r2", "r3", "r4", "r5", "r6"]
    r1 = next(d for d in got if d["request_id"] == "r1")
    assert r1["cost_usd"] == 0.0003 and r1["model"] == "openai/gpt-4o-mini"  # the first write wins
    assert len(r1["attempts"]) == 1
    # duplicates inside one batch are one row too
    assert await sink.write_batch([UsageRecord("r7", ts=D0), UsageRecord("r7", ts=D0)]) == 1


async def test_attempts_are_linked_and_attributed(sink: UsageSink) -> None:
    await sink.write_batch(history())
    got = {d["request_id"]: d for d in await sink.query(with_attempts=True)}
    r2 = got["r2"]["attempts"]
    assert [a["target"] for a in r2] == ["openai/gpt-4o", "anthropic/claude-sonnet-4"]
    assert r2[0] == {"target": "openai/gpt-4o", "provider": "openai", "outcome": "error",
                     "error_type": "server_error", "status_code": 500, "latency_ms": 20.0, "retry": 0,
                     "detail": None}
    # nothing served r3: it is charged to the last model actually called (the breaker skip does not count)
    assert got["r3"]["attributed_model"] == "openai/gpt-4o-mini"
    assert got["r3"]["attributed_provider"] == "openai"
    assert got["r2"]["attributed_model"] == "anthropic/claude-sonnet-4"
    only_fast = await sink.query(with_attempts=True, task="fast")
    assert [d["request_id"] for d in only_fast] == ["r1", "r3", "r4"]
    assert [len(d["attempts"]) for d in only_fast] == [1, 2, 1]


async def test_feedback(sink: UsageSink) -> None:
    await sink.write_batch(history())
    await sink.add_feedback("r1", 0.8, "good", D0 + 4000)
    got = {d["request_id"]: d for d in await sink.query()}
    assert got["r1"]["quality_score"] == 0.8 and got["r1"]["feedback_comment"] == "good"
    assert got["r2"]["quality_score"] is None and got["r2"]["feedback_comment"] is None
    await sink.add_feedback("r1", 0.6, None, D0 + 5000)  # the latest wins
    got = {d["request_id"]: d for d in await sink.query()}
    assert got["r1"]["quality_score"] == 0.6 and got["r1"]["feedback_comment"] is None
    await sink.add_feedback_batch([FeedbackEntry("r1", 0.1, "older, replayed late", D0 + 4500)])
    got = {d["request_id"]: d for d in await sink.query()}
    assert got["r1"]["quality_score"] == 0.6  # by its time, not by when it arrived
    # feedback may arrive before its record
    await sink.add_feedback("late", 0.9, "early bird", D0)
    await sink.write_batch([UsageRecord("late", ts=D0 + 1, model="m/x", provider="m")])
    late = await sink.query(until=D0 + 2, since=D0 + 1)
    assert [(d["request_id"], d["quality_score"], d["feedback_comment"]) for d in late] == [
        ("late", 0.9, "early bird")]


async def test_spend_by_user_key_and_period(sink: UsageSink) -> None:
    await sink.write_batch(history())
    assert await sink.spend() == pytest.approx(0.01081)
    assert await sink.spend(user="alice") == pytest.approx(0.0003)
    assert await sink.spend(user="bob") == pytest.approx(0.0105)
    assert await sink.spend(api_key_id="k1") == pytest.approx(0.0008)
    assert await sink.spend(user="bob", api_key_id="k1") == pytest.approx(0.0005)
    assert await sink.spend(D0, D0 + DAY) == pytest.approx(0.0103)
    assert await sink.spend(D0 + DAY, D0 + 2 * DAY) == pytest.approx(0.0005)
    assert await sink.spend(D0 + 2 * DAY) == pytest.approx(0.00001)  # since is inclusive
    assert await sink.spend(None, D0 + 2 * DAY) == pytest.approx(0.0108)  # until is exclusive
    assert await sink.spend(user="nobody") == 0.0


async def test_query_filters_and_limits(sink: UsageSink) -> None:
    await sink.write_batch(history())
    assert [d["request_id"] for d in await sink.query(success=False)] == ["r3"]
    assert [d["request_id"] for d in await sink.query(user="bob")] == ["r2", "r4"]
    assert [d["request_id"] for d in await sink.query(model="openai/gpt-4o-mini")] == ["r1", "r4"]
    assert [d["request_id"] for d in await sink.query(provider="anthropic", strategy="quality_optimized")] == ["r2"]
    assert [d["request_id"] for d in await sink.query(api_key_id="k1", since=D0 + DAY)] == ["r3", "r4"]
    assert [d["request_id"] for d in await sink.query(kind="embedding")] == ["r5"]
    assert [d["request_id"] for d in await sink.query(limit=2)] == ["r1", "r2"]
    assert [d["request_id"] for d in await sink.query(limit=2, newest_first=True)] == ["r5", "r4"]
    assert [d["request_id"] for d in await sink.query(user="bob", newest_first=True)] == ["r4", "r2"]
    assert await sink.query(task=None) == await sink.query()  # None means no filter
    with pytest.raises(ValueError, match="unknown usage filter"):
        await sink.query(colour="blue")


async def test_aggregate(sink: UsageSink) -> None:
    await sink.write_batch(history())
    by_model = {g["key"]: g for g in await sink.aggregate(by="model")}
    assert list(by_model) == ["anthropic/claude-sonnet-4", "openai/gpt-4o-mini", "openai/text-embedding-3-small"]
    mini = by_model["openai/gpt-4o-mini"]
    assert (mini["requests"], mini["successes"], mini["input_tokens"], mini["output_tokens"],
            mini["cached_tokens"]) == (3, 2, 3000, 500, 100)
    assert mini["cost_usd"] == pytest.approx(0.0008)
    assert mini["avg_latency_ms"] == pytest.approx(150.0)  # successful requests only
    by_day = await sink.aggregate(by="day")
    assert [(g["key"], g["requests"]) for g in by_day] == [("2026-01-05", 2), ("2026-01-06", 2), ("2026-01-07", 1)]
    by_user = await sink.aggregate(by="user", task="fast")
    assert [(g["key"], g["requests"]) for g in by_user] == [("alice", 2), ("bob", 1)]
    by_task = await sink.aggregate(by="task")
    assert [g["key"] for g in by_task] == ["fast", "reasoning", None]  # None last
    with pytest.raises(ValueError, match="unknown usage grouping"):
        await sink.aggregate(by="colour")


async def test_rollup_views(sink: UsageSink) -> None:
    await sink.write_batch(history())
    await sink.add_feedback("r1", 0.8, None, D0)
    await sink.add_feedback("r2", 0.95, None, D0)
    perf = await sink.performance_metrics()
    assert [(p["model_name"], p["task_type"]) for p in perf] == [
        ("anthropic/claude-sonnet-4", "reasoning"), ("openai/gpt-4o-mini", "fast"),
        ("openai/text-embedding-3-small", None)]
    mini = perf[1]
    assert (mini["request_count"], mini["success_count"], mini["quality_samples"], mini["tokens_used"]) == (
        3, 2, 1, 3500)
    assert mini["success_rate"] == pytest.approx(2 / 3)
    assert mini["avg_latency_ms"] == pytest.approx(150.0)
    assert mini["avg_cost_usd"] == pytest.approx(0.0004)
    assert mini["avg_quality_score"] == pytest.approx(0.8)
    assert mini["total_cost_usd"] == pytest.approx(0.0008)
    assert (mini["first_ts"], mini["last_ts"]) == (D0 + 3600, D0 + DAY + 20)
    assert perf[0]["avg_quality_score"] == pytest.approx(0.95) and perf[0]["success_rate"] == 1.0
    assert perf[2]["avg_quality_score"] is None and perf[2]["quality_samples"] == 0

    cost = await sink.cost_tracking()
    assert [(c["day"], c["model_name"], c["request_count"]) for c in cost] == [
        ("2026-01-05", "anthropic/claude-sonnet-4", 1), ("2026-01-05", "openai/gpt-4o-mini", 1),
        ("2026-01-06", "openai/gpt-4o-mini", 2), ("2026-01-07", "openai/text-embedding-3-small", 1)]
    day2 = cost[2]
    assert (day2["provider"], day2["success_count"], day2["input_tokens"], day2["output_tokens"],
            day2["total_tokens"]) == ("openai", 1, 2000, 300, 2300)
    assert day2["total_cost_usd"] == pytest.approx(0.0005)
    assert day2["avg_cost_per_request"] == pytest.approx(0.00025)
    window = await sink.cost_tracking("2026-01-06", "2026-01-06")
    assert [c["day"] for c in window] == ["2026-01-06"]


async def test_health(sink: UsageSink) -> None:
    h = await sink.health()
    assert h["ok"] is True and h["sink"] == sink.name
    if sink.name != "memory":
        assert h["schema_version"] == latest_version("sqlite" if sink.name == "sqlite" else "postgres")


# ------------------------------------------------------------------------------------------ one-sink specifics


async def test_sqlite_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    from modelplex.accounting.sinks.sqlite import SQLiteSink

    path = tmp_path / "m.db"
    s = SQLiteSink(path)
    await s.start()
    await s.write_batch(history()[:1])
    await s.close()
    again = SQLiteSink(path)
    await again.start()  # nothing to apply, data kept
    assert len(await again.query()) == 1
    await again.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(m.version, m.name) for m in migrations("sqlite")]
        assert [r[0] for r in rows] == [1, 2]
        assert apply_sqlite(conn) == []
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_migration_files_match_across_dialects() -> None:
    assert [(m.version, m.name) for m in migrations("sqlite")] == [(m.version, m.name)
                                                                   for m in migrations("postgres")]
    statements = split_sqlite(migrations("sqlite")[0].sql)
    assert statements[0].startswith("-- modelplex usage store") and "CREATE TABLE usage_records" in statements[0]
    assert sum("CREATE TABLE" in s for s in statements) == 3


def test_attribution() -> None:
    assert attribution("a/b", "a", []) == ("a/b", "a")
    assert attribution(None, None, [attempt("x/1", "error"), attempt("y/2", "skipped_context")]) == ("x/1", "x")
    assert attribution(None, None, [attempt("y/2", "skipped_breaker")]) == (None, None)


def test_make_sink(tmp_path: Path) -> None:
    from modelplex.accounting.sinks.postgres import PostgresSink
    from modelplex.accounting.sinks.sqlite import SQLiteSink

    assert isinstance(make_sink(AccountingConfig(sink="memory")), MemorySink)
    assert isinstance(make_sink(AccountingConfig(sink="none")), NullSink)
    s = make_sink(AccountingConfig(sink="sqlite"), env={"MODELPLEX_DB": str(tmp_path / "env.db")})
    assert isinstance(s, SQLiteSink) and s.path == str(tmp_path / "env.db")
    s = make_sink(AccountingConfig(sink="sqlite", path=str(tmp_path / "cfg.db")), env={"MODELPLEX_DB": "x"})
    assert isinstance(s, SQLiteSink) and s.path == str(tmp_path / "cfg.db")
    assert make_sink(AccountingConfig(sink="sqlite"), env={}).path == "modelplex.db"  # type: ignore[attr-defined]
    pg = make_sink(AccountingConfig(sink="postgres", dsn="postgresql://u@127.0.0.1/db"))
    assert isinstance(pg, PostgresSink)
    with pytest.raises(ConfigError, match="dsn"):
        make_sink(AccountingConfig(sink="postgres"))


async def test_null_sink_keeps_nothing() -> None:
    s = NullSink()
    assert await s.write_batch(history()) == 0
    assert await s.query() == [] and await s.spend() == 0.0 and (await s.health())["ok"] is True


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 500, 777])
async def test_batches_of_any_size_store_every_row_and_attempt(sink: UsageSink, n: int) -> None:
    """SQLite writes a batch as multi-row INSERTs in chunks of 256, 128, ... 1; every size must come out whole,
    in-batch duplicates included, and attempts beyond one statement's share included."""
    recs = [UsageRecord(f"b{n}-{i}", ts=D0 + i, model="openai/gpt-4o", provider="openai", cost_usd=0.001,
                        attempts=[attempt("openai/gpt-4o", "error", status=500, error="server_error"),
                                  attempt("openai/gpt-4o", "success")][: 1 + i % 2], attempt_count=1 + i % 2)
            for i in range(n)]
    assert await sink.write_batch(recs + recs[:3]) == n  # the repeats are ignored
    got = await sink.query(with_attempts=True, limit=n + 10)
    assert len(got) == n
    assert sum(len(d["attempts"]) for d in got) == sum(1 + i % 2 for i in range(n))
    assert sorted(d["request_id"] for d in got) == sorted(r.request_id for r in recs)


async def test_sqlite_binds_none_and_bool_without_the_adapter_lookup(tmp_path: Path) -> None:
    """The SQLite sink registers identity adapters for None and bool (the slow path of sqlite3's binding),
    keeps an adapter the application registered itself, and stores the same values either way."""
    from modelplex.accounting.sinks import sqlite as sqlite_sink

    adapters = sqlite3.adapters  # type: ignore[attr-defined]
    mine = {k: v for k, v in adapters.items() if k[0] in (type(None), bool)}
    for k in mine:
        del adapters[k]
    sqlite_sink._bind_none_and_bool_directly.cache_clear()

    def app_adapter(b: bool) -> int:
        return int(b)

    sqlite3.register_adapter(bool, app_adapter)
    try:
        s = sqlite_sink.SQLiteSink(tmp_path / "usage.db")
        await s.start()
        try:
            assert adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
            assert adapters[(bool, sqlite3.PrepareProtocol)] is app_adapter  # the application's own stays
            recs = history()
            await s.write_batch(recs)
            got = await s.query(with_attempts=True)
            assert [record_from_dict(d) for d in got] == recs
            raw = sqlite3.connect(tmp_path / "usage.db")
            try:
                types = raw.execute("SELECT typeof(provider_cost_usd), typeof(success) FROM usage_records "
                                    "WHERE request_id = 'r1'").fetchone()
            finally:
                raw.close()
            assert types == ("null", "integer")
        finally:
            await s.close()
    finally:
        for k in [k for k in adapters if k[0] in (type(None), bool)]:
            del adapters[k]
        adapters.update(mine)
        sqlite_sink._bind_none_and_bool_directly.cache_clear()


# ---------------------------------------------------------------------- SQLite: rows as JSON, or value by value


def _stored(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored value with its SQLite storage class, records then attempts, in key order."""
    from modelplex.accounting.sinks.base import ATTEMPT_COLUMNS, RECORD_COLUMNS

    def typed(table: str, cols: tuple[str, ...], order: str) -> list[tuple[Any, ...]]:
        sel = ", ".join(f"{c}, typeof({c})" for c in cols)
        return raw.execute(f"SELECT {sel} FROM {table} ORDER BY {order}").fetchall()

    raw = sqlite3.connect(path)
    try:
        return (typed("usage_records", RECORD_COLUMNS, "request_id"),
                typed("usage_attempts", ATTEMPT_COLUMNS, "request_id, idx"))
    finally:
        raw.close()


async def _write_with(path: Path, recs: list[UsageRecord], *, json_rows: bool, twice: bool = False) -> list[int]:
    from modelplex.accounting.sinks.sqlite import SQLiteSink

    s = SQLiteSink(path)
    await s.start()
    try:
        if json_rows and not s.json_rows:
            pytest.skip("this SQLite does not read JSON rows back exactly (or lacks json_each and ->>)")
        s.json_rows = json_rows
        return [await s.write_batch(recs) for _ in range(2 if twice else 1)]
    finally:
        await s.close()


def _awkward_records() -> list[UsageRecord]:
    return [*history(),
            UsageRecord("u1", ts=D0 + 0.1, user="zoë \U0001f600 \"q\" \\ \n\t", api_key_id="k'1", tags=["é", "x,y"],
                        model="openai/gpt-4o", provider="openai", input_tokens=2 ** 62, output_tokens=0,
                        cost_usd=0.1 + 0.2, provider_cost_usd=5e-324, latency_ms=1e-9, ttft_ms=1.7976931348623157e308,
                        quality_score=0.3, selection_reason="r" * 5000, attempt_count=1,
                        attempts=[attempt("openai/gpt-4o", "success", status=200, latency=0.1 + 0.7)]),
            UsageRecord("u2", ts=D0 + 1.5, user="", cost_usd=0.0, latency_ms=0.0, success=False,
                        error_type="rate_limit", attempt_count=0, attempts=[])]


async def test_sqlite_json_rows_store_exactly_what_binding_each_value_stores(tmp_path: Path) -> None:
    """The two write paths of the SQLite sink (one JSON array unpacked by SQLite, or multi-row INSERTs bound
    value by value) store the same values with the same storage classes, floats to the last bit, and both
    ignore a batch written again."""
    recs = _awkward_records()
    assert await _write_with(tmp_path / "json.db", recs, json_rows=True, twice=True) == [len(recs), 0]
    assert await _write_with(tmp_path / "bound.db", recs, json_rows=False, twice=True) == [len(recs), 0]
    via_json, bound = _stored(tmp_path / "json.db"), _stored(tmp_path / "bound.db")
    assert via_json == bound
    assert len(via_json[0]) == len(recs) and len(via_json[1]) == sum(len(r.attempts) for r in recs)


async def test_sqlite_packed_rows_store_exactly_what_binding_each_value_stores(tmp_path: Path) -> None:
    """Records packed by the sink's packer (what the recorder queues) and written with ``write_packed`` store
    the same values with the same storage classes as the value-by-value path, and a repeat writes nothing."""
    from modelplex.accounting.sinks.sqlite import SQLiteSink

    recs = _awkward_records()
    s = SQLiteSink(tmp_path / "packed.db")
    await s.start()
    try:
        if not s.json_rows:
            pytest.skip("this SQLite does not read JSON rows back exactly (or lacks json_each and ->>)")
        packer = s.packer()
        assert packer is not None
        packed = [packer(r) for r in recs]
        big = [r for r, p in zip(recs, packed, strict=True) if p is None]
        assert [r.request_id for r in big] == ["u1"]  # 2**62 tokens: beyond JSON's exact integers, not packed
        ok = [p for p in packed if p is not None]
        assert [await s.write_packed(ok), await s.write_packed(ok[:2]), await s.write_batch(big)] == [len(ok), 0, 1]
    finally:
        await s.close()
    await _write_with(tmp_path / "bound.db", recs, json_rows=False)
    assert _stored(tmp_path / "packed.db") == _stored(tmp_path / "bound.db")


def test_packed_records_round_trip_and_what_json_cannot_carry_is_not_packed() -> None:
    from modelplex.accounting.sinks.base import pack_record, record_dict, unpack_record

    for r in _awkward_records():
        packed = pack_record(r)
        if r.input_tokens > 2 ** 53:  # SQLite's JSON would read it back as a REAL
            assert packed is None
            continue
        assert packed is not None
        assert record_dict(unpack_record(packed)) == record_dict(r)
    assert unpack_record(pack_record(_awkward_records()[-1]) or b"") == _awkward_records()[-1]
    for bad in (UsageRecord("n", ts=D0, user="a\x00b"), UsageRecord("f", ts=D0, ttft_ms=float("nan")),
                UsageRecord("i", ts=D0, attempts=[attempt("m", "error", latency=float("inf"))]),
                UsageRecord("s", ts=D0, tags=["\ud800"]), UsageRecord("b", ts=D0, input_tokens=2 ** 70),
                UsageRecord("u", ts=D0, output_tokens=2 ** 63), UsageRecord("l", ts=D0, cached_tokens=2 ** 53 + 1)):
        assert pack_record(bad) is None, bad.request_id


async def test_a_sink_without_a_packer_gets_packed_records_unpacked(tmp_path: Path) -> None:
    from modelplex.accounting.sinks.base import pack_record

    m = MemorySink()
    assert m.packer() is None
    recs = [r for r in _awkward_records() if pack_record(r) is not None]
    assert await m.write_packed([p for p in map(pack_record, recs) if p is not None]) == len(recs) > 4
    got = {d["request_id"]: d for d in await m.query(with_attempts=True, limit=100)}
    assert [got[r.request_id] for r in recs] == [{**record_dict(r), "feedback_comment": None} for r in recs]


@pytest.mark.parametrize("json_rows", [True, False])
async def test_sqlite_either_path_reads_back_as_written(tmp_path: Path, json_rows: bool) -> None:
    from modelplex.accounting.sinks.sqlite import SQLiteSink

    recs = _awkward_records()
    await _write_with(tmp_path / "u.db", recs, json_rows=json_rows)
    s = SQLiteSink(tmp_path / "u.db")
    await s.start()
    try:
        got = {d["request_id"]: record_from_dict(d) for d in await s.query(with_attempts=True, limit=100)}
    finally:
        await s.close()
    assert [got[r.request_id] for r in recs] == recs


async def test_sqlite_batches_json_cannot_carry_are_bound_value_by_value(tmp_path: Path) -> None:
    """A string with NUL (SQLite's JSON text would end there) or a non-finite float (orjson writes null)
    sends its batch the value-by-value way, so it is stored as given."""
    from modelplex.accounting.sinks.base import record_row
    from modelplex.accounting.sinks.sqlite import _RECORD_FLOATS, _as_json

    nul = UsageRecord("n1", ts=D0, user="a\x00b", cost_usd=0.001, latency_ms=1.0)
    inf = UsageRecord("n2", ts=D0, provider_cost_usd=float("inf"), cost_usd=0.001, latency_ms=1.0)
    plain = UsageRecord("n3", ts=D0, user="ab", cost_usd=0.001, latency_ms=1.0)
    assert _as_json([record_row(r) for r in (plain,)], _RECORD_FLOATS) is not None
    for bad in (nul, inf):
        assert _as_json([record_row(r) for r in (plain, bad)], _RECORD_FLOATS) is None
    assert await _write_with(tmp_path / "n.db", [plain, nul, inf], json_rows=True) == [3]
    raw = sqlite3.connect(tmp_path / "n.db")
    try:
        rows = dict(raw.execute("SELECT request_id, user_id FROM usage_records").fetchall())
        pc = raw.execute("SELECT provider_cost_usd FROM usage_records WHERE request_id = 'n2'").fetchone()[0]
    finally:
        raw.close()
    assert rows["n1"] == "a\x00b" and rows["n3"] == "ab" and pc == float("inf")


async def test_sqlite_probe_that_does_not_read_back_keeps_the_value_by_value_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelplex.accounting.sinks import sqlite as sqlite_sink

    conn = sqlite3.connect(":memory:")
    try:
        assert sqlite_sink._json_reads_back_exactly(conn)
        monkeypatch.setattr(sqlite_sink, "_JSON_PROBE", (*sqlite_sink._JSON_PROBE, ("cut\x00here", 1.0, 1, True)))
        assert not sqlite_sink._json_reads_back_exactly(conn)
    finally:
        conn.close()
    s = sqlite_sink.SQLiteSink(tmp_path / "p.db")
    await s.start()
    try:
        assert s.json_rows is False
        assert await s.write_batch(history()) == len(history())
        assert [record_from_dict(d) for d in await s.query(with_attempts=True)] == history()
    finally:
        await s.close()


@pytest.mark.parametrize("n", [1, 257, 777])
async def test_sqlite_value_by_value_path_stores_batches_of_any_size(tmp_path: Path, n: int) -> None:
    recs = [UsageRecord(f"v{n}-{i}", ts=D0 + i, model="openai/gpt-4o", provider="openai", cost_usd=0.001,
                        attempts=[attempt("openai/gpt-4o", "success")] * (1 + i % 2), attempt_count=1 + i % 2)
            for i in range(n)]
    assert await _write_with(tmp_path / "v.db", recs + recs[:3], json_rows=False) == [n]
    records, attempts = _stored(tmp_path / "v.db")
    assert len(records) == n and len(attempts) == sum(1 + i % 2 for i in range(n))


async def test_query_pages_by_keyset_without_skipping_records_that_share_a_timestamp(sink: UsageSink) -> None:
    """``after`` = the last row's (ts, request_id): every record once, in order, even with equal timestamps."""
    records = [UsageRecord(f"p{i}", ts=D0 + (i // 3), task="fast", cost_usd=0.001) for i in range(8)]
    await sink.write_batch(records)
    for newest_first in (True, False):
        seen: list[str] = []
        after = None
        while True:
            page = await sink.query(limit=3, newest_first=newest_first, after=after, task="fast")
            seen += [d["request_id"] for d in page]
            if len(page) < 3:
                break
            after = (page[-1]["ts"], page[-1]["request_id"])
        expected = [f"p{i}" for i in range(8)]
        assert seen == (expected[::-1] if newest_first else expected)
