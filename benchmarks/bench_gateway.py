"""Section 2, gateway: requests per second and latency of ``modelplex serve`` against the floor and LiteLLM.

Owns: the gateway workload, starting the servers under test, the pass-through floor server, and the
rounds that measure them. Every server runs in a process of its own in front of the same upstream
(its own process); all are started up front (one after the other, so each start-up is timed alone)
and stay up for the whole section. Load comes from ``loadgen.run_load`` (wrk, or the built-in
generator):

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

The rounds: for R rounds (2; quick mode 1), for each mode (non-streaming ``json``, then ``stream``)
and connection count (10, 50, 200; quick mode 50), every server is measured in a rotating order
(``common.round_schedule``: no server is always first): a 1 s warm-up run, then 2 s (the former
single 5 s run halved and rounded to wrk's whole seconds, so the section takes about as long as
it did with one round of 5 s runs). The servers not being measured sit idle. A row is the
server's median-RPS round (with two rounds, the lower one); a ratio (modelplex / pass-through,
modelplex / LiteLLM proxy) or an overhead over direct is the median of the per-round figures,
each between runs seconds apart, so machine drift between rounds cancels out; the notes give the
per-round spread. RSS is read idle after start-up and again after the last round.

The paced phase: at saturation (closed loop, all 50 connections busy) a p99 is mostly queueing
(every request waits behind the others, 50 / RPS on average, and any pause holds up all 50), so
even the bare pass-through shows tens to hundreds of ms over direct there; a latency *overhead*
only means something at a load the server sustains. So after the saturation rounds, the section
measures ``json`` at 50 connections again at a fixed offered load: half of modelplex's saturated
``json@50`` RPS from this same run (its median-RPS round, the figure in its row), rounded to 10
RPS; without that figure the phase is skipped with a note. Each connection pauses an exponentially
distributed think time of mean ``50 / rate`` s before every request (``run_load(rate=...)``: a wrk
Lua ``delay()``, or the built-in generator's think time), so arrivals are Poisson-like rather than
bursts, and a request's latency runs from when it is sent. Servers: direct, pass-through and
modelplex (the LiteLLM proxy is left out: it cannot sustain that rate), in rotating rounds (at
least three: one run's p99 moves with the machine), 4 s runs after the same (paced) warm-up; quick
mode: one 1 s round. The runs are kept
apart from the saturation ones (``paced@50``; rows labelled ``json, paced N RPS``, each the
server's median-p99 round; ``data["paced"]``), and the target "p99 overhead over direct, 50
connections" is the median of the per-round modelplex p99 minus direct p99 of this phase; the
saturated overhead stays in the rows, notes and JSON.

Must not touch: the gateway's code (it is run as a user runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    Spread,
    Target,
    comparisons,
    free_port,
    http_post_json,
    median_index,
    median_run,
    round_deltas,
    round_schedule,
    rss_mb,
    spawn,
    spread,
    start_upstream,
    wait_http,
)
from benchmarks.loadgen import choose_tool, run_load

CONNECTIONS = (10, 50, 200)
MODES = ("json", "stream")
SERVER_ORDER = ("direct", "pass-through", "modelplex", "litellm-proxy")
PACED_CONNS = 50
PACED_FRACTION = 0.5
"""The paced phase offers this fraction of modelplex's saturated json@50 RPS (its median-RPS round)."""
PACED_SERVERS = ("direct", "pass-through", "modelplex")
PACED_SECONDS = 4.0
PACED_ROUNDS = 3
"""At least this many paced rounds: a p99 from one 4 s run moves with the machine (hypervisor steal was
2-27% on the VM this was written on), and the target is the median of the per-round overheads."""
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


@dataclass(frozen=True)
class Plan:
    """How long the section measures: rounds, connection counts, and per run its duration and warm-up."""

    rounds: int
    seconds: float
    warmup: float
    conns: tuple[int, ...]

    def slots(self) -> list[tuple[str, int]]:
        """(mode, connections) in the order they are measured within a round."""
        return [(mode, c) for mode in MODES for c in self.conns]


def plan_for(ctx: Context) -> Plan:
    return Plan(rounds=1, seconds=1.0, warmup=0.0, conns=(50,)) if ctx.quick else \
        Plan(rounds=2, seconds=2.0, warmup=1.0, conns=CONNECTIONS)


