"""What ``--help`` claims about the commands is what the commands do: which take ``--config`` and
``--json`` (the root help, docs/selection.md and the README say it), and the routes ``serve`` lists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from modelplex.cli.main import COMMANDS, app, load_command

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

WITHOUT_CONFIG = {"demo", "fake-providers"}
WITHOUT_JSON = {"serve", "usage export"}


def _leaves(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in subcommands.items():
            yield from _leaves(sub, f"{path} {name}")
    else:
        yield path, command


def _options() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entry in COMMANDS:
        for path, command in _leaves(load_command(entry), entry.name):
            out[path] = {opt for param in command.params for opt in getattr(param, "opts", ())}
    return out


def test_config_and_json_options_are_where_the_help_says() -> None:
    options = _options()
    assert {path for path, opts in options.items() if "--config" not in opts} == WITHOUT_CONFIG
    assert {path for path, opts in options.items() if "--json" not in opts} == WITHOUT_JSON
    text = " ".join(runner.invoke(app, ["--help"]).stdout.split())
    assert "Every command but demo and fake-providers takes --config FILE (or MODELPLEX_CONFIG)" in text
    assert "every command but serve and usage export takes --json" in text


def test_selection_doc_says_the_same() -> None:
    text = " ".join((ROOT / "docs" / "selection.md").read_text(encoding="utf-8").split())
    assert "Every command takes `--config FILE`" not in text
    assert "Every command but `demo` and `fake-providers` takes `--config FILE`" in text
    assert "every command but `serve` and `usage export` takes `--json`" in text


def test_serve_help_lists_every_serving_route() -> None:
    from modelplex.server import create_app

    gateway = create_app({"accounting": {"sink": "none"}}, no_auth=True, env={})
    paths = {re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path) for route in gateway.routes}
    listed = " ".join(runner.invoke(app, ["serve", "--help"]).stdout.replace("│", " ").split())
    for path in sorted(paths):
        if path.startswith("/api/v1/"):
            assert "/api/v1" in listed
        elif path.startswith("/dashboard"):
            assert "/dashboard" in listed
        else:
            assert re.search(re.escape(path) + r"(?![\w/])", listed), path
