"""``modelplex usage report|simulate|export``: read the usage store.

Owns: the three commands, where they read from (``--db PATH`` for a SQLite file, else the
``accounting`` section of ``--config``/``$MODELPLEX_CONFIG``, else ``$MODELPLEX_DB`` or
``./modelplex.db``), their tables and their JSON. The JSON shapes are ``reports.build_report`` (report)
and ``reports.simulate`` (simulate), documented in docs/accounting.md.

Times: ``--since``/``--until`` take ``7d``, ``24h``, ``30m``, ``45s``, ``2w`` (before now), ``now``, an ISO
date (its midnight, UTC) or an ISO date-time; ``--since all`` reads everything; ``--until`` is exclusive.

Must not touch: the figures (``accounting.reports`` computes them), storage (``accounting.sinks``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelplex.cli._common import ConfigOption, JsonOption, console, emit_json, fail, fmt_int, usage_error

if TYPE_CHECKING:
    from modelplex.accounting.sinks.base import UsageSink

app = typer.Typer(help="Usage and cost records: reports, what-if re-pricing under another strategy, export.",
                  no_args_is_help=True, add_completion=False)

DbOption = Annotated[Path | None, typer.Option(
    "--db", metavar="PATH", dir_okay=False, show_default=False,
    help="A SQLite usage database (default: accounting section of --config, else $MODELPLEX_DB or ./modelplex.db).")]
SinceOption = Annotated[str, typer.Option(
    "--since", metavar="WHEN", help="Start of the window: 7d, 24h, 30m, an ISO date or date-time, or 'all'.")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", metavar="WHEN", show_default=False, help="End of the window (exclusive); default now.")]
TaskOption = Annotated[str | None, typer.Option("--task", show_default=False, help="Only this task's requests.")]
UserOption = Annotated[str | None, typer.Option("--user", show_default=False, help="Only this user's requests.")]

GROUPS = ("model", "provider", "task", "user", "api_key_id", "strategy", "kind", "day")
PLOT_FORMATS = (".png", ".svg", ".pdf")
"""The file extensions ``--plot`` writes (matplotlib picks the format from the extension)."""
WIDE = 118
"""Terminal width from which ``report`` also shows average cost and token columns."""


# ------------------------------------------------------------------------------------------ shared


def _window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    from modelplex.accounting.reports import parse_when

    now = time.time()
    try:
        start = None if since is None or since.strip().lower() == "all" else parse_when(since, now=now)
    except ValueError as exc:
        usage_error(str(exc), param_hint="'--since'")
    try:
        end = None if until is None else parse_when(until, now=now)
    except ValueError as exc:
        usage_error(str(exc), param_hint="'--until'")
    if start is not None and end is not None and end <= start:
        usage_error("--until must be later than --since", param_hint="'--until'")
    return start, end


def _check_sqlite_store(path: Path) -> None:
    """Fail unless ``path`` is an existing modelplex usage database (checked read-only)."""
    import sqlite3

    if not path.exists():
        fail(f"no usage database at {path} (set accounting.path or $MODELPLEX_DB, or pass --db)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_records'"
                                 ).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        fail(f"{path} is not a SQLite database ({exc})")
    if found is None:
        fail(f"{path} is not a modelplex usage database (it has no usage_records table)")


def open_sink(db: Path | None, config: Path | None) -> UsageSink:
    """The sink to read: ``--db``, else the config's ``accounting`` section. Never creates a database."""
    if db is not None:
        _check_sqlite_store(db)
        from modelplex.accounting.sinks.sqlite import SQLiteSink

        return SQLiteSink(db)
    from modelplex.accounting.sinks import make_sink, sqlite_path
    from modelplex.config import load_config

    acc = load_config(config).accounting
    if acc.sink in ("memory", "none"):
        fail(f"accounting.sink is {acc.sink}: no usage is stored between runs; pass --db PATH")
    if acc.sink == "sqlite":
        path = sqlite_path(acc)
        if path == ":memory:":
            fail("accounting.path is :memory:: no usage is stored between runs; pass --db PATH")
        _check_sqlite_store(Path(path))
    return make_sink(acc)


