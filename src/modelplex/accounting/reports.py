"""Usage reports over stored records: totals per group, what-if re-pricing, export, plots.

Owns: ``parse_when`` (``7d``/``24h``/``30m``/``45s``/``2w``, ISO dates and times), ``build_report``
(totals and per-group figures, the JSON of ``modelplex usage report``), ``simulate`` (re-price
recorded traffic under another strategy's model choices), ``export_rows``/``read_export`` (CSV
and JSONL that round-trip) and ``plot_report`` (a PNG: cost per day stacked by group, and
requests per day; matplotlib imported on use, Agg canvas, no pyplot global state).

Figures (docs/accounting.md): a request counts for the model it is charged to
(``sinks.base.attribution``); ``avg_cost_usd`` = cost / requests; latency figures cover
successful requests and percentiles are nearest-rank (``performance.percentile``); days are UTC.

Must not touch: storage (reports read rows a sink returned), the CLI (``cli.usage`` prints these).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from modelplex.accounting.performance import percentile
from modelplex.accounting.sinks.base import RECORD_FIELDS, day_of, group_value, sort_key

if TYPE_CHECKING:
    from modelplex.catalog.store import Catalog
    from modelplex.config import Config

REPORT_GROUPS = ("model", "provider", "task", "user", "api_key_id", "strategy", "kind", "day")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


# ------------------------------------------------------------------------------------------ time


def parse_when(text: str, *, now: float) -> float:
    """Epoch seconds for ``7d``/``24h``/``30m``/``45s``/``2w`` (that long before ``now``), ``now``,
    an ISO date (its midnight, UTC) or an ISO date-time (UTC unless it names an offset).
    Raises ``ValueError`` with the accepted forms."""
    t = text.strip()
    m = _DURATION.match(t)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2).lower()]
    if t.lower() == "now":
        return now
    try:
        if len(t) == 10:
            d = dt.date.fromisoformat(t)
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: use a duration such as 7d, 24h, 30m, 45s or 2w, "
                         "an ISO date (2026-01-05) or an ISO date-time (2026-01-05T10:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


# ------------------------------------------------------------------------------------------ report


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of one group of record dicts (also the ``totals``)."""
    n = len(rows)
    ok = [d for d in rows if d["success"]]
    lat = sorted(float(d["latency_ms"]) for d in ok)
    cost = sum(float(d["cost_usd"]) for d in rows)
    inp = sum(int(d["input_tokens"]) for d in rows)
    out = sum(int(d["output_tokens"]) for d in rows)
    return {
        "requests": n,
        "successes": len(ok),
        "failures": n - len(ok),
        "success_rate": _r(len(ok) / n, 6) if n else None,
        "fallbacks": sum(1 for d in rows if d["fallback_used"]),
        "input_tokens": inp,
        "output_tokens": out,
        "cached_tokens": sum(int(d["cached_tokens"]) for d in rows),
        "reasoning_tokens": sum(int(d["reasoning_tokens"]) for d in rows),
        "total_tokens": inp + out,
        "cost_usd": round(cost, 9),
        "avg_cost_usd": round(cost / n, 9) if n else None,
        "avg_latency_ms": _r(sum(lat) / len(lat), 3) if lat else None,
        "p50_latency_ms": percentile(lat, 50),
        "p95_latency_ms": percentile(lat, 95),
    }


