"""Gateway API keys: generation, the HMAC that is stored instead of the key, and the key stores.

Owns: the key format ``mpx-<8-char id>-<secret>`` (``generate_key``, ``parse_key``; the secret
part carries 256 random bits, the id is visible and used for lookup), ``key_digest`` (HMAC-SHA256
under the server secret: the only form a key is ever stored in), ``ApiKey`` (one key's record and
its allow-list matching), ``KeyStore`` with three backends (``MemoryKeyStore``,
``SqliteKeyStore``, ``PostgresKeyStore``), ``KeyManager`` (create / look up with a short cache /
revoke) and ``resolve_server_secret`` (config, ``MODELPLEX_SERVER_SECRET``, or a generated secret
persisted with mode 0600 beside the SQLite key store).

The plaintext key exists only in the answer to the create call. Nothing here logs a key, a digest
or the server secret.

Must not touch: request authentication (``server.auth`` compares digests), HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import secrets
import sqlite3
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from modelplex.errors import ConfigError
from modelplex.server.db import DatabaseUnavailableError, PostgresDB, SqliteDB, is_unavailable

log = logging.getLogger("modelplex.server")

KEY_PREFIX = "mpx-"
ID_LENGTH = 8
ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
"""32 symbols without look-alikes (no l, o, 0, 1): 40 bits of visible id."""
_ID_CHARS = frozenset(ID_ALPHABET)
SECRET_BYTES = 32
"""Random bytes in the secret part: 256 bits (the brief asks for at least 128)."""
MIN_SERVER_SECRET = 16
SERVER_SECRET_ENV = "MODELPLEX_SERVER_SECRET"
SCHEMA_VERSION = 1

_KEY_COLUMNS = ("id", "name", "digest", "allowed_models", "allowed_tasks", "rpm", "tpm", "daily_usd",
                "monthly_usd", "prompt_logging", "metadata", "created_at", "revoked_at")


# ------------------------------------------------------------------------------------------ format


def generate_key() -> tuple[str, str]:
    """A new ``(key_id, plaintext)``: ``mpx-<id>-<secret>``."""
    key_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
    return key_id, f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_key(text: str) -> str | None:
    """The visible id of a well-formed key, else ``None`` (no secret check here)."""
    if len(text) < len(KEY_PREFIX) + ID_LENGTH + 2 or not text.startswith(KEY_PREFIX):
        return None
    key_id = text[len(KEY_PREFIX): len(KEY_PREFIX) + ID_LENGTH]
    if text[len(KEY_PREFIX) + ID_LENGTH] != "-" or not _ID_CHARS.issuperset(key_id):
        return None
    return key_id


def key_digest(server_secret: bytes, plaintext: str) -> str:
    """HMAC-SHA256 of the whole key under the server secret, hex."""
    return hmac.new(server_secret, plaintext.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------------------------ record


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One inference key. ``allowed_models``/``allowed_tasks`` are glob patterns (``*`` = any);
    ``auto`` requests count as the task ``auto``. ``prompt_logging=False`` opts the key's traffic
    out of prompt logging."""

    id: str
    name: str
    digest: str = field(repr=False)
    allowed_models: tuple[str, ...] = ("*",)
    allowed_tasks: tuple[str, ...] = ("*",)
    rpm: int | None = None
    tpm: int | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    prompt_logging: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}{self.id}"

    @property
    def has_budget(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None

    def allows_model(self, *names: str) -> bool:
        return _matches(self.allowed_models, names)

    def allows_task(self, name: str) -> bool:
        return "*" in self.allowed_tasks or _matches_cached(self.allowed_tasks, (name,))

    def to_public(self) -> dict[str, Any]:
        """Everything but the digest, for the admin API."""
        return {"id": self.id, "prefix": self.prefix, "name": self.name,
                "allowed_models": list(self.allowed_models), "allowed_tasks": list(self.allowed_tasks),
                "rpm": self.rpm, "tpm": self.tpm, "daily_usd": self.daily_usd, "monthly_usd": self.monthly_usd,
                "prompt_logging": self.prompt_logging, "metadata": self.metadata, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "active": self.active}

    def to_row(self) -> tuple[Any, ...]:
        return (self.id, self.name, self.digest, orjson.dumps(list(self.allowed_models)).decode(),
                orjson.dumps(list(self.allowed_tasks)).decode(), self.rpm, self.tpm, self.daily_usd,
                self.monthly_usd, self.prompt_logging, orjson.dumps(self.metadata).decode(), self.created_at,
                self.revoked_at)

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> ApiKey:
        d = dict(zip(_KEY_COLUMNS, row, strict=True))
        return cls(id=d["id"], name=d["name"], digest=d["digest"],
                   allowed_models=tuple(orjson.loads(d["allowed_models"])),
                   allowed_tasks=tuple(orjson.loads(d["allowed_tasks"])),
                   rpm=d["rpm"], tpm=d["tpm"], daily_usd=d["daily_usd"], monthly_usd=d["monthly_usd"],
                   prompt_logging=bool(d["prompt_logging"]), metadata=orjson.loads(d["metadata"] or "{}"),
                   created_at=float(d["created_at"]),
                   revoked_at=float(d["revoked_at"]) if d["revoked_at"] is not None else None)


def _matches(patterns: tuple[str, ...], names: tuple[str, ...]) -> bool:
    if "*" in patterns:
        return True
    return _matches_cached(patterns, names)


@lru_cache(maxsize=8192)
def _matches_cached(patterns: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Allow-list answers are pure functions of (patterns, names): memoised, bounded."""
    return any(fnmatchcase(n, p) for p in patterns for n in names if n)


# ------------------------------------------------------------------------------------------ stores


class KeyStore(ABC):
    """Where key records live. ``insert`` returns False when the id exists (the caller retries)."""

    name = "abstract"
    location: str | None = None
    """The SQLite path (for the server-secret file), else ``None``."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Create tables; idempotent."""

    @abstractmethod
    async def insert(self, key: ApiKey) -> bool: ...

    @abstractmethod
    async def get(self, key_id: str) -> ApiKey | None: ...

    @abstractmethod
    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]: ...

    @abstractmethod
    async def revoke(self, key_id: str, at: float) -> ApiKey | None:
        """Mark revoked (first revocation time wins); ``None`` for an unknown id."""

    @abstractmethod
    async def health(self) -> dict[str, Any]: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemoryKeyStore(KeyStore):
    """Keys in this process only (tests, the demo, ``--no-auth`` development)."""

    name = "memory"

    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}

    async def insert(self, key: ApiKey) -> bool:
        if key.id in self._keys:
            return False
        self._keys[key.id] = key
        return True

    async def get(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        keys = sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))
        return keys if include_revoked else [k for k in keys if k.active]

    async def revoke(self, key_id: str, at: float) -> ApiKey | None:
        key = self._keys.get(key_id)
        if key is None:
            return None
        if key.revoked_at is None:
            key = replace(key, revoked_at=at)
            self._keys[key_id] = key
        return key

    async def health(self) -> dict[str, Any]:
        return {"backend": "memory", "ok": True, "keys": len(self._keys)}


