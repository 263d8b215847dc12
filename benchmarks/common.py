"""Shared pieces of the benchmark harness: the closed-loop driver, percentiles, processes, the upstream.

Owns:

* ``closed_loop`` — N concurrent callers for a fixed time after a warm-up; counts successes,
  errors (with the first error's text) and per-call latencies; ``LoadResult`` summarises them.
  Optionally paced: each caller pauses an exponential think time before every call;
* rounds — ``round_schedule`` (the interleaved, rotating order in which the library and gateway
  sections visit their clients or servers), ``median_run`` (the median-rps round of one client),
  ``round_ratios``/``round_deltas`` (figures of two clients paired round by round), ``comparisons``
  (every client's per-round ratios to one of them) and ``spread``
  (their median, min and max): a ratio is taken within a round, never across rounds, so machine
  drift between rounds cancels out;
* process helpers — ``spawn``/``Proc`` (a subprocess with its log file), ``wait_http``,
  ``free_port``, ``rss_mb``, ``run_json`` (run a worker, read the JSON it prints last);
* the **minimal upstream** — a fixed OpenAI-compatible answer served by a bare asyncio protocol
  with httptools (uvloop when present), the same kind of upstream ``docs/perf-floors`` measured
  with; and ``start_upstream`` for it or for modelplex's own ``FakeProviderServer``; both run in
  a process of their own so they do not share the measured event loop;
* ``litellm_python`` — which interpreter has LiteLLM (this one, ``$MODELPLEX_BENCH_LITELLM_PYTHON``
  or ``~/.cache/modelplex-bench/litellm``), and ``machine_info``.

Imports only the standard library at module level: LiteLLM workers run under an interpreter that
has no modelplex. Run ``python -m benchmarks.common upstream --port P`` to serve the upstream.

Must not touch: what is measured (the bench_* modules), the report (run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Summarize the quarterly numbers in one line."}]
PROVIDER_KEY = "sk-bench-provider-0123456789abcdef"
ADMIN_KEY = "admin-bench-key-0123456789abcdef"
SERVER_SECRET = "bench-server-secret-0123456789abcdef"
LITELLM_VENV = Path.home() / ".cache" / "modelplex-bench" / "litellm"
LITELLM_PY_ENV = "MODELPLEX_BENCH_LITELLM_PYTHON"


# ------------------------------------------------------------------------------------------ report model


@dataclass(slots=True)
class Target:
    """One issue target: ``value op goal`` (``op`` is ``>=`` or ``<=``). ``value`` None: not measured."""

    name: str
    value: float | None
    goal: float
    op: str
    unit: str = ""
    detail: str = ""

    @property
    def status(self) -> str:
        if self.value is None or self.value != self.value:  # None or NaN
            return "N/A"
        ok = self.value >= self.goal if self.op == ">=" else self.value <= self.goal
        return "PASS" if ok else "MISS"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass
class Section:
    """What one bench_* module reports: a table, targets, ratios for the plot, notes and raw data."""

    key: str
    title: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    ratios: list[tuple[str, str, float]] = field(default_factory=list)
    """(comparison group, label, ratio) for the plot; group is ``floor`` (fraction of the floor, higher
    is better) or ``litellm`` (times LiteLLM, higher is better)."""
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "columns": self.columns, "rows": self.rows,
                "targets": [t.to_dict() for t in self.targets],
                "ratios": [{"group": g, "label": lbl, "ratio": r} for g, lbl, r in self.ratios],
                "notes": self.notes, "data": self.data, "skipped": self.skipped, "seconds": round(self.seconds, 1)}


@dataclass
class Context:
    """Settings every section reads."""

    quick: bool
    out_dir: Path
    work_dir: Path
    """Scratch space: configs, databases, logs (deleted after a successful run unless --keep)."""
    upstream: str = "minimal"
    loadgen: str = "auto"
    litellm_python: str | None = None
    litellm: bool = True
    python: str = sys.executable

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def seconds(self, full: float, quick: float = 1.0) -> float:
        return quick if self.quick else full

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


# ------------------------------------------------------------------------------------------ statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in [0, 100]); NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass(slots=True)
class LoadResult:
    """What one closed-loop (or wrk) run measured. Latencies in milliseconds."""

    concurrency: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    first_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_latencies(cls, latencies_s: list[float], *, concurrency: int, seconds: float, errors: int,
                       first_error: str | None = None) -> LoadResult:
        lat = sorted(latencies_s)
        n = len(lat)
        return cls(concurrency=concurrency, seconds=round(seconds, 3), requests=n, errors=errors,
                   rps=n / seconds if seconds > 0 else 0.0, p50_ms=percentile(lat, 50) * 1e3,
                   p99_ms=percentile(lat, 99) * 1e3, mean_ms=(sum(lat) / n * 1e3) if n else float("nan"),
                   first_error=first_error)


def exponential_think(mean_s: float) -> Awaitable[None]:
    """Sleep an exponentially distributed time of mean ``mean_s`` seconds (a Poisson-like pause)."""
    return asyncio.sleep(random.expovariate(1.0 / mean_s))


async def closed_loop(call: Callable[[], Awaitable[Any]], *, concurrency: int, seconds: float,
                      warmup: float, think_s: float = 0.0,
                      think: Callable[[float], Awaitable[Any]] = exponential_think) -> LoadResult:
    """Run ``concurrency`` callers back to back: ``warmup`` seconds unrecorded, then ``seconds`` recorded.

    Only calls that start and finish inside the recorded window count; a call that raises counts
    as an error (never as throughput) and the first error's type and text are kept.

    With ``think_s`` > 0 (paced load) every caller first awaits ``think(think_s)`` before each call
    (by default an exponentially distributed pause of mean ``think_s`` seconds), so the callers
    together offer about ``concurrency / think_s`` calls per second with Poisson-like arrivals. A
    call's latency runs from when it is sent, after its pause, as with wrk's ``delay()``. Without a
    think time the callers run back to back."""
    perf = time.perf_counter
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    window = [float("inf"), float("inf")]  # [start, end] of the recorded window
    stop = False

    async def worker() -> None:
        nonlocal errors, first_error
        while not stop:
            if think_s > 0:
                await think(think_s)
                if stop:
                    break
            t0 = perf()  # after any pause: the pause is not latency
            try:
                await call()
            except Exception as exc:
                t1 = perf()
                if window[0] <= t0 and t1 <= window[1]:
                    errors += 1
                    if first_error is None:
                        first_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            t1 = perf()
            if window[0] <= t0 and t1 <= window[1]:
                latencies.append(t1 - t0)

    tasks = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        window[0] = perf()
        window[1] = window[0] + seconds
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=max(30.0, seconds * 4))
    finally:
        for t in tasks:
            t.cancel()
    return LoadResult.from_latencies(latencies, concurrency=concurrency, seconds=seconds, errors=errors,
                                     first_error=first_error)


# ------------------------------------------------------------------------------------------ rounds

T = TypeVar("T")
S = TypeVar("S")


def rotation(names: Sequence[T], step: int) -> list[T]:
    """``names`` rotated left by ``step``: over ``len(names)`` consecutive steps each one leads once."""
    if not names:
        return []
    k = step % len(names)
    return [*names[k:], *names[:k]]


def round_schedule(names: Sequence[T], slots: Sequence[S], rounds: int) -> list[tuple[int, S, list[T]]]:
    """The interleaved plan: for each round, for each slot (a concurrency, a mode and connection
    count), every name in a rotating order. The order of slot ``j`` in round ``r`` is ``names``
    rotated by ``r + j``, so per slot the leader changes every round and no name is always first."""
    return [(r, slot, rotation(names, r + j)) for r in range(rounds) for j, slot in enumerate(slots)]


def median_index(values: Sequence[float]) -> int:
    """Index of the median of ``values`` (of the lower middle one when the count is even)."""
    if not values:
        raise ValueError("median_index of an empty sequence")
    order = sorted(range(len(values)), key=lambda i: values[i])
    return order[(len(order) - 1) // 2]


def median_run(runs: Sequence[LoadResult | None]) -> LoadResult | None:
    """The measured run (one per round, ``None`` where a round has none) whose rps is the median."""
    measured = [r for r in runs if r is not None]
    if not measured:
        return None
    return measured[median_index([r.rps for r in measured])]


def round_deltas(a: Sequence[LoadResult | None], b: Sequence[LoadResult | None],
                 fn: Callable[[LoadResult, LoadResult], float | None]) -> list[float]:
    """``fn(a[i], b[i])`` for each round ``i`` where both were measured and ``fn`` gives a number."""
    out: list[float] = []
    for x, y in zip(a, b, strict=False):
        v = fn(x, y) if x is not None and y is not None else None
        if v is not None and v == v:
            out.append(v)
    return out


def round_ratios(num: Sequence[LoadResult | None], den: Sequence[LoadResult | None]) -> list[float]:
    """The per-round rps ratio ``num / den`` (rounds where either is missing or ``den`` is 0 left out)."""
    return round_deltas(num, den, lambda x, y: ratio(x.rps, y.rps))


@dataclass(frozen=True, slots=True)
class Spread:
    """Per-round figures of one comparison: their median (what is reported) and range."""

    median: float
    low: float
    high: float
    rounds: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": list(self.rounds)}

    def describe(self, unit: str = "x", digits: int = 2) -> str:
        """``0.61x (0.58-0.64x over 3 rounds)``, or ``0.61x (1 round)``."""
        med = f"{self.median:.{digits}f}{unit}"
        if len(self.rounds) == 1:
            return f"{med} (1 round)"
        return f"{med} ({self.low:.{digits}f}-{self.high:.{digits}f}{unit} over {len(self.rounds)} rounds)"


def spread(values: Sequence[float]) -> Spread | None:
    """Median, min and max of per-round figures (the median of two is their mean); ``None`` if empty."""
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), tuple(values))


K = TypeVar("K")


def comparisons(runs: Mapping[str, Mapping[K, Sequence[LoadResult | None]]], base: str
                ) -> dict[str, dict[K, Spread]]:
    """Per client (or server) and slot (a concurrency, or ``mode@connections``), the spread of its
    per-round rps ratios to ``base``'s runs in the same slot."""
    out: dict[str, dict[K, Spread]] = {}
    for name, by_slot in runs.items():
        for slot, rs in by_slot.items():
            s = spread(round_ratios(rs, runs.get(base, {}).get(slot, [])))
            if s is not None:
                out.setdefault(name, {})[slot] = s
    return out


