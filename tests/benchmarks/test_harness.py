"""Smoke tests of the benchmark harness: each section runs in ``--quick`` mode and writes its report.

These never assert on speed: only that every section produces its figures (requests made, no
errors, targets evaluated) and that the Markdown, JSON and PNG files are written. LiteLLM is left
out (``--no-litellm``) so the tests need nothing beyond the dev install; the load generator is
wrk when installed, else the built-in one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchkit import bench_modules

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("library", "gateway", "selection", "startup", "memory", "sinks", "failure")


def run_section(section: str, out: Path) -> tuple[dict[str, Any], Path]:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--no-litellm",
                           "--only", section, "--out", str(out)],
                          capture_output=True, timeout=300, cwd=str(REPO), check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    md = sorted(out.glob("*-quick.md"))
    assert len(md) == 1, list(out.iterdir())
    data = json.loads(md[0].with_suffix(".json").read_text())
    return data, md[0]


def section_of(data: dict[str, Any], key: str) -> dict[str, Any]:
    (sec,) = [s for s in data["sections"] if s["key"] == key]
    return sec


def rows_by(sec: dict[str, Any], column: str) -> dict[Any, list[Any]]:
    i = sec["columns"].index(column)
    return {row[i]: row for row in sec["rows"]}


@pytest.mark.slow
@pytest.mark.parametrize("section", SECTIONS)
def test_quick_section_writes_report(section: str, tmp_path: Path) -> None:
    data, md = run_section(section, tmp_path)
    sec = section_of(data, section)
    if sec["skipped"] and "not available" in sec["skipped"]:
        pytest.skip(sec["skipped"])
    assert sec["skipped"] is None, sec["skipped"]
    assert sec["rows"], "the section produced no figures"
    assert data["quick"] is True and data["machine"]["cpus"] >= 1
    assert md.with_suffix(".png").stat().st_size > 1000
    text = md.read_text()
    assert sec["title"] in text
    for t in sec["targets"]:
        assert t["status"] in ("PASS", "MISS", "N/A")
        assert f"| {t['name']} |" in text
    CHECKS[section](sec)


def check_library(sec: dict[str, Any]) -> None:
    results = sec["data"]["results"]
    for client in ("modelplex", "aiohttp"):
        for c in ("1", "50"):
            r = results[client][c]
            assert r["requests"] > 0 and r["errors"] == 0, r
            assert sec["data"]["per_round"][client][c] == [r]  # quick mode: one round, and it is the median
    assert sec["data"]["info"]["modelplex"]["records_stored"] > 0  # accounting really was on
    assert [t["value"] is not None for t in sec["targets"]] == [True, True, False]  # no LiteLLM: N/A
    assert set(sec["data"]["ratios"]["modelplex/aiohttp"]) == {"1", "50"}
    assert [s["order"] for s in sec["data"]["schedule"]] == [["aiohttp", "modelplex"], ["modelplex", "aiohttp"]]


def check_gateway(sec: dict[str, Any]) -> None:
    results = sec["data"]["results"]
    assert set(results) >= {"direct", "pass-through", "modelplex"}, sec["notes"]
    for name in ("direct", "pass-through", "modelplex"):
        for mode in ("json@50", "stream@50"):
            assert results[name][mode]["requests"] > 0 and results[name][mode]["errors"] == 0, (name, mode)
            assert sec["data"]["per_round"][name][mode] == [results[name][mode]]
    assert any(n.startswith("modelplex: auth: ") for n in sec["notes"])
    assert set(sec["data"]["ratios"]["modelplex/pass-through"]) == {"json@50", "stream@50"}
    assert sec["data"]["rss_mb_idle"]["modelplex"] > 0 and sec["data"]["rss_mb_after_load"]["modelplex"] > 0
    paced = sec["data"]["paced"]  # the paced phase: half of modelplex's saturated json@50 RPS
    assert paced["offered_rps"] == max(1.0, round(results["modelplex"]["json@50"]["rps"] * 0.5, -1))
    for name in ("direct", "pass-through", "modelplex"):
        (r,) = paced["per_round"][name]["paced@50"]
        assert r["requests"] > 0 and r["errors"] == 0 and r["extra"]["offered_rps"] == paced["offered_rps"], name
    assert "paced@50" not in results["modelplex"]
    (p99,) = [t for t in sec["targets"] if t["name"] == "gateway: p99 overhead over direct, 50 connections"]
    assert p99["value"] is not None and p99["detail"].startswith("paced: 50 connections offering")


def check_selection(sec: dict[str, Any]) -> None:
    bundled = sec["data"]["bundled"]
    assert bundled["models"] > 50
    assert bundled["cached"]["p50_us"] > 0 and bundled["uncached"]["p50_us"] > 0
    if "litellm_map" in sec["data"]:
        assert sec["data"]["litellm_map"]["models"] > bundled["models"]


def check_startup(sec: dict[str, Any]) -> None:
    rows = rows_by(sec, "what")
    assert rows["import modelplex"][1] > 0 and rows["modelplex --help"][1] > 0
    assert "import litellm" not in rows


def check_memory(sec: dict[str, Any]) -> None:
    d = sec["data"]["modelplex"]
    assert d["requests"] >= sec["data"]["target_requests"] or d["requests"] > 0
    assert d["errors"] == 0
    assert d["idle_mb"] > 10 and d["peak_mb"] >= d["idle_mb"] * 0.5
    assert d["growth_pct"] is not None


def check_sinks(sec: dict[str, Any]) -> None:
    sqlite = sec["data"]["sqlite"]
    assert sqlite["records"] > 0 and sqlite["write_batch"]["records_per_s"] > 0
    assert sqlite["recorder"]["records_per_s"] > 0
    pg = sec["data"]["postgres"]
    assert "skipped" in pg or pg["write_batch"]["records_per_s"] > 0


def check_failure(sec: dict[str, Any]) -> None:
    d = sec["data"]
    assert d["refused"]["calls"] > 0 and d["refused"]["p50_us"] > 0
    assert d["one_down"]["model"].startswith("groq/")
    assert ("openai/gpt-6-luna", "skipped_breaker") in [tuple(a) for a in d["one_down"]["attempts"]]
    for case in ("both_up", "one_down"):
        for r in d[case]["runs"].values():
            assert r["requests"] > 0 and r["errors"] == 0


CHECKS = {"library": check_library, "gateway": check_gateway, "selection": check_selection,
          "startup": check_startup, "memory": check_memory, "sinks": check_sinks, "failure": check_failure}


def test_wrk_report_parsing() -> None:
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.loadgen import parse_wrk
    finally:
        sys.path.remove(str(REPO))
    out = """Running 5s test @ http://127.0.0.1:4000/v1/chat/completions
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.52ms    2.10ms  41.00ms   90.00%
  Latency Distribution
     50%    9.10ms
     75%   10.20ms
     90%   11.00ms
     99%   18.50ms
  26000 requests in 5.00s, 20.00MB read
  Non-2xx or 3xx responses: 100
