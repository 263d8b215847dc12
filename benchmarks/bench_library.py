"""Section 1, library: routed calls per second over a fake upstream, against raw aiohttp and LiteLLM's Router.

Owns: the library workload, its long-lived workers and the rounds that drive them. Each client runs
in a worker process of its own (``python -m benchmarks.bench_library --client
modelplex|aiohttp|litellm --url U --db D``), all started at once against the same upstream (its own
process) and kept alive for the whole section. The parent drives them over stdin/stdout, one JSON
line each way: ``{"concurrency": 50, "seconds": 2.0, "warmup": 0.3}`` answers the ``LoadResult``
of one ``closed_loop`` run; ``{"cmd": "finish"}`` answers the client's info (versions; for
modelplex the usage records found in SQLite) and the worker exits. A worker's first line says it is
ready (its set-up time); an error ends the worker with ``{"error": ...}``. Every read has a
timeout: a worker that errors, dies or hangs is stopped, left out of the rest of the run and named
in the notes.

The rounds: after set-up each worker warms up once (about a second at each concurrency, one worker
at a time). Then, for R rounds (3; quick mode 1), for each concurrency (1, then 50), every client is
measured for about 2 s after a short warm-up, in a rotating order (``common.round_schedule``: no
client is always first). A client's row is its median-rps round; a ratio (modelplex / aiohttp,
modelplex / LiteLLM) is the median of the per-round ratios, each taken between runs a few seconds
apart, so machine drift between rounds cancels out; the notes give the per-round spread.

* ``modelplex``: ``Router.acomplete(MESSAGES, task="summarization", user=...)`` over the bundled
  catalog with two OpenAI-compatible providers (``openai``, ``groq``) pointed at the upstream:
  selection (the task's requirements, the balanced strategy), breakers, budgets (daily and per
  user), and accounting to SQLite (the router's own recorder, started on its own as a library
  user gets it) all on. After each run the worker flushes the recorder (outside the measured
  window) so its backlog is not written while the next client is measured; at the end it checks
  that the records reached the database.
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
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from benchmarks.common import (
    MESSAGES,
    PROVIDER_KEY,
    REPO,
    Context,
    LoadResult,
    Section,
    Spread,
    Target,
    closed_loop,
    comparisons,
    median_run,
    round_schedule,
    start_upstream,
)

CONCURRENCIES = (1, 50)
CLIENT_ORDER = ("aiohttp", "modelplex", "litellm")
TASK = "summarization"
READY_TIMEOUT_S = 180.0
"""Set-up (imports, the first call) of a worker; LiteLLM's import alone takes seconds."""
ANSWER_MARGIN_S = 60.0
"""Beyond a run's own warm-up and duration, how long an answer may take before the worker is given up."""


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


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Driver:
    """One client as a worker drives it: the measured call, what to do after each run, the last step."""

    call: Callable[[], Awaitable[Any]]
    finish: Callable[[], Awaitable[dict[str, Any]]]
    settle: Callable[[], Awaitable[None]] = _nothing


async def _modelplex(url: str, db: str) -> Driver:
    from modelplex.router import Router

    router = Router.from_config(library_config(url, db), env={})
    first = await router.acomplete(MESSAGES, task=TASK, user="bench-user")
    if not first.content or first.cost_usd <= 0:
        raise RuntimeError(f"unexpected first response: {first!r}")

    async def call() -> None:
        await router.acomplete(MESSAGES, task=TASK, user="bench-user")

    async def settle() -> None:
        if router.recorder is not None:
            await router.recorder.flush()

    async def finish() -> dict[str, Any]:
        await router.aclose()
        import sqlite3

        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        stats = router.recorder.stats() if router.recorder is not None else {}
        return {"model": first.model, "selection_reason": first.selection_reason, "records_stored": stored,
                "recorder": {k: stats.get(k) for k in ("written", "spilled", "dropped", "failed_batches")}}

    return Driver(call, finish, settle)


async def _aiohttp(url: str, db: str) -> Driver:
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

    return Driver(call, finish)


async def _litellm(url: str, db: str) -> Driver:
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

    return Driver(call, finish)


CLIENTS: dict[str, Callable[[str, str], Awaitable[Driver]]] = {
    "modelplex": _modelplex, "aiohttp": _aiohttp, "litellm": _litellm}


