"""The gateway's error model: the ONE mapping from an exception to an HTTP status, and the two wire shapes.

Owns: ``GatewayError`` (errors the gateway itself raises: bad input, auth, limits) and its helpers,
``ErrorInfo`` and ``classify(exc)`` — every status the gateway answers with is decided here, by
``isinstance`` on the typed errors of ``modelplex.errors`` — plus the renderers
``openai_error_body`` (``{"error": {"message", "type", "param", "code"}}``),
``anthropic_error_body`` (``{"type": "error", "error": {"type", "message"}, "request_id"}``) and
``retry_after_header``.

The table (docs/gateway.md repeats it):

===================================================  ======  =========================
exception                                            status  code
===================================================  ======  =========================
malformed JSON, bad schema, forbidden field          400     invalid_request / ...
missing or wrong API key                             401     invalid_api_key
model or task outside the key's allow-list           403     model_not_allowed
unknown model or task                                404     model_not_found
model whose provider has no credentials              404     model_not_available
body over ``server.max_body_bytes``                  413     request_too_large
key RPM/TPM limit                                    429     rate_limit_exceeded
budget                                               429     budget_exceeded
every target failed or is cooling down               503     all_targets_failed
the key store or another database is unreachable     503     database_unavailable
every target refused the gateway (401/403/404/quota) 502     upstream_error
upstream timeout                                     504     upstream_timeout
other upstream failure                               502     upstream_error
===================================================  ======  =========================

Provider messages are passed on only for the client's own mistakes (the 400 family), redacted of
every credential; upstream 401/403/5xx messages never reach the client (they describe the
gateway's credentials, not the caller's request).

Must not touch: HTTP I/O (``server.http`` sends), logging configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from modelplex.errors import (
    AllAttemptsFailedError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigError,
    ContentPolicyError,
    ContextWindowExceededError,
    InvalidRequestError,
    ModelNotAllowedError,
    NoCandidatesError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderNotConfiguredError,
    QuotaExceededError,
    RateLimitError,
    RateLimitExceededError,
    UnknownModelError,
    UnknownTaskError,
    UnsupportedParameterError,
    redact,
)
from modelplex.server.db import DatabaseUnavailableError, is_unavailable


class GatewayError(Exception):
    """An error the gateway raises itself; carries its HTTP status and OpenAI-style fields."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, retry_after: float | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.extra = extra or {}
        super().__init__(message)


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    """400: the body is not what the route accepts."""
    return GatewayError(400, message, param=param, code=code)


def unauthorized(message: str = "Invalid or missing API key. Pass it as 'Authorization: Bearer <key>' "
                                 "or 'x-api-key: <key>'.") -> GatewayError:
    return GatewayError(401, message, type="authentication_error", code="invalid_api_key")


def forbidden(message: str, *, param: str | None = None, code: str = "model_not_allowed") -> GatewayError:
    return GatewayError(403, message, type="permission_error", code=code, param=param)


def not_found(message: str, *, code: str = "not_found", param: str | None = None) -> GatewayError:
    return GatewayError(404, message, type="not_found_error", code=code, param=param)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body exceeds the gateway's limit of {limit} bytes "
                             "(server.max_body_bytes).", type="request_too_large", code="request_too_large")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What the client is told: status, OpenAI ``type``/``code``/``param``, message, Retry-After."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    retry_now: bool = True
    """False when a prompt retry cannot succeed (a budget that resets in hours, a request larger than the
    budget itself): the answer then says ``x-should-retry: false``, which the OpenAI and Anthropic SDKs
    obey, instead of retrying or sleeping until a far Retry-After."""


