"""The admin API (``/api/v1``), health and metrics endpoints.

Owns the handlers behind the routes below; their shapes are written down in ``server.openapi``
(served at ``/api/v1/openapi.json``) and the two must change together.

* ``GET  /api/v1/models/performance[?task=]`` — the seed's performance payload (``PerformanceTracker``);
* ``GET  /api/v1/models/settings``, ``PUT /api/v1/models/settings`` — the routing strategy at run time
  (validated, applied to ``router.runtime_strategy``, persisted by ``SettingsStore``);
* ``GET  /api/v1/usage`` — stored usage records, filtered (since, until, model, provider, task, user, limit),
  paged by ``cursor`` (the previous page's ``next_cursor``: keyset on ``(ts, request_id)``);
* ``GET  /api/v1/budgets`` — every budget scope with spend, holds and reset time;
* ``POST /api/v1/feedback`` — a quality score for a finished request;
* ``POST/GET /api/v1/keys``, ``GET/DELETE /api/v1/keys/{id}`` — inference keys (the plaintext is in
  the create answer only);
* ``GET /health`` (liveness), ``GET /health/ready`` (providers, breakers, state backend, sink, key
  store; 503 when nothing can be served), ``GET /metrics`` (Prometheus text).

Every ``/api/v1`` operation but the spec itself needs the admin key. Errors use the OpenAI error
object. Input is validated by hand, exactly as strictly as the spec says, so generated requests
(schemathesis) get 4xx answers, never 5xx.

Must not touch: the serving routes, the router's logic, storage internals.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelplex.accounting.reports import iso, parse_when
from modelplex.errors import ConfigError
from modelplex.policy.strategies import resolve_strategy_name
from modelplex.server.errors import (
    GatewayError,
    invalid_request,
    not_found,
    openai_error_body,
    retry_after_header,
)
from modelplex.server.http import RequestHead, parse_object
from modelplex.server.keys import ID_ALPHABET, ID_LENGTH
from modelplex.server.metrics import CONTENT_TYPE
from modelplex.server.openapi import admin_spec

if TYPE_CHECKING:
    from modelplex.server.gateway import Gateway

Handler = Callable[["Gateway", Request], Awaitable[Response]]

MAX_NAME = 200
MAX_PATTERNS = 100
MAX_PATTERN_LEN = 200
MAX_METADATA_KEYS = 50
MAX_COMMENT = 4000
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100
MAX_RATE = 1_000_000_000
MAX_USD = 1e12
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_FOR_PLUS = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)? \d{2}(?::?\d{2})?$")
"""An ISO date-time whose ``+HH:MM`` offset arrived as `` HH:MM``: an unencoded '+' in a query string."""


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def _error_response(gw: Gateway, exc: BaseException, route: str) -> Response:
    info = gw.error_info(exc, route, "admin")
    headers = {k.decode(): v.decode() for k, v in retry_after_header(info)}
    return Response(openai_error_body(info), status_code=info.status, media_type="application/json",
                    headers=headers)


def check_query(request: Request, allowed: Iterable[str]) -> None:
    """400 for a query parameter the operation does not take (``unknown_parameter``, the first unknown
    name in ``param``) or one given more than once (``invalid_value``: ``?limit=1&limit=2`` would
    otherwise mean whichever the parser kept). Every admin and dashboard API operation calls it."""
    names = [name for name, _ in request.query_params.multi_items()]
    if not names:
        return
    allowed = frozenset(allowed)
    unknown = sorted({n for n in names if n not in allowed})
    if unknown:
        expected = f"expected {', '.join(sorted(allowed))}" if allowed else "this operation takes none"
        raise invalid_request(f"unknown query parameter(s): {', '.join(unknown)}; {expected}", param=unknown[0],
                              code="unknown_parameter")
    if len(set(names)) < len(names):
        repeated = next(n for i, n in enumerate(names) if n in names[:i])
        raise invalid_request(f"query parameter {repeated!r} is given {names.count(repeated)} times; give it once",
                              param=repeated, code="invalid_value")


def admin_endpoint(gw: Gateway, fn: Handler, *, route: str, auth: bool = True, query: Iterable[str] | None = ()
                   ) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with the admin-key check, the query check (``query``: the parameters it takes;
    ``None``: not checked), error rendering and metrics."""
    allowed = None if query is None else frozenset(query)

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            if auth:
                gw.auth.admin(RequestHead(request.scope))
            if allowed is not None:
                check_query(request, allowed)
            response = await fn(gw, request)
        except Exception as exc:
            response = _error_response(gw, exc, route)
        gw.metrics.observe(route, response.status_code, time.perf_counter() - started)
        return response

    endpoint.__name__ = fn.__name__
    return endpoint


