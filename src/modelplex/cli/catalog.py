"""``modelplex catalog import|stats``: bring in foreign model lists; summarize the catalog.

Owns: the two commands and their output. ``import`` JSON: ``ImportResult.summary()`` (``source``,
``origin``, ``as_of``, ``models``, ``providers``, ``skipped``, ``by_provider`` …) plus ``overlay`` (the
written path, or null without ``-o``). ``stats`` JSON: ``Catalog.stats()``.

Must not touch: conversion rules (``catalog.importers`` own them), the network (sources are files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelplex.cli._common import ConfigOption, JsonOption, console, emit_json, load_catalog_for, usage_error

app = typer.Typer(help="Import LiteLLM/OpenRouter model lists; catalog stats.", no_args_is_help=True)


@app.command("import")
def import_command(
    source: Annotated[Path, typer.Argument(
        metavar="FILE", dir_okay=False,
        help="LiteLLM's model_prices_and_context_window.json (.gz too), or a saved OpenRouter /api/v1/models answer.")],
    fmt: Annotated[str, typer.Option("--format", "-F", metavar="FORMAT", help="litellm or openrouter.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False, metavar="OVERLAY.yaml",
        help="Write the converted entries here, as an overlay for load_catalog / the config.")] = None,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", "-p", help="litellm only: keep these modelplex providers (repeatable).")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Convert a model list into catalog entries; print the counts and write the overlay with -o."""
    from modelplex.catalog.importers import FORMATS, write_overlay

    importer = FORMATS.get(fmt)
    if importer is None:
        usage_error(f"expected one of {', '.join(sorted(FORMATS))}, got {fmt!r}", param_hint="'--format'")
    kwargs: dict[str, Any] = {}
    if provider:
        if fmt != "litellm":
            usage_error("--provider filters only the litellm format", param_hint="'--provider'")
        kwargs["providers"] = [p for value in provider for p in value.split(",") if p]
    if config is not None:  # reconcile with the catalog the overlay will be applied to
        kwargs["base"] = load_catalog_for(config)
    result = importer(source, **kwargs)
    written = write_overlay(result, output) if output is not None else None
    summary = {**result.summary(), "overlay": str(written) if written is not None else None}
    if as_json:
        emit_json(summary)
        return
    out = console()
    skipped = ", ".join(f"{k} {v:,}" for k, v in summary["skipped"].items()) or "none"
    out.print(f"imported {summary['models']:,} models from {summary['providers']:,} providers "
              f"({result.source}, as of {summary['as_of']}); skipped {result.total_skipped:,}: {skipped}")
    if written is not None:
        out.print(f"wrote {written}")
    else:
        out.print("nothing written (use -o OVERLAY.yaml to write the overlay)")


@app.command("stats")
def stats_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Counts of models by provider, mode, capability, cost tier, category and source."""
    stats = load_catalog_for(config).stats()
    if as_json:
        emit_json(stats)
        return
    from rich.table import Table

    out = console()
    out.print(f"catalog version {stats['version']}: {stats['models']:,} models, {stats['providers']:,} providers, "
              f"{stats['families']:,} families, {stats['deprecated']:,} deprecated")
    for key in ("by_provider", "by_mode", "by_category", "by_cost_tier", "by_capability", "by_source"):
        counts = stats.get(key) or {}
        if not counts:
            continue
        table = Table(title=key.replace("_", " "), title_justify="left", show_header=False)
        table.add_column("name")
        table.add_column("models", justify="right")
        for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(str(name), f"{count:,}")
        out.print(table)
    if stats.get("providers_without_spec"):
        out.print("providers without a provider entry: " + ", ".join(stats["providers_without_spec"]))
