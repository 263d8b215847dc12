"""HTTP sessions and the background loop behind the sync API.

Owns: ``SessionPool`` (one aiohttp ``ClientSession`` per event loop, created lazily, or a factory
injected by tests) and ``LoopThread`` (one event loop in a daemon thread; the sync facade submits
coroutines to it, so sync calls are safe from any number of threads and never call ``asyncio.run``
inside a running loop, which the seed's factory does); and ``after_fork`` (objects reset in a child
process).

Loops that end: a session made on a loop that ``asyncio.run`` (or anything else that calls
``loop.shutdown_asyncgens()``) then closes is closed on that loop as it shuts down, through an async
generator the loop finalizes, so a program that runs one ``asyncio.run`` per job keeps no sockets open.

Fork: in a child process the parent's loop thread and connections do not exist; objects registered
with ``after_fork`` start over there (a new loop thread, new sessions) on first use. What they held
in the parent is disowned, never closed in the child: those sockets, and the epoll instance the
parent's loop polls them with, are shared with the parent, and a close here would unregister them
there. The parent's loops get a selector that ignores unregistrations, and its sessions are detached
with their connection pools emptied, so nothing collected in the child reaches the parent's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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


class ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[Any] = weakref.WeakSet()


def after_fork(obj: ForkAware) -> None:
    """Call ``obj._after_fork()`` in every child process forked from now on (``obj`` is held weakly)."""
    _FORK_AWARE.add(obj)


def _reset_in_child() -> None:
    for obj in list(_FORK_AWARE):
        try:
            obj._after_fork()
        except Exception:  # one object that cannot start over must not stop the others
            logging.getLogger("modelplex.transport").exception("resetting %r after fork failed", obj)


class _NullSelector:
    """Stands in, in a forked child, for the selector of a parent's loop: the epoll instance is shared
    with the parent, so a transport closed here must not unregister the parent's sockets from it."""

    def get_key(self, fileobj: Any) -> Any:
        raise KeyError(fileobj)

    def unregister(self, fileobj: Any) -> Any:
        raise KeyError(fileobj)

    def close(self) -> None:
        pass


def _disown_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Make a parent's loop inert in a forked child: whatever is closed on it later (a session or a
    Redis connection collected here) touches nothing the parent still uses."""
    if hasattr(loop, "_selector"):
        loop._selector = _NullSelector()  # type: ignore[attr-defined]


def _disown_session(session: Any) -> None:
    """Drop a parent's session in a forked child without closing its connections (closing them here would
    act on the parent's sockets and poller): detached, its connector marked closed and emptied."""
    connector = getattr(session, "connector", None)
    try:
        session.detach()
    except Exception:
        pass
    if connector is not None:
        conns = getattr(connector, "_conns", None)
        if isinstance(conns, dict):
            conns.clear()
        try:
            connector._closed = True
        except AttributeError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


async def _close_with_loop(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> AsyncIterator[None]:
    """Suspended for the session's life; finalized by ``loop.shutdown_asyncgens()`` (``asyncio.run``'s
    teardown), it closes the session on its own loop while that loop still runs."""
    try:
        yield
    finally:
        if not session.closed and not loop.is_closed():
            await session.close()


class SessionPool:
    """A session per running event loop. Sessions are closed by ``aclose``/``close_all``, or when their
    loop shuts down its async generators (``asyncio.run``)."""

    def __init__(self, factory: SessionFactory | None = None) -> None:
        self._factory = factory or default_session
        self._sessions: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}
        self._closers: dict[int, AsyncIterator[None]] = {}
        self._lock = threading.Lock()
        self._last: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None
        """The most recently used entry: most programs use one loop, so this answers without a lookup."""
        self._inherited: list[Any] = []
        """A parent process's sessions, in a forked child: kept, never closed or collected there."""
        after_fork(self)

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
            self._drop_finished()
            session = self._factory()
            self._sessions[id(loop)] = self._last = (loop, session)
            self._closers[id(loop)] = self._watch(loop, session)
            return session

    @staticmethod
    def _watch(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> AsyncIterator[None]:
        """Start ``_close_with_loop`` on ``loop`` (called on it: its first step registers the generator
        with the loop, which finalizes it at shutdown) and return it, suspended."""
        closer = _close_with_loop(loop, session)
        try:
            closer.__anext__().send(None)  # type: ignore[attr-defined]
        except StopIteration:
            pass
        return closer

    def _drop_finished(self) -> None:
        """Forget the entries whose session is closed and whose loop is gone (caller holds the lock)."""
        for key in [k for k, (loop, session) in self._sessions.items() if session.closed and loop.is_closed()]:
            del self._sessions[key]
            self._finish_closer(key)

    def _finish_closer(self, key: int) -> None:
        """End the loop-shutdown watcher of a session closed otherwise, without its loop (its ``finally``
        does nothing then), so it is never finalized on a loop that is gone."""
        closer = self._closers.pop(key, None)
        if closer is None:
            return
        try:
            closer.aclose().send(None)  # type: ignore[attr-defined]
        except (StopIteration, RuntimeError):
            pass

    def _after_fork(self) -> None:
        for loop, session in self._sessions.values():
            _disown_loop(loop)
            _disown_session(session)
        self._inherited.append(self._closers)  # suspended generators: never finalized here
        self._sessions, self._closers, self._last = {}, {}, None
        self._lock = threading.Lock()

    async def aclose_current(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._sessions.pop(id(loop), None)
        if self._last is not None and self._last[0] is loop:
            self._last = None
        if entry is not None and not entry[1].closed:
            await entry[1].close()
        self._finish_closer(id(loop))

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
            for key in orphans:
                self._finish_closer(key)
        entries = [(loop, session) for loop, session in entries if not session.closed]
        for _loop, session in entries:
            connector = session.connector
            session.detach()  # the session counts as closed from here on
            if connector is not None and not connector.closed:
                await connector.close()  # on a closed loop this marks it closed; the sockets go with it
        return len(entries)

    def forget(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sessions.pop(id(loop), None)
        self._finish_closer(id(loop))
        if self._last is not None and self._last[0] is loop:
            self._last = None


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str = "modelplex-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._inherited: list[asyncio.AbstractEventLoop] = []
        """A parent process's loop, in a forked child: its thread is not there; a new one starts on use."""
        after_fork(self)

    def _after_fork(self) -> None:
        if self._loop is not None:
            _disown_loop(self._loop)
            self._inherited.append(self._loop)
        self._loop, self._thread, self._lock = None, None, threading.Lock()

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