async def read_json(gw: Gateway, request: Request) -> dict[str, Any]:
    head = RequestHead(request.scope)
    if head.content_length is not None and head.content_length > gw.max_body:
        raise GatewayError(413, "request body too large", type="request_too_large", code="request_too_large")
    body = await request.body()
    if len(body) > gw.max_body:
        raise GatewayError(413, "request body too large", type="request_too_large", code="request_too_large")
    return parse_object(body)


# ------------------------------------------------------------------------------------------ value checks


def _text(value: Any, name: str, *, max_len: int = MAX_NAME, min_len: int = 1) -> str:
    if not isinstance(value, str) or not (min_len <= len(value) <= max_len) or _CONTROL.search(value):
        raise invalid_request(f"'{name}' must be a string of {min_len} to {max_len} characters without control "
                              "characters", param=name)
    return value


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise invalid_request(f"'{name}' must be a list of at most {MAX_PATTERNS} glob patterns", param=name)
    return tuple(_text(v, name, max_len=MAX_PATTERN_LEN) for v in value)


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not (1 <= value <= MAX_RATE):
        raise invalid_request(f"'{name}' must be null or an integer from 1 to {MAX_RATE}", param=name)
    return value


def _opt_usd(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not (0 <= value <= MAX_USD):
        raise invalid_request(f"'{name}' must be null or a number from 0 to {MAX_USD:g}", param=name)
    return float(value)


def _check_fields(data: dict[str, Any], allowed: set[str], required: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise invalid_request(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(sorted(allowed))}",
                              param=unknown[0])
    missing = sorted(required - set(data))
    if missing:
        raise invalid_request(f"missing field(s): {', '.join(missing)}", param=missing[0])


def _query_text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    return _text(value, name)


def _query_time(request: Request, name: str, now: float) -> float | None:
    """Epoch seconds, or what ``modelplex usage`` takes: ``7d``/``24h``/``30m`` before now, ``now``, an
    ISO date or date-time (UTC unless it names an offset)."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        t = float(value)
    except ValueError:
        try:
            return parse_when(value, now=now)
        except ValueError:
            if _SPACE_FOR_PLUS.search(value):
                raise invalid_request(f"'{name}' has a space where its UTC offset's sign belongs: a '+' in a URL "
                                      "query reads as a space, so write '+' as %2B in a URL "
                                      "(2026-12-07T00:00:00%2B05:00), or give the time in UTC with Z",
                                      param=name) from None
            raise invalid_request(f"'{name}' must be epoch seconds, a duration before now (7d, 24h, 30m), "
                                  "'now', or an ISO 8601 date or date-time", param=name) from None
    if not math.isfinite(t):
        raise invalid_request(f"'{name}' must be a finite number", param=name)
    return t


def _query_limit(request: Request) -> int:
    value = request.query_params.get("limit")
    if value is None:
        return DEFAULT_LIMIT
    try:
        n = int(value)
    except ValueError:
        raise invalid_request(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit") from None
    if not 1 <= n <= MAX_LIMIT:
        raise invalid_request(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return n


def _query_bool(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise invalid_request(f"'{name}' must be true or false", param=name)


def _key_id(request: Request) -> str:
    key_id = str(request.path_params.get("key_id", ""))
    if len(key_id) != ID_LENGTH or any(c not in ID_ALPHABET for c in key_id):
        raise not_found(f"no API key with id {key_id!r}", code="key_not_found", param="key_id")
    return key_id


# ------------------------------------------------------------------------------------------ handlers


async def performance(gw: Gateway, request: Request) -> Response:
    task = _query_text(request, "task")
    tracker = gw.router.performance
    if tracker is None:
        return json_response({"model_performance": {}, "recommendations": {"cost_leader": None,
                              "quality_leader": None, "balanced_choice": None}, "task": task, "enabled": False,
                              "detail": "performance tracking is disabled (accounting.sink is none)"})
    report = dict(tracker.performance_report(task))
    report["enabled"] = True
    return json_response(report)


def settings_payload(gw: Gateway, updated_at: float | None = None) -> dict[str, Any]:
    router = gw.router
    planner = router.planner
    runtime = router.runtime_strategy
    env_strategy = getattr(planner.overrides, "strategy", None)
    default = gw.config.routing.default_strategy
    if runtime:
        current, source = runtime, "runtime"
    elif env_strategy:
        current, source = env_strategy, "MODEL_SELECTION_STRATEGY"
    else:
        current, source = default, "config"
    enabled = router.enabled_providers()
    chat: list[str] = []
    embedding: list[str] = []
    for spec in sorted(router.catalog.models(), key=lambda s: s.id):
        if spec.provider in enabled and not spec.deprecation.deprecated:
            (embedding if spec.mode == "embedding" else chat).append(spec.id)
    return {"current_strategy": current, "source": source, "runtime_strategy": runtime,
            "default_strategy": default, "available_strategies": sorted(planner.strategies),
            "available_models": {"chat": chat, "embedding": embedding}, "tasks": planner.task_names(),
            "updated_at": updated_at}


async def get_settings(gw: Gateway, request: Request) -> Response:
    return json_response(settings_payload(gw, gw.settings_updated_at))


async def put_settings(gw: Gateway, request: Request) -> Response:
    data = await read_json(gw, request)
    _check_fields(data, {"strategy"}, {"strategy"})
    name = data["strategy"]
    resolved: str | None = None
    if name is not None:
        if not isinstance(name, str) or not name:
            raise invalid_request("'strategy' must be a strategy name or null", param="strategy")
        try:
            resolved = resolve_strategy_name(name, gw.router.planner.strategies)
        except ConfigError:
            raise invalid_request(f"unknown strategy {name!r}; expected one of "
                                  f"{', '.join(sorted(gw.router.planner.strategies))}", param="strategy",
                                  code="unknown_strategy") from None
    saved = await gw.settings.save(resolved)
    gw.router.runtime_strategy = resolved
    gw.settings_updated_at = saved.updated_at
    return json_response(settings_payload(gw, saved.updated_at))


USAGE_FILTERS = ("model", "provider", "task", "user")
USAGE_PARAMS = frozenset({"since", "until", "limit", "order", "cursor", *USAGE_FILTERS})
PERFORMANCE_PARAMS = frozenset({"task"})
LIST_KEYS_PARAMS = frozenset({"include_revoked"})


async def usage(gw: Gateway, request: Request) -> Response:
    now = gw.router.clock.wall()
    since = _query_time(request, "since", now)
    until = _query_time(request, "until", now)
    limit = _query_limit(request)
    order = request.query_params.get("order", "desc")
    if order not in ("desc", "asc"):
        raise invalid_request("'order' must be desc (the latest records first) or asc", param="order")
    filters = {name: v for name in USAGE_FILTERS if (v := _query_text(request, name)) is not None}
    # the answer echoes the window as resolved (``7d`` -> the instant it meant), in ISO 8601 UTC
    echo = {**{k: iso(t) for k, t in (("since", since), ("until", until)) if t is not None}, **filters}
    recorder = gw.router.recorder
    sink = getattr(recorder, "sink", None) if recorder is not None else None
    if sink is None:
        return json_response({"object": "list", "data": [], "enabled": False, "filters": echo, "order": order,
                              "has_more": False, "summary": _summary([]),
                              "detail": "usage recording is disabled (accounting.sink: none)"})
    flush = getattr(recorder, "flush", None)
    if flush is not None:
        try:
            await flush()
        except RuntimeError:  # recorder not started (e.g. the app's lifespan did not run)
            pass
    paging: dict[str, Any] = {}
    raw_cursor = _query_text(request, "cursor")
    if raw_cursor is not None:
        paging["after"] = _decode_cursor(raw_cursor)
    rows = await sink.query(since, until, limit=limit + 1, newest_first=order == "desc", with_attempts=True,
                            **paging, **filters)
    has_more = len(rows) > limit
    rows = rows[:limit]
    summary = _summary(await sink.aggregate(since, until, by="model", **filters))
    return json_response({"object": "list", "data": rows, "enabled": True, "filters": echo, "order": order,
                          "has_more": has_more, "next_cursor": _encode_cursor(rows[-1]) if has_more else None,
                          "summary": summary})


def _encode_cursor(row: dict[str, Any]) -> str:
    """The opaque ``cursor`` that continues a listing after ``row``: its ``(ts, request_id)``."""
    return base64.urlsafe_b64encode(orjson.dumps([row["ts"], row["request_id"]])).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[float, str]:
    try:
        ts, rid = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not isinstance(rid, str):
            raise ValueError
        return float(ts), rid
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise invalid_request("'cursor' is not one this API gave (use next_cursor from the previous page, with "
                              "the same filters and order)", param="cursor") from None


def _summary(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over every record the filters match (not only the page returned), from the sink's groups."""
    return {"requests": sum(int(g.get("requests") or 0) for g in groups),
            "successes": sum(int(g.get("successes") or 0) for g in groups),
            "input_tokens": sum(int(g.get("input_tokens") or 0) for g in groups),
            "output_tokens": sum(int(g.get("output_tokens") or 0) for g in groups),
            "cost_usd": round(sum(float(g.get("cost_usd") or 0.0) for g in groups), 10)}


async def budgets(gw: Gateway, request: Request) -> Response:
    manager = gw.router.budgets
    if manager is None:
        return json_response({"enabled": False, "scopes": [], "detail": "no budget is configured"})
    scopes = await manager.status()
    return json_response({"enabled": True, "scopes": scopes})


async def feedback(gw: Gateway, request: Request) -> Response:
    data = await read_json(gw, request)
    _check_fields(data, {"request_id", "score", "comment"}, {"request_id", "score"})
    request_id = _text(data["request_id"], "request_id")
    score = data["score"]
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not (0.0 <= score <= 1.0):
        raise invalid_request("'score' must be a number from 0 to 1", param="score")
    comment = data.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT or "\x00" in comment):
        raise invalid_request(f"'comment' must be null or a string of at most {MAX_COMMENT} characters",
                              param="comment")
    router = gw.router
    known = router.feedback(request_id, float(score), comment)
    return json_response({"ok": True, "request_id": request_id, "score": float(score), "recorded": known,
                          "status": _feedback_status(router, known)}, status=202)


