"""Accounting: usage records, their sinks, the non-blocking recorder and its journal, performance
statistics and usage reports.

Owns: re-exporting the public names. ``records`` (the row a request produces), ``sinks`` (memory,
SQLite, PostgreSQL), ``migrate`` (versioned schemas), ``journal`` (the spill file), ``recorder``
(queue -> batches -> sink), ``performance`` (per-model statistics and recommendations),
``reports`` (usage reports, re-pricing, export). Budgets live in ``accounting.budgets``.

Must not touch: routing, provider calls. Importing this package imports no database driver and
no plotting library.
"""

from __future__ import annotations

from modelplex.accounting.journal import Journal
from modelplex.accounting.performance import PerformanceTracker
from modelplex.accounting.recorder import UsageRecorder, make_recorder
from modelplex.accounting.records import UsageRecord
from modelplex.accounting.sinks import FeedbackEntry, MemorySink, NullSink, UsageSink, make_sink

__all__ = [
    "FeedbackEntry",
    "Journal",
    "MemorySink",
    "NullSink",
    "PerformanceTracker",
    "UsageRecord",
    "UsageRecorder",
    "UsageSink",
    "make_recorder",
    "make_sink",
]
