"""The usage record: one per logical request, with a link to each of its attempts.

Owns: ``UsageRecord`` (what the router hands to accounting) and its row shape. Cost comes from
catalog prices (``cost_usd``); a provider-reported cost is kept beside it (``provider_cost_usd``).

Must not touch: storage (sinks), budgets.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    ts: float = field(default_factory=time.time)
    """Wall-clock start time (epoch seconds); budgets charge the period this falls in."""
    kind: str = "chat"  # chat | stream | embedding
    task: str | None = None
    strategy: str | None = None
    experiment_arm: str | None = None
    user: str | None = None
    api_key_id: str | None = None
    tags: list[str] = field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    attempt_count: int = 0
    fallback_used: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    provider_cost_usd: float | None = None
    usage_estimated: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    success: bool = True
    error_type: str | None = None
    quality_score: float | None = None
    selection_reason: str = ""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)
