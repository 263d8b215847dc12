"""The catalog's typed schema: ``ModelSpec``, ``Pricing``, ``Deprecation``, ``ProviderSpec``.

Every field is documented in ``docs/catalog.md``. Capabilities come from one vocabulary,
``CAPABILITIES``. Specs are validated once, when the catalog loads; the hot path reads attributes.

Must not touch: I/O (loading lives in ``catalog.loader``), selection logic.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAPABILITIES: frozenset[str] = frozenset(
    {
        "chat",
        "completion",
        "embeddings",
        "tool_calling",
        "parallel_tool_calls",
        "vision",
        "audio_input",
        "audio_output",
        "json_mode",
        "structured_output",
        "streaming",
        "reasoning",
        "long_context",
        "system_messages",
        "prompt_caching",
        "web_search",
        "pdf_input",
    }
)
"""The capability vocabulary. ``long_context`` means a window of at least 100k tokens."""

CATEGORIES: tuple[str, ...] = ("basic", "reasoning", "creative", "analytical", "comprehensive")
"""Primary categories, from the seeds. ``quality`` ranking orders them comprehensive > reasoning >
analytical > creative > basic (see docs/catalog.md)."""

COST_TIERS: tuple[str, ...] = ("lowest", "low", "medium", "high")

MODALITIES: frozenset[str] = frozenset({"text", "image", "audio", "video", "pdf", "embedding"})

PROTOCOLS: tuple[str, ...] = ("openai", "azure", "anthropic", "gemini", "bedrock")

LONG_CONTEXT_TOKENS = 100_000

# Blended price (USD per million tokens, 1:3 input:output weighting as in docs/catalog.md) thresholds
COST_TIER_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.30, "lowest"), (2.0, "low"), (8.0, "medium"))


def cost_tier_for(pricing: Pricing) -> str:
    """Derive a cost tier from prices: blended = (input + 3 * output) / 4 per million tokens."""
    blended = (pricing.input_per_mtok + 3 * pricing.output_per_mtok) / 4
    for limit, tier in COST_TIER_THRESHOLDS:
        if blended < limit:
            return tier
    return "high"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pricing(_Strict):
    """USD per million tokens. ``None`` for cached/reasoning means "same as input/output"."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0)
    reasoning_per_mtok: float | None = Field(None, ge=0)


class Deprecation(_Strict):
    deprecated: bool = False
    date: dt.date | None = None
    """Retirement (shutdown) date, or the announced deprecation date when no shutdown is set."""
    replacement: str | None = None
    """Canonical id of the model to migrate to."""
    note: str | None = None