def time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    """Per-call wall time (seconds) of ``n`` calls of a synchronous ``fn``."""
    perf = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = perf()
        fn()
        out.append((perf() - t0) / 1e9)
    return out


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    """Resident set size of one process in MiB (Linux ``/proc``); ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@dataclass
class Proc:
    """A subprocess whose output goes to a log file; ``stop()`` terminates, then kills."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def spawn(name: str, args: Sequence[str], *, log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path = REPO) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    try:
        popen = subprocess.Popen(list(args), stdout=handle, stderr=subprocess.STDOUT, cwd=str(cwd),
                                 env={**os.environ, **(env or {})}, start_new_session=True)
    finally:
        handle.close()
    return Proc(name, popen, log)


def http_get(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, payload: Any, headers: dict[str, str] | None = None, timeout: float = 30.0
                   ) -> tuple[int, bytes]:
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, *, timeout: float, proc: Proc | None = None, interval: float = 0.01) -> float:
    """Poll ``url`` until it answers 2xx; returns the seconds waited. Raises if ``proc`` dies first."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while True:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with status {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            status, _ = http_get(url, timeout=1.0)
            if 200 <= status < 300:
                return time.perf_counter() - t0
        except (OSError, urllib.error.URLError):
            pass
        if time.perf_counter() > deadline:
            tail = proc.log_tail() if proc is not None else ""
            raise TimeoutError(f"{url} did not answer within {timeout:g}s\n{tail}")
        time.sleep(interval)


def run_json(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None,
             cwd: Path = REPO) -> dict[str, Any]:
    """Run a worker process and parse the JSON object on the last line of its stdout."""
    done = subprocess.run(list(args), capture_output=True, timeout=timeout, cwd=str(cwd),
                          env={**os.environ, **(env or {})}, check=False)
    lines = [ln for ln in done.stdout.decode(errors="replace").splitlines() if ln.strip()]
    if done.returncode != 0 or not lines:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"worker {' '.join(args[:4])} failed (status {done.returncode}): "
                           + " | ".join(err[-6:]))
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# ------------------------------------------------------------------------------------------ interpreters


def _has_module(python: str, module: str) -> bool:
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def litellm_python(explicit: str | None = None) -> str | None:
    """An interpreter that can import litellm: ``explicit``, ``$MODELPLEX_BENCH_LITELLM_PYTHON``,
    this one, or the harness's own venv (``~/.cache/modelplex-bench/litellm``); ``None`` if none."""
    candidates = [explicit, os.environ.get(LITELLM_PY_ENV), sys.executable, str(LITELLM_VENV / "bin" / "python")]
    for cand in candidates:
        if cand and Path(cand).exists() and _has_module(cand, "litellm"):
            return cand
    return None