def paced_plan_for(ctx: Context, plan: Plan) -> Plan:
    """The paced phase: json at 50 connections; 4 s runs in at least three rounds, the plan's warm-up (quick: one
    1 s run)."""
    return Plan(rounds=1, seconds=1.0, warmup=plan.warmup, conns=(PACED_CONNS,)) if ctx.quick else \
        Plan(rounds=max(plan.rounds, PACED_ROUNDS), seconds=PACED_SECONDS, warmup=plan.warmup, conns=(PACED_CONNS,))


def slot_key(mode: str, conns: int) -> str:
    return f"{mode}@{conns}"


def paced_key(conns: int = PACED_CONNS) -> str:
    return f"paced@{conns}"


Runs = dict[str, dict[str, list[LoadResult | None]]]
"""server -> ``mode@connections`` (or ``paced@connections``) -> one run per round (``None``: not measured)."""


def saturated_rps(runs: Runs, name: str = "modelplex", key: str = "json@50") -> float | None:
    """``name``'s saturated RPS in ``key``: its median-RPS round (``median_run``: of an even count the lower
    middle one), the figure its row and the RPS target show; ``None`` when it has no round that completed
    anything."""
    r = median_run(runs.get(name, {}).get(key, []))
    return r.rps if r is not None and r.rps > 0 else None


def offered_rate(saturated: float | None, fraction: float = PACED_FRACTION) -> float | None:
    """The paced phase's offered RPS: ``fraction`` of ``saturated``, rounded to 10 RPS (to 1 RPS below
    100); ``None`` without a saturated figure."""
    if saturated is None or saturated != saturated or saturated <= 0:
        return None
    rate = saturated * fraction
    return float(max(1, round(rate, -1) if rate >= 100 else round(rate)))


