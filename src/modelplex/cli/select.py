"""``modelplex select``: requirements on the command line -> ranked candidates with reasons.

Owns: mapping options onto ``Requirements``, printing the ranking (and, with ``--explain``, why every
other model was rejected), and the exit status: 1 with the explanation on stderr when nothing matches.
JSON: ``{"candidates": [{"id", "reason"}], "rejected": [{"id", "why"}]}`` (``rejected`` only with
``--explain``), printed even when there are no candidates.

Must not touch: selection logic (``modelplex.selection`` owns filters, ranking and explanations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from modelplex.cli._common import (
    EXIT_ERROR,
    ConfigOption,
    JsonOption,
    console,
    emit_json,
    error_line,
    load_catalog_for,
    load_config_for,
    split_values,
)

if TYPE_CHECKING:
    from modelplex.selection import Selection
    from modelplex.types import Requirements

app = typer.Typer(help="Rank the models that meet requirements, with reasons.")

_OPTION_FOR_KEY = {
    "capabilities": "--needs",
    "category": "--category",
    "strategy": "--strategy",
    "response_format": "--response-format",
    "input_modalities": "--input-modality",
    "output_modalities": "--output-modality",
    "min_context": "--min-context",
    "min_output_tokens": "--min-output",
    "max_input_price": "--max-input-price",
    "max_output_price": "--max-output-price",
    "limit": "--limit",
}


@app.command("select")
def select_command(
    needs: Annotated[list[str] | None, typer.Option(
        "--needs", "-n", metavar="CAP", help="Required capability, e.g. tool_calling, vision, json_mode "
                                              "(repeatable or comma-separated; all required).")] = None,
    min_context: Annotated[int, typer.Option("--min-context", min=0, metavar="N",
                                             help="Smallest acceptable context window, in tokens.")] = 0,
    min_output: Annotated[int, typer.Option("--min-output", min=0, metavar="N",
                                            help="Smallest acceptable max output, in tokens.")] = 0,
    provider: Annotated[list[str] | None, typer.Option(
        "--provider", "-p", metavar="P", help="Allowed provider (repeatable or comma-separated).")] = None,
    deny_provider: Annotated[list[str] | None, typer.Option(
        "--deny-provider", metavar="P", help="Provider to leave out (repeatable or comma-separated).")] = None,
    category: Annotated[str | None, typer.Option(
        "--category", metavar="C", help="Primary category: basic, creative, analytical, reasoning, "
                                        "comprehensive.")] = None,
    response_format: Annotated[str | None, typer.Option(
        "--response-format", metavar="F", help="json (json_mode or structured_output), json_schema "
                                               "(structured_output) or text.")] = None,
    input_modality: Annotated[list[str] | None, typer.Option(
        "--input-modality", metavar="M", help="Required input modality, e.g. image, audio, pdf.")] = None,
    output_modality: Annotated[list[str] | None, typer.Option(
        "--output-modality", metavar="M", help="Required output modality, e.g. image, audio.")] = None,
    max_input_price: Annotated[float | None, typer.Option(
        "--max-input-price", min=0, metavar="USD", help="Highest input price, USD per million tokens.")] = None,
    max_output_price: Annotated[float | None, typer.Option(
        "--max-output-price", min=0, metavar="USD", help="Highest output price, USD per million tokens.")] = None,
    strategy: Annotated[str, typer.Option(
        "--strategy", "-s", metavar="S", help="economy | balanced | quality (see docs/selection.md).")] = "balanced",
    include_deprecated: Annotated[bool, typer.Option("--include-deprecated",
                                                     help="Let deprecated models qualify.")] = False,
    embedding: Annotated[bool, typer.Option("--embedding", help="Select embedding models instead of chat.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", "-l", min=1, metavar="N",
                                              help="Show at most N candidates.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also list every rejected model and the first "
                                                            "requirement it failed.")] = False,
    configured_only: Annotated[bool, typer.Option(
        "--configured-only", help="Only providers whose credentials resolve now (config, then environment), "
                                  "as the router would see them.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rank the models that meet the requirements, best first, each with a one-line reason.

    Exits 1 with the explanation on stderr when no model qualifies: there is no silent default.
    """
    from modelplex.errors import ConfigError
    from modelplex.selection import select, validate_requirements
    from modelplex.types import Requirements

    providers = split_values(provider)
    req = Requirements(
        provider=providers[0] if len(providers) == 1 else None,  # one: exactly it; several: any of them
        capabilities=frozenset(split_values(needs)),
        category=category,
        min_context=min_context,
        min_output_tokens=min_output,
        response_format=response_format,
        providers_allow=frozenset(providers) if len(providers) > 1 else frozenset(),
        providers_deny=frozenset(split_values(deny_provider)),
        input_modalities=frozenset(split_values(input_modality)),
        output_modalities=frozenset(split_values(output_modality)),
        max_input_price=max_input_price,
        max_output_price=max_output_price,
        include_deprecated=include_deprecated,
        mode="embedding" if embedding else "chat",
        strategy=strategy,  # type: ignore[arg-type]  # validated just below
    )
    try:
        validate_requirements(req)
    except ConfigError as exc:
        option = _OPTION_FOR_KEY.get(exc.key or "")
        message = str(exc).removeprefix(f"{exc.key}: ") if exc.key else str(exc)
        raise typer.BadParameter(message, param_hint=f"'{option}'" if option else None) from None
    settings = load_config_for(config)
    catalog = load_catalog_for(config, settings=settings)
    usable: frozenset[str] | None = None
    if configured_only:
        from modelplex.providers.credentials import resolve_providers

        enabled, _ = resolve_providers(settings, catalog)
        usable = frozenset(enabled)
    selection = select(catalog, req, explain=explain, limit=limit, providers=usable)
    if as_json:
        emit_json(selection.to_dict(explain))
    else:
        _print(selection, req, explain)
    if not selection.candidates:
        error_line(selection.explanation)
        raise typer.Exit(EXIT_ERROR)


def _print(selection: Selection, req: Requirements, explain: bool) -> None:
    from rich.table import Table

    out = console()
    if selection.candidates:
        table = Table(title=f"{len(selection.candidates):,} candidate"
                            f"{'' if len(selection.candidates) == 1 else 's'} ({req.effective_strategy})",
                      title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("model", no_wrap=True)
        table.add_column("reason")
        for k, cand in enumerate(selection.candidates, 1):
            table.add_row(str(k), cand.model.id, cand.reason)
        out.print(table)
    if explain and selection.rejected:
        rejected = Table(title=f"{len(selection.rejected):,} rejected", title_justify="left")
        rejected.add_column("model", no_wrap=True)
        rejected.add_column("first unmet requirement")
        for model_id, why in sorted(selection.rejected.items()):
            rejected.add_row(model_id, why)
        out.print(rejected)
