"""The admin API's OpenAPI 3 document, written as a static dict that matches ``server.admin``.

Owns: ``admin_spec()``. Constraints here (lengths, ranges, required fields, ``additionalProperties:
false``) are the ones the handlers enforce, so a client generated from this document, or a fuzzer
such as schemathesis, sees exactly the documented answers. Change both together.

Must not touch: handlers (``server.admin``), the serving routes (their contract is OpenAI's and
Anthropic's own).
"""

from __future__ import annotations

import copy
from typing import Any

NO_CONTROL = "^[^\\x00-\\x1f\\x7f]*$"
"""Strings that go to a database must not hold control characters (PostgreSQL refuses NUL)."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_CONTROL}
_PATTERNS = {"type": "array", "maxItems": 100, "items": _TEXT,
             "description": "Glob patterns (fnmatch, case-sensitive); ['*'] allows everything, [] nothing."}
_COMMON = {"401": _error("Missing or wrong admin key.")}

_KEY_PROPS: dict[str, Any] = {
    "id": {"type": "string", "description": "The visible 8-character id (also inside the key)."},
    "prefix": {"type": "string", "description": "'mpx-<id>': how the key starts, safe to show."},
    "name": {"type": "string"},
    "allowed_models": {"type": "array", "items": {"type": "string"}},
    "allowed_tasks": {"type": "array", "items": {"type": "string"}},
    "rpm": {"type": "integer", "nullable": True},
    "tpm": {"type": "integer", "nullable": True},
    "daily_usd": {"type": "number", "nullable": True},
    "monthly_usd": {"type": "number", "nullable": True},
    "prompt_logging": {"type": "boolean"},
    "metadata": {"type": "object"},
    "created_at": {"type": "number", "description": "Epoch seconds."},
    "revoked_at": {"type": "number", "nullable": True, "description": "Epoch seconds, or null while active."},
    "active": {"type": "boolean"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type"],
                                 "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                                "param": {"type": "string", "nullable": True},
                                                "code": {"type": "string", "nullable": True}}}},
    },
    "KeyCreate": {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {
            "name": _TEXT,
            "allowed_models": _PATTERNS,
            "allowed_tasks": {**_PATTERNS, "description": "Task name globs; 'auto' routing counts as task 'auto'."},
            "rpm": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000, "nullable": True,
                    "description": "Requests per minute (null: no limit)."},
            "tpm": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000, "nullable": True,
                    "description": "Tokens per minute (null: no limit)."},
            "daily_usd": {"type": "number", "minimum": 0, "maximum": 1e12, "nullable": True},
            "monthly_usd": {"type": "number", "minimum": 0, "maximum": 1e12, "nullable": True},
            "prompt_logging": {"type": "boolean", "description": "false opts this key's traffic out of prompt logging."},
            "metadata": {"type": "object", "maxProperties": 50},
        },
    },
    "Key": {"type": "object", "required": list(_KEY_PROPS), "properties": _KEY_PROPS},
    "KeyCreated": {
        "type": "object", "required": [*_KEY_PROPS, "key"],
        "properties": {**_KEY_PROPS, "key": {"type": "string", "description": "The key itself, shown only here."}},
    },
    "KeyList": {"type": "object", "required": ["object", "data"],
                "properties": {"object": {"type": "string", "enum": ["list"]},
                               "data": {"type": "array", "items": _ref("Key")}}},
    "Settings": {
        "type": "object",
        "required": ["current_strategy", "source", "runtime_strategy", "default_strategy", "available_strategies",
                     "available_models", "tasks", "updated_at"],
        "properties": {
            "current_strategy": {"type": "string"},
            "source": {"type": "string", "enum": ["runtime", "MODEL_SELECTION_STRATEGY", "config"]},
            "runtime_strategy": {"type": "string", "nullable": True},
            "default_strategy": {"type": "string"},
            "available_strategies": {"type": "array", "items": {"type": "string"}},
            "available_models": {"type": "object", "required": ["chat", "embedding"],
                                 "properties": {"chat": {"type": "array", "items": {"type": "string"}},
                                                "embedding": {"type": "array", "items": {"type": "string"}}}},
            "tasks": {"type": "array", "items": {"type": "string"}},
            "updated_at": {"type": "number", "nullable": True},
        },
    },
    "SettingsUpdate": {
        "type": "object", "additionalProperties": False, "required": ["strategy"],
        "properties": {"strategy": {"type": "string", "minLength": 1, "maxLength": 200, "nullable": True,
                                    "description": "A strategy name (or alias such as 'economy'); null "
                                                   "returns to the configured default."}},
    },
    "Performance": {
        "type": "object", "required": ["model_performance", "recommendations", "enabled"],
        "properties": {
            "model_performance": {"type": "object", "additionalProperties": {
                "type": "object",
                "required": ["avg_processing_time_ms", "avg_cost_per_generation", "avg_quality_score",
                             "success_rate", "total_generations"],
                "properties": {"avg_processing_time_ms": {"type": "number", "nullable": True},
                               "avg_cost_per_generation": {"type": "number", "nullable": True},
                               "avg_quality_score": {"type": "number", "nullable": True},
                               "success_rate": {"type": "number", "nullable": True},
                               "total_generations": {"type": "integer"}}}},
            "recommendations": {"type": "object", "required": ["cost_leader", "quality_leader", "balanced_choice"],
                                "properties": {"cost_leader": {"type": "string", "nullable": True},
                                               "quality_leader": {"type": "string", "nullable": True},
                                               "balanced_choice": {"type": "string", "nullable": True}}},
            "task": {"type": "string", "nullable": True},
            "enabled": {"type": "boolean"},
        },
    },
    "Usage": {
        "type": "object", "required": ["object", "data", "enabled", "filters", "summary", "order", "has_more"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "order": {"type": "string", "enum": ["desc", "asc"]},
            "has_more": {"type": "boolean", "description": "More records match than this page holds."},
            "next_cursor": {"type": ["string", "null"],
                            "description": "Pass as cursor (same filters and order) for the next page; null on "
                                           "the last page."},
            "data": {"type": "array", "items": {"type": "object", "required": ["request_id", "ts"],
                                                "properties": {"request_id": {"type": "string"},
                                                               "ts": {"type": "number"}}}},
            "enabled": {"type": "boolean"},
            "filters": {"type": "object"},
            "summary": {"type": "object", "required": ["requests", "cost_usd"],
                        "properties": {"requests": {"type": "integer"}, "successes": {"type": "integer"},
                                       "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                                       "cost_usd": {"type": "number"}}},
        },
    },
    "Budgets": {"type": "object", "required": ["enabled", "scopes"],
                "properties": {"enabled": {"type": "boolean"},
                               "scopes": {"type": "array", "items": {"type": "object"}}}},
    "FeedbackCreate": {
        "type": "object", "additionalProperties": False, "required": ["request_id", "score"],
        "properties": {"request_id": _TEXT,
                       "score": {"type": "number", "minimum": 0, "maximum": 1},
                       "comment": {"type": "string", "maxLength": 4000, "nullable": True, "pattern": "^[^\\x00]*$"}},
    },
    "FeedbackAccepted": {
        "type": "object", "additionalProperties": False,
        "required": ["ok", "request_id", "score", "recorded", "status"],
        "properties": {
            "ok": {"type": "boolean"},
            "request_id": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "recorded": {"type": "boolean", "description": "True exactly when status is attached."},
            "status": {"type": "string", "enum": ["attached", "pending", "not_recorded"],
                       "description": "attached: this process finished the request (within the last 15 "
                                      "minutes) and the score is attached to it; pending: the request could "
                                      "not be confirmed (older, another replica, still streaming, or unknown), "
                                      "the score is stored all the same and shows on the record with that id "
                                      "if there is or will be one; not_recorded: no usage store and no "
                                      "performance statistics, the score is kept nowhere."},
        },
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_KEY_ID = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "The key's visible id."}

_PATHS: dict[str, Any] = {
    "/api/v1/models/performance": {"get": {
        "operationId": "getModelPerformance", "tags": ["models"],
        "summary": "Per-model latency, cost, quality and success rate, with recommendations.",
        "parameters": [_query("task", _TEXT, "Only requests of this task.")],
        "responses": {"200": _json(_ref("Performance"), "The seed's performance payload."),
                      "400": _error("Bad query."), **_COMMON}}},
    "/api/v1/models/settings": {
        "get": {"operationId": "getModelSettings", "tags": ["models"],
                "summary": "The routing strategy in force and what can be chosen.",
                "responses": {"200": _json(_ref("Settings"), "Current settings."), **_COMMON}},
        "put": {"operationId": "putModelSettings", "tags": ["models"],
                "summary": "Change the routing strategy at run time (persisted; shared by replicas through Redis).",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SettingsUpdate")}}},
                "responses": {"200": _json(_ref("Settings"), "The new settings."),
                              "400": _error("Malformed body or unknown strategy."),
                              "413": _error("Body too large."), **_COMMON}},
    },
    "/api/v1/usage": {"get": {
        "operationId": "getUsage", "tags": ["accounting"],
        "summary": "Stored usage records in [since, until), the latest first (order=asc: oldest first), "
                   "with totals over every matching record.",
        "parameters": [
            _query("since", {"type": "string"}, "Epoch seconds, an ISO 8601 date or date-time, 'now', or a "
                                               "duration before now (7d, 24h, 30m)."),
            _query("until", {"type": "string"}, "Exclusive; the same forms as since."),
            _query("model", _TEXT, "Serving model id."),
            _query("provider", _TEXT, "Serving provider."),
            _query("task", _TEXT, "Task name."),
            _query("user", _TEXT, "End-user id."),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "At most this many (default 100)."),
            _query("order", {"type": "string", "enum": ["desc", "asc"]}, "desc (default): the latest first."),
            _query("cursor", {"type": "string"}, "The previous page's next_cursor: the records after its last "
                                                 "one, in the same order (none skipped or repeated)."),
        ],
        "responses": {"200": _json(_ref("Usage"), "Matching records and their totals."),
                      "400": _error("Bad query, or a parameter not listed here."), **_COMMON}}},
    "/api/v1/budgets": {"get": {
        "operationId": "getBudgets", "tags": ["accounting"],
        "summary": "Every budget scope: limit, spent, reserved, remaining, reset time.",
        "responses": {"200": _json(_ref("Budgets"), "Budget status."), **_COMMON}}},
    "/api/v1/feedback": {"post": {
        "operationId": "postFeedback", "tags": ["accounting"],
        "summary": "Attach a quality score (0..1) to a finished request.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("FeedbackCreate")}}},
        "responses": {"202": _json(_ref("FeedbackAccepted"), "Queued for the usage store and performance stats; "
                                                              "status says whether the request was found."),
                      "400": _error("Malformed body."), "413": _error("Body too large."), **_COMMON}}},
    "/api/v1/keys": {
        "post": {"operationId": "createKey", "tags": ["keys"],
                 "summary": "Create an inference key; the key itself is in this answer only.",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("KeyCreate")}}},
                 "responses": {"201": _json(_ref("KeyCreated"), "The new key."),
                               "400": _error("Malformed body."), "409": _error("No key store."),
                               "413": _error("Body too large."), **_COMMON}},
        "get": {"operationId": "listKeys", "tags": ["keys"], "summary": "Every key (never the key itself).",
                "parameters": [_query("include_revoked", {"type": "boolean"}, "Include revoked keys (default true).")],
                "responses": {"200": _json(_ref("KeyList"), "Keys, oldest first."),
                              "400": _error("Bad query."), **_COMMON}},
    },
    "/api/v1/keys/{key_id}": {
        "get": {"operationId": "getKey", "tags": ["keys"], "summary": "One key.", "parameters": [_KEY_ID],
                "responses": {"200": _json(_ref("Key"), "The key."), "404": _error("No such key."), **_COMMON}},
        "delete": {"operationId": "revokeKey", "tags": ["keys"],
                   "summary": "Revoke a key (idempotent; the first revocation time is kept).",
                   "parameters": [_KEY_ID],
                   "responses": {"200": _json(_ref("Key"), "The revoked key."), "404": _error("No such key."),
                                 **_COMMON}},
    },
}

_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "modelplex gateway admin API", "version": "1",
             "description": "Keys, runtime settings, usage, budgets, feedback and performance of a modelplex "
                            "gateway. Every operation needs the admin key as 'Authorization: Bearer <key>'. "
                            "The serving routes (/v1/chat/completions, /v1/embeddings, /v1/models, /v1/messages) "
                            "follow the OpenAI and Anthropic APIs and are documented in docs/gateway.md."},
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": _PATHS,
    "components": {"schemas": _SCHEMAS,
                   "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                      "description": "The admin key (server.admin_key or "
                                                                     "MODELPLEX_ADMIN_KEY)."}}},
}


def admin_spec() -> dict[str, Any]:
    """A copy of the admin API's OpenAPI 3.0 document."""
    return copy.deepcopy(_SPEC)


__all__ = ["admin_spec"]
