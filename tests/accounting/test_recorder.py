"""The recorder: batching, spill to the journal, replay, crash mid-batch, shutdown, threads."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from modelplex.accounting.journal import Journal
from modelplex.accounting.recorder import UsageRecorder, journal_path, make_recorder
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks import MemorySink, UsageSink
from modelplex.accounting.sinks.base import FeedbackEntry, pack_record, record_dict
from modelplex.accounting.sinks.sqlite import SQLiteSink
from modelplex.config import AccountingConfig
from modelplex.resilience.clock import FakeClock

T0 = 1_767_571_200.0


def rec(i: int, **kw: Any) -> UsageRecord:
    return UsageRecord(f"req-{i:04d}", ts=T0 + i, model="openai/gpt-4o-mini", provider="openai", task="fast",
                       input_tokens=100 + i, output_tokens=10, cost_usd=0.0001 * i, latency_ms=50.0,
                       attempts=[{"target": "openai/gpt-4o-mini", "provider": "openai", "outcome": "success",
                                  "error_type": None, "status_code": None, "latency_ms": 49.0, "retry": 0,
                                  "detail": None}], attempt_count=1, **kw)


@pytest.fixture(autouse=True, params=["records", "packed"])
def _queued_as(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs twice: with a ``FlakySink`` that takes records as they are, and with one whose
    ``packer`` makes the recorder queue them packed (as the SQLite sink does), so that spilling,
    replay, rejection and shutdown are checked on both kinds of queued item."""
    monkeypatch.setattr(FlakySink, "packs", request.param == "packed")
    return str(request.param)


