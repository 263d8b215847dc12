"""Strategies (seed 004): ``cost_optimized``, ``balanced``, ``quality_optimized``, ``experimental``.

Owns: the built-in strategy table and name resolution (``economy``/``quality`` and the seeds'
``economy_mode`` map onto these). Each strategy has a selection ordering, optional per-task models,
a ``max_cost_per_request`` checked against the pre-call estimate, and an optional fallback model.
"""

from __future__ import annotations

from modelplex.config import StrategyConfig
from modelplex.errors import ConfigError, did_you_mean

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


def is_strategy(name: str, known: dict[str, StrategyConfig]) -> bool:
    """Whether ``name`` (or the strategy it is an alias of) is in ``known``."""
    return ALIASES.get(name, name) in known


def unknown_strategy(name: str, known: dict[str, StrategyConfig], *, file: str | None = None,
                     key: str | None = None) -> ConfigError:
    choices = sorted(set(known) | set(ALIASES))
    return ConfigError(f"unknown strategy {name!r}{did_you_mean(name, choices)}; expected one of {', '.join(choices)}",
                       file=file, key=key)


def resolve_strategy_name(name: str, known: dict[str, StrategyConfig]) -> str:
    if not is_strategy(name, known):
        raise unknown_strategy(name, known)
    return ALIASES.get(name, name)


def strategy_table(configured: dict[str, StrategyConfig]) -> dict[str, StrategyConfig]:
    """Built-ins overlaid by the configured strategies (a configured one replaces the built-in)."""
    return {**BUILTIN_STRATEGIES, **configured}