class Gateway:
    """The servers under test, all up for the whole section, and what they measured round by round."""

    def __init__(self, ctx: Context, plan: Plan, tool: str, notes: list[str]) -> None:
        self.ctx = ctx
        self.plan = plan
        self.tool = tool
        self.notes = notes
        self.servers: dict[str, Server] = {}
        self.startups: dict[str, float] = {}
        self.rss_idle: dict[str, float | None] = {}
        self.rss_after: dict[str, float | None] = {}
        self.schedule: list[dict[str, Any]] = []
        self.runs: Runs = {}
        self.paced_plan = paced_plan_for(ctx, plan)
        self.paced_rate: float | None = None
        self.paced_runs: Runs = {}
        self.paced_schedule: list[dict[str, Any]] = []

    def start(self, upstream_url: str) -> None:
        """Start every server (one after the other, so start-up times are not shared), then note idle RSS."""
        ctx = self.ctx
        direct = Server("direct", None, upstream_url, {"Authorization": f"Bearer {PROVIDER_KEY}"}, "gpt-4o-mini",
                        f"the {ctx.upstream} upstream itself")
        starters: list[tuple[str, Callable[[], Server]]] = [
            ("direct", lambda: direct),
            ("pass-through", lambda: start_passthrough(ctx, upstream_url)),
            ("modelplex", lambda: self._timed("modelplex", start_modelplex(ctx, upstream_url))),
        ]
        if ctx.litellm and ctx.litellm_python:
            starters.append(("litellm-proxy", lambda: self._timed("litellm-proxy",
                                                                  start_litellm_proxy(ctx, upstream_url))))
        else:
            self.notes.append("LiteLLM proxy: not measured (" + ("disabled with --no-litellm" if not ctx.litellm
                                                                  else "LiteLLM not installed") + ")")
        for name, start in starters:
            try:
                self.servers[name] = start()
            except Exception as exc:
                self.notes.append(f"{name}: could not start: {exc}")
                continue
            self.runs[name] = {slot_key(m, c): [None] * self.plan.rounds for m, c in self.plan.slots()}
            if self.servers[name].note:
                self.notes.append(f"{name}: {self.servers[name].note}")
        self.rss_idle = {n: s.rss() for n, s in self.servers.items() if s.proc is not None}

    def _timed(self, name: str, got: tuple[Server, float]) -> Server:
        self.startups[name] = got[1]
        return got[0]

    def rounds(self) -> None:
        names = [n for n in SERVER_ORDER if n in self.servers]
        for r, (mode, c), order in round_schedule(names, self.plan.slots(), self.plan.rounds):
            self.schedule.append({"round": r + 1, "mode": mode, "connections": c, "order": order})
            for name in order:
                server = self.servers.get(name)
                if server is not None:
                    self.measure(server, r, mode, c)
        self.rss_after = {n: s.rss() for n, s in self.servers.items() if s.proc is not None}

    def paced(self) -> None:
        """The paced phase (module docstring): json at 50 connections offering half of modelplex's saturated
        json@50 RPS, direct, pass-through and modelplex in rotating rounds."""
        sat = saturated_rps(self.runs, "modelplex", slot_key("json", PACED_CONNS))
        self.paced_rate = offered_rate(sat)
        if self.paced_rate is None:
            self.notes.append(f"paced phase: skipped (modelplex has no saturated json c={PACED_CONNS} result to "
                              "take the offered rate from)")
            return
        if "litellm-proxy" in self.servers:
            lp = saturated_rps(self.runs, "litellm-proxy", slot_key("json", PACED_CONNS))
            self.notes.append(f"paced phase: LiteLLM proxy left out (it cannot sustain {self.paced_rate:g} RPS"
                              + (f"; its saturated json c={PACED_CONNS} RPS was {lp:.0f}" if lp else "") + ")")
        names = [n for n in PACED_SERVERS if n in self.servers]
        pp = self.paced_plan
        for name in names:
            self.paced_runs[name] = {paced_key(): [None] * pp.rounds}
        for r, _, order in round_schedule(names, [paced_key()], pp.rounds):
            self.paced_schedule.append({"round": r + 1, "mode": "json", "connections": PACED_CONNS,
                                        "offered_rps": self.paced_rate, "order": order})
            for name in order:
                server = self.servers.get(name)
                if server is not None:
                    self.measure(server, r, "json", PACED_CONNS, rate=self.paced_rate)

    def measure(self, server: Server, r: int, mode: str, conns: int, *, rate: float | None = None) -> None:
        """One run of one server (paced at ``rate`` RPS when given: the paced phase); a failed run is noted, a
        server that died is dropped."""
        when = f"round {r + 1} {mode} c={conns}" + (f" paced {rate:g} RPS" if rate is not None else "")
        if server.proc is not None and not server.proc.alive():
            self.notes.append(f"{server.name}: exited (status {server.proc.popen.returncode}) before {when}, left "
                              f"out from there on: {server.proc.log_tail(4)}")
            self.servers.pop(server.name).stop()
            return
        plan, runs, key = (self.plan, self.runs, slot_key(mode, conns)) if rate is None else \
            (self.paced_plan, self.paced_runs, paced_key(conns))
        try:
            runs[server.name][key][r] = run_load(
                server.chat_url, server.bodies(mode == "stream"), server.headers, conns=conns,
                seconds=plan.seconds, tool=self.tool, tmp_dir=self.ctx.work_dir, warmup=plan.warmup, rate=rate)
        except Exception as exc:
            self.notes.append(f"{server.name}: {when} failed: {exc}")

    def stop(self) -> None:
        for name in list(self.servers):
            self.servers.pop(name).stop()


def run(ctx: Context) -> Section:
    sec = Section("gateway", "Gateway: OpenAI-compatible chat completions over HTTP",
                  columns=["server", "mode", "connections", "RPS", "p50 ms", "p99 ms", "errors",
                           "p50 / p99 overhead over direct (ms)", "vs pass-through", "vs LiteLLM proxy"])
    if not gateway_available():
        sec.skipped = "gateway not available (modelplex.server or uvicorn not importable)"
        return sec
    tool = choose_tool(ctx.loadgen)
    plan = plan_for(ctx)
    sec.notes.append(f"load: {tool}" + (" (1 thread)" if tool == "wrk" else " (built-in aiohttp generator, "
                                                                              "own process)"))
    gw = Gateway(ctx, plan, tool, sec.notes)
    upstream = start_upstream(ctx.upstream, log_dir=ctx.log_dir, name="gateway-upstream")
    try:
        gw.start(upstream.url)
        gw.rounds()
        gw.paced()
    finally:
        gw.stop()
        upstream.stop()
    report(sec, gw)
    return sec



