"""The model catalog: typed specs, the indexed store, the bundled data and its importers.

Owns: re-exporting the catalog's public names. ``schema`` holds the types, ``store`` the
``Catalog``, ``validation`` the parameter checks, ``loader`` the bundled data and overlays,
``params`` the parameter tables, ``importers`` the LiteLLM and OpenRouter converters (imported on
demand, not here).

Must not touch: provider I/O, selection policy.
"""

from __future__ import annotations

from modelplex.catalog.loader import bundled_catalog, load_catalog
from modelplex.catalog.schema import (
    CAPABILITIES,
    CATEGORIES,
    COST_TIERS,
    MODALITIES,
    PROTOCOLS,
    Deprecation,
    ModelSpec,
    Pricing,
    ProviderSpec,
    cost_tier_for,
)
from modelplex.catalog.store import Catalog, CostBreakdown, ModelDeprecatedWarning, TokenLimitCheck
from modelplex.catalog.validation import ParameterIssue

__all__ = [
    "CAPABILITIES",
    "CATEGORIES",
    "COST_TIERS",
    "MODALITIES",
    "PROTOCOLS",
    "Catalog",
    "CostBreakdown",
    "Deprecation",
    "ModelDeprecatedWarning",
    "ModelSpec",
    "ParameterIssue",
    "Pricing",
    "ProviderSpec",
    "TokenLimitCheck",
    "bundled_catalog",
    "cost_tier_for",
    "load_catalog",
]