_TABLE_SQL = """CREATE TABLE IF NOT EXISTS gateway_api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    digest         TEXT NOT NULL,
    allowed_models TEXT NOT NULL,
    allowed_tasks  TEXT NOT NULL,
    rpm            BIGINT,
    tpm            BIGINT,
    daily_usd      DOUBLE PRECISION,
    monthly_usd    DOUBLE PRECISION,
    prompt_logging BOOLEAN NOT NULL DEFAULT TRUE,
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     DOUBLE PRECISION NOT NULL,
    revoked_at     DOUBLE PRECISION
)"""
_SELECT = f"SELECT {', '.join(_KEY_COLUMNS)} FROM gateway_api_keys"


class SqliteKeyStore(KeyStore):
    """Keys in a SQLite file (by default the usage database: its own table, its own schema version)."""

    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.db = SqliteDB(path)
        self.location = str(path)

    async def start(self) -> None:
        await self.db.ensure("api_keys", SCHEMA_VERSION, [_TABLE_SQL])

    async def insert(self, key: ApiKey) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            try:
                conn.execute(f"INSERT INTO gateway_api_keys ({', '.join(_KEY_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(_KEY_COLUMNS))})", key.to_row())
            except sqlite3.IntegrityError:
                return False
            return True

        return await self.db.run(write)

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self.db.run(lambda c: c.execute(f"{_SELECT} WHERE id = ?", (key_id,)).fetchone())
        return ApiKey.from_row(row) if row is not None else None

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = await self.db.run(lambda c: c.execute(f"{_SELECT}{where} ORDER BY created_at, id").fetchall())
        return [ApiKey.from_row(r) for r in rows]

    async def revoke(self, key_id: str, at: float) -> ApiKey | None:
        def write(conn: sqlite3.Connection) -> Any:
            conn.execute("UPDATE gateway_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (at, key_id))
            return conn.execute(f"{_SELECT} WHERE id = ?", (key_id,)).fetchone()

        row = await self.db.run(write)
        return ApiKey.from_row(row) if row is not None else None

    async def health(self) -> dict[str, Any]:
        return await self.db.health()

    async def close(self) -> None:
        await self.db.close()


class PostgresKeyStore(KeyStore):
    """Keys in PostgreSQL, shared by every gateway replica."""

    name = "postgres"

    def __init__(self, dsn: str, *, schema: str | None = None) -> None:
        self.db = PostgresDB(dsn, schema=schema)

    async def start(self) -> None:
        await self.db.ensure("api_keys", SCHEMA_VERSION, [_TABLE_SQL])

    async def insert(self, key: ApiKey) -> bool:
        pool = await self.db.pool()
        placeholders = ", ".join(f"${i}" for i in range(1, len(_KEY_COLUMNS) + 1))
        status = await pool.execute(f"INSERT INTO gateway_api_keys ({', '.join(_KEY_COLUMNS)}) VALUES "
                                    f"({placeholders}) ON CONFLICT (id) DO NOTHING", *key.to_row())
        return status.endswith(" 1")

    async def get(self, key_id: str) -> ApiKey | None:
        pool = await self.db.pool()
        row = await pool.fetchrow(f"{_SELECT} WHERE id = $1", key_id)
        return ApiKey.from_row(tuple(row)) if row is not None else None

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        pool = await self.db.pool()
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = await pool.fetch(f"{_SELECT}{where} ORDER BY created_at, id")
        return [ApiKey.from_row(tuple(r)) for r in rows]

    async def revoke(self, key_id: str, at: float) -> ApiKey | None:
        pool = await self.db.pool()
        await pool.execute("UPDATE gateway_api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                           at, key_id)
        return await self.get(key_id)

    async def health(self) -> dict[str, Any]:
        return await self.db.health()

    async def close(self) -> None:
        await self.db.close()


def make_key_store(kind: str, *, path: str | None = None, dsn: str | None = None) -> KeyStore:
    """``memory``, ``sqlite`` (``path``) or ``postgres`` (``dsn``)."""
    if kind == "memory":
        return MemoryKeyStore()
    if kind == "sqlite":
        if not path:
            raise ConfigError("the SQLite key store needs a path", key="accounting.path")
        return SqliteKeyStore(path)
    if kind == "postgres":
        if not dsn:
            raise ConfigError("the PostgreSQL key store needs a DSN", key="accounting.dsn")
        return PostgresKeyStore(dsn)
    raise ConfigError(f"unknown key store {kind!r}: use memory, sqlite or postgres", key="server.key_store")


# ------------------------------------------------------------------------------------------ secret


def resolve_server_secret(configured: str | None, env: Mapping[str, str], store: KeyStore) -> tuple[bytes, str]:
    """``(secret, where it came from)``. Order: config, ``MODELPLEX_SERVER_SECRET``, a file beside
    the SQLite key store (created with mode 0600 on first start), a per-process secret for the
    memory store. A PostgreSQL store needs an explicit secret: replicas must share it."""
    value = configured or env.get(SERVER_SECRET_ENV)
    if value:
        if len(value) < MIN_SERVER_SECRET:
            raise ConfigError(f"the server secret must be at least {MIN_SERVER_SECRET} characters",
                              key="server.server_secret")
        return value.encode(), "config" if configured else SERVER_SECRET_ENV
    if isinstance(store, MemoryKeyStore) or store.location == ":memory:":
        return secrets.token_bytes(32), "generated for this process (in-memory key store)"
    if store.location:
        return _secret_file(Path(store.location + ".server-secret"))
    raise ConfigError("set server.server_secret or MODELPLEX_SERVER_SECRET: a PostgreSQL key store is shared "
                      "by replicas, which must all hash keys with the same secret", key="server.server_secret")


def _secret_file(path: Path) -> tuple[bytes, str]:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("server secret file %s is readable by others (mode %o); chmod 600 it", path, mode)
        value = ""
        for _ in range(40):  # another worker may have created the file and not written it yet
            value = path.read_text(encoding="utf-8").strip()
            if value:
                break
            time.sleep(0.05)
        if len(value) < MIN_SERVER_SECRET:
            raise ConfigError(f"server secret file {path} is empty or too short", key="server.server_secret") from None
        return value.encode(), f"file {path}"
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    log.warning("no server secret configured: generated one and saved it to %s (mode 0600). Keep that file, "
                "or set MODELPLEX_SERVER_SECRET: API keys cannot be verified without it.", path)
    return value.encode(), f"file {path} (generated)"


# ------------------------------------------------------------------------------------------ manager


class KeyManager:
    """Creates, looks up and revokes keys over a ``KeyStore``.

    Lookups are cached for ``cache_ttl`` seconds (unknown ids too, so random ids cannot hammer the
    database); a revocation through this manager takes effect at once, one through another replica
    within ``cache_ttl``. Concurrent lookups of an id that is not cached share one store read (when
    an entry expires under load, the requests in flight do not each queue a read), and a read that
    was in flight when a key was created or revoked here is not cached.

    When the store cannot be reached (``db.is_unavailable``: PostgreSQL down, SQLite locked past its
    busy timeout), a lookup answers from the expired cache entry it still holds (the key as last read,
    revocations from other replicas not seen until the store is back), and an id it never read raises
    ``DatabaseUnavailableError`` (503 with a Retry-After). For the next ``retry_after`` seconds lookups
    answer so at once, without asking the store (no request waits out a connect timeout); then the next
    lookup asks it again. One warning says the store went away and one that it came back, not a line
    per request.
    """

    def __init__(self, store: KeyStore, server_secret: bytes, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, cache_ttl: float = 5.0,
                 cache_size: int = 10_000) -> None:
        self.store = store
        self._secret = server_secret
        self._clock = clock
        self._mono = monotonic
        self._ttl = cache_ttl
        self._size = cache_size
        self._cache: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Task[ApiKey | None]] = {}
        self._epoch = 0
        """Bumped by every create and revoke here: a store read started before one is not cached."""
        self._mac = hmac.new(server_secret, digestmod=hashlib.sha256)  # keyed once; copied per digest
        self._down_since: float | None = None
        """Monotonic time the store was first found unreachable, while it stays so."""
        self._retry_at = 0.0
        self._down_error: BaseException | None = None

    def digest(self, plaintext: str) -> str:
        """``key_digest(server_secret, plaintext)``."""
        mac = self._mac.copy()
        mac.update(plaintext.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    async def create(self, name: str, *, allowed_models: Iterable[str] = ("*",), allowed_tasks: Iterable[str] = ("*",),
                     rpm: int | None = None, tpm: int | None = None, daily_usd: float | None = None,
                     monthly_usd: float | None = None, prompt_logging: bool = True,
                     metadata: Mapping[str, Any] | None = None) -> tuple[ApiKey, str]:
        """A new key and its plaintext (returned once, never stored)."""
        if not name:
            raise ValueError("a key needs a name")
        for label, v in (("rpm", rpm), ("tpm", tpm)):
            if v is not None and v < 1:
                raise ValueError(f"{label} must be at least 1")
        for label, f in (("daily_usd", daily_usd), ("monthly_usd", monthly_usd)):
            if f is not None and not (f >= 0 and math.isfinite(f)):
                raise ValueError(f"{label} must be a finite number >= 0")
        for _ in range(8):
            key_id, plaintext = generate_key()
            key = ApiKey(id=key_id, name=name, digest=self.digest(plaintext), allowed_models=tuple(allowed_models),
                         allowed_tasks=tuple(allowed_tasks), rpm=rpm, tpm=tpm, daily_usd=daily_usd,
                         monthly_usd=monthly_usd, prompt_logging=prompt_logging, metadata=dict(metadata or {}),
                         created_at=self._clock())
            if await self.store.insert(key):
                self._invalidate(key_id)
                log.info("api key created id=%s name=%r", key_id, name)
                return key, plaintext
        raise RuntimeError("could not allocate a unique key id")  # 8 collisions in 2**40: not plausible

    def cached(self, key_id: str) -> ApiKey | None:
        """The record for an id while its cache entry is fresh, else ``None`` (then ``lookup``)."""
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > self._mono():
            return hit[1]
        return None

    async def lookup(self, key_id: str) -> ApiKey | None:
        """The key record for an id (cached), or ``None``."""
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > self._mono():
            return hit[1]
        if self._down_since is not None and self._mono() < self._retry_at:  # no request waits on a dead store
            return self._stale(key_id, None)
        loop = asyncio.get_running_loop()
        loading = self._loading.get(key_id)
        if loading is None or loading.get_loop() is not loop:
            loading = loop.create_task(self._load(key_id))
            self._loading[key_id] = loading
            loading.add_done_callback(lambda task: self._loaded(key_id, task))
        return await asyncio.shield(loading)  # a caller that goes away does not cancel the others' read

    async def _load(self, key_id: str) -> ApiKey | None:
        epoch, now = self._epoch, self._mono()
        try:
            key = await self.store.get(key_id)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            return self._stale(key_id, exc)
        if self._down_since is not None:
            log.warning("api key store %s is back after %.1fs", self.store.name, now - self._down_since)
            self._down_since = None
        if epoch == self._epoch:
            self._cache[key_id] = (now + self._ttl, key)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return key

    def _stale(self, key_id: str, exc: BaseException | None) -> ApiKey | None:
        """The last record read for ``key_id`` while the store is unreachable, else the 503 error. ``exc``: the
        store's failure just now (the store is then not asked again for ``DatabaseUnavailableError.retry_after``
        seconds); ``None`` within that time."""
        if exc is not None:
            self._retry_at = self._mono() + DatabaseUnavailableError.retry_after
            self._down_error = exc
            if self._down_since is None:
                self._down_since = self._mono()
                log.warning("api key store %s unreachable (%s): serving keys as last read; ids never read get 503",
                            self.store.name, type(exc).__name__)
        hit = self._cache.get(key_id)
        if hit is not None:
            return hit[1]
        raise DatabaseUnavailableError(f"the API key store ({self.store.name})",
                                       self._down_error or ConnectionError("unreachable")) from None

    def _loaded(self, key_id: str, task: asyncio.Task[ApiKey | None]) -> None:
        if self._loading.get(key_id) is task:
            del self._loading[key_id]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone away

    def _invalidate(self, key_id: str) -> None:
        self._epoch += 1
        self._cache.pop(key_id, None)
        self._loading.pop(key_id, None)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self.store.get(key_id)

    async def list(self, *, include_revoked: bool = True) -> list[ApiKey]:
        return await self.store.list(include_revoked=include_revoked)

    async def revoke(self, key_id: str) -> ApiKey | None:
        key = await self.store.revoke(key_id, self._clock())
        self._invalidate(key_id)
        if key is not None:
            log.info("api key revoked id=%s", key_id)
        return key


__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "KeyManager",
    "KeyStore",
    "MemoryKeyStore",
    "PostgresKeyStore",
    "SqliteKeyStore",
    "generate_key",
    "key_digest",
    "make_key_store",
    "parse_key",
    "resolve_server_secret",
]
