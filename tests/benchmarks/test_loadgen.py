"""Paced load in the benchmark harness: the wrk ``delay()`` script, the built-in generator's think time,
``run_load(rate=...)``, and the gateway section's paced phase and the p99 target read from it.

Nothing here is timed: think times are injected or recorded, load runs are faked (or hit a closed
loopback port), and the gateway report is fed hand-made ``LoadResult``s.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from benchkit import bench_modules

REPO = Path(__file__).resolve().parents[2]


def _modules() -> Any:
    return bench_modules('common', 'loadgen', 'bench_gateway')


def _result(rps: float = 600.0, p50: float = 1.0, p99: float = 2.0, errors: int = 0) -> Any:
    common, _, _ = _modules()
    return common.LoadResult(concurrency=50, seconds=4.0, requests=int(rps * 4), errors=errors, rps=rps,
                             p50_ms=p50, p99_ms=p99, mean_ms=p50)


# ------------------------------------------------------------------------------------------ wrk script


def test_think_time_mean_makes_the_connections_offer_the_rate() -> None:
    _, loadgen, _ = _modules()
    assert loadgen.think_ms(50, 640.0) == pytest.approx(78.125)
    assert loadgen.think_ms(10, 1000.0) == pytest.approx(10.0)
    for conns, rate in ((50, 0.0), (50, -1.0), (0, 100.0)):
        with pytest.raises(ValueError):
            loadgen.think_ms(conns, rate)


def test_paced_wrk_script_has_an_exponential_delay_of_the_right_mean() -> None:
    _, loadgen, _ = _modules()
    script = loadgen.wrk_script([b'{"model":"m"}'], {"Authorization": "Bearer k"},
                                mean_think_ms=loadgen.think_ms(50, 640.0))
    assert "local think_mean_ms = 78.125\n" in script
    assert "delay = function()\n  return -math.log(1 - math.random()) * think_mean_ms + 0.5\nend\n" in script
    init = script[script.index("init = function(args)"):]
    assert init.index("math.randomseed(") < init.index("end\n")  # seeded in init, per thread
    assert "request = function()" in script and 'wrk.format("POST"' in script  # the bodies are still sent


def test_paced_get_script_also_delays() -> None:
    _, loadgen, _ = _modules()
    script = loadgen.wrk_script([b""], {"A": "b"}, mean_think_ms=12.5)
    assert script.startswith('wrk.method = "GET"')
    assert "math.randomseed(" in script and "local think_mean_ms = 12.5\n" in script
    assert "delay = function()" in script


def test_unpaced_wrk_script_is_unchanged() -> None:
    _, loadgen, _ = _modules()
    for bodies in ([b'{"model":"m"}'], [b""]):
        script = loadgen.wrk_script(bodies, {"A": "b"})
        assert "delay" not in script and "math.random" not in script
        assert script == loadgen.wrk_script(bodies, {"A": "b"}, mean_think_ms=None)


def test_wrk_delay_compensates_for_truncation() -> None:
    """wrk truncates delay() to whole ms: floor of an exponential of mean m averages 1/(e^(1/m) - 1) ~ m - 0.5."""
    import math

    _, loadgen, _ = _modules()
    assert "+ 0.5" in loadgen.wrk_delay(78.125)
    m = 78.125
    assert 1 / (math.exp(1 / m) - 1) + 0.5 == pytest.approx(m, abs=0.01)


# ------------------------------------------------------------------------------------------ run_load


def test_run_load_paces_wrk_warm_up_and_run_and_records_the_offered_rate(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    _, loadgen, _ = _modules()
    calls: list[dict[str, Any]] = []

    def fake_run_wrk(url: str, bodies: Any, headers: Any, **kw: Any) -> Any:
        calls.append(kw)
        return _result()

    monkeypatch.setattr(loadgen, "run_wrk", fake_run_wrk)
    r = loadgen.run_load("http://x", [b"{}"], {}, conns=50, seconds=4, tool="wrk", tmp_dir=tmp_path, warmup=1.0,
                         rate=640.0)
    assert [c["rate"] for c in calls] == [640.0, 640.0]  # the warm-up is paced too
    assert [c["seconds"] for c in calls] == [1, 4]
    assert r.extra["offered_rps"] == 640.0
    calls.clear()
    r = loadgen.run_load("http://x", [b"{}"], {}, conns=50, seconds=2, tool="wrk", tmp_dir=tmp_path, warmup=0.0)
    assert [c["rate"] for c in calls] == [None] and "offered_rps" not in r.extra
    with pytest.raises(ValueError):
        loadgen.run_load("http://x", [b"{}"], {}, conns=50, seconds=2, tool="wrk", tmp_dir=tmp_path, rate=0.0)


def test_run_wrk_writes_the_paced_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, loadgen, _ = _modules()
    seen: dict[str, Any] = {}
    out = ("    Latency     1.10ms    0.50ms   9.00ms   90.00%\n  Latency Distribution\n"
           "     50%    1.00ms\n     75%    1.10ms\n     90%    1.20ms\n     99%    3.00ms\n"
           "  2400 requests in 4.00s, 1.00MB read\n")

    def fake_run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        seen["args"] = args
        seen["script"] = Path(args[args.index("-s") + 1]).read_text()
        return subprocess.CompletedProcess(args, 0, out.encode(), b"")

    monkeypatch.setattr(loadgen, "wrk_path", lambda: "/usr/bin/wrk")
    monkeypatch.setattr(loadgen.subprocess, "run", fake_run)
    r = loadgen.run_wrk("http://x/v1/chat/completions", [b"{}"], {}, conns=50, seconds=4, tmp_dir=tmp_path,
                        rate=500.0)
    assert "-c50" in seen["args"] and "-d4s" in seen["args"]
    assert "local think_mean_ms = 100.0\n" in seen["script"]
    assert r.requests == 2400 and r.p99_ms == pytest.approx(3.0)  # parse_wrk unaffected by pacing


def test_run_builtin_passes_the_rate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, loadgen, _ = _modules()
    seen: list[list[str]] = []

    def fake_run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, (json.dumps(_result().to_dict()) + "\n").encode(), b"")

    monkeypatch.setattr(loadgen.subprocess, "run", fake_run)
    r = loadgen.run_load("http://x", [b"{}"], {}, conns=50, seconds=1, tool="builtin", tmp_dir=tmp_path, rate=250.0)
    assert seen[0][seen[0].index("--rate") + 1] == "250.0"
    assert r.extra["offered_rps"] == 250.0
    loadgen.run_load("http://x", [b"{}"], {}, conns=50, seconds=1, tool="builtin", tmp_dir=tmp_path)
    assert "--rate" not in seen[1]


def test_builtin_generator_paced_over_loopback(tmp_path: Path) -> None:
    """The real generator process against a closed loopback port: every call an error, the rate recorded."""
    common, loadgen, _ = _modules()
    url = f"http://127.0.0.1:{common.free_port()}/v1/chat/completions"
    r = loadgen.run_builtin(url, [b"{}"], {}, conns=2, seconds=0.2, warmup=0.0, tmp_dir=tmp_path, rate=100.0)
    assert r.requests == 0 and r.extra == {"tool": "builtin", "offered_rps": 100.0}


# ------------------------------------------------------------------------------------------ closed_loop


async def test_closed_loop_thinks_before_every_call_with_the_mean() -> None:
    common, _, _ = _modules()
    log: list[Any] = []

    async def think(mean: float) -> None:
        log.append(("think", mean))
        await asyncio.sleep(0)

    async def call() -> None:
        log.append("call")
        await asyncio.sleep(0)

    await common.closed_loop(call, concurrency=1, seconds=0.02, warmup=0.0, think_s=0.25, think=think)
    assert log and log[0] == ("think", 0.25)
    assert {e for e in log if e != "call"} == {("think", 0.25)}
    calls = [i for i, e in enumerate(log) if e == "call"]
    assert calls and all(log[i - 1] == ("think", 0.25) for i in calls)  # one pause before each call


async def test_closed_loop_without_think_time_never_pauses() -> None:
    common, _, _ = _modules()
    n = 0

    async def think(mean: float) -> None:
        raise AssertionError("no think time was asked for")

    async def call() -> None:
        nonlocal n
        n += 1
        await asyncio.sleep(0)

    r = await common.closed_loop(call, concurrency=2, seconds=0.02, warmup=0.0, think=think)
    assert n > 0 and r.errors == 0


async def test_default_think_is_an_exponential_pause_of_the_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    common, _, _ = _modules()
    rates: list[float] = []

    def fake_expovariate(lambd: float) -> float:
        rates.append(lambd)
        return 0.0

    monkeypatch.setattr(common.random, "expovariate", fake_expovariate)
    await common.exponential_think(0.25)
    assert rates == [4.0]  # expovariate takes 1 / mean


# ------------------------------------------------------------------------------------------ the gateway's paced phase


def test_offered_rate_is_half_the_saturated_rps_rounded() -> None:
    _, _, gw = _modules()
    assert gw.offered_rate(1283.0) == 640.0
    assert gw.offered_rate(5000.0) == 2500.0
    assert gw.offered_rate(90.0) == 45.0
    assert gw.offered_rate(1.0) == 1.0
    assert gw.offered_rate(None) is None and gw.offered_rate(0.0) is None and gw.offered_rate(float("nan")) is None
    runs = {"modelplex": {"json@50": [_result(1200.0), None, _result(1400.0), _result(1300.0)]}}
    assert gw.saturated_rps(runs) == 1300.0  # the median-RPS round, as in its row; unmeasured rounds left out
    runs = {"modelplex": {"json@50": [_result(1400.0), _result(1200.0)]}}
    assert gw.saturated_rps(runs) == 1200.0  # of two, the lower one, like the row and the RPS target
    assert gw.saturated_rps({"modelplex": {"json@50": [_result(0.0)]}}) is None  # nothing completed
    assert gw.saturated_rps({"modelplex": {"json@50": [None]}}) is None
    assert gw.saturated_rps({}) is None


def _gateway(tmp_path: Path, rounds: int = 2) -> Any:
    common, _, gw = _modules()
    ctx = common.Context(quick=False, out_dir=tmp_path, work_dir=tmp_path / "work")
    return gw.Gateway(ctx, gw.Plan(rounds=rounds, seconds=2.0, warmup=1.0, conns=(50,)), "wrk", [])


def _saturated(g: Any) -> None:
    """Saturated rounds: direct p99 5 ms, modelplex p99 ~250 ms (queueing), modelplex 1283 RPS."""
    g.runs = {
        "direct": {"json@50": [_result(9000.0, p99=5.0)] * 2, "stream@50": [_result(8000.0)] * 2},
        "pass-through": {"json@50": [_result(3000.0, p99=100.0)] * 2, "stream@50": [_result(2000.0)] * 2},
        "modelplex": {"json@50": [_result(1283.0, p99=250.0), _result(1283.0, p99=260.0)],
                      "stream@50": [_result(1000.0)] * 2},
    }


def test_p99_target_comes_from_the_paced_runs(tmp_path: Path) -> None:
    common, _, gw = _modules()
    g = _gateway(tmp_path)
    _saturated(g)
    g.paced_rate = 640.0
    g.paced_runs = {
        "direct": {"paced@50": [_result(630.0, p50=0.5, p99=2.0), _result(631.0, p50=0.5, p99=3.0)]},
        "pass-through": {"paced@50": [_result(620.0, p50=1.5, p99=6.0), _result(622.0, p50=1.5, p99=7.0)]},
        "modelplex": {"paced@50": [_result(600.0, p50=2.5, p99=9.0), _result(601.0, p50=2.5, p99=15.0)]},
    }
    sec = common.Section("gateway", "Gateway")
    gw.report(sec, g)
    (t,) = [t for t in sec.targets if t.name == gw.P99_TARGET]
    assert t.value == pytest.approx(9.5)  # median of (9 - 2, 15 - 3), not the saturated 245-255 ms
    assert t.status == "PASS"
    assert t.detail.startswith("paced: 50 connections offering 640 RPS (half of modelplex's saturated 1283 RPS)")
    assert t.detail.endswith("at saturation (json c=50, every connection busy) the p99 overhead is 250 ms, mostly "
                             "queueing (50 requests in flight, 39 ms of waiting on average at 1283 RPS, more behind "
                             "any pause)")
    paced_rows = [row for row in sec.rows if row[1] == "json, paced 640 RPS"]
    assert [row[0] for row in paced_rows] == ["modelplex", "pass-through", "direct"]
    mp = paced_rows[0]
    assert mp[2] == 50 and mp[5] == 9.0  # the median-p99 round of two: the lower one
    assert mp[7] == "2.00 / 9.50" and mp[8:] == ["", ""]
    assert sec.rows.index(paced_rows[0]) > max(i for i, row in enumerate(sec.rows) if row[1] == "json")
    data = sec.data["paced"]
    assert data["offered_rps"] == 640.0 and data["saturated_rps"] == 1283.0 and data["think_mean_ms"] == 78.125
    assert data["overhead_ms"]["modelplex/p99"]["paced@50"]["rounds"] == [7.0, 12.0]
    assert data["overhead_ms"]["pass-through/p99"]["paced@50"]["median"] == pytest.approx(4.0)
    assert "paced@50" not in sec.data["results"]["modelplex"]  # saturation data untouched by the paced phase
    assert sec.data["overhead_ms"]["modelplex/p99"]["json@50"]["median"] == pytest.approx(250.0)
    assert any(n.startswith("saturated p99 overhead of modelplex over direct, json c=50: 250.0 ms")
               for n in sec.notes)
    assert any(n.startswith("paced p99 overhead over direct, per round (ms): modelplex 9.5 (7.0-12.0")
               for n in sec.notes)
    assert not any("did not keep up" in n for n in sec.notes)


def test_paced_server_that_does_not_keep_up_is_noted(tmp_path: Path) -> None:
    common, _, gw = _modules()
    g = _gateway(tmp_path, rounds=1)
    _saturated(g)
    g.paced_rate = 640.0
    g.paced_runs = {"direct": {"paced@50": [_result(630.0)]}, "modelplex": {"paced@50": [_result(300.0, p99=80.0)]}}
    sec = common.Section("gateway", "Gateway")
    gw.report(sec, g)
    assert any("did not keep up" in n and "modelplex round 1 (300 RPS)" in n for n in sec.notes)
    (t,) = [t for t in sec.targets if t.name == gw.P99_TARGET]
    assert t.value == pytest.approx(78.0) and t.status == "MISS"


def test_no_paced_phase_leaves_the_target_unmeasured(tmp_path: Path) -> None:
    common, _, gw = _modules()
    g = _gateway(tmp_path)
    _saturated(g)
    sec = common.Section("gateway", "Gateway")
    gw.report(sec, g)  # paced_rate None: the phase did not run
    (t,) = [t for t in sec.targets if t.name == gw.P99_TARGET]
    assert t.value is None and t.status == "N/A"
    assert t.detail.startswith("paced phase not run") and "250 ms" in t.detail
    assert sec.data["paced"] == {"skipped": "no saturated modelplex json@50 result"}
    assert not any("paced" in str(row[1]) for row in sec.rows)


def test_paced_phase_runs_direct_pass_through_and_modelplex_at_the_offered_rate(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, _, gw = _modules()
    g = _gateway(tmp_path)
    _saturated(g)
    for name in ("direct", "pass-through", "modelplex", "litellm-proxy"):
        g.servers[name] = gw.Server(name, None, f"http://{name}", {}, "m")
    g.runs["litellm-proxy"] = {"json@50": [_result(150.0)] * 2}
    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_run_load(url: str, bodies: Any, headers: Any, **kw: Any) -> Any:
        calls.append((url.split("/")[2], kw))
        return _result(630.0)

    monkeypatch.setattr(gw, "run_load", fake_run_load)
    g.paced()
    assert g.paced_rate == 640.0
    assert sorted(name for name, _ in calls) == sorted(["direct", "pass-through", "modelplex"] * 3)  # 3 rounds
    assert all(kw["rate"] == 640.0 and kw["conns"] == 50 and kw["seconds"] == 4.0 and kw["warmup"] == 1.0
               for _, kw in calls)
    assert [s["order"][0] for s in g.paced_schedule] == ["direct", "pass-through", "modelplex"]  # rotates
    assert set(g.paced_runs) == {"direct", "pass-through", "modelplex"}
    assert all(r is not None for by_key in g.paced_runs.values() for r in by_key["paced@50"])
    assert "json@50" in g.runs["modelplex"] and "paced@50" not in g.runs["modelplex"]
    assert any("LiteLLM proxy left out" in n and "150" in n for n in g.notes)


def test_paced_phase_is_skipped_without_a_saturated_modelplex_result(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    _, _, gw = _modules()
    g = _gateway(tmp_path)
    g.runs = {"modelplex": {"json@50": [None, None]}}
    monkeypatch.setattr(gw, "run_load", lambda *a, **kw: pytest.fail("nothing should run"))
    g.paced()
    assert g.paced_rate is None and g.paced_runs == {}
    assert any(n.startswith("paced phase: skipped") for n in g.notes)


def test_quick_paced_plan_is_one_short_round(tmp_path: Path) -> None:
    common, _, gw = _modules()
    quick = common.Context(quick=True, out_dir=tmp_path, work_dir=tmp_path / "q")
    full = common.Context(quick=False, out_dir=tmp_path, work_dir=tmp_path / "f")
    assert gw.paced_plan_for(quick, gw.plan_for(quick)) == gw.Plan(rounds=1, seconds=1.0, warmup=0.0, conns=(50,))
    assert gw.paced_plan_for(full, gw.plan_for(full)) == gw.Plan(rounds=3, seconds=4.0, warmup=1.0, conns=(50,))