def package_version(python: str, dist: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode().strip() or None if done.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_gb = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    versions = {}
    for dist in ("modelplex", "aiohttp", "orjson", "starlette", "uvicorn", "uvloop", "httptools"):
        try:
            import importlib.metadata as md

            versions[dist] = md.version(dist)
        except Exception:
            versions[dist] = None
    return {"host": platform.node(), "cpus": os.cpu_count(), "cpu_model": cpu, "mem_gb": mem_gb,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


# ------------------------------------------------------------------------------------------ the upstream

COMPLETION_TEXT = "The quarterly numbers rose four percent on higher subscription revenue."
PROMPT_TOKENS = 14
COMPLETION_TOKENS = 12


def completion_body(model: str = "gpt-4o-mini") -> bytes:
    """An OpenAI ``chat.completion`` as the service renders it (refusal, logprobs, detailed usage)."""
    obj = {
        "id": "chatcmpl-bench0001", "object": "chat.completion", "created": 1_767_000_000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": COMPLETION_TEXT, "refusal": None,
                                             "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_bench",
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def stream_body(model: str = "gpt-4o-mini", *, include_usage: bool = True, pieces: int = 4) -> bytes:
    """An OpenAI ``chat.completion.chunk`` SSE stream: role, ``pieces`` content deltas, finish, usage, DONE."""
    base = {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": 1_767_000_000,
            "model": model, "service_tier": "default", "system_fingerprint": "fp_bench"}
    words = COMPLETION_TEXT.split(" ")
    size = -(-len(words) // pieces)
    parts = [" ".join(words[i:i + size]) + (" " if i + size < len(words) else "") for i in range(0, len(words), size)]
    events: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                              "logprobs": None, "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}]}
               for p in parts]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        events.append({**base, "choices": [], "usage": {"prompt_tokens": PROMPT_TOKENS,
                                                        "completion_tokens": COMPLETION_TOKENS,
                                                        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}})
    out = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events)
    return out + b"data: [DONE]\n\n"


def _response(status: str, body: bytes, content_type: bytes, keep_alive: bool) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
            + str(len(body)).encode() + (b"\r\nconnection: keep-alive" if keep_alive else b"\r\nconnection: close")
            + b"\r\nx-request-id: req_bench\r\n\r\n" + body)


def _chunked(body: bytes, keep_alive: bool) -> bytes:
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked" + (b"\r\nconnection: keep-alive" if keep_alive else b"\r\nconnection: close")
            + b"\r\n\r\n")
    return head + f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"