class FlakySink(UsageSink):
    """Wraps a real sink; ``down`` makes every call fail like a lost connection; ``half_then``
    writes half of the next batch and then raises (``"raise"``) or hangs forever (``"hang"``:
    the writer is killed while it waits). With ``packs`` the recorder queues records packed, and
    ``write_packed`` (the base class's) unpacks them into ``write_batch``."""

    name = "flaky"
    packs = False

    def packer(self) -> Any:
        return pack_record if self.packs else None

    def __init__(self, inner: UsageSink) -> None:
        self.inner = inner
        self.down = False
        self.down_on_start = False
        self.half_then: str | None = None
        self.half_written = asyncio.Event()
        self.batches: list[int] = []

    async def start(self) -> None:
        if self.down_on_start:
            raise ConnectionRefusedError("database is down")
        await self.inner.start()

    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        if self.down:
            raise ConnectionResetError("connection lost")
        if self.half_then is not None:
            mode, self.half_then = self.half_then, None
            await self.inner.write_batch(list(records)[: len(records) // 2])
            self.half_written.set()
            if mode == "hang":
                await asyncio.Event().wait()
            raise ConnectionResetError("connection lost mid-batch")
        self.batches.append(len(records))
        return await self.inner.write_batch(records)

    async def add_feedback_batch(self, entries: Sequence[FeedbackEntry]) -> None:
        if self.down:
            raise ConnectionResetError("connection lost")
        await self.inner.add_feedback_batch(entries)

    async def add_feedback(self, request_id: str, score: float, comment: str | None = None,
                           ts: float | None = None) -> None:
        await self.add_feedback_batch([FeedbackEntry(request_id, score, comment, ts or 0.0)])

    async def query(self, since: float | None = None, until: float | None = None, **kw: Any) -> list[dict[str, Any]]:
        return await self.inner.query(since, until, **kw)

    async def aggregate(self, since: float | None = None, until: float | None = None, **kw: Any
                        ) -> list[dict[str, Any]]:
        return await self.inner.aggregate(since, until, **kw)

    async def spend(self, since: float | None = None, until: float | None = None, **kw: Any) -> float:
        return await self.inner.spend(since, until, **kw)

    async def performance_metrics(self) -> list[dict[str, Any]]:
        return await self.inner.performance_metrics()

    async def cost_tracking(self, since_day: str | None = None, until_day: str | None = None
                            ) -> list[dict[str, Any]]:
        return await self.inner.cost_tracking(since_day, until_day)

    async def health(self) -> dict[str, Any]:
        return {"sink": self.name, "ok": not self.down}


async def ids_in(sink: UsageSink) -> list[str]:
    return [d["request_id"] for d in await sink.query()]


def sqlite_counts(path: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(path)
    try:
        n, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage_records").fetchone()
        attempts = conn.execute("SELECT COUNT(*) FROM usage_attempts").fetchone()[0]
    finally:
        conn.close()
    return n, distinct, attempts


async def test_records_are_written_in_batches() -> None:
    sink = MemorySink()
    r = UsageRecorder(sink, batch_size=10, queue_size=1000, flush_interval=60)
    await r.start()
    for i in range(25):
        r.record(rec(i))
    await r.flush()
    assert await ids_in(sink) == [f"req-{i:04d}" for i in range(25)]
    assert sink.writes == 3  # 10 + 10 + 5
    s = r.stats()
    assert (s["written"], s["duplicates"], s["spilled"], s["dropped"], s["queue_depth"]) == (25, 0, 0, 0, 0)
    r.record(rec(3))  # the same request again: no second row
    await r.flush()
    assert r.stats()["duplicates"] == 1 and len(sink) == 25
    await r.aclose()


class GatedSink(MemorySink):
    """A memory sink whose writes wait for ``gate``; ``entered`` is set when a write is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.batches: list[int] = []

    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        self.entered.set()
        await self.gate.wait()
        self.batches.append(len(records))
        return await super().write_batch(records)


async def test_a_partial_batch_waits_for_the_timer_not_the_previous_write() -> None:
    """Records queued while a full batch was being written go out with the next full batch (or on
    the timer, or on flush), not at once as a small batch of their own."""
    sink = GatedSink()
    r = UsageRecorder(sink, batch_size=4, queue_size=1000, flush_interval=60)
    await r.start()
    for i in range(4):
        r.record(rec(i))
    await asyncio.wait_for(sink.entered.wait(), 5)  # the full batch is being written
    for i in range(4, 7):
        r.record(rec(i))  # three more: not a batch
    sink.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert sink.batches == [4] and r.stats()["queue_depth"] == 3
    r.record(rec(7))  # the fourth makes a batch
    for _ in range(20):
        await asyncio.sleep(0)
    assert sink.batches == [4, 4]
    r.record(rec(8))
    await r.flush()  # flush writes the partial batch
    assert sink.batches == [4, 4, 1]
    assert await ids_in(sink) == [f"req-{i:04d}" for i in range(9)]
    await r.aclose()


async def test_a_partial_batch_is_written_on_the_timer() -> None:
    sink = GatedSink()
    sink.gate.set()
    r = UsageRecorder(sink, batch_size=100, queue_size=1000, flush_interval=0.05)
    await r.start()
    for i in range(3):
        r.record(rec(i))
    for _ in range(100):
        if sink.batches:
            break
        await asyncio.sleep(0.02)
    assert sink.batches == [3]
    await r.aclose()


async def test_killed_mid_batch_then_restarted_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    db, jpath = tmp_path / "usage.db", tmp_path / "usage.journal"
    inner = SQLiteSink(db)
    flaky = FlakySink(inner)
    flaky.half_then = "hang"
    first = UsageRecorder(flaky, journal=Journal(jpath), batch_size=10, queue_size=1000, flush_interval=60)
    await first.start()
    for i in range(25):
        first.record(rec(i))
    await asyncio.wait_for(flaky.half_written.wait(), 10)
    assert sqlite_counts(db) == (5, 5, 5)  # half of the first batch reached the database
    await first.aclose(timeout=0, close_sink=False)  # the writer is killed while the batch is in flight
    assert first.stats()["spilled"] == 25 and first.stats()["written"] == 0
    assert sum(1 for _ in jpath.open("rb")) == 25

    second = UsageRecorder(inner, journal=Journal(jpath), batch_size=10, flush_interval=60)
    await second.start()
    await second.flush()  # the writer's first pass replays the journal
    assert sqlite_counts(db) == (25, 25, 25)
    assert sorted(await ids_in(inner)) == [f"req-{i:04d}" for i in range(25)]
    s = second.stats()
    assert (s["replayed"], s["written"], s["duplicates"], s["dropped"]) == (25, 20, 5, 0)
    await second.aclose()
    assert not Journal(jpath).has_pending()


async def test_workers_sharing_a_journal_path_lose_nothing(tmp_path: Path) -> None:
    """``serve --workers 2``: every process has the same accounting config, so the same journal path."""
    db, jpath = tmp_path / "usage.db", tmp_path / "usage.journal"
    sinks = [SQLiteSink(db), SQLiteSink(db)]
    workers = [UsageRecorder(sink, journal=Journal(jpath), batch_size=10, flush_interval=60) for sink in sinks]
    for w in workers:
        await w.start()
    for i in range(40):
        workers[i % 2].record(rec(i))
    for w in workers:
        await w.flush()
    assert sqlite_counts(db)[0] == 40
    assert [w.stats()["dropped"] for w in workers] == [0, 0]
    assert sorted(str(w.journal.path.name) for w in workers if w.journal) == ["usage.journal", "usage.journal.1"]
    for w in workers:
        await w.aclose()


async def test_connection_lost_mid_batch_is_journaled_and_replayed(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    inner = SQLiteSink(db)
    flaky = FlakySink(inner)
    flaky.half_then = "raise"
    clock = FakeClock()
    r = UsageRecorder(flaky, journal=Journal(tmp_path / "j"), batch_size=10, flush_interval=60, clock=clock,
                      retry_interval=5)
    await r.start()
    for i in range(25):
        r.record(rec(i))
    await r.flush()
    s = r.stats()
    assert (s["failed_batches"], s["spilled"], s["written"], s["sink_ok"]) == (1, 25, 0, False)
    assert sqlite_counts(db) == (5, 5, 5)
    clock.advance(5)
    await r.flush()
    assert sqlite_counts(db) == (25, 25, 25)
    s = r.stats()
    assert (s["replayed"], s["written"], s["duplicates"], s["sink_ok"]) == (25, 20, 5, True)
    await r.aclose()


async def test_sink_down_spills_then_replays_when_it_is_back(tmp_path: Path) -> None:
    inner = MemorySink()
    flaky = FlakySink(inner)
    clock = FakeClock()
    r = UsageRecorder(flaky, journal=Journal(tmp_path / "j"), batch_size=10, flush_interval=60, clock=clock,
                      retry_interval=5, max_retry_interval=20)
    await r.start()
    flaky.down = True
    for i in range(12):
        r.record(rec(i))
    r.feedback("req-0001", 0.9, "great")
    await r.flush()
    assert len(inner) == 0 and r.stats()["spilled"] == 13 and r.stats()["failed_batches"] == 1
    flaky.down = False
    await r.flush()  # before the retry time nothing is attempted
    assert len(inner) == 0
    clock.advance(5)
    for i in range(12, 15):
        r.record(rec(i))
    await r.flush()
    assert await ids_in(inner) == [f"req-{i:04d}" for i in range(15)]
    by_id = {d["request_id"]: d for d in await inner.query()}
    assert by_id["req-0001"]["quality_score"] == 0.9 and by_id["req-0001"]["feedback_comment"] == "great"
    s = r.stats()
    assert (s["replayed"], s["written"], s["feedback_written"], s["dropped"], s["sink_ok"]) == (13, 15, 1, 0, True)
    await r.aclose()


async def test_retry_backs_off_while_the_sink_stays_down(tmp_path: Path) -> None:
    flaky = FlakySink(MemorySink())
    clock = FakeClock()
    r = UsageRecorder(flaky, journal=Journal(tmp_path / "j"), batch_size=5, flush_interval=60, clock=clock,
                      retry_interval=5, max_retry_interval=20)
    await r.start()
    flaky.down = True
    r.record(rec(1))
    await r.flush()
    assert r.stats()["failed_batches"] == 1
    clock.advance(5)
    await r.flush()  # retried (replay fails): the next wait doubles to 10 s
    assert r.stats()["failed_batches"] == 2
    clock.advance(9)
    await r.flush()
    assert r.stats()["failed_batches"] == 2
    clock.advance(1)
    flaky.down = False
    await r.flush()
    assert await ids_in(flaky.inner) == ["req-0001"]
    await r.aclose()


async def test_sink_down_at_start_does_not_fail_start(tmp_path: Path) -> None:
    inner = MemorySink()
    flaky = FlakySink(inner)
    flaky.down_on_start = True
    clock = FakeClock()
    r = UsageRecorder(flaky, journal=Journal(tmp_path / "j"), batch_size=10, flush_interval=60, clock=clock,
                      retry_interval=5)
    await r.start()
    r.record(rec(1))
    await r.flush()
    assert r.stats()["sink_ok"] is False and r.stats()["spilled"] == 1
    flaky.down_on_start = False
    clock.advance(5)
    await r.flush()
    assert await ids_in(inner) == ["req-0001"] and r.stats()["replayed"] == 1
    await r.aclose()


async def test_full_queue_spills_to_the_journal_instead_of_dropping(tmp_path: Path) -> None:
    inner = MemorySink()
    r = UsageRecorder(inner, journal=Journal(tmp_path / "j"), queue_size=5, batch_size=100, flush_interval=60)
    for i in range(12):  # before start: the queue fills and the rest spills
        r.record(rec(i))
    s = r.stats()
    assert (s["queue_depth"], s["spilled"], s["dropped"]) == (5, 7, 0)
    await r.start()
    await r.flush()  # replays the 7 spilled, then drains the 5 queued
    assert sorted(await ids_in(inner)) == [f"req-{i:04d}" for i in range(12)]
    s = r.stats()
    assert (s["written"], s["replayed"], s["dropped"]) == (12, 7, 0)
    # while running, overflow entries are replayed on the next flush
    for i in range(100, 120):
        r.record(rec(i))
    await r.flush()
    assert len(inner) == 32 and r.stats()["dropped"] == 0
    await r.aclose()


async def test_full_queue_without_journal_counts_drops_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    r = UsageRecorder(MemorySink(), queue_size=3, batch_size=100, flush_interval=60)
    with caplog.at_level(logging.ERROR, logger="modelplex.accounting.recorder"):
        for i in range(5):
            r.record(rec(i))
    assert r.stats()["dropped"] == 2 and r.stats()["queue_depth"] == 3
    assert any("dropped usage records" in m and "queue full" in m for m in caplog.messages)
    await r.start()
    await r.aclose()


async def test_shutdown_flushes_everything_queued() -> None:
    inner = MemorySink()
    r = UsageRecorder(inner, batch_size=7, flush_interval=60)
    await r.start()
    for i in range(30):
        r.record(rec(i))
    await r.aclose()
    assert len(inner) == 30 and r.stats()["written"] == 30
    r.record(rec(99))  # after close: never raises; counted
    assert r.stats()["dropped"] == 1


async def test_shutdown_with_the_sink_down_journals_for_the_next_start(tmp_path: Path) -> None:
    inner = MemorySink()
    flaky = FlakySink(inner)
    r = UsageRecorder(flaky, journal=Journal(tmp_path / "j"), batch_size=7, flush_interval=60)
    await r.start()
    flaky.down = True
    for i in range(9):
        r.record(rec(i))
    await r.aclose(close_sink=False)
    assert len(inner) == 0 and r.stats()["spilled"] == 9
    again = UsageRecorder(inner, journal=Journal(tmp_path / "j"), batch_size=7, flush_interval=60)
    await again.start()
    await again.flush()
    assert len(inner) == 9 and again.stats()["replayed"] == 9
    await again.aclose()


async def test_record_from_other_threads() -> None:
    inner = MemorySink()
    r = UsageRecorder(inner, batch_size=50, queue_size=100_000, flush_interval=60)
    await r.start()

    def produce(base: int) -> None:
        for i in range(250):
            r.record(rec(base + i))

    threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    await r.flush()
    assert len(inner) == 1000 and r.stats()["written"] == 1000
    await r.aclose()


async def test_a_bad_record_is_set_aside_and_does_not_block_its_batch(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    r = UsageRecorder(SQLiteSink(db), journal=Journal(tmp_path / "j"), batch_size=10, flush_interval=60)
    await r.start()
    bad = UsageRecord("bad", ts=None)  # type: ignore[arg-type]  # NOT NULL violation in the database
    for i in range(4):
        r.record(rec(i))
    r.record(bad)
    r.record(rec(4))
    await r.flush()
    assert sqlite_counts(db) == (5, 5, 5)
    s = r.stats()
    assert (s["rejected"], s["written"], s["sink_ok"], s["spilled"]) == (1, 5, True, 0)
    rejected = (tmp_path / "j.rejected").read_text()
    assert '"request_id":"bad"' in rejected
    await r.aclose()


def test_background_thread_mode(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    r = UsageRecorder(SQLiteSink(db), batch_size=10, flush_interval=60)
    r.start_background()
    for i in range(23):
        r.record(rec(i))
    r.flush_sync(timeout=30)
    assert sqlite_counts(db) == (23, 23, 23)
    r.record(rec(23))
    r.close()
    assert sqlite_counts(db) == (24, 24, 24)


def test_make_recorder_from_config(tmp_path: Path) -> None:
    db = str(tmp_path / "u.db")
    cfg = AccountingConfig(sink="sqlite", path=db, queue_size=77, batch_size=11, flush_interval=0.5)
    r = make_recorder(cfg)
    assert r is not None and r.queue_size == 77 and r.batch_size == 11 and r.flush_interval == 0.5
    assert r.journal is not None and str(r.journal.path) == db + ".journal.jsonl"
    assert make_recorder(AccountingConfig(sink="none")) is None
    assert journal_path(AccountingConfig(sink="memory")) is None
    assert journal_path(AccountingConfig(sink="memory", journal_path="/x/j")) == "/x/j"
    assert journal_path(AccountingConfig(sink="postgres", dsn="postgresql://h/db")) == "modelplex-usage.journal.jsonl"


async def test_records_are_queued_packed_for_a_sink_that_packs_them(tmp_path: Path) -> None:
    """The SQLite sink packs: the queue holds bytes (which the garbage collector does not track), except for
    a record JSON cannot carry exactly, queued as it is; both reach the database as given."""
    db = tmp_path / "usage.db"
    r = UsageRecorder(SQLiteSink(db), batch_size=100, flush_interval=60)
    await r.start()
    plain = [rec(i, user=f"u{i}", tags=["t", "é"]) for i in range(3)]
    nul = rec(3, user="a\x00b")
    for x in (*plain, nul):
        r.record(x)
    assert [type(i).__name__ for i in r._queue] == ["bytes", "bytes", "bytes", "UsageRecord"]
    await r.flush()
    stored = {d["request_id"]: d for d in await r.sink.query(with_attempts=True)}
    assert [stored[x.request_id] for x in (*plain, nul)] == [
        {**record_dict(x), "feedback_comment": None} for x in (*plain, nul)]
    assert r.stats()["written"] == 4
    await r.aclose()


async def test_packed_records_spilled_while_the_sink_is_down_are_journaled_as_records(tmp_path: Path) -> None:
    flaky = FlakySink(MemorySink())
    flaky.packs = True
    journal = Journal(tmp_path / "j")
    r = UsageRecorder(flaky, journal=journal, batch_size=5, flush_interval=60, retry_interval=3600)
    await r.start()
    flaky.down = True
    for i in range(7):
        r.record(rec(i))
    assert all(type(i) is bytes for i in r._queue)
    await r.flush()
    await r.aclose(close_sink=False)
    assert (r.stats()["spilled"], r.stats()["dropped"]) == (7, 0)
    flaky.down = False
    r2 = UsageRecorder(flaky, journal=Journal(tmp_path / "j"), batch_size=5, flush_interval=60)
    await r2.start()
    await r2.flush()
    assert await ids_in(flaky.inner) == [f"req-{i:04d}" for i in range(7)]
    assert r2.stats()["replayed"] == 7
    await r2.aclose()
