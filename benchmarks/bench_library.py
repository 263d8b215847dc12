"""Section 1, library: routed calls per second over a fake upstream, against raw aiohttp and LiteLLM's Router.

Owns: the library workload and its workers. Each client runs in a worker process of its own
(``python -m benchmarks.bench_library --client modelplex|aiohttp|litellm ...``), one after
the other, against the same upstream (its own process); each worker measures concurrency 1, then
50, with a warm-up before each, and prints one JSON line.

* ``modelplex``: ``Router.acomplete(MESSAGES, task="summarization", user=...)`` over the bundled
  catalog with two OpenAI-compatible providers (``openai``, ``groq``) pointed at the upstream:
  selection (the task's requirements, the balanced strategy), breakers, budgets (daily and per
  user), and accounting to SQLite (the router's own recorder, started on its own as a library
  user gets it) all on. The worker checks that the records reached the database.
* ``aiohttp``: the floor: a ``ClientSession.post`` of the same body, the reply parsed with orjson.
* ``litellm``: ``litellm.Router.acompletion`` with one deployment pointed at the upstream (run
  under the interpreter that has LiteLLM; see ``common.litellm_python``).

Must not touch: modelplex's internals (public API only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from benchmarks.common import (
    MESSAGES,
    PROVIDER_KEY,
    Context,
    LoadResult,
    Section,
    Target,
    closed_loop,
    ratio,
    run_json,
    start_upstream,
)

CONCURRENCIES = (1, 50)
TASK = "summarization"


def library_config(url: str, db: str, **extra: Any) -> dict[str, Any]:
    """The router configuration the library and failure sections use."""
    cfg: dict[str, Any] = {
        "providers": {
            "openai": {"base_url": url + "/v1", "api_key": PROVIDER_KEY},
            "groq": {"base_url": url + "/v1", "api_key": PROVIDER_KEY},
        },
        "accounting": {"sink": "sqlite", "path": db},
        "budgets": {"daily_usd": 1_000_000.0, "per_user_daily_usd": 100_000.0},
    }
    cfg.update(extra)
    return cfg


# ------------------------------------------------------------------------------------------ clients


async def _modelplex(url: str, db: str) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[dict[str, Any]]]]:
    from modelplex.router import Router

    router = Router.from_config(library_config(url, db), env={})
    first = await router.acomplete(MESSAGES, task=TASK, user="bench-user")
    if not first.content or first.cost_usd <= 0:
        raise RuntimeError(f"unexpected first response: {first!r}")

    async def call() -> None:
        await router.acomplete(MESSAGES, task=TASK, user="bench-user")

    async def finish() -> dict[str, Any]:
        await router.aclose()
        import sqlite3

        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        stats = router.recorder.stats() if router.recorder is not None else {}
        return {"model": first.model, "selection_reason": first.selection_reason, "records_stored": stored,
                "recorder": {k: stats.get(k) for k in ("written", "spilled", "dropped", "failed_batches")}}

    return call, finish


async def _aiohttp(url: str, db: str) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[dict[str, Any]]]]:
    import aiohttp
    import orjson

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {PROVIDER_KEY}"}
    endpoint = url + "/v1/chat/completions"

    async def call() -> None:
        async with session.post(endpoint, data=body, headers=headers) as resp:
            data = orjson.loads(await resp.read())
            if resp.status != 200 or not data["choices"][0]["message"]["content"]:
                raise RuntimeError(f"HTTP {resp.status}")

    async def finish() -> dict[str, Any]:
        await session.close()
        return {"aiohttp": aiohttp.__version__}

    return call, finish


async def _litellm(url: str, db: str) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[dict[str, Any]]]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = litellm.Router(model_list=[{"model_name": "bench", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": url + "/v1", "api_key": PROVIDER_KEY}}])
    first = await router.acompletion(model="bench", messages=MESSAGES)
    if not first.choices[0].message.content:
        raise RuntimeError("unexpected first LiteLLM response")

    async def call() -> None:
        await router.acompletion(model="bench", messages=MESSAGES)

    async def finish() -> dict[str, Any]:
        import importlib.metadata as md

        return {"litellm": md.version("litellm")}

    return call, finish


CLIENTS = {"modelplex": _modelplex, "aiohttp": _aiohttp, "litellm": _litellm}


async def _worker(client: str, url: str, db: str, concurrencies: Sequence[int], seconds: float,
                  warmup: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    call, finish = await CLIENTS[client](url, db)
    setup_s = time.perf_counter() - t0
    runs = [(await closed_loop(call, concurrency=c, seconds=seconds, warmup=warmup)).to_dict()
            for c in concurrencies]
    return {"client": client, "runs": runs, "setup_s": setup_s, "info": await finish()}


def worker_main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_library")
    p.add_argument("--client", choices=sorted(CLIENTS), required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--db", default="")
    p.add_argument("--concurrency", type=int, action="append")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    a = p.parse_args(argv)
    db = a.db or tempfile.mktemp(suffix=".db", prefix="modelplex-bench-")
    out = asyncio.run(_worker(a.client, a.url, db, a.concurrency or list(CONCURRENCIES), a.seconds, a.warmup))
    sys.stdout.write(json.dumps(out) + "\n")


# ------------------------------------------------------------------------------------------ section


def _run_client(ctx: Context, client: str, python: str, url: str) -> dict[str, Any]:
    db = ctx.work_dir / f"library-{client}.db"
    args = [python, "-m", "benchmarks.bench_library", "--client", client, "--url", url, "--db", str(db),
            "--seconds", str(ctx.seconds(5.0, 1.0)), "--warmup", str(ctx.seconds(1.0, 0.3))]
    for c in CONCURRENCIES:
        args += ["--concurrency", str(c)]
    return run_json(args, timeout=300)


def run(ctx: Context) -> Section:
    sec = Section("library", "Library: routed calls over a fake upstream",
                  columns=["client", "concurrency", "calls/s", "p50 ms", "p99 ms", "errors", "vs raw aiohttp",
                           "vs LiteLLM Router"])
    upstream = start_upstream(ctx.upstream, log_dir=ctx.log_dir, name="library-upstream")
    results: dict[str, dict[int, LoadResult]] = {}
    info: dict[str, Any] = {}
    try:
        plan = [("aiohttp", ctx.python), ("modelplex", ctx.python)]
        if ctx.litellm and ctx.litellm_python:
            plan.append(("litellm", ctx.litellm_python))
        for client, python in plan:
            try:
                out = _run_client(ctx, client, python, upstream.url)
            except Exception as exc:
                sec.notes.append(f"{client}: failed: {exc}")
                continue
            results[client] = {r["concurrency"]: LoadResult(**r) for r in out["runs"]}
            info[client] = {"setup_s": round(out["setup_s"], 3), **out["info"]}
    finally:
        upstream.stop()
    if "litellm" not in results:
        sec.notes.append("LiteLLM: not measured (" + ("disabled with --no-litellm" if not ctx.litellm else
                         "not installed; see docs/performance.md" if not ctx.litellm_python else "it failed") + ")")

    for client in ("modelplex", "aiohttp", "litellm"):
        for c in CONCURRENCIES:
            r = results.get(client, {}).get(c)
            if r is None:
                continue
            base = results.get("aiohttp", {}).get(c)
            lite = results.get("litellm", {}).get(c)
            vs_raw = ratio(r.rps, base.rps if base else None)
            vs_lite = ratio(r.rps, lite.rps if lite else None)
            sec.rows.append([client, c, round(r.rps), round(r.p50_ms, 3), round(r.p99_ms, 3), r.errors,
                             _x(vs_raw), _x(vs_lite)])
            if r.first_error:
                sec.notes.append(f"{client} c={c}: {r.errors} errors, first: {r.first_error}")
    mp = results.get("modelplex", {})
    raw = results.get("aiohttp", {})
    lite = results.get("litellm", {})
    for c in CONCURRENCIES:
        if c in mp and c in raw:
            sec.ratios.append(("floor", f"library c={c}\nvs raw aiohttp", mp[c].rps / raw[c].rps))
        if c in mp and c in lite:
            sec.ratios.append(("litellm", f"library c={c}\nvs LiteLLM Router", mp[c].rps / lite[c].rps))
    seq = mp.get(1)
    sec.targets += [
        Target("library: sequential routed calls/s", seq.rps if seq else None, 3000, ">=", "calls/s"),
        Target("library: c=50 calls/s vs raw aiohttp", _pct(mp.get(50), raw.get(50)), 50, ">=", "%"),
        Target("library: c=50 calls/s vs LiteLLM Router", ratio(mp[50].rps, lite[50].rps)
               if 50 in mp and 50 in lite else None, 20, ">=", "x"),
    ]
    sec.data = {"upstream": ctx.upstream, "results": {k: {str(c): r.to_dict() for c, r in v.items()}
                                                      for k, v in results.items()}, "info": info}
    stored = info.get("modelplex", {}).get("records_stored")
    if stored is not None:
        sec.notes.append(f"modelplex accounting: {stored:,} usage records stored in SQLite by the end of the "
                         f"run (recorder: {info['modelplex'].get('recorder')})")
    return sec


def _x(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}x"


def _pct(a: LoadResult | None, b: LoadResult | None) -> float | None:
    r = ratio(a.rps if a else None, b.rps if b else None)
    return None if r is None else r * 100


if __name__ == "__main__":
    worker_main(sys.argv[1:])