def classify(exc: BaseException, secrets: Iterable[str] = ()) -> ErrorInfo:
    """The one mapping from an exception to what the client sees. ``secrets`` are redacted from
    any provider text that is passed on."""
    secrets = tuple(secrets)
    if isinstance(exc, GatewayError):
        return ErrorInfo(exc.status, exc.type, exc.message, exc.code, exc.param, exc.retry_after,
                         tuple(exc.extra.items()))
    if isinstance(exc, UnknownModelError):
        return ErrorInfo(404, "invalid_request_error", str(exc), "model_not_found", "model",
                         extra=(("suggestions", list(exc.suggestions)),))
    if isinstance(exc, UnknownTaskError):
        return ErrorInfo(404, "invalid_request_error", str(exc), "model_not_found", "model",
                         extra=(("suggestions", [f"task:{t}" for t in exc.known]),))
    if isinstance(exc, ProviderNotConfiguredError):
        return ErrorInfo(404, "invalid_request_error",
                         f"provider {exc.provider!r} is not configured on this gateway, so its models "
                         "cannot be used", "model_not_available", "model")
    if isinstance(exc, InvalidRequestError):
        return ErrorInfo(400, "invalid_request_error", str(exc), None, exc.param)
    if isinstance(exc, ModelNotAllowedError):
        return ErrorInfo(403, "permission_error", f"This API key may not use the models this request routes to: "
                         f"{_one_line(str(exc))}", "model_not_allowed", "model")
    if isinstance(exc, NoCandidatesError):
        return ErrorInfo(400, "invalid_request_error", _one_line(str(exc)), "no_candidates", None,
                         extra=(("rejected", dict(list(exc.rejected.items())[:20])),))
    if isinstance(exc, UnsupportedParameterError):
        return ErrorInfo(400, "invalid_request_error", str(exc), "unsupported_parameter",
                         exc.params[0] if exc.params else None)
    if isinstance(exc, ConfigError):  # raised while planning from request fields (strategy, requirements)
        return ErrorInfo(400, "invalid_request_error", _one_line(str(exc)), "invalid_value", exc.key)
    if isinstance(exc, BudgetExceededError):
        wait = _finite(exc.retry_after)
        return ErrorInfo(429, "insufficient_quota", str(exc), "budget_exceeded", None, wait, (("scope", exc.scope),),
                         retry_now=wait is not None and wait <= PROMPT_RETRY_S)
    if isinstance(exc, RateLimitExceededError):
        return ErrorInfo(429, "rate_limit_error", str(exc), "rate_limit_exceeded", None, _finite(exc.retry_after))
    if isinstance(exc, AllAttemptsFailedError):
        last = exc.last_error
        if isinstance(last, BadRequestError):  # every target refused the request itself: the caller's fault
            return classify(last, secrets)
        if isinstance(last, _PERMANENT) and exc.retry_after is None:  # the gateway's upstream setup is wrong
            return ErrorInfo(502, "upstream_error", _one_line(str(exc)), "upstream_error")
        if isinstance(last, APITimeoutError):  # the last target tried did not answer in time
            return ErrorInfo(504, "timeout_error", _one_line(str(exc)), "upstream_timeout", None,
                             _finite(exc.retry_after))
        return ErrorInfo(503, "service_unavailable", _one_line(str(exc)), "all_targets_failed", None,
                         _finite(exc.retry_after))
    if isinstance(exc, ProviderError):
        return _provider_error(exc, secrets)
    if is_unavailable(exc):  # the gateway's own database (keys, usage, settings), not an upstream
        what = exc.what if isinstance(exc, DatabaseUnavailableError) else "a database the gateway needs"
        return ErrorInfo(503, "service_unavailable", f"{what} is unreachable; retry shortly",
                         "database_unavailable", None, DatabaseUnavailableError.retry_after)
    return ErrorInfo(500, "server_error", "The gateway hit an internal error; see its log.", "internal_error")


_PERMANENT = (AuthenticationError, PermissionDeniedError, NotFoundError, QuotaExceededError)
"""Upstream refusals that waiting does not cure: the gateway's credentials, access or model names."""


def _provider_error(exc: ProviderError, secrets: tuple[str, ...]) -> ErrorInfo:
    where = exc.where or "the provider"
    if isinstance(exc, ContextWindowExceededError):
        return ErrorInfo(400, "invalid_request_error", _provider_text(exc, secrets), "context_length_exceeded",
                         "messages")
    if isinstance(exc, ContentPolicyError):
        return ErrorInfo(400, "invalid_request_error", _provider_text(exc, secrets), "content_policy_violation",
                         None)
    if isinstance(exc, BadRequestError):
        return ErrorInfo(400, "invalid_request_error", _provider_text(exc, secrets), "upstream_bad_request", None)
    if isinstance(exc, RateLimitError):
        return ErrorInfo(429, "rate_limit_error", f"{where} is rate limiting this gateway", "upstream_rate_limited",
                         None, _finite(exc.retry_after))
    if isinstance(exc, APITimeoutError):
        return ErrorInfo(504, "timeout_error", f"{where} did not answer in time", "upstream_timeout")
    status = f" with status {exc.status_code}" if exc.status_code else ""
    return ErrorInfo(502, "upstream_error", f"{where} failed{status} ({exc.kind})", "upstream_error")


def _provider_text(exc: ProviderError, secrets: tuple[str, ...]) -> str:
    where = exc.where or "provider"
    text = exc.message or exc.kind
    return f"{where}: {redact(_one_line(text), secrets)}"


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return max(0.0, value)


# ------------------------------------------------------------------------------------------ renderers

_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    503: "overloaded_error", 504: "timeout_error"}


def openai_error_object(info: ErrorInfo) -> dict[str, Any]:
    err: dict[str, Any] = {"message": info.message, "type": info.type, "param": info.param, "code": info.code}
    for k, v in info.extra:
        err[k] = v
    return err


def openai_error_body(info: ErrorInfo) -> bytes:
    return orjson.dumps({"error": openai_error_object(info)})


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")


def anthropic_error_object(info: ErrorInfo, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": anthropic_error_type(info.status),
                                                       "message": info.message}}
    if request_id:
        body["request_id"] = request_id
    return body


def anthropic_error_body(info: ErrorInfo, request_id: str | None = None) -> bytes:
    return orjson.dumps(anthropic_error_object(info, request_id))


PROMPT_RETRY_S = 60.0
"""The longest budget wait a client is invited to retry after (the SDKs cap their own waits near this)."""


def retry_after_header(info: ErrorInfo) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` (whole seconds, rounded up, at least 1) and ``retry-after-ms`` when known, and
    ``x-should-retry: false`` when a prompt retry cannot succeed (``ErrorInfo.retry_now``)."""
    out = [] if info.retry_now else [(b"x-should-retry", b"false")]
    if info.retry_after is None:
        return out
    seconds = max(1, math.ceil(info.retry_after))
    return [*out, (b"retry-after", str(seconds).encode()),
            (b"retry-after-ms", str(max(1, math.ceil(info.retry_after * 1000))).encode())]


__all__ = [
    "ErrorInfo",
    "GatewayError",
    "anthropic_error_body",
    "anthropic_error_object",
    "anthropic_error_type",
    "classify",
    "forbidden",
    "invalid_request",
    "not_found",
    "openai_error_body",
    "openai_error_object",
    "retry_after_header",
    "too_large",
    "unauthorized",
]
