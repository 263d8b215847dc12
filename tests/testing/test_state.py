"""SuspendingState: the memory backend, yielding to the loop before every call."""

from __future__ import annotations

import asyncio

from modelplex.resilience.clock import FakeClock
from modelplex.state import MemoryState
from modelplex.testing.state import SuspendingState


async def test_every_call_yields_to_the_loop_and_reaches_the_memory_state() -> None:
    memory = MemoryState(FakeClock())
    state = SuspendingState(memory, shared=True)
    assert state.shared and not SuspendingState(memory).shared
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    before = ticks
    assert await state.reserve([("k", 10.0)], 4.0, "r1", 60.0) == (True, None)
    assert ticks > before  # the reserve let the other task run
    assert await state.usage("k") == (0.0, 4.0)
    assert await state.settle("r1", 3.0) is True
    assert await memory.usage("k") == (3.0, 0.0)
    await state.set("a", {"x": 1})
    assert await state.get("a") == {"x": 1}
    assert await state.incr("n", 2.0) == 2.0
    t.cancel()


async def test_a_cancellation_lands_at_the_suspension() -> None:
    memory = MemoryState(FakeClock())
    state = SuspendingState(memory)
    task = asyncio.ensure_future(state.reserve([("k", 10.0)], 4.0, "r1", 60.0))
    await asyncio.sleep(0)  # the task is now parked at its sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert await memory.usage("k") == (0.0, 0.0)  # cancelled before it reached the state
