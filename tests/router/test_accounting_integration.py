"""Routed requests leave exactly one correct usage row each, in SQLite and in PostgreSQL; budgets hold
through the real router under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from modelplex.accounting.recorder import UsageRecorder
from modelplex.accounting.sinks.postgres import PostgresSink
from modelplex.accounting.sinks.sqlite import SQLiteSink
from modelplex.catalog import load_catalog
from modelplex.catalog.tokens import count_messages
from modelplex.errors import AllAttemptsFailedError, BudgetExceededError, StreamInterruptedError
from modelplex.policy.planner import HardNeeds
from modelplex.router import Router
from modelplex.testing.faults import Fault

MSGS = [{"role": "user", "content": "Tell me about the accounts."}]


async def _traffic(router: Router, fake: Any) -> dict[str, dict[str, Any]]:
    """A mix of successes, a fallback, a failure, a stream and a cut stream; returns what callers saw."""
    seen: dict[str, dict[str, Any]] = {}
    for i in range(5):
        r = await router.acomplete(MSGS, task="work", user=f"u{i % 2}", request_id=f"ok-{i}")
        seen[r.request_id] = {"success": True, "cost": r.cost_usd, "model": r.model}
    fake.plan.fail_next(Fault("server_error", status=500), times=1, model="small")
    r = await router.acomplete(MSGS, task="work", request_id="fallback-1")
    seen["fallback-1"] = {"success": True, "cost": r.cost_usd, "model": r.model, "fallback": True}
    fake.plan.fail_next(Fault("bad_request"), times=1, model="small")
    with pytest.raises(Exception):  # noqa: B017 - a typed BadRequestError; only the record matters here
        await router.acomplete(MSGS, task="work", request_id="failed-1")
    seen["failed-1"] = {"success": False}
    chunks = [c async for c in router.astream(MSGS, task="work", request_id="stream-1")]
    seen["stream-1"] = {"success": True, "cost": chunks[-1].cost_usd, "model": chunks[-1].model}
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1), times=1, model="small")
    with pytest.raises(StreamInterruptedError):
        async for _ in router.astream(MSGS, task="work", request_id="cut-1"):
            pass
    seen["cut-1"] = {"success": False}
    return seen


async def _check_rows(sink: Any, seen: dict[str, dict[str, Any]]) -> None:
    rows = await sink.query(limit=1000, with_attempts=True)
    by_id = {r["request_id"]: r for r in rows}
    assert len(rows) == len(seen) == len(by_id)  # no loss, no duplicates
    for rid, want in seen.items():
        row = by_id[rid]
        assert bool(row["success"]) == want["success"], rid
        if want["success"]:
            assert row["model"] == want["model"]
            assert row["cost_usd"] == pytest.approx(want["cost"], rel=1e-9, abs=1e-12)
            assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert by_id["fallback-1"]["fallback_used"] and by_id["fallback-1"]["attempt_count"] == 2
    cut = by_id["cut-1"]
    assert cut["output_tokens"] > 0 and cut["cost_usd"] > 0  # partial usage is charged, never zero
    assert by_id["stream-1"]["kind"] == "stream"


async def test_rows_in_sqlite(fake, clock, tmp_path: Path, make_config):
    config = make_config
    sink = SQLiteSink(str(tmp_path / "usage.db"))
    recorder = UsageRecorder(sink, batch_size=4, flush_interval=0.05)
    cfg = config(fake.base_url, tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                 routing={"retry": {"max_retries_per_target": 0}})
    router = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=clock, recorder=recorder)
    await router.start()
    seen = await _traffic(router, fake)
    await router.aclose()
    check = SQLiteSink(str(tmp_path / "usage.db"))
    await check.start()
    try:
        await _check_rows(check, seen)
    finally:
        await check.close()


async def test_rows_in_postgres(fake, clock, postgres_dsn: str, make_config):
    config = make_config
    schema = f"mpx_router_{uuid.uuid4().hex[:10]}"
    sink = PostgresSink(postgres_dsn, schema=schema)
    recorder = UsageRecorder(sink, batch_size=4, flush_interval=0.05)
    cfg = config(fake.base_url, tasks={"work": {"models": ["alpha/small", "beta/mid"]}},
                 routing={"retry": {"max_retries_per_target": 0}})
    router = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=clock, recorder=recorder)
    await router.start()
    try:
        seen = await _traffic(router, fake)
        await recorder.flush()
        await _check_rows(sink, seen)
    finally:
        await router._close_recorder()  # closes the sink too
        import asyncpg

        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        await router.aclose()


async def test_budget_holds_through_the_router_under_concurrency(fake, clock, make_config):
    config = make_config
    # alpha/small: 0.1 $/M in, 0.2 $/M out; max_tokens 1000 -> worst case about $0.0002 per request
    cfg = config(fake.base_url, tasks={"work": {"models": ["alpha/small"]}},
                 budgets={"daily_usd": 0.001})
    router = Router.from_config(cfg, catalog=load_catalog(bundled=False), env={}, clock=clock)
    results = await asyncio.gather(*[router.acomplete(MSGS, task="work", max_tokens=1000, user=f"u{i}")
                                     for i in range(60)], return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, (BudgetExceededError, AllAttemptsFailedError))]
    assert len(ok) + len(refused) == 60
    spec = router.catalog.get("alpha/small")
    prompt_tokens = count_messages(MSGS, spec).tokens
    worst = (prompt_tokens * 0.1 + 1000 * 0.2) / 1e6  # the reservation: input estimate + max_tokens
    assert 0 < len(ok) <= int(0.001 // worst)
    status = await router.budgets.status()
    day = next(s for s in status if s["kind"] == "global" and s["window"] == "daily")
    assert day["reserved_usd"] == pytest.approx(0.0, abs=1e-12)
    assert day["spent_usd"] == pytest.approx(sum(r.cost_usd for r in ok), rel=1e-9)
    assert day["spent_usd"] <= 0.001
    await router.aclose()


@pytest.mark.parametrize("style", ["sync", "asyncio.run"])
def test_a_program_that_never_closes_the_router_still_records_every_request(tmp_path: Path, style: str) -> None:
    """The README's pattern: calls, then exit, with no ``router.close()``."""
    import json
    import sqlite3
    import subprocess
    import sys

    from modelplex.testing.server import FakeProviderServer

    fake = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        db = tmp_path / "usage.db"
        cfg = {"providers": {"openai": {"base_url": fake.base_url + "/v1", "api_key": "sk-fake-123456"}},
               "accounting": {"sink": "sqlite", "path": str(db)}}
        call = ("router.complete(m, model='openai/gpt-6-luna')" if style == "sync" else
                "asyncio.run(router.acomplete(m, model='openai/gpt-6-luna'))")
        script = (f"import asyncio\nfrom modelplex import Router\nrouter = Router.from_config({json.dumps(cfg)})\n"
                  f"m = [{{'role': 'user', 'content': 'hi'}}]\nfor _ in range(5):\n    {call}\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM usage_records").fetchone()[0] == 5
    finally:
        fake.stop_thread()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_router_used_before_fork_works_and_records_in_the_children(tmp_path: Path) -> None:
    """gunicorn --preload, Celery prefork, multiprocessing: a router used in the parent, then forked. The
    children's calls used to hang for good (the parent's loop thread is not in the child); each child now
    starts its own loop, sessions and usage writer, and every call of every process is stored once."""
    import json
    import sqlite3
    import subprocess
    import sys

    from modelplex.testing.server import FakeProviderServer

    fake = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        db = tmp_path / "usage.db"
        cfg = {"providers": {"openai": {"base_url": fake.base_url + "/v1", "api_key": "sk-fake-123456"}},
               "accounting": {"sink": "sqlite", "path": str(db), "journal_path": str(tmp_path / "journal.jsonl")}}
        script = f"""
import os
import sys
from modelplex import Router
router = Router.from_config({json.dumps(cfg)})
m = [{{'role': 'user', 'content': 'hi'}}]
for _ in range(3):
    router.complete(m, model='openai/gpt-6-luna')
pids = []
for k in range(2):
    pid = os.fork()
    if pid == 0:
        for _ in range(4):
            router.complete(m, model='openai/gpt-6-luna')
        if k == 0:
            router.close()
            os._exit(0)
        sys.exit(0)  # a normal exit, as gunicorn and Celery workers end: the exit hook closes its router
    pids.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
# the children closed nothing of the parent's: its kept-alive connections still answer at once
router.complete(m, model='openai/gpt-6-luna', timeout=5)
print(codes)
"""
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[0, 0]"
        assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM usage_records").fetchone()
        assert rows == (3 + 2 * 4 + 1, 3 + 2 * 4 + 1)
    finally:
        fake.stop_thread()


