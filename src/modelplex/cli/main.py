"""The ``modelplex`` command: a typer app whose command groups are loaded only when used.

Owns: the root app, the registry of command groups (``COMMANDS``), the lazy group that imports a
command's module only when that command runs (``modelplex --help`` imports none of them), and the
process-level error policy: usage errors are one line with exit status 2, everything else goes
through ``_common.handle_errors`` (one line, exit status 1), never a traceback.

Adding a command group is one line in ``COMMANDS``::

    LazyCommand("serve", "modelplex.cli.serve:app", "Run the OpenAI-compatible gateway."),

where ``modelplex/cli/serve.py`` defines ``app = typer.Typer(...)`` (several subcommands make a
group, a single command is the command itself) or a click command. Keep heavy imports inside the
command functions and take ``_common.ConfigOption``/``_common.JsonOption``.

Must not touch: command logic, anything heavy at import time.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from modelplex import __version__  # the package root imports nothing heavy


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A command registered by name: ``target`` is ``module:attribute`` (a ``typer.Typer`` or click command)."""

    name: str
    target: str
    help: str


COMMANDS: tuple[LazyCommand, ...] = (
    LazyCommand("models", "modelplex.cli.models:app", "List models and show one model's every field."),
    LazyCommand("select", "modelplex.cli.select:app", "Rank the models that meet requirements, with reasons."),
    LazyCommand("cost", "modelplex.cli.cost:app", "Price a call: tokens in, USD out, with the breakdown."),
    LazyCommand("validate", "modelplex.cli.validate:app", "Check call parameters against a model's limits."),
    LazyCommand("tokens", "modelplex.cli.tokens:app", "Count the tokens of a text for a model."),
    LazyCommand("catalog", "modelplex.cli.catalog:app", "Import LiteLLM/OpenRouter model lists; catalog stats."),
    LazyCommand("serve", "modelplex.cli.serve:app", "Run the OpenAI-compatible gateway."),
    LazyCommand("usage", "modelplex.cli.usage:app", "Usage and cost records: report, simulate a strategy, export."),
    LazyCommand("demo", "modelplex.cli.demo:app", "Fake providers + the gateway + a workload, then the dashboard."),
    LazyCommand("fake-providers", "modelplex.cli.fake_providers:app", "Run fake providers (all protocols) on loopback."),
)
"""Every command group, in the order ``--help`` lists them."""


def load_command(entry: LazyCommand) -> Any:
    """Import ``entry.target`` and turn it into a click command named ``entry.name``."""
    module_name, _, attr = entry.target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    command = typer.main.get_command(obj) if isinstance(obj, typer.Typer) else obj
    command.name = entry.name
    return command


def _cli_error_types() -> tuple[type[BaseException], ...]:
    """Click's exception base (typer ≥ 0.20 vendors click and exposes it as ``TyperException``)."""
    types: list[type[BaseException]] = []
    typer_base = getattr(typer, "TyperException", None)
    if isinstance(typer_base, type):
        types.append(typer_base)
    try:
        import click

        types.append(click.ClickException)
    except ImportError:  # pragma: no cover - click is only absent when typer vendors it
        pass
    return tuple(types)


class LazyGroup(TyperGroup):
    """A typer group that resolves ``COMMANDS`` on demand and owns the error policy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = {entry.name: entry for entry in COMMANDS}
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        eager = [n for n in super().list_commands(ctx) if n not in self._lazy]
        return [*self._lazy, *eager]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, _Placeholder):
            return command
        entry = self._lazy.get(cmd_name)
        if entry is None:
            return None
        if self._listing:  # --help only needs the name and one line: import nothing
            return TyperCommand(name=entry.name, help=entry.help)
        command = load_command(entry)
        self.commands[cmd_name] = command
        return command

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # typer suggests close matches from self.commands only; make the lazy names known to it
        for name in self._lazy:
            self.commands.setdefault(name, _Placeholder(name))
        try:
            return super().resolve_command(ctx, args)
        finally:
            for name in self._lazy:
                if isinstance(self.commands.get(name), _Placeholder):
                    del self.commands[name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        from modelplex.cli._common import handle_errors

        with handle_errors():
            return super().invoke(ctx)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _cli_error_types() as exc:
            _usage_line(exc)
            sys.exit(getattr(exc, "exit_code", 2))
        except (typer.Abort, EOFError):
            sys.stderr.write("error: aborted\n")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class _Placeholder(TyperCommand):
    """Stands in for a lazy command while typer resolves a name (never invoked)."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)


def _usage_line(exc: BaseException) -> None:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None and getattr(exc, "exit_code", 1) == 2 else ""
    flat = " ".join(line.strip() for line in message.splitlines() if line.strip())
    sys.stderr.write(f"error: {flat}{hint}\n")


app = typer.Typer(
    cls=LazyGroup,
    name="modelplex",
    help="modelplex: a model registry and router for LLM applications. Every command but demo and "
         "fake-providers takes --config FILE (or MODELPLEX_CONFIG); every command but serve and usage export "
         "takes --json.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"modelplex {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """modelplex: a model registry and router for LLM applications."""


def main(argv: Sequence[str] | None = None) -> None:
    """The console-script entry point."""
    app(args=list(argv) if argv is not None else None, prog_name="modelplex")


if __name__ == "__main__":  # pragma: no cover
    main()
