"""HTTP load for the gateway sections: ``wrk`` when it is on the machine, else a built-in aiohttp generator.

Owns: ``run_load(...)`` (one closed-loop run of N connections for a fixed time against one URL with
one or several request bodies, returning a ``LoadResult``), the wrk Lua script it writes and the
parser of wrk's report, and the built-in generator (``python -m benchmarks.loadgen ...`` prints a
``LoadResult`` as JSON; it runs in its own process so it never shares the measured server's loop).

Paced load (``run_load(..., rate=R)``): instead of firing back to back, each connection waits an
exponentially distributed think time of mean ``conns / R`` seconds before every request, so the N
connections together offer about R requests per second with Poisson-like arrivals (a fixed pause
would make them fire in bursts). With wrk this is a Lua ``delay()`` function; in the built-in
generator it is ``closed_loop``'s ``think_s``. Either way a request's latency starts when it is
sent, after its pause, and the offered rate is kept in ``LoadResult.extra["offered_rps"]``. Since a
connection waits for its answer before pausing again, the achieved rate is a little below R
(``conns / (conns / R + latency)``).

Errors are never throughput: wrk's "Non-2xx or 3xx responses" and socket errors, and the built-in
generator's non-2xx answers and exceptions, are counted as errors and subtracted from the requests.

Must not touch: the servers under test (bench_gateway, bench_memory start them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import REPO, LoadResult, closed_loop

WRK_TIMEOUT = "30s"


def wrk_path() -> str | None:
    return shutil.which("wrk")


def choose_tool(requested: str = "auto") -> str:
    """``wrk`` or ``builtin``: ``auto`` takes wrk when it is installed."""
    if requested == "wrk" and wrk_path() is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk), use --loadgen builtin")
    if requested == "auto":
        return "wrk" if wrk_path() is not None else "builtin"
    return requested


def _lua_string(s: str) -> str:
    """A double-quoted Lua string literal."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


def think_ms(conns: int, rate: float) -> float:
    """The mean think time (ms) per connection for ``conns`` connections to offer ``rate`` requests/s."""
    if rate <= 0 or conns <= 0:
        raise ValueError(f"a paced run needs a positive rate and connection count, got {rate=} {conns=}")
    return conns / rate * 1e3


def wrk_delay(mean_ms: float) -> str:
    """wrk's ``delay()``: an exponential think time of mean ``mean_ms`` before each request.

    wrk truncates the returned milliseconds to an integer; the floor of an exponential of mean m
    averages about m - 0.5, so 0.5 is added back. ``math.random`` is seeded in ``init`` (per thread)."""
    return (f"local think_mean_ms = {mean_ms!r}\n"
            "delay = function()\n"
            "  return -math.log(1 - math.random()) * think_mean_ms + 0.5\n"
            "end\n")


_SEED = "  math.randomseed(os.time())\n"


def wrk_script(bodies: Sequence[bytes], headers: dict[str, str], *, mean_think_ms: float | None = None) -> str:
    """A Lua script that POSTs the bodies in turn (GET when the only body is empty); with
    ``mean_think_ms`` each request is preceded by an exponential pause of that mean (``wrk_delay``)."""
    hdr = "\n".join(f"headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    paced = mean_think_ms is not None
    seed = _SEED if paced else ""
    delay = wrk_delay(mean_think_ms) if mean_think_ms is not None else ""
    if len(bodies) == 1 and not bodies[0]:
        init = f"init = function(args)\n{seed}end\n" if paced else ""
        return f"wrk.method = \"GET\"\nlocal headers = wrk.headers\n{hdr}\n{init}{delay}"
    items = ",\n".join(_lua_string(b.decode()) for b in bodies)
    return (f"local headers = {{}}\n{hdr}\nheaders[\"Content-Type\"] = \"application/json\"\n"
            f"local bodies = {{\n{items}\n}}\nlocal requests = {{}}\n"
            "init = function(args)\n"
            f"{seed}"
            "  for i, b in ipairs(bodies) do requests[i] = wrk.format(\"POST\", nil, headers, b) end\n"
            "end\n"
            "local i = 0\n"
            "request = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n"
            f"{delay}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if m is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str, *, conns: int, seconds: float) -> LoadResult:
    """Read wrk's ``--latency`` report into a ``LoadResult`` (errors subtracted from the requests)."""
    total_m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if total_m is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    total = int(total_m.group(1))
    elapsed = _ms(total_m.group(2) + total_m.group(3)) / 1e3
    non2xx_m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non2xx = int(non2xx_m.group(1)) if non2xx_m else 0
    sock_m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    sock = sum(int(x) for x in sock_m.groups()) if sock_m else 0
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, flags=re.M))
    ok = max(0, total - non2xx)
    mean_m = re.search(r"Latency\s+(\S+)", output)
    first_error = None
    if non2xx or sock:
        first_error = f"wrk: {non2xx} non-2xx responses, {sock} socket errors"
    return LoadResult(concurrency=conns, seconds=round(elapsed, 3), requests=ok, errors=non2xx + sock,
                      rps=ok / elapsed if elapsed > 0 else 0.0, p50_ms=_ms(pct["50"]) if "50" in pct else float("nan"),
                      p99_ms=_ms(pct["99"]) if "99" in pct else float("nan"),
                      mean_ms=_ms(mean_m.group(1)) if mean_m else float("nan"), first_error=first_error,
                      extra={"tool": "wrk", "wrk_total": total})


