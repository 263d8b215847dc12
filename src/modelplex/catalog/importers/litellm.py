"""Import LiteLLM's ``model_prices_and_context_window.json`` into catalog overlay entries.

Owns: the mapping from LiteLLM's map (per-token prices, ``litellm_provider``, ``supports_*``
flags, ``deprecation_date`` ...) onto ``ModelSpec`` fields, LiteLLM provider names onto modelplex
provider names, and LiteLLM keys onto canonical ``provider/model`` ids.

Rules (see docs/catalog.md, "Importers"):

* modes ``chat`` and ``responses`` become chat models (``responses`` ones carry
  ``api_requirements.endpoint: responses``); ``completion`` ones become chat models with the
  ``completion`` capability and ``api_requirements.endpoint: completions``, except those of the
  text-completion-only providers, which are skipped; ``embedding`` stays embedding; other modes
  are skipped.
* entries without a context window, without per-token prices, price templates (``ft:``
  fine-tune templates, Together's size brackets) and provisioned-throughput commitments are skipped.
* when two keys produce one id, the entry from the provider's own platform wins (Gemini's own API
  over Vertex), then a key that carries the provider prefix.
* ``max_input_tokens`` is an input limit: models the base catalog has keep its curated limits
  (``reconcile``), and a sibling of a curated model that caps input below its window takes that
  window (``_split_windows``).

Must not touch: the network, the ``Catalog`` (this produces plain dicts; the loader validates).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
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
from modelplex.catalog.schema import MODALITIES, ModelSpec
from modelplex.catalog.store import Catalog
from modelplex.errors import ConfigError

SOURCE = "litellm"

PROVIDER_NAMES: dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure",
    "azure_text": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "groq": "groq",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "mistral": "mistral",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "fireworks_ai-embedding-models": "fireworks",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "siliconflow": "siliconflow",
    "cohere_chat": "cohere",
    "text-completion-codestral": "codestral",
    "text-completion-inception": "inception",
    "xai": "xai",
}
"""LiteLLM provider -> modelplex provider. ``vertex_ai`` and ``vertex_ai-*`` map to ``gemini`` for
Gemini models and to ``vertex_ai`` otherwise; every other LiteLLM name is kept as it is."""

COMPLETION_ONLY_PROVIDERS = frozenset({"text-completion-openai", "azure_text", "text-completion-codestral",
                                       "text-completion-inception"})
"""LiteLLM providers whose entries only work on a legacy text-completions endpoint."""

JSON_MODE_PROVIDERS = frozenset({"openai", "azure", "deepseek", "groq", "mistral", "together", "fireworks",
                                 "xai"})
"""Providers whose chat endpoint accepts ``response_format: {"type": "json_object"}`` for every chat model."""

KEPT_MODES: dict[str, str] = {"chat": "chat", "responses": "chat", "completion": "chat", "embedding": "embedding"}

_REGION_SEGMENT = re.compile(r"^(?:[a-z]{2}(?:-gov)?-[a-z]+-\d+|eu|us|us-gov|apac|global|global-standard)$")
_COMMITMENT_SEGMENT = re.compile(r"^\d+-months?-commitment$")
_PRICE_BRACKET = re.compile(r"^together-ai-")
_REGIONAL_PROVIDERS = frozenset({"bedrock", "azure", "bedrock_mantle"})

_FLAG_CAPABILITIES: tuple[tuple[str, str], ...] = (
    ("supports_function_calling", "tool_calling"),
    ("supports_parallel_function_calling", "parallel_tool_calls"),
    ("supports_vision", "vision"),
    ("supports_audio_input", "audio_input"),
    ("supports_audio_output", "audio_output"),
    ("supports_reasoning", "reasoning"),
    ("supports_prompt_caching", "prompt_caching"),
    ("supports_web_search", "web_search"),
    ("supports_pdf_input", "pdf_input"),
)
_CAPABILITY_MODALITY: dict[str, str] = {"vision": "image", "audio_input": "audio", "pdf_input": "pdf"}


def provider_for(litellm_provider: str, model_part: str) -> str:
    """The modelplex provider name for a LiteLLM provider (and model, for Vertex)."""
    if litellm_provider == "vertex_ai" or litellm_provider.startswith("vertex_ai-"):
        return "gemini" if model_part.startswith("gemini") else "vertex_ai"
    return PROVIDER_NAMES.get(litellm_provider, litellm_provider)


def _model_part(key: str, litellm_provider: str, provider: str) -> str:
    """The LiteLLM key without a leading provider prefix."""
    prefixes = {litellm_provider, provider, litellm_provider.split("-", 1)[0], litellm_provider.replace("_", "-")}
    for prefix in sorted(prefixes, key=len, reverse=True):
        if key.startswith(prefix + "/"):
            return key[len(prefix) + 1:]
    return key


def _skip_reason(key: str, entry: Mapping[str, Any]) -> str | None:
    mode = entry.get("mode")
    if mode not in KEPT_MODES:
        return f"mode:{mode}" if mode else "no_mode"
    litellm_provider = entry.get("litellm_provider")
    if not isinstance(litellm_provider, str) or not litellm_provider:
        return "no_provider"
    if mode == "completion" and litellm_provider in COMPLETION_ONLY_PROVIDERS:
        return "completion_endpoint_only"
    if key.startswith("ft:"):
        return "fine_tune_template"
    if _PRICE_BRACKET.match(key):
        return "price_bracket"
    if any(_COMMITMENT_SEGMENT.match(seg) for seg in key.split("/")):
        return "provisioned_throughput"
    base = _base_prices(entry)
    if per_million(base.get("input_cost_per_token")) is None and per_million(base.get("output_cost_per_token")) is None:
        return "no_token_pricing"
    return None


def _base_prices(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where the per-token prices live: the entry itself, or the first tier of ``tiered_pricing``
    (the tier that starts at 0 tokens) when the entry has no flat price."""
    if "input_cost_per_token" in entry or "output_cost_per_token" in entry:
        return entry
    tiers = entry.get("tiered_pricing")
    if isinstance(tiers, list):
        for tier in tiers:
            if isinstance(tier, Mapping):
                bounds = tier.get("range")
                if not isinstance(bounds, list) or not bounds or bounds[0] in (0, 0.0):
                    return tier
    return entry


