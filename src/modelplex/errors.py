"""The typed error hierarchy and the one place that maps an HTTP outcome onto it.

Owns: every exception modelplex raises, ``status_error()`` (status + provider error type/code -> class),
``parse_retry_after()`` (``retry-after-ms``, ``Retry-After`` seconds or HTTP date, ``x-ratelimit-reset-*``,
``anthropic-ratelimit-*-reset``) and ``redact()``.

Decisions elsewhere (retry, breaker, fallback) are ``isinstance`` checks against these classes.
Nothing here matches English message text. Protocol adapters extract the provider's structured
``type``/``code`` from the body and pass them in; this module never sees a wire format.

Must not touch: I/O, logging configuration.
"""

from __future__ import annotations

import difflib
import email.utils
import functools
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any


class ModelplexError(Exception):
    """Base of everything modelplex raises."""


# ----------------------------------------------------------------------------- configuration & catalog


class ConfigError(ModelplexError, ValueError):
    """Invalid configuration: names the file, the key and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.message = message
        prefix = ""
        if file:
            prefix += f"{file}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message)

    def located(self, *, file: str | None = None, prefix: str = "") -> ConfigError:
        """This error placed under the key path ``prefix`` (its ``key`` becomes ``prefix.key``) in ``file``:
        for a check that ran on one part of a file, such as a task's requirements."""
        key = ".".join(k for k in (prefix, self.key) if k) or None
        return ConfigError(self.message, file=file or self.file, key=key)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known`` to a mistyped ``name``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_SECRET_KEY_RE = re.compile(r"key|secret|token|password|dsn|url", re.IGNORECASE)
"""Config key names whose value an error does not quote (a credential, or a URL that may carry one)."""

_MAPPING_ERRORS = frozenset({"model_type", "dict_type", "model_attributes_type"})
"""pydantic error types that mean "a mapping was expected" (their text names an internal class)."""


def invalid_value_message(kind: str, message: str, key: str, value: Any) -> str:
    """What a config error says about one invalid value, from a validation error's ``type``, ``msg`` and
    ``input``. A mapping that was expected is called a mapping (never an internal class name); the value is
    quoted only when that is safe: never a mapping or list, nothing under ``providers`` (credentials live
    there, and a value in the wrong place may be one), nothing under a key whose name suggests a secret."""
    if kind in _MAPPING_ERRORS:
        message = "expected a mapping"
    last = key.rsplit(".", 1)[-1]
    if key == "providers" or key.startswith(("providers.", "providers[")) or _SECRET_KEY_RE.search(last):
        return f"{message} (got {_type_name(value)})" if kind in _MAPPING_ERRORS else message
    if isinstance(value, dict | list):
        return message
    return f"{message} (got {value!r})"


def _type_name(value: Any) -> str:
    return {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
            type(None): "nothing"}.get(type(value), type(value).__name__)


class CatalogError(ModelplexError):
    """A catalog lookup or catalog data problem."""


