"""Usage reports: exact figures from a known history, re-pricing, export round trips, the plot."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest

from modelplex.accounting.records import UsageRecord
from modelplex.accounting.reports import (
    EXPORT_COLUMNS,
    build_report,
    default_providers,
    export_rows,
    parse_when,
    plot_report,
    read_export,
    simulate,
)
from modelplex.accounting.sinks import MemorySink
from modelplex.accounting.sinks.base import record_dict
from modelplex.catalog import bundled_catalog
from modelplex.config import load_config
from modelplex.errors import ConfigError

D0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
DAY = 86_400.0

CONFIG = {
    "providers": {"acme": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}},
    "models": [
        {"id": "acme/cheap", "context_window": 128000, "max_output_tokens": 16000,
         "capabilities": ["tool_calling", "json_mode"], "quality": 60,
         "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.4, "cached_input_per_mtok": 0.025}},
        {"id": "acme/premium", "context_window": 200000, "max_output_tokens": 32000,
         "capabilities": ["tool_calling", "json_mode", "reasoning"], "quality": 95,
         "pricing": {"input_per_mtok": 3, "output_per_mtok": 15}},
    ],
    "tasks": {"summarize": {"models": ["acme/premium"]}, "triage": {"requirements": {"min_context": 16000}}},
    "strategies": {"frugal": {"selection": "economy", "models": {"summarize": "acme/cheap"}}},
}


def catalog_and_config() -> tuple[Any, Any]:
    cfg = load_config(CONFIG)
    overlay = cfg.catalog_overlay()
    cat = bundled_catalog().with_overlay(overlay["models"], [{"name": k, **v} for k, v in overlay["providers"].items()])
    return cat, cfg


def latency_history() -> list[dict[str, Any]]:
    """Model A: five successes (100..500 ms, $0.001 each) and one failure; model B: two ($0.01 each)."""
    recs = [UsageRecord(f"a{i}", ts=D0 + i * 3600, model="openai/a", provider="openai", task="fast", user="u1",
                        input_tokens=100, output_tokens=10, cached_tokens=5, cost_usd=0.001,
                        latency_ms=float(lat)) for i, lat in enumerate([300, 100, 500, 200, 400])]
    recs.append(UsageRecord("a-fail", ts=D0 + DAY, task="fast", user="u2", success=False, latency_ms=9000.0,
                            attempts=[{"target": "openai/a", "provider": "openai", "outcome": "error"}],
                            attempt_count=1))
    recs += [UsageRecord(f"b{i}", ts=D0 + DAY + i, model="anthropic/b", provider="anthropic", task="reasoning",
                         user="u1", input_tokens=1000, output_tokens=200, reasoning_tokens=50, cost_usd=0.01,
                         latency_ms=float(lat), fallback_used=i == 0) for i, lat in enumerate([60, 50])]
    return [record_dict(r) for r in recs]


def test_parse_when() -> None:
    now = D0 + 10 * DAY
    assert parse_when("7d", now=now) == now - 7 * DAY
    assert parse_when("24h", now=now) == now - DAY
    assert parse_when("30m", now=now) == now - 1800
    assert parse_when("45s", now=now) == now - 45
    assert parse_when("2w", now=now) == now - 14 * DAY
    assert parse_when("now", now=now) == now
    assert parse_when("2026-01-05", now=now) == D0
    assert parse_when("2026-01-05T10:00:00Z", now=now) == D0 + 36_000
    assert parse_when("2026-01-05T10:00:00", now=now) == D0 + 36_000  # naive means UTC
    assert parse_when("2026-01-05T10:00:00+02:00", now=now) == D0 + 28_800
    with pytest.raises(ValueError, match="7d, 24h"):
        parse_when("last tuesday", now=now)


def test_report_figures_are_exact() -> None:
    rep = build_report(latency_history(), by="model", since=D0, until=D0 + 2 * DAY)
    assert rep["window"] == {"since": "2026-01-05T00:00:00+00:00", "until": "2026-01-07T00:00:00+00:00"}
    t = rep["totals"]
    assert (t["requests"], t["successes"], t["failures"], t["fallbacks"]) == (8, 7, 1, 1)
    assert (t["input_tokens"], t["output_tokens"], t["cached_tokens"], t["reasoning_tokens"], t["total_tokens"]) == (
        2500, 450, 25, 100, 2950)
    assert t["cost_usd"] == 0.025 and t["avg_cost_usd"] == 0.003125
    assert t["success_rate"] == 0.875
    # nearest rank over the 7 successful latencies [50, 60, 100, 200, 300, 400, 500]
    assert (t["p50_latency_ms"], t["p95_latency_ms"]) == (200.0, 500.0)
    assert t["avg_latency_ms"] == pytest.approx(230.0, abs=1e-3)
    b, a = rep["groups"]  # costliest first
    assert (b["key"], b["requests"], b["cost_usd"], b["cost_share"]) == ("anthropic/b", 2, 0.02, 0.8)
    assert (b["p50_latency_ms"], b["p95_latency_ms"]) == (50.0, 60.0)
    assert (a["key"], a["requests"], a["successes"], a["cost_usd"], a["cost_share"]) == ("openai/a", 6, 5, 0.005, 0.2)
    assert (a["p50_latency_ms"], a["p95_latency_ms"], a["avg_latency_ms"]) == (300.0, 500.0, 300.0)
    assert a["success_rate"] == pytest.approx(5 / 6, abs=1e-6)


def test_report_by_day_user_and_task() -> None:
    rows = latency_history()
    days = build_report(rows, by="day")["groups"]
    assert [(g["key"], g["requests"], g["cost_usd"]) for g in days] == [("2026-01-05", 5, 0.005),
                                                                          ("2026-01-06", 3, 0.02)]
    users = build_report(rows, by="user")["groups"]
    assert [(g["key"], g["requests"]) for g in users] == [("u1", 7), ("u2", 1)]
    tasks = build_report(rows, by="task")["groups"]
    assert [(g["key"], g["cost_usd"]) for g in tasks] == [("reasoning", 0.02), ("fast", 0.005)]
    empty = build_report([], by="model")
    assert empty["totals"]["requests"] == 0 and empty["groups"] == [] and empty["totals"]["p50_latency_ms"] is None
    with pytest.raises(ValueError, match="unknown grouping"):
        build_report(rows, by="colour")


def pricing_history() -> list[dict[str, Any]]:
    recs = [
        UsageRecord("s1", ts=D0, task="summarize", model="acme/premium", provider="acme", input_tokens=10_000,
                    cached_tokens=4_000, output_tokens=1_000, cost_usd=0.045),
        UsageRecord("s2", ts=D0 + 1, task="triage", model="acme/premium", provider="acme", input_tokens=2_000,
                    output_tokens=500, cost_usd=0.0135),
        UsageRecord("s3", ts=D0 + 2, task="triage", success=False, cost_usd=0.0),
        UsageRecord("s4", ts=D0 + 3, model="acme/cheap", provider="acme", input_tokens=1_000, output_tokens=100,
                    cost_usd=0.00014),
        UsageRecord("s5", ts=D0 + 4, task="ghost", model="acme/cheap", provider="acme", cost_usd=0.002),
    ]
    return [record_dict(r) for r in recs]


def test_simulate_reprices_exactly() -> None:
    catalog, cfg = catalog_and_config()
    res = simulate(pricing_history(), "frugal", catalog=catalog, config=cfg, providers=["acme"])
    assert res["strategy"] == "frugal" and res["providers"] == ["acme"] and res["requests"] == 5
    assert res["actual_cost_usd"] == 0.06064
    # s1 on cheap: 6000*0.1 + 4000*0.025 (cached) + 1000*0.4 = 1100 µ$; s2: 2000*0.1 + 500*0.4 = 400 µ$;
    # s3 failed (kept: 0); s4 is auto -> cheap (unchanged 140 µ$); s5's task is unknown (kept: 2000 µ$)
    assert res["simulated_cost_usd"] == 0.00364
    assert res["delta_usd"] == -0.057
    assert res["delta_pct"] == pytest.approx(-93.9974, abs=1e-4)
    by = {e["task"]: e for e in res["by_task"]}
    assert by["summarize"]["simulated_cost_usd"] == 0.0011 and by["summarize"]["simulated_models"] == {"acme/cheap": 1}
    assert by["summarize"]["actual_models"] == {"acme/premium": 1}
    assert by["triage"]["requests"] == 2 and by["triage"]["simulated_cost_usd"] == 0.0004
    assert by[None]["simulated_models"] == {"acme/cheap": 1}
    assert res["unplanned"]["requests"] == 1 and res["unplanned"]["cost_usd"] == 0.002
    assert "ghost" in res["unplanned"]["reasons"]["ghost"]
    assert any("cached input" in a for a in res["assumptions"])
    assert [e["task"] for e in res["by_task"]] == ["summarize", "triage", "ghost", None]  # by actual cost

    quality = simulate(pricing_history(), "quality", catalog=catalog, config=cfg, providers=["acme"])
    assert quality["strategy"] == "quality_optimized"
    # summarize keeps its list (premium); s4 moves to premium: 1000*3 + 100*15 = 4500 µ$
    assert quality["simulated_cost_usd"] == pytest.approx(0.045 + 0.0135 + 0.0045 + 0.002)
    with pytest.raises(ConfigError, match="unknown strategy"):
        simulate(pricing_history(), "nope", catalog=catalog, config=cfg)


def test_default_providers_skip_unused_local_servers() -> None:
    catalog, cfg = catalog_and_config()
    names = default_providers(catalog, cfg, pricing_history())
    assert "acme" in names and "openai" in names and "anthropic" in names
    assert "ollama" not in names and "vllm" not in names
    used_local = [{"attributed_provider": "ollama", "provider": "ollama"}]
    assert "ollama" in default_providers(catalog, None, used_local)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_export_round_trips(fmt: str) -> None:
    sink = MemorySink()
    recs = [UsageRecord("e1", ts=D0 + 0.125, task="fast", user="u", tags=["a", "b,c"], model="acme/cheap",
                        provider="acme", input_tokens=3, output_tokens=4, cost_usd=1e-7, latency_ms=12.5,
                        ttft_ms=3.25, selection_reason='says "hi", then\nleaves',
                        attempts=[{"target": "acme/cheap", "provider": "acme", "outcome": "success",
                                   "error_type": None, "status_code": None, "latency_ms": 12.0, "retry": 0,
                                   "detail": None}], attempt_count=1),
            UsageRecord("e2", ts=D0 + 1, success=False, error_type="timeout", usage_estimated=True,
                        provider_cost_usd=0.5)]
    await sink.write_batch(recs)
    await sink.add_feedback("e1", 0.75, "ok", D0)
    rows = await sink.query(with_attempts=True)
    buf = io.StringIO()
    assert export_rows(rows, fmt, buf) == 2
    buf.seek(0)
    back = read_export(buf, fmt)
    if fmt == "jsonl":
        assert back == rows
    else:
        assert back == [{k: d[k] for k in EXPORT_COLUMNS} for d in rows]
        assert buf.getvalue().splitlines()[0].split(",")[:3] == ["request_id", "ts", "kind"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_readable_png(tmp_path: Path) -> None:
    rows = latency_history()
    out = plot_report(rows, tmp_path / "plots" / "usage.png", by="model")
    assert out.exists() and out.stat().st_size > 20_000
    width, height = png_size(out)
    assert (width, height) == (1210, 825)
    by_day = plot_report(rows, tmp_path / "by_day.png", by="day", top=1)  # one named model + "other"
    assert png_size(by_day) == (1210, 825)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_report([], tmp_path / "empty.png")
