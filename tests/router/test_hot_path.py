"""The router's hot-path shortcuts keep their guarantees: a settle is completed even when the caller is
cancelled (in-process state settles without a shielding task; other state is shielded), and the hard
needs read from a request are the ones it states."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelplex.catalog import ModelSpec, load_catalog
from modelplex.catalog.store import ModelDeprecatedWarning
from modelplex.policy.planner import HardNeeds
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router, _needs_of
from modelplex.state import MemoryState
from modelplex.testing.faults import Behavior
from modelplex.testing.server import FakeProviderServer
from modelplex.testing.state import SuspendingState

MSGS = [{"role": "user", "content": "Summarize the quarterly numbers."}]
DAY = "budget:global:day:"


class GatedState(SuspendingState):
    """State that suspends in every call, as a network backend would. ``settle`` waits for ``gate`` and
    reports that it was entered, so a test can cancel the caller then."""

    name = "gated"

    def __init__(self, inner: MemoryState) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.gate.set()
        self.settle_entered = asyncio.Event()
        self.settled: list[tuple[str, float]] = []

    async def settle(self, reservation_id: str, actual: float) -> bool:
        self.settle_entered.set()
        await self.gate.wait()
        applied = await self._call("settle", reservation_id, actual)
        self.settled.append((reservation_id, actual))
        return applied


@pytest.fixture(params=["memory", "gated"])
async def budgeted(request: pytest.FixtureRequest, fake: FakeProviderServer, clock: FakeClock, make_config: Any):
    """A router with a daily budget on in-process state, or on state that suspends (the shielded path)."""
    memory = MemoryState(clock)
    state = memory if request.param == "memory" else GatedState(memory)
    cfg = make_config(fake.base_url, tasks={"work": {"models": ["alpha/small"]}}, budgets={"daily_usd": 10.0},
                      routing={"retry": {"max_retries_per_target": 0}})
    router = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=clock, state=state)
    yield router, state, memory
    await router.aclose()


async def day_usage(router: Router, memory: MemoryState) -> tuple[float, float]:
    [key] = [s.key for s in router.budgets.scopes(None, None, None, router.clock.wall())]
    assert key.startswith(DAY)
    return await memory.usage(key)


async def test_settle_completes_when_the_caller_is_cancelled_at_the_answer(budgeted: Any) -> None:
    """The cancellation arrives while the provider answers (here: from an attempt callback, so with no
    timing involved). Whatever the caller sees, the answer's cost is booked and nothing stays held."""
    router, _state, memory = budgeted
    first = await router.acomplete(MSGS, task="work")
    assert first.cost_usd > 0
    assert await day_usage(router, memory) == (pytest.approx(first.cost_usd), 0.0)

    def cancel_on_success(attempt: Any, _rid: str) -> None:
        if attempt.outcome == "success":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

    router.on_attempt.append(cancel_on_success)
    task = asyncio.ensure_future(router.acomplete(MSGS, task="work"))
    [outcome] = await asyncio.gather(task, return_exceptions=True)
    assert isinstance(outcome, asyncio.CancelledError) or outcome.cost_usd == pytest.approx(first.cost_usd)
    assert task.cancelled() or not isinstance(outcome, BaseException)
    assert await day_usage(router, memory) == (pytest.approx(2 * first.cost_usd), 0.0)


async def test_a_settle_in_flight_survives_the_callers_cancellation(fake: FakeProviderServer, clock: FakeClock,
                                                                     make_config: Any) -> None:
    """State that suspends: the caller is cancelled while the settle waits on the state; the settle
    still completes (shielded), and the caller sees the cancellation."""
    memory = MemoryState(clock)
    state = GatedState(memory)
    cfg = make_config(fake.base_url, tasks={"work": {"models": ["alpha/small"]}}, budgets={"daily_usd": 10.0})
    router = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=clock, state=state)
    try:
        first = await router.acomplete(MSGS, task="work")
        state.gate.clear()
        state.settle_entered.clear()
        task = asyncio.ensure_future(router.acomplete(MSGS, task="work"))
        await state.settle_entered.wait()
        task.cancel()
        for _ in range(5):  # the cancellation is delivered; the settle is still waiting on the state
            await asyncio.sleep(0)
        assert not task.done() and len(state.settled) == 1
        state.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(state.settled) == 2 and state.settled[1][1] == pytest.approx(first.cost_usd)
        assert await day_usage(router, memory) == (pytest.approx(2 * first.cost_usd), 0.0)
    finally:
        await router.aclose()


