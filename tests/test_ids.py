"""Request ids: format, time order, uniqueness, independence from the application's seed and forks."""

from __future__ import annotations

import multiprocessing as mp
import random
import sys

import pytest

from modelplex import ids
from modelplex.ids import new_request_id


def test_ids_are_32_lowercase_hex_and_unique_across_batches() -> None:
    got = [new_request_id() for _ in range(3 * ids._BATCH + 7)]  # several refills of the pool
    assert len(set(got)) == len(got)
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in got)


def test_the_first_twelve_hex_characters_are_the_epoch_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_763_780_000_123_456_789)
    rid = new_request_id()
    assert int(rid[:12], 16) == 1_763_780_000_123


def test_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000_000_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: clock[0])
    made = []
    for _ in range(50):
        made.append(new_request_id())
        clock[0] += 1_000_000  # one millisecond
    assert sorted(made) == made


def test_ids_ignore_the_applications_random_seed() -> None:
    random.seed(1234)
    first = new_request_id()
    random.seed(1234)
    assert new_request_id()[12:] != first[12:]


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    if sys.platform == "win32" or "fork" not in mp.get_all_start_methods():
        pytest.skip("fork start method not available on this platform")
    new_request_id()  # the parent holds a partly used batch
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put([new_request_id() for _ in range(5)]))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    ours = [new_request_id() for _ in range(5)]
    assert not {t[12:] for t in theirs} & {o[12:] for o in ours}
