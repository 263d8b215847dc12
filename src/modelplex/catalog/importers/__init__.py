"""Importers: convert external model lists into catalog overlay entries.

Owns: re-exporting ``import_litellm`` (LiteLLM's price and context-window map), ``import_openrouter``
(OpenRouter's ``GET /api/v1/models``), ``ImportResult`` and ``write_overlay``. Each importer is a
pure conversion from data the caller already has to plain dicts; ``load_catalog`` validates them.

Must not touch: the network, the ``Catalog`` store.
"""

from __future__ import annotations

from collections.abc import Callable

from modelplex.catalog.importers.litellm import import_litellm
from modelplex.catalog.importers.openrouter import import_openrouter
from modelplex.catalog.importers.result import ImportResult, load_json_source, write_overlay

FORMATS: dict[str, Callable[..., ImportResult]] = {"litellm": import_litellm, "openrouter": import_openrouter}
"""``modelplex catalog import --format NAME`` -> importer."""

__all__ = ["FORMATS", "ImportResult", "import_litellm", "import_openrouter", "load_json_source", "write_overlay"]
