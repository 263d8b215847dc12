"""``modelplex models list|show``: browse the catalog.

Owns: the two commands, their filters, their tables, and their JSON (``ModelSpec.to_public_dict()``:
a list of those objects for ``list``, one for ``show``).

Must not touch: catalog storage or lookup rules (``Catalog.list``/``Catalog.get`` decide), anything
heavy at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from modelplex.cli._common import (
    ConfigOption,
    JsonOption,
    console,
    emit_json,
    fmt_int,
    fmt_usd,
    get_model,
    load_catalog_for,
    split_values,
    usage_error,
    visible,
)

if TYPE_CHECKING:
    from modelplex.catalog import Catalog, ModelSpec

app = typer.Typer(help="List models and show one model's every field.", no_args_is_help=True)


def _check_known(value: str | None, known: set[str], what: str, option: str) -> None:
    if value is None or value in known:
        return
    import difflib

    close = difflib.get_close_matches(value, sorted(known), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    usage_error(f"unknown {what} {value!r}{hint}", param_hint=f"'{option}'")


def filter_models(catalog: Catalog, *, provider: str | None, family: str | None, capabilities: list[str],
                  mode: str | None, include_deprecated: bool) -> list[ModelSpec]:
    """``Catalog.list`` with several capabilities (all required); unknown filter values are usage errors."""
    from modelplex.catalog import CAPABILITIES

    specs = catalog.models()
    _check_known(provider, {m.provider for m in specs} | {p.name for p in catalog.providers()}, "provider",
                 "--provider")
    _check_known(family, {m.family for m in specs if m.family}, "family", "--family")
    for cap in capabilities:
        _check_known(cap, set(CAPABILITIES), "capability", "--capability")
    first = capabilities[0] if capabilities else None
    found = catalog.list(provider=provider, family=family, capability=first, mode=mode,
                         include_deprecated=include_deprecated)
    rest = set(capabilities[1:])
    return [m for m in found if rest <= m.capabilities]


@app.command("list")
def list_models(
    provider: Annotated[str | None, typer.Option("--provider", "-p", help="Only this provider's models.")] = None,
    family: Annotated[str | None, typer.Option("--family", "-f", help="Only this family.")] = None,
    capability: Annotated[list[str] | None, typer.Option(
        "--capability", "-c", help="Required capability (repeatable or comma-separated; all required).")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="chat or embedding.")] = None,
    include_deprecated: Annotated[bool, typer.Option("--include-deprecated",
                                                     help="Also list deprecated models.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List catalog models, ordered by id. JSON: a list of model objects (see `models show`)."""
    if mode is not None and mode not in ("chat", "embedding"):
        usage_error(f"expected chat or embedding, got {mode!r}", param_hint="'--mode'")
    catalog = load_catalog_for(config)
    specs = filter_models(catalog, provider=provider, family=family, capabilities=split_values(capability),
                          mode=mode, include_deprecated=include_deprecated)
    if as_json:
        emit_json([m.to_public_dict() for m in specs])
        return
    _print_table(specs)


FEATURE_CODES: tuple[tuple[str, str], ...] = (
    ("tool_calling", "T"), ("vision", "V"), ("json_mode", "J"), ("structured_output", "S"),
    ("reasoning", "R"), ("prompt_caching", "C"), ("audio_input", "A"), ("pdf_input", "P"),
    ("web_search", "W"),
)
"""One letter per capability in the ``models list`` table (the JSON lists capabilities in full)."""


def _print_table(specs: list[ModelSpec]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = console()
    wide = out.width >= 110  # tier and category only when they fit beside the id
    legend = "caps: " + " ".join(f"{code}={cap}" for cap, code in FEATURE_CODES) + "; * deprecated"
    table = Table(title=f"{len(specs):,} model{'' if len(specs) == 1 else 's'}", title_justify="left",
                  box=box.SIMPLE_HEAD, caption=legend, caption_justify="left")
    table.add_column("id", overflow="fold", ratio=1, min_width=20)
    for name in ("context", "max out", "$in/M", "$out/M"):
        table.add_column(name, justify="right", no_wrap=True)
    if wide:
        table.add_column("tier", no_wrap=True)
        table.add_column("category", no_wrap=True)
    table.add_column("caps", no_wrap=True)
    for m in specs:
        codes = "".join(code for cap, code in FEATURE_CODES if cap in m.capabilities)
        model_id = Text(visible(m.id) + " *", style="dim") if m.deprecated else m.id
        row = [model_id, fmt_int(m.context_window), fmt_int(m.max_output_tokens), fmt_usd(m.pricing.input_per_mtok),
               fmt_usd(m.pricing.output_per_mtok)]
        if wide:
            row += [str(m.cost_tier), m.category]
        table.add_row(*row, codes)
    out.print(table)


@app.command("show")
def show_model(
    model: Annotated[str, typer.Argument(help="Model id, alias or unambiguous bare name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every field of one model. JSON: one model object."""
    catalog = load_catalog_for(config)
    spec = get_model(catalog, model)
    data = spec.to_public_dict()
    if as_json:
        emit_json(data)
        return
    from rich.table import Table

    table = Table(title=spec.display_name if spec.display_name != spec.id else spec.id, show_header=False,
                  title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, _render(value))
    console().print(table)


def _render(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
