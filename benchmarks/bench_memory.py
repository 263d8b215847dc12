"""Section 5, memory: the gateway's resident set at idle, under load, and its growth over many requests.

Owns: the memory workload. ``modelplex serve`` (auth, routing by task, SQLite accounting) runs in
front of the upstream; load is a 50-connection mix of non-streaming and streaming requests (every
other request streams), sent in chunks until the total reaches 100,000 (``--quick``: 3,000). The
gateway's RSS (``/proc/PID/status``) is sampled every 100 ms during the load and after each chunk:

* idle: after start-up and two checked requests;
* under load: the highest sample;
* growth: from the first sample after 10% of the requests (caches, pools and the recorder's
  queue are warm by then) to the end, after the load stops — the leak check.

As context, the LiteLLM proxy's RSS at idle and under a short load of the same mix.

Must not touch: the gateway (it is run as a user runs it).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.bench_gateway import Server, gateway_available, start_litellm_proxy, start_modelplex
from benchmarks.common import Context, Section, Target, rss_mb, start_upstream
from benchmarks.loadgen import choose_tool, run_load

CONNS = 50


class Sampler:
    """Samples one process's RSS on a thread while a load runs."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            v = rss_mb(self.pid)
            if v is not None:
                self.peak = max(self.peak, v)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def mixed_bodies(server: Server) -> list[bytes]:
    return [server.bodies(False)[0], server.bodies(True)[0]]


def drive(ctx: Context, server: Server, tool: str, target: int, chunk_s: float, budget_s: float
          ) -> dict[str, Any]:
    """Send ``target`` requests in chunks; RSS after each chunk and the peak during the load."""
    assert server.proc is not None
    points: list[tuple[int, float]] = []
    total = errors = 0
    started = time.perf_counter()
    with Sampler(server.proc.pid) as sampler:
        while total < target and time.perf_counter() - started < budget_s:
            r = run_load(server.chat_url, mixed_bodies(server), server.headers, conns=CONNS, seconds=chunk_s,
                         tool=tool, tmp_dir=ctx.work_dir, warmup=0.0)
            total += r.requests
            errors += r.errors
            points.append((total, rss_mb(server.proc.pid) or float("nan")))
    time.sleep(1.0)
    end_rss = rss_mb(server.proc.pid) or float("nan")
    return {"requests": total, "errors": errors, "points": points, "peak_mb": sampler.peak, "end_mb": end_rss,
            "seconds": time.perf_counter() - started}


def growth(points: list[tuple[int, float]], end_mb: float, total: int) -> tuple[float | None, float | None]:
    """(RSS at the first point past 10% of the requests, growth from there to the end in %)."""
    warm = next((mb for n, mb in points if n >= 0.1 * total), None)
    if warm is None or warm != warm:
        return None, None
    return warm, (end_mb - warm) / warm * 100


def run(ctx: Context) -> Section:
    sec = Section("memory", "Memory: gateway resident set (RSS)",
                  columns=["server", "idle MB", "peak under load MB", "after 10% MB", "end MB", "requests",
                           "growth %", "errors"])
    if not gateway_available():
        sec.skipped = "gateway not available (modelplex.server or uvicorn not importable)"
        return sec
    tool = choose_tool(ctx.loadgen)
    target = ctx.count(100_000, 3_000)
    upstream = start_upstream(ctx.upstream, log_dir=ctx.log_dir, name="memory-upstream")
    data: dict[str, Any] = {"tool": tool, "target_requests": target}
    try:
        server, _ = start_modelplex(ctx, upstream.url, name="memory-modelplex")
        try:
            time.sleep(1.0)
            idle = server.rss()
            out = drive(ctx, server, tool, target, ctx.seconds(4.0, 1.0), ctx.seconds(240.0, 20.0))
        finally:
            server.stop()
        warm, grow = growth(out["points"], out["end_mb"], out["requests"])
        data["modelplex"] = {"idle_mb": idle, **out, "warm_mb": warm, "growth_pct": grow, "note": server.note}
        sec.rows.append(["modelplex", _r(idle), _r(out["peak_mb"]), _r(warm), _r(out["end_mb"]),
                         out["requests"], _r(grow, 2), out["errors"]])
        sec.notes.append(f"modelplex: {server.note}; load: {tool}, {CONNS} connections, every other request "
                         "streams")
        if out["requests"] < target:
            sec.notes.append(f"modelplex: reached {out['requests']:,} of {target:,} requests within the time budget")
        sec.targets += [
            Target("memory: gateway RSS under load", out["peak_mb"] or None, 150, "<=", "MB"),
            Target(f"memory: RSS growth across {out['requests']:,} requests", grow, 5, "<=", "%",
                   "from the first sample after 10% of the requests to the end"),
        ]
        if ctx.litellm and ctx.litellm_python:
            try:
                proxy, _ = start_litellm_proxy(ctx, upstream.url)
            except Exception as exc:
                sec.notes.append(f"LiteLLM proxy: could not start: {exc}")
            else:
                try:
                    time.sleep(1.0)
                    l_idle = proxy.rss()
                    l_out = drive(ctx, proxy, tool, ctx.count(2_000, 100), ctx.seconds(5.0, 1.0),
                                  ctx.seconds(15.0, 5.0))
                finally:
                    proxy.stop()
                data["litellm_proxy"] = {"idle_mb": l_idle, **l_out}
                sec.rows.append(["litellm-proxy (context)", _r(l_idle), _r(l_out["peak_mb"]), "", _r(l_out["end_mb"]),
                                 l_out["requests"], "", l_out["errors"]])
                if l_out["peak_mb"] and out["peak_mb"]:
                    sec.ratios.append(("litellm", "gateway RSS under load\nLiteLLM proxy / modelplex",
                                       l_out["peak_mb"] / out["peak_mb"]))
    finally:
        upstream.stop()
    sec.data = data
    return sec


def _r(v: float | None, nd: int = 1) -> float | str:
    return "" if v is None or v != v else round(v, nd)