def overheads(runs: Runs, attr: str) -> dict[str, dict[str, Spread]]:
    """Per server and ``mode@connections``, the spread of its per-round latency percentile ``attr``
    minus the direct run's in the same round (ms). A round in which the server completed no request has no
    latency, so it gives no overhead."""
    out: dict[str, dict[str, Spread]] = {}
    for name, by_key in runs.items():
        if name == "direct":
            continue
        for key, rs in by_key.items():
            s = spread(round_deltas(rs, runs.get("direct", {}).get(key, []),
                                    lambda a, b: getattr(a, attr) - getattr(b, attr) if a.rps > 0 else None))
            if s is not None:
                out.setdefault(name, {})[key] = s
    return out


def report(sec: Section, gw: Gateway) -> None:
    """Rows (median rounds), ratios and overheads (medians of per-round figures), targets, notes, data; the
    paced phase's rows, notes and the p99 target come from ``paced_report``."""
    plan, runs = gw.plan, gw.runs
    medians = {n: {k: median_run(rs) for k, rs in by_key.items()} for n, by_key in runs.items()}
    vs_pt, vs_lp = comparisons(runs, "pass-through"), comparisons(runs, "litellm-proxy")
    over50, over99 = overheads(runs, "p50_ms"), overheads(runs, "p99_ms")
    keys = [slot_key(m, c) for m, c in plan.slots()]
    for name in ("modelplex", "pass-through", "litellm-proxy", "direct"):
        for key in keys:
            r = medians.get(name, {}).get(key)
            if r is None:
                continue
            mode, c = key.split("@")
            o50, o99 = over50.get(name, {}).get(key), over99.get(name, {}).get(key)
            over = f"{o50.median:.2f} / {o99.median:.2f}" if o50 and o99 else ""
            if r.rps > 0:
                p50, p99 = round(r.p50_ms, 2), round(r.p99_ms, 2)
            else:  # nothing finished inside the window: there is no latency to show
                p50 = p99 = "none completed"
            sec.rows.append([name, mode, int(c), round(r.rps), p50, p99, r.errors, over,
                             _x(vs_pt.get(name, {}).get(key)), _x(vs_lp.get(name, {}).get(key))])
    warm = f"after a {plan.warmup:g} s warm-up" if plan.warmup > 0 else "no warm-up"
    lower = " (of an even number of rounds, the lower middle one)" if plan.rounds % 2 == 0 else ""
    sec.notes.insert(1, f"rounds: {plan.rounds}. All servers stay up; in each round, for each mode and connection "
                        f"count, every server is measured for {plan.seconds:g} s ({warm}) in a rotating order; a "
                        f"row is the server's median-RPS round{lower}, a ratio or an overhead the median of the "
                        "per-round figures (each between runs seconds apart, so machine drift between rounds "
                        "cancels out)")
    if gw.schedule:
        first = gw.schedule[0]
        sec.notes.append(f"visiting order in round 1, {first['mode']} c={first['connections']}: "
                         f"{', '.join(first['order'])}; it rotates by one server at every next mode, connection "
                         "count and round (the full schedule is in the JSON)")
    for other, table in (("pass-through", vs_pt), ("LiteLLM proxy", vs_lp)):
        mine = table.get("modelplex", {})
        if mine:
            sec.notes.append(f"modelplex / {other}, per-round RPS ratios: " + "; ".join(
                f"{k.replace('@', ' c=')} {mine[k].describe()}" for k in keys if k in mine))
    p99 = over99.get("modelplex", {})
    if p99 and plan.rounds > 1:
        sec.notes.append("modelplex p99 overhead over direct, per round (ms): " + "; ".join(
            f"{k.replace('@', ' c=')} {p99[k].describe(unit='', digits=1)}" for k in keys if k in p99))
    for name, by_key in runs.items():
        for key, rs in by_key.items():
            for i, r in enumerate(rs):
                if r is not None and r.errors:
                    sec.notes.append(f"{name} {key} round {i + 1}: {r.errors} errors ({r.first_error})")
    for key in ("json@50", "stream@50"):
        label = key.replace("@", " c=")
        s_pt, s_lp = vs_pt.get("modelplex", {}).get(key), vs_lp.get("modelplex", {}).get(key)
        if s_pt is not None:
            sec.ratios.append(("floor", f"gateway {label}\nvs pass-through", s_pt.median))
        if s_lp is not None:
            sec.ratios.append(("litellm", f"gateway {label}\nvs LiteLLM proxy", s_lp.median))
    m50 = medians.get("modelplex", {}).get("json@50")
    pt50, lp50 = vs_pt.get("modelplex", {}).get("json@50"), vs_lp.get("modelplex", {}).get("json@50")
    paced = paced_report(sec, gw, over99.get("modelplex", {}).get("json@50"))
    sec.targets += [
        Target("gateway: RPS at 50 connections (auth, routing, accounting)", m50.rps if m50 else None, 5000, ">=",
               "RPS"),
        Target("gateway: RPS vs pass-through floor, 50 connections", pt50.median * 100 if pt50 else None, 50, ">=",
               "%"),
        Target("gateway: RPS vs LiteLLM proxy, 50 connections", lp50.median if lp50 else None, 30, ">=", "x"),
        paced,
    ]
    sec.data = {
        "tool": gw.tool, "upstream": gw.ctx.upstream,
        "rounds": plan.rounds, "seconds": plan.seconds, "warmup": plan.warmup, "schedule": gw.schedule,
        "results": {n: {k: r.to_dict() for k, r in v.items() if r is not None} for n, v in medians.items()},
        "per_round": {n: {k: [r.to_dict() if r is not None else None for r in rs] for k, rs in v.items()}
                      for n, v in runs.items()},
        "ratios": {f"modelplex/{base}": {k: s.to_dict() for k, s in table.get("modelplex", {}).items()}
                   for base, table in (("pass-through", vs_pt), ("litellm-proxy", vs_lp))},
        "overhead_ms": {f"{n}/{pct}": {k: s.to_dict() for k, s in v.items()}
                        for pct, table in (("p50", over50), ("p99", over99)) for n, v in table.items()},
        "rss_mb_idle": gw.rss_idle, "rss_mb_after_load": gw.rss_after, "startup_s": gw.startups,
        "paced": paced_data(gw),
    }
    if any(gw.rss_idle.values()):
        sec.notes.append("RSS idle after start-up: " + ", ".join(f"{n} {v:.0f} MB" for n, v in gw.rss_idle.items()
                                                                 if v))
    if any(gw.rss_after.values()):
        sec.notes.append("RSS after the runs: " + ", ".join(f"{n} {v:.0f} MB" for n, v in gw.rss_after.items() if v))


