"""What an importer produces, how it is written out, and the helpers the importers share.

Owns: ``ImportResult`` (model and provider entries as plain dicts in overlay shape, plus counts of
what was skipped and why), ``write_overlay`` (YAML for ``load_catalog(overlays=[...])``), reading a
JSON source (path, ``.gz`` path, text or already-parsed data), price conversion and family names.

Must not touch: the network (sources are files or data the caller already has), the ``Catalog``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from modelplex.catalog.schema import ModelSpec
from modelplex.catalog.store import Catalog
from modelplex.errors import ConfigError

_YamlDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

PER_MILLION = 1_000_000

DEFAULT_PROTOCOLS: dict[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "bedrock": "bedrock",
}
"""Providers whose name is their protocol; every other imported provider is OpenAI-compatible
(``protocol: openai``) until the user configures it otherwise."""


@dataclass(slots=True)
class ImportResult:
    """Catalog entries converted from a foreign model list, in overlay shape.

    ``models`` are ModelSpec fields (canonical ids, prices per million tokens, ``source`` and
    ``as_of`` set); ``providers`` are ProviderSpec fields with ``name``; ``skipped`` counts the
    source entries left out, by reason.
    """

    models: list[dict[str, Any]]
    providers: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    """Facts the source lacked for an entry and the importer filled in, by kind (counts)."""
    source: str = ""
    as_of: dt.date | None = None
    origin: str = ""
    """Where the data came from (a file path), for the overlay header."""
    matched_base: int = 0
    """Entries whose id the base catalog already has: their curated fields and limits were kept
    (``reconcile``)."""

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def to_overlay(self) -> dict[str, Any]:
        """``{"providers": {name: fields}, "models": [...]}`` as ``load_catalog`` reads it."""
        providers = {p["name"]: {k: v for k, v in p.items() if k != "name"} for p in self.providers}
        return {"providers": providers, "models": list(self.models)}

    def summary(self) -> dict[str, Any]:
        by_provider: dict[str, int] = {}
        for m in self.models:
            by_provider[m["provider"]] = by_provider.get(m["provider"], 0) + 1
        return {
            "source": self.source,
            "origin": self.origin,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "models": len(self.models),
            "providers": len(self.providers),
            "matched_base": self.matched_base,
            "skipped": dict(sorted(self.skipped.items())),
            "filled": dict(sorted(self.filled.items())),
            "by_provider": dict(sorted(by_provider.items())),
        }


def default_base() -> Catalog:
    """The catalog an import is reconciled with by default: the bundled one (empty if it cannot load;
    the loader reports that problem where it belongs)."""
    from modelplex.catalog.loader import bundled_catalog

    try:
        return bundled_catalog()
    except ConfigError:
        return Catalog()


_CURATED_FIELDS = ("family", "display_name", "category", "tokenizer", "wire_name")
_DERIVED_CAPABILITIES = frozenset({"chat", "embeddings", "long_context"})


def reconcile(entry: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """An imported entry for a model the base catalog already curates, adjusted so that merging it
    refreshes facts (prices, dates) without undoing curation: the base's family, display name,
    category, tokenizer, wire name and supported parameters win; so do its limits (``context_window``,
    ``max_input_tokens``, ``max_output_tokens``), which are checked against the providers and differ
    from a source only deliberately (a window stated as input plus output, a stale figure the source
    still carries; see docs/catalog-sources.md); capabilities and modalities are the union;
    ``api_requirements`` merge; a deprecation, replacement or note in the base stays."""
    out = dict(entry)
    for name in _CURATED_FIELDS:
        value = getattr(spec, name)
        if value:
            out[name] = value
    out["context_window"] = spec.context_window
    if spec.max_input_tokens is not None:
        out["max_input_tokens"] = spec.max_input_tokens
    else:
        out.pop("max_input_tokens", None)
    if "max_output_tokens" in out:
        out["max_output_tokens"] = spec.max_output_tokens
    out["capabilities"] = sorted(set(entry.get("capabilities", ())) | (spec.capabilities - _DERIVED_CAPABILITIES))
    out["input_modalities"] = sorted(set(entry.get("input_modalities", ("text",))) | spec.input_modalities)
    out["output_modalities"] = sorted(set(entry.get("output_modalities", ("text",))) | spec.output_modalities)
    if spec.api_requirements:
        out["api_requirements"] = {**spec.api_requirements, **entry.get("api_requirements", {})}
    if spec.supported_params is not None:
        out["supported_params"] = sorted(spec.supported_params)
    dep = spec.deprecation
    if dep.deprecated or dep.date or dep.replacement or dep.note:
        imported = entry.get("deprecation") or {}
        merged: dict[str, Any] = {
            "deprecated": dep.deprecated or bool(imported.get("deprecated")),
            "date": dep.date.isoformat() if dep.date else imported.get("date"),
        }
        if dep.replacement:
            merged["replacement"] = dep.replacement
        if dep.note:
            merged["note"] = dep.note
        out["deprecation"] = merged
    return out


def reconcile_all(models: list[dict[str, Any]], base: Catalog) -> tuple[list[dict[str, Any]], int]:
    """``reconcile`` every entry whose id ``base`` has; returns (entries, how many matched)."""
    matched = 0
    out = []
    for entry in models:
        spec = base.find(entry["id"])
        if spec is not None and spec.id == entry["id"]:
            out.append(reconcile(entry, spec))
            matched += 1
        else:
            out.append(entry)
    return out, matched


def provider_entry(name: str, base: Catalog) -> dict[str, Any]:
    """A ProviderSpec entry that never clobbers configuration when merged: just the protocol for
    providers the base catalog defines (or whose name is a protocol), and protocol ``openai`` plus
    a display name for the rest (no ``base_url``: facts only until the user configures one)."""
    known = base.find_provider(name)
    if known is not None:
        return {"name": name, "protocol": known.protocol}
    if name in DEFAULT_PROTOCOLS:
        return {"name": name, "protocol": DEFAULT_PROTOCOLS[name]}
    return {"name": name, "protocol": "openai", "display_name": name.replace("_", " ").replace("-", " ").title()}


def write_overlay(result: ImportResult, path: str | Path) -> Path:
    """Write ``result`` as an overlay file (parents created) and return its path: YAML with a
    comment header, or JSON when the path ends in ``.json`` (the summary then sits under an
    ``import`` key, which the loader ignores). JSON loads many times faster for large imports."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".json":
        document = {"import": result.summary(), **result.to_overlay()}
        target.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        return target
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(result.skipped.items())) or "none"
    header = (
        f"# modelplex catalog overlay imported from {result.source or 'an external list'}"
        f"{' (' + result.origin + ')' if result.origin else ''}"
        f"{', as of ' + result.as_of.isoformat() if result.as_of else ''}.\n"
        f"# {len(result.models)} models, {len(result.providers)} providers; skipped: {skipped}.\n"
        "# Load with load_catalog(overlays=[this file]) or list it under catalog overlays in the config.\n"
        "# Providers added here are facts only (protocol openai, no base_url) until you configure them.\n"
    )
    body = yaml.dump(result.to_overlay(), Dumper=_YamlDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=None, width=120)
    target.write_text(header + body, encoding="utf-8")
    return target


