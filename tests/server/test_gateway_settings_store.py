"""Runtime settings persistence: the database (SQLite, PostgreSQL) keeps them across restarts, a shared
Redis state backend shares them between replicas, and the newer copy wins."""

from __future__ import annotations

import uuid

import pytest

from modelplex.server.db import PostgresDB, SqliteDB
from modelplex.server.settings_store import STATE_KEY, RuntimeSettings, SettingsStore
from modelplex.state import MemoryState, make_state


def clock(*values: float):
    it = iter(values)
    return lambda: next(it)


async def test_sqlite_survives_a_restart(tmp_path) -> None:
    path = tmp_path / "gw.db"
    first = SettingsStore(MemoryState(), SqliteDB(path), clock=clock(100.0, 200.0))
    await first.start()
    assert await first.load() is None
    await first.save("quality_optimized")
    await first.save(None)
    await first.db.close()
    second = SettingsStore(MemoryState(), SqliteDB(path))
    await second.start()
    assert await second.load() == RuntimeSettings(None, 200.0)
    await second.db.close()


async def test_postgres_survives_a_restart(postgres_dsn: str) -> None:
    import asyncpg

    schema = f"mpx_settings_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        first = SettingsStore(None, PostgresDB(postgres_dsn, schema=schema), clock=clock(5.0))
        await first.start()
        await first.save("cost_optimized")
        await first.db.close()
        second = SettingsStore(None, PostgresDB(postgres_dsn, schema=schema))
        await second.start()
        assert await second.load() == RuntimeSettings("cost_optimized", 5.0)
        await second.db.close()
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def test_redis_shares_settings_between_replicas(redis_url: str) -> None:
    prefix = f"mpx-test-{uuid.uuid4().hex[:8]}:"
    a_state = make_state(redis_url, prefix=prefix)
    b_state = make_state(redis_url, prefix=prefix)
    try:
        a = SettingsStore(a_state, None, clock=clock(10.0))
        b = SettingsStore(b_state, None)
        assert a.shared and b.shared
        assert await b.load() is None
        await a.save("experimental")
        assert await b.load() == RuntimeSettings("experimental", 10.0)
    finally:
        await a_state.delete(STATE_KEY)
        await a_state.close()
        await b_state.close()


async def test_memory_state_is_not_used_as_shared_storage(tmp_path) -> None:
    state = MemoryState()
    store = SettingsStore(state, SqliteDB(tmp_path / "x.db"), clock=clock(1.0))
    await store.start()
    await store.save("balanced")
    assert await state.get(STATE_KEY) is None  # per-process state would only mislead other replicas
    assert (await store.load()).strategy == "balanced"
    await store.db.close()


async def test_newest_copy_wins(tmp_path) -> None:
    class SharedMemory(MemoryState):
        shared = True

    state = SharedMemory()
    store = SettingsStore(state, SqliteDB(tmp_path / "x.db"), clock=clock(50.0))
    await store.start()
    await store.save("balanced")  # both copies at t=50
    await state.set(STATE_KEY, {"strategy": "quality_optimized", "updated_at": 60.0})  # another replica, later
    assert await store.load() == RuntimeSettings("quality_optimized", 60.0)
    await state.set(STATE_KEY, {"strategy": "cost_optimized", "updated_at": 40.0})  # stale
    assert (await store.load()).strategy == "balanced"
    await state.set(STATE_KEY, "garbage")
    assert (await store.load()).strategy == "balanced"
    await store.db.close()


@pytest.mark.parametrize("value", [None, {}, {"strategy": 3, "updated_at": 1}, {"strategy": "x"}])
def test_from_value_ignores_malformed_values(value) -> None:
    assert RuntimeSettings.from_value(value) is None
