"""``python -m modelplex.testing``: the same as ``modelplex fake-providers`` (fake providers on loopback).

Owns: nothing but the entry point: it runs the CLI's ``fake-providers`` command, with the CLI's one-line
errors.
"""

from __future__ import annotations

import sys


def main() -> None:
    from modelplex.cli.main import app

    app(["fake-providers", *sys.argv[1:]], prog_name="python -m modelplex.testing")


if __name__ == "__main__":
    main()