def _feedback_status(router: Any, known: bool) -> str:
    """What became of a score, as far as this process can tell (``known``: what ``router.feedback`` said):

    * ``attached``: the request is known (the performance tracker holds the requests this process
      finished in the last ``feedback_max_age_s``, 15 minutes by default): the score is attached to it;
    * ``pending``: the request could not be confirmed — the usage store has no lookup by request id,
      and the request may be older, served by another replica, still streaming, or may not exist.
      The score is stored all the same and shows on the record with that id if there is or will be
      one (feedback may arrive before its record); an id that never existed leaves an unattached row;
    * ``not_recorded``: no usage store and no performance statistics: the score is kept nowhere.
    """
    if known:
        return "attached"
    perf = router.performance
    tracked = perf is not None and hasattr(perf, "feedback")
    return "pending" if tracked or router.recorder is not None else "not_recorded"


_KEY_FIELDS = {"name", "allowed_models", "allowed_tasks", "rpm", "tpm", "daily_usd", "monthly_usd",
               "prompt_logging", "metadata"}


async def create_key(gw: Gateway, request: Request) -> Response:
    data = await read_json(gw, request)
    _check_fields(data, _KEY_FIELDS, {"name"})
    name = _text(data["name"], "name")
    models = _patterns(data.get("allowed_models", ["*"]), "allowed_models")
    tasks = _patterns(data.get("allowed_tasks", ["*"]), "allowed_tasks")
    prompt_logging = data.get("prompt_logging", True)
    if not isinstance(prompt_logging, bool):
        raise invalid_request("'prompt_logging' must be a boolean", param="prompt_logging")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise invalid_request(f"'metadata' must be an object with at most {MAX_METADATA_KEYS} keys",
                              param="metadata")
    if gw.keys is None:
        raise GatewayError(409, "this gateway has no key store", code="no_key_store")
    key, plaintext = await gw.keys.create(
        name, allowed_models=models, allowed_tasks=tasks, rpm=_opt_int(data.get("rpm"), "rpm"),
        tpm=_opt_int(data.get("tpm"), "tpm"), daily_usd=_opt_usd(data.get("daily_usd"), "daily_usd"),
        monthly_usd=_opt_usd(data.get("monthly_usd"), "monthly_usd"), prompt_logging=prompt_logging,
        metadata=metadata)
    if key.has_budget:
        gw.register_key_budget(key)
    return json_response({**key.to_public(), "key": plaintext}, status=201)


