"""``modelplex usage report|simulate|export`` over a SQLite store with a known history."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelplex.accounting.records import UsageRecord
from modelplex.accounting.reports import read_export
from modelplex.accounting.sinks.sqlite import SQLiteSink
from modelplex.cli.main import app

D0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z
DAY = 86_400.0

CONFIG = """
providers:
  acme: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  - id: acme/cheap
    context_window: 128000
    max_output_tokens: 16000
    capabilities: [tool_calling, json_mode]
    pricing: {input_per_mtok: 0.1, output_per_mtok: 0.4, cached_input_per_mtok: 0.025}
  - id: acme/premium
    context_window: 200000
    max_output_tokens: 32000
    capabilities: [tool_calling, json_mode, reasoning]
    quality: 95
    pricing: {input_per_mtok: 3, output_per_mtok: 15}
tasks:
  summarize: {models: [acme/premium]}
  triage: {requirements: {min_context: 16000}}
strategies:
  frugal: {selection: economy, models: {summarize: acme/cheap}}
accounting:
  sink: sqlite
  path: DBPATH
"""

runner = CliRunner()


def history() -> list[UsageRecord]:
    out = []
    # day 1: three summaries on premium (400, 100, 250 ms), one failed triage
    for i, lat in enumerate([400.0, 100.0, 250.0]):
        out.append(UsageRecord(f"s{i}", ts=D0 + 3600 * (i + 1), task="summarize", strategy="balanced", user="ann",
                               model="acme/premium", provider="acme", input_tokens=10_000, cached_tokens=4_000,
                               output_tokens=1_000, cost_usd=0.045, latency_ms=lat))
    out.append(UsageRecord("t-fail", ts=D0 + 5 * 3600, task="triage", user="bo", success=False, latency_ms=30.0,
                           attempts=[{"target": "acme/cheap", "provider": "acme", "outcome": "error"}],
                           attempt_count=1))
    # day 2: two triages on premium (80, 120 ms)
    for i, lat in enumerate([80.0, 120.0]):
        out.append(UsageRecord(f"t{i}", ts=D0 + DAY + i, task="triage", strategy="balanced", user="bo",
                               model="acme/premium", provider="acme", input_tokens=2_000, output_tokens=500,
                               cost_usd=0.0135, latency_ms=lat))
    # day 3: outside the reporting window used below
    out.append(UsageRecord("late", ts=D0 + 2 * DAY + 5, task="triage", model="acme/cheap", provider="acme",
                           input_tokens=1_000, output_tokens=100, cost_usd=0.00014, latency_ms=10.0))
    return out


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPLEX_CONFIG", raising=False)
    monkeypatch.delenv("MODELPLEX_DB", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "usage.db"

    async def fill() -> None:
        sink = SQLiteSink(path)
        await sink.start()
        await sink.write_batch(history())
        await sink.close()

    asyncio.run(fill())
    return path


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "modelplex.yaml"
    path.write_text(CONFIG.replace("DBPATH", str(db)), encoding="utf-8")
    return path


def run(*args: str) -> Any:
    return runner.invoke(app, ["usage", *args])


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_report_json_figures(db: Path) -> None:
    rep = as_json(run("report", "--db", str(db), "--since", "2026-01-05", "--until", "2026-01-07", "--json"))
    assert rep["window"] == {"since": "2026-01-05T00:00:00+00:00", "until": "2026-01-07T00:00:00+00:00"}
    t = rep["totals"]
    assert (t["requests"], t["successes"], t["failures"]) == (6, 5, 1)
    assert (t["input_tokens"], t["output_tokens"], t["cached_tokens"]) == (34_000, 4_000, 12_000)
    assert t["cost_usd"] == 0.162
    assert t["avg_cost_usd"] == 0.027
    # successful latencies [80, 100, 120, 250, 400]: nearest-rank p50 = 3rd, p95 = 5th
    assert (t["p50_latency_ms"], t["p95_latency_ms"], t["avg_latency_ms"]) == (120.0, 400.0, 190.0)
    groups = {g["key"]: g for g in rep["groups"]}
    assert list(groups) == ["acme/premium", "acme/cheap"]
    premium = groups["acme/premium"]
    assert (premium["requests"], premium["cost_usd"], premium["cost_share"]) == (5, 0.162, 1.0)
    cheap = groups["acme/cheap"]  # the failed triage is charged to the model it last called
    assert (cheap["requests"], cheap["successes"], cheap["cost_usd"], cheap["p50_latency_ms"]) == (1, 0, 0.0, None)


def test_report_by_day_and_by_task_with_filters(db: Path) -> None:
    rep = as_json(run("report", "--db", str(db), "--since", "all", "--by", "day", "--json"))
    assert [(g["key"], g["requests"], g["cost_usd"]) for g in rep["groups"]] == [
        ("2026-01-05", 4, 0.135), ("2026-01-06", 2, 0.027), ("2026-01-07", 1, 0.00014)]
    rep = as_json(run("report", "--db", str(db), "--since", "all", "--by", "user", "--task", "triage", "--json"))
    assert rep["filters"] == {"task": "triage"}
    assert [(g["key"], g["requests"]) for g in rep["groups"]] == [("bo", 3), (None, 1)]
    assert rep["totals"]["requests"] == 4


def test_report_table_and_plot(db: Path, tmp_path: Path) -> None:
    png = tmp_path / "out" / "usage.png"
    result = run("report", "--db", str(db), "--since", "2026-01-05", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "acme/premium" in result.stdout and "total" in result.stdout and "$0.1621" in result.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert f"wrote {png}" in result.stderr


def test_report_reads_the_database_named_by_the_config(config: Path) -> None:
    rep = as_json(run("report", "--config", str(config), "--since", "all", "--json"))
    assert rep["totals"]["requests"] == 7


def test_simulate_json(db: Path, config: Path) -> None:
    res = as_json(run("simulate", "--db", str(db), "--config", str(config), "--strategy", "frugal",
                      "--since", "2026-01-05", "--until", "2026-01-07", "--provider", "acme", "--json"))
    assert res["strategy"] == "frugal" and res["providers"] == ["acme"] and res["requests"] == 6
    assert res["actual_cost_usd"] == 0.162
    # summaries on cheap: 6000*0.1 + 4000*0.025 + 1000*0.4 = 1100 µ$ each; triages: 2000*0.1 + 500*0.4 = 400 µ$
    assert res["simulated_cost_usd"] == 0.0041
    by = {e["task"]: e for e in res["by_task"]}
    assert (by["summarize"]["simulated_cost_usd"], by["triage"]["simulated_cost_usd"]) == (0.0033, 0.0008)
    assert by["triage"]["simulated_models"] == {"acme/cheap": 3}
    assert res["delta_usd"] == -0.1579


def test_simulate_table_states_assumptions(db: Path, config: Path) -> None:
    result = run("simulate", "--db", str(db), "--config", str(config), "-s", "frugal", "--since", "all",
                 "-p", "acme")
    assert result.exit_code == 0, result.output
    assert "Assumptions:" in result.stdout and "token counts" in result.stdout
    assert "summarize" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_round_trips(db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"usage.{fmt}"
    result = run("export", "--db", str(db), "--format", fmt, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "wrote 7 record(s)" in result.stderr

    async def stored() -> list[dict[str, Any]]:
        sink = SQLiteSink(db)
        await sink.start()
        try:
            return await sink.query(with_attempts=True)
        finally:
            await sink.close()

    rows = asyncio.run(stored())
    back = read_export(out, fmt)
    if fmt == "jsonl":
        assert back == rows
        assert back[3]["attempts"][0]["target"] == "acme/cheap"
    else:
        assert back == [{k: v for k, v in d.items() if k != "attempts"} for d in rows]


def test_export_window_to_stdout(db: Path) -> None:
    result = run("export", "--db", str(db), "--format", "jsonl", "--since", "2026-01-06", "--until", "2026-01-07")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["request_id"] for line in result.stdout.splitlines()] == ["t0", "t1"]


def test_errors(db: Path, tmp_path: Path) -> None:
    missing = run("report", "--db", str(tmp_path / "nope.db"))
    assert missing.exit_code == 1 and "no usage database" in missing.stderr
    assert not (tmp_path / "nope.db").exists()
    foreign = tmp_path / "other.db"
    foreign.write_bytes(b"")
    not_ours = run("report", "--db", str(foreign))
    assert not_ours.exit_code == 1 and "not a modelplex usage database" in not_ours.stderr
    text = tmp_path / "notes.db"
    text.write_text("hello, this is not sqlite at all" * 10, encoding="utf-8")
    garbage = run("export", "--db", str(text))
    assert garbage.exit_code == 1 and "not a SQLite database" in garbage.stderr
    bad_since = run("report", "--db", str(db), "--since", "yesterday-ish")
    assert bad_since.exit_code == 2 and "7d, 24h" in bad_since.stderr
    bad_by = run("report", "--db", str(db), "--by", "colour")
    assert bad_by.exit_code == 2
    backwards = run("report", "--db", str(db), "--since", "2026-01-07", "--until", "2026-01-05")
    assert backwards.exit_code == 2
    bad_fmt = run("export", "--db", str(db), "--format", "xml")
    assert bad_fmt.exit_code == 2
    memory_cfg = tmp_path / "mem.yaml"
    memory_cfg.write_text("accounting: {sink: memory}\n", encoding="utf-8")
    mem = run("report", "--config", str(memory_cfg))
    assert mem.exit_code == 1 and "no usage is stored" in mem.stderr
    unknown = run("simulate", "--db", str(db), "--strategy", "nope")
    assert unknown.exit_code == 1 and "unknown strategy" in unknown.stderr
    empty_plot = run("report", "--db", str(db), "--since", "2030-01-01", "--plot", str(tmp_path / "x.png"))
    assert empty_plot.exit_code == 1 and "nothing to plot" in empty_plot.stderr


def test_an_error_postgresql_reports_is_one_line_not_an_internal_error(capsys) -> None:
    import asyncpg
    import click
    import typer

    from modelplex.cli._common import handle_errors

    with pytest.raises((typer.Exit, click.exceptions.Exit, SystemExit)), handle_errors():
        raise asyncpg.InvalidCatalogNameError('database "no_such_db" does not exist')
    err = capsys.readouterr().err
    assert 'database: InvalidCatalogNameError: database "no_such_db" does not exist' in err
    assert "internal error" not in err


HOSTILE_USER = "\u001b]0;PWNED\u0007\u001b[31mred[bold]rich[/bold]"


def test_report_shows_stored_strings_as_text_never_as_terminal_codes_or_markup(tmp_path: Path) -> None:
    """A user, task, key id or model name comes from whoever called the gateway: a table prints it as
    text — control characters as escapes, Rich markup as typed — and cannot retitle or recolour the
    terminal."""
    path = tmp_path / "hostile.db"

    async def fill() -> None:
        sink = SQLiteSink(path)
        await sink.start()
        await sink.write_batch([UsageRecord("h1", ts=D0, user=HOSTILE_USER, task="t[bold]x\u001b[2J",
                                            api_key_id="k\u009b31m\u202e", model="acme/m[red]odel",
                                            provider="acme", input_tokens=10, output_tokens=5, cost_usd=0.01,
                                            latency_ms=5.0)])
        await sink.close()

    asyncio.run(fill())
    shown = {
        "user": r"\x1b]0;PWNED\x07\x1b[31mred[bold]rich[/bold]",
        "task": r"t[bold]x\x1b[2J",
        "api_key_id": r"k\x9b31m\u202e",
        "model": "acme/m[red]odel",
    }
    for by, text in shown.items():
        result = run("report", "--db", str(path), "--since", "all", "--by", by)
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert text in out, (by, out)
        assert not any(ch in out for ch in "\u001b\u0007\u009b\u202e"), (by, out)
    # the filter, echoed in the title, is shown the same way
    filtered = run("report", "--db", str(path), "--since", "all", "--user", HOSTILE_USER)
    assert filtered.exit_code == 0 and "\u001b" not in filtered.stdout
    assert r"user=\x1b]0;PWNED\x07" in filtered.stdout and "[bold]rich[/bold]" in filtered.stdout
    # JSON keeps the exact string (json escapes it), and escapes C1 controls and bidi overrides too
    rep = run("report", "--db", str(path), "--since", "all", "--by", "api_key_id", "--json")
    assert "\u009b" not in rep.stdout and "\\u009b" in rep.stdout and "\\u202e" in rep.stdout
    assert json.loads(rep.stdout)["groups"][0]["key"] == "k\u009b31m\u202e"


@pytest.mark.parametrize("name", ["cost.txt", "cost", "cost.png.bak"])
def test_report_plot_with_an_unknown_extension_is_a_usage_error(db: Path, tmp_path: Path, name: str) -> None:
    result = run("report", "--db", str(db), "--since", "all", "--plot", str(tmp_path / name))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'--plot'" in lines[0] and ".png, .svg, .pdf" in lines[0], lines
    assert "internal error" not in result.stderr
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name", ["cost.svg", "cost.PDF"])
def test_report_plot_writes_the_other_accepted_formats(db: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    result = run("report", "--db", str(db), "--since", "all", "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:5] in (b"<?xml", b"%PDF-")
