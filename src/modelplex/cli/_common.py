"""Helpers every CLI command shares: the ``--config``/``--json`` options, loading the catalog,
printing JSON and tables, and turning errors into one clear line on stderr.

Owns: ``ConfigOption``/``JsonOption`` (the options every command takes), ``load_config_for``,
``load_catalog_for``, ``get_model`` (lookups whose suggestions are canonical ids),
``emit_json``, ``console``, ``fail``/``usage_error``, ``parse_value``, and ``handle_errors`` — the one
place where ``ModelplexError`` and ``OSError`` become ``error: ...`` and exit status 1.

Terminal safety: everything the CLI prints comes from data it does not control (model ids from a
config or an imported price list, users, tasks and key names from the usage store), so ``console()``
prints text, never Rich markup (``[bold]`` is shown as typed; emoji codes too), and ``visible``
shows control characters (ESC, BEL, C1 controls such as CSI, bidirectional overrides) as escapes
(``\\x1b``, ``\\x9b``, ``\\u202e``) in every string it renders — table cells, titles, headers and lines.
Styling is done with ``rich.text.Text`` / ``style=`` (never markup). ``emit_json`` and ``error_line``
escape the same characters.

Must not touch: command logic (each command module owns its own), anything heavy at import time:
this module is imported while building ``--help``, so the catalog, pydantic, rich and yaml are
imported inside functions only.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from modelplex.catalog import Catalog, ModelSpec
    from modelplex.config import Config

EXIT_ERROR = 1
"""Something went wrong (unknown model, unreadable file, invalid config, no candidates, issues found)."""
EXIT_USAGE = 2
"""The command line itself is wrong (click's convention)."""

DEBUG_ENV = "MODELPLEX_DEBUG"
"""Set to 1 to let unexpected exceptions show their traceback."""

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="MODELPLEX_CONFIG",
        metavar="FILE",
        dir_okay=False,
        show_default=False,
        help="modelplex YAML config; its providers/models sections overlay the bundled catalog.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON in the documented shape instead of a table.")]


# ------------------------------------------------------------------------------------------ output


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (dates and other objects via ``str``)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str).translate(_JSON_VISIBLE) + "\n")
    sys.stdout.flush()


PIPED_WIDTH = 400
"""The width tables are laid out for when stdout is not a terminal (so ids are never folded)."""

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A)}
_VISIBLE.update({c: f"\\u{c:04x}" for c in _BIDI})
"""Characters a terminal would act on instead of showing: C0 controls but tab and newline, DEL, the C1
controls (0x9b is CSI on some terminals), and the bidirectional marks, embeddings, overrides and
isolates ("Trojan Source"). Each is shown as its Python escape."""
_JSON_VISIBLE = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), *_BIDI)}
"""The same in JSON (``json.dumps`` escapes the C0 controls itself): ``\\u009b`` is the same string."""


def visible(text: object) -> str:
    """``text`` with every character a terminal would interpret shown as an escape (``\\x1b``)."""
    return str(text).translate(_VISIBLE)


def console() -> Console:
    """A rich console on stdout (imported on first use) that prints text as it is: no markup, no emoji
    codes, and control characters shown as escapes (``visible``) in every string it renders."""
    # plain lines never wrap; tables fit a terminal's width, and piped output (| grep) is never folded
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return _safe_console_class()(highlight=False, markup=False, emoji=False, soft_wrap=True,
                                 width=PIPED_WIDTH if piped else None)


@functools.cache
def _safe_console_class() -> type[Console]:
    from rich.console import Console

    class SafeConsole(Console):
        """Every string printed or put in a table (cells, titles, headers) goes through ``render_str``."""

        def render_str(self, text: str, **kwargs: Any) -> Any:
            return super().render_str(visible(text), **kwargs)

    return SafeConsole


def error_line(message: str) -> None:
    """``error: <message>`` on stderr, as one line (newlines in the message are flattened)."""
    flat = visible(" ".join(part.strip() for part in str(message).splitlines() if part.strip()))
    sys.stderr.write(f"error: {flat}\n")
    sys.stderr.flush()


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one error line and exit with ``code``."""
    error_line(message)
    raise typer.Exit(code)


def usage_error(message: str, param_hint: str | None = None) -> NoReturn:
    """A usage error (exit 2), reported like click's own."""
    raise typer.BadParameter(message, param_hint=param_hint)


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_usd(value: float | None, *, per_mtok: bool = False) -> str:
    if value is None:
        return "—"
    if value >= 0.1 or value == 0:
        text = f"${value:,.2f}"
    else:  # four significant digits, never in exponent notation ($0.00008048, not $8.048e-05)
        text = f"${value:.{max(4, 3 - math.floor(math.log10(abs(value))))}f}".rstrip("0")
    return text + ("/M" if per_mtok else "")


