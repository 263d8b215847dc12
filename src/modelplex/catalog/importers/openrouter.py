"""Import OpenRouter's model list (``GET /api/v1/models``) into catalog overlay entries.

Owns: the mapping from OpenRouter's model objects (``id``, ``name``, ``context_length``,
``pricing`` as per-token decimal strings, ``top_provider.max_completion_tokens``,
``architecture.input_modalities``/``output_modalities``, ``supported_parameters``,
``expiration_date``) onto ``ModelSpec`` fields. Ids become ``openrouter/<id>``, the wire name is
OpenRouter's id.

Skipped: entries without an id or a context length, and routers with variable pricing (a price of
``-1``, e.g. ``openrouter/auto``).

Must not touch: the network (the caller fetches the JSON), the ``Catalog``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelplex.catalog.importers.result import (
    ImportResult,
    default_base,
    family_name,
    load_json_source,
    per_million,
    provider_entry,
    reconcile_all,
)
from modelplex.catalog.params import PARAMS
from modelplex.catalog.schema import ModelSpec
from modelplex.catalog.store import Catalog
from modelplex.errors import ConfigError

SOURCE = "openrouter"
PROVIDER = "openrouter"
BASE_URL = "https://openrouter.ai/api/v1"

_MODALITIES: dict[str, str] = {"text": "text", "image": "image", "audio": "audio", "video": "video",
                               "file": "pdf", "embeddings": "embedding", "embedding": "embedding"}

_PARAM_CAPABILITIES: dict[str, str] = {
    "tools": "tool_calling",
    "parallel_tool_calls": "parallel_tool_calls",
    "response_format": "json_mode",
    "structured_outputs": "structured_output",
    "reasoning": "reasoning",
    "include_reasoning": "reasoning",
    "web_search_options": "web_search",
}

_PARAM_NAMES: dict[str, str] = {"reasoning": "reasoning_effort", "structured_outputs": "response_format"}
"""OpenRouter's parameter name -> the OpenAI-named parameter it enables, where they differ."""

_ALWAYS_SUPPORTED = frozenset({"timeout", "user", "metadata", "stop"}) & frozenset(PARAMS)
"""Accepted by OpenRouter for every model, whether or not ``supported_parameters`` lists them."""


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 1:
        return None
    return int(value)


def _variable_price(pricing: Mapping[str, Any]) -> bool:
    for key in ("prompt", "completion"):
        try:
            if float(pricing.get(key, 0) or 0) < 0:
                return True
        except (TypeError, ValueError):
            return True
    return False