def load_json_source(source: str | Path | Mapping[str, Any] | list[Any]) -> tuple[Any, str]:
    """(parsed JSON, origin) from a path (``.gz`` is decompressed), JSON text, or parsed data."""
    if isinstance(source, Mapping | list):
        return source, "<data>"
    text_source = isinstance(source, str) and source.lstrip()[:1] in ("{", "[")
    if text_source:
        try:
            return json.loads(str(source)), "<text>"
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    path = Path(source)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw), str(path)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"cannot read the file: {exc}", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                          file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 JSON: {exc}", file=str(path)) from None


def per_million(value: Any) -> float | None:
    """A per-token price (number or numeric string) as USD per million tokens, rounded to drop
    float noise; ``None`` for missing, non-numeric or negative values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    if price < 0 or price != price:
        return None
    return round(price * PER_MILLION, 6)


# Suffixes that name a snapshot of a model rather than a different model.
_SNAPSHOT_SUFFIX = re.compile(
    r"(?:"
    r"[:@][\w.-]*"                       # :0, @001, @20241022, @default
    r"|-\d{8}-v\d+"                      # bedrock -20240620-v1 (after :0 went)
    r"|-\d{4}-\d{2}-\d{2}"               # -2024-08-06
    r"|-\d{2}-\d{4}"                     # -08-2024
    r"|-\d{2}-\d{2}"                     # -05-20 (preview dates)
    r"|-\d{8}"                           # -20240620
    r"|-\d{6}"                           # -251201
    r"|-\d{3,4}"                         # -001, -0613, -2411, -2507
    r"|-latest|-preview|-exp|-experimental"
    r")$"
)
_BEDROCK_PREFIX = re.compile(r"^(?:(?:us|eu|apac|jp|au|ca|global|us-gov)\.)?([a-z0-9-]+)\.(?=[a-z])")


def family_name(model_name: str, *, bedrock_style: bool = False) -> str:
    """A family for grouping snapshots: the last path segment, lower-cased, without a Bedrock
    vendor prefix and without date/version/preview suffixes (``gpt-4o-2024-08-06`` -> ``gpt-4o``)."""
    name = model_name.rsplit("/", 1)[-1].lower()
    if bedrock_style:
        m = _BEDROCK_PREFIX.match(name)
        if m is not None:
            rest = name[m.end():]
            name = f"{m.group(1)}-{rest}" if re.match(r"v\d", rest) else rest
    for _ in range(4):
        stripped = _SNAPSHOT_SUFFIX.sub("", name)
        if stripped == name or not stripped:
            break
        name = stripped
    return name
