"""Environment overrides from the seeds, read once per planner (and on ``reload``).

- ``FORCE_MODEL``: every task and requirements request uses this model (an operator's emergency switch).
  Calls that name a model explicitly are not routed and are not affected.
- ``DEFAULT_<TASK>_MODEL`` (e.g. ``DEFAULT_REASONING_MODEL``): the first target for that task; the
  task's own list follows as fallbacks.
- ``MODEL_SELECTION_STRATEGY``: the strategy for every request that does not choose one itself and
  is not pinned by the runtime settings API.

Precedence, highest first, is documented in docs/routing.md and tested:
strategy: request argument > runtime setting (admin API) > MODEL_SELECTION_STRATEGY > experiment arm >
task default > routing.default_strategy;
model: FORCE_MODEL > DEFAULT_<TASK>_MODEL > strategy's per-task model > task model list > selection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class EnvOverrides:
    force_model: str | None = None
    task_models: dict[str, str] = field(default_factory=dict)
    strategy: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EnvOverrides:
        task_models: dict[str, str] = {}
        for key, value in env.items():
            if key.startswith("DEFAULT_") and key.endswith("_MODEL") and value:
                task = key[len("DEFAULT_") : -len("_MODEL")].lower()
                if task:
                    task_models[task] = value
        return cls(
            force_model=env.get("FORCE_MODEL") or None,
            task_models=task_models,
            strategy=env.get("MODEL_SELECTION_STRATEGY") or None,
        )
