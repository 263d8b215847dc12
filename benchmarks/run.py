"""``make bench``: run the benchmark sections side by side with their floors and LiteLLM, write the report.

Usage::

    python benchmarks/run.py [--quick] [--only library,gateway,...] [--out DIR]
                             [--upstream minimal|modelplex-fake] [--loadgen auto|wrk|builtin]
                             [--litellm-python PATH] [--no-litellm] [--keep]

Owns: the command line, running the sections in order (each measures modelplex and its comparisons
in one run), and writing ``<out>/<date>-<host>[-quick].md`` (targets with PASS/MISS, one table per
section, notes), the ``.json`` with the same figures plus the raw data, and the ``.png`` plot.
A section that cannot run (gateway not importable, LiteLLM absent) says so in the report; one that
fails is reported as failed and makes the exit status 1. Targets that are missed do not.

Must not touch: what the sections measure (bench_*), how the plot looks (plot).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (
    bench_failure,
    bench_gateway,
    bench_library,
    bench_memory,
    bench_selection,
    bench_sinks,
    bench_startup,
)
from benchmarks.common import REPO, UPSTREAM_KINDS, Context, Section, litellm_python, machine_info
from benchmarks.plot import plot

SECTIONS: dict[str, Callable[[Context], Section]] = {
    "library": bench_library.run,
    "gateway": bench_gateway.run,
    "selection": bench_selection.run,
    "startup": bench_startup.run,
    "memory": bench_memory.run,
    "sinks": bench_sinks.run,
    "failure": bench_failure.run,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny runs (seconds per section): a smoke test, "
                                                        "not figures to quote")
    p.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="where the report goes")
    p.add_argument("--upstream", choices=UPSTREAM_KINDS, default="minimal",
                   help="the fake upstream: a minimal fixed answer (default, as docs/performance.md "
                        "explains) or modelplex's own FakeProviderServer")
    p.add_argument("--loadgen", choices=("auto", "wrk", "builtin"), default="auto")
    p.add_argument("--litellm-python", default=None, help="an interpreter that has litellm (default: "
                                                          "found automatically)")
    p.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparisons")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, logs, databases)")
    return p.parse_args(argv)


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def fmt_value(v: float | None, unit: str) -> str:
    if v is None or v != v:
        return "not measured"
    if unit in ("x",):
        return f"{v:,.1f}x"
    if unit == "%":
        return f"{v:,.1f}%"
    return f"{v:,.1f} {unit}" if v < 1000 else f"{v:,.0f} {unit}"


def markdown(sections: Sequence[Section], info: dict[str, object], args: argparse.Namespace, png: Path | None,
             started: dt.datetime, total_s: float) -> str:
    out: list[str] = []
    out.append(f"# modelplex benchmarks: {started:%Y-%m-%d} on {info['host']}\n")
    out.append(f"{'**Quick mode** (smoke test: tiny runs, figures not to be quoted). ' if args.quick else ''}"
               f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['mem_gb']} GB, Python {info['python']}, "
               f"{info['platform']}. Load generator, servers under test and the fake upstream share these CPUs. "
               f"Upstream: `{args.upstream}`. Total run time {total_s:.0f} s.\n")
    out.append("Ratios measured side by side in this run are the claim; absolute figures are context "
               "and drift from run to run.\n")
    if png is not None:
        out.append(f"![ratios]({png.name})\n")
    out.append("## Targets\n")
    out.append("| target | goal | measured | status | detail |")
    out.append("| --- | --- | --- | --- | --- |")
    for sec in sections:
        for t in sec.targets:
            out.append(f"| {fmt(t.name)} | {t.op} {fmt_value(t.goal, t.unit)} | {fmt_value(t.value, t.unit)} | "
                       f"**{t.status}** | {fmt(t.detail)} |")
    for sec in sections:
        out.append(f"\n## {sec.title}\n")
        if sec.skipped:
            out.append(f"_{sec.skipped}_\n")
            continue
        if sec.rows:
            out.append("| " + " | ".join(sec.columns) + " |")
            out.append("|" + " --- |" * len(sec.columns))
            for row in sec.rows:
                out.append("| " + " | ".join(fmt(v) for v in row) + " |")
            out.append("")
        for note in sec.notes:
            out.append(f"- {fmt(note)}")
        la = sec.data.get("loadavg_1m", {})
        out.append(f"\n_section time: {sec.seconds:.0f} s; 1-minute load average {la.get('before', 0):.2f} before, "
                   f"{la.get('after', 0):.2f} after (on {info['cpus']} CPUs: above that, something else was "
                   "competing for them)_")
    out.append("\n## Versions\n")
    for k, v in dict(info.get("versions", {})).items():  # type: ignore[call-overload]
        out.append(f"- {k}: {v}")
    if info.get("litellm"):
        out.append(f"- litellm: {info['litellm']} ({info.get('litellm_python')})")
    out.append(f"- wrk: {shutil.which('wrk') or 'not installed'}")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        sys.stderr.write(f"unknown section(s): {', '.join(unknown)}; expected {', '.join(SECTIONS)}\n")
        return 2
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelplex-bench-"))
    lite = None if args.no_litellm else litellm_python(args.litellm_python)
    ctx = Context(quick=args.quick, out_dir=out_dir, work_dir=work, upstream=args.upstream, loadgen=args.loadgen,
                  litellm_python=lite, litellm=not args.no_litellm)
    info: dict[str, object] = machine_info()
    if lite:
        from benchmarks.common import package_version

        info["litellm"] = package_version(lite, "litellm")
        info["litellm_python"] = lite
    started = dt.datetime.now()
    t_all = time.perf_counter()
    sections: list[Section] = []
    failed = False
    for key in only:
        sys.stderr.write(f"[bench] {key} ...\n")
        sys.stderr.flush()
        t0 = time.perf_counter()
        load_before = os.getloadavg()[0]
        try:
            sec = SECTIONS[key](ctx)
        except Exception as exc:
            failed = True
            sec = Section(key, key, skipped=f"failed: {type(exc).__name__}: {exc}")
            (work / "logs").mkdir(parents=True, exist_ok=True)
            (work / "logs" / f"{key}-traceback.txt").write_text(traceback.format_exc())
            sys.stderr.write(traceback.format_exc())
        sec.seconds = time.perf_counter() - t0
        sec.data["loadavg_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
        sections.append(sec)
        for t in sec.targets:
            sys.stderr.write(f"[bench]   {t.name}: {fmt_value(t.value, t.unit)} ({t.op} "
                             f"{fmt_value(t.goal, t.unit)}) {t.status}\n")
        if sec.skipped:
            sys.stderr.write(f"[bench]   {sec.skipped}\n")
    total = time.perf_counter() - t_all
    stem = f"{started:%Y-%m-%d}-{platform.node() or 'host'}" + ("-quick" if args.quick else "")
    png = plot(sections, out_dir / f"{stem}.png", f"modelplex vs floors and LiteLLM — {started:%Y-%m-%d}, "
                                                   f"{info['host']}{' (quick)' if args.quick else ''}")
    md = markdown(sections, info, args, png, started, total)
    (out_dir / f"{stem}.md").write_text(md)
    payload = {"started": started.isoformat(timespec="seconds"), "seconds": round(total, 1), "quick": args.quick,
               "upstream": args.upstream, "machine": info, "sections": [s.to_dict() for s in sections],
               "plot": png.name if png else None}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.write(md)
    sys.stderr.write(f"[bench] wrote {out_dir / stem}.md, .json{', .png' if png else ''} in {total:.0f} s\n")
    if args.keep or failed:
        sys.stderr.write(f"[bench] scratch files (configs, logs, databases) kept in {work}\n")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
