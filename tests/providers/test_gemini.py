"""GeminiAdapter: pure mapping from fixtures, then loopback calls against the fake Gemini API."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from modelplex.catalog.loader import bundled_catalog
from modelplex.catalog.schema import ModelSpec
from modelplex.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    ProviderNotConfiguredError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from modelplex.providers import adapter_class
from modelplex.providers.base import ProviderConfig
from modelplex.providers.gemini import (
    THOUGHT_SEP,
    GeminiAdapter,
    clean_json_schema,
    to_openapi_schema,
)
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer, approx_tokens
from modelplex.types import ChatRequest, EmbedRequest, StreamChunk

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
KEY = "AIzaSyTESTKEY-never-in-urls-0123456789"
FLASH = ModelSpec(id="google/gemini-2.5-flash", provider="google", context_window=1_048_576,
                  capabilities=frozenset({"tool_calling", "reasoning", "vision"}))
PLAIN = ModelSpec(id="google/gemini-2.0-flash", provider="google", context_window=1_048_576)
GEMINI3 = ModelSpec(id="google/gemini-3-pro-preview", provider="google", context_window=1_048_576,
                    capabilities=frozenset({"reasoning"}), api_requirements={"thinking": "level"})
EMBED = ModelSpec(id="google/gemini-embedding-001", provider="google", context_window=2048, mode="embedding")
BUNDLED = bundled_catalog()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make(base_url: str = "https://generativelanguage.googleapis.com", key: str | None = KEY,
         **extra: Any) -> GeminiAdapter:
    return GeminiAdapter(ProviderConfig(name="google", protocol="gemini", base_url=base_url, api_key=key, **extra))


def body_of(req: ChatRequest, model: ModelSpec = FLASH) -> dict[str, Any]:
    return orjson.loads(make().chat_to_wire(req, model).body or b"")


# ============================================================================ requests (pure)


def test_registered_under_its_protocol() -> None:
    assert adapter_class("gemini") is GeminiAdapter


def test_url_and_headers_carry_the_key_in_a_header_only() -> None:
    wire = make().chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), FLASH)
    assert wire.method == "POST"
    assert wire.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert wire.headers["x-goog-api-key"] == KEY
    assert KEY not in wire.url
    stream = make().chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}], stream=True), FLASH)
    assert stream.url.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")


def test_extra_headers_cannot_replace_the_key() -> None:
    adapter = make(extra_headers={"X-Team": "search", "x-goog-api-key": "other"})
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Goog-Api-Key": "evil"})
    headers = adapter.chat_to_wire(req, FLASH).headers
    assert headers["X-Team"] == "search"
    assert [v for k, v in headers.items() if k.lower() == "x-goog-api-key"] == [KEY]


def test_missing_key_is_a_configuration_error_naming_the_variable() -> None:
    with pytest.raises(ProviderNotConfiguredError, match="GEMINI_API_KEY"):
        make(key=None).chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), FLASH)


def test_base_url_with_version_and_tuned_models() -> None:
    adapter = make(base_url="http://proxy.local/v1beta/")
    tuned = ModelSpec(id="google/tuned", provider="google", context_window=8192, wire_name="tunedModels/my-tune-7")
    assert adapter.chat_to_wire(ChatRequest(messages=[]), tuned).url == \
        "http://proxy.local/v1beta/tunedModels/my-tune-7:generateContent"


def test_messages_roles_system_images_and_merging() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    body = body_of(ChatRequest(messages=[
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?size=large"}},
        ]},
        {"role": "user", "content": "Quickly."},
        {"role": "assistant", "content": "Un chat."},
    ]))
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Answer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [
            {"text": "What is in these?"},
            {"inlineData": {"mimeType": "image/png", "data": png}},
            {"fileData": {"fileUri": "https://example.com/cat.jpg?size=large", "mimeType": "image/jpeg"}},
            {"text": "Quickly."},
        ]},
        {"role": "model", "parts": [{"text": "Un chat."}]},
    ]


def test_tool_calls_and_results_become_function_parts_named_by_the_call() -> None:
    sig = "CiQB0e2Kb0sig+/A="
    body = body_of(ChatRequest(messages=[
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_0{THOUGHT_SEP}{sig}", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": f"call_0{THOUGHT_SEP}{sig}", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "call_1", "content": "14:05"},
        {"role": "user", "content": "Thanks"},
    ]))
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": sig},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"result": "14:05"}}},
        {"text": "Thanks"},
    ]}
    assert len(body["contents"]) == 3


def test_tool_result_without_a_matching_call_is_rejected_before_sending() -> None:
    with pytest.raises(BadRequestError, match="answers no earlier tool call"):
        body_of(ChatRequest(messages=[{"role": "tool", "tool_call_id": "call_9", "content": "x"}]))


def test_generation_config_params_and_unsupported_ones_dropped() -> None:
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "hi"}], params={
        "temperature": 0.3, "top_p": 0.9, "top_k": 40, "max_tokens": 256, "stop": "END", "n": 2, "seed": 7,
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "logit_bias": {"1": 2}, "user": "u-1",
        "parallel_tool_calls": False, "metadata": {"team": "search"},
    }))
    assert body["generationConfig"] == {
        "temperature": 0.3, "topP": 0.9, "topK": 40, "maxOutputTokens": 256, "stopSequences": ["END"],
        "candidateCount": 2, "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
    }
    assert body["labels"] == {"team": "search"}
    assert "logit_bias" not in orjson.dumps(body).decode()


def test_default_params_from_the_catalog_apply_and_the_caller_wins() -> None:
    model = ModelSpec(id="google/g", provider="google", context_window=1000, default_params={"temperature": 0.0,
                                                                                              "top_k": 5})
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={"temperature": 0.8}), model)
    assert body["generationConfig"] == {"temperature": 0.8, "topK": 5}


def test_response_format_json_schema_is_pruned_json_schema() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Person", "type": "object",
        "additionalProperties": False, "required": ["name", "role"],
        "properties": {
            "name": {"type": "string", "default": "x", "examples": ["Ada"]},
            "role": {"$ref": "#/definitions/Role", "description": "ignored beside $ref"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}},
            "kind": {"const": "human"},
        },
        "definitions": {"Role": {"type": "string", "enum": ["dev", "ops"]}},
    }
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema,
                                                                   "strict": True}}}))
    gen = body["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == {
        "title": "Person", "type": "object", "additionalProperties": False, "required": ["name", "role"],
        "properties": {
            "name": {"type": "string"},
            "role": {"$ref": "#/$defs/Role"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["human"]},
        },
        "$defs": {"Role": {"type": "string", "enum": ["dev", "ops"]}},
    }
    plain = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                params={"response_format": {"type": "json_object"}}))
    assert plain["generationConfig"] == {"responseMimeType": "application/json"}


def test_openapi_dialect_inlines_refs_and_marks_nullables() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": ["string", "null"]},
        "pet": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}]},
        "n": {"type": "integer", "minimum": 0},
    }, "required": ["name"], "additionalProperties": False,
        "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}}}}
    assert to_openapi_schema(schema) == {
        "type": "OBJECT", "required": ["name"], "properties": {
            "name": {"type": "STRING", "nullable": True},
            "pet": {"type": "OBJECT", "nullable": True,
                    "properties": {"kind": {"type": "STRING", "format": "enum", "enum": ["cat", "dog"]}}},
            "n": {"type": "INTEGER", "minimum": 0},
        }}
    model = ModelSpec(id="google/old", provider="google", context_window=1000,
                      api_requirements={"schema_dialect": "openapi"})
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}), model)
    assert "responseJsonSchema" not in body["generationConfig"]
    assert body["generationConfig"]["responseSchema"]["properties"]["pet"]["nullable"] is True


def test_recursive_refs_are_cut() -> None:
    node = {"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object", "properties": {
        "child": {"$ref": "#/$defs/Node"}}}}}
    out = to_openapi_schema(node)
    depth = 0
    while "properties" in out:
        out = out["properties"]["child"]
        depth += 1
    assert 3 <= depth <= 9


def test_clean_json_schema_keeps_nested_structures() -> None:
    assert clean_json_schema({"anyOf": [{"type": "string", "format": "date", "x-extra": 1}, {"type": "null"}]}) == \
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}


def test_reasoning_effort_to_thinking_budget_or_level() -> None:
    def thinking(model: ModelSpec, effort: str) -> Any:
        gen = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                  params={"reasoning_effort": effort}), model).get("generationConfig", {})
        return gen.get("thinkingConfig")

    # thought summaries are asked for whenever thinking is: they are what split_parts reads as thoughts
    assert thinking(FLASH, "none") == {"thinkingBudget": 0}
    assert thinking(FLASH, "low") == {"thinkingBudget": 1024, "includeThoughts": True}
    assert thinking(FLASH, "high") == {"thinkingBudget": 24576, "includeThoughts": True}
    assert thinking(GEMINI3, "medium") == {"thinkingLevel": "MEDIUM", "includeThoughts": True}
    assert thinking(GEMINI3, "minimal") == {"thinkingLevel": "MINIMAL", "includeThoughts": True}
    assert thinking(GEMINI3, "none") == {"thinkingLevel": "MINIMAL"}
    assert thinking(GEMINI3, "xhigh") == {"thinkingLevel": "HIGH", "includeThoughts": True}  # no XHIGH in Gemini 3
    assert thinking(PLAIN, "high") is None  # not a reasoning model: nothing sent
    custom = ModelSpec(id="google/c", provider="google", context_window=1000, capabilities=frozenset({"reasoning"}),
                       api_requirements={"thinking_budgets": {"low": 128}})
    assert thinking(custom, "low") == {"thinkingBudget": 128, "includeThoughts": True}
    pro31 = ModelSpec(id="google/gemini-3.1-pro-preview", provider="google", context_window=1_048_576,
                      capabilities=frozenset({"reasoning"}),
                      api_requirements={"thinking": "level", "thinking_levels": {"none": "LOW", "minimal": "LOW"}})
    assert thinking(pro31, "none") == {"thinkingLevel": "LOW"}
    with pytest.raises(BadRequestError, match="reasoning_effort"):
        thinking(FLASH, "ludicrous")


def test_tools_and_tool_choice() -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                         "required": ["city"], "additionalProperties": False}}},
        {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}},
        {"googleSearch": {}},
    ]
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={
        "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}))
    assert body["tools"] == [
        {"functionDeclarations": [
            {"name": "get_weather", "description": "Weather by city",
             "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"], "additionalProperties": False}},
            {"name": "ping"},
        ]},
        {"googleSearch": {}},
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    for choice, mode in (("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")):
        b = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                params={"tools": tools[:1], "tool_choice": choice}))
        assert b["toolConfig"] == {"functionCallingConfig": {"mode": mode}}
    with pytest.raises(BadRequestError, match="tool type"):
        body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                            params={"tools": [{"type": "web_search"}]}))


def test_extra_body_is_deep_merged() -> None:
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={
        "temperature": 0.5, "extra_body": {"generationConfig": {"thinkingConfig": {"includeThoughts": True}},
                                           "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                                               "threshold": "BLOCK_NONE"}]}}))
    assert body["generationConfig"] == {"temperature": 0.5, "thinkingConfig": {"includeThoughts": True}}
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE"


# ============================================================================ responses (pure)


def test_text_response_with_thoughts_and_cache() -> None:
    resp = make().chat_from_wire(fixture("generate_text.json"), FLASH)
    assert resp.content == "Soft rain on the roof,\ngutters hum a quiet song,\nthe street breathes again."
    assert resp.finish_reason == "stop"
    assert resp.model == "google/gemini-2.5-flash"
    assert resp.provider == "google"
    assert resp.provider_request_id == "mPx1aPqJH8qKmtkP2Yi4-QE"
    u = resp.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens) == (1200, 102, 1024, 80)
    assert u.total_tokens == 1302  # equals Gemini's totalTokenCount
    assert u.estimated is False
    assert u.provider_details["thoughts"] == "The user wants a haiku about rain. Keep it 5-7-5."
    assert u.provider_details["model_version"] == "gemini-2.5-flash"


def test_bundled_gemini_25_budgets_stay_in_each_models_documented_range() -> None:
    # Gemini thinking docs: 2.5 Pro 128-32768 and cannot turn thinking off; 2.5 Flash 0-24576;
    # 2.5 Flash-Lite 0 or 512-24576
    def config(model_id: str, effort: str) -> Any:
        body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                   params={"reasoning_effort": effort}), BUNDLED.get(model_id))
        return body["generationConfig"]["thinkingConfig"]

    assert config("gemini/gemini-2.5-pro", "none") == {"thinkingBudget": 128}
    assert config("gemini/gemini-2.5-pro", "xhigh") == {"thinkingBudget": 32768, "includeThoughts": True}
    assert config("gemini/gemini-2.5-flash", "xhigh") == {"thinkingBudget": 24576, "includeThoughts": True}
    assert config("gemini/gemini-2.5-flash", "none") == {"thinkingBudget": 0}
    assert config("gemini/gemini-2.5-flash-lite", "xhigh") == {"thinkingBudget": 24576, "includeThoughts": True}
    assert config("gemini/gemini-2.5-flash-lite", "minimal") == {"thinkingBudget": 512, "includeThoughts": True}


def test_synthesized_tool_call_ids_are_unique_across_turns() -> None:
    def answer(response_id: str | None) -> bytes:
        data: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            "finishReason": "STOP", "index": 0}], "modelVersion": "gemini-2.5-flash"}
        if response_id is not None:
            data["responseId"] = response_id
        return orjson.dumps(data)

    first = make().chat_from_wire(answer("mE2EaKqjB9iYz7IPkqjNqAE"), FLASH).tool_calls[0].id
    second = make().chat_from_wire(answer("nF3FbLrkC0jZa8JQlrkOrBF"), FLASH).tool_calls[0].id
    assert (first, second) == ("call_mE2EaKqjB9iYz7IPkqjNqAE_0", "call_nF3FbLrkC0jZa8JQlrkOrBF_0")
    anonymous = {make().chat_from_wire(answer(None), FLASH).tool_calls[0].id for _ in range(2)}
    assert len(anonymous) == 2 and all(re.fullmatch(r"call_[0-9a-f]{16}_0", i) for i in anonymous)
    # a history holding both turns still pairs each result with its call by id
    msgs = [{"role": "user", "content": "Weather in Paris, twice?"},
            {"role": "assistant", "tool_calls": [{"id": first, "type": "function",
                                                  "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": first, "content": "sunny"},
            {"role": "assistant", "tool_calls": [{"id": second, "type": "function",
                                                  "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": second, "content": "14:05"}]
    contents = body_of(ChatRequest(messages=msgs))["contents"]
    assert [c["parts"][0]["functionResponse"]["name"] for c in contents[2::2]] == ["get_weather", "get_time"]


def test_stream_ids_use_the_response_id_and_keep_numbering_across_chunks() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))

    def chunk(name: str, signature: str | None = None, finish: bool = False) -> bytes:
        part: dict[str, Any] = {"functionCall": {"name": name, "args": {}}}
        if signature:
            part["thoughtSignature"] = signature
        cand: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": 0}
        if finish:
            cand["finishReason"] = "STOP"
        return orjson.dumps({"candidates": [cand], "responseId": "rX9aZ2kPLvC8qtsPzZ6B"})

    ids = [d.id for raw in (chunk("a", "CiQBcsjafH3+Q1/ab9Zq=="), chunk("b", finish=True))
           for c in decoder.feed(None, raw) for d in c.tool_calls]
    assert ids == [f"call_rX9aZ2kPLvC8qtsPzZ6B_0{THOUGHT_SEP}CiQBcsjafH3+Q1/ab9Zq==", "call_rX9aZ2kPLvC8qtsPzZ6B_1"]


def test_tool_call_response_synthesizes_ids_and_keeps_thought_signatures() -> None:
    resp = make().chat_from_wire(fixture("generate_tool_call.json"), FLASH)  # responseId "tc-2"
    assert resp.finish_reason == "tool_calls"
    assert resp.content is None
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in resp.tool_calls] == [
        (f"call_tc-2_0{THOUGHT_SEP}CiQB0e2Kb0sig+/A=", "get_weather", {"city": "Paris", "unit": "celsius"}),
        ("call_tc-2_1", "get_time", {"tz": "Europe/Paris"}),
    ]
    assert resp.usage.input_tokens == 95 + 12  # tool-use prompt tokens are input
    # the ids round-trip: sending them back restores the signature on the right call
    msgs = [{"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [c.to_openai() for c in resp.tool_calls]}]
    parts = body_of(ChatRequest(messages=msgs))["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "CiQB0e2Kb0sig+/A="
    assert "thoughtSignature" not in parts[1]


def test_blocked_prompt_is_an_empty_content_filter_response() -> None:
    resp = make().chat_from_wire(fixture("blocked_prompt.json"), FLASH)
    assert resp.content == ""
    assert resp.finish_reason == "content_filter"
    assert resp.usage.provider_details["block_reason"] == "PROHIBITED_CONTENT"
    assert resp.usage.input_tokens == 17


@pytest.mark.parametrize(("reason", "expected"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "error"), ("LANGUAGE", "unknown"), ("OTHER", "unknown"),
])
def test_finish_reasons(reason: str, expected: str) -> None:
    payload = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    assert make().chat_from_wire(orjson.dumps(payload), FLASH).finish_reason == expected


@pytest.mark.parametrize("payload", [b"<html>", b"[1, 2]", b'{"candidates": []}', b'{"modelVersion": "x"}'])
def test_malformed_bodies_are_invalid_responses(payload: bytes) -> None:
    with pytest.raises(InvalidResponseError):
        make().chat_from_wire(payload, FLASH)


# ============================================================================ errors (pure)


def test_rate_limit_takes_retry_after_from_retry_info_when_no_header() -> None:
    err = make().classify_error(429, {}, fixture("error_rate_limit.json"), FLASH)
    assert type(err) is RateLimitError
    assert err.retry_after == 13.0
    assert err.error_type == "RESOURCE_EXHAUSTED"
    assert err.status_code == 429
    with_header = make().classify_error(429, {"Retry-After": "2"}, fixture("error_rate_limit.json"), FLASH)
    assert with_header.retry_after == 2.0  # headers win


def test_daily_quota_is_quota_exceeded_not_a_rate_limit() -> None:
    err = make().classify_error(429, {}, fixture("error_quota_daily.json"), FLASH)
    assert type(err) is QuotaExceededError
    assert err.retryable is False
    assert err.retry_after == pytest.approx(20.04466179)


def test_invalid_key_reported_as_400_is_an_authentication_error() -> None:
    err = make().classify_error(400, {}, fixture("error_api_key_invalid.json"), FLASH)
    assert type(err) is AuthenticationError
    assert err.error_code == "API_KEY_INVALID"


def test_context_window_is_read_from_the_invalid_argument_message() -> None:
    err = make().classify_error(400, {}, fixture("error_context_window.json"), FLASH)
    assert type(err) is ContextWindowExceededError and err.status_code == 400
    plain = orjson.dumps({"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}})
    assert type(make().classify_error(400, {}, plain, FLASH)) is BadRequestError


@pytest.mark.parametrize(("status", "gstatus", "cls"), [
    (503, "UNAVAILABLE", OverloadedError), (500, "INTERNAL", ServerError), (504, "DEADLINE_EXCEEDED", ServerError),
    (403, "PERMISSION_DENIED", PermissionDeniedError), (401, "UNAUTHENTICATED", AuthenticationError),
    (404, "NOT_FOUND", NotFoundError), (400, "FAILED_PRECONDITION", BadRequestError), (409, "ABORTED", ConflictError),
    (429, "RESOURCE_EXHAUSTED", RateLimitError),
])
def test_google_statuses(status: int, gstatus: str, cls: type[ProviderError]) -> None:
    body = orjson.dumps({"error": {"code": status, "message": "m", "status": gstatus}})
    err = make().classify_error(status, {}, body, FLASH)
    assert type(err) is cls
    assert err.provider == "google" and err.model == "google/gemini-2.5-flash"


def test_non_json_error_falls_back_to_status() -> None:
    err = make().classify_error(502, {}, b"<html>Bad Gateway</html>", FLASH)
    assert type(err) is ServerError
    assert err.message == "<html>Bad Gateway</html>"


def test_error_text_is_redacted_of_the_key() -> None:
    body = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": f"bad key {KEY}"}})
    err = make().classify_error(400, {}, body, FLASH)
    assert KEY not in str(err) and KEY not in repr(err) and KEY not in orjson.dumps(err.body).decode()


# ============================================================================ stream decoding (pure)


def sse_events(raw: bytes) -> list[bytes]:
    return [block[len(b"data: "):] for block in raw.split(b"\n\n") if block.strip()]


def test_stream_decoder_on_recorded_events() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    chunks: list[StreamChunk] = []
    for data in sse_events(fixture("stream_text.sse")):
        chunks.extend(decoder.feed(None, data))
    chunks.extend(decoder.close())
    assert "".join(c.delta for c in chunks) == "The sky is blue."
    assert "".join(c.reasoning_delta for c in chunks) == "Thinking about colours."
    assert decoder.done
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.reasoning_tokens) == (9, 16, 12)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_finish_reason_is_invalid_at_close() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    first = sse_events(fixture("stream_text.sse"))[1]
    assert [c.delta for c in decoder.feed(None, first)] == ["The sky"]
    with pytest.raises(InvalidResponseError, match="finishReason"):
        list(decoder.close())


def test_stream_in_band_error_event_is_classified() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    with pytest.raises(OverloadedError) as info:
        list(decoder.feed(None, fixture("error_unavailable.json")))
    assert info.value.status_code == 503
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    with pytest.raises(RateLimitError) as limited:
        list(decoder.feed(None, fixture("error_rate_limit.json")))
    assert (limited.value.status_code, limited.value.retry_after) == (429, 13.0)
    with pytest.raises(ServerError) as untyped:
        make().chat_from_wire(b'{"error": {"message": "?"}}', FLASH)
    assert untyped.value.status_code == 500


def test_stream_tool_calls_arrive_whole_with_indices() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    chunks = list(decoder.feed(None, fixture("generate_tool_call.json").replace(b"\n", b"")))
    assert chunks[0].finish_reason == "tool_calls"
    assert [(d.index, d.name, orjson.loads(d.arguments)) for d in chunks[0].tool_calls] == [
        (0, "get_weather", {"city": "Paris", "unit": "celsius"}), (1, "get_time", {"tz": "Europe/Paris"})]


def test_stream_follows_the_first_candidate_and_keeps_the_last_usage() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    second = {"candidates": [{"content": {"parts": [{"text": "B"}]}, "index": 1}],
              "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}}
    first = {"candidates": [{"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0}]}
    assert list(decoder.feed(None, orjson.dumps(second))) == []
    (final,) = decoder.feed(None, orjson.dumps(first))
    assert (final.delta, final.finish_reason) == ("A", "stop")
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (5, 2)


def test_stream_blocked_prompt() -> None:
    decoder = make().new_stream_decoder(FLASH, ChatRequest(messages=[], stream=True))
    chunks = list(decoder.feed(None, fixture("blocked_prompt.json")))
    assert chunks[0].finish_reason == "content_filter"
    assert decoder.done


# ============================================================================ embeddings (pure)


def test_embed_wire_single_and_batch() -> None:
    single = make().embed_to_wire(EmbedRequest(input=["hello"], params={"dimensions": 256,
                                                                        "task_type": "retrieval_query"}), EMBED)
    assert single.url.endswith("/v1beta/models/gemini-embedding-001:embedContent")
    assert orjson.loads(single.body or b"") == {"model": "models/gemini-embedding-001",
                                                "content": {"parts": [{"text": "hello"}]},
                                                "outputDimensionality": 256, "taskType": "RETRIEVAL_QUERY"}
    batch = make().embed_to_wire(EmbedRequest(input=["a", "b"]), EMBED)
    assert batch.url.endswith(":batchEmbedContents")
    assert orjson.loads(batch.body or b"") == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}
    with pytest.raises(BadRequestError):
        make().embed_to_wire(EmbedRequest(input=[]), EMBED)


def test_embed_from_wire_estimates_usage() -> None:
    resp = make().embed_from_wire(fixture("embed_batch.json"), EMBED, EmbedRequest(input=["first text", "second"]))
    assert resp.embeddings == [[0.0123, -0.0456, 0.0789, 0.0011], [-0.0321, 0.0654, -0.0987, 0.0022]]
    assert resp.usage.estimated is True
    assert resp.usage.input_tokens > 0
    with pytest.raises(InvalidResponseError, match="expected 3"):
        make().embed_from_wire(fixture("embed_batch.json"), EMBED, EmbedRequest(input=["a", "b", "c"]))


# ============================================================================ loopback


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("gemini",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def chat(text: str = "Hello there", **params: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
                       params=params)


def assert_key_never_in_urls(fake: FakeProviderServer) -> None:
    assert fake.captured
    for c in fake.captured:
        assert "key" not in c.query
        assert KEY not in c.path and KEY not in "".join(c.query.values())
        assert c.headers.get("x-goog-api-key") == KEY


async def test_complete_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Bonjour, monde.")
    resp = await make(fake.base_url).complete(session, chat(temperature=0.1), FLASH)
    assert resp.content == "Bonjour, monde."
    assert resp.finish_reason == "stop"
    assert resp.usage.output_tokens == approx_tokens("Bonjour, monde.")
    assert resp.usage.input_tokens == approx_tokens("Be brief.\nHello there")
    assert resp.latency_ms > 0
    c = fake.captured[-1]
    assert (c.method, c.path) == ("POST", "/v1beta/models/gemini-2.5-flash:generateContent")
    assert c.json["generationConfig"] == {"temperature": 0.1}
    assert_key_never_in_urls(fake)


async def test_max_tokens_truncation_is_length(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="word " * 50)
    resp = await make(fake.base_url).complete(session, chat(max_tokens=3), FLASH)
    assert resp.finish_reason == "length"
    assert resp.usage.output_tokens == 3


async def test_thinking_tokens_count_as_output(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="four words right here")
    resp = await make(fake.base_url).complete(session, chat(reasoning_effort="low"), FLASH)
    out = approx_tokens("four words right here")
    assert resp.usage.reasoning_tokens == 2 * out
    assert resp.usage.output_tokens == out + 2 * out
    assert fake.captured[-1].json["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024,
                                                                            "includeThoughts": True}
    assert resp.usage.provider_details["thoughts"]  # the fake answers includeThoughts with a thought part


async def test_tool_call_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(tool_call={"name": "lookup", "arguments": {"q": "modelplex"}})
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]
    resp = await make(fake.base_url).complete(session, chat(tools=tools, tool_choice="required"), FLASH)
    assert resp.finish_reason == "tool_calls"
    assert [(c.name, orjson.loads(c.arguments)) for c in resp.tool_calls] == [("lookup", {"q": "modelplex"})]
    assert re.fullmatch(r"call_[0-9a-f]{22}_0", resp.tool_calls[0].id)  # the fake's responseId


async def test_stream_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three four five six", stream_chunks=3)
    req = chat()
    req.stream = True
    chunks = [c async for c in make(fake.base_url).stream(session, req, FLASH)]
    assert "".join(c.delta for c in chunks) == "one two three four five six"
    assert len([c for c in chunks if c.delta]) == 3
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.output_tokens == approx_tokens("one two three four five six")
    assert fake.captured[-1].query == {"alt": "sse"}
    assert_key_never_in_urls(fake)


async def test_stream_tool_call_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(tool_call={"name": "lookup", "arguments": {"q": 1}})
    req = chat()
    req.stream = True
    chunks = [c async for c in make(fake.base_url).stream(session, req, FLASH)]
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.name, d.arguments) for d in deltas] == [(0, "lookup", '{"q":1}')]
    assert re.fullmatch(r"call_[0-9a-f]{22}_0", deltas[0].id or "")
    assert chunks[-1].finish_reason == "tool_calls"


async def test_content_policy_is_a_filtered_response(fake: FakeProviderServer,
                                                     session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"), times=2)
    resp = await make(fake.base_url).complete(session, chat(), FLASH)
    assert (resp.content, resp.finish_reason) == ("", "content_filter")
    assert resp.usage.provider_details["block_reason"] == "SAFETY"
    req = chat()
    req.stream = True
    chunks = [c async for c in make(fake.base_url).stream(session, req, FLASH)]
    assert [c.finish_reason for c in chunks] == ["content_filter"]


FAULTS: list[tuple[Fault, type[ProviderError]]] = [
    (Fault("rate_limit", retry_after=7), RateLimitError),
    (Fault("quota"), QuotaExceededError),
    (Fault("context_window"), ContextWindowExceededError),
    (Fault("auth"), AuthenticationError),
    (Fault("permission"), PermissionDeniedError),
    (Fault("not_found"), NotFoundError),
    (Fault("bad_request"), BadRequestError),
    (Fault("server_error"), ServerError),
    (Fault("overloaded"), OverloadedError),
    (Fault("status", status=504), ServerError),
    (Fault("status", status=409), ConflictError),
    (Fault("malformed"), InvalidResponseError),
    (Fault("truncated"), InvalidResponseError),
    (Fault("reset"), APIConnectionError),
]


@pytest.mark.parametrize(("fault", "cls"), FAULTS, ids=[f.kind + str(f.status or "") for f, _ in FAULTS])
async def test_every_fault_is_typed(fault: Fault, cls: type[ProviderError], fake: FakeProviderServer,
                                    session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(fault)
    with pytest.raises(cls) as info:
        await make(fake.base_url).complete(session, chat(), FLASH)
    assert type(info.value) is cls
    assert info.value.provider == "google"
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    if fault.kind == "rate_limit":
        assert info.value.retry_after == 7.0


STREAM_FAULTS = [(f, c) for f, c in FAULTS if f.kind not in ("truncated", "malformed")]


@pytest.mark.parametrize(("fault", "cls"), STREAM_FAULTS, ids=[f.kind + str(f.status or "") for f, _ in STREAM_FAULTS])
async def test_stream_faults_before_the_first_chunk_are_typed(fault: Fault, cls: type[ProviderError],
                                                              fake: FakeProviderServer,
                                                              session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(fault)
    req = chat()
    req.stream = True
    with pytest.raises(cls) as info:
        async for _ in make(fake.base_url).stream(session, req, FLASH):
            pass
    assert type(info.value) is cls


async def test_timeout_is_typed(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("timeout", delay=1.0))
    with pytest.raises(APITimeoutError):
        await make(fake.base_url).complete(session, chat(), FLASH, timeout=0.1)


async def test_stream_cut_after_first_chunk_is_interrupted_with_partial_usage(
        fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="alpha beta gamma delta", stream_chunks=4)
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    req = chat()
    req.stream = True
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for c in make(fake.base_url).stream(session, req, FLASH):
            got.append(c.delta)
    err = info.value
    assert err.partial_content == "".join(got) == FakeProviderServer.split_chunks("alpha beta gamma delta", 4)[0]
    assert err.partial_usage.estimated is True
    assert err.partial_usage.output_tokens >= 1
    assert err.partial_usage.input_tokens >= 1


async def test_stream_in_band_error_after_first_chunk(fake: FakeProviderServer,
                                                      session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("stream_cut", after_chunks=2, status=500))
    req = chat()
    req.stream = True
    with pytest.raises(StreamInterruptedError) as info:
        async for _ in make(fake.base_url).stream(session, req, FLASH):
            pass
    assert info.value.status_code == 500


async def test_truncated_stream_is_interrupted(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("truncated"))
    req = chat()
    req.stream = True
    with pytest.raises(StreamInterruptedError):
        async for _ in make(fake.base_url).stream(session, req, FLASH):
            pass


async def test_embed_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    adapter = make(fake.base_url)
    one = await adapter.embed(session, EmbedRequest(input=["hello"], params={"dimensions": 16}), EMBED)
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 16
    assert fake.captured[-1].path == "/v1beta/models/gemini-embedding-001:embedContent"
    many = await adapter.embed(session, EmbedRequest(input=["hello", "world", "hello"]), EMBED)
    assert [len(v) for v in many.embeddings] == [768, 768, 768]
    assert many.embeddings[0] == many.embeddings[2] != many.embeddings[1]
    assert fake.captured[-1].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert many.usage.estimated is True and many.usage.input_tokens > 0
    assert_key_never_in_urls(fake)


async def test_health(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    ok = await make(fake.base_url).health_check(session)
    assert ok.ok and ok.detail == "ok"
    assert fake.captured[-1].path == "/v1beta/models"
    fake.plan.fail_next(Fault("server_error", status=503))
    down = await make(fake.base_url).health_check(session)
    assert not down.ok and down.detail == "overloaded"  # 503 UNAVAILABLE
    bad_key = await make(fake.base_url, key="wrong").health_check(session)
    assert bad_key.ok  # the fake accepts any key; the probe authenticates
    assert_key_never_in_urls_except(fake, "wrong")


def assert_key_never_in_urls_except(fake: FakeProviderServer, other: str) -> None:
    for c in fake.captured:
        assert "key" not in c.query and other not in c.path


async def test_secrets_never_logged_or_in_reprs(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make(fake.base_url)
    fake.plan.fail_next(Fault("auth"))
    with pytest.raises(AuthenticationError) as info:
        await adapter.complete(session, chat(logit_bias={"1": 1}), FLASH)
    await adapter.complete(session, chat(), FLASH)
    assert KEY not in caplog.text
    assert KEY not in repr(adapter) and KEY not in repr(adapter.provider)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in orjson.dumps(info.value.body).decode()
