"""``modelplex tokens``: count the tokens of a text, exactly where the model's tokenizer is known.

Owns: the command, reading the text (argument, ``--file`` or ``--file -`` for stdin) and the output.
JSON: ``{"model", "tokens", "exact", "method"}`` (``model`` is null without ``--model``; the catalog id for a
catalog model; the name as given for one the catalog does not know, which is counted from its name alone,
as ``count_text`` does, with a note on stderr).

Must not touch: counting (``catalog.tokens.count_text`` owns tokenizers and heuristics).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelplex.cli._common import (
    ConfigOption,
    JsonOption,
    console,
    emit_json,
    get_model,
    load_catalog_for,
    usage_error,
    visible,
)

if TYPE_CHECKING:
    from modelplex.catalog import ModelSpec

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
        "--model", "-m", help="Model id or alias; a name the catalog does not know is counted from the name "
                              "alone, as the library does, with a note on stderr. Without it: the generic "
                              "estimate (heuristic:default, never exact).")
    ] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", dir_okay=False, metavar="FILE", help="Read the text from FILE ('-' for stdin).")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Count tokens: exact with the model's tokenizer when it can be loaded, else a calibrated estimate.
    Any model name works: one the catalog does not know is counted from its name alone (note on stderr)."""
    content = read_text(text, file)
    from modelplex.catalog.tokens import count_text
    from modelplex.errors import UnknownModelError

    target: ModelSpec | str | None = None
    note = ""
    if model is not None:
        catalog = load_catalog_for(config)
        try:
            target = get_model(catalog, model)
        except UnknownModelError as exc:  # counted anyway, from the name alone, as count_text counts any name
            target = model
            if exc.suggestions:
                note = f" (did you mean {', '.join(repr(s) for s in exc.suggestions)}?)"
    counted = count_text(content, target)
    if isinstance(target, str):
        sys.stderr.write(visible(f"note: {target!r} is not in the catalog{note}; counted from its name alone "
                                 f"({counted.method})") + "\n")
    name = target if isinstance(target, str) else target.id if target is not None else None
    if as_json:
        emit_json({"model": name, "tokens": counted.tokens, "exact": counted.exact, "method": counted.method})
        return
    kind = "exact" if counted.exact else "estimate"
    suffix = f" for {name}" if name is not None else ""
    console().print(f"{counted.tokens:,} tokens{suffix} ({kind}, {counted.method})")
