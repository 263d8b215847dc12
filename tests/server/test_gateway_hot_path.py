"""The per-request machinery of the serving routes, driven directly with fake ASGI callables: the SSE
relay (``server.sse.stream_response``: events that are ready together go out in one write, an event
is never held back while the generator waits, failures and cancellations reach the generator), the
disconnect watch (``server.http``: a task only for calls that outlast the scheduler's delay) and
request ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelplex.server.errors import ErrorInfo
from modelplex.server.http import DisconnectWatch, WatchScheduler
from modelplex.server.sse import stream_response
from modelplex.types import StreamChunk, Usage

HOURS = 3600.0  # a scheduler delay no test reaches: ticks are driven by hand


class Encoder:
    """Bytes that name the chunks, so a test can read what went out in each write."""

    def start(self, first: StreamChunk) -> bytes:
        return b"<start>"

    def chunk(self, chunk: StreamChunk) -> bytes:
        return chunk.delta.encode()

    def finish(self) -> bytes:
        return b"<done>"

    def error(self, info: ErrorInfo) -> bytes:
        return b"<error:" + info.code.encode() + b">"


class Sink:
    """An ASGI ``send`` that records body writes; ``on_body`` runs after each one."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.more: list[bool] = []
        self.started = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            return
        self.bodies.append(message["body"])
        self.more.append(message["more_body"])


def chunk(text: str, **kw: Any) -> StreamChunk:
    return StreamChunk(delta=text, model="p/m", provider="p", **kw)


async def never_disconnects() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


def classify(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(status=502, type="api_error", message="upstream failed", code="upstream_error")


async def relay(agen: AsyncIterator[StreamChunk], sink: Sink, watch: DisconnectWatch | None = None) -> Any:
    watch = watch or DisconnectWatch(never_disconnects)
    first = await agen.__anext__()
    return await stream_response(sink, agen, first, Encoder(), [], watch, classify)


async def test_ready_events_share_a_write_and_nothing_waits_behind_the_generator() -> None:
    gate = asyncio.Event()
    sink = Sink()
    waiting = asyncio.Event()
    seen_while_waiting: list[list[bytes]] = []

    async def chunks() -> AsyncIterator[StreamChunk]:
        yield chunk("a")
        yield chunk("b")
        yield chunk("c")
        waiting.set()
        await gate.wait()
        yield chunk("d")
        yield chunk("e", finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=5))

    async def open_gate() -> None:
        await waiting.wait()  # runs only once the relay is suspended on the gate
        seen_while_waiting.append(list(sink.bodies))
        gate.set()

    opener = asyncio.get_running_loop().create_task(open_gate())
    outcome = await relay(chunks(), sink)
    await opener
    assert seen_while_waiting == [[b"<start>abc"]]  # a, b and c reached the client before the wait
    assert sink.bodies == [b"<start>abc", b"de<done>"]  # one write per batch, the end in the last
    assert sink.more == [True, False]
    assert outcome.status == "completed" and outcome.chunks == 5
    assert outcome.usage == Usage(input_tokens=3, output_tokens=5) and outcome.finish_reason == "stop"


async def test_chunks_that_each_need_a_wait_go_out_one_by_one() -> None:
    sink = Sink()

    async def slow() -> AsyncIterator[StreamChunk]:
        for text in ("a", "b", "c"):
            await asyncio.sleep(0)  # a real wait on the event loop before each chunk
            yield chunk(text)

    outcome = await relay(slow(), sink)
    assert sink.bodies == [b"<start>a", b"b", b"c<done>"]
    assert outcome.status == "completed"


async def test_upstream_failure_sends_what_was_ready_with_the_error_event_and_no_terminal_event() -> None:
    sink = Sink()
    closed: list[bool] = []

    async def failing() -> AsyncIterator[StreamChunk]:
        try:
            yield chunk("a")
            yield chunk("b")
            raise ConnectionResetError("upstream went away")
        finally:
            closed.append(True)

    outcome = await relay(failing(), sink)
    assert sink.bodies == [b"<start>ab<error:upstream_error>"]
    assert sink.more == [False]
    assert outcome.status == "failed" and isinstance(outcome.error, ConnectionResetError)
    assert closed == [True]


async def test_a_client_disconnect_while_the_generator_waits_cancels_it() -> None:
    sink = Sink()
    disconnect = asyncio.Event()
    cancelled: list[bool] = []
    waiting = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def long_stream() -> AsyncIterator[StreamChunk]:
        yield chunk("a")
        yield chunk("b")
        try:
            waiting.set()
            await asyncio.Event().wait()  # an upstream that never sends again
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        yield chunk("never")

    async def go_away() -> None:
        await waiting.wait()
        disconnect.set()

    leaver = asyncio.get_running_loop().create_task(go_away())
    outcome = await relay(long_stream(), sink, DisconnectWatch(receive))
    await leaver
    assert outcome.status == "disconnected"
    assert cancelled == [True]
    assert sink.bodies == [b"<start>ab"]
    assert asyncio.current_task().cancelling() == 0  # the disconnect's cancellation was absorbed


async def test_a_shutdown_cancellation_propagates_through_the_wait() -> None:
    sink = Sink()
    waiting = asyncio.Event()
    closed: list[str] = []

    async def long_stream() -> AsyncIterator[StreamChunk]:
        try:
            yield chunk("a")
            waiting.set()
            await asyncio.Event().wait()
            yield chunk("never")
        except asyncio.CancelledError:
            closed.append("cancelled")
            raise

    task = asyncio.get_running_loop().create_task(relay(long_stream(), sink))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == ["cancelled"]


