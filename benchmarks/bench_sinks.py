"""Section 6, sinks: usage-record write throughput into SQLite and PostgreSQL.

Owns: the sink workload, run in a worker process (``python -m benchmarks.bench_sinks --sink ...``).
Records look like the router's (one attempt each, tags, a user, a selection reason), with request ids
from ``modelplex.ids.new_request_id`` as the router and the gateway make them. Two figures
per sink, each on a fresh store:

* ``write_batch``: the sink alone, batches of 500 (the recorder's default batch size);
* ``recorder``: ``UsageRecorder.record()`` for every record, then ``flush()``: what the router's
  hand-off costs end to end (queue, batching, the sink).

PostgreSQL runs when ``asyncpg`` imports and a server answers at ``$MODELPLEX_BENCH_PG_DSN`` (else
``$MODELPLEX_TEST_PG_DSN``, else ``postgresql://postgres@127.0.0.1:5432/test``), in a schema of its
own that is dropped afterwards; otherwise the row says why it was skipped.

Must not touch: the sinks (public API only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from benchmarks.common import Context, Section, Target, run_json

BATCH = 500
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def pg_dsn() -> str:
    return os.environ.get("MODELPLEX_BENCH_PG_DSN") or os.environ.get("MODELPLEX_TEST_PG_DSN") or DEFAULT_PG_DSN


def make_records(n: int) -> list[Any]:
    from modelplex.accounting.records import UsageRecord
    from modelplex.ids import new_request_id

    now = time.time()
    out = []
    for i in range(n):
        model = ("openai/gpt-4o-mini", "groq/openai/gpt-oss-120b")[i % 2]
        out.append(UsageRecord(
            request_id=new_request_id(), ts=now - (n - i) * 0.001, kind="chat", task="summarization",
            strategy="balanced", user=f"user-{i % 50}", api_key_id=f"key-{i % 5}", tags=["bench", "sinks"],
            model=model, provider=model.split("/", 1)[0],
            attempts=[{"target": model, "provider": model.split("/", 1)[0], "outcome": "success",
                       "error_type": None, "status_code": None, "latency_ms": 1.234, "retry": 0, "detail": None}],
            attempt_count=1, input_tokens=14, output_tokens=12, cost_usd=0.0000123, latency_ms=2.5,
            selection_reason="task summarization: selected by balance; strategy balanced (task default)"))
    return out


async def _sink(kind: str, path: str, schema: str | None) -> Any:
    from modelplex.accounting.sinks import make_sink
    from modelplex.config import AccountingConfig

    cfg = AccountingConfig(sink=kind, path=path or None, dsn=pg_dsn() if kind == "postgres" else None)  # type: ignore[arg-type]
    sink = make_sink(cfg, schema=schema)
    await sink.start()
    return sink


async def worker(kind: str, n: int, path: str) -> dict[str, Any]:
    from modelplex.accounting.recorder import UsageRecorder

    schema = f"mpx_bench_{uuid.uuid4().hex[:10]}" if kind == "postgres" else None
    out: dict[str, Any] = {"sink": kind, "records": n, "batch": BATCH}
    try:
        sink = await _sink(kind, f"{path}.batch.db" if path else "", schema)
        records = make_records(n)
        t0 = time.perf_counter()
        written = 0
        for i in range(0, n, BATCH):
            written += await sink.write_batch(records[i:i + BATCH])
        elapsed = time.perf_counter() - t0
        await sink.close()
        if written != n:
            raise RuntimeError(f"write_batch stored {written} of {n} records")
        out["write_batch"] = {"seconds": elapsed, "records_per_s": n / elapsed}

        sink2 = await _sink(kind, f"{path}.recorder.db" if path else "", schema)
        recorder = UsageRecorder(sink2, queue_size=max(10_000, n + 1), batch_size=BATCH, flush_interval=0.25)
        await recorder.start()
        records = make_records(n)
        t0 = time.perf_counter()
        for r in records:
            recorder.record(r)
        await recorder.flush()
        elapsed = time.perf_counter() - t0
        stats = recorder.stats()
        await recorder.aclose()
        if stats["written"] != n:
            raise RuntimeError(f"the recorder wrote {stats['written']} of {n} records: {stats}")
        out["recorder"] = {"seconds": elapsed, "records_per_s": n / elapsed}
    finally:
        if schema is not None:
            import asyncpg

            conn = await asyncpg.connect(pg_dsn())
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
    return out


def postgres_reachable() -> str | None:
    """None when PostgreSQL can be used, else why not."""
    import importlib.util
    import socket
    from urllib.parse import urlparse

    if importlib.util.find_spec("asyncpg") is None:
        return "asyncpg is not installed (pip install 'modelplex[postgres]')"
    u = urlparse(pg_dsn())
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=1.0):
            return None
    except OSError:
        return f"no PostgreSQL server at {u.hostname}:{u.port or 5432}"


def run(ctx: Context) -> Section:
    sec = Section("sinks", "Sinks: usage-record write throughput",
                  columns=["sink", "records", "write_batch records/s", "through the recorder records/s"])
    n = ctx.count(100_000, 2_000)
    results: dict[str, Any] = {}
    for kind in ("sqlite", "postgres"):
        if kind == "postgres":
            why = postgres_reachable()
            if why is not None:
                sec.rows.append([kind, "", f"skipped: {why}", ""])
                results[kind] = {"skipped": why}
                continue
        try:
            d = run_json([ctx.python, "-m", "benchmarks.bench_sinks", "--sink", kind, "--records", str(n),
                          "--path", str(ctx.work_dir / f"sink-{kind}")], timeout=600)
        except Exception as exc:
            sec.rows.append([kind, "", f"failed: {exc}", ""])
            results[kind] = {"error": str(exc)}
            continue
        results[kind] = d
        sec.rows.append([kind, d["records"], round(d["write_batch"]["records_per_s"]),
                         round(d["recorder"]["records_per_s"])])
    sq = results.get("sqlite", {})
    sec.targets.append(Target("sinks: SQLite usage records/s", sq.get("write_batch", {}).get("records_per_s"),
                              20_000, ">=", "records/s", f"write_batch in batches of {BATCH}, WAL, one writer thread"))
    sec.notes.append(f"PostgreSQL DSN: {pg_dsn().split('@')[-1]} (a schema of its own, dropped afterwards)")
    sec.data = results
    return sec


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sinks")
    p.add_argument("--sink", choices=("sqlite", "postgres"), required=True)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--path", default="")
    a = p.parse_args(argv)
    sys.stdout.write(json.dumps(asyncio.run(worker(a.sink, a.records, a.path))) + "\n")


if __name__ == "__main__":
    main()