def fetch(sink: UsageSink, since: float | None, until: float | None, *, with_attempts: bool = False,
          **filters: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        await sink.start()
        try:
            return await sink.query(since, until, with_attempts=with_attempts, **filters)
        finally:
            await sink.close()

    return asyncio.run(run())


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    sign, value = ("-", -value) if value < 0 else ("", value)
    return sign + (f"${value:,.2f}" if value >= 1 else f"${value:.4g}")


def _compact(n: int) -> str:
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _key(value: Any) -> str:
    return "(none)" if value is None else str(value)


def _note(message: str) -> None:
    sys.stderr.write(message + "\n")


# ------------------------------------------------------------------------------------------ report


@app.command("report")
def report_command(
    since: SinceOption = "7d",
    until: UntilOption = None,
    by: Annotated[str, typer.Option("--by", help=f"Group by {'|'.join(GROUPS)}.")] = "model",
    task: TaskOption = None,
    user: UserOption = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE.png", dir_okay=False, show_default=False,
        help=f"Also write a chart of cost per day by group, and requests ({', '.join(PLOT_FORMATS)}).")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Totals, cost, tokens, success rate and latency (p50/p95) per group over a time window."""
    from modelplex.accounting.reports import build_report, plot_report

    if by not in GROUPS:
        usage_error(f"expected one of {', '.join(GROUPS)}, got {by!r}", param_hint="'--by'")
    if plot is not None and plot.suffix.lower() not in PLOT_FORMATS:
        usage_error(f"expected a file ending in {', '.join(PLOT_FORMATS)}, got {str(plot)!r}", param_hint="'--plot'")
    start, end = _window(since, until)
    filters = {"task": task, "user": user}
    rows = fetch(open_sink(db, config), start, end, **filters)
    report = build_report(rows, by=by, since=start, until=end, filters=filters)
    if plot is not None:
        if not rows:
            fail("no usage records in the window: nothing to plot")
        plot_report(rows, plot, by=by)
        _note(f"wrote {plot}")
    if as_json:
        emit_json(report)
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    t = report["totals"]
    w = report["window"]
    span = f"{w['since'] or 'the beginning'} → {w['until'] or 'now'}"
    title = (f"Usage by {report['by']}, {span}: {fmt_int(t['requests'])} requests, {_usd(t['cost_usd'])}"
             + (f" ({', '.join(f'{k}={v}' for k, v in report['filters'].items())})" if report["filters"] else ""))
    out = console()
    wide = out.width >= WIDE  # narrow terminals get the essential columns only
    table = Table(title=title, title_justify="left")
    table.add_column(report["by"], overflow="fold")
    names = ["requests", "ok", "cost", "share"] + (["avg cost", "in tok", "out tok"] if wide else []) + [
        "p50 ms", "p95 ms"]
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)

    def row(label: str, g: dict[str, Any], share: str, style: str | None = None) -> None:
        cells = [label, fmt_int(g["requests"]), _pct(g["success_rate"]), _usd(g["cost_usd"]), share]
        if wide:
            cells += [_usd(g["avg_cost_usd"]), _compact(g["input_tokens"]), _compact(g["output_tokens"])]
        table.add_row(*cells, _ms(g["p50_latency_ms"]), _ms(g["p95_latency_ms"]), style=style)

    for g in report["groups"]:
        row(_key(g["key"]), g, _pct(g["cost_share"]))
    if report["groups"]:
        table.add_section()
    row("total", t, "100%" if t["cost_usd"] else "—", style="bold")
    out.print(table)


# ------------------------------------------------------------------------------------------ simulate


@app.command("simulate")
def simulate_command(
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="Strategy to re-price the traffic under.")],
    since: SinceOption = "7d",
    until: UntilOption = None,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", "-p", show_default=False,
        help="Providers the strategy may pick from (repeatable or comma-separated). Default: every hosted "
             "provider, plus those the config enables and those the traffic used.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-price recorded requests as if STRATEGY had picked their models (same token counts)."""
    from modelplex.accounting.reports import default_providers, simulate
    from modelplex.cli._common import load_catalog_for, split_values
    from modelplex.config import load_config

    start, end = _window(since, until)
    cfg = load_config(config)
    catalog = load_catalog_for(config)
    named = split_values(provider)
    for name in named:
        if catalog.find_provider(name) is None:
            usage_error(f"unknown provider {name!r}", param_hint="'--provider'")
    rows = fetch(open_sink(db, config), start, end)
    providers = named or default_providers(catalog, cfg, rows)
    result = simulate(rows, strategy, catalog=catalog, config=cfg, since=start, until=end, providers=providers)
    if as_json:
        emit_json(result)
        return
    _print_simulation(result)


def _models(counts: dict[str, int]) -> str:
    items = list(counts.items())
    text = "\n".join(f"{m} ×{n}" for m, n in items[:3])
    return text + (f"\n+{len(items) - 3} more" if len(items) > 3 else "")


def _print_simulation(result: dict[str, Any]) -> None:
    from rich.table import Table

    w = result["window"]
    out = console()
    wide = out.width >= WIDE  # narrow terminals leave out the recorded models
    table = Table(title=f"Strategy {result['strategy']} vs recorded, {w['since'] or 'the beginning'} → "
                        f"{w['until'] or 'now'}: {fmt_int(result['requests'])} requests", title_justify="left")
    table.add_column("task", overflow="fold", min_width=10)
    for name in ("requests", "actual", "simulated", "Δ"):
        table.add_column(name, justify="right", no_wrap=True)
    if wide:
        table.add_column("actual models", overflow="fold")
    table.add_column("simulated models", overflow="fold")
    for e in result["by_task"]:
        models = [_models(e["actual_models"])] if wide else []
        table.add_row(_key(e["task"]), fmt_int(e["requests"]), _usd(e["actual_cost_usd"]),
                      _usd(e["simulated_cost_usd"]), _usd(e["delta_usd"]), *models, _models(e["simulated_models"]))
    if result["by_task"]:
        table.add_section()
    pct = "" if result["delta_pct"] is None else f" ({result['delta_pct']:+.1f}%)"
    table.add_row("total", fmt_int(result["requests"]), _usd(result["actual_cost_usd"]),
                  _usd(result["simulated_cost_usd"]), _usd(result["delta_usd"]) + pct, *([""] * (2 if wide else 1)),
                  style="bold")
    out.print(table)
    if result["unplanned"]["requests"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in result["unplanned"]["reasons"].items())
        out.print(f"{result['unplanned']['requests']} request(s) could not be planned and keep their cost: {reasons}")
    out.print("Assumptions:")
    for a in result["assumptions"]:
        out.print(f"  - {a}")


# ------------------------------------------------------------------------------------------ export


@app.command("export")
def export_command(
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or jsonl (jsonl keeps each request's attempts).")
                   ] = "csv",
    since: Annotated[str, typer.Option("--since", metavar="WHEN", help="Start of the window, or 'all'.")] = "all",
    until: UntilOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", dir_okay=False,
                                                show_default=False, help="Write here instead of stdout.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Export usage records as CSV or JSON lines."""
    from modelplex.accounting.reports import export_rows

    if fmt not in ("csv", "jsonl"):
        usage_error(f"expected csv or jsonl, got {fmt!r}", param_hint="'--format'")
    start, end = _window(since, until)
    rows = fetch(open_sink(db, config), start, end, with_attempts=fmt == "jsonl")
    if output is None:
        export_rows(rows, fmt, sys.stdout)
        sys.stdout.flush()
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8", newline="") as fh:
        n = export_rows(rows, fmt, fh)
    _note(f"wrote {n} record(s) to {output}")