async def test_an_iterator_whose_next_is_a_plain_future_still_streams() -> None:
    loop = asyncio.get_running_loop()

    class FutureIterator:
        def __init__(self) -> None:
            self.items = [chunk("a"), chunk("b")]

        def __aiter__(self) -> FutureIterator:
            return self

        def __anext__(self) -> asyncio.Future[StreamChunk]:
            fut: asyncio.Future[StreamChunk] = loop.create_future()
            if self.items:
                fut.set_result(self.items.pop(0))
            else:
                fut.set_exception(StopAsyncIteration())
            return fut

    sink = Sink()
    outcome = await relay(FutureIterator(), sink)
    assert b"".join(sink.bodies) == b"<start>ab<done>"
    assert outcome.status == "completed" and outcome.chunks == 2


# ------------------------------------------------------------------------------------------ the watch


async def test_a_watch_stopped_before_the_scheduler_ticks_never_starts_a_task() -> None:
    scheduler = WatchScheduler(after_s=HOURS)
    calls: list[str] = []

    async def receive() -> dict[str, Any]:
        calls.append("receive")
        return {"type": "http.disconnect"}

    watch = DisconnectWatch(receive, scheduler)
    watch.stop()
    loop = asyncio.get_running_loop()
    scheduler._tick(loop)
    scheduler._tick(loop)
    await asyncio.sleep(0)
    assert calls == [] and watch._watcher is None and not watch.disconnected


async def test_a_watch_starts_on_the_second_tick_and_cancels_on_disconnect() -> None:
    scheduler = WatchScheduler(after_s=HOURS)
    loop = asyncio.get_running_loop()
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def handler() -> str:
        watch = DisconnectWatch(receive, scheduler)
        try:
            await asyncio.Event().wait()  # an upstream call that never answers
        except asyncio.CancelledError:
            assert watch.disconnected
            watch.absorb()
            return "cancelled by the client"
        finally:
            watch.stop()
        return "finished"

    task = loop.create_task(handler())
    await asyncio.sleep(0)
    scheduler._tick(loop)  # registered before this tick: one generation old now
    assert not scheduler._young and len(scheduler._old) == 1
    scheduler._tick(loop)  # old enough: watching starts
    assert not scheduler._old and scheduler._handle is None  # nothing left waiting: the timer stops
    disconnect.set()
    assert await task == "cancelled by the client"


async def test_a_scheduler_moved_to_another_loop_ignores_the_old_loops_timer() -> None:
    scheduler = WatchScheduler(after_s=HOURS)
    other = asyncio.new_event_loop()
    try:
        scheduler._loop = other  # as if the app had served on another loop before
        scheduler._handle = other.call_later(HOURS, lambda: None)

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        watch = DisconnectWatch(receive, scheduler)
        loop = asyncio.get_running_loop()
        assert scheduler._loop is loop and scheduler._young == {watch}
        scheduler._tick(other)  # a stale timer: no effect
        assert scheduler._young == {watch}
        watch.stop()
    finally:
        other.close()


# ------------------------------------------------------------------------------------------ metrics


def test_series_export_what_prometheus_clients_own_metrics_would() -> None:
    import re

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    from modelplex.server.metrics import Series

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    pairs = []
    for kind, cls, extra in (("counter", Counter, {}), ("gauge", Gauge, {}),
                             ("histogram", Histogram, {"buckets": (0.01, 0.5, 2.0)})):
        name = f"t_{kind}"
        mine = Series(name, f"a {kind}", ["route", "status"], kind, **extra)
        ours.register(mine)
        pairs.append((mine, cls(name, f"a {kind}", ["route", "status"], registry=theirs, **extra)))
    for mine, ref in pairs:
        for labels, value in ((("chat", 200), 0.01), (("chat", "200"), 0.3), (("messages", 502), 5.0)):
            for metric in (mine, ref):
                child = metric.labels(*labels)
                if isinstance(metric, Histogram) or getattr(metric, "kind", "") == "histogram":
                    child.observe(value)
                else:
                    child.inc(value)
    pairs[1][0].labels("chat", 200).dec(0.01)
    pairs[1][1].labels("chat", 200).dec(0.01)

    def text(registry: CollectorRegistry) -> str:
        return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())

    assert text(ours) == text(theirs)


async def test_a_write_cancelled_while_the_generator_waits_still_cancels_and_closes_the_generator() -> None:
    seen: list[str] = []

    class GoneWhileWriting(Sink):
        async def __call__(self, message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                watch.disconnected = True  # as the watch does when the client goes away
                raise asyncio.CancelledError  # e.g. while waiting for a slow client's buffer to drain
            await super().__call__(message)

    async def waits_upstream() -> AsyncIterator[StreamChunk]:
        try:
            yield chunk("a")
            await asyncio.Event().wait()
            yield chunk("never")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("closed")

    watch = DisconnectWatch(never_disconnects)
    outcome = await relay(waits_upstream(), GoneWhileWriting(), watch)
    assert outcome.status == "disconnected"
    assert seen == ["cancelled", "closed"]  # finished here, not left to the garbage collector
