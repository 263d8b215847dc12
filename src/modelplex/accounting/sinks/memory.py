"""The in-memory usage sink: dicts in one process, with the same semantics as the SQL sinks.

Owns: ``MemorySink`` — for tests, demos and ``accounting.sink: memory``. Nothing survives the
process; rows are plain dicts in the canonical record shape (``base.record_dict``).

Must not touch: files, databases, queueing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks.base import (
    Cursor,
    FeedbackEntry,
    UsageSink,
    aggregate_dicts,
    check_filters,
    check_group,
    cost_tracking_dicts,
    matches,
    performance_dicts,
    record_dict,
)


class MemorySink(UsageSink):
    name: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._feedback: dict[str, FeedbackEntry] = {}
        self.writes = 0
        """How many ``write_batch`` calls succeeded (tests use it to see batching)."""

    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        new = 0
        store = self._records
        for r in records:
            if r.request_id in store:
                continue
            store[r.request_id] = record_dict(r)
            new += 1
        self.writes += 1
        return new

    async def add_feedback(self, request_id: str, score: float, comment: str | None = None,
                           ts: float | None = None) -> None:
        entry = FeedbackEntry(request_id, float(score), comment, time.time() if ts is None else float(ts))
        old = self._feedback.get(request_id)
        if old is None or entry.ts >= old.ts:  # the latest wins, whatever the order of arrival
            self._feedback[request_id] = entry

    def _view(self, d: dict[str, Any], with_attempts: bool) -> dict[str, Any]:
        out = dict(d)
        out["attempts"] = copy.deepcopy(d["attempts"]) if with_attempts else []
        out["tags"] = list(d["tags"])
        fb = self._feedback.get(d["request_id"])
        if fb is not None:
            out["quality_score"] = fb.score
            out["feedback_comment"] = fb.comment
        return out

    def _select(self, since: float | None, until: float | None, filters: dict[str, Any],
                with_attempts: bool = False) -> list[dict[str, Any]]:
        rows = [self._view(d, with_attempts) for d in self._records.values() if matches(d, since, until, filters)]
        rows.sort(key=lambda d: (d["ts"], d["request_id"]))
        return rows

    async def query(self, since: float | None = None, until: float | None = None, *, limit: int | None = None,
                    with_attempts: bool = False, newest_first: bool = False, after: Cursor | None = None,
                    **filters: Any) -> list[dict[str, Any]]:
        rows = self._select(since, until, check_filters(filters), with_attempts)
        if newest_first:
            rows.reverse()
        if after is not None:
            mark = (float(after[0]), str(after[1]))
            rows = [d for d in rows if ((d["ts"], d["request_id"]) < mark if newest_first
                                        else (d["ts"], d["request_id"]) > mark)]
        return rows if limit is None else rows[: max(0, int(limit))]

    async def aggregate(self, since: float | None = None, until: float | None = None, *, by: str = "model",
                        **filters: Any) -> list[dict[str, Any]]:
        return aggregate_dicts(self._select(since, until, check_filters(filters)), check_group(by))

    async def spend(self, since: float | None = None, until: float | None = None, *, user: str | None = None,
                    api_key_id: str | None = None) -> float:
        filters = check_filters({"user": user, "api_key_id": api_key_id})
        return float(sum(d["cost_usd"] for d in self._records.values() if matches(d, since, until, filters)))

    async def performance_metrics(self) -> list[dict[str, Any]]:
        return performance_dicts(self._select(None, None, {}))

    async def cost_tracking(self, since_day: str | None = None, until_day: str | None = None
                            ) -> list[dict[str, Any]]:
        return cost_tracking_dicts(self._select(None, None, {}), since_day, until_day)

    async def health(self) -> dict[str, Any]:
        return {"sink": self.name, "ok": True, "records": len(self._records)}

    def __len__(self) -> int:
        return len(self._records)





class NullSink(UsageSink):
    """``accounting.sink: none``: accepts everything, keeps nothing (writes count as 0 new rows)."""

    name: ClassVar[str] = "none"

    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        return 0

    async def add_feedback(self, request_id: str, score: float, comment: str | None = None,
                           ts: float | None = None) -> None:
        return None

    async def query(self, since: float | None = None, until: float | None = None, *, limit: int | None = None,
                    with_attempts: bool = False, newest_first: bool = False, after: Cursor | None = None,
                    **filters: Any) -> list[dict[str, Any]]:
        check_filters(filters)
        return []

    async def aggregate(self, since: float | None = None, until: float | None = None, *, by: str = "model",
                        **filters: Any) -> list[dict[str, Any]]:
        check_group(by)
        check_filters(filters)
        return []

    async def spend(self, since: float | None = None, until: float | None = None, *, user: str | None = None,
                    api_key_id: str | None = None) -> float:
        return 0.0

    async def performance_metrics(self) -> list[dict[str, Any]]:
        return []

    async def cost_tracking(self, since_day: str | None = None, until_day: str | None = None
                            ) -> list[dict[str, Any]]:
        return []

    async def health(self) -> dict[str, Any]:
        return {"sink": self.name, "ok": True}


__all__ = ["MemorySink", "NullSink"]