def build_report(rows: Iterable[Mapping[str, Any]], *, by: str = "model", since: float | None = None,
                 until: float | None = None, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"window": {"since", "until"}, "by", "filters", "totals": {...}, "groups": [{"key", ...}]}``.

    Groups are sorted by cost (highest first, then key), or chronologically for ``by="day"``; each
    carries ``cost_share`` (its part of the total cost, 0..1)."""
    if by not in REPORT_GROUPS:
        raise ValueError(f"unknown grouping {by!r}; expected one of {', '.join(REPORT_GROUPS)}")
    data = list(rows)
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for d in data:
        groups.setdefault(group_value(d, by), []).append(d)
    totals = figures(data)
    out = []
    for key, members in groups.items():
        g = {"key": key, **figures(members)}
        g["cost_share"] = round(g["cost_usd"] / totals["cost_usd"], 6) if totals["cost_usd"] else None
        out.append(g)
    if by == "day":
        out.sort(key=lambda g: g["key"])
    else:
        out.sort(key=lambda g: (-g["cost_usd"], sort_key(g["key"])))
    return {
        "window": {"since": iso(since), "until": iso(until)},
        "by": by,
        "filters": {k: v for k, v in (filters or {}).items() if v is not None},
        "totals": totals,
        "groups": out,
    }


# ------------------------------------------------------------------------------------------ simulate

SIMULATION_ASSUMPTIONS = (
    "each request keeps its recorded token counts (input, output, cached, cache-write, reasoning) on the "
    "simulated model",
    "each request succeeds or fails as it did; failed requests keep their recorded cost",
    "cached input is priced at the model's cached-input price where it has one, else as input; reasoning "
    "tokens at its reasoning price, else as output (Catalog.cost)",
    "the simulated model is the first target the planner picks for the request's task under the strategy, "
    "with the listed providers treated as configured, no environment overrides and no complexity "
    "escalation (message counts are not recorded); requests without a task are planned as 'auto' "
    "(embeddings as the 'embedding' task)",
    "requests whose task cannot be planned (unknown task, no candidates) keep their recorded model and cost",
)


def default_providers(catalog: Catalog, config: Config | None, rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The providers a simulation may pick from when none are named: every hosted provider in the
    catalog (one that takes a key), every provider the config enables, and every provider the
    recorded traffic used. Local servers (Ollama, vLLM: free, so a cost-first strategy would always
    pick them) count only when configured or used."""
    names = {p.name for p in catalog.providers() if p.requires_key}
    if config is not None:
        names |= {name for name, ps in config.providers.items() if ps.enabled}
    names |= {d.get("attributed_provider") or d.get("provider") for d in rows} - {None}
    return sorted(n for n in names if catalog.find_provider(n) is not None)