async def list_keys(gw: Gateway, request: Request) -> Response:
    include_revoked = _query_bool(request, "include_revoked", True)
    keys = await gw.keys.list(include_revoked=include_revoked) if gw.keys is not None else []
    return json_response({"object": "list", "data": [k.to_public() for k in keys]})


async def get_key(gw: Gateway, request: Request) -> Response:
    key_id = _key_id(request)
    key = await gw.keys.get(key_id) if gw.keys is not None else None
    if key is None:
        raise not_found(f"no API key with id {key_id!r}", code="key_not_found", param="key_id")
    return json_response(key.to_public())


async def revoke_key(gw: Gateway, request: Request) -> Response:
    key_id = _key_id(request)
    key = await gw.keys.revoke(key_id) if gw.keys is not None else None
    if key is None:
        raise not_found(f"no API key with id {key_id!r}", code="key_not_found", param="key_id")
    gw.register_key_budget(key)
    return json_response(key.to_public())


async def openapi(gw: Gateway, request: Request) -> Response:
    return json_response(admin_spec())


# ------------------------------------------------------------------------------------------ health, metrics


async def health(gw: Gateway, request: Request) -> Response:
    return json_response({"status": "ok", "uptime_s": round(time.time() - gw.started_at, 3)})


async def ready(gw: Gateway, request: Request) -> Response:
    router = gw.router
    providers = [{"name": s.name, "protocol": s.protocol, "enabled": s.enabled, "reason": s.reason,
                  "line": s.line()} for s in sorted(router.provider_status.values(), key=lambda s: s.name)]
    try:
        state = await router.state.health()
    except Exception as exc:
        state = {"backend": getattr(router.state, "name", "?"), "ok": False, "degraded": True,
                 "error": type(exc).__name__}
    recorder = router.recorder
    sink: dict[str, Any] = {"enabled": False}
    if recorder is not None:
        try:
            sink = {"enabled": True, **await recorder.sink.health(), "recorder": recorder.stats()}
        except Exception as exc:
            sink = {"enabled": True, "ok": False, "error": type(exc).__name__}
    key_store = await gw.keys.store.health() if gw.keys is not None else {"backend": None, "ok": True}
    enabled = [p["name"] for p in providers if p["enabled"]]
    checks_ok = bool(enabled) and bool(key_store.get("ok", False)) and bool(state.get("ok", True))
    # the store answering is not enough: the recorder may be journaling because its writes fail
    writing = sink.get("recorder", {}).get("sink_ok", True)
    degraded = bool(state.get("degraded")) or (recorder is not None and not (sink.get("ok", True) and writing))
    status = "not_ready" if not checks_ok else "degraded" if degraded else "ready"
    body = {"status": status, "providers": providers, "enabled_providers": enabled,
            "breakers": router.breakers.snapshot(), "state": state, "sink": sink, "key_store": key_store,
            "runtime_strategy": router.runtime_strategy, "auth": "disabled" if gw.no_auth else "enabled"}
    return json_response(body, status=200 if checks_ok else 503)