class ModelSpec(_Strict):
    """Everything modelplex knows about one model at one provider."""

    id: str
    """Canonical id ``provider/model``; the model part is what goes on the wire unless ``wire_name`` is set."""
    provider: str
    family: str = ""
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    wire_name: str | None = None
    """The provider's own name when it differs from the id's model part (Azure deployments aside)."""
    mode: Literal["chat", "embedding"] = "chat"

    # limits
    context_window: int = Field(gt=0)
    max_input_tokens: int | None = Field(None, gt=0)
    max_output_tokens: int = Field(4096, gt=0)
    embedding_dimensions: int | None = None

    # capabilities
    capabilities: frozenset[str] = frozenset()
    input_modalities: frozenset[str] = frozenset({"text"})
    output_modalities: frozenset[str] = frozenset({"text"})
    category: Literal["basic", "reasoning", "creative", "analytical", "comprehensive"] = "basic"
    cost_tier: Literal["lowest", "low", "medium", "high"] | None = None
    """Relative cost; derived from pricing by ``cost_tier_for`` when not set."""
    quality: float | None = Field(None, ge=0, le=100)
    """Optional quality score 0-100 (a public benchmark blend); breaks ties within a category and tier."""

    # prices
    pricing: Pricing = Pricing()

    # parameters
    supported_params: frozenset[str] | None = None
    """OpenAI-named parameters the model accepts; ``None`` means the protocol default set."""
    param_mappings: dict[str, str] = {}
    """OpenAI name -> provider name, on top of the protocol's own mappings."""
    default_params: dict[str, Any] = {}
    api_requirements: dict[str, Any] = {}
    """Protocol facts a call must respect, e.g. ``{"max_tokens_required": true}`` or ``{"api_version": ...}``."""
    tokenizer: str | None = None
    """tiktoken encoding name (``o200k_base``, ``cl100k_base``) when exact counting is possible."""

    # lifecycle and provenance
    deprecation: Deprecation = Deprecation()
    source: str = "bundled"
    as_of: dt.date | None = None

    @field_validator("capabilities", mode="before")
    @classmethod
    def _check_capabilities(cls, v: Any) -> frozenset[str]:
        caps = frozenset(v or ())
        unknown = caps - CAPABILITIES
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; the vocabulary is {sorted(CAPABILITIES)}")
        return caps

    @field_validator("input_modalities", "output_modalities", mode="before")
    @classmethod
    def _check_modalities(cls, v: Any) -> frozenset[str]:
        mods = frozenset(v or ())
        unknown = mods - MODALITIES
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected some of {sorted(MODALITIES)}")
        return mods

    @model_validator(mode="after")
    def _derive(self) -> ModelSpec:
        if "/" not in self.id:
            raise ValueError(f"id {self.id!r} must be 'provider/model'")
        if not self.id.startswith(self.provider + "/"):
            raise ValueError(f"id {self.id!r} must start with its provider {self.provider!r}/")
        # frozen model: use object.__setattr__ for derived fields
        if self.cost_tier is None:
            object.__setattr__(self, "cost_tier", cost_tier_for(self.pricing))
        caps = set(self.capabilities)
        if self.mode == "chat":
            caps.add("chat")
        else:
            caps.add("embeddings")
        if self.context_window >= LONG_CONTEXT_TOKENS and self.mode == "chat":
            caps.add("long_context")
        if caps != self.capabilities:
            object.__setattr__(self, "capabilities", frozenset(caps))
        if not self.display_name:
            object.__setattr__(self, "display_name", self.model_name)
        return self

    # ------------------------------------------------------------------ convenience

    @property
    def model_name(self) -> str:
        """The id without its provider prefix."""
        return self.id[len(self.provider) + 1 :]

    @property
    def api_model(self) -> str:
        """The model name sent on the wire."""
        return self.wire_name or self.model_name

    @property
    def deprecated(self) -> bool:
        return self.deprecation.deprecated

    @property
    def input_limit(self) -> int:
        return self.max_input_tokens or self.context_window

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def to_public_dict(self) -> dict[str, Any]:
        """The documented JSON shape of ``models list/show`` (flat, every field)."""
        p = self.pricing
        return {
            "id": self.id,
            "provider": self.provider,
            "family": self.family,
            "display_name": self.display_name,
            "aliases": list(self.aliases),
            "mode": self.mode,
            "context_window": self.context_window,
            "max_input_tokens": self.max_input_tokens,
            "max_output_tokens": self.max_output_tokens,
            "embedding_dimensions": self.embedding_dimensions,
            "input_cost_per_mtok": p.input_per_mtok,
            "output_cost_per_mtok": p.output_per_mtok,
            "cached_input_cost_per_mtok": p.cached_input_per_mtok,
            "cache_write_cost_per_mtok": p.cache_write_per_mtok,
            "reasoning_cost_per_mtok": p.reasoning_per_mtok,
            "capabilities": sorted(self.capabilities),
            "input_modalities": sorted(self.input_modalities),
            "output_modalities": sorted(self.output_modalities),
            "category": self.category,
            "cost_tier": self.cost_tier,
            "quality": self.quality,
            "supported_params": sorted(self.supported_params) if self.supported_params is not None else None,
            "param_mappings": dict(self.param_mappings),
            "default_params": dict(self.default_params),
            "api_requirements": dict(self.api_requirements),
            "tokenizer": self.tokenizer,
            "deprecated": self.deprecation.deprecated,
            "deprecation_date": self.deprecation.date.isoformat() if self.deprecation.date else None,
            "replacement": self.deprecation.replacement,
            "source": self.source,
            "as_of": self.as_of.isoformat() if self.as_of else None,
        }


class ProviderSpec(_Strict):
    """A provider: where it lives and how to authenticate. An OpenAI-compatible vendor is just this data."""

    name: str
    protocol: Literal["openai", "azure", "anthropic", "gemini", "bedrock"]
    display_name: str = ""
    base_url: str | None = None
    api_key_env: tuple[str, ...] = ()
    """Environment variables checked in order for the key."""
    extra_headers: dict[str, str] = {}
    """Sent on every call (e.g. OpenRouter's ``HTTP-Referer`` and ``X-Title``)."""
    profile: dict[str, Any] = {}
    """Protocol quirks as data: e.g. ``{"stream_usage": true, "reports_cost": true,
    "max_tokens_param": "max_completion_tokens"}``."""
    requires_key: bool = True
    """False for local servers (Ollama, vLLM) that take no key."""
    # Azure
    endpoint_env: str | None = None
    api_version: str | None = None
    # Bedrock
    region_env: tuple[str, ...] = ()