def simulate(rows: Iterable[Mapping[str, Any]], strategy: str, *, catalog: Catalog,
             config: Config | None = None, since: float | None = None, until: float | None = None,
             providers: Iterable[str] | None = None) -> dict[str, Any]:
    """Re-price recorded requests as if ``strategy`` had chosen their models.

    ``providers`` is what the planner may pick from (default: every provider in the catalog).
    Returns ``{"strategy", "window", "providers", "requests", "actual_cost_usd", "simulated_cost_usd",
    "delta_usd", "delta_pct", "by_task": [...], "unplanned": {...}, "assumptions": [...]}``; each
    ``by_task`` entry has ``task``, ``requests``, ``actual_cost_usd``, ``simulated_cost_usd``,
    ``delta_usd``, ``actual_models`` and ``simulated_models`` (model -> requests)."""
    from modelplex.config import Config as _Config
    from modelplex.errors import ModelplexError
    from modelplex.policy.planner import Planner
    from modelplex.policy.strategies import resolve_strategy_name
    from modelplex.selection import Selector
    from modelplex.types import Requirements

    cfg = config if config is not None else _Config()
    every = frozenset(providers) if providers is not None else frozenset(p.name for p in catalog.providers())
    planner = Planner(cfg, catalog, Selector(catalog), lambda: every, env={})
    name = resolve_strategy_name(strategy, planner.strategies)
    choice: dict[tuple[Any, Any], tuple[Any, str | None]] = {}

    def choose(task: str | None, kind: str) -> tuple[Any, str | None]:
        key = (task, kind)
        if key not in choice:
            plan_task = task if task is not None else ("embedding" if kind == "embedding" else None)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if plan_task is not None:
                        plan = planner.plan(task=plan_task, strategy=name, request_id="simulate")
                    else:
                        plan = planner.plan(requirements=Requirements(), strategy=name, request_id="simulate")
                choice[key] = (plan.targets[0], None) if plan.targets else (None, "the plan has no target")
            except ModelplexError as exc:
                choice[key] = (None, str(exc))
        return choice[key]

    tasks: dict[Any, dict[str, Any]] = {}
    unplanned: dict[str, Any] = {"requests": 0, "cost_usd": 0.0, "reasons": {}}
    n = 0
    actual_total = simulated_total = 0.0
    for d in rows:
        n += 1
        actual = float(d["cost_usd"])
        spec, why = choose(d["task"], d["kind"])
        entry = tasks.setdefault(d["task"], {"task": d["task"], "requests": 0, "actual_cost_usd": 0.0,
                                             "simulated_cost_usd": 0.0, "actual_models": Counter(),
                                             "simulated_models": Counter()})
        entry["requests"] += 1
        entry["actual_models"][d.get("attributed_model") or d.get("model") or "(none)"] += 1
        if spec is None:
            simulated = actual
            unplanned["requests"] += 1
            unplanned["cost_usd"] += actual
            unplanned["reasons"][str(d["task"] if d["task"] is not None else d["kind"])] = why
            entry["simulated_models"]["(unchanged)"] += 1
        elif not d["success"]:
            simulated = actual
            entry["simulated_models"][spec.id] += 1
        else:
            simulated = catalog.cost(spec, int(d["input_tokens"]), int(d["output_tokens"]),
                                     cached_tokens=int(d["cached_tokens"]),
                                     reasoning_tokens=int(d["reasoning_tokens"]),
                                     cache_write_tokens=int(d["cache_write_tokens"])).total_usd
            entry["simulated_models"][spec.id] += 1
        entry["actual_cost_usd"] += actual
        entry["simulated_cost_usd"] += simulated
        actual_total += actual
        simulated_total += simulated
    by_task = []
    for entry in sorted(tasks.values(), key=lambda e: (-e["actual_cost_usd"], sort_key(e["task"]))):
        entry["actual_cost_usd"] = round(entry["actual_cost_usd"], 9)
        entry["simulated_cost_usd"] = round(entry["simulated_cost_usd"], 9)
        entry["delta_usd"] = round(entry["simulated_cost_usd"] - entry["actual_cost_usd"], 9)
        entry["actual_models"] = dict(entry["actual_models"].most_common())
        entry["simulated_models"] = dict(entry["simulated_models"].most_common())
        by_task.append(entry)
    unplanned["cost_usd"] = round(unplanned["cost_usd"], 9)
    delta = simulated_total - actual_total
    return {
        "strategy": name,
        "window": {"since": iso(since), "until": iso(until)},
        "providers": sorted(every),
        "requests": n,
        "actual_cost_usd": round(actual_total, 9),
        "simulated_cost_usd": round(simulated_total, 9),
        "delta_usd": round(delta, 9),
        "delta_pct": round(delta / actual_total * 100, 4) if actual_total else None,
        "by_task": by_task,
        "unplanned": unplanned,
        "assumptions": list(SIMULATION_ASSUMPTIONS),
    }


# ------------------------------------------------------------------------------------------ export

EXPORT_COLUMNS: tuple[str, ...] = (
    *(f for f in RECORD_FIELDS if f != "attempts"), "feedback_comment", "attributed_model", "attributed_provider")
"""CSV columns: every record field but ``attempts`` (JSONL keeps them), plus the stored extras."""

_INT = frozenset({"attempt_count", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
                  "reasoning_tokens"})
_FLOAT = frozenset({"ts", "cost_usd", "latency_ms"})
_OPT_FLOAT = frozenset({"provider_cost_usd", "ttft_ms", "quality_score"})
_BOOL = frozenset({"fallback_used", "usage_estimated", "success"})
_STR = frozenset({"kind", "selection_reason"})
_JSON = frozenset({"tags"})


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _BOOL:
        return "true" if value else "false"
    if name in _JSON:
        return orjson.dumps(value).decode()
    return repr(value) if isinstance(value, float) else str(value)


def _csv_value(name: str, text: str) -> Any:
    if name in _INT:
        return int(text)
    if name in _FLOAT:
        return float(text)
    if name in _OPT_FLOAT:
        return float(text) if text != "" else None
    if name in _BOOL:
        return text.strip().lower() == "true"
    if name in _JSON:
        return orjson.loads(text) if text else []
    if name in _STR:
        return text
    return text if text != "" else None


