"""Strategies (seed 004): ``cost_optimized``, ``balanced``, ``quality_optimized``, ``experimental``.

Owns: the built-in strategy table and name resolution (``economy``/``quality`` and the seeds'
``economy_mode`` map onto these). Each strategy has a selection ordering, optional per-task models,
a ``max_cost_per_request`` checked against the pre-call estimate, and an optional fallback model.
"""

from __future__ import annotations

from modelplex.config import StrategyConfig
from modelplex.errors import ConfigError

BUILTIN_STRATEGIES: dict[str, StrategyConfig] = {
    "cost_optimized": StrategyConfig(selection="economy", max_cost_per_request=0.05),
    "balanced": StrategyConfig(selection="balanced", max_cost_per_request=0.15),
    "quality_optimized": StrategyConfig(selection="quality", max_cost_per_request=0.50),
    "experimental": StrategyConfig(selection="quality", max_cost_per_request=1.00),
    "adaptive": StrategyConfig(selection="adaptive"),
}

ALIASES = {
    "economy": "cost_optimized",
    "cost": "cost_optimized",
    "cheap": "cost_optimized",
    "quality": "quality_optimized",
    "best": "quality_optimized",
}


def resolve_strategy_name(name: str, known: dict[str, StrategyConfig]) -> str:
    key = ALIASES.get(name, name)
    if key not in known:
        raise ConfigError(f"unknown strategy {name!r}; expected one of {', '.join(sorted(set(known) | set(ALIASES)))}")
    return key


def strategy_table(configured: dict[str, StrategyConfig]) -> dict[str, StrategyConfig]:
    """Built-ins overlaid by the configured strategies (a configured one replaces the built-in)."""
    return {**BUILTIN_STRATEGIES, **configured}
