"""Section 4, start-up: wall time of importing, of the CLI's help and of the gateway coming up.

Owns: the start-up workload. Each figure is the median (and the minimum) of several fresh
processes, timed from ``Popen`` to exit — or, for gateways, to the first 2xx from their health URL:

* ``python -c pass`` (the interpreter's own start-up: the floor under every other figure);
* ``python -c "import modelplex"`` and, as context, ``python -c "from modelplex import Router"``
  (the package root is lazy; the router pulls in aiohttp, pydantic and the catalog);
* ``modelplex --help``;
* ``modelplex serve`` until ``/health`` answers (auth on, SQLite accounting, bundled catalog);
* against ``python -c "import litellm"`` and the LiteLLM proxy until ``/health/liveliness``.

Must not touch: what it times.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.bench_gateway import LITELLM_MASTER_KEY, gateway_config_yaml, litellm_proxy_cmd, modelplex_cli
from benchmarks.common import Context, Section, Target, free_port, spawn, wait_http


def time_process(args: Sequence[str], runs: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    import os

    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(list(args), capture_output=True, timeout=120, env={**os.environ, **(env or {})},
                              check=False)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')[-300:]}")
        times.append(elapsed)
    return _summary(times)


def _summary(times: list[float]) -> dict[str, Any]:
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "runs": len(times)}


def time_server(ctx: Context, name: str, make_args: Any, health_path: str, runs: int,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    times: list[float] = []
    for i in range(runs):
        port = free_port()
        args = make_args(port, i)
        t0 = time.perf_counter()
        proc = spawn(f"startup-{name}-{port}", args, log_dir=ctx.log_dir, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}{health_path}", timeout=120, proc=proc, interval=0.005)
            times.append(time.perf_counter() - t0)
        finally:
            proc.stop()
    return _summary(times)


def run(ctx: Context) -> Section:
    sec = Section("startup", "Start-up: wall time of fresh processes",
                  columns=["what", "median ms", "min ms", "runs", "vs LiteLLM"])
    runs = ctx.count(10, 3)
    py = ctx.python
    res: dict[str, dict[str, Any]] = {
        "python -c pass": time_process([py, "-c", "pass"], runs),
        "import modelplex": time_process([py, "-c", "import modelplex"], runs),
        "from modelplex import Router": time_process([py, "-c", "from modelplex import Router"], runs),
        "modelplex --help": time_process([*modelplex_cli(py), "--help"], runs),
    }

    def serve_args(port: int, i: int) -> list[str]:
        cfg = ctx.work_dir / f"startup-{port}.yaml"
        cfg.write_text(gateway_config_yaml("http://127.0.0.1:9", ctx.work_dir / f"startup-{port}.db"))
        return [*modelplex_cli(py), "serve", "--config", str(cfg), "--port", str(port), "--log-level", "warning"]

    from benchmarks.bench_gateway import gateway_available

    if gateway_available():
        res["modelplex serve until /health"] = time_server(ctx, "modelplex", serve_args, "/health",
                                                          ctx.count(5, 1))
    else:
        sec.notes.append("gateway start-up: skipped: gateway not available")
    lite = ctx.litellm_python if ctx.litellm else None
    if lite:
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        res["import litellm"] = time_process([lite, "-c", "import litellm"], ctx.count(5, 1), env=env)
        cmd = litellm_proxy_cmd(lite)
        if cmd is not None:
            def proxy_args(port: int, i: int) -> list[str]:
                cfg = ctx.work_dir / f"startup-litellm-{port}.yaml"
                cfg.write_text('{"model_list": [{"model_name": "bench", "litellm_params": '
                               '{"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9/v1", '
                               '"api_key": "sk-x"}}], "general_settings": {"master_key": '
                               f'"{LITELLM_MASTER_KEY}"}}}}')
                return [*cmd, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]

            res["litellm proxy until /health/liveliness"] = time_server(
                ctx, "litellm", proxy_args, "/health/liveliness", ctx.count(2, 1), env=env)
    else:
        sec.notes.append("LiteLLM: not measured (" + ("disabled with --no-litellm" if not ctx.litellm
                                                      else "not installed") + ")")
    pairs = {"import modelplex": "import litellm", "from modelplex import Router": "import litellm",
             "modelplex serve until /health": "litellm proxy until /health/liveliness"}
    for what, d in res.items():
        other = res.get(pairs.get(what, ""))
        vs = f"{other['median_ms'] / d['median_ms']:.1f}x faster" if other else ""
        sec.rows.append([what, round(d["median_ms"], 1), round(d["min_ms"], 1), d["runs"], vs])
    for what, lbl in (("import modelplex", "import modelplex\nvs import litellm"),
                      ("modelplex serve until /health", "gateway start-up\nvs LiteLLM proxy")):
        other = res.get(pairs[what])
        if what in res and other:
            sec.ratios.append(("litellm", lbl, other["median_ms"] / res[what]["median_ms"]))
    sec.targets += [
        Target("start-up: import modelplex", res["import modelplex"]["median_ms"], 150, "<=", "ms",
               "median wall time of a fresh interpreter, interpreter start-up included"),
        Target("start-up: modelplex --help", res["modelplex --help"]["median_ms"], 400, "<=", "ms"),
    ]
    sec.data = res
    return sec