def export_rows(rows: Iterable[Mapping[str, Any]], fmt: str, out: TextIO) -> int:
    """Write record dicts as ``csv`` (``EXPORT_COLUMNS``, a header row) or ``jsonl`` (one full dict per
    line, attempts included). Returns the number of records written."""
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(EXPORT_COLUMNS)
        for d in rows:
            w.writerow([_csv_cell(c, d.get(c)) for c in EXPORT_COLUMNS])
            n += 1
        return n
    if fmt == "jsonl":
        for d in rows:
            out.write(orjson.dumps(dict(d)).decode() + "\n")
            n += 1
        return n
    raise ValueError(f"unknown export format {fmt!r}; expected csv or jsonl")


def read_export(source: str | Path | TextIO, fmt: str) -> list[dict[str, Any]]:
    """Read back what ``export_rows`` wrote, with the original types."""
    text = Path(source).read_text(encoding="utf-8") if isinstance(source, (str, Path)) else source.read()
    if fmt == "jsonl":
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        return [{k: _csv_value(k, v) for k, v in row.items()} for row in reader]
    raise ValueError(f"unknown export format {fmt!r}; expected csv or jsonl")


# ------------------------------------------------------------------------------------------ plot


def _day_range(first: str, last: str) -> list[str]:
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def plot_report(rows: Iterable[Mapping[str, Any]], path: str | Path, *, by: str = "model", top: int = 8,
                title: str | None = None) -> Path:
    """Write a PNG: cost per UTC day stacked by group (``by``; ``model`` when ``by`` is ``day``), the
    ``top`` costliest groups named and the rest as ``other``; below, requests per day, same colours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    group_by = "model" if by == "day" else by
    data = list(rows)
    if not data:
        raise ValueError("no usage records in the window: nothing to plot")
    cost_by_group: Counter[Any] = Counter()
    for d in data:
        cost_by_group[group_value(d, group_by)] += float(d["cost_usd"])
    ranked = sorted(cost_by_group, key=lambda k: (-cost_by_group[k], sort_key(k)))
    named = ranked[:top]
    labels = [("(none)" if k is None else str(k)) for k in named] + (["other"] if len(ranked) > top else [])
    index = {k: i for i, k in enumerate(named)}
    days = _day_range(min(day_of(d["ts"]) for d in data), max(day_of(d["ts"]) for d in data))
    day_index = {day: i for i, day in enumerate(days)}
    cost = [[0.0] * len(days) for _ in labels]
    reqs = [[0] * len(days) for _ in labels]
    for d in data:
        gi = index.get(group_value(d, group_by), len(labels) - 1)
        di = day_index[day_of(d["ts"])]
        cost[gi][di] += float(d["cost_usd"])
        reqs[gi][di] += 1

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_cost, ax_req = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    x = list(range(len(days)))
    cmap = _palette(len(labels))
    bottom_c = [0.0] * len(days)
    bottom_r = [0] * len(days)
    for i, label in enumerate(labels):
        ax_cost.bar(x, cost[i], bottom=bottom_c, label=label, color=cmap[i], width=0.8)
        ax_req.bar(x, reqs[i], bottom=bottom_r, color=cmap[i], width=0.8)
        bottom_c = [a + b for a, b in zip(bottom_c, cost[i], strict=True)]
        bottom_r = [a + b for a, b in zip(bottom_r, reqs[i], strict=True)]
    from matplotlib.ticker import FuncFormatter

    total = sum(bottom_c)
    money = f"${total:,.2f}" if total >= 1 else f"${total:.4g}"
    ax_cost.set_title(title or f"Usage cost per day by {group_by} — {days[0]} to {days[-1]} (UTC), "
                               f"total {money}, {len(data):,} requests")
    ax_cost.set_ylabel("cost (USD)")
    ax_cost.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:,.4g}"))
    ax_cost.grid(axis="y", alpha=0.3)
    ax_cost.legend(title=group_by, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax_req.set_ylabel("requests")
    ax_req.set_xlabel("day (UTC)")
    ax_req.grid(axis="y", alpha=0.3)
    step = max(1, len(days) // 14)
    slanted = len(days) > 4
    ax_req.set_xticks(x[::step], days[::step], rotation=45 if slanted else 0, ha="right" if slanted else "center")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


__all__ = [
    "EXPORT_COLUMNS",
    "REPORT_GROUPS",
    "SIMULATION_ASSUMPTIONS",
    "build_report",
    "default_providers",
    "export_rows",
    "figures",
    "parse_when",
    "plot_report",
    "read_export",
    "simulate",
]
