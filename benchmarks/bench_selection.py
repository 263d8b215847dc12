"""Section 3, selection: latency of ``Selector.select`` over the bundled catalog and the full LiteLLM map.

Owns: the selection workload. It runs in a worker process (``python -m benchmarks.bench_selection
--litellm-map PATH``) so the harness's own imports and garbage do not colour it:

* catalogs: the bundled one (``load_catalog()``), and the bundled one with LiteLLM's whole price
  map imported on top (``import_litellm`` on ``../shared/data/litellm_model_prices_*.json.gz``,
  about 4,000 models; skipped with a note when the file is absent);
* **cached** (warm): the same requirements again and again: the result cache answers;
* **uncached**: every call has requirements not seen before (a distinct ``min_context`` and price
  cap, ahead of the cache's 512 entries), so each call filters and ranks the whole catalog.

Every call is timed on its own (``perf_counter_ns``); p50 and p99 in microseconds. The index
build (first call after a catalog change) is reported separately.

Must not touch: the selector (public API only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, Context, Section, Target, percentile, run_json, time_calls

LITELLM_MAP_GLOB = "litellm_model_prices_*.json.gz"


def litellm_map() -> Path | None:
    shared = REPO.parent / "shared" / "data"
    found = sorted(shared.glob(LITELLM_MAP_GLOB)) if shared.is_dir() else []
    return found[-1] if found else None


def _us(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {"p50_us": percentile(s, 50) * 1e6, "p99_us": percentile(s, 99) * 1e6, "mean_us": sum(s) / len(s) * 1e6,
            "calls": len(s)}


def measure_catalog(catalog: Any, n_cached: int, n_uncached: int) -> dict[str, Any]:
    from modelplex.selection import Selector
    from modelplex.types import Requirements

    sel = Selector(catalog)
    warm_req = Requirements(min_context=100_000, capabilities=frozenset({"tool_calling"}), strategy="balanced")
    t0 = time.perf_counter()
    first = sel.select(warm_req, limit=5)
    build_s = time.perf_counter() - t0
    if not first.candidates:
        raise RuntimeError(f"no candidates: {first.explanation}")
    cached = time_calls(lambda: sel.select(warm_req, limit=5), n_cached)
    strategies = ("balanced", "economy", "quality")
    reqs = [Requirements(min_context=1_000 + 37 * i, max_input_price=5.0 + (i % 97) / 10,
                         capabilities=frozenset({"tool_calling"}) if i % 2 else frozenset(),
                         strategy=strategies[i % 3])  # type: ignore[arg-type]
            for i in range(n_uncached)]
    it = iter(reqs)
    before = sel.cache_info()
    uncached = time_calls(lambda: sel.select(next(it), limit=5), n_uncached)
    after = sel.cache_info()
    if after.hits != before.hits:
        raise RuntimeError("an 'uncached' call hit the cache")
    return {"models": len(catalog), "index_build_ms": build_s * 1e3, "cached": _us(cached),
            "uncached": _us(uncached), "matching_warm": first.candidates[0].reason}


def worker(litellm_path: str | None, n_cached: int, n_uncached: int) -> dict[str, Any]:
    from modelplex.catalog import load_catalog

    out: dict[str, Any] = {}
    bundled = load_catalog()
    out["bundled"] = measure_catalog(bundled, n_cached, n_uncached)
    if litellm_path:
        from modelplex.catalog.importers.litellm import import_litellm

        t0 = time.perf_counter()
        result = import_litellm(litellm_path, base=bundled)
        full = bundled.with_overlay(result.models, result.providers, source="litellm")
        import_s = time.perf_counter() - t0
        out["litellm_map"] = {**measure_catalog(full, n_cached, n_uncached), "import_s": import_s}
    return out


def run(ctx: Context) -> Section:
    sec = Section("selection", "Selection: Selector.select latency (in process, one call at a time)",
                  columns=["catalog", "models", "calls", "cached p50 µs", "cached p99 µs", "uncached p50 µs",
                           "uncached p99 µs", "index build ms"])
    path = litellm_map()
    args = [ctx.python, "-m", "benchmarks.bench_selection", "--cached", str(ctx.count(20_000, 500)),
            "--uncached", str(ctx.count(5_000, 300))]
    if path is not None:
        args += ["--litellm-map", str(path)]
    else:
        sec.notes.append("the LiteLLM price map (../shared/data) is absent: only the bundled catalog measured")
    data = run_json(args, timeout=600)
    for name, label in (("bundled", "bundled"), ("litellm_map", "bundled + LiteLLM map")):
        d = data.get(name)
        if d is None:
            continue
        sec.rows.append([label, d["models"], d["cached"]["calls"] + d["uncached"]["calls"],
                         round(d["cached"]["p50_us"], 1), round(d["cached"]["p99_us"], 1),
                         round(d["uncached"]["p50_us"], 1), round(d["uncached"]["p99_us"], 1),
                         round(d["index_build_ms"], 1)])
    full = data.get("litellm_map")
    sec.targets.append(Target(f"selection: warm p50 over {full['models']:,} models" if full else
                              "selection: warm p50 over the LiteLLM map", full["cached"]["p50_us"] if full else None,
                              50, "<=", "µs", "cached (same requirements)"))
    sec.targets.append(Target("selection: uncached p50 over the LiteLLM map (stricter reading)",
                              full["uncached"]["p50_us"] if full else None, 50, "<=", "µs",
                              "warm index, requirements never seen before: every call filters and ranks"))
    if full:
        sec.notes.append(f"LiteLLM map import + overlay took {full['import_s']:.1f} s (once, at start-up)")
    sec.data = data
    return sec


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_selection")
    p.add_argument("--litellm-map", default=None)
    p.add_argument("--cached", type=int, default=20_000)
    p.add_argument("--uncached", type=int, default=5_000)
    a = p.parse_args(argv)
    sys.stdout.write(json.dumps(worker(a.litellm_map, a.cached, a.uncached)) + "\n")


if __name__ == "__main__":
    main()