# ------------------------------------------------------------------------------------------ inputs


def load_config_for(config: Path | None) -> Config:
    """The validated config at ``config``, or the defaults when there is none.

    ``--config`` already falls back to ``MODELPLEX_CONFIG``, so ``None`` really means "no file".
    """
    from modelplex.config import Config, load_config

    return Config() if config is None else load_config(config)


def load_catalog_for(config: Path | None, *, settings: Config | None = None) -> Catalog:
    """The bundled catalog, with ``config``'s ``providers``/``models`` sections applied as an overlay.

    The whole config is validated first (``load_config``), so a bad key anywhere is reported with
    its file and key path. Pass ``settings`` when the config is already loaded.
    """
    from modelplex.catalog import bundled_catalog

    catalog = bundled_catalog()
    if config is None:
        return catalog
    from modelplex.catalog.loader import read_overlay

    cfg = settings if settings is not None else load_config_for(config)
    models, providers, _ = read_overlay(cfg.catalog_overlay())
    if not models and not providers:
        return catalog
    return catalog.with_overlay(models, providers, source=f"config:{config.name}", file=str(config))


MAX_SUGGESTIONS = 3


def get_model(catalog: Catalog, name: str) -> ModelSpec:
    """``catalog.get(name)``; on a miss, the suggestions are canonical ids (an alias or bare name that
    resolves is shown as its id), at most ``MAX_SUGGESTIONS``."""
    from modelplex.errors import UnknownModelError

    try:
        return catalog.get(name)
    except UnknownModelError as exc:
        canonical: list[str] = []
        for suggestion in exc.suggestions:
            found = catalog.find(suggestion)
            target = found.id if found is not None else suggestion
            if target not in canonical:
                canonical.append(target)
        raise UnknownModelError(name, canonical[:MAX_SUGGESTIONS]) from None


def parse_value(text: str) -> Any:
    """A command-line value as JSON when it parses (``20000`` -> 20000, ``true``, ``null``,
    ``["a","b"]``, ``{"type": "json_object"}``), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_key_values(pairs: list[str], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> a dict; values through ``parse_value``. A malformed pair is a usage error."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            usage_error(f"expected KEY=VALUE, got {pair!r}", param_hint=f"'{option}'")
        out[key] = parse_value(value)
    return out


def split_values(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists: ``--needs a,b --needs c``."""
    out: list[str] = []
    for value in values or ():
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


# ------------------------------------------------------------------------------------------ errors


def describe_os_error(exc: OSError) -> str:
    if exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc.strerror or exc)


@contextmanager
def handle_errors() -> Iterator[None]:
    """The one place CLI errors become ``error: <one line>`` on stderr and exit status 1.

    ``ModelplexError`` (unknown model with suggestions, ``ConfigError`` naming file and key …) and
    ``OSError`` (unreadable or unwritable files) are expected; anything else is a bug and is reported
    the same way unless ``MODELPLEX_DEBUG`` is set, which lets the traceback through.
    """
    from modelplex.errors import ModelplexError

    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except ModelplexError as exc:
        fail(str(exc))
    except BrokenPipeError:  # stdout closed early (| head): stop quietly
        _silence_stdout()
        raise typer.Exit(EXIT_ERROR) from None
    except OSError as exc:
        fail(describe_os_error(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if _database_error(exc):
            fail(f"database: {type(exc).__name__}: {exc}")
        if _click_exception(exc) or os.environ.get(DEBUG_ENV):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)")


def _database_error(exc: BaseException) -> bool:
    """An error PostgreSQL reported (a missing database, a wrong password): the user's to fix, not a bug.
    (asyncpg is looked up, not imported: a command that never used it cannot have raised its errors.)"""
    asyncpg = sys.modules.get("asyncpg")
    return asyncpg is not None and isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)


def _click_exception(exc: BaseException) -> bool:
    """Usage errors and other click exceptions pass through: click reports them with exit status 2."""
    from typer import _click  # typer vendors click

    return isinstance(exc, _click.exceptions.ClickException)


def _silence_stdout() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
