"""The usage recorder: ``record()`` never blocks or raises; a background task writes batches to the sink.

Owns: ``UsageRecorder`` and ``make_recorder(cfg)``.

How a record travels (docs/accounting.md has the guarantees):

* ``record(rec)`` / ``feedback(...)`` append to a bounded ``deque`` (O(1), any thread). When the
  queue holds ``batch_size`` items the writer is woken (``call_soon_threadsafe`` when called off
  its loop); otherwise it wakes every ``flush_interval`` seconds.
* The writer drains the queue in batches of ``batch_size`` into ``sink.write_batch`` (idempotent
  on ``request_id``) and ``sink.add_feedback_batch``. Woken by a full batch it writes full batches
  only; a partial one goes out on the timer, ``flush()`` or ``aclose()`` (see ``_cycle``).
* Queue full -> the item is appended to the journal buffer (``spilled``) — or, with no journal,
  counted in ``dropped``; either way a rate-limited log line says so.
* Sink raises (database down) -> the whole batch goes to the journal (one fsync per batch) and
  the sink is marked down; until the retry time (``retry_interval``, doubling up to
  ``max_retry_interval``, on the injected clock) new batches go straight to the journal. Then the
  recorder restarts the sink if needed and replays the journal (oldest first, in batches); when
  the replay succeeds the sink is up again and the queue drains normally.
* Journal entries left by an earlier run are replayed by the writer's first pass after
  ``start()``; entries spilled while the sink was up (queue overflow) at most every
  ``retry_interval``, and on ``flush()``/``aclose()``. Replay goes before the queue.
* The writer being cancelled (shutdown timeout, loop teardown) journals the batch in flight and
  everything still queued before it ends. Idempotent writes make a batch that was half written
  before a crash safe to replay: no duplicates.
* ``flush()`` returns once everything queued before it is written or journaled; ``aclose()``
  flushes, stops the writer, and closes the sink and the journal.

Counters (``stats()``): ``written`` (rows newly stored), ``duplicates`` (records the sink already
had), ``feedback_written``, ``spilled`` (entries appended to the journal), ``replayed`` (journal
entries re-sent successfully), ``dropped`` (lost, with a log line), ``rejected`` (records the sink
refused as invalid data — ``sink.is_data_error`` — kept in ``<journal>.rejected`` and logged; the
rest of their batch is written one by one), ``failed_batches``.

Must not touch: what a record contains (``records``), how a sink stores it (``sinks``), the file
format of the journal (``journal``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelplex.accounting.journal import Journal
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks.base import FeedbackEntry, UsageSink, unpack_record
from modelplex.resilience.clock import Clock, SystemClock

if TYPE_CHECKING:
    from modelplex.config import AccountingConfig

log = logging.getLogger("modelplex.accounting.recorder")

Item = UsageRecord | FeedbackEntry | bytes
"""What the queue holds: a record, a feedback entry, or a record packed by the sink's ``packer``."""

LOG_EVERY = 60.0
"""Seconds between two log lines of the same kind (counts in between are summed)."""


