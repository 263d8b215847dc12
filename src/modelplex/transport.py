"""HTTP sessions and the background loop behind the sync API.

Owns: ``SessionPool`` (one aiohttp ``ClientSession`` per event loop, created lazily, or a factory
injected by tests) and ``LoopThread`` (one event loop in a daemon thread; the sync facade submits
coroutines to it, so sync calls are safe from any number of threads and never call ``asyncio.run``
inside a running loop, which the seed's factory does).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")

SessionFactory = Callable[[], "aiohttp.ClientSession"]


def default_session() -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30,
                                     enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, json_serialize=None,  # type: ignore[arg-type]
                                 auto_decompress=True, trust_env=False, skip_auto_headers=("User-Agent",),
                                 headers={"User-Agent": "modelplex"})


class SessionPool:
    """A session per running event loop. Sessions are closed by ``aclose``/``close_all``."""

    def __init__(self, factory: SessionFactory | None = None) -> None:
        self._factory = factory or default_session
        self._sessions: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}
        self._lock = threading.Lock()
        self._last: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None
        """The most recently used entry: most programs use one loop, so this answers without a lookup."""

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop and not last[1].closed:
            return last[1]
        entry = self._sessions.get(id(loop))
        if entry is not None and entry[0] is loop and not entry[1].closed:
            self._last = entry
            return entry[1]
        with self._lock:
            session = self._factory()
            self._sessions[id(loop)] = self._last = (loop, session)
            return session

    async def aclose_current(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._sessions.pop(id(loop), None)
        if self._last is not None and self._last[0] is loop:
            self._last = None
        if entry is not None and not entry[1].closed:
            await entry[1].close()

    def sessions(self) -> list[tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]]:
        return list(self._sessions.values())

    def has_orphans(self) -> bool:
        return any(loop.is_closed() for loop, _s in list(self._sessions.values()))

    async def aclose_orphans(self) -> int:
        """Let go of the sessions whose event loop is closed (``asyncio.run`` ended without the router's
        ``aclose``): they can no longer close on their own loop, and each would warn "Unclosed client
        session" when collected. Returns how many there were."""
        with self._lock:
            orphans = [key for key, (loop, _s) in self._sessions.items() if loop.is_closed()]
            entries = [self._sessions.pop(key) for key in orphans]
            if self._last is not None and self._last[0].is_closed():
                self._last = None
        for _loop, session in entries:
            connector = session.connector
            session.detach()  # the session counts as closed from here on
            if connector is not None and not connector.closed:
                await connector.close()  # on a closed loop this marks it closed; the sockets go with it
        return len(entries)

    def forget(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sessions.pop(id(loop), None)
        if self._last is not None and self._last[0] is loop:
            self._last = None


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str = "modelplex-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()

                def run() -> None:
                    loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(loop)
                    self._loop = loop
                    ready.set()
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
            assert self._loop is not None
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    @property
    def started(self) -> bool:
        return self._loop is not None

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
            self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