_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')


def serve_minimal_upstream(host: str, port: int, *, status: int = 200) -> None:
    """Serve a fixed OpenAI-compatible answer forever: ``POST /v1/chat/completions`` (JSON, or SSE when
    the body says ``"stream": true``; the usage chunk only when it asks for ``include_usage``),
    ``GET /v1/models``, ``GET /health``. ``status`` other than 200 answers every chat call with that
    status and an OpenAI error body (a provider that is down)."""
    import httptools

    ok_json = completion_body()
    streams = {True: stream_body(include_usage=True), False: stream_body(include_usage=False)}
    models = json.dumps({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model",
                                                       "created": 0, "owned_by": "bench"}]}).encode()
    error = json.dumps({"error": {"message": "The server is overloaded.", "type": "server_error",
                                  "param": None, "code": None}}).encode()
    err_status = f"{status} Service Unavailable" if status == 503 else f"{status} Error"

    class Upstream(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.body: list[bytes] = []
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                if self.transport is not None:
                    self.transport.close()

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            body = b"".join(self.body)
            url, self.url, self.body = self.url, b"", []
            keep = self.parser.should_keep_alive()
            method = self.parser.get_method()
            path = url.split(b"?", 1)[0]
            if method == b"POST" and path.endswith(b"/chat/completions"):
                if status != 200:
                    out = _response(err_status, error, b"application/json", keep)
                elif _STREAM_RE.search(body):
                    out = _chunked(streams[b"include_usage" in body], keep)
                else:
                    out = _response("200 OK", ok_json, b"application/json", keep)
            elif method == b"GET" and path.endswith(b"/models"):
                out = _response("200 OK", models, b"application/json", keep)
            elif path in (b"/health", b"/__fake__/health"):
                out = _response("200 OK", b'{"ok":true}', b"application/json", keep)
            else:
                out = _response("404 Not Found", b'{"error":{"message":"not found","type":"invalid_request_error"}}',
                                b"application/json", keep)
            assert self.transport is not None
            self.transport.write(out)
            if not keep:
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Upstream, host, port, reuse_address=True, backlog=4096)
        sys.stdout.write(f"minimal upstream on http://{host}:{port}\n")
        sys.stdout.flush()
        async with server:
            await server.serve_forever()

    _run(main())


