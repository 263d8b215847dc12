"""The spill journal: durable appends, rotation for replay, torn lines, ownership."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplex.accounting.journal import Journal, JournalLockedError, decode, encode
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks.base import FeedbackEntry


def rec(i: int) -> UsageRecord:
    return UsageRecord(f"r{i}", ts=1_767_571_200.0 + i, model="openai/gpt-4o-mini", provider="openai",
                       task="fast", tags=["t"], input_tokens=10 * i, output_tokens=i, cost_usd=i / 1e4,
                       attempts=[{"target": "openai/gpt-4o-mini", "provider": "openai", "outcome": "success",
                                  "error_type": None, "status_code": None, "latency_ms": 1.5, "retry": 0,
                                  "detail": None}], attempt_count=1)


def test_encode_decode_round_trip() -> None:
    r = rec(3)
    assert decode(encode(r)) == r
    f = FeedbackEntry("r3", 0.75, "fine", 1_767_571_300.0)
    assert decode(encode(f)) == f
    assert encode(r).endswith(b"\n") and encode(r).count(b"\n") == 1
    with pytest.raises(ValueError):
        decode(b'{"t": "x", "v": {}}')


def test_append_rotate_read_discard(tmp_path: Path) -> None:
    j = Journal(tmp_path / "spill.jsonl")
    assert not j.has_pending() and j.rotate() == []
    entries = [rec(1), FeedbackEntry("r1", 0.5, None, 1.0), rec(2)]
    assert j.append(entries) == 3
    assert j.has_pending()
    files = j.rotate()
    assert [f.name for f in files] == ["spill.jsonl.replay-000001"]
    assert list(j.read(files[0])) == entries
    j.append([rec(3)])  # new spills go to a fresh active file, not the one being replayed
    files = j.rotate()
    assert [f.name for f in files] == ["spill.jsonl.replay-000001", "spill.jsonl.replay-000002"]
    assert [[e.request_id for e in b] for b in j.batches(files[0], 2)] == [["r1", "r1"], ["r2"]]
    j.discard(files[0])
    j.discard(files[0])  # idempotent
    assert j.replay_files() == [files[1]]
    j.discard(files[1])
    assert not j.has_pending()
    j.close()


def test_append_nowait_is_durable_after_sync(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append_nowait(rec(1))
    j.append_nowait(rec(2))
    assert j.has_pending()
    j.sync()
    lines = (tmp_path / "j.jsonl").read_bytes().splitlines()
    assert [decode(line).request_id for line in lines] == ["r1", "r2"]
    j.close()


def test_torn_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(encode(rec(1)) + encode(rec(2)) + encode(rec(3))[:25])  # a crash mid-write
    j = Journal(path)
    files = j.rotate()
    assert [e.request_id for e in j.read(files[0])] == ["r1", "r2"]
    assert j.corrupt_lines == 1
    j.close()


def test_an_entry_appended_after_a_torn_last_line_is_kept(tmp_path: Path) -> None:
    """A new owner appending to a file whose last line a crash cut (the sink down at restart) ends that
    line first: the new entry is not glued to the torn bytes and lost with them."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(encode(rec(1)) + encode(rec(2))[:25])
    j = Journal(path)
    j.append([rec(3)])
    j.append_nowait(rec(4))
    j.sync()
    files = j.rotate()
    assert [e.request_id for e in j.read(files[0])] == ["r1", "r3", "r4"]
    assert j.corrupt_lines == 1
    j.close()


def test_owners_sharing_a_path_take_slots(tmp_path: Path) -> None:
    first = Journal(tmp_path / "j.jsonl")
    first.append([rec(1)])
    second = Journal(tmp_path / "j.jsonl")  # another worker process with the same configuration
    second.append([rec(2)])
    assert first.path.name == "j.jsonl" and second.path.name == "j.jsonl.1"
    assert [e.request_id for e in second.read(second.path)] == ["r2"]
    assert [f.name for f in second.rotate()] == ["j.jsonl.1.replay-000001"]  # a live owner's file stays its own
    assert [f.name for f in first.rotate()] == ["j.jsonl.replay-000001"]
    first.close()
    second.close()
    with pytest.raises(RuntimeError, match="closed"):
        second.append([rec(3)])


def test_every_slot_taken_is_journal_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelplex.accounting.journal as journal_module

    monkeypatch.setattr(journal_module, "MAX_SLOTS", 2)
    owners = [Journal(tmp_path / "j.jsonl") for _ in range(2)]
    for j in owners:
        j.append([rec(1)])
    with pytest.raises(JournalLockedError, match="all 2 slots"):
        Journal(tmp_path / "j.jsonl").append([rec(2)])
    for j in owners:
        j.close()


def test_a_gone_owners_spills_are_adopted_by_the_next_rotate(tmp_path: Path) -> None:
    first, second, third = (Journal(tmp_path / "j.jsonl") for _ in range(3))
    first.append([rec(1)])
    second.append([rec(2)])
    second.rotate()
    second.append([rec(3)])  # second now has a replay file and an active file
    third.append([rec(4)])
    second.close()  # its process is gone (a crash releases the lock as well)
    files = first.rotate()
    assert [f.name for f in files] == ["j.jsonl.replay-000001", "j.jsonl.replay-000002", "j.jsonl.replay-000003"]
    assert sorted(e.request_id for f in files for e in first.read(f)) == ["r1", "r2", "r3"]
    assert not list(tmp_path.glob("j.jsonl.1.replay-*")) and not (tmp_path / "j.jsonl.1").exists()
    assert (tmp_path / "j.jsonl.2").exists()  # third is alive: its spills stay its own
    first.close()
    third.close()


def test_rejected_entries_are_kept_apart(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.reject(rec(9))
    assert j.rejected_path.name == "j.jsonl.rejected"
    assert [decode(line).request_id for line in j.rejected_path.read_bytes().splitlines()] == ["r9"]
    assert not j.has_pending()  # rejected entries are not replayed
    j.close()
