"""Tasks: named jobs an application asks for instead of a model.

Owns: ``TaskSpec`` and the built-in tasks that work with no config over whichever providers have
credentials: ``fast``, ``reasoning``, ``summarization``, ``creative``, ``analytical``,
``job_parsing``, ``cv_generation``, ``embedding`` and ``fallback``. A configured task of the
same name replaces the built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelplex.types import Requirements


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    models: tuple[str, ...] = ()
    """Priority list (seed 003). When empty, ``requirements`` + the strategy select."""
    requirements: Requirements = field(default_factory=Requirements)
    strategy: str | None = None
    """The task's own default strategy (a name from strategies), below request/operator choices."""
    fallbacks: tuple[str, ...] = ()
    description: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    escalate_to: str | None = None

    @property
    def is_embedding(self) -> bool:
        return self.requirements.mode == "embedding"


BUILTIN_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("fast", requirements=Requirements(min_context=16_000), strategy="cost_optimized",
                 description="Tool calls, routing and short answers: the cheapest capable model.",
                 escalate_to="reasoning"),
        TaskSpec("reasoning", requirements=Requirements(min_context=32_000), strategy="quality_optimized",
                 description="Multi-step planning, analysis and decisions."),
        TaskSpec("summarization", requirements=Requirements(min_context=100_000), strategy="balanced",
                 description="Condensing, rewriting and reporting over long inputs."),
        TaskSpec("creative", requirements=Requirements(min_context=16_000, min_output_tokens=4_096),
                 strategy="balanced", description="Content generation and writing.", escalate_to="reasoning"),
        TaskSpec("analytical", requirements=Requirements(min_context=32_000, response_format="json"),
                 strategy="balanced", description="Data analysis and pattern recognition, JSON out.",
                 escalate_to="reasoning"),
        TaskSpec("job_parsing", requirements=Requirements(min_context=16_000, response_format="json"),
                 strategy="cost_optimized", description="Parse a job description into structured fields.",
                 escalate_to="analytical"),
        TaskSpec("cv_generation", requirements=Requirements(min_context=32_000, min_output_tokens=4_096),
                 strategy="balanced", description="Draft CV sections from a profile and a job.",
                 escalate_to="reasoning"),
        TaskSpec("embedding", requirements=Requirements(mode="embedding"), strategy="cost_optimized",
                 description="Text embeddings."),
        TaskSpec("fallback", requirements=Requirements(), strategy="cost_optimized",
                 description="Universal fallback: the cheapest available chat model."),
    )
}
