"""The usage sink interface, and the row shapes and SQL every sink shares.

Owns: ``UsageSink`` (the async interface the recorder writes to and reports read from),
``FeedbackEntry``, the canonical record dict (``record_dict``: ``UsageRecord`` fields plus
``feedback_comment``, ``attributed_model`` and ``attributed_provider``), the filter and group
names, ``attribution`` (which model a request is charged to), the pure-Python aggregations the
memory sink uses, and ``SQLBuilder`` (the dialect-neutral SQL the SQLite and PostgreSQL sinks run).

Semantics every sink keeps (the shared test suite checks them):

* ``write_batch`` is idempotent on ``request_id``: the first write wins, a repeat writes nothing,
  and the return value counts rows newly written.
* Feedback is stored apart from records (it may arrive first); the latest score (by its ``ts``, not by
  when it arrives: a score replayed from the journal may arrive after a newer one) wins and shows as
  the record's ``quality_score``.
* Time windows are ``since <= ts < until`` (epoch seconds; ``None`` is unbounded); days are UTC.
* Latency and cost averages count successful requests only; success rates count every request.

Must not touch: queueing, journaling (recorder, journal), configuration loading.
"""

from __future__ import annotations

import datetime as dt
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import orjson

from modelplex.accounting.records import UsageRecord

RECORD_COLUMNS: tuple[str, ...] = (
    "request_id", "ts", "kind", "task", "strategy", "experiment_arm", "user_id", "api_key_id", "tags",
    "model", "provider", "attributed_model", "attributed_provider", "attempt_count", "fallback_used",
    "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
    "provider_cost_usd", "usage_estimated", "latency_ms", "ttft_ms", "success", "error_type", "quality_score",
    "selection_reason",
)
"""``usage_records`` columns, in insert order."""

ATTEMPT_COLUMNS: tuple[str, ...] = (
    "request_id", "idx", "target", "provider", "outcome", "error_type", "status_code", "latency_ms", "retry",
    "detail",
)
"""``usage_attempts`` columns, in insert order."""

ATTEMPT_FIELDS: tuple[str, ...] = ATTEMPT_COLUMNS[2:]
"""The keys of one attempt dict (``types.Attempt.to_dict``)."""

RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))

FILTERS: dict[str, str] = {
    "model": "model", "provider": "provider", "task": "task", "user": "user_id", "api_key_id": "api_key_id",
    "strategy": "strategy", "success": "success", "kind": "kind", "experiment_arm": "experiment_arm",
}
"""Filter name (a ``UsageRecord`` field) -> column. ``model``/``provider`` match the serving model as recorded."""

GROUPS: dict[str, str] = {
    "model": "attributed_model", "provider": "attributed_provider", "task": "task", "user": "user_id",
    "api_key_id": "api_key_id", "strategy": "strategy", "kind": "kind", "experiment_arm": "experiment_arm",
    "day": "day",
}
"""Group name -> column (``day`` is the UTC date of ``ts``). ``model``/``provider`` group by attribution."""

CALLED_OUTCOMES = frozenset({"success", "error", "cancelled"})
"""Attempt outcomes that mean the model was actually called (skips are not)."""

_DICT_KEY = {"user_id": "user"}
_BOOL_COLUMNS = frozenset({"fallback_used", "usage_estimated", "success"})


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """A quality score (0..1) for a finished request, as queued, journaled and stored."""

    request_id: str
    score: float
    comment: str | None
    ts: float


# ------------------------------------------------------------------------------------------ rows


Cursor = tuple[float, str]
"""A record's place in the listing order: its ``(ts, request_id)``."""


def attribution(model: str | None, provider: str | None, attempts: Sequence[Mapping[str, Any]]
                ) -> tuple[str | None, str | None]:
    """The (model, provider) a request is charged to: the one that served it, or, when nothing
    served it, the last one actually called (skipped targets do not count); else ``(None, None)``."""
    if model:
        return model, provider
    for a in reversed(attempts):
        if a.get("outcome") in CALLED_OUTCOMES:
            return a.get("target"), a.get("provider")
    return None, None


def tags_json(tags: Sequence[str]) -> str:
    return orjson.dumps(list(tags)).decode() if tags else "[]"


