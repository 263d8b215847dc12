"""Policy: from what the caller asked (task, requirements, model) to an ordered list of targets.

Owns: built-in and configured tasks (``tasks``), strategies (``strategies``), environment
overrides and their precedence (``overrides``), sticky A/B arms (``experiments``), the complexity
score (``complexity``), the ``Planner`` that combines them (``planner``) and the load-time check that
every name the configuration refers to exists (``references``).

Must not touch: HTTP, breakers, budgets, accounting. The router asks the planner for a
``RoutePlan`` and then runs its attempt loop.
"""

from modelplex.policy.complexity import ComplexityScore, score_request
from modelplex.policy.experiments import choose_arm
from modelplex.policy.planner import Planner, RoutePlan
from modelplex.policy.references import check_references
from modelplex.policy.strategies import BUILTIN_STRATEGIES, resolve_strategy_name
from modelplex.policy.tasks import BUILTIN_TASKS, TaskSpec

__all__ = [
    "BUILTIN_STRATEGIES",
    "BUILTIN_TASKS",
    "ComplexityScore",
    "Planner",
    "RoutePlan",
    "TaskSpec",
    "check_references",
    "choose_arm",
    "resolve_strategy_name",
    "score_request",
]