def _limits(entry: Mapping[str, Any]) -> tuple[int, int | None] | None:
    """(context window, max output tokens) stated by the entry, or ``None`` when it states no window."""
    context = _positive_int(entry.get("max_input_tokens")) or _positive_int(entry.get("max_tokens"))
    if context is None:
        return None
    return context, _positive_int(entry.get("max_output_tokens")) or _positive_int(entry.get("max_tokens"))


_VENDOR_PROVIDERS: dict[str, str] = {"google": "gemini", "meta-llama": "meta_llama", "mistralai": "mistral",
                                     "moonshotai": "moonshot", "zai-org": "zai"}


class _KnownLimits:
    """Windows stated elsewhere in the map, by model leaf name (``gpt-4o``) and provider, to fill in
    entries that state none: the same provider's entry first, then the model vendor's own
    (``replicate/openai/gpt-4o`` -> ``openai``), then the smallest window any host states."""

    def __init__(self) -> None:
        self._by_leaf: dict[str, dict[str, tuple[int, int | None]]] = {}

    @staticmethod
    def _leaf(rest: str) -> tuple[str, str | None]:
        parts = rest.lower().split("/")
        return parts[-1], (parts[-2] if len(parts) > 1 else None)

    def add(self, rest: str, provider: str, limits: tuple[int, int | None]) -> None:
        leaf, _ = self._leaf(rest)
        self._by_leaf.setdefault(leaf, {}).setdefault(provider, limits)

    def lookup(self, rest: str, provider: str) -> tuple[int, int | None] | None:
        leaf, vendor = self._leaf(rest)
        known = self._by_leaf.get(leaf)
        if not known:
            return None
        if provider in known:
            return known[provider]
        if vendor is not None:
            own = known.get(_VENDOR_PROVIDERS.get(vendor, vendor))
            if own is not None:
                return own
        return min(known.values(), key=lambda limits: limits[0])


def _split_windows(models: list[dict[str, Any]], base: Catalog) -> int:
    """Give entries for models ``base`` does not have the window of a curated sibling, where that is
    known: LiteLLM's ``max_input_tokens`` is an input limit, and for some models the window is larger
    (GPT-5: 272,000 input + 128,000 output = 400,000). A chat entry whose provider and family match
    base models that cap input below the window, with the same input and output limits, takes their
    window and records the input cap as ``max_input_tokens``. Returns how many entries changed."""
    windows: dict[tuple[str, str, int, int], set[int]] = {}
    for spec in base:
        if spec.mode == "chat" and spec.max_input_tokens is not None and spec.family:
            key = (spec.provider, spec.family, spec.max_input_tokens, spec.max_output_tokens)
            windows.setdefault(key, set()).add(spec.context_window)
    if not windows:
        return 0
    changed = 0
    for entry in models:
        if entry.get("mode") != "chat" or "max_input_tokens" in entry:
            continue
        known = base.find(entry["id"])
        if known is not None and known.id == entry["id"]:
            continue  # reconciled: the curated limits stand
        found = windows.get((entry["provider"], entry.get("family", ""), entry["context_window"],
                             entry.get("max_output_tokens", 0)))
        if found is None or len(found) != 1:
            continue
        window = next(iter(found))
        if window > entry["context_window"]:
            entry["max_input_tokens"] = entry["context_window"]
            entry["context_window"] = window
            changed += 1
    return changed


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 1:
        return None
    return int(value)