class UnknownModelError(CatalogError, KeyError):
    """No model with that id or alias. Carries close-match suggestions."""

    def __init__(self, model: str, suggestions: Iterable[str] = ()) -> None:
        self.model = model
        self.suggestions = list(suggestions)
        msg = f"unknown model {model!r}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownTaskError(ModelplexError, KeyError):
    def __init__(self, task: str, known: Iterable[str] = ()) -> None:
        self.task = task
        self.known = sorted(known)
        super().__init__(f"unknown task {task!r}; known tasks: {', '.join(self.known) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


class NoCandidatesError(ModelplexError):
    """Selection found no model that meets the requirements. ``rejected`` explains why, per model."""

    def __init__(self, message: str, rejected: Mapping[str, str] | None = None) -> None:
        self.rejected = dict(rejected or {})
        super().__init__(message)


class ModelNotAllowedError(NoCandidatesError):
    """The request's plan had targets, but none is in the caller's ``allowed_models`` (an API key's
    allow-list). ``rejected`` names the models left out."""


class ProviderNotConfiguredError(ModelplexError):
    """The model's provider has no credentials. Names the variable to set."""

    def __init__(self, provider: str, env_vars: Iterable[str] = (), detail: str = "") -> None:
        self.provider = provider
        self.env_vars = list(env_vars)
        hint = f"set {' or '.join(self.env_vars)}" if self.env_vars else "configure it under providers:"
        super().__init__(f"provider {provider!r} is not configured: {hint}" + (f" ({detail})" if detail else ""))


class UnsupportedParameterError(ModelplexError, ValueError):
    def __init__(self, model: str, params: Iterable[str]) -> None:
        self.model = model
        self.params = list(params)
        super().__init__(f"{model} does not support: {', '.join(self.params)}")


class InvalidRequestError(ModelplexError, ValueError):
    """The request itself is malformed (checked before anything is sent). ``param`` names the part, in
    the OpenAI API's notation: ``messages``, ``messages[2].role``."""

    def __init__(self, message: str, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class BudgetExceededError(ModelplexError):
    """A budget would be exceeded. ``scope`` is e.g. ``global:daily`` or ``user:alice:monthly``."""

    def __init__(self, message: str, *, scope: str = "", limit_usd: float = 0.0, spent_usd: float = 0.0,
                 retry_after: float | None = None) -> None:
        self.scope = scope
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.retry_after = retry_after
        super().__init__(message)


class RateLimitExceededError(ModelplexError):
    """A local (gateway key) RPM/TPM limit was hit; not a provider 429."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class StructuredOutputError(ModelplexError):
    """The model's answer did not validate against ``response_model``, even after one repair."""

    def __init__(self, message: str, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(message)


class RefusalError(StructuredOutputError):
    """The model refused to answer (``Response.refusal``), so there is nothing to validate and no repair
    turn is tried. ``refusal`` is the model's text; ``response`` the answer, with its usage and cost."""

    def __init__(self, refusal: str, response: Any = None) -> None:
        self.refusal = refusal
        self.response = response
        super().__init__(f"the model refused to answer: {refusal}", raw=refusal)


class AllAttemptsFailedError(ModelplexError):
    """Every attempt in the plan failed or was skipped. ``attempts`` lists each with its outcome."""

    def __init__(self, message: str, attempts: list[Any], last_error: BaseException | None = None,
                 retry_after: float | None = None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        self.retry_after = retry_after
        lines = [message]
        for a in attempts:
            status = f" {a.status_code}" if getattr(a, "status_code", None) else ""
            err = f" {a.error_type}" if getattr(a, "error_type", None) else ""
            lines.append(f"  - {a.target}: {a.outcome}{err}{status}")
        super().__init__("\n".join(lines))


# ----------------------------------------------------------------------------- provider call errors


class ProviderError(ModelplexError):
    """An error from calling a provider. Carries what a retry/fallback decision needs, and no secret."""

    retryable: bool = False
    counts_for_breaker: bool = False

    def __init__(
        self,
        message: str = "",
        *,
        provider: str = "",
        model: str = "",
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
        error_type: str | None = None,
        error_code: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        self.error_type = error_type
        self.error_code = error_code
        self.message = message
        status = f" {status_code}" if status_code else ""
        super().__init__(f"{self.where or 'provider'}{status}: {message or type(self).__name__}")

    @property
    def where(self) -> str:
        """The model id (``openai/gpt-4o``: catalog ids start with their provider), else the provider,
        else ``""``."""
        if self.model:
            if not self.provider or self.model.startswith(f"{self.provider}/"):
                return self.model
            return f"{self.provider}/{self.model}"
        return self.provider

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r}, "
                f"status_code={self.status_code!r}, request_id={self.request_id!r}, "
                f"retry_after={self.retry_after!r})")

    @property
    def kind(self) -> str:
        """A stable snake_case name for records and metrics."""
        return _KIND_NAMES.get(type(self), type(self).__name__)


class APIStatusError(ProviderError):
    """The provider answered with a non-2xx status."""


class BadRequestError(APIStatusError):
    """400/422: the request is wrong; never retried."""


class ContextWindowExceededError(BadRequestError):
    """The prompt plus output does not fit the model's window. Fall back only to larger windows."""


class ContentPolicyError(BadRequestError):
    """The provider refused on content grounds. Fall back only where config allows it."""


class AuthenticationError(APIStatusError):
    """401: bad or missing key."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this model or feature."""


class NotFoundError(APIStatusError):
    """404: unknown or retired model, or wrong path."""


class ConflictError(APIStatusError):
    """409: retried."""

    retryable = True


class RequestTimeoutError(APIStatusError):
    """408 from the provider: retried."""

    retryable = True
    counts_for_breaker = True


class RateLimitError(APIStatusError):
    """429: throttled. Retried after ``retry_after``; marks the target throttled, never trips a breaker."""

    retryable = True


class QuotaExceededError(APIStatusError):
    """Credits or quota exhausted (402, or a 429 whose structured code says quota). Not retried: fail over."""


class ServerError(APIStatusError):
    """5xx: retried with back-off, counts toward the breaker."""

    retryable = True
    counts_for_breaker = True


class OverloadedError(ServerError):
    """529 (Anthropic) or 503 with an overloaded type."""


class InvalidResponseError(ProviderError):
    """A 2xx whose body is malformed or truncated. Retried; counts toward the breaker."""

    retryable = True
    counts_for_breaker = True


class StreamInterruptedError(ProviderError):
    """A stream broke after its first chunk reached the caller. Never retried; carries partial usage."""

    counts_for_breaker = True

    def __init__(self, message: str = "", *, partial_usage: Any = None, partial_content: str = "",
                 **kwargs: Any) -> None:
        self.partial_usage = partial_usage
        self.partial_content = partial_content
        super().__init__(message, **kwargs)


class APIConnectionError(ProviderError):
    """The connection failed or was reset before a full answer arrived. Retried; counts toward the breaker."""

    retryable = True
    counts_for_breaker = True


class APITimeoutError(APIConnectionError):
    """The call exceeded its timeout."""


_KIND_NAMES: dict[type, str] = {
    ProviderError: "provider_error",
    APIStatusError: "api_status_error",
    BadRequestError: "bad_request",
    ContextWindowExceededError: "context_window_exceeded",
    ContentPolicyError: "content_policy",
    AuthenticationError: "authentication",
    PermissionDeniedError: "permission_denied",
    NotFoundError: "not_found",
    ConflictError: "conflict",
    RequestTimeoutError: "request_timeout",
    RateLimitError: "rate_limited",
    QuotaExceededError: "quota_exceeded",
    ServerError: "server_error",
    OverloadedError: "overloaded",
    InvalidResponseError: "invalid_response",
    StreamInterruptedError: "stream_interrupted",
    APIConnectionError: "connection_error",
    APITimeoutError: "timeout",
}


def error_kind(exc: BaseException) -> str:
    """Stable snake_case name of any exception, for records and metrics."""
    if isinstance(exc, ProviderError):
        return exc.kind
    if isinstance(exc, BudgetExceededError):
        return "budget_exceeded"
    return type(exc).__name__


# ----------------------------------------------------------------------------- classification


def status_error(
    status: int,
    *,
    kind: type[ProviderError] | None = None,
    message: str = "",
    provider: str = "",
    model: str = "",
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    error_type: str | None = None,
    error_code: str | None = None,
    request_id: str | None = None,
    now: float | None = None,
) -> ProviderError:
    """Build the typed error for a non-2xx answer.

    ``kind`` is the class a protocol's classifier chose from the provider's *structured* error
    type/code (e.g. ``context_length_exceeded`` -> ``ContextWindowExceededError``); when it is
    ``None`` the status decides. Retry-after is parsed from the headers here, in one place.
    """
    cls = kind or class_for_status(status)
    return cls(
        message,
        provider=provider,
        model=model,
        status_code=status,
        request_id=request_id,
        retry_after=parse_retry_after(headers or {}, now=now),
        body=body,
        error_type=error_type,
        error_code=error_code,
    )


def class_for_status(status: int) -> type[ProviderError]:
    if status == 400 or status == 422:
        return BadRequestError
    if status == 401:
        return AuthenticationError
    if status == 402:
        return QuotaExceededError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 408:
        return RequestTimeoutError
    if status == 409:
        return ConflictError
    if status == 413:
        return ContextWindowExceededError
    if status == 429:
        return RateLimitError
    if status == 529:
        return OverloadedError
    if status >= 500:
        return ServerError
    return APIStatusError


MAX_RETRY_AFTER_PARSE = 24 * 3600.0
"""Values past a day are treated as garbage and clamped to this by the parser; the retry policy caps further."""

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def _parse_duration(value: str) -> float | None:
    """Parse OpenAI's ``x-ratelimit-reset-*`` durations such as ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``."""
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION_RE.match(value)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def _parse_http_date_or_iso(value: str, now: float) -> float | None:
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        dt = None
    if dt is None:
        from datetime import datetime

        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:

        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() - now


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from the most specific header present; ``None`` when none is usable.

    Order: ``retry-after-ms``, ``retry-after`` (seconds or HTTP date), then the bucket resets
    (``x-ratelimit-reset-requests``/``-tokens`` durations, ``anthropic-ratelimit-*-reset`` timestamps): the
    latest reset among the buckets their ``remaining`` header says are exhausted, else the earliest one.
    Negative values become 0; values past a day are clamped (garbage in, bounded out).
    """
    if not headers:
        return None
    now = time.time() if now is None else now
    lower = {k.lower(): v for k, v in headers.items()} if not _is_lower_mapping(headers) else headers

    def clamp(x: float) -> float:
        if x != x:  # NaN
            return 0.0
        return min(max(x, 0.0), MAX_RETRY_AFTER_PARSE)

    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return clamp(float(ms) / 1000.0)
        except ValueError:
            pass
    ra = lower.get("retry-after")
    if ra is not None:
        try:
            return clamp(float(ra))
        except ValueError:
            parsed = _parse_http_date_or_iso(ra, now)
            if parsed is not None:
                return clamp(parsed)
    resets: list[float] = []
    exhausted: list[float] = []
    for reset, remaining, is_date in _RESET_BUCKETS:
        v = lower.get(reset)
        if v is None:
            continue
        d = _parse_http_date_or_iso(v, now) if is_date else _parse_duration(v)
        if d is None:
            continue
        resets.append(d)
        if remaining is not None and _is_zero(lower.get(remaining)):
            exhausted.append(d)
    if exhausted:  # every exhausted bucket must refill before a retry can pass
        return clamp(max(exhausted))
    if resets:
        return clamp(min(resets))
    return None


_RESET_BUCKETS: tuple[tuple[str, str | None, bool], ...] = (
    ("x-ratelimit-reset-requests", "x-ratelimit-remaining-requests", False),
    ("x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens", False),
    ("x-ratelimit-reset", None, False),
    ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-requests-remaining", True),
    ("anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-remaining", True),
    ("anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-input-tokens-remaining", True),
    ("anthropic-ratelimit-output-tokens-reset", "anthropic-ratelimit-output-tokens-remaining", True),
)
"""(reset header, its bucket's remaining header, whether the reset is a timestamp rather than a duration)."""


def _is_zero(value: str | None) -> bool:
    try:
        return value is not None and float(value) <= 0
    except ValueError:
        return False


def _is_lower_mapping(headers: Mapping[str, str]) -> bool:
    # aiohttp's CIMultiDict(Proxy) is case-insensitive already
    return type(headers).__name__ in ("CIMultiDict", "CIMultiDictProxy")


# ----------------------------------------------------------------------------- secrets

_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "x-goog-api-key", "proxy-authorization",
                             "x-amz-security-token", "cookie", "set-cookie"})


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Copy of headers with credentials replaced, safe to log."""
    return {k: ("***" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


PARTIAL_ECHO = 8
"""Leading characters of a secret (of length ≥ 12) that ``redact`` treats as an echo of it."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret (of length ≥ 6) in ``text``; of each secret's masked form
    as providers echo it (``sk-proj-ab********wxyz``: a prefix, a run of ``*``/``.``/``•``, the last four
    characters), which still gives a key's first and last characters away; and of a secret's first
    ``PARTIAL_ECHO`` or more characters (a provider quoting the start of the key it was sent). Only
    leading runs count: a secret such as ``sk-no-key-required`` shares words with ordinary messages."""
    for s in secrets:
        if not s or len(s) < 6:
            continue
        if s in text:
            text = text.replace(s, "***")
        if len(s) >= 12:
            if s[-4:] in text:
                text = _masked_form(s).sub("***", text)
            if s[:PARTIAL_ECHO] in text:
                text = _redact_prefixes(text, s)
    return text


def _redact_prefixes(text: str, secret: str) -> str:
    """``text`` with each run that repeats ``secret``'s first ``PARTIAL_ECHO`` or more characters masked."""
    head = secret[:PARTIAL_ECHO]
    out: list[str] = []
    i = 0
    while (j := text.find(head, i)) >= 0:
        k = PARTIAL_ECHO
        while j + k < len(text) and k < len(secret) and text[j + k] == secret[k]:
            k += 1
        out.append(text[i:j])
        out.append("***")
        i = j + k
    out.append(text[i:])
    return "".join(out)


@functools.lru_cache(maxsize=64)
def _masked_form(secret: str) -> re.Pattern[str]:
    head = secret[:3]
    rest = secret[3:12]
    prefix = re.escape(head) + "".join(f"(?:{re.escape(c)}" for c in rest) + ")?" * len(rest)
    return re.compile(prefix + r"[*.\u2022\u2026]{3,}" + re.escape(secret[-4:]))