def serve_modelplex_fake(host: str, port: int) -> None:
    """modelplex's own ``FakeProviderServer`` (OpenAI protocol, no capture, zero latency)."""
    from modelplex.testing.faults import Behavior
    from modelplex.testing.server import FakeProviderServer

    async def main() -> None:
        server = FakeProviderServer(protocols=("openai",), capture=False, host=host, port=port,
                                    behavior=Behavior(reply=COMPLETION_TEXT))
        await server.start()
        sys.stdout.write(f"modelplex fake provider on {server.base_url}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()

    _run(main())


def _run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


UPSTREAM_KINDS = ("minimal", "modelplex-fake")


@dataclass
class Upstream:
    kind: str
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def start_upstream(kind: str, *, log_dir: Path, status: int = 200, name: str = "upstream") -> Upstream:
    """Start an upstream of ``kind`` (``minimal`` | ``modelplex-fake``) in its own process."""
    if kind not in UPSTREAM_KINDS:
        raise ValueError(f"unknown upstream {kind!r}; expected one of {UPSTREAM_KINDS}")
    port = free_port()
    args = [sys.executable, "-m", "benchmarks.common", "upstream", "--kind", kind, "--port", str(port),
            "--status", str(status)]
    proc = spawn(f"{name}-{port}", args, log_dir=log_dir)
    path = "/__fake__/health" if kind == "modelplex-fake" else "/health"
    wait_http(f"http://127.0.0.1:{port}{path}", timeout=30, proc=proc)
    return Upstream(kind, proc, port)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.common")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("upstream", help="serve a fake OpenAI-compatible upstream")
    up.add_argument("--kind", choices=UPSTREAM_KINDS, default="minimal")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--status", type=int, default=200)
    args = p.parse_args(argv)
    if args.kind == "minimal":
        serve_minimal_upstream(args.host, args.port, status=args.status)
    else:
        serve_modelplex_fake(args.host, args.port)


if __name__ == "__main__":
    main()
