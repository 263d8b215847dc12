"""Redis state: breaker records, rate-limit buckets and budget reservations shared by gateway replicas.

Owns: ``RedisState`` and its Lua scripts. ``reserve``, ``settle``, ``release``, ``usage`` and
``rate_limit`` are each one Lua script, so they are atomic across replicas and cost one round-trip.
``redis`` (redis-py's asyncio client) is imported lazily: it is the optional ``[redis]`` extra.

Every operation is bounded by ``timeout`` seconds (socket timeouts and a hard ``asyncio.timeout``),
with no client-side retries; any Redis failure surfaces as ``StateUnavailableError`` so that
``FallbackState`` can serve from local memory instead of stalling requests.

Time: scripts take ``now`` from the injected clock's ``wall()`` (epoch seconds) rather than Redis'
``TIME``, so tests drive them with a fake clock; replicas need NTP-synchronised clocks (a skew of
*d* seconds shifts a window or a hold expiry by *d*). Redis TTLs (``PX``) are used only to garbage
collect keys, with margins well beyond the logical expiry.

Key layout under ``prefix``: ``kv:<key>`` (get/set/incr), ``rl:<key>`` (GCRA theoretical arrival
time), ``bu:<key>`` (hash: ``spent``, ``reserved``, ``a:<reservation id>`` per hold), ``bz:<key>``
(sorted set of holds by expiry) and ``res:<id>`` (hash: ``state``, ``keys``, ``amount``, ``key_px``).
The settle/release scripts derive ``bu:``/``bz:`` keys from the record, so a single Redis (or a
Sentinel-managed primary) is supported, not Redis Cluster.

Must not touch: breaker/budget policy, logging configuration, any event loop but the one in use.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from modelplex.errors import ConfigError
from modelplex.resilience.clock import Clock, SystemClock
from modelplex.state.base import (
    EPSILON,
    RESERVATION_RECORD_RETENTION,
    JSONValue,
    StateBackend,
    StateUnavailableError,
    check_amount,
    check_rate_args,
    check_ttl,
    normalise_key_limits,
)

T = TypeVar("T")

_LUA_COMMON = f"local EPS = {EPSILON!r}\n" + """
local function fmt(x) return string.format('%.17g', x) end
local function unhold(h, z, rid)
  redis.call('ZREM', z, rid)
  local a = redis.call('HGET', h, 'a:' .. rid)
  if not a then return end
  redis.call('HDEL', h, 'a:' .. rid)
  if redis.call('ZCARD', z) == 0 then
    redis.call('HSET', h, 'reserved', '0')
  else
    local v = tonumber(redis.call('HINCRBYFLOAT', h, 'reserved', fmt(-tonumber(a))))
    if v < 0 then redis.call('HSET', h, 'reserved', '0') end
  end
end
local function purge(h, z, now)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', fmt(now), 'LIMIT', 0, 512)
  for _, rid in ipairs(expired) do unhold(h, z, rid) end
end
"""

# KEYS: record, hash_1..hash_n, zset_1..zset_n
# ARGV: now, amount, ttl, record_px, key_px (0 = none), rid, n, limit_1..limit_n, keys_json
_LUA_RESERVE = _LUA_COMMON + """
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local rec_px = tonumber(ARGV[4])
local key_px = tonumber(ARGV[5])
local rid = ARGV[6]
local n = tonumber(ARGV[7])
local st = redis.call('HGET', KEYS[1], 'state')
if st then
  if st == 'reserved' then return {1, 0} end
  return {0, 0}
end
local totals = {}
for i = 1, n do
  local h = KEYS[1 + i]
  purge(h, KEYS[1 + n + i], now)
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  local spent = tonumber(v[1]) or 0
  local reserved = tonumber(v[2]) or 0
  if spent + reserved + amount > tonumber(ARGV[7 + i]) + EPS then return {0, i, fmt(spent + reserved)} end
  totals[i] = fmt(spent + reserved + amount)
end
local hold_until = fmt(now + ttl)
for i = 1, n do
  local h = KEYS[1 + i]
  local z = KEYS[1 + n + i]
  redis.call('HINCRBYFLOAT', h, 'reserved', ARGV[2])
  redis.call('HSET', h, 'a:' .. rid, ARGV[2])
  redis.call('ZADD', z, hold_until, rid)
  if key_px > 0 then
    redis.call('PEXPIRE', h, key_px)
    redis.call('PEXPIRE', z, key_px)
  end
