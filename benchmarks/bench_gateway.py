"""Section 2, gateway: requests per second and latency of ``modelplex serve`` against the floor and LiteLLM.

Owns: the gateway workload, starting the servers under test, and the pass-through floor server.
Every server runs in a process of its own in front of the same upstream (its own process), one
server at a time; load comes from ``loadgen.run_load`` (wrk, or the built-in generator):

* ``direct``: the upstream hit directly (what any gateway adds its overhead to);
* ``pass-through``: the floor for a Python gateway: Starlette on uvicorn (uvloop, httptools) that
  reads the JSON body, forwards it with aiohttp, parses the reply and writes it back (streams are
  relayed chunk by chunk) — ``python -m benchmarks.bench_gateway passthrough ...``;
* ``modelplex``: ``modelplex serve --config <generated yaml>`` with API-key auth (an inference
  key created through the admin API), routing by task (``model: task:summarization``), budgets
  and usage recording to SQLite; ``--log-level warning``. Falls back to ``--no-auth`` (and says so)
  if a key cannot be created; reports "skipped" if ``modelplex.server`` is not importable;
* ``litellm-proxy``: the LiteLLM proxy (``litellm --config``), one worker, master-key auth, no
  database, when ``litellm[proxy]`` is installed.

Each is measured at 10, 50 and 200 connections (quick mode: 50), non-streaming and streaming.

Must not touch: the gateway's code (it is run as a user runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ADMIN_KEY,
    MESSAGES,
    PROVIDER_KEY,
    SERVER_SECRET,
    Context,
    LoadResult,
    Proc,
    Section,
    Target,
    free_port,
    http_post_json,
    ratio,
    rss_mb,
    spawn,
    start_upstream,
    wait_http,
)
from benchmarks.loadgen import choose_tool, run_load

CONNECTIONS = (10, 50, 200)
LITELLM_MASTER_KEY = "sk-bench-litellm-master-0123456789"


# ------------------------------------------------------------------------------------------ servers


def gateway_config_yaml(upstream_url: str, db: Path, *, no_auth: bool = False) -> str:
    """The ``modelplex serve`` configuration (YAML, as JSON, which YAML reads)."""
    cfg: dict[str, Any] = {
        "providers": {
            "openai": {"base_url": upstream_url + "/v1", "api_key": PROVIDER_KEY},
            "groq": {"base_url": upstream_url + "/v1", "api_key": PROVIDER_KEY},
        },
        "accounting": {"sink": "sqlite", "path": str(db)},
        "budgets": {"daily_usd": 1_000_000.0},
        "server": {"admin_key": ADMIN_KEY, "server_secret": SERVER_SECRET, "no_auth": no_auth},
    }
    return json.dumps(cfg, indent=2)


def gateway_available() -> bool:
    try:
        return importlib.util.find_spec("modelplex.server") is not None and \
            importlib.util.find_spec("uvicorn") is not None
    except ImportError:
        return False


def modelplex_cli(python: str) -> list[str]:
    exe = Path(python).parent / "modelplex"
    return [str(exe)] if exe.exists() else [python, "-m", "modelplex.cli.main"]


class Server:
    """A server under test: its process, URL, headers and request bodies."""

    def __init__(self, name: str, proc: Proc | None, url: str, headers: dict[str, str], model: str,
                 note: str = "") -> None:
        self.name = name
        self.proc = proc
        self.url = url
        self.headers = headers
        self.model = model
        self.note = note

    def bodies(self, stream: bool) -> list[bytes]:
        body: dict[str, Any] = {"model": self.model, "messages": MESSAGES}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return [json.dumps(body).encode()]

    @property
    def chat_url(self) -> str:
        return self.url + "/v1/chat/completions"

    def rss(self) -> float | None:
        return rss_mb(self.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def start_modelplex(ctx: Context, upstream_url: str, name: str = "modelplex") -> tuple[Server, float]:
    """``modelplex serve`` with auth (an inference key made through the admin API); ``--no-auth`` if that
    fails. Returns the server and its start-up time (until /health answers)."""
    port = free_port()
    db = ctx.work_dir / f"{name}-{port}.db"
    cfg = ctx.work_dir / f"{name}-{port}.yaml"
    cfg.write_text(gateway_config_yaml(upstream_url, db))
    args = [*modelplex_cli(ctx.python), "serve", "--config", str(cfg), "--port", str(port), "--log-level", "warning"]
    t0 = time.perf_counter()
    proc = spawn(f"{name}-{port}", args, log_dir=ctx.log_dir)
    wait_http(f"http://127.0.0.1:{port}/health", timeout=60, proc=proc)
    startup = time.perf_counter() - t0
    url = f"http://127.0.0.1:{port}"
    status, body = http_post_json(url + "/api/v1/keys", {"name": "bench"},
                                  headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    if status == 201:
        key = json.loads(body)["key"]
        server = Server("modelplex", proc, url, {"Authorization": f"Bearer {key}"}, "task:summarization",
                        "auth: inference key; routing: task:summarization; usage: SQLite")
    else:
        proc.stop()
        cfg.write_text(gateway_config_yaml(upstream_url, db, no_auth=True))
        proc = spawn(f"{name}-{port}-noauth", [*args, "--no-auth"], log_dir=ctx.log_dir)
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60, proc=proc)
        server = Server("modelplex", proc, url, {}, "task:summarization",
                        f"auth: OFF (--no-auth; key creation answered {status}); routing: task:summarization; "
                        "usage: SQLite")
    check(server)
    return server, startup


def start_passthrough(ctx: Context, upstream_url: str) -> Server:
    port = free_port()
    proc = spawn(f"passthrough-{port}", [ctx.python, "-m", "benchmarks.bench_gateway", "passthrough", "--port",
                                         str(port), "--upstream", upstream_url], log_dir=ctx.log_dir)
    wait_http(f"http://127.0.0.1:{port}/health", timeout=30, proc=proc)
    server = Server("pass-through", proc, f"http://127.0.0.1:{port}", {}, "gpt-4o-mini",
                    "Starlette + uvicorn, aiohttp forward, JSON parsed and re-serialised")
    check(server)
    return server


def litellm_proxy_cmd(python: str) -> list[str] | None:
    exe = Path(python).parent / "litellm"
    return [str(exe)] if exe.exists() else None


def start_litellm_proxy(ctx: Context, upstream_url: str) -> tuple[Server, float]:
    assert ctx.litellm_python is not None
    cmd = litellm_proxy_cmd(ctx.litellm_python)
    if cmd is None:
        raise RuntimeError("the litellm command (litellm[proxy]) is not installed beside LiteLLM")
    port = free_port()
    cfg = ctx.work_dir / f"litellm-proxy-{port}.yaml"
    cfg.write_text(json.dumps({
        "model_list": [{"model_name": "bench", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": upstream_url + "/v1", "api_key": PROVIDER_KEY}}],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
        "litellm_settings": {"telemetry": False, "set_verbose": False},
    }, indent=2))
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True"}
    t0 = time.perf_counter()
    proc = spawn(f"litellm-proxy-{port}", [*cmd, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                                           "--num_workers", "1"], log_dir=ctx.log_dir, env=env)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=120, proc=proc, interval=0.05)
    startup = time.perf_counter() - t0
    server = Server("litellm-proxy", proc, f"http://127.0.0.1:{port}",
                    {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}, "bench",
                    f"LiteLLM proxy {_version(ctx.litellm_python, 'litellm')}, 1 worker, master key, no database")
    check(server)
    return server, startup


def _version(python: str, dist: str) -> str:
    from benchmarks.common import package_version

    return package_version(python, dist) or "?"


def check(server: Server) -> None:
    """One non-streaming and one streaming request must succeed before any load is measured."""
    for stream in (False, True):
        status, body = http_post_json(server.chat_url, json.loads(server.bodies(stream)[0]), headers=server.headers)
        if status != 200:
            raise RuntimeError(f"{server.name}: {'streaming' if stream else 'non-streaming'} request answered "
                               f"{status}: {body[:300]!r}")
        if stream and b"[DONE]" not in body:
            raise RuntimeError(f"{server.name}: the stream did not end with [DONE]: {body[-200:]!r}")
        if not stream and not json.loads(body)["choices"][0]["message"]["content"]:
            raise RuntimeError(f"{server.name}: empty completion")


# ------------------------------------------------------------------------------------------ section


def measure(ctx: Context, server: Server, tool: str, conns: tuple[int, ...]) -> dict[str, LoadResult]:
    out: dict[str, LoadResult] = {}
    for stream in (False, True):
        for c in conns:
            r = run_load(server.chat_url, server.bodies(stream), server.headers, conns=c,
                         seconds=ctx.seconds(5.0, 1.0), tool=tool, tmp_dir=ctx.work_dir,
                         warmup=ctx.seconds(1.0, 0.0))
            out[f"{'stream' if stream else 'json'}@{c}"] = r
    return out


def run(ctx: Context) -> Section:
    sec = Section("gateway", "Gateway: OpenAI-compatible chat completions over HTTP",
                  columns=["server", "mode", "connections", "RPS", "p50 ms", "p99 ms", "errors",
                           "p50 / p99 overhead over direct (ms)", "vs pass-through", "vs LiteLLM proxy"])
    if not gateway_available():
        sec.skipped = "gateway not available (modelplex.server or uvicorn not importable)"
        return sec
    tool = choose_tool(ctx.loadgen)
    conns = (50,) if ctx.quick else CONNECTIONS
    sec.notes.append(f"load: {tool}" + (" (1 thread)" if tool == "wrk" else " (built-in aiohttp generator, "
                                                                              "own process)"))
    upstream = start_upstream(ctx.upstream, log_dir=ctx.log_dir, name="gateway-upstream")
    results: dict[str, dict[str, LoadResult]] = {}
    rss: dict[str, float | None] = {}
    startups: dict[str, float] = {}
    try:
        direct = Server("direct", None, upstream.url, {"Authorization": f"Bearer {PROVIDER_KEY}"}, "gpt-4o-mini",
                        f"the {ctx.upstream} upstream itself")
        starters: list[tuple[str, Any]] = [
            ("direct", lambda: direct),
            ("pass-through", lambda: start_passthrough(ctx, upstream.url)),
            ("modelplex", lambda: _with_startup(startups, "modelplex", start_modelplex(ctx, upstream.url))),
        ]
        if ctx.litellm and ctx.litellm_python:
            starters.append(("litellm-proxy", lambda: _with_startup(
                startups, "litellm-proxy", start_litellm_proxy(ctx, upstream.url))))
        else:
            sec.notes.append("LiteLLM proxy: not measured (" + ("disabled with --no-litellm" if not ctx.litellm
                                                                 else "LiteLLM not installed") + ")")
        for name, start in starters:
            try:
                server = start()
            except Exception as exc:
                sec.notes.append(f"{name}: could not start: {exc}")
                continue
            try:
                results[name] = measure(ctx, server, tool, conns)
                rss[name] = server.rss()
                if server.note:
                    sec.notes.append(f"{name}: {server.note}")
            except Exception as exc:
                sec.notes.append(f"{name}: measurement failed: {exc}")
            finally:
                if server is not direct:
                    server.stop()
    finally:
        upstream.stop()

    direct_r = results.get("direct", {})
    for name in ("modelplex", "pass-through", "litellm-proxy", "direct"):
        for key, r in results.get(name, {}).items():
            mode, c = key.split("@")
            d = direct_r.get(key)
            pt = results.get("pass-through", {}).get(key)
            lp = results.get("litellm-proxy", {}).get(key)
            over = f"{r.p50_ms - d.p50_ms:.2f} / {r.p99_ms - d.p99_ms:.2f}" if d and name != "direct" else ""
            sec.rows.append([name, mode, int(c), round(r.rps), round(r.p50_ms, 2), round(r.p99_ms, 2), r.errors, over,
                             _x(ratio(r.rps, pt.rps if pt else None)), _x(ratio(r.rps, lp.rps if lp else None))])
            if r.errors:
                sec.notes.append(f"{name} {key}: {r.errors} errors ({r.first_error})")
    mp = results.get("modelplex", {})
    pt = results.get("pass-through", {})
    lp = results.get("litellm-proxy", {})
    for key in ("json@50", "stream@50"):
        label = key.replace("@", " c=")
        r_pt = ratio(mp[key].rps, pt[key].rps) if key in mp and key in pt else None
        r_lp = ratio(mp[key].rps, lp[key].rps) if key in mp and key in lp else None
        if r_pt is not None:
            sec.ratios.append(("floor", f"gateway {label}\nvs pass-through", r_pt))
        if r_lp is not None:
            sec.ratios.append(("litellm", f"gateway {label}\nvs LiteLLM proxy", r_lp))
    m50, p50, l50, d50 = mp.get("json@50"), pt.get("json@50"), lp.get("json@50"), direct_r.get("json@50")
    sec.targets += [
        Target("gateway: RPS at 50 connections (auth, routing, accounting)", m50.rps if m50 else None, 5000, ">=",
               "RPS"),
        Target("gateway: RPS vs pass-through floor, 50 connections", _pct(m50, p50), 50, ">=", "%"),
        Target("gateway: RPS vs LiteLLM proxy, 50 connections", ratio(m50.rps, l50.rps) if m50 and l50 else None,
               30, ">=", "x"),
        Target("gateway: p99 overhead over direct, 50 connections", (m50.p99_ms - d50.p99_ms)
               if m50 and d50 else None, 10, "<=", "ms"),
    ]
    sec.data = {"tool": tool, "upstream": ctx.upstream,
                "results": {n: {k: r.to_dict() for k, r in v.items()} for n, v in results.items()},
                "rss_mb_after_load": rss, "startup_s": startups}
    if rss:
        sec.notes.append("RSS after the runs: " + ", ".join(f"{n} {v:.0f} MB" for n, v in rss.items() if v))
    return sec


def _with_startup(store: dict[str, float], name: str, got: tuple[Server, float]) -> Server:
    store[name] = got[1]
    return got[0]


def _x(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}x"


def _pct(a: LoadResult | None, b: LoadResult | None) -> float | None:
    r = ratio(a.rps if a else None, b.rps if b else None)
    return None if r is None else r * 100


# ------------------------------------------------------------------------------------------ pass-through floor


def passthrough_main(port: int, upstream: str) -> None:
    """The pass-through floor: read JSON, forward with aiohttp, parse the reply, write it back."""
    import contextlib

    import aiohttp
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    target = upstream + "/v1/chat/completions"
    holder: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        holder["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await holder["s"].close()

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        session = holder["s"]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {PROVIDER_KEY}"}
        if body.get("stream"):
            resp = await session.post(target, data=orjson.dumps(body), headers=headers)

            async def relay() -> Any:
                try:
                    async for chunk in resp.content.iter_any():
                        yield chunk
                finally:
                    resp.release()

            return StreamingResponse(relay(), status_code=resp.status, media_type="text/event-stream")
        async with session.post(target, data=orjson.dumps(body), headers=headers) as resp:
            data = orjson.loads(await resp.read())
            status = resp.status
        return Response(orjson.dumps(data), status_code=status, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health)],
                    lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_gateway")
    sub = p.add_subparsers(dest="cmd", required=True)
    pt = sub.add_parser("passthrough", help="serve the pass-through floor")
    pt.add_argument("--port", type=int, required=True)
    pt.add_argument("--upstream", required=True)
    a = p.parse_args(argv)
    if a.cmd == "passthrough":
        passthrough_main(a.port, a.upstream)


if __name__ == "__main__":
    main(sys.argv[1:])
