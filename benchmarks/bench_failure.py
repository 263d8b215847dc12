"""Section 7, failure path: what an open breaker costs, and throughput while one of two providers is down.

Owns: the failure workload, run in a worker process (``python -m benchmarks.bench_failure ...``)
against the upstream and a *down* provider (a loopback port nobody listens on: connection refused):

* **refused call**: ``openai`` is down; a call for ``openai/gpt-6-luna`` fails three times (the
  breaker's threshold), the provider breaker opens, and from then on every call is refused by the
  breaker without touching the network (``AllAttemptsFailedError`` with one ``skipped_breaker``
  attempt). Its latency is set against a successful routed call of the same router shape.
* **one of two down**: the task ``pair`` lists ``openai/gpt-6-luna`` then ``groq/openai/gpt-oss-120b``.
  Calls per second at concurrency 1 and 50 with ``openai`` down (the breaker opens during the
  warm-up; every call then skips it and falls over to ``groq``) against both providers healthy.
  Every call must succeed: an error is counted, never throughput.

Retries are off (``max_retries_per_target: 0``) so the breaker opens on the first three calls;
accounting (SQLite), budgets and selection stay on, as in the library section.

Must not touch: the router (public API only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.bench_library import library_config
from benchmarks.common import (
    MESSAGES,
    Context,
    LoadResult,
    Section,
    closed_loop,
    free_port,
    percentile,
    ratio,
    run_json,
    start_upstream,
)

PAIR = ["openai/gpt-6-luna", "groq/openai/gpt-oss-120b"]


def _config(openai_url: str, groq_url: str, db: str) -> dict[str, Any]:
    cfg = library_config(groq_url, db, tasks={"pair": {"models": PAIR}},
                         routing={"retry": {"max_retries_per_target": 0, "base_delay": 0.0, "max_delay": 0.0}})
    cfg["providers"]["openai"]["base_url"] = openai_url + "/v1"
    return cfg


async def _per_call(fn: Any, n: int) -> list[float]:
    out: list[float] = []
    perf = time.perf_counter_ns
    for _ in range(n):
        t0 = perf()
        await fn()
        out.append((perf() - t0) / 1e3)
    return sorted(out)


async def worker(url: str, down: str, seconds: float, warmup: float, n_single: int) -> dict[str, Any]:
    from modelplex.errors import AllAttemptsFailedError
    from modelplex.router import Router

    out: dict[str, Any] = {}
    tmp = tempfile.mkdtemp(prefix="modelplex-bench-failure-")

    # -------- refused by an open breaker, against a successful call of the same shape
    healthy = Router.from_config(_config(url, url, f"{tmp}/healthy.db"), env={})
    broken = Router.from_config(_config(down, url, f"{tmp}/broken.db"), env={})
    try:
        async def ok_call() -> None:
            await healthy.acomplete(MESSAGES, model=PAIR[0], user="bench-user")

        refusals = 0

        async def refused_call() -> None:
            nonlocal refusals
            try:
                await broken.acomplete(MESSAGES, model=PAIR[0], user="bench-user")
            except AllAttemptsFailedError as exc:
                if exc.attempts and all(a.outcome == "skipped_breaker" for a in exc.attempts):
                    refusals += 1
                return
            raise RuntimeError("a call to a down provider succeeded")

        for _ in range(5):  # three connection failures open the provider breaker
            await refused_call()
        refusals = 0
        await _per_call(ok_call, 200)
        ok_us = await _per_call(ok_call, n_single)
        ref_us = await _per_call(refused_call, n_single)
        if refusals != n_single:
            raise RuntimeError(f"only {refusals} of {n_single} calls were refused by the breaker")
        out["refused"] = {"p50_us": percentile(ref_us, 50), "p99_us": percentile(ref_us, 99), "calls": n_single}
        out["success"] = {"p50_us": percentile(ok_us, 50), "p99_us": percentile(ok_us, 99), "calls": n_single}
    finally:
        await healthy.aclose()
        await broken.aclose()

    # -------- one of two providers down
    for name, openai_url in (("both_up", url), ("one_down", down)):
        router = Router.from_config(_config(openai_url, url, f"{tmp}/{name}.db"), env={})
        try:
            sample = await router.acomplete(MESSAGES, task="pair", user="bench-user")

            async def call(router: Any = router) -> None:
                await router.acomplete(MESSAGES, task="pair", user="bench-user")

            runs = {}
            for c in (1, 50):
                runs[str(c)] = (await closed_loop(call, concurrency=c, seconds=seconds, warmup=warmup)).to_dict()
            last = await router.acomplete(MESSAGES, task="pair", user="bench-user")
            out[name] = {"runs": runs, "first_model": sample.model, "model": last.model,
                         "attempts": [(a.target, a.outcome) for a in last.attempts],
                         "fallback_used": last.fallback_used}
        finally:
            await router.aclose()
    return out


def run(ctx: Context) -> Section:
    sec = Section("failure", "Failure path: open breaker, and one of two providers down",
                  columns=["case", "concurrency", "calls/s", "p50 ms", "p99 ms", "errors", "vs both up"])
    upstream = start_upstream(ctx.upstream, log_dir=ctx.log_dir, name="failure-upstream")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    try:
        d = run_json([ctx.python, "-m", "benchmarks.bench_failure", "--url", upstream.url, "--down", down,
                      "--seconds", str(ctx.seconds(4.0, 1.0)), "--warmup", str(ctx.seconds(1.0, 0.3)),
                      "--single", str(ctx.count(5_000, 300))], timeout=600)
    finally:
        upstream.stop()
    ref, ok = d["refused"], d["success"]
    sec.rows.append(["call refused by an open breaker", 1, "", round(ref["p50_us"] / 1e3, 3),
                     round(ref["p99_us"] / 1e3, 3), 0, ""])
    sec.rows.append(["successful call (same router shape)", 1, "", round(ok["p50_us"] / 1e3, 3),
                     round(ok["p99_us"] / 1e3, 3), 0, ""])
    for name, label in (("both_up", "task pair, both providers up"), ("one_down", "task pair, openai down")):
        for c, r in d[name]["runs"].items():
            lr = LoadResult(**r)
            base = LoadResult(**d["both_up"]["runs"][c])
            sec.rows.append([label, int(c), round(lr.rps), round(lr.p50_ms, 3), round(lr.p99_ms, 3), lr.errors,
                             f"{lr.rps / base.rps:.2f}x" if base.rps else ""])
            if lr.errors:
                sec.notes.append(f"{label} c={c}: {lr.errors} errors, first: {lr.first_error}")
    for c in ("1", "50"):
        r = ratio(d["one_down"]["runs"][c]["rps"], d["both_up"]["runs"][c]["rps"])
        if r is not None:
            sec.ratios.append(("floor", f"one provider down c={c}\nvs both up", r))
    sec.notes.append(f"an open breaker refuses a call in {ref['p50_us']:.0f} µs (p50), "
                     f"{ref['p50_us'] / ok['p50_us'] * 100:.0f}% of a successful call's {ok['p50_us']:.0f} µs")
    sec.notes.append(f"with openai down, calls go to {d['one_down']['model']}; the attempts of the last call: "
                     f"{d['one_down']['attempts']}")
    sec.data = d
    return sec


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_failure")
    p.add_argument("--url", required=True)
    p.add_argument("--down", required=True)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--single", type=int, default=5_000)
    a = p.parse_args(argv)
    out = asyncio.run(worker(a.url, a.down, a.seconds, a.warmup, a.single))
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