def run_wrk(url: str, bodies: Sequence[bytes], headers: dict[str, str], *, conns: int, seconds: float,
            tmp_dir: Path, rate: float | None = None) -> LoadResult:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    mean = think_ms(conns, rate) if rate is not None else None
    script = tmp_dir / f"wrk-{abs(hash((tuple(bodies), tuple(headers.items()), mean))):x}.lua"
    script.write_text(wrk_script(bodies, headers, mean_think_ms=mean))
    wrk = wrk_path()
    assert wrk is not None
    args = [wrk, "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", f"--timeout={WRK_TIMEOUT}",
            "-s", str(script), url]
    done = subprocess.run(args, capture_output=True, timeout=seconds + 120, check=False)
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    return parse_wrk(out, conns=conns, seconds=seconds)


def run_builtin(url: str, bodies: Sequence[bytes], headers: dict[str, str], *, conns: int, seconds: float,
                warmup: float, tmp_dir: Path, rate: float | None = None) -> LoadResult:
    """The built-in generator in its own process."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    spec = tmp_dir / f"load-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps({"bodies": [b.decode() for b in bodies], "headers": headers}))
    args = [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--spec", str(spec), "--conns", str(conns),
            "--seconds", str(seconds), "--warmup", str(warmup)]
    if rate is not None:
        args += ["--rate", repr(float(rate))]
    done = subprocess.run(args, capture_output=True, timeout=seconds + warmup + 120, cwd=str(REPO), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode(errors='replace')[-800:]}")
    data = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return LoadResult(**data)


def run_load(url: str, bodies: Sequence[bytes], headers: dict[str, str], *, conns: int, seconds: float,
             tool: str, tmp_dir: Path, warmup: float = 0.5, rate: float | None = None) -> LoadResult:
    """One run. With wrk a short unrecorded warm-up run comes first (wrk has no warm-up of its own).

    ``rate`` (requests/s, all connections together) paces the run, warm-up included: each connection
    pauses an exponential think time of mean ``conns / rate`` s before every request (module docstring)."""
    if rate is not None:
        think_ms(conns, rate)  # validates
    if tool == "wrk":
        if warmup > 0:
            run_wrk(url, bodies, headers, conns=conns, seconds=1, tmp_dir=tmp_dir, rate=rate)
        result = run_wrk(url, bodies, headers, conns=conns, seconds=seconds, tmp_dir=tmp_dir, rate=rate)
    else:
        result = run_builtin(url, bodies, headers, conns=conns, seconds=seconds, warmup=warmup, tmp_dir=tmp_dir,
                             rate=rate)
    if rate is not None:
        result.extra["offered_rps"] = rate
    return result


# ------------------------------------------------------------------------------------------ built-in generator


async def _generate(url: str, bodies: list[bytes], headers: dict[str, str], conns: int, seconds: float,
                    warmup: float, rate: float | None = None) -> LoadResult:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=conns, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    get = len(bodies) == 1 and not bodies[0]
    counter = 0

    class HTTPStatusError(Exception):
        pass

    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"Content-Type": "application/json", **headers}) as session:
        async def call() -> None:
            nonlocal counter
            counter += 1
            ctx = session.get(url) if get else session.post(url, data=bodies[counter % len(bodies)])
            async with ctx as resp:
                await resp.read()
                if resp.status >= 300:
                    raise HTTPStatusError(f"HTTP {resp.status}")

        think_s = think_ms(conns, rate) / 1e3 if rate is not None else 0.0
        result = await closed_loop(call, concurrency=conns, seconds=seconds, warmup=warmup, think_s=think_s)
    result.extra["tool"] = "builtin"
    if rate is not None:
        result.extra["offered_rps"] = rate
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description="closed-loop HTTP load "
                                "(optionally paced)")
    p.add_argument("--url", required=True)
    p.add_argument("--spec", required=True, help="JSON file: {bodies: [str], headers: {}}")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--rate", type=float, default=None,
                   help="pace the run: all connections together offer about this many requests/s (each "
                        "pauses an exponential think time of mean conns/rate s before every request)")
    a = p.parse_args(argv)
    spec = json.loads(Path(a.spec).read_text())
    bodies = [b.encode() for b in spec["bodies"]] or [b""]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(_generate(a.url, bodies, spec.get("headers", {}), a.conns, a.seconds, a.warmup, a.rate))
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")


if __name__ == "__main__":
    main()