async def metrics(gw: Gateway, request: Request) -> Response:
    await gw.metrics.refresh(gw.router)
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE)


def admin_routes(gw: Gateway) -> list[Route]:
    """The admin, health and metrics routes of one gateway."""

    def r(path: str, fn: Handler, methods: list[str], route: str, *, auth: bool = True,
          query: Iterable[str] | None = ()) -> Route:
        return Route(path, admin_endpoint(gw, fn, route=route, auth=auth, query=query), methods=methods, name=route)

    # every /api/v1 operation names the query parameters it takes: any other is a 400 (``check_query``);
    # health and metrics (probes, scrapers) are left as they are
    return [
        r("/api/v1/openapi.json", openapi, ["GET"], "admin_openapi", auth=False),
        r("/api/v1/models/performance", performance, ["GET"], "admin_performance", query=PERFORMANCE_PARAMS),
        r("/api/v1/models/settings", get_settings, ["GET"], "admin_settings"),
        r("/api/v1/models/settings", put_settings, ["PUT"], "admin_settings_put"),
        r("/api/v1/usage", usage, ["GET"], "admin_usage", query=USAGE_PARAMS),
        r("/api/v1/budgets", budgets, ["GET"], "admin_budgets"),
        r("/api/v1/feedback", feedback, ["POST"], "admin_feedback"),
        r("/api/v1/keys", create_key, ["POST"], "admin_keys_create"),
        r("/api/v1/keys", list_keys, ["GET"], "admin_keys_list", query=LIST_KEYS_PARAMS),
        r("/api/v1/keys/{key_id}", get_key, ["GET"], "admin_keys_get"),
        r("/api/v1/keys/{key_id}", revoke_key, ["DELETE"], "admin_keys_revoke"),
        r("/health", health, ["GET"], "health", auth=False, query=None),
        r("/health/ready", ready, ["GET"], "health_ready", auth=False, query=None),
        r("/metrics", metrics, ["GET"], "metrics", auth=False, query=None),
    ]


__all__ = ["admin_routes", "check_query", "settings_payload"]