def _modalities(values: Any) -> set[str]:
    if not isinstance(values, list):
        return set()
    return {str(v) for v in values} & MODALITIES


def _tokenizer(provider: str, model_part: str) -> str | None:
    if provider not in ("openai", "azure"):
        return None
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:  # pragma: no cover - tiktoken is a core dependency
        return None
    try:
        return encoding_name_for_model(model_part.rsplit("/", 1)[-1])
    except KeyError:
        return None


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _identity(key: str, entry: Mapping[str, Any]) -> tuple[str, str]:
    """(modelplex provider, model part of the id) of an entry."""
    litellm_provider = str(entry["litellm_provider"])
    rest = _model_part(key, litellm_provider, PROVIDER_NAMES.get(litellm_provider, litellm_provider))
    return provider_for(litellm_provider, rest), rest


def convert_entry(key: str, entry: Mapping[str, Any], *, as_of: dt.date,
                  limits: tuple[int, int | None] | None = None) -> dict[str, Any]:
    """One LiteLLM entry (already past ``_skip_reason``) as ModelSpec fields. ``limits`` (context
    window, max output) fills in an entry that states no window."""
    mode = KEPT_MODES[str(entry["mode"])]
    provider, rest = _identity(key, entry)
    wire_name: str | None = None
    requirements: dict[str, Any] = {}
    if provider in _REGIONAL_PROVIDERS and "/" in rest:
        region, _, bare = rest.partition("/")
        if _REGION_SEGMENT.match(region):
            wire_name = bare
            requirements["region"] = region
    if entry["mode"] == "responses":
        requirements["endpoint"] = "responses"
    elif entry["mode"] == "completion":
        requirements["endpoint"] = "completions"

    context, stated_output = _limits(entry) or limits or (1, None)
    out: dict[str, Any] = {
        "id": f"{provider}/{rest}",
        "provider": provider,
        "family": family_name(wire_name or rest, bedrock_style=provider in ("bedrock", "bedrock_mantle")),
        "mode": mode,
        "context_window": context,
    }
    if wire_name:
        out["wire_name"] = wire_name

    caps: set[str] = set()
    inputs = _modalities(entry.get("supported_modalities")) or {"text"}
    outputs = _modalities(entry.get("supported_output_modalities"))
    for flag, cap in _FLAG_CAPABILITIES:
        if entry.get(flag) is True:
            caps.add(cap)
            if cap in _CAPABILITY_MODALITY:
                inputs.add(_CAPABILITY_MODALITY[cap])
    if entry.get("supports_video_input") is True:
        inputs.add("video")
    if per_million(_base_prices(entry).get("cache_read_input_token_cost")) is not None:
        caps.add("prompt_caching")
    if mode == "chat":
        if entry.get("supports_response_schema") is True:
            caps.update(("structured_output", "json_mode"))
        if provider in JSON_MODE_PROVIDERS and entry["mode"] != "completion":
            caps.add("json_mode")
        if entry.get("supports_native_streaming") is not False:
            caps.add("streaming")
        if entry.get("supports_system_messages") is not False:
            caps.add("system_messages")
        if entry["mode"] == "completion":
            caps.add("completion")
        if "audio" in outputs:
            caps.add("audio_output")
        outputs = outputs or {"text"}
        out["max_output_tokens"] = stated_output or context
    else:
        caps -= {"tool_calling", "parallel_tool_calls", "reasoning", "web_search", "prompt_caching"}
        if entry.get("supports_embedding_image_input") is True:
            inputs.add("image")
        outputs = {"embedding"}
        dims = entry.get("output_vector_size")
        if isinstance(dims, int) and dims > 0:
            out["embedding_dimensions"] = dims
    if caps:
        out["capabilities"] = sorted(caps)
    if inputs != {"text"}:
        out["input_modalities"] = sorted(inputs)
    if outputs != {"text"}:
        out["output_modalities"] = sorted(outputs)
    if "reasoning" in caps:
        out["category"] = "reasoning"

    prices = _base_prices(entry)
    pricing: dict[str, float] = {
        "input_per_mtok": per_million(prices.get("input_cost_per_token")) or 0.0,
        "output_per_mtok": per_million(prices.get("output_cost_per_token")) or 0.0,
    }
    cached = per_million(prices.get("cache_read_input_token_cost"))
    if cached is None:
        cached = per_million(prices.get("input_cost_per_token_cache_hit"))
    for name, value in (("cached_input_per_mtok", cached),
                        ("cache_write_per_mtok", per_million(prices.get("cache_creation_input_token_cost"))),
                        ("reasoning_per_mtok", per_million(prices.get("output_cost_per_reasoning_token")))):
        if value is not None:
            pricing[name] = value
    out["pricing"] = pricing

    if requirements:
        out["api_requirements"] = requirements
    tokenizer = _tokenizer(provider, wire_name or rest)
    if tokenizer:
        out["tokenizer"] = tokenizer
    retire = _as_date(entry.get("deprecation_date"))
    if retire is not None:
        out["deprecation"] = {"deprecated": retire <= as_of, "date": retire.isoformat()}
    out["source"] = SOURCE
    out["as_of"] = as_of.isoformat()
    return out