class UsageRecorder:
    """Queue usage records and feedback; write them to ``sink`` in batches from a background task."""

    def __init__(self, sink: UsageSink, *, queue_size: int = 10_000, batch_size: int = 500,
                 flush_interval: float = 0.25, journal: Journal | None = None, clock: Clock | None = None,
                 retry_interval: float = 5.0, max_retry_interval: float = 60.0,
                 write_timeout: float | None = 30.0) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval > 0")
        self.sink = sink
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.journal = journal
        self.clock: Clock = clock or SystemClock()
        self.retry_interval = retry_interval
        self.max_retry_interval = max_retry_interval
        self.write_timeout = write_timeout

        self._queue: deque[Item] = deque()
        self._packer: Callable[[UsageRecord], bytes | None] | None = None
        """The started sink's ``packer()``: records are queued packed (bytes the collector ignores)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._signal_pending = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[Item] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self._closed = False

        self._sink_started = False
        self._sink_ok = False
        self._retry_delay = retry_interval
        self._next_retry = 0.0
        self._next_replay = 0.0
        self._journal_pending = journal is not None
        self._overflowed = False
        self._replay_lock = asyncio.Lock()

        self._lock = threading.Lock()  # counters touched off the writer loop (overflow path)
        self.written = 0
        self.duplicates = 0
        self.feedback_written = 0
        self.spilled = 0
        self.replayed = 0
        self.dropped = 0
        self.failed_batches = 0
        self.rejected = 0
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ the hot path (any thread)

    def record(self, rec: UsageRecord) -> None:
        """Queue one usage record. O(1); never blocks on I/O, never raises."""
        try:
            self._put(rec)
        except Exception:  # accounting must never break a request
            log.exception("usage recorder: could not queue record %s", getattr(rec, "request_id", "?"))

    def feedback(self, request_id: str, score: float, comment: str | None = None) -> None:
        """Queue a quality score (0..1) for a finished request. Never raises."""
        try:
            self._put(FeedbackEntry(str(request_id), float(score), comment, self.clock.wall()))
        except Exception:
            log.exception("usage recorder: could not queue feedback for %s", request_id)

    def _put(self, item: Item) -> None:
        q = self._queue
        if self._closed or len(q) >= self.queue_size:
            self._overflow(item, "recorder closed" if self._closed else "queue full")
            return
        packer = self._packer
        if packer is not None and type(item) is UsageRecord:
            try:
                packed = packer(item)
            except Exception:  # the record stays as it is; the sink judges it when written
                packed = None
            if packed is not None:
                item = packed
        q.append(item)
        if len(q) >= self.batch_size:
            self._signal()

    def _signal(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
        elif not self._signal_pending:
            self._signal_pending = True
            try:
                loop.call_soon_threadsafe(self._wake_up)
            except RuntimeError:  # the writer's loop is closed
                self._signal_pending = False

    def _wake_up(self) -> None:
        self._signal_pending = False
        if self._wake is not None:
            self._wake.set()

    def _overflow(self, item: Item, why: str) -> None:
        journal = self.journal
        if journal is not None:
            try:
                journal.append_nowait(item)
            except Exception as exc:
                self._count_drop(1, f"{why}; journal unavailable ({type(exc).__name__}: {exc})")
                return
            with self._lock:
                self.spilled += 1
                self._overflowed = True
                self._journal_pending = True
            self._warn("overflow", f"usage recorder: {why}; spilling to the journal {journal.path}")
            self._signal()
            return
        self._count_drop(1, f"{why} and no journal is configured")

    def _count_drop(self, n: int, why: str) -> None:
        with self._lock:
            self.dropped += n
        self._warn("drop", f"usage recorder: dropped usage records: {why}", n=n, level=logging.ERROR)

    def _warn(self, kind: str, message: str, *, n: int = 1, level: int = logging.WARNING) -> None:
        now = self.clock.now()
        with self._lock:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + n
            last = self._last_log.get(kind)
            if last is not None and now - last < LOG_EVERY:
                return
            self._last_log[kind] = now
            count = self._unlogged.pop(kind)
        log.log(level, "%s (%d since the last such message; totals: %s)", message, count, self._counters())

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the sink (migrations) and the writer on the running loop; the writer's first pass
        replays any journal left by an earlier run (in the background: start-up does not wait).

        A sink that cannot start (database down) does not fail ``start()``: the recorder spills to
        the journal and retries later."""
        if self._task is not None:
            return
        if self._closed:
            raise RuntimeError("usage recorder is closed")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        try:
            await self.sink.start()
            self._sink_started = True
            self._sink_ok = True
            self._packer = self.sink.packer()
        except Exception as exc:
            self.failed_batches += 1
            self._mark_down(exc)
        self._task = self._loop.create_task(self._run(), name="modelplex-usage-writer")
        if self._queue or self._journal_pending:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written to the sink or journaled."""
        if self._task is None or self._loop is None or self._wake is None:
            raise RuntimeError("usage recorder is not started (await recorder.start() first)")
        if self._task.done():
            return
        if asyncio.get_running_loop() is not self._loop:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.flush(), self._loop))
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        self._wake.set()
        await asyncio.shield(fut)

    async def replay(self) -> bool:
        """Replay the journal now (on the writer's loop); returns whether it all reached the sink."""
        if self.journal is None:
            return True
        if self._task is not None:
            await self.flush()
        ok = await self._replay()
        if ok:
            self._sink_ok = True
        return ok

    async def aclose(self, *, timeout: float | None = None, close_sink: bool = True) -> None:
        """Flush, stop the writer, close the sink (unless ``close_sink=False``) and the journal.

        If the writer does not finish within ``timeout`` seconds it is cancelled, and what it
        still held goes to the journal."""
        if self._closed:
            return
        self._closing = True
        task = self._task
        if task is not None and not task.done():
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:
                    pass  # already logged by the writer
            except Exception:
                pass  # the writer failed and logged it; what it held is journaled
        self._closed = True
        self._spill_sync(self._take(len(self._queue)), "recorder closed before its writer ran")
        if close_sink and self._sink_started:
            try:
                await self.sink.close()
            except Exception:
                log.exception("usage recorder: closing the sink failed")
        if self.journal is not None:
            self.journal.close()

    # ------------------------------------------------------------------ background-thread mode

    def start_background(self, timeout: float = 30.0) -> None:
        """Run the writer on a dedicated thread with its own event loop (for synchronous programs)."""
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            await self._stop.wait()
            await self.aclose()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException:
                if not failure:
                    log.exception("usage recorder thread ended with an error")

        self._thread = threading.Thread(target=run, name="modelplex-usage-recorder", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        if failure:
            raise failure[0]

    def flush_sync(self, timeout: float | None = None) -> None:
        """``flush()`` from a thread that is not the writer's (background mode)."""
        if self._loop is None:
            raise RuntimeError("usage recorder is not started")
        asyncio.run_coroutine_threadsafe(self.flush(), self._loop).result(timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop background mode: flush, close, join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:
            pass
        thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------------ the writer

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        try:
            while True:
                due = False  # a partial batch goes out on the timer, on flush() and on close
                if not self._closing and not self._waiters and len(self._queue) < self.batch_size:
                    try:
                        await asyncio.wait_for(wake.wait(), self.flush_interval)
                    except TimeoutError:
                        due = True
                wake.clear()
                await self._cycle(due or self._closing or bool(self._waiters))
                if not self._queue:
                    self._release_waiters()
                    if self._closing:
                        return
        except asyncio.CancelledError:
            held = (self._inflight or []) + self._take(len(self._queue))
            self._inflight = None
            self._spill_sync(held, "writer cancelled")
            self._release_waiters()
            raise
        except Exception:  # a bug: never lose the queue silently
            log.exception("usage recorder: writer failed; journaling what it held")
            held = (self._inflight or []) + self._take(len(self._queue))
            self._inflight = None
            self._spill_sync(held, "writer failed")
            self._release_waiters()
            raise

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _take(self, n: int) -> list[Item]:
        q = self._queue
        out: list[Item] = []
        for _ in range(min(n, len(q))):
            try:
                out.append(q.popleft())
            except IndexError:
                break
        return out

    async def _cycle(self, drain: bool = True) -> None:
        """Replay and write what is due: full batches, and with ``drain`` the partial one too.

        Without ``drain`` (woken because ``batch_size`` items are queued) the remainder after the full
        batches waits for the next wake-up, at most ``flush_interval``: writing it at once would keep the
        writer busy with ever smaller batches (the records that came in while the previous one was
        written), and a small batch costs the sink several times more per record."""
        if self._overflowed and self.journal is not None:
            self._overflowed = False
            try:
                await asyncio.to_thread(self.journal.sync)
            except Exception as exc:
                log.error("usage recorder: syncing the journal failed: %s", exc)
        if not self._sink_ok and (self.clock.now() < self._next_retry or not await self._recover()):
            await self._spill_all("usage sink is down")
            return
        if (self._journal_pending and self.journal is not None
                and (self._closing or self._waiters or self.clock.now() >= self._next_replay)):
            self._next_replay = self.clock.now() + self.retry_interval
            if not await self._replay():
                await self._spill_all("usage sink is down")
                return
        q, size = self._queue, self.batch_size
        while len(q) >= size or (drain and q):
            batch = self._take(size)
            if not await self._write(batch):
                await self._spill_all("usage sink is down")
                return

    async def _send(self, batch: Sequence[Item]) -> int:
        """Write one batch to the sink; returns rows newly written. Raises what the sink raises."""
        packed = [i for i in batch if type(i) is bytes]
        records = [i for i in batch if isinstance(i, UsageRecord)]
        feedback = [i for i in batch if isinstance(i, FeedbackEntry)]
        new = 0
        for rows, write in ((packed, self.sink.write_packed), (records, self.sink.write_batch)):
            if rows:
                n = await self._timed(write(rows))  # type: ignore[operator]
                self.written += n
                self.duplicates += len(rows) - n
                new += n
        if feedback:
            await self._timed(self.sink.add_feedback_batch(feedback))
            self.feedback_written += len(feedback)
        return new

    async def _timed(self, coro: Any) -> Any:
        return await (asyncio.wait_for(coro, self.write_timeout) if self.write_timeout else coro)

    async def _deliver(self, batch: Sequence[Item]) -> None:
        """``_send``; when the sink rejects the data itself (``sink.is_data_error``), retry one item
        at a time and set aside the ones it refuses, so one bad record cannot block the rest.
        Raises when the sink is unavailable."""
        try:
            await self._send(batch)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.sink.is_data_error(exc) or len(batch) == 0:
                raise
        for item in batch:
            try:
                await self._send([item])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.sink.is_data_error(exc):
                    raise
                self._reject(item, exc)

    def _reject(self, item: Item, exc: BaseException) -> None:
        item = _unpacked(item)
        with self._lock:
            self.rejected += 1
        where = ""
        if self.journal is not None:
            try:
                self.journal.reject(item)
                where = f"; kept in {self.journal.rejected_path}"
            except Exception as jexc:
                where = f"; could not keep it ({type(jexc).__name__}: {jexc})"
        log.error("usage sink %s refused %s %s (%s: %s)%s", self.sink.name, type(item).__name__,
                  item.request_id, type(exc).__name__, exc, where)

    async def _write(self, batch: list[Item]) -> bool:
        self._inflight = batch
        try:
            await self._deliver(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed_batches += 1
            self._inflight = None
            self._mark_down(exc)
            await self._spill(batch, "usage sink write failed")
            return False
        self._inflight = None
        return True

    def _mark_down(self, exc: BaseException) -> None:
        was_ok = self._sink_ok
        self._sink_ok = False
        self._next_retry = self.clock.now() + self._retry_delay
        delay = self._retry_delay
        self._retry_delay = min(self.max_retry_interval, self._retry_delay * 2)
        if was_ok or self.failed_batches <= 1:
            log.warning("usage sink %s is down (%s: %s); journaling usage and retrying in %.1fs",
                        self.sink.name, type(exc).__name__, exc, delay)
        else:
            self._warn("down", f"usage sink {self.sink.name} still down ({type(exc).__name__}: {exc})")

    async def _recover(self) -> bool:
        """Start the sink if needed and replay the journal; True when the sink took everything."""
        try:
            if not self._sink_started:
                await self.sink.start()
                self._sink_started = True
                self._packer = self.sink.packer()
        except Exception as exc:
            self.failed_batches += 1
            self._mark_down(exc)
            return False
        ok = await self._replay()
        if ok:
            if not self._sink_ok and self.failed_batches:
                log.info("usage sink %s is back; journal replayed (totals: %s)", self.sink.name, self._counters())
            self._sink_ok = True
            self._retry_delay = self.retry_interval
        return ok

    async def _replay(self) -> bool:
        async with self._replay_lock:
            return await self._replay_locked()

    async def _replay_locked(self) -> bool:
        journal = self.journal
        if journal is None:
            return True
        if self._overflowed:
            self._overflowed = False
        try:
            files = await asyncio.to_thread(journal.rotate)
        except Exception as exc:
            # The journal cannot be replayed (every slot taken, a disk error); the sink is not at fault,
            # so the queue still goes to it. The journal is tried again at the next replay time.
            self._warn("rotate", f"usage recorder: cannot rotate the journal {journal.base}: {type(exc).__name__}: {exc}",
                       level=logging.ERROR)
            return True
        self._journal_pending = False
        for path in files:
            batches = journal.batches(path, self.batch_size)
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                try:
                    await self._deliver(batch)
                except asyncio.CancelledError:
                    self._journal_pending = True  # the file stays; the next owner replays it
                    raise
                except Exception as exc:
                    self.failed_batches += 1
                    self._journal_pending = True
                    self._mark_down(exc)
                    return False
                self.replayed += len(batch)
            await asyncio.to_thread(journal.discard, path)
        return True

    async def _spill_all(self, why: str) -> None:
        while self._queue:
            await self._spill(self._take(self.batch_size), why)

    async def _spill(self, items: list[Item], why: str) -> None:
        if items:
            await asyncio.to_thread(self._journal, items, why)

    def _spill_sync(self, items: list[Item], why: str) -> None:
        """Journal ``items`` on the calling thread (shutdown and cancellation paths)."""
        if items and self._journal(items, why):
            assert self.journal is not None
            log.warning("usage recorder: %s; journaled %d item(s) to %s", why, len(items), self.journal.path)

    def _journal(self, items: list[Item], why: str) -> bool:
        """Append ``items`` to the journal (blocking); count them dropped when that is impossible."""
        journal = self.journal
        if journal is None:
            self._count_drop(len(items), f"{why} and no journal is configured")
            return False
        try:
            journal.append([_unpacked(i) for i in items])
        except Exception as exc:
            self._count_drop(len(items), f"{why}; journal write failed ({type(exc).__name__}: {exc})")
            return False
        with self._lock:
            self.spilled += len(items)
            self._journal_pending = True
        return True

    # ------------------------------------------------------------------ introspection

    def _counters(self) -> dict[str, int]:
        return {"written": self.written, "duplicates": self.duplicates, "feedback_written": self.feedback_written,
                "spilled": self.spilled, "replayed": self.replayed, "dropped": self.dropped,
                "rejected": self.rejected, "failed_batches": self.failed_batches}

    def stats(self) -> dict[str, Any]:
        """Counters plus ``queue_depth``, ``sink``, ``sink_ok``, ``journal`` (path or None), ``running``."""
        out: dict[str, Any] = self._counters()
        out.update({
            "queue_depth": len(self._queue),
            "sink": self.sink.name,
            "sink_ok": self._sink_ok,
            "journal": str(self.journal.path) if self.journal is not None else None,
            "running": self._task is not None and not self._task.done(),
        })
        return out

    def __repr__(self) -> str:
        return f"UsageRecorder(sink={self.sink.name}, queue={len(self._queue)}/{self.queue_size})"


def _unpacked(item: Item) -> UsageRecord | FeedbackEntry:
    """A queued item as the journal and the logs take it: a packed record unpacked."""
    return unpack_record(item) if type(item) is bytes else item  # type: ignore[return-value]


DEFAULT_PG_JOURNAL = "modelplex-usage.journal.jsonl"


def journal_path(cfg: AccountingConfig, env: Mapping[str, str] | None = None) -> str | None:
    """``accounting.journal_path``; else beside the SQLite file, ``./modelplex-usage.journal.jsonl``
    for PostgreSQL, and no journal for the memory sink."""
    if cfg.journal_path:
        return cfg.journal_path
    if cfg.sink == "sqlite":
        from modelplex.accounting.sinks import sqlite_path

        path = sqlite_path(cfg, env)
        return None if path == ":memory:" else f"{path}.journal.jsonl"
    if cfg.sink == "postgres":
        return str(Path(DEFAULT_PG_JOURNAL))
    return None


def make_recorder(cfg: AccountingConfig, *, clock: Clock | None = None, env: Mapping[str, str] | None = None,
                  sink: UsageSink | None = None) -> UsageRecorder | None:
    """The recorder ``accounting`` describes (not started), or ``None`` for ``sink: none``."""
    if cfg.sink == "none" and sink is None:
        return None
    if sink is None:
        from modelplex.accounting.sinks import make_sink

        sink = make_sink(cfg, env=env)
    jpath = journal_path(cfg, env)
    return UsageRecorder(sink, queue_size=cfg.queue_size, batch_size=cfg.batch_size,
                         flush_interval=cfg.flush_interval, journal=Journal(jpath) if jpath else None, clock=clock)


__all__ = ["UsageRecorder", "journal_path", "make_recorder"]