# ------------------------------------------------------------------------------------------ worker side


def _answer(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def _protocol_stream() -> TextIO:
    """The worker's answers go to the original stdout; anything else printed (by a library) is sent to
    stderr, the worker's log, so it cannot garble the protocol."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out


async def _serve(client: str, url: str, db: str, out: TextIO) -> None:
    """Set the client up, say so, then answer commands from stdin until ``finish`` or end of input."""
    t0 = time.perf_counter()
    driver = await CLIENTS[client](url, db)
    _answer(out, {"client": client, "setup_s": time.perf_counter() - t0})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:  # the parent is gone: clean up quietly
            await driver.finish()
            return
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("cmd") == "finish":
            _answer(out, await driver.finish())
            return
        result = await closed_loop(driver.call, concurrency=int(cmd["concurrency"]), seconds=float(cmd["seconds"]),
                                   warmup=float(cmd.get("warmup", 0.0)))
        await driver.settle()
        _answer(out, result.to_dict())


def worker_main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_library")
    p.add_argument("--client", choices=sorted(CLIENTS), required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--db", default="")
    a = p.parse_args(argv)
    db = a.db or tempfile.mktemp(suffix=".db", prefix="modelplex-bench-")
    out = _protocol_stream()
    try:
        asyncio.run(_serve(a.client, a.url, db, out))
    except Exception as exc:
        traceback.print_exc()
        _answer(out, {"error": f"{type(exc).__name__}: {str(exc)[:500]}"})
        sys.exit(1)


# ------------------------------------------------------------------------------------------ parent side


class WorkerError(RuntimeError):
    """A worker answered an error, died, or did not answer in time."""


class Worker:
    """One client's worker process, driven one JSON line at a time; every read has a timeout."""

    def __init__(self, client: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.client = client
        self.popen = popen
        self.log = log
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read_lines, name=f"library-{client}-reader", daemon=True).start()

    @classmethod
    def start(cls, client: str, python: str, url: str, db: Path, log_dir: Path) -> Worker:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"library-{client}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen([python, "-m", "benchmarks.bench_library", "--client", client, "--url", url,
                                      "--db", str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=handle, cwd=str(REPO), start_new_session=True)
        return cls(client, popen, log)

    def _read_lines(self) -> None:
        assert self.popen.stdout is not None
        for line in iter(self.popen.stdout.readline, b""):
            if line.strip():
                self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float) -> dict[str, Any]:
        """The next answer; raises ``WorkerError`` on an error answer, the end of output or a timeout."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError(f"no answer within {timeout:g} s{self._tail()}") from None
        if line is None:
            try:
                status = self.popen.wait(5)
            except subprocess.TimeoutExpired:
                status = None
            raise WorkerError(f"the worker exited (status {status}){self._tail()}")
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            raise WorkerError(f"unreadable answer {line[:200]!r}{self._tail()}") from None
        if set(answer) == {"error"}:
            raise WorkerError(f"{answer['error']}{self._tail()}")
        return answer

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one command line and read its answer."""
        stdin = self.popen.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(command).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"cannot send to the worker ({exc}){self._tail()}") from None
        return self.read(timeout)

    def measure(self, concurrency: int, seconds: float, warmup: float) -> LoadResult:
        answer = self.request({"concurrency": concurrency, "seconds": seconds, "warmup": warmup},
                              timeout=warmup + seconds + ANSWER_MARGIN_S)
        return LoadResult(**answer)

    def stop(self, grace: float = 10.0) -> None:
        """Close its input (a worker waiting for a command then exits on its own within ``grace``
        seconds), then terminate, then kill."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:
                pass
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def _tail(self, n: int = 4) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return (": " + " | ".join(lines[-n:])) if lines else ""


@dataclass(frozen=True)
class Plan:
    """How long the section measures: rounds, and per run its duration and warm-up."""

    rounds: int
    seconds: float
    warmup: float
    start_warmup: float
    """Once per worker and concurrency, before round 1."""


def plan_for(ctx: Context) -> Plan:
    return Plan(rounds=1, seconds=1.0, warmup=0.2, start_warmup=0.3) if ctx.quick else \
        Plan(rounds=3, seconds=2.0, warmup=0.3, start_warmup=1.0)


Runs = dict[str, dict[int, list[LoadResult | None]]]
"""client -> concurrency -> one run per round (``None``: not measured in that round)."""


class Library:
    """The section's workers and what they measured, round by round."""

    def __init__(self, ctx: Context, plan: Plan, notes: list[str]) -> None:
        self.ctx = ctx
        self.plan = plan
        self.notes = notes
        self.workers: dict[str, Worker] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.warmups: dict[str, dict[str, float]] = {}
        self.schedule: list[dict[str, Any]] = []
        self.runs: Runs = {}

    def start(self, clients: Sequence[tuple[str, str]], url: str) -> None:
        """Start every worker at once (set-ups overlap), then wait for each to say it is ready."""
        for client, python in clients:
            try:
                self.workers[client] = Worker.start(client, python, url, self.ctx.work_dir / f"library-{client}.db",
                                                    self.ctx.log_dir)
            except OSError as exc:
                self.notes.append(f"{client}: could not start its worker: {exc}")
        for client, worker in list(self.workers.items()):
            try:
                ready = worker.read(READY_TIMEOUT_S)
            except WorkerError as exc:
                self.drop(client, "set-up", exc)
                continue
            self.info[client] = {"setup_s": round(float(ready.get("setup_s", 0.0)), 3)}
            self.runs[client] = {c: [None] * self.plan.rounds for c in CONCURRENCIES}

    def warm_up(self) -> None:
        """Each worker, one at a time, at each concurrency, before any run that counts."""
        for client in list(self.workers):
            for c in CONCURRENCIES:
                worker = self.workers.get(client)
                if worker is None:
                    break
                try:
                    r = worker.measure(c, self.plan.start_warmup, 0.0)
                except WorkerError as exc:
                    self.drop(client, f"warm-up c={c}", exc)
                    break
                self.warmups.setdefault(client, {})[str(c)] = round(r.rps)

    def rounds(self) -> None:
        names = [c for c in CLIENT_ORDER if c in self.workers]
        for r, c, order in round_schedule(names, CONCURRENCIES, self.plan.rounds):
            self.schedule.append({"round": r + 1, "concurrency": c, "order": order})
            for client in order:
                worker = self.workers.get(client)
                if worker is None:
                    continue
                try:
                    self.runs[client][c][r] = worker.measure(c, self.plan.seconds, self.plan.warmup)
                except WorkerError as exc:
                    self.drop(client, f"round {r + 1} c={c}", exc)

    def finish(self) -> None:
        for client, worker in list(self.workers.items()):
            try:
                self.info[client].update(worker.request({"cmd": "finish"}, timeout=ANSWER_MARGIN_S))
            except WorkerError as exc:
                self.drop(client, "finish", exc)

    def drop(self, client: str, when: str, exc: Exception) -> None:
        """Stop a worker that failed, name it in the notes, and leave it out of the rest of the run."""
        self.notes.append(f"{client}: worker failed at {when}, left out from there on: {exc}")
        worker = self.workers.pop(client, None)
        if worker is not None:
            worker.stop(grace=0.5)  # it may be stuck in a run: do not let it load the machine

    def stop(self) -> None:
        for client in list(self.workers):
            self.workers.pop(client).stop()


