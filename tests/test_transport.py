"""SessionPool (a session per event loop) and LoopThread (the sync API's background loop)."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from typing import Any

import pytest

from modelplex.transport import LoopThread, SessionPool


class _Session:
    """Stands in for ``aiohttp.ClientSession``: the pool only reads ``closed`` and calls ``close``."""

    made = 0

    def __init__(self) -> None:
        _Session.made += 1
        self.n = _Session.made
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def _pool() -> SessionPool:
    return SessionPool(_Session)  # type: ignore[arg-type]


def test_one_session_per_loop_reused_across_calls() -> None:
    pool = _pool()

    async def twice() -> tuple[Any, Any]:
        return pool.get(), pool.get()

    a, b = asyncio.run(twice())
    assert a is b
    c, _ = asyncio.run(twice())  # a new loop gets a new session
    assert c is not a


def test_a_closed_session_is_replaced() -> None:
    pool = _pool()

    async def run() -> None:
        first = pool.get()
        await first.close()
        second = pool.get()
        assert second is not first and not second.closed
        assert pool.get() is second

    asyncio.run(run())


def test_aclose_current_and_forget_drop_the_loops_session() -> None:
    pool = _pool()

    async def run() -> None:
        first = pool.get()
        await pool.aclose_current()
        assert first.closed
        second = pool.get()
        assert second is not first
        pool.forget(asyncio.get_running_loop())
        third = pool.get()
        assert third is not second
        assert pool.sessions() == [(asyncio.get_running_loop(), third)]

    asyncio.run(run())


def test_two_loops_in_two_threads_alternating_keep_their_own_sessions() -> None:
    pool = _pool()
    lt = LoopThread("test-transport")

    async def get() -> Any:
        return pool.get()

    async def main() -> None:
        mine = pool.get()
        for _ in range(3):
            theirs = lt.run(get())  # the other loop, then ours again: the fast path must not mix them
            assert theirs is not mine
            assert pool.get() is mine
            assert lt.run(get()) is theirs

    try:
        asyncio.run(main())
    finally:
        lt.stop()


def test_loop_thread_runs_coroutines_from_many_threads() -> None:
    lt = LoopThread("test-transport-many")
    results: list[int] = []

    async def square(x: int) -> int:
        await asyncio.sleep(0)
        return x * x

    def worker(x: int) -> None:
        results.append(lt.run(square(x)))

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [i * i for i in range(8)]
        assert lt.started
    finally:
        lt.stop()
    assert not lt.started


def test_sessions_of_loops_asyncio_run_closed_are_let_go_without_a_warning(caplog) -> None:
    """A real aiohttp session with a kept-alive connection, left behind by ``asyncio.run``."""
    import gc
    import logging

    from aiohttp import web

    from modelplex.transport import default_session

    pool = SessionPool(default_session)

    async def app_and_one_request() -> tuple[Any, web.AppRunner]:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        session = pool.get()
        async with session.get(f"http://127.0.0.1:{port}/") as resp:
            assert await resp.text() == "ok"
        return session, runner

    session, _runner = asyncio.run(app_and_one_request())  # asyncio.run's teardown closes the session
    assert session.closed
    # a loop closed without finalizing its async generators leaves its session open: let go of it quietly
    loop = asyncio.new_event_loop()
    session, runner = loop.run_until_complete(app_and_one_request())
    loop.run_until_complete(runner.cleanup())
    loop.close()
    assert pool.has_orphans() and not session.closed
    with caplog.at_level(logging.ERROR, logger="asyncio"), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert asyncio.run(pool.aclose_orphans()) == 1
        del session
        gc.collect()
    assert not pool.has_orphans() and pool.sessions() == []
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


def test_a_loop_that_asyncio_run_shuts_down_closes_its_session_on_the_way() -> None:
    """One ``asyncio.run`` per job: each job's session is closed by its loop's teardown, while that loop
    still runs (no socket left open until the router closes), and the pool forgets it."""
    pool = _pool()

    async def job() -> Any:
        return pool.get()

    first = asyncio.run(job())
    assert first.closed
    sessions = [asyncio.run(job()) for _ in range(20)]
    assert all(s.closed for s in sessions)
    assert len(pool.sessions()) == 1  # only the last; finished entries are dropped when a new one is made


def test_a_session_closed_by_the_router_leaves_no_watcher_behind() -> None:
    pool = _pool()

    async def job() -> Any:
        s = pool.get()
        await pool.aclose_current()
        return s

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = asyncio.run(job())
    assert s.closed and pool.sessions() == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_loop_thread_and_sessions() -> None:
    pool = _pool()
    loop_thread = LoopThread()

    async def get() -> Any:
        return pool.get()

    parent = loop_thread.run(get())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread is not here; a call must not hang
        ok = False
        try:
            child = loop_thread.run(get(), timeout=10)
            ok = child is not parent and not child.closed and loop_thread.started
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert loop_thread.run(get()) is parent  # the parent is untouched
    loop_thread.stop()
