"""``modelplex tokens``: count the tokens of a text, exactly where the model's tokenizer is known.

Owns: the command, reading the text (argument, ``--file`` or ``--file -`` for stdin) and the output.
JSON: ``{"model", "tokens", "exact", "method"}`` (``model`` is null without ``--model``).

Must not touch: counting (``catalog.tokens.count_text`` owns tokenizers and heuristics).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from modelplex.cli._common import (
    ConfigOption,
    JsonOption,
    console,
    emit_json,
    get_model,
    load_catalog_for,
    usage_error,
)

app = typer.Typer(help="Count the tokens of a text for a model.")


def read_text(text: str | None, file: Path | None) -> str:
    """The text to count: exactly one of ``text`` and ``file`` (``-`` reads stdin)."""
    if (text is None) == (file is None):
        usage_error("give the text as an argument or with --file (one of them)")
    if text is not None:
        return text
    assert file is not None
    if str(file) == "-":
        return sys.stdin.read()
    return file.read_text(encoding="utf-8")


@app.command("tokens")
def tokens_command(
    text: Annotated[str | None, typer.Argument(help="The text to count.", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model id or alias; without it, a generic estimate (o200k_base when available).")
    ] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", dir_okay=False, metavar="FILE", help="Read the text from FILE ('-' for stdin).")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Count tokens: exact with the model's tokenizer when it can be loaded, else a calibrated estimate."""
    content = read_text(text, file)
    spec = None
    if model is not None:
        spec = get_model(load_catalog_for(config), model)
    from modelplex.catalog.tokens import count_text

    counted = count_text(content, spec)
    if as_json:
        emit_json({"model": spec.id if spec is not None else None, "tokens": counted.tokens,
                   "exact": counted.exact, "method": counted.method})
        return
    kind = "exact" if counted.exact else "estimate"
    target = f" for {spec.id}" if spec is not None else ""
    console().print(f"{counted.tokens:,} tokens{target} ({kind}, {counted.method})")
