"""MemoryState keeps reservations only while they are open: memory follows the requests in flight.

White-box on purpose (the sizes of the internal maps and heaps are the point); the behaviour both
backends share is in test_state_backends.py.
"""

from __future__ import annotations

import math

from modelplex.resilience.clock import FakeClock
from modelplex.state.memory import _COMPACT_MIN, FINISHED_IDS_KEPT, MemoryState


async def test_finished_reservations_leave_nothing_behind() -> None:
    st = MemoryState(FakeClock())
    for i in range(5_000):
        assert await st.reserve([("g", math.inf), ("u", 1e9)], 1.0, f"r{i}", ttl=600) == (True, None)
        if i % 2:
            assert await st.settle(f"r{i}", 0.5) is True
        else:
            assert await st.release(f"r{i}") is True
    assert await st.usage("g") == (1250.0, 0.0)
    assert await st.usage("u") == (1250.0, 0.0)
    assert (await st.health())["reservations"] == 0
    assert not st._reservations and not st._expired_heap
    assert len(st._hold_heap) <= _COMPACT_MIN  # stale entries are compacted away
    assert len(st._finished) + len(st._finished_before) <= FINISHED_IDS_KEPT


async def test_compaction_keeps_the_holds_still_open() -> None:
    clock = FakeClock()
    st = MemoryState(clock)
    assert await st.reserve([("k", 100.0)], 3.0, "long", ttl=1000) == (True, None)
    for i in range(3 * _COMPACT_MIN):
        assert await st.reserve([("k", 100.0)], 1.0, f"short{i}", ttl=600) == (True, None)
        assert await st.settle(f"short{i}", 0.01) is True
    assert len(st._hold_heap) <= _COMPACT_MIN
    spent, reserved = await st.usage("k")
    assert reserved == 3.0
    clock.advance(999.9)
    assert (await st.usage("k"))[1] == 3.0
    clock.advance(0.1)
    assert (await st.usage("k"))[1] == 0.0  # the long hold still expires on time
    assert await st.settle("long", 2.0) is True  # and a late settle still books it
    assert (await st.usage("k"))[0] == spent + 2.0


async def test_an_expired_unsettled_record_is_kept_for_the_retention_only() -> None:
    clock = FakeClock()
    st = MemoryState(clock, record_retention=100.0)
    await st.reserve([("k", 10.0)], 4.0, "crashed", ttl=30)
    clock.advance(30)
    assert await st.usage("k") == (0.0, 0.0)
    assert (await st.health())["reservations"] == 1  # kept for a late settle
    clock.advance(100)
    assert (await st.health())["reservations"] == 0
    assert await st.settle("crashed", 1.0) is False
    assert await st.usage("k") == (0.0, 0.0)


async def test_recently_finished_ids_are_remembered_within_the_bound() -> None:
    st = MemoryState(FakeClock())
    await st.reserve([("k", math.inf)], 1.0, "first", ttl=60)
    assert await st.release("first") is True
    for i in range(FINISHED_IDS_KEPT // 2 - 1):
        await st.reserve([("k", math.inf)], 1.0, f"r{i}", ttl=60)
        await st.settle(f"r{i}", 0.0)
    assert await st.reserve([("k", math.inf)], 1.0, "first", ttl=60) == (False, None)
    assert await st.release("first") is False
    for i in range(FINISHED_IDS_KEPT):
        await st.reserve([("k", math.inf)], 1.0, f"s{i}", ttl=60)
        await st.settle(f"s{i}", 0.0)
    # beyond the bound the id is forgotten: budget ids are unique, so this costs nothing in practice
    assert await st.reserve([("k", math.inf)], 1.0, "first", ttl=60) == (True, None)
    assert await st.usage("k") == (0.0, 1.0)