# ------------------------------------------------------------------------------------------ section


def _clients(ctx: Context) -> list[tuple[str, str]]:
    plan = [("aiohttp", ctx.python), ("modelplex", ctx.python)]
    if ctx.litellm and ctx.litellm_python:
        plan.append(("litellm", ctx.litellm_python))
    return plan


def run(ctx: Context) -> Section:
    sec = Section("library", "Library: routed calls over a fake upstream",
                  columns=["client", "concurrency", "calls/s", "p50 ms", "p99 ms", "errors", "vs raw aiohttp",
                           "vs LiteLLM Router"])
    plan = plan_for(ctx)
    lib = Library(ctx, plan, sec.notes)
    upstream = start_upstream(ctx.upstream, log_dir=ctx.log_dir, name="library-upstream")
    try:
        lib.start(_clients(ctx), upstream.url)
        lib.warm_up()
        lib.rounds()
        lib.finish()
    finally:
        lib.stop()
        upstream.stop()
    if not any(r is not None for r in lib.runs.get("litellm", {}).get(50, [])):
        sec.notes.append("LiteLLM: not measured (" + ("disabled with --no-litellm" if not ctx.litellm else
                         "not installed; see docs/performance.md" if not ctx.litellm_python else "it failed") + ")")
    report(sec, lib, ctx)
    return sec