def _x(s: Spread | None) -> str:
    return "" if s is None else f"{s.median:.2f}x"


P99_TARGET = "gateway: p99 overhead over direct, 50 connections"


def median_p99_run(runs: list[LoadResult | None]) -> LoadResult | None:
    """The round (one run per round, ``None`` where none) whose p99 is the median (of an even count, the
    lower middle one); rounds that completed nothing have no p99 and are left out."""
    measured = [r for r in runs if r is not None and r.rps > 0]
    return measured[median_index([r.p99_ms for r in measured])] if measured else None


def paced_label(rate: float) -> str:
    return f"json, paced {rate:g} RPS"


def paced_report(sec: Section, gw: Gateway, saturated_p99: Spread | None) -> Target:
    """The paced phase's rows (``json, paced N RPS``, after the saturation rows) and notes, and the p99
    overhead target taken from it: the median of the per-round modelplex p99 minus direct p99."""
    runs, rate, pp = gw.paced_runs, gw.paced_rate, gw.paced_plan
    key = paced_key()
    sat = saturated_rps(gw.runs, "modelplex", slot_key("json", PACED_CONNS))
    sat_rps = f"{sat:.0f}" if sat is not None else "?"
    queue = (f"{PACED_CONNS} requests in flight, {PACED_CONNS / sat * 1e3:.0f} ms of waiting on average at "
             f"{sat_rps} RPS, more behind any pause" if sat else f"{PACED_CONNS} requests in flight")
    sat_text = (f"at saturation (json c={PACED_CONNS}, every connection busy) the p99 overhead is "
                f"{saturated_p99.median:.0f} ms, mostly queueing ({queue})" if saturated_p99 is not None else "")
    if saturated_p99 is not None:
        sec.notes.append(f"saturated p99 overhead of modelplex over direct, json c={PACED_CONNS}: "
                         f"{saturated_p99.describe(unit=' ms', digits=1)}; with all {PACED_CONNS} connections busy "
                         f"every request queues behind the others ({queue}), so the p99 target is read from the "
                         "paced phase")
    if rate is None or not runs:
        why = "paced phase not run" + (" (no saturated modelplex json c=50 result)" if rate is None else "")
        return Target(P99_TARGET, None, 10, "<=", "ms", "; ".join(x for x in (why, sat_text) if x))
    over50, over99 = overheads(runs, "p50_ms"), overheads(runs, "p99_ms")
    for name in ("modelplex", "pass-through", "direct"):
        r = median_p99_run(runs.get(name, {}).get(key, []))
        if r is None:
            continue
        o50, o99 = over50.get(name, {}).get(key), over99.get(name, {}).get(key)
        over = f"{o50.median:.2f} / {o99.median:.2f}" if o50 and o99 else ""
        sec.rows.append([name, paced_label(rate), PACED_CONNS, round(r.rps), round(r.p50_ms, 2), round(r.p99_ms, 2),
                         r.errors, over, "", ""])
    warm = f"after a {pp.warmup:g} s paced warm-up" if pp.warmup > 0 else "no warm-up"
    lower = " (of an even number, the lower middle one)" if pp.rounds % 2 == 0 else ""
    sec.notes.append(
        f"paced phase ({paced_label(rate)} rows): json, {PACED_CONNS} connections offering {rate:g} RPS "
        f"(half of modelplex's saturated json c={PACED_CONNS} RPS in its row, {sat_rps}); before every request "
        f"each connection pauses an exponential think time of mean {PACED_CONNS / rate * 1e3:.1f} ms "
        "(Poisson-like arrivals; latency counts from the send), so the achieved RPS is at or a little below the "
        f"offered one. {pp.rounds} round{'s' if pp.rounds != 1 else ''} of {pp.seconds:g} s ({warm}), same rotation; a "
        f"paced row is the server's median-p99 round{lower}, its overheads the median of the per-round "
        "differences to direct")
    parts = [f"{n} {over99[n][key].describe(unit='', digits=1)}" for n in ("modelplex", "pass-through")
             if key in over99.get(n, {})]
    if parts:
        sec.notes.append("paced p99 overhead over direct, per round (ms): " + "; ".join(parts))
    slow = [f"{n} round {i + 1} ({r.rps:.0f} RPS)" for n, by_key in runs.items() for i, r in
            enumerate(by_key.get(key, [])) if r is not None and r.rps < 0.8 * rate]
    if slow:
        sec.notes.append(f"paced phase: achieved under 80% of the offered {rate:g} RPS (did not keep up): "
                         + ", ".join(slow))
    for name, by_key in runs.items():
        for i, r in enumerate(by_key.get(key, [])):
            if r is not None and r.errors:
                sec.notes.append(f"{name} {key} round {i + 1}: {r.errors} errors ({r.first_error})")
    o99 = over99.get("modelplex", {}).get(key)
    detail = (f"paced: {PACED_CONNS} connections offering {rate:g} RPS (half of modelplex's saturated "
              f"{sat_rps} RPS)" + (f", median of {len(o99.rounds)} rounds" if o99 and len(o99.rounds) > 1 else ""))
    return Target(P99_TARGET, o99.median if o99 else None, 10, "<=", "ms",
                  "; ".join(x for x in (detail, sat_text) if x))