def record_row(r: UsageRecord) -> tuple[Any, ...]:
    """``r`` as a ``usage_records`` row, in ``RECORD_COLUMNS`` order (booleans as ``bool``)."""
    am, ap = (r.model, r.provider) if r.model else attribution(None, None, r.attempts)
    return (r.request_id, float(r.ts), r.kind, r.task, r.strategy, r.experiment_arm, r.user, r.api_key_id,
            tags_json(r.tags), r.model, r.provider, am, ap, r.attempt_count, bool(r.fallback_used),
            r.input_tokens, r.output_tokens, r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens,
            float(r.cost_usd), _opt_float(r.provider_cost_usd), bool(r.usage_estimated), float(r.latency_ms),
            _opt_float(r.ttft_ms), bool(r.success), r.error_type, _opt_float(r.quality_score), r.selection_reason or "")


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def attempt_values(r: UsageRecord) -> list[tuple[Any, ...]]:
    """``r.attempts`` as ``usage_attempts`` rows without their first two columns (``ATTEMPT_FIELDS`` order)."""
    return [(a.get("target") or "", a.get("provider") or "", a.get("outcome") or "", a.get("error_type"),
             a.get("status_code"), float(a.get("latency_ms") or 0.0), int(a.get("retry") or 0), a.get("detail"))
            for a in r.attempts]


def attempt_rows(r: UsageRecord) -> list[tuple[Any, ...]]:
    """``r.attempts`` as ``usage_attempts`` rows, in ``ATTEMPT_COLUMNS`` order."""
    rid = r.request_id
    return [(rid, i, *values) for i, values in enumerate(attempt_values(r))]


# ------------------------------------------------------------------------------------------ packed records

_PACKED_FLOATS = operator.itemgetter(*(RECORD_COLUMNS.index(c) for c in (
    "ts", "cost_usd", "provider_cost_usd", "latency_ms", "ttft_ms", "quality_score")))
_ATTEMPT_LATENCY = ATTEMPT_FIELDS.index("latency_ms")


def pack_record(r: UsageRecord) -> bytes | None:
    """``r`` as one JSON array: its ``usage_records`` row (``RECORD_COLUMNS`` order) and, as one more
    element, its attempts (``attempt_values``). ``None`` when it has no such row (a field of the wrong
    type: the sink refuses it when written) or JSON would not carry it exactly: a value orjson refuses
    (a lone surrogate, an integer beyond 53 bits, which SQLite's JSON would read back as a REAL, an
    unknown type), a string with NUL
    (SQLite's JSON text ends there) or a non-finite float (orjson writes ``null``).

    A sink that stores packed records (``UsageSink.packer``) lets the recorder queue these bytes instead
    of the record: bytes are not tracked by the garbage collector, while a queued record holds four
    tracked objects that outlive many young collections and so trigger them (docs/performance.md)."""
    try:
        row = record_row(r)
        attempts = attempt_values(r)
        data = orjson.dumps((*row, attempts), option=orjson.OPT_STRICT_INTEGER)  # beyond 53 bits: refused
    except (TypeError, ValueError, AttributeError):  # orjson's JSONEncodeError is a TypeError
        return None
    if b"\\u0000" in data:
        return None
    ts, cost, provider_cost, latency, ttft, quality = _PACKED_FLOATS(row)
    total = ts + cost + latency + (provider_cost or 0.0) + (ttft or 0.0) + (quality or 0.0)
    for a in attempts:
        total += a[_ATTEMPT_LATENCY]
    return data if total - total == 0.0 else None  # a sum is finite only if every term is (nan is truthy)


def unpack_record(data: bytes) -> UsageRecord:
    """The record ``pack_record`` packed (attempt strings normalized as stored: ``None`` -> ``""``)."""
    *row, attempts = orjson.loads(data)
    d = row_to_dict(row)
    d["attempts"] = [dict(zip(ATTEMPT_FIELDS, a, strict=True)) for a in attempts]
    return record_from_dict(d)


def row_to_dict(row: Sequence[Any], feedback_comment: str | None = None) -> dict[str, Any]:
    """A ``usage_records`` row (``RECORD_COLUMNS`` order, ``quality_score`` already merged with
    feedback) -> the canonical record dict, without attempts (``attempts`` is ``[]``)."""
    out: dict[str, Any] = {}
    for col, value in zip(RECORD_COLUMNS, row, strict=True):
        if col in _BOOL_COLUMNS:
            value = bool(value)
        elif col == "tags":
            value = orjson.loads(value) if value else []
        out[_DICT_KEY.get(col, col)] = value
    out["attempts"] = []
    out["feedback_comment"] = feedback_comment
    return out


