"""``cli._common``'s output helpers: whatever a command prints is shown as text, never acted on by the
terminal (control characters) or by Rich (markup, emoji codes)."""

from __future__ import annotations

import json

import pytest

from modelplex.cli._common import console, emit_json, error_line, visible


def test_visible_escapes_what_a_terminal_would_act_on() -> None:
    assert visible("\u001b]0;PWNED\u0007\u001b[31mred") == r"\x1b]0;PWNED\x07\x1b[31mred"
    assert visible("a\u009b1mb\u007f\r\u202eevil\u2066") == r"a\x9b1mb\x7f\x0d\u202eevil\u2066"
    assert visible("tab\tand\nnewline, ünïcödé, 日本, [bold]") == "tab\tand\nnewline, ünïcödé, 日本, [bold]"
    assert visible(None) == "None"


def test_console_prints_markup_and_control_characters_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.table import Table

    out = console()
    table = Table(title="users [bold]\u001b[2J")
    table.add_column("user \u001b[31m")
    table.add_row("\u001b]0;PWNED\u0007[bold]rich[/bold] :thumbs_up:")
    out.print(table)
    out.print("line [red]x[/red] \u009b31m")
    text = capsys.readouterr().out
    assert not any(ch in text for ch in "\u001b\u0007\u009b")
    for shown in (r"users [bold]\x1b[2J", r"user \x1b[31m", r"\x1b]0;PWNED\x07[bold]rich[/bold] :thumbs_up:",
                  r"line [red]x[/red] \x9b31m"):
        assert shown in text, (shown, text)


def test_emit_json_and_error_line_escape_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json({"user": "\u001b[31m\u009b\u202e"})
    error_line("unknown user '\u001b[31mx'")
    captured = capsys.readouterr()
    assert not any(ch in captured.out + captured.err for ch in "\u001b\u009b\u202e")
    assert json.loads(captured.out) == {"user": "\u001b[31m\u009b\u202e"}  # the same string, escaped
    assert captured.err == "error: unknown user '\\x1b[31mx'\n"