def convert_model(item: Mapping[str, Any], *, as_of: dt.date) -> dict[str, Any]:
    """One OpenRouter model object as ModelSpec fields."""
    or_id = str(item["id"])
    arch = item.get("architecture") or {}
    inputs = {_MODALITIES[m] for m in arch.get("input_modalities") or () if m in _MODALITIES} or {"text"}
    outputs = {_MODALITIES[m] for m in arch.get("output_modalities") or () if m in _MODALITIES} or {"text"}
    mode = "embedding" if "embedding" in outputs else "chat"
    context = int(item["context_length"])
    top = item.get("top_provider") or {}
    params = [str(p) for p in item.get("supported_parameters") or ()]

    caps: set[str] = {_PARAM_CAPABILITIES[p] for p in params if p in _PARAM_CAPABILITIES}
    if "structured_output" in caps:
        caps.add("json_mode")
    if "image" in inputs:
        caps.add("vision")
    if "audio" in inputs:
        caps.add("audio_input")
    if "pdf" in inputs:
        caps.add("pdf_input")
    if "audio" in outputs:
        caps.add("audio_output")
    pricing_raw = item.get("pricing") or {}
    pricing: dict[str, float] = {
        "input_per_mtok": per_million(pricing_raw.get("prompt")) or 0.0,
        "output_per_mtok": per_million(pricing_raw.get("completion")) or 0.0,
    }
    for ours, theirs in (("cached_input_per_mtok", "input_cache_read"),
                         ("cache_write_per_mtok", "input_cache_write"),
                         ("reasoning_per_mtok", "internal_reasoning")):
        value = per_million(pricing_raw.get(theirs))
        if value is not None and (value > 0 or theirs != "internal_reasoning"):
            pricing[ours] = value
    if pricing.get("cached_input_per_mtok"):
        caps.add("prompt_caching")

    out: dict[str, Any] = {
        "id": f"{PROVIDER}/{or_id}",
        "provider": PROVIDER,
        "family": family_name(or_id),
        "display_name": str(item.get("name") or or_id),
        "mode": mode,
        "context_window": context,
    }
    if mode == "chat":
        caps.update(("streaming", "system_messages"))
        out["max_output_tokens"] = _positive_int(top.get("max_completion_tokens")) or context
        supported = {_PARAM_NAMES.get(p, p) for p in params} & set(PARAMS)
        if params:
            if "tools" in params:
                supported.add("parallel_tool_calls")
            out["supported_params"] = sorted(supported | _ALWAYS_SUPPORTED)
    else:
        caps = {c for c in caps if c in ("vision",)}
    if caps:
        out["capabilities"] = sorted(caps)
    if inputs != {"text"}:
        out["input_modalities"] = sorted(inputs)
    if outputs != {"text"}:
        out["output_modalities"] = sorted(outputs)
    if "reasoning" in caps:
        out["category"] = "reasoning"
    out["pricing"] = pricing
    expires = _as_date(item.get("expiration_date"))
    if expires is not None:
        out["deprecation"] = {"deprecated": expires <= as_of, "date": expires.isoformat()}
    out["source"] = SOURCE
    out["as_of"] = as_of.isoformat()
    return out


def _provider(base: Catalog) -> dict[str, Any]:
    """Just the protocol when the base catalog defines OpenRouter; otherwise its public endpoint."""
    if base.find_provider(PROVIDER) is not None:
        return provider_entry(PROVIDER, base)
    return {"name": PROVIDER, "protocol": "openai", "display_name": "OpenRouter", "base_url": BASE_URL,
            "api_key_env": ["OPENROUTER_API_KEY"]}


def _skip_reason(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return "not_an_object"
    if not isinstance(item.get("id"), str) or not item["id"]:
        return "no_id"
    if _positive_int(item.get("context_length")) is None:
        return "no_context_window"
    if _variable_price(item.get("pricing") or {}):
        return "variable_pricing"
    return None


def import_openrouter(source: str | Path | Mapping[str, Any] | list[Any], *, as_of: dt.date | None = None,
                      base: Catalog | None = None) -> ImportResult:
    """Convert OpenRouter's ``/api/v1/models`` answer (a path, JSON text, or parsed ``{"data": [...]}``
    or list). ``as_of`` (default today) stamps entries and decides whether expirations have passed.
    ``base`` as for ``import_litellm`` (default: the bundled catalog)."""
    data, origin = load_json_source(source)
    items = data.get("data") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ConfigError('expected {"data": [model, ...]} as returned by GET /api/v1/models',
                          file=None if origin.startswith("<") else origin)
    day = as_of or dt.date.today()
    skipped: Counter[str] = Counter()
    chosen: dict[str, dict[str, Any]] = {}
    for item in items:
        reason = _skip_reason(item)
        if reason is not None:
            skipped[reason] += 1
            continue
        converted = convert_model(item, as_of=day)
        try:
            ModelSpec.model_validate(converted)
        except ValidationError:
            skipped["invalid"] += 1
            continue
        if converted["id"] in chosen:
            skipped["duplicate_id"] += 1
            continue
        chosen[converted["id"]] = converted
    base_catalog = default_base() if base is None else base
    models, matched = reconcile_all([chosen[k] for k in sorted(chosen)], base_catalog)
    providers = [_provider(base_catalog)] if models else []
    return ImportResult(models=models, providers=providers, skipped=dict(sorted(skipped.items())),
                        source=SOURCE, as_of=day, origin=origin, matched_base=matched)
