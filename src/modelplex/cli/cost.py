"""``modelplex cost``: what a call with these token counts costs on a model.

Owns: the command and its output. JSON: ``{"model", "input_tokens", "output_tokens", "cached_tokens",
"cost_usd", "breakdown": {"input_usd", "cached_input_usd", "cache_write_usd", "output_usd",
"reasoning_usd", "total_usd"}}``.

Must not touch: pricing rules (``Catalog.cost`` owns them).
"""

from __future__ import annotations

from typing import Annotated

import typer

from modelplex.cli._common import (
    ConfigOption,
    JsonOption,
    console,
    emit_json,
    fmt_int,
    get_model,
    load_catalog_for,
    usage_error,
)

app = typer.Typer(help="Price a call: tokens in, USD out, with the breakdown.")


def _usd(value: float) -> str:
    return f"${value:,.6f}".rstrip("0").rstrip(".") if value else "$0"


@app.command("cost")
def cost_command(
    model: Annotated[str, typer.Argument(help="Model id, alias or unambiguous bare name.")],
    input_tokens: Annotated[int, typer.Option("--input-tokens", "-i", min=0, metavar="N",
                                              help="Prompt tokens, cached ones included.")],
    output_tokens: Annotated[int, typer.Option("--output-tokens", "-o", min=0, metavar="M",
                                               help="Completion tokens, reasoning ones included.")],
    cached_tokens: Annotated[int, typer.Option("--cached-tokens", min=0, metavar="K",
                                               help="How many of the input tokens were cache reads.")] = 0,
    reasoning_tokens: Annotated[int, typer.Option("--reasoning-tokens", min=0, metavar="R",
                                                  help="How many of the output tokens were reasoning.")] = 0,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Price one call from its token counts (USD, at the catalog's per-million prices)."""
    if cached_tokens > input_tokens:
        usage_error(f"{cached_tokens:,} cached tokens is more than the {input_tokens:,} input tokens "
                    "(input tokens include cached ones)", param_hint="'--cached-tokens'")
    if reasoning_tokens > output_tokens:
        usage_error(f"{reasoning_tokens:,} reasoning tokens is more than the {output_tokens:,} output tokens "
                    "(output tokens include reasoning ones)", param_hint="'--reasoning-tokens'")
    catalog = load_catalog_for(config)
    spec = get_model(catalog, model)
    breakdown = catalog.cost(spec, input_tokens, output_tokens, cached_tokens=cached_tokens,
                             reasoning_tokens=reasoning_tokens)
    if as_json:
        emit_json({
            "model": spec.id,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "cost_usd": breakdown.total_usd,
            "breakdown": breakdown.to_dict(),
        })
        return
    from rich.table import Table

    p = spec.pricing
    rows = [  # label, tokens, USD per million (None: charged at another rate, named), USD
        ("input", input_tokens - cached_tokens, f"{p.input_per_mtok:g}", breakdown.input_usd),
        ("cached input", cached_tokens,
         "input rate" if p.cached_input_per_mtok is None else f"{p.cached_input_per_mtok:g}",
         breakdown.cached_input_usd),
        ("output", output_tokens - reasoning_tokens, f"{p.output_per_mtok:g}", breakdown.output_usd),
        ("reasoning", reasoning_tokens,
         "output rate" if p.reasoning_per_mtok is None else f"{p.reasoning_per_mtok:g}", breakdown.reasoning_usd),
    ]
    table = Table(title=f"{spec.id}: {_usd(breakdown.total_usd)}", title_justify="left")
    table.add_column("tokens")
    table.add_column("count", justify="right")
    table.add_column("$/M", justify="right")
    table.add_column("USD", justify="right")
    for label, count, rate, usd in rows:
        if count or usd:
            table.add_row(label, fmt_int(count), rate, _usd(usd))
    if breakdown.cache_write_usd:
        table.add_row("cache write", "", "", _usd(breakdown.cache_write_usd))
    table.add_row("total", fmt_int(input_tokens + output_tokens), "", _usd(breakdown.total_usd), style="bold")
    console().print(table)