def attempt_row_to_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A ``usage_attempts`` row -> an attempt dict (the keys of ``types.Attempt.to_dict``)."""
    return dict(zip(ATTEMPT_FIELDS, row[2:], strict=True))


def record_dict(r: UsageRecord) -> dict[str, Any]:
    """The canonical record dict of ``r`` (what ``UsageSink.query`` returns for it)."""
    d = row_to_dict(record_row(r))
    d["attempts"] = [{k: a.get(k) for k in ATTEMPT_FIELDS} for a in r.attempts]
    for a in d["attempts"]:
        a["latency_ms"] = float(a["latency_ms"] or 0.0)
        a["retry"] = int(a["retry"] or 0)
        a["target"] = a["target"] or ""
        a["provider"] = a["provider"] or ""
        a["outcome"] = a["outcome"] or ""
    return d


def record_from_dict(d: Mapping[str, Any]) -> UsageRecord:
    """Rebuild a ``UsageRecord`` from a record dict (extra keys such as ``feedback_comment`` are ignored)."""
    return UsageRecord(**{k: d[k] for k in RECORD_FIELDS if k in d})


def day_of(ts: float) -> str:
    """The UTC date of an epoch time, ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def check_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    """Validate filter names; ``None`` values are dropped (no filter). Raises ``ValueError``."""
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown usage filter(s) {unknown}; expected some of {sorted(FILTERS)}")
    out = {k: v for k, v in filters.items() if v is not None}
    if "success" in out:
        out["success"] = bool(out["success"])
    return out


def check_group(by: str) -> str:
    if by not in GROUPS:
        raise ValueError(f"unknown usage grouping {by!r}; expected one of {', '.join(sorted(GROUPS))}")
    return by


def sort_key(value: Any) -> tuple[bool, str]:
    """Order groups by key with ``None`` last."""
    return (value is None, "" if value is None else str(value))


# ------------------------------------------------------------------------------------------ python aggregation


def matches(d: Mapping[str, Any], since: float | None, until: float | None, filters: Mapping[str, Any]) -> bool:
    ts = d["ts"]
    if since is not None and ts < since:
        return False
    if until is not None and ts >= until:
        return False
    return all(d[name] == value for name, value in filters.items())


def group_value(d: Mapping[str, Any], by: str) -> Any:
    if by == "day":
        return day_of(d["ts"])
    if by == "model":
        return d["attributed_model"]
    if by == "provider":
        return d["attributed_provider"]
    return d[by]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate_dicts(rows: Iterable[Mapping[str, Any]], by: str) -> list[dict[str, Any]]:
    """``UsageSink.aggregate`` over record dicts: one dict per group (see ``UsageSink.aggregate``)."""
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for d in rows:
        groups.setdefault(group_value(d, by), []).append(d)
    out = []
    for key in sorted(groups, key=sort_key):
        g = groups[key]
        out.append({
            "key": key,
            "requests": len(g),
            "successes": sum(1 for d in g if d["success"]),
            "input_tokens": sum(d["input_tokens"] for d in g),
            "output_tokens": sum(d["output_tokens"] for d in g),
            "cached_tokens": sum(d["cached_tokens"] for d in g),
            "cache_write_tokens": sum(d["cache_write_tokens"] for d in g),
            "reasoning_tokens": sum(d["reasoning_tokens"] for d in g),
            "cost_usd": sum(d["cost_usd"] for d in g),
            "avg_latency_ms": _mean([d["latency_ms"] for d in g if d["success"]]),
        })
    return out