async def test_a_stream_cancelled_mid_way_settles_its_partial_cost(budgeted: Any) -> None:
    router, state, memory = budgeted
    agen = router.astream(MSGS, task="work", max_tokens=500)
    first = await agen.__anext__()
    assert first.delta
    if isinstance(state, GatedState):
        state.gate.clear()
    nxt = asyncio.ensure_future(agen.__anext__())
    nxt.cancel()  # the consumer is cancelled between two chunks
    if isinstance(state, GatedState):  # cancelled again while the settle waits on the state: still completed
        await state.settle_entered.wait()
        nxt.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        assert not nxt.done() and state.settled == []
        state.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await nxt
    await agen.aclose()
    spent, reserved = await day_usage(router, memory)
    assert reserved == 0.0
    assert spent > 0  # the partial answer is charged (estimated), never zero
    if isinstance(state, GatedState):
        assert len(state.settled) == 1


async def test_a_settle_survives_repeated_cancellation(fake: FakeProviderServer, clock: FakeClock,
                                                        make_config: Any) -> None:
    """A caller cancelled twice while the settle waits on (suspending) state: the settle must still complete.
    The second cancellation reaches the unshielded ``await task`` in ``router._shielded`` and cancels the
    settle itself, so the cost is never booked and the hold stays until it expires."""
    memory = MemoryState(clock)
    state = GatedState(memory)
    cfg = make_config(fake.base_url, tasks={"work": {"models": ["alpha/small"]}}, budgets={"daily_usd": 10.0})
    router = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=clock, state=state)
    records: list[Any] = []
    router.on_record.append(records.append)
    try:
        state.gate.clear()
        task = asyncio.ensure_future(router.acomplete(MSGS, task="work"))
        await state.settle_entered.wait()
        for _ in range(2):  # e.g. a client disconnect, then the server shutting down
            task.cancel()
            for _ in range(3):
                await asyncio.sleep(0)
        state.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(state.settled) == 1
        spent, reserved = await day_usage(router, memory)
        assert spent > 0 and reserved == 0.0
        # the call happened and was charged: its usage record exists too, with the cost that was booked
        assert len(records) == 1 and records[0].success and records[0].cost_usd == pytest.approx(spent)
    finally:
        await router.aclose()


async def test_a_call_cancelled_after_it_was_sent_is_charged_its_worst_case(budgeted: Any,
                                                                           fake: FakeProviderServer) -> None:
    """The caller gives up while the provider works on the answer: the provider still produces and bills it,
    so the hold is settled at the prompt plus the output's worst case (never left held, never free), and the
    usage record says so (estimated, not a success)."""
    router, _state, memory = budgeted
    records: list[Any] = []
    router.on_record.append(records.append)
    fake.behavior = Behavior(ttft_s=30)
    task = asyncio.ensure_future(router.acomplete(MSGS, task="work", max_tokens=100))
    while not (await day_usage(router, memory))[1]:  # wait (by yielding) until the hold is taken
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # the request is on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    spec = router.catalog.get("alpha/small")
    [rec] = records
    assert (rec.success, rec.usage_estimated, rec.model, rec.output_tokens) == (False, True, "alpha/small", 100)
    assert rec.input_tokens > 0 and rec.cost_usd == pytest.approx(
        (rec.input_tokens * spec.pricing.input_per_mtok + 100 * spec.pricing.output_per_mtok) / 1e6)
    assert await day_usage(router, memory) == (pytest.approx(rec.cost_usd), 0.0)


