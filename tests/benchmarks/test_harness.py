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
    assert sec["data"]["info"]["modelplex"]["records_stored"] > 0  # accounting really was on
    assert [t["value"] is not None for t in sec["targets"]] == [True, True, False]  # no LiteLLM: N/A


def check_gateway(sec: dict[str, Any]) -> None:
    results = sec["data"]["results"]
    assert set(results) >= {"direct", "pass-through", "modelplex"}, sec["notes"]
    for name in ("direct", "pass-through", "modelplex"):
        for mode in ("json@50", "stream@50"):
            assert results[name][mode]["requests"] > 0 and results[name][mode]["errors"] == 0, (name, mode)
    assert any(n.startswith("modelplex: auth: ") for n in sec["notes"])


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
