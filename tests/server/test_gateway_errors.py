"""The one exception -> status mapping, and the OpenAI and Anthropic error shapes."""

from __future__ import annotations

import orjson
import pytest

from modelplex.errors import (
    AllAttemptsFailedError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigError,
    ContentPolicyError,
    ContextWindowExceededError,
    NoCandidatesError,
    ProviderNotConfiguredError,
    RateLimitError,
    RateLimitExceededError,
    ServerError,
    StreamInterruptedError,
    UnknownModelError,
    UnknownTaskError,
    UnsupportedParameterError,
)
from modelplex.server.errors import (
    anthropic_error_body,
    classify,
    forbidden,
    invalid_request,
    openai_error_body,
    retry_after_header,
    too_large,
    unauthorized,
)
from modelplex.types import Attempt

SECRET = "sk-live-SECRET-abcdef123456"


@pytest.mark.parametrize("exc, status, code", [
    (invalid_request("bad", param="messages"), 400, None),
    (unauthorized(), 401, "invalid_api_key"),
    (forbidden("no"), 403, "model_not_allowed"),
    (UnknownModelError("gpt-9", ["openai/gpt-4o"]), 404, "model_not_found"),
    (UnknownTaskError("nope", ["fast"]), 404, "model_not_found"),
    (ProviderNotConfiguredError("anthropic", ["ANTHROPIC_API_KEY"]), 404, "model_not_available"),
    (too_large(10), 413, "request_too_large"),
    (RateLimitExceededError("rpm", retry_after=2.5), 429, "rate_limit_exceeded"),
    (BudgetExceededError("over", scope="global:daily", retry_after=60), 429, "budget_exceeded"),
    (NoCandidatesError("no model meets the requirements", {"a/b": "too small"}), 400, "no_candidates"),
    (UnsupportedParameterError("a/b", ["logit_bias"]), 400, "unsupported_parameter"),
    (ConfigError("unknown strategy 'x'", key="strategy"), 400, "invalid_value"),
    (ContextWindowExceededError("too long", provider="p", model="m", status_code=400), 400, "context_length_exceeded"),
    (ContentPolicyError("refused", provider="p", status_code=400), 400, "content_policy_violation"),
    (BadRequestError("bad", provider="p", status_code=400), 400, "upstream_bad_request"),
    (RateLimitError("slow down", provider="p", status_code=429, retry_after=3), 429, "upstream_rate_limited"),
    (APITimeoutError("t", provider="p"), 504, "upstream_timeout"),
    (ServerError("boom", provider="p", status_code=500), 502, "upstream_error"),
    (APIConnectionError("reset", provider="p"), 502, "upstream_error"),
    (StreamInterruptedError("cut", provider="p"), 502, "upstream_error"),
    (RuntimeError("bug"), 500, "internal_error"),
])
def test_status_table(exc: BaseException, status: int, code: str | None) -> None:
    info = classify(exc)
    assert (info.status, info.code) == (status, code)


def test_all_attempts_failed_variants() -> None:
    attempts = [Attempt("p/a", "p", "error", "server_error", 500), Attempt("p/b", "p", "skipped_breaker")]
    down = AllAttemptsFailedError("all failed", attempts, ServerError("x", provider="p", status_code=500),
                                  retry_after=12.2)
    info = classify(down)
    assert (info.status, info.code, info.retry_after) == (503, "all_targets_failed", 12.2)
    assert retry_after_header(info) == [(b"retry-after", b"13"), (b"retry-after-ms", b"12200")]
    assert "\n" not in info.message and "p/a" in info.message
    misconfigured = AllAttemptsFailedError("all failed", attempts, AuthenticationError("k", status_code=401))
    assert classify(misconfigured).status == 502
    everyone_refused = AllAttemptsFailedError("all failed", attempts,
                                              ContextWindowExceededError("too long", status_code=400))
    assert classify(everyone_refused).code == "context_length_exceeded"
    timed_out = AllAttemptsFailedError("all failed", attempts, APITimeoutError("t", provider="p"))
    assert (classify(timed_out).status, classify(timed_out).code) == (504, "upstream_timeout")
    unknown_wait = AllAttemptsFailedError("all failed", attempts, None)
    assert classify(unknown_wait).status == 503 and retry_after_header(classify(unknown_wait)) == []


def test_provider_text_is_redacted_and_5xx_text_is_not_passed_on() -> None:
    bad = BadRequestError(f"Invalid request with key {SECRET}", provider="p", model="m", status_code=400)
    assert SECRET not in classify(bad, [SECRET]).message
    auth = AuthenticationError(f"Incorrect API key provided: {SECRET}", provider="p", status_code=401)
    wrapped = AllAttemptsFailedError("all failed", [], auth)
    assert SECRET not in classify(wrapped, [SECRET]).message
    assert SECRET not in classify(ServerError(f"oops {SECRET}", provider="p", status_code=500)).message


def test_shapes() -> None:
    info = classify(UnknownModelError("gpt-9", ["openai/gpt-4o"]))
    body = orjson.loads(openai_error_body(info))
    assert body == {"error": {"message": info.message, "type": "invalid_request_error", "param": "model",
                              "code": "model_not_found", "suggestions": ["openai/gpt-4o"]}}
    a = orjson.loads(anthropic_error_body(info, "req_1"))
    assert a == {"type": "error", "error": {"type": "not_found_error", "message": info.message}, "request_id": "req_1"}
    assert orjson.loads(anthropic_error_body(classify(too_large(5))))["error"]["type"] == "request_too_large"
    down = classify(AllAttemptsFailedError("x", [], None, retry_after=1))
    assert orjson.loads(anthropic_error_body(down))["error"]["type"] == "overloaded_error"


def test_messages_name_the_model_once() -> None:
    """Catalog ids start with their provider: the message says ``openai/gpt-4o``, not ``openai/openai/gpt-4o``."""
    bad = BadRequestError("nope", provider="openai", model="openai/gpt-4o", status_code=400)
    assert classify(bad).message == "openai/gpt-4o: nope"
    assert str(bad) == "openai/gpt-4o 400: nope"
    assert classify(ServerError("x", provider="openai", model="openai/gpt-4o", status_code=500)).message == (
        "openai/gpt-4o failed with status 500 (server_error)")
    assert BadRequestError("m", provider="azure", model="gpt-4o-deploy").where == "azure/gpt-4o-deploy"
    assert BadRequestError("m", provider="p").where == "p" and BadRequestError("m").where == ""


def test_a_budget_wait_past_a_minute_tells_the_sdks_not_to_retry() -> None:
    from modelplex.errors import BudgetExceededError

    soon = classify(BudgetExceededError("held by in-flight requests", scope="global:daily", retry_after=4.2))
    assert retry_after_header(soon) == [(b"retry-after", b"5"), (b"retry-after-ms", b"4200")]
    tonight = classify(BudgetExceededError("exhausted", scope="global:daily", retry_after=6 * 3600.0))
    assert retry_after_header(tonight)[0] == (b"x-should-retry", b"false")  # the SDKs would sleep for hours
    assert (b"retry-after", b"21600") in retry_after_header(tonight)
    never = classify(BudgetExceededError("larger than the budget", scope="global:daily", retry_after=None))
    assert retry_after_header(never) == [(b"x-should-retry", b"false")]