def _priority(key: str, entry: Mapping[str, Any], provider: str) -> tuple[int, int]:
    """Lower wins when two keys produce the same id."""
    litellm_provider = str(entry["litellm_provider"])
    foreign_platform = int(PROVIDER_NAMES.get(litellm_provider, litellm_provider) != provider)
    unprefixed = int("/" not in key)
    return foreign_platform, unprefixed


def import_litellm(source: str | Path | Mapping[str, Any], *, as_of: dt.date | None = None,
                   providers: Iterable[str] | None = None, base: Catalog | None = None) -> ImportResult:
    """Convert LiteLLM's price map (a path, ``.gz`` path, JSON text or parsed dict).

    ``as_of`` (default today) stamps every entry and decides which deprecation dates have passed.
    ``providers`` keeps only those modelplex provider names. ``base`` is the catalog the overlay will
    be applied to (default: the bundled one; ``Catalog()`` for a standalone import): entries for
    models it already has keep its curated fields (see ``reconcile``), and providers it defines get
    a protocol-only entry.
    """
    data, origin = load_json_source(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a JSON object of model name -> entry, got {type(data).__name__}",
                          file=None if origin.startswith("<") else origin)
    day = as_of or dt.date.today()
    wanted = set(providers) if providers is not None else None
    skipped: Counter[str] = Counter()
    filled: Counter[str] = Counter()
    candidates: list[tuple[str, Mapping[str, Any]]] = []
    known_limits = _KnownLimits()
    for key, entry in data.items():
        if key == "sample_spec":
            continue
        if not isinstance(entry, Mapping):
            skipped["not_an_object"] += 1
            continue
        if entry.get("mode") in KEPT_MODES and isinstance(entry.get("litellm_provider"), str):
            stated = _limits(entry)
            if stated is not None:
                provider, rest = _identity(key, entry)
                known_limits.add(rest, provider, stated)
        reason = _skip_reason(key, entry)
        if reason is not None:
            skipped[reason] += 1
            continue
        candidates.append((key, entry))
    chosen: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
    for key, entry in candidates:
        borrowed = None
        if _limits(entry) is None:
            provider, rest = _identity(key, entry)
            borrowed = known_limits.lookup(rest, provider)
            if borrowed is None:
                skipped["no_context_window"] += 1
                continue
            filled["context_window_from_same_model"] += 1
        if _base_prices(entry) is not entry:
            filled["price_from_first_tier"] += 1
        converted = convert_entry(key, entry, as_of=day, limits=borrowed)
        if wanted is not None and converted["provider"] not in wanted:
            skipped["provider_filtered"] += 1
            continue
        try:
            ModelSpec.model_validate(converted)
        except ValidationError:
            skipped["invalid"] += 1
            continue
        rank = _priority(key, entry, converted["provider"])
        previous = chosen.get(converted["id"])
        if previous is not None:
            skipped["duplicate_id"] += 1
            if previous[0] <= rank:
                continue
        chosen[converted["id"]] = (rank, converted)
    base_catalog = default_base() if base is None else base
    models, matched = reconcile_all([chosen[k][1] for k in sorted(chosen)], base_catalog)
    split = _split_windows(models, base_catalog)
    if split:
        filled["context_window_from_curated_family"] += split
    names = sorted({m["provider"] for m in models})
    return ImportResult(models=models, providers=[provider_entry(n, base_catalog) for n in names],
                        skipped=dict(sorted(skipped.items())), filled=dict(sorted(filled.items())),
                        source=SOURCE, as_of=day, origin=origin, matched_base=matched)