# ----------------------------------------------------------------------------- hard needs of a request


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(("messages", "params", "expected"), [
    ([], {}, HardNeeds()),
    (MSGS, {"temperature": 0.2}, HardNeeds()),
    (MSGS, {"tools": [TOOL]}, HardNeeds(tool_calling=True)),
    (MSGS, {"tools": []}, HardNeeds()),
    (MSGS, {"tools": None}, HardNeeds()),
    (MSGS, {"response_format": {"type": "json_object"}}, HardNeeds(json=True)),
    (MSGS, {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
     HardNeeds(json=True)),
    (MSGS, {"response_format": {"type": "text"}}, HardNeeds()),
    (MSGS, {"response_format": "json_object"}, HardNeeds()),  # not the OpenAI shape: no need read from it
    ([{"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE]}], {}, HardNeeds(vision=True)),
    ([{"role": "user", "content": [{"type": "text", "text": "no picture"}]}], {}, HardNeeds()),
    ([{"role": "user", "content": "image_url"}], {}, HardNeeds()),
    ([{"role": "system", "content": None}, {"role": "user", "content": [IMAGE]}], {}, HardNeeds(vision=True)),
    ([{"role": "user", "content": ["plain string part", IMAGE]}], {}, HardNeeds(vision=True)),
    ([*MSGS, {"role": "user", "content": [IMAGE]}],
     {"tools": [TOOL], "response_format": {"type": "json_object"}},
     HardNeeds(tool_calling=True, json=True, vision=True)),
])
def test_needs_of_a_request(messages: list[Any], params: dict[str, Any], expected: HardNeeds) -> None:
    got = _needs_of(messages, params)
    assert got == expected
    assert got.embedding is False


def test_needs_without_any_need_are_the_default() -> None:
    none = _needs_of(MSGS, {})
    assert none == HardNeeds() and hash(none) == hash(HardNeeds())  # the planner's memo keys on it
    with pytest.raises(AttributeError):  # shared between requests, so it must be immutable
        none.tool_calling = True  # type: ignore[misc]


async def test_needs_reach_the_plan(make_router: Any) -> None:
    r = make_router()
    picture = [{"role": "user", "content": [IMAGE]}]
    assert [s.id for s in r.planner.plan(model="claude/sonnet", needs=_needs_of(MSGS, {})).targets] == [
        "claude/sonnet"]
    vision = r.planner.plan(model="claude/sonnet", needs=_needs_of(picture, {}))
    assert vision.targets == [] and vision.dropped == {"claude/sonnet": "lacks vision (the request sends images)"}
    # and back: the plan without the need is not the memoized vision one
    assert [s.id for s in r.planner.plan(model="claude/sonnet", needs=_needs_of(MSGS, {})).targets] == [
        "claude/sonnet"]


def test_a_dropped_target_names_what_it_lacks() -> None:
    chat = ModelSpec(id="x/chat", provider="x", context_window=8_000, capabilities=["tool_calling"])
    embed = ModelSpec(id="x/embed", provider="x", context_window=8_000, mode="embedding")
    assert HardNeeds(embedding=True).missing(chat) == "not an embedding model"
    assert HardNeeds().missing(embed) == "embedding model; the request is a chat completion"
    assert HardNeeds(tool_calling=True, json=True, vision=True).missing(chat) == \
        "lacks json_mode (the request asks for JSON) and vision (the request sends images)"


async def test_a_deprecated_model_refused_for_a_need_is_named_beside_its_replacement() -> None:
    r = Router.from_config({"providers": {"openai": {"api_key": "sk-test"}}}, env={})
    try:
        with pytest.warns(ModelDeprecatedWarning):
            plan = r.planner.plan(model="openai/gpt-4o-mini", needs=HardNeeds(embedding=True))
        replacement = r.catalog.migrate(r.catalog.get("openai/gpt-4o-mini")).id
        assert plan.targets == [] and plan.dropped == {
            replacement: "not an embedding model (in place of openai/gpt-4o-mini, which is deprecated)"}
    finally:
        await r.aclose()


async def test_a_deprecated_model_served_by_its_replacement_says_so_in_the_reason() -> None:
    r = Router.from_config({"providers": {"openai": {"api_key": "sk-test"}}}, env={})
    try:
        with pytest.warns(ModelDeprecatedWarning):
            plan = r.planner.plan(model="openai/gpt-4o-mini")
        replacement = r.catalog.migrate(r.catalog.get("openai/gpt-4o-mini")).id
        assert plan.targets[0].id == replacement
        assert plan.selection_reason == (f"model openai/gpt-4o-mini requested explicitly; deprecated, so its "
                                         f"replacement {replacement}")
        assert r.planner.plan(model=replacement).selection_reason == f"model {replacement} requested explicitly"
    finally:
        await r.aclose()
