"""API keys: format, HMAC storage, the three key stores (the same tests over memory, SQLite and
PostgreSQL), the lookup cache, and the server secret (config, environment, a 0600 file)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import stat
import uuid
from collections.abc import AsyncIterator

import pytest

from modelplex.errors import ConfigError
from modelplex.server.db import DatabaseUnavailableError
from modelplex.server.errors import classify
from modelplex.server.keys import (
    ID_ALPHABET,
    ApiKey,
    KeyManager,
    KeyStore,
    MemoryKeyStore,
    PostgresKeyStore,
    SqliteKeyStore,
    generate_key,
    key_digest,
    parse_key,
    resolve_server_secret,
)

SECRET = b"unit-test-server-secret-0123456789"


def test_key_format_has_a_visible_id_and_at_least_128_random_bits() -> None:
    key_id, key = generate_key()
    assert key.startswith(f"mpx-{key_id}-")
    assert len(key_id) == 8 and set(key_id) <= set(ID_ALPHABET)
    secret_part = key[len("mpx-") + 8 + 1:]
    assert len(secret_part) * 6 >= 256  # url-safe base64: 6 bits a character
    assert parse_key(key) == key_id
    assert len({generate_key()[1] for _ in range(200)}) == 200


@pytest.mark.parametrize("text", ["", "sk-abc", "mpx-", "mpx-ABCDEFGH-x", "mpx-abcdefgh_x", "mpx-abcdefg-xx",
                                  "xpx-abcdefgh-xyz", "mpx-abcdefgl-xyz"])
def test_parse_key_rejects_malformed_keys(text: str) -> None:
    assert parse_key(text) is None


def test_digest_is_hmac_sha256_under_the_server_secret() -> None:
    _, key = generate_key()
    assert key_digest(SECRET, key) == hmac.new(SECRET, key.encode(), hashlib.sha256).hexdigest()
    assert key_digest(SECRET, key) != key_digest(b"another-secret-0123456789", key)
    manager = KeyManager(MemoryKeyStore(), SECRET)  # keys its HMAC once and copies it per digest
    assert [manager.digest(k) for k in (key, key, "mpx-x-é")] == [key_digest(SECRET, k) for k in (key, key, "mpx-x-é")]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[KeyStore]:
    schema = None
    if request.param == "memory":
        s: KeyStore = MemoryKeyStore()
    elif request.param == "sqlite":
        s = SqliteKeyStore(tmp_path / "usage.db")
    else:
        import asyncpg

        dsn = request.getfixturevalue("postgres_dsn")
        schema = f"mpx_keys_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(dsn)
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.close()
        s = PostgresKeyStore(dsn, schema=schema)
    await s.start()
    await s.start()  # idempotent
    try:
        yield s
    finally:
        await s.close()
        if schema is not None:
            import asyncpg

            conn = await asyncpg.connect(request.getfixturevalue("postgres_dsn"))
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            await conn.close()


async def test_store_round_trip_list_and_revoke(store: KeyStore) -> None:
    ticks = iter(range(1000, 2000))
    manager = KeyManager(store, SECRET, clock=lambda: float(next(ticks)))
    a, plain_a = await manager.create("alpha", allowed_models=["openai/*", "fakeai/small"], allowed_tasks=["fast"],
                                      rpm=60, tpm=10_000, daily_usd=1.5, monthly_usd=20.0, prompt_logging=False,
                                      metadata={"team": "search", "n": 3})
    b, plain_b = await manager.create("beta")
    assert plain_a != plain_b and plain_a.startswith(f"mpx-{a.id}-")
    got = await store.get(a.id)
    assert got == a
    assert got.digest == key_digest(SECRET, plain_a)
    assert plain_a not in repr(got) and got.digest not in repr(got)
    assert got.allowed_models == ("openai/*", "fakeai/small") and got.allowed_tasks == ("fast",)
    assert (got.rpm, got.tpm, got.daily_usd, got.monthly_usd) == (60, 10_000, 1.5, 20.0)
    assert got.prompt_logging is False and got.metadata == {"team": "search", "n": 3}
    assert [k.id for k in await store.list()] == [a.id, b.id]
    revoked = await manager.revoke(a.id)
    assert revoked is not None and revoked.revoked_at is not None and not revoked.active
    again = await manager.revoke(a.id)
    assert again is not None and again.revoked_at == revoked.revoked_at  # the first revocation time stays
    assert [k.id for k in await store.list(include_revoked=False)] == [b.id]
    assert await store.get("zzzzzzzz") is None
    assert await manager.revoke("zzzzzzzz") is None
    assert (await store.health())["ok"] is True


async def test_insert_refuses_a_duplicate_id(store: KeyStore) -> None:
    key = ApiKey(id="abcdefgh", name="x", digest="d" * 64, created_at=1.0)
    assert await store.insert(key) is True
    assert await store.insert(key) is False


async def test_lookup_cache_sees_local_revocation_at_once_and_caches_misses() -> None:
    store = MemoryKeyStore()
    now = [0.0]
    manager = KeyManager(store, SECRET, monotonic=lambda: now[0], cache_ttl=5.0)
    key, _ = await manager.create("k")
    assert (await manager.lookup(key.id)).active
    await manager.revoke(key.id)
    assert not (await manager.lookup(key.id)).active
    assert await manager.lookup("aaaaaaaa") is None
    await store.insert(ApiKey(id="aaaaaaaa", name="late", digest="0" * 64))  # e.g. created on another replica
    assert await manager.lookup("aaaaaaaa") is None  # cached miss
    now[0] = 6.0
    assert (await manager.lookup("aaaaaaaa")).name == "late"



class GatedStore(MemoryKeyStore):
    """A memory store whose reads are counted and answer only once ``gate`` is set, with what the
    store held when they started (a read that was in flight while something changed)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reads = 0

    async def get(self, key_id: str) -> ApiKey | None:
        self.reads += 1
        found = await super().get(key_id)
        await self.gate.wait()
        return found