def performance_dicts(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``model_performance_metrics`` view computed over record dicts."""
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for d in rows:
        if d["attributed_model"] is not None:
            groups.setdefault((d["attributed_model"], d["task"]), []).append(d)
    out = []
    for (model, task) in sorted(groups, key=lambda k: (sort_key(k[0]), sort_key(k[1]))):
        g = groups[(model, task)]
        ok = [d for d in g if d["success"]]
        scores = [d["quality_score"] for d in g if d["quality_score"] is not None]
        out.append({
            "model_name": model, "task_type": task, "request_count": len(g), "success_count": len(ok),
            "success_rate": len(ok) / len(g), "avg_latency_ms": _mean([d["latency_ms"] for d in ok]),
            "avg_cost_usd": _mean([d["cost_usd"] for d in ok]), "avg_quality_score": _mean(scores),
            "quality_samples": len(scores), "tokens_used": sum(d["input_tokens"] + d["output_tokens"] for d in g),
            "total_cost_usd": sum(d["cost_usd"] for d in g), "first_ts": min(d["ts"] for d in g),
            "last_ts": max(d["ts"] for d in g),
        })
    return out


def cost_tracking_dicts(rows: Iterable[Mapping[str, Any]], since_day: str | None = None,
                        until_day: str | None = None) -> list[dict[str, Any]]:
    """The ``model_cost_tracking`` view computed over record dicts (days inclusive)."""
    groups: dict[tuple[Any, Any, Any], list[Mapping[str, Any]]] = {}
    for d in rows:
        day = day_of(d["ts"])
        if (since_day is not None and day < since_day) or (until_day is not None and day > until_day):
            continue
        groups.setdefault((day, d["attributed_model"], d["attributed_provider"]), []).append(d)
    out = []
    for key in sorted(groups, key=lambda k: tuple(sort_key(x) for x in k)):
        g = groups[key]
        cost = sum(d["cost_usd"] for d in g)
        out.append({
            "day": key[0], "model_name": key[1], "provider": key[2], "request_count": len(g),
            "success_count": sum(1 for d in g if d["success"]),
            "input_tokens": sum(d["input_tokens"] for d in g), "output_tokens": sum(d["output_tokens"] for d in g),
            "cached_tokens": sum(d["cached_tokens"] for d in g),
            "total_tokens": sum(d["input_tokens"] + d["output_tokens"] for d in g),
            "total_cost_usd": cost, "avg_cost_per_request": cost / len(g),
        })
    return out


# ------------------------------------------------------------------------------------------ shared SQL


@dataclass(frozen=True, slots=True)
class SQLBuilder:
    """Dialect-neutral SQL for the relational sinks. ``placeholder(i)`` renders the i-th (1-based)
    parameter; the other fields are the few fragments that differ between SQLite and PostgreSQL."""

    placeholder: Callable[[int], str]
    success_int: str
    """``success`` as 0/1."""
    is_success: str
    """A predicate: the request succeeded."""
    day_expr: str
    """The UTC date of ``r.ts`` as ``YYYY-MM-DD`` text."""

    PERFORMANCE_COLUMNS: ClassVar[tuple[str, ...]] = (
        "model_name", "task_type", "request_count", "success_count", "success_rate", "avg_latency_ms",
        "avg_cost_usd", "avg_quality_score", "quality_samples", "tokens_used", "total_cost_usd", "first_ts",
        "last_ts")
    COST_COLUMNS: ClassVar[tuple[str, ...]] = (
        "day", "model_name", "provider", "request_count", "success_count", "input_tokens", "output_tokens",
        "cached_tokens", "total_tokens", "total_cost_usd", "avg_cost_per_request")

    def insert_records(self) -> str:
        cols = ", ".join(RECORD_COLUMNS)
        marks = ", ".join(self.placeholder(i + 1) for i in range(len(RECORD_COLUMNS)))
        return f"INSERT INTO usage_records ({cols}) VALUES ({marks}) ON CONFLICT (request_id) DO NOTHING"

    def insert_attempts(self) -> str:
        cols = ", ".join(ATTEMPT_COLUMNS)
        marks = ", ".join(self.placeholder(i + 1) for i in range(len(ATTEMPT_COLUMNS)))
        return f"INSERT INTO usage_attempts ({cols}) VALUES ({marks}) ON CONFLICT (request_id, idx) DO NOTHING"

    def upsert_feedback(self) -> str:
        p = self.placeholder
        return ("INSERT INTO usage_feedback (request_id, score, comment, ts) "
                f"VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)}) ON CONFLICT (request_id) DO UPDATE SET "
                "score = excluded.score, comment = excluded.comment, ts = excluded.ts "
                "WHERE excluded.ts >= usage_feedback.ts")  # the latest wins, whatever the order of arrival

    def where(self, since: float | None, until: float | None, filters: Mapping[str, Any],
              start: int = 1) -> tuple[str, list[Any]]:
        """``WHERE ...`` over ``usage_records r`` (or ``""``) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, value: Any) -> None:
            params.append(value)
            clauses.append(sql.format(self.placeholder(start + len(params) - 1)))

        if since is not None:
            add("r.ts >= {}", float(since))
        if until is not None:
            add("r.ts < {}", float(until))
        for name, value in filters.items():
            add(f"r.{FILTERS[name]} = {{}}", value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def select_records(self, since: float | None, until: float | None, filters: Mapping[str, Any],
                       limit: int | None, newest_first: bool = False, after: Cursor | None = None
                       ) -> tuple[str, list[Any]]:
        cols = ", ".join("COALESCE(f.score, r.quality_score)" if c == "quality_score" else f"r.{c}"
                         for c in RECORD_COLUMNS)
        where, params = self.where(since, until, filters)
        if after is not None:
            params += [float(after[0]), str(after[1])]
            a, b = self.placeholder(len(params) - 1), self.placeholder(len(params))
            where += (" AND " if where else " WHERE ") + f"(r.ts, r.request_id) {'<' if newest_first else '>'} ({a}, {b})"
        sql = (f"SELECT {cols}, f.comment FROM usage_records r "
               f"LEFT JOIN usage_feedback f ON f.request_id = r.request_id{where} "
               + ("ORDER BY r.ts DESC, r.request_id DESC" if newest_first else "ORDER BY r.ts, r.request_id"))
        if limit is not None:
            params.append(int(limit))
            sql += f" LIMIT {self.placeholder(len(params))}"
        return sql, params

    def select_attempts(self, since: float | None, until: float | None, filters: Mapping[str, Any]
                        ) -> tuple[str, list[Any]]:
        cols = ", ".join(f"a.{c}" for c in ATTEMPT_COLUMNS)
        where, params = self.where(since, until, filters)
        return (f"SELECT {cols} FROM usage_attempts a JOIN usage_records r ON r.request_id = a.request_id"
                f"{where} ORDER BY a.request_id, a.idx"), params

    def aggregate(self, by: str, since: float | None, until: float | None, filters: Mapping[str, Any]
                  ) -> tuple[str, list[Any]]:
        key = self.day_expr if by == "day" else f"r.{GROUPS[by]}"
        where, params = self.where(since, until, filters)
        sql = (f"SELECT {key} AS k, COUNT(*), SUM({self.success_int}), SUM(r.input_tokens), SUM(r.output_tokens), "
               "SUM(r.cached_tokens), SUM(r.cache_write_tokens), SUM(r.reasoning_tokens), SUM(r.cost_usd), "
               f"AVG(CASE WHEN {self.is_success} THEN r.latency_ms END) FROM usage_records r{where} GROUP BY {key}")
        return sql, params

    def spend(self, since: float | None, until: float | None, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
        where, params = self.where(since, until, filters)
        return f"SELECT COALESCE(SUM(r.cost_usd), 0) FROM usage_records r{where}", params

    def performance(self) -> str:
        return (f"SELECT {', '.join(self.PERFORMANCE_COLUMNS)} FROM model_performance_metrics "
                "ORDER BY model_name, task_type")

    def cost_tracking(self, since_day: str | None, until_day: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if since_day is not None:
            params.append(since_day)
            clauses.append(f"day >= {self.placeholder(len(params))}")
        if until_day is not None:
            params.append(until_day)
            clauses.append(f"day <= {self.placeholder(len(params))}")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return (f"SELECT {', '.join(self.COST_COLUMNS)} FROM model_cost_tracking{where} "
                "ORDER BY day, model_name, provider"), params


AGGREGATE_KEYS: tuple[str, ...] = (
    "key", "requests", "successes", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "avg_latency_ms")


def aggregate_rows(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """SQL aggregate rows -> the dicts ``UsageSink.aggregate`` returns, sorted by key (``None`` last)."""
    out = []
    for row in rows:
        d = dict(zip(AGGREGATE_KEYS, row, strict=True))
        for k in AGGREGATE_KEYS[1:8]:
            d[k] = int(d[k] or 0)
        d["cost_usd"] = float(d["cost_usd"] or 0.0)
        d["avg_latency_ms"] = None if d["avg_latency_ms"] is None else float(d["avg_latency_ms"])
        out.append(d)
    out.sort(key=lambda d: sort_key(d["key"]))
    return out


def sort_performance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows.sort(key=lambda d: (sort_key(d["model_name"]), sort_key(d["task_type"])))
    return rows


def sort_cost_tracking(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows.sort(key=lambda d: (d["day"], sort_key(d["model_name"]), sort_key(d["provider"])))
    return rows


def normalize_view_row(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """A view row -> a dict with plain ``int``/``float``/``str`` values (PostgreSQL returns Decimals)."""
    out: dict[str, Any] = {}
    for col, value in zip(columns, row, strict=True):
        if value is not None and col.endswith(("_count", "_samples", "_tokens", "tokens_used")):
            value = int(value)
        elif value is not None and not isinstance(value, str):
            value = float(value)
        out[col] = value
    return out


# ------------------------------------------------------------------------------------------ the interface


class UsageSink(ABC):
    """Where usage records go. Every method is a coroutine; see the module docstring for the
    semantics each implementation keeps."""

    name: ClassVar[str] = "base"

    async def start(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Open connections and apply migrations. Idempotent."""

    @abstractmethod
    async def write_batch(self, records: Sequence[UsageRecord]) -> int:
        """Write records and their attempts, idempotently on ``request_id``; returns rows newly written."""

    def packer(self) -> Callable[[UsageRecord], bytes | None] | None:
        """How this sink wants records queued, once started: a function packing a record into bytes
        (``None`` for a record it cannot pack), given to ``write_packed``; or ``None`` (the default):
        records are queued as they are and given to ``write_batch``."""
        return None

    async def write_packed(self, packed: Sequence[bytes]) -> int:
        """``write_batch`` for records packed by ``packer()``. By default they are unpacked."""
        return await self.write_batch([unpack_record(p) for p in packed])

    @abstractmethod
    async def add_feedback(self, request_id: str, score: float, comment: str | None = None,
                           ts: float | None = None) -> None:
        """Store a quality score for a request (the latest wins; the record may not exist yet)."""

    async def add_feedback_batch(self, entries: Sequence[FeedbackEntry]) -> None:
        for e in entries:
            await self.add_feedback(e.request_id, e.score, e.comment, e.ts)

    @abstractmethod
    async def query(self, since: float | None = None, until: float | None = None, *, limit: int | None = None,
                    with_attempts: bool = False, newest_first: bool = False, after: Cursor | None = None,
                    **filters: Any) -> list[dict[str, Any]]:
        """Record dicts in ``[since, until)``, oldest first (``newest_first``: the latest first, so that
        ``limit`` keeps the latest), matching ``filters`` (``FILTERS``). ``attempts`` is filled only when
        ``with_attempts`` is set. ``after``: the ``(ts, request_id)`` of the last record of the previous
        page; only records past it in this order are returned (keyset paging: no record is skipped or
        repeated, however many share a timestamp)."""

    @abstractmethod
    async def aggregate(self, since: float | None = None, until: float | None = None, *, by: str = "model",
                        **filters: Any) -> list[dict[str, Any]]:
        """Totals per group (``GROUPS``): ``key``, ``requests``, ``successes``, token sums, ``cost_usd``
        and ``avg_latency_ms`` (successful requests), sorted by key with ``None`` last."""

    @abstractmethod
    async def spend(self, since: float | None = None, until: float | None = None, *, user: str | None = None,
                    api_key_id: str | None = None) -> float:
        """USD spent in ``[since, until)``, optionally by one user and/or one API key."""

    @abstractmethod
    async def performance_metrics(self) -> list[dict[str, Any]]:
        """The ``model_performance_metrics`` rollup: per (model, task)."""

    @abstractmethod
    async def cost_tracking(self, since_day: str | None = None, until_day: str | None = None
                            ) -> list[dict[str, Any]]:
        """The ``model_cost_tracking`` rollup: per (UTC day, model, provider), days inclusive."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections. Idempotent."""

    @abstractmethod
    async def health(self) -> dict[str, Any]:
        """``{"sink", "ok", ...}``; never raises."""

    def is_data_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the data was refused (a bad record), not that the store is unavailable.
        The recorder then writes the batch one record at a time and sets the refused ones aside."""
        return isinstance(exc, (ValueError, TypeError))

    async def __aenter__(self) -> UsageSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = [
    "ATTEMPT_COLUMNS",
    "FILTERS",
    "GROUPS",
    "RECORD_COLUMNS",
    "FeedbackEntry",
    "SQLBuilder",
    "UsageSink",
    "aggregate_dicts",
    "attribution",
    "cost_tracking_dicts",
    "day_of",
    "pack_record",
    "performance_dicts",
    "record_dict",
    "record_from_dict",
    "record_row",
    "unpack_record",
]
