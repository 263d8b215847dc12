"""The complexity score (seed 004's ``_calculate_complexity_score``, generalised and documented).

score = min(1, long_input + many_messages + artifacts + creative), where
- long_input    = 0.3 when the prompt has more than ``long_input_tokens`` tokens (the seed: > 500 words),
- many_messages = 0.2 when the conversation has more than ``many_messages`` messages,
- artifacts     = min(artifacts_cap, artifacts_count * artifacts_weight) (the seed: 0.05 each, cap 0.4),
- creative      = ``creative_weight`` (0.3) when ``requires_creative_writing`` is set.

A score above the threshold (0.8 by default, as in the seed) escalates the request: to the task's
``escalate_to`` task when it has one, otherwise to the ``quality_optimized`` strategy.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelplex.config import ComplexityConfig


@dataclass(frozen=True, slots=True)
class ComplexityScore:
    score: float
    parts: dict[str, float]

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in self.parts.items() if v)
        return f"complexity {self.score:.2f}" + (f" ({shown})" if shown else "")


def score_request(cfg: ComplexityConfig, *, input_tokens: int, message_count: int, artifacts: int = 0,
                  requires_creative_writing: bool = False) -> ComplexityScore:
    parts = {
        "long_input": 0.3 if input_tokens > cfg.long_input_tokens else 0.0,
        "many_messages": 0.2 if message_count > cfg.many_messages else 0.0,
        "artifacts": min(cfg.artifacts_cap, max(0, artifacts) * cfg.artifacts_weight),
        "creative": cfg.creative_weight if requires_creative_writing else 0.0,
    }
    return ComplexityScore(min(1.0, round(sum(parts.values()), 6)), parts)
