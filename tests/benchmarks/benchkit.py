"""Test helper: import modules of the repository's ``benchmarks`` package (not installed; it sits beside
``src``) without leaving the repository root on ``sys.path``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def bench_modules(*names: str) -> tuple[ModuleType, ...]:
    """``benchmarks.<name>`` for each name, in order."""
    sys.path.insert(0, str(REPO))
    try:
        return tuple(importlib.import_module(f"benchmarks.{name}") for name in names)
    finally:
        sys.path.remove(str(REPO))