Requests/sec:   5200.00
"""
    r = parse_wrk(out, conns=50, seconds=5)
    assert r.requests == 25_900 and r.errors == 100
    assert r.rps == pytest.approx(5180.0)
    assert r.p50_ms == pytest.approx(9.1) and r.p99_ms == pytest.approx(18.5)
    assert r.first_error is not None and "100 non-2xx" in r.first_error


# ------------------------------------------------------------------------------------------ rounds (pure helpers)


def _bench_modules() -> Any:
    return bench_modules('common', 'bench_library', 'bench_gateway')


def _run(rps: float, p99: float = 10.0) -> Any:
    common, _, _ = _bench_modules()
    return common.LoadResult(concurrency=50, seconds=2.0, requests=int(rps * 2), errors=0, rps=rps, p50_ms=1.0,
                             p99_ms=p99, mean_ms=1.0)


def test_rotation_lets_each_name_lead_once() -> None:
    common, _, _ = _bench_modules()
    names = ["a", "b", "c"]
    assert common.rotation(names, 0) == ["a", "b", "c"]
    assert common.rotation(names, 1) == ["b", "c", "a"]
    assert common.rotation(names, 5) == ["c", "a", "b"]
    assert common.rotation([], 3) == []
    assert sorted(common.rotation(names, s)[0] for s in range(3)) == names


def test_round_schedule_rotates_per_slot_and_round() -> None:
    common, _, _ = _bench_modules()
    names = ["aiohttp", "modelplex", "litellm"]
    plan = common.round_schedule(names, [1, 50], 3)
    assert [(r, slot) for r, slot, _ in plan] == [(0, 1), (0, 50), (1, 1), (1, 50), (2, 1), (2, 50)]
    assert all(sorted(order) == sorted(names) for _, _, order in plan)  # everyone, once, in every slot
    for slot in (1, 50):  # per slot, over len(names) rounds, each client leads once
        assert sorted(order[0] for _, s, order in plan if s == slot) == sorted(names)
    assert plan[1][2][0] != plan[0][2][0]  # the next slot of the same round starts elsewhere
    assert common.round_schedule(names, [1], 0) == []


def test_median_index_takes_the_lower_middle_of_an_even_count() -> None:
    common, _, _ = _bench_modules()
    assert common.median_index([5.0, 1.0, 3.0]) == 2
    assert common.median_index([4.0, 1.0]) == 1
    assert common.median_index([2.0, 9.0, 1.0, 7.0]) == 0
    assert common.median_index([7.0]) == 0
    with pytest.raises(ValueError):
        common.median_index([])


def test_median_run_skips_rounds_not_measured() -> None:
    common, _, _ = _bench_modules()
    a, b, c = _run(100.0), _run(300.0), _run(200.0)
    assert common.median_run([a, b, c]) is c
    assert common.median_run([None, b, a]) is a
    assert common.median_run([None, None]) is None


def test_round_ratios_pair_runs_of_the_same_round() -> None:
    common, _, _ = _bench_modules()
    mp = [_run(100.0), _run(120.0), None, _run(50.0)]
    raw = [_run(200.0), _run(200.0), _run(200.0), _run(0.0)]
    assert common.round_ratios(mp, raw) == [0.5, 0.6]  # round 3 unmeasured, round 4 divides by zero
    assert common.round_ratios(mp, []) == []
    deltas = common.round_deltas([_run(1.0, p99=12.0), _run(1.0, p99=15.0)], [_run(1.0, p99=2.0), None],
                                 lambda x, y: x.p99_ms - y.p99_ms)
    assert deltas == [10.0]


def test_spread_reports_median_and_range() -> None:
    common, _, _ = _bench_modules()
    s = common.spread([0.6, 0.5, 0.7])
    assert (s.median, s.low, s.high, s.rounds) == (0.6, 0.5, 0.7, (0.6, 0.5, 0.7))
    assert s.describe() == "0.60x (0.50-0.70x over 3 rounds)"
    assert common.spread([0.4, 0.6]).median == pytest.approx(0.5)
    assert common.spread([0.61]).describe() == "0.61x (1 round)"
    assert common.spread([12.25, 8.0]).describe(unit="", digits=1) == "10.1 (8.0-12.2 over 2 rounds)"
    assert common.spread([]) is None
    assert json.loads(json.dumps(s.to_dict())) == {"median": 0.6, "min": 0.5, "max": 0.7, "rounds": [0.6, 0.5, 0.7]}


def test_library_comparisons_are_medians_of_per_round_ratios() -> None:
    _, lib, _ = _bench_modules()
    runs = {"aiohttp": {50: [_run(1000.0), _run(2000.0), _run(1500.0)]},
            "modelplex": {50: [_run(400.0), _run(1000.0), _run(600.0)]}}
    vs = lib.comparisons(runs, "aiohttp")
    assert vs["modelplex"][50].rounds == (0.4, 0.5, 0.4)
    assert vs["modelplex"][50].median == 0.4
    assert vs["aiohttp"][50].median == 1.0
    assert lib.comparisons(runs, "litellm") == {}


def test_gateway_overheads_are_per_round_differences_to_direct() -> None:
    _, _, gw = _bench_modules()
    runs = {"direct": {"json@50": [_run(9000.0, p99=2.0), _run(9000.0, p99=3.0)]},
            "modelplex": {"json@50": [_run(3000.0, p99=12.0), _run(3000.0, p99=9.0)]},
            "pass-through": {"json@50": [_run(6000.0), None]}}
    over = gw.overheads(runs, "p99_ms")
    assert "direct" not in over
    assert over["pass-through"]["json@50"].rounds == (8.0,)  # only its first round was measured
    assert over["modelplex"]["json@50"].rounds == (10.0, 6.0)
    assert over["modelplex"]["json@50"].median == 8.0
    assert gw.comparisons(runs, "pass-through")["modelplex"]["json@50"].rounds == (0.5,)
    plan = gw.Plan(rounds=2, seconds=2.0, warmup=1.0, conns=(10, 50))
    assert plan.slots() == [("json", 10), ("json", 50), ("stream", 10), ("stream", 50)]


# ------------------------------------------------------------------------------------------ library workers


def _fake_worker(tmp_path: Path, code: str) -> Any:
    _, lib, _ = _bench_modules()
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        popen = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=handle)
    return lib.Worker("fake", popen, log)


def test_worker_error_answer_is_raised_with_the_log_tail(tmp_path: Path) -> None:
    _, lib, _ = _bench_modules()
    w = _fake_worker(tmp_path, "import sys; sys.stderr.write('trace line\\n'); print('{\"error\": \"boom\"}')")
    with pytest.raises(lib.WorkerError, match=r"boom.*trace line"):
        w.read(timeout=60)
    w.stop(grace=5)


def test_worker_that_exits_silently_is_reported(tmp_path: Path) -> None:
    _, lib, _ = _bench_modules()
    w = _fake_worker(tmp_path, "import sys; sys.exit(3)")
    with pytest.raises(lib.WorkerError, match=r"exited \(status 3\)"):
        w.read(timeout=60)
    w.stop(grace=5)


def test_worker_that_does_not_answer_times_out(tmp_path: Path) -> None:
    _, lib, _ = _bench_modules()
    w = _fake_worker(tmp_path, "import sys; sys.stdin.read()")  # reads until its input closes, never answers
    with pytest.raises(lib.WorkerError, match="no answer within"):
        w.request({"concurrency": 1, "seconds": 1.0, "warmup": 0.0}, timeout=0.2)
    w.stop(grace=5)  # closing its input ends it
    assert w.popen.returncode == 0


def test_library_worker_protocol_over_loopback(tmp_path: Path) -> None:
    """A real aiohttp worker against a closed loopback port: ready, one run (every call an error, never
    throughput), then finish with its info; nothing is timed."""
    common, lib, _ = _bench_modules()
    url = f"http://127.0.0.1:{common.free_port()}"
    w = lib.Worker.start("aiohttp", sys.executable, url, tmp_path / "x.db", tmp_path)
    try:
        assert w.read(timeout=120)["client"] == "aiohttp"
        r = w.measure(1, 0.05, 0.0)
        assert r.requests == 0 and r.errors > 0 and r.first_error
        assert "aiohttp" in w.request({"cmd": "finish"}, timeout=60)
    finally:
        w.stop(grace=10)
    assert w.popen.returncode == 0
