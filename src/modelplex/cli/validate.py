"""``modelplex validate``: check call parameters against a model before sending them.

Owns: the command, ``KEY=VALUE`` parsing (values as JSON when they parse: ``20000`` is an int) and
the exit status (1 when there are issues). JSON: ``{"model", "issues": [{"param", "code", "message"}]}``.

Must not touch: the validation rules (``Catalog.validate_parameters`` owns them).
"""

from __future__ import annotations

from typing import Annotated

import typer

from modelplex.cli._common import (
    EXIT_ERROR,
    ConfigOption,
    JsonOption,
    console,
    emit_json,
    get_model,
    load_catalog_for,
    parse_key_values,
)

app = typer.Typer(help="Check call parameters against a model's limits.")


@app.command("validate")
def validate_command(
    model: Annotated[str, typer.Argument(help="Model id, alias or unambiguous bare name.")],
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-P", metavar="KEY=VALUE",
        help="An OpenAI-named parameter (repeatable); VALUE is parsed as JSON when it can be.")] = None,
    input_tokens: Annotated[int | None, typer.Option(
        "--input-tokens", min=0, metavar="N", help="Prompt size, to check the window as well.")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Report every problem with the parameters for this model; exit 1 when there is any."""
    import warnings

    params = parse_key_values(param or [], "--param")
    catalog = load_catalog_for(config)
    spec = get_model(catalog, model)
    with warnings.catch_warnings():  # a deprecated model is reported as an issue, not a warning
        warnings.simplefilter("ignore", DeprecationWarning)
        issues = catalog.validate_parameters(spec, params, input_tokens=input_tokens)
    if as_json:
        emit_json({"model": spec.id, "issues": [i.to_dict() for i in issues]})
    elif issues:
        from rich.table import Table

        table = Table(title=f"{spec.id}: {len(issues)} issue{'' if len(issues) == 1 else 's'}",
                      title_justify="left")
        table.add_column("param", style="bold")
        table.add_column("code")
        table.add_column("message")
        for issue in issues:
            table.add_row(issue.param, issue.code, issue.message)
        console().print(table)
    else:
        checked = ", ".join(sorted(params)) or "no parameters"
        console().print(f"{spec.id}: ok ({checked})")
    if issues:
        raise typer.Exit(EXIT_ERROR)