end
redis.call('HSET', KEYS[1], 'state', 'reserved', 'keys', ARGV[8 + n], 'amount', ARGV[2], 'key_px', ARGV[5])
redis.call('PEXPIRE', KEYS[1], rec_px)
return {1, 0, unpack(totals)}
"""

# KEYS: record.  ARGV: prefix, rid, now, actual ('' = release)
_LUA_FINISH = _LUA_COMMON + """
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'reserved' then return 0 end
local names = cjson.decode(redis.call('HGET', KEYS[1], 'keys'))
local key_px = tonumber(redis.call('HGET', KEYS[1], 'key_px')) or 0
local now = tonumber(ARGV[3])
local settle = ARGV[4] ~= ''
for _, name in ipairs(names) do
  local h = ARGV[1] .. 'bu:' .. name
  local z = ARGV[1] .. 'bz:' .. name
  purge(h, z, now)
  unhold(h, z, ARGV[2])
  if settle then
    redis.call('HINCRBYFLOAT', h, 'spent', ARGV[4])
    if key_px > 0 then redis.call('PEXPIRE', h, key_px) end
  end
end
if settle then
  redis.call('HSET', KEYS[1], 'state', 'settled')
else
  redis.call('HSET', KEYS[1], 'state', 'released')
end
return 1
"""

# KEYS: hash, zset.  ARGV: now
_LUA_USAGE = _LUA_COMMON + """
purge(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
return {v[1] or '0', v[2] or '0'}
"""

# KEYS: bucket.  ARGV: now, limit, window, cost, force ('1'/'0').  Mirrors state.base.gcra().
_LUA_RATE = _LUA_COMMON + """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local force = ARGV[5] == '1'
local interval = window / limit
local tat = tonumber(redis.call('GET', KEYS[1]))
local base = now
if tat and tat > now then base = tat end
local function store(t)
  local px = math.ceil((t - now) * 1000) + 1000
  redis.call('SET', KEYS[1], fmt(t), 'PX', px)
end
if cost < 0 then
  local t = base + cost * interval
  if t < now then t = now end
  store(t)
  return {1, '0'}
end
local new_tat = base + cost * interval
if cost > limit * (1 + EPS) then
  if force then store(new_tat) end
  return {0, 'inf'}
end
local allowed = (new_tat - now) <= window * (1 + EPS)
if (allowed or force) and cost > 0 then store(new_tat) end
if allowed then return {1, '0'} end
local ra = new_tat - window - now
if ra < 0 then ra = 0 end
return {0, fmt(ra)}
"""


def redact_url(url: str) -> str:
    """The URL without its password, safe to log and to show in /health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:***@{host}" if user else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _px(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _f(x: float) -> str:
    return repr(float(x))


_LAST_SEEN_MAX = 10_000


class RedisState(StateBackend):
    """State in Redis, shared by every replica that uses the same URL and prefix."""

    name = "redis"
    shared = True

    def __init__(self, url: str, *, prefix: str = "modelplex:", clock: Clock | None = None,
                 timeout: float = 0.25, max_connections: int = 64,
                 record_retention: float = RESERVATION_RECORD_RETENTION) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"expected a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}",
                              key="state")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}", key="state")
        self.url = url
        self.prefix = prefix
        self._clock: Clock = clock or SystemClock()
        self._timeout = float(timeout)
        self._max_connections = max_connections
        self._retention = record_retention
        self._client: Any = None
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self.last_seen: OrderedDict[str, float] = OrderedDict()
        """Each budget key's committed total (spent + reserved) as this process's last reservation on it
        saw it (at most ``_LAST_SEEN_MAX`` keys, the first seen dropped first): what ``FallbackState``
        starts a key's local count from when Redis stops answering, so an outage does not reopen the
        whole budget."""

    def __repr__(self) -> str:
        return f"RedisState({redact_url(self.url)!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError("the redis state backend needs the redis package: pip install 'modelplex[redis]'",
                              key="state") from e
        self._pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._max_connections,
            timeout=self._timeout,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = Redis(connection_pool=self._pool)
        self._loop = loop
        self._scripts = {
            "reserve": self._client.register_script(_LUA_RESERVE),
            "finish": self._client.register_script(_LUA_FINISH),
            "usage": self._client.register_script(_LUA_USAGE),
            "rate": self._client.register_script(_LUA_RATE),
        }
        return self._client

    async def _call(self, op: Callable[[Any], Awaitable[T]], *, timeout: float | None = None) -> T:
        from redis.exceptions import RedisError

        try:
            client = self._connect()
            async with asyncio.timeout(timeout or self._timeout):
                return await op(client)
        except (RedisError, OSError, TimeoutError) as e:
            reason = type(e).__name__ if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            raise StateUnavailableError(reason, backend=self.name, cause=e) from e

    def _k(self, space: str, key: str) -> str:
        return f"{self.prefix}{space}:{key}"

    # ------------------------------------------------------------------ key/value

    async def get(self, key: str) -> JSONValue | None:
        raw = await self._call(lambda c: c.get(self._k("kv", key)))
        return None if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: JSONValue, ttl: float | None = None) -> None:
        check_ttl(ttl)
        raw = orjson.dumps(value)
        px = None if ttl is None else _px(ttl)
        await self._call(lambda c: c.set(self._k("kv", key), raw, px=px))

    async def delete(self, key: str) -> None:
        await self._call(lambda c: c.delete(self._k("kv", key)))

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        check_ttl(ttl)
        check_amount(amount)
        k = self._k("kv", key)

        async def op(c: Any) -> Any:
            async with c.pipeline(transaction=True) as pipe:
                pipe.incrbyfloat(k, float(amount))
                if ttl is not None:
                    pipe.pexpire(k, _px(ttl))
                return await pipe.execute()

        results = await self._call(op)
        return float(results[0])

    # ------------------------------------------------------------------ rate limits

    async def rate_limit(self, key: str, limit: float, window_s: float, cost: float = 1.0, *,
                         force: bool = False) -> tuple[bool, float]:
        check_rate_args(limit, window_s, cost)
        now = self._clock.wall()
        args = [_f(now), _f(limit), _f(window_s), _f(cost), "1" if force else "0"]
        k = self._k("rl", key)
        allowed, retry_after = await self._call(
            lambda c: self._scripts["rate"](keys=[k], args=args, client=c))
        return bool(int(allowed)), float(retry_after)

    # ------------------------------------------------------------------ budget reservations

    async def reserve(self, key_limits: Sequence[tuple[str, float]], amount: float, reservation_id: str,
                      ttl: float, *, key_ttl: float | None = None) -> tuple[bool, str | None]:
        limits = normalise_key_limits(key_limits, amount, ttl)
        check_ttl(key_ttl, "key_ttl")
        names = [k for k, _ in limits]
        keys = ([self._k("res", reservation_id)] + [self._k("bu", k) for k in names]
                + [self._k("bz", k) for k in names])
        args: list[str] = [
            _f(self._clock.wall()), _f(amount), _f(ttl), str(_px(ttl + self._retention)),
            str(_px(key_ttl)) if key_ttl is not None else "0", reservation_id, str(len(names)),
            *(_f(limit) for _, limit in limits), orjson.dumps(names).decode(),
        ]
        ok, failed, *totals = await self._call(lambda c: self._scripts["reserve"](keys=keys, args=args, client=c))
        failed = int(failed)
        seen = self.last_seen
        if failed and totals:
            seen[names[failed - 1]] = float(totals[0])
        else:
            for name, total in zip(names, totals, strict=False):
                seen[name] = float(total)
        while len(seen) > _LAST_SEEN_MAX:
            seen.popitem(last=False)
        return bool(int(ok)), (names[failed - 1] if failed else None)

    async def _finish(self, reservation_id: str, actual: str) -> bool:
        keys = [self._k("res", reservation_id)]
        args = [self.prefix, reservation_id, _f(self._clock.wall()), actual]
        applied = await self._call(lambda c: self._scripts["finish"](keys=keys, args=args, client=c))
        return bool(int(applied))

    async def settle(self, reservation_id: str, actual: float) -> bool:
        check_amount(actual, "actual")
        return await self._finish(reservation_id, _f(actual))

    async def release(self, reservation_id: str) -> bool:
        return await self._finish(reservation_id, "")

    async def usage(self, key: str) -> tuple[float, float]:
        keys = [self._k("bu", key), self._k("bz", key)]
        args = [_f(self._clock.wall())]
        spent, reserved = await self._call(lambda c: self._scripts["usage"](keys=keys, args=args, client=c))
        return float(spent), float(reserved)

    async def add_spent(self, key: str, amount: float, *, key_ttl: float | None = None) -> float:
        check_amount(amount)
        check_ttl(key_ttl, "key_ttl")
        h = self._k("bu", key)

        async def op(c: Any) -> Any:
            async with c.pipeline(transaction=True) as pipe:
                pipe.hincrbyfloat(h, "spent", float(amount))
                if key_ttl is not None:
                    pipe.pexpire(h, _px(key_ttl))
                return await pipe.execute()

        results = await self._call(op)
        return float(results[0])

    # ------------------------------------------------------------------ lifecycle

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": self.name, "url": redact_url(self.url), "prefix": self.prefix,
                                  "degraded": False}
        started = time.perf_counter()
        try:
            await self._call(lambda c: c.ping())
        except StateUnavailableError as e:
            report.update(ok=False, error=str(e))
        else:
            report.update(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 3))
        return report

    async def clear(self) -> None:
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in self.prefix) + "*"

        async def op(c: Any) -> None:
            batch: list[bytes] = []
            async for key in c.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    await c.unlink(*batch)
                    batch = []
            if batch:
                await c.unlink(*batch)

        await self._call(op, timeout=max(30.0, self._timeout))
        self.last_seen.clear()

    async def close(self) -> None:
        client, pool, loop = self._client, self._pool, self._loop
        self._client = self._pool = self._loop = None
        self._scripts = {}
        # Connections made on another loop (one asyncio.run ended, a parent process's in a forked child)
        # cannot be closed from this one: awaiting their close would wait on a loop that never runs.
        if client is not None and loop is asyncio.get_running_loop():
            try:
                await client.aclose()
                await pool.disconnect()
            except Exception:  # closing a dead connection must not raise
                pass