def paced_data(gw: Gateway) -> dict[str, Any]:
    """The paced phase for the JSON: offered rate, plan, schedule, median-p99 rounds, every run, overheads."""
    runs, pp = gw.paced_runs, gw.paced_plan
    if gw.paced_rate is None:
        return {"skipped": "no saturated modelplex json@50 result"}
    key = paced_key()
    medians = {n: median_p99_run(by_key.get(key, [])) for n, by_key in runs.items()}
    return {
        "offered_rps": gw.paced_rate, "fraction_of_saturated": PACED_FRACTION,
        "saturated_rps": saturated_rps(gw.runs, "modelplex", slot_key("json", PACED_CONNS)),
        "connections": PACED_CONNS, "mode": "json", "think_mean_ms": PACED_CONNS / gw.paced_rate * 1e3,
        "rounds": pp.rounds, "seconds": pp.seconds, "warmup": pp.warmup, "schedule": gw.paced_schedule,
        "results": {n: {key: r.to_dict()} for n, r in medians.items() if r is not None},
        "per_round": {n: {k: [r.to_dict() if r is not None else None for r in rs] for k, rs in v.items()}
                      for n, v in runs.items()},
        "overhead_ms": {f"{n}/{pct}": {k: s.to_dict() for k, s in v.items()}
                        for pct, table in (("p50", overheads(runs, "p50_ms")), ("p99", overheads(runs, "p99_ms")))
                        for n, v in table.items()},
    }


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