async def test_concurrent_lookups_share_one_store_read_and_survive_a_caller_going_away() -> None:
    store = GatedStore()
    manager = KeyManager(store, SECRET)
    key, _ = await manager.create("k")
    loop = asyncio.get_running_loop()
    waiters = [loop.create_task(manager.lookup(key.id)) for _ in range(20)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one client goes away: the others still get the record
    store.gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert store.reads == 1 and all(r is not None and r.id == key.id for r in results)
    assert await manager.lookup(key.id) is results[0] and store.reads == 1  # cached now


async def test_a_read_in_flight_during_a_local_revocation_is_not_cached() -> None:
    store = GatedStore()
    manager = KeyManager(store, SECRET)
    key, _ = await manager.create("k")
    early = asyncio.get_running_loop().create_task(manager.lookup(key.id))
    while store.reads == 0:  # until the read has started (and seen the active record) and waits
        await asyncio.sleep(0)
    revoked = await manager.revoke(key.id)
    assert revoked is not None and not revoked.active
    store.gate.set()
    assert (await early).active  # it raced the revocation and answers what it read...
    assert not (await manager.lookup(key.id)).active  # ...but that answer was not cached
    assert store.reads == 2

class FlakyStore(MemoryKeyStore):
    """A memory store that is unreachable (as asyncpg reports a refused connection) while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def get(self, key_id: str) -> ApiKey | None:
        self.calls += 1
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        return await super().get(key_id)


async def test_an_unreachable_store_serves_keys_as_last_read_and_503s_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    now = [0.0]
    manager = KeyManager(store, SECRET, monotonic=lambda: now[0], cache_ttl=5.0)
    key, _ = await manager.create("k")
    assert (await manager.lookup(key.id)).active
    store.down = True
    now[0] = 60.0  # the cache entry has expired: the store is asked, and does not answer
    with caplog.at_level("WARNING", logger="modelplex.server"):
        calls = store.calls
        for _ in range(5):
            assert (await manager.lookup(key.id)).id == key.id
        with pytest.raises(DatabaseUnavailableError) as info:
            await manager.lookup("zzzzzzzz")
        assert store.calls == calls + 1  # asked once; within Retry-After no lookup waits on it again
        now[0] = 66.0
        assert (await manager.lookup(key.id)).id == key.id and store.calls == calls + 2  # then once more
        assert classify(info.value).status == 503 and classify(info.value).code == "database_unavailable"
        assert classify(info.value).retry_after == 5.0
        store.down = False
        now[0] = 120.0
        assert (await manager.lookup(key.id)).active and await manager.lookup("zzzzzzzz") is None
        assert manager._down_since is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "unreachable" in lines[0] and "is back" in lines[1]


async def test_other_store_failures_are_not_taken_for_an_outage() -> None:
    class Broken(MemoryKeyStore):
        async def get(self, key_id: str) -> ApiKey | None:
            raise FileNotFoundError(2, "no such file")

    manager = KeyManager(Broken(), SECRET)
    with pytest.raises(FileNotFoundError):
        await manager.lookup("aaaaaaaa")


def test_allow_lists_are_globs() -> None:
    key = ApiKey(id="abcdefgh", name="k", digest="", allowed_models=("openai/gpt-4o*",), allowed_tasks=("fast",))
    assert key.allows_model("openai/gpt-4o-mini")
    assert not key.allows_model("anthropic/claude-sonnet-4")
    assert key.allows_task("fast") and not key.allows_task("auto")
    nothing = ApiKey(id="abcdefgh", name="k", digest="", allowed_models=(), allowed_tasks=())
    assert not nothing.allows_model("openai/gpt-4o") and not nothing.allows_task("fast")


def test_server_secret_from_config_env_or_a_0600_file(tmp_path) -> None:
    sqlite = SqliteKeyStore(tmp_path / "keys.db")
    assert resolve_server_secret("configured-secret-123456", {}, sqlite) == (b"configured-secret-123456", "config")
    assert resolve_server_secret(None, {"MODELPLEX_SERVER_SECRET": "from-the-environment-1"}, sqlite)[1] == \
        "MODELPLEX_SERVER_SECRET"
    with pytest.raises(ConfigError):
        resolve_server_secret("short", {}, sqlite)
    secret, source = resolve_server_secret(None, {}, sqlite)
    path = tmp_path / "keys.db.server-secret"
    assert "generated" in source and path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(secret) >= 32
    again, source2 = resolve_server_secret(None, {}, sqlite)  # the next start reads the same secret
    assert again == secret and "generated" not in source2
    with pytest.raises(ConfigError) as exc:
        resolve_server_secret(None, {}, PostgresKeyStore("postgresql://nowhere/db"))
    assert "MODELPLEX_SERVER_SECRET" in str(exc.value)
    mem_a, _ = resolve_server_secret(None, {}, MemoryKeyStore())
    mem_b, _ = resolve_server_secret(None, {}, MemoryKeyStore())
    assert mem_a != mem_b


def test_generated_secret_is_logged_by_path_never_by_value(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    secret, _ = resolve_server_secret(None, {}, SqliteKeyStore(tmp_path / "k.db"))
    assert "k.db.server-secret" in caplog.text
    assert secret.decode() not in caplog.text
