"""``python -m modelplex.testing``: the same as ``modelplex fake-providers`` (fake providers on loopback).

Owns: nothing but the entry point; the command lives in ``modelplex.cli.fake_providers``.
"""

from __future__ import annotations

import typer

from modelplex.cli.fake_providers import fake_providers_command


def main() -> None:
    typer.run(fake_providers_command)


if __name__ == "__main__":
    main()