def _pdf_part(pages: int) -> dict[str, Any]:
    import base64

    body = b"%%PDF-1.4\n1 0 obj << /Type /Pages /Count %d >> endobj\n" % pages
    body += b"".join(b"%d 0 obj << /Type /Page /Parent 1 0 R >> endobj\n" % (i + 2) for i in range(pages))
    return {"type": "file", "file": {"filename": "report.pdf",
                                     "file_data": "data:application/pdf;base64," + base64.b64encode(body).decode()}}


async def test_the_worst_case_estimate_counts_file_and_audio_parts(fake, make_config):
    """A request's hold grows with what it attaches: a 40-page PDF or a minute of audio was left out of the
    estimate (a few text bytes were held for a request carrying a 3 MB PDF)."""
    router = Router.from_config(make_config(fake.base_url), catalog=load_catalog(bundled=False), env={})
    spec = router.catalog.get("alpha/large")

    def estimate(content: Any) -> float:
        call = router._new_call([{"role": "user", "content": content}], {"max_tokens": 10}, model="alpha/large",
                                task=None, requirements=None, strategy=None, user=None, request_id=None, tags=None,
                                api_key_id=None, timeout=None, context=None, needs=HardNeeds(), kind="chat")
        return router._estimate_cost(call, spec)

    text = [{"type": "text", "text": "Summarize this."}]
    audio = {"type": "input_audio", "input_audio": {"data": "A" * 1_280_000, "format": "mp3"}}  # ~1 min at 128 kbit/s
    plain = estimate(text)
    per_mtok = spec.pricing.input_per_mtok
    assert estimate([*text, _pdf_part(40)]) >= 40 * 1500 * per_mtok / 1e6 > 100 * plain
    assert estimate([*text, audio]) > plain + 500 * per_mtok / 1e6
    await router.aclose()


async def test_an_abandoned_embedding_batch_is_charged_for_every_input(fake, make_config):
    router = Router.from_config(make_config(fake.base_url), catalog=load_catalog(bundled=False), env={})
    spec = router.catalog.get("alpha/embed")
    inputs = [{"role": "user", "content": f"input number {i} " * 20} for i in range(50)]
    call = router._new_call(inputs, {}, model="alpha/embed", task=None, requirements=None, strategy=None, user=None,
                            request_id=None, tags=None, api_key_id=None, timeout=None, context=None,
                            needs=HardNeeds(embedding=True), kind="embedding")
    one = count_messages(inputs[:1], spec).tokens
    usage = router._abandoned_usage(call, spec)
    assert usage.estimated and usage.output_tokens == 0 and usage.input_tokens >= 50 * (one - 10)
    await router.aclose()