def report(sec: Section, lib: Library, ctx: Context) -> None:
    """Rows (median rounds), ratios (medians of per-round ratios), targets, notes and data."""
    plan = lib.plan
    medians = {client: {c: median_run(rs) for c, rs in by_c.items()} for client, by_c in lib.runs.items()}
    vs_raw = comparisons(lib.runs, "aiohttp")
    vs_lite = comparisons(lib.runs, "litellm")
    for client in ("modelplex", "aiohttp", "litellm"):
        for c in CONCURRENCIES:
            r = medians.get(client, {}).get(c)
            if r is None:
                continue
            sec.rows.append([client, c, round(r.rps), round(r.p50_ms, 3), round(r.p99_ms, 3), r.errors,
                             _x(vs_raw.get(client, {}).get(c)), _x(vs_lite.get(client, {}).get(c))])
    sec.notes.insert(0, f"rounds: {plan.rounds}. In each round every client is measured for {plan.seconds:g} s "
                        f"(after a {plan.warmup:g} s warm-up) at concurrency 1, then 50, in a rotating order; "
                        "a row is the client's median-rps round, a ratio the median of the per-round ratios "
                        "(each between runs seconds apart, so machine drift between rounds cancels out)")
    if lib.schedule:
        sec.notes.append("visiting order: " + "; ".join(
            f"round {s['round']} c={s['concurrency']}: {', '.join(s['order'])}" for s in lib.schedule))
    for other, table in (("raw aiohttp", vs_raw), ("LiteLLM Router", vs_lite)):
        mine = table.get("modelplex", {})
        if mine:
            sec.notes.append(f"modelplex / {other}, per-round calls/s ratios: " + "; ".join(
                f"c={c} {s.describe()}" for c, s in sorted(mine.items())))
    for client, by_c in lib.runs.items():
        for c, rs in by_c.items():
            for i, r in enumerate(rs):
                if r is not None and r.errors:
                    sec.notes.append(f"{client} c={c} round {i + 1}: {r.errors} errors, first: {r.first_error}")
    for group, table, label in (("floor", vs_raw, "vs raw aiohttp"), ("litellm", vs_lite, "vs LiteLLM Router")):
        for c in CONCURRENCIES:
            s = table.get("modelplex", {}).get(c)
            if s is not None:
                sec.ratios.append((group, f"library c={c}\n{label}", s.median))
    seq = medians.get("modelplex", {}).get(1)
    raw50 = vs_raw.get("modelplex", {}).get(50)
    lite50 = vs_lite.get("modelplex", {}).get(50)
    sec.targets += [
        Target("library: sequential routed calls/s", seq.rps if seq else None, 3000, ">=", "calls/s"),
        Target("library: c=50 calls/s vs raw aiohttp", raw50.median * 100 if raw50 else None, 50, ">=", "%"),
        Target("library: c=50 calls/s vs LiteLLM Router", lite50.median if lite50 else None, 20, ">=", "x"),
    ]
    sec.data = {
        "upstream": ctx.upstream,
        "rounds": plan.rounds, "seconds": plan.seconds, "warmup": plan.warmup, "start_warmup": plan.start_warmup,
        "schedule": lib.schedule,
        "results": {k: {str(c): r.to_dict() for c, r in v.items() if r is not None} for k, v in medians.items()},
        "per_round": {k: {str(c): [r.to_dict() if r is not None else None for r in rs] for c, rs in v.items()}
                      for k, v in lib.runs.items()},
        "ratios": {f"modelplex/{base}": {str(c): s.to_dict() for c, s in table.get("modelplex", {}).items()}
                   for base, table in (("aiohttp", vs_raw), ("litellm", vs_lite))},
        "warmup_rps": lib.warmups,
        "info": lib.info,
    }
    stored = lib.info.get("modelplex", {}).get("records_stored")
    if stored is not None:
        sec.notes.append(f"modelplex accounting: {stored:,} usage records stored in SQLite by the end of the "
                         f"run (recorder: {lib.info['modelplex'].get('recorder')})")


def _x(s: Spread | None) -> str:
    return "" if s is None else f"{s.median:.2f}x"


if __name__ == "__main__":
    worker_main(sys.argv[1:])
