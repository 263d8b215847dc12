"""BedrockAdapter: pure mapping from fixtures, SigV4 signing, event-stream decoding, then loopback calls
against the fake Bedrock Runtime."""

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
    AuthenticationError,
    BadRequestError,
    ContextWindowExceededError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    ProviderNotConfiguredError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamInterruptedError,
    UnsupportedParameterError,
)
from modelplex.providers import adapter_class
from modelplex.providers.base import ProviderConfig, WireRequest, portable_tool_id
from modelplex.providers.bedrock import (
    EXCEPTION_EVENT,
    FRAMING_EVENT,
    HISTORY_TOOL,
    JSON_TOOL,
    BedrockAdapter,
)
from modelplex.testing.fake_bedrock import encode_frame, event_frame, exception_frame, verify_sigv4
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer, approx_tokens
from modelplex.types import ChatRequest, EmbedRequest, StreamChunk

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN=="
CLAUDE = ModelSpec(id="bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", provider="bedrock",
                   context_window=200_000, capabilities=frozenset({"tool_calling", "vision"}))
CLAUDE_THINKING = ModelSpec(id="bedrock/us.anthropic.claude-3-7-sonnet-20250219-v1:0", provider="bedrock",
                            context_window=200_000, capabilities=frozenset({"reasoning"}),
                            param_mappings={"reasoning_effort": "thinking"})
NOVA = ModelSpec(id="bedrock/amazon.nova-2-lite-v1:0", provider="bedrock", context_window=300_000,
                 capabilities=frozenset({"reasoning"}), param_mappings={"top_k": "inferenceConfig.topK"})
TITAN = ModelSpec(id="bedrock/amazon.titan-embed-text-v2:0", provider="bedrock", context_window=8192,
                  mode="embedding")
COHERE = ModelSpec(id="bedrock/cohere.embed-english-v3", provider="bedrock", context_window=512, mode="embedding")
BUNDLED = bundled_catalog()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def make(base_url: str = "", **overrides: Any) -> BedrockAdapter:
    cfg: dict[str, Any] = {"name": "bedrock", "protocol": "bedrock", "base_url": base_url, "region": "us-west-2",
                           "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET}
    cfg.update(overrides)
    return BedrockAdapter(ProviderConfig(**cfg))


def body_of(req: ChatRequest, model: ModelSpec = CLAUDE) -> dict[str, Any]:
    return orjson.loads(make().chat_to_wire(req, model).body or b"")


# ============================================================================ URLs and signing


def test_registered_under_its_protocol() -> None:
    assert adapter_class("bedrock") is BedrockAdapter


def test_url_encodes_the_model_id_like_botocore() -> None:
    wire = make().chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), CLAUDE)
    assert wire.url == ("https://bedrock-runtime.us-west-2.amazonaws.com/model/"
                        "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse")
    assert wire.headers["Accept"] == "application/json"
    arn = ModelSpec(id="bedrock/profile", provider="bedrock", context_window=1000,
                    wire_name="arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3")
    stream = make().chat_to_wire(ChatRequest(messages=[], stream=True), arn)
    assert stream.url.endswith("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile"
                               "%2Fus.meta.llama3/converse-stream")
    assert stream.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_sigv4_signature_verifies_and_covers_the_sent_url() -> None:
    adapter = make(aws_session_token=TOKEN)
    wire = adapter.chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), CLAUDE)
    signed = adapter.sign(wire)
    auth = signed.headers["Authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-west-2/bedrock/aws4_request" in auth
    assert signed.headers["X-Amz-Security-Token"] == TOKEN
    # the URL is signed in the form aiohttp sends (yarl leaves ':' unescaped, keeps %2F)
    assert signed.url.endswith("/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse")
    assert verify_sigv4("POST", signed.url, signed.headers, signed.body or b"", secret_key=SECRET,
                        session_token=TOKEN)
    assert not verify_sigv4("POST", signed.url, signed.headers, (signed.body or b"") + b" ", secret_key=SECRET)
    assert not verify_sigv4("POST", signed.url, signed.headers, signed.body or b"", secret_key="wrong-secret")
    assert SECRET not in orjson.dumps(signed.headers).decode()


def test_signature_is_deterministic_under_an_injected_clock() -> None:
    cfg = make().provider
    first = BedrockAdapter(cfg, clock=lambda: 1_700_000_000.0)
    second = BedrockAdapter(cfg, clock=lambda: 1_700_000_000.0)
    wire = first.chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), CLAUDE)
    a, b = first.sign(wire), second.sign(wire)
    assert a.headers["X-Amz-Date"] == "20231114T221320Z"
    assert a.headers["Authorization"] == b.headers["Authorization"]
    assert "Credential=AKIAIOSFODNN7EXAMPLE/20231114/us-west-2/bedrock/aws4_request" in a.headers["Authorization"]
    assert verify_sigv4("POST", a.url, a.headers, a.body or b"", secret_key=SECRET)


def test_signing_replaces_stale_auth_headers() -> None:
    adapter = make()
    wire = adapter.chat_to_wire(ChatRequest(messages=[], extra_headers={"Authorization": "x", "X-Amz-Date": "y"}),
                                CLAUDE)
    assert "Authorization" not in wire.headers and "X-Amz-Date" not in wire.headers
    signed = adapter.sign(wire)
    assert verify_sigv4("POST", signed.url, signed.headers, signed.body or b"", secret_key=SECRET)


def test_bedrock_api_key_is_a_bearer_token() -> None:
    adapter = make(aws_access_key_id=None, aws_secret_access_key=None, api_key="ABSKbedrockapikey123")
    signed = adapter.sign(WireRequest("POST", "https://bedrock-runtime.us-west-2.amazonaws.com/model/m/converse",
                                      {"Content-Type": "application/json"}, b"{}"))
    assert signed.headers["Authorization"] == "Bearer ABSKbedrockapikey123"


def test_missing_credentials_or_region_name_the_variables() -> None:
    with pytest.raises(ProviderNotConfiguredError, match="AWS_ACCESS_KEY_ID"):
        make(aws_access_key_id=None, aws_secret_access_key=None).sign(WireRequest("POST", "http://x/", {}, b""))
    with pytest.raises(ProviderNotConfiguredError, match="AWS_REGION"):
        make(region=None).chat_to_wire(ChatRequest(messages=[]), CLAUDE)


def test_repr_shows_no_credentials() -> None:
    adapter = make(aws_session_token=TOKEN)
    for text in (repr(adapter), repr(adapter.provider)):
        assert SECRET not in text and TOKEN not in text and ACCESS_KEY not in text


# ============================================================================ requests (pure)


def test_messages_system_images_documents_and_merging() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    pdf = base64.b64encode(b"%PDF-1.7 fake").decode()
    body = body_of(ChatRequest(messages=[
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image_url", "image_url": {"url": "s3://bucket/photos/cat.JPG"}},
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}",
                                      "filename": "Q3 report (final).pdf"}},
            {"type": "text", "text": ""},
        ]},
        {"role": "user", "content": "Quickly."},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "Un chat."},
    ]))
    assert body["system"] == [{"text": "Be terse."}, {"text": "Answer in French."}]
    assert body["messages"] == [
        {"role": "user", "content": [
            {"text": "Describe"},
            {"image": {"format": "png", "source": {"bytes": png}}},
            {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/photos/cat.JPG"}}}},
            {"document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": pdf}}},
            {"text": "Quickly."},
        ]},
        {"role": "assistant", "content": [{"text": "Un chat."}]},
    ]


def test_http_images_are_rejected_before_sending() -> None:
    with pytest.raises(BadRequestError, match="data URLs or s3"):
        body_of(ChatRequest(messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]))


def test_tool_use_and_results() -> None:
    body = body_of(ChatRequest(messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather",
                                                                "arguments": '{"city": "Paris"}'}},
            {"id": "tooluse_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "tooluse_2", "content": "14:05"},
    ], params={"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                          "parameters": {"type": "object", "properties": {
                                                              "city": {"type": "string"}}}}},
                         {"type": "function", "function": {"name": "get_time"}}],
               "tool_choice": "auto"}))
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "get_time", "input": {}}},
    ]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"temp_c": 21}}]}},
        {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "14:05"}]}},
    ]}
    assert body["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "get_weather", "description": "Weather",
                      "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
        {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
    ], "toolChoice": {"auto": {}}}


def test_foreign_tool_ids_become_portable_and_stay_paired() -> None:
    # a conversation that fell back from Gemini: the id carries a base64 thought signature
    gemini_id = "call_0__thought__CiQBcsjafH3+Q1/ab9Zq=="
    body = body_of(ChatRequest(messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": gemini_id, "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": gemini_id, "content": '{"temp_c": 21}'},
    ]))
    use = body["messages"][1]["content"][0]["toolUse"]["toolUseId"]
    result = body["messages"][2]["content"][0]["toolResult"]["toolUseId"]
    assert use == result == portable_tool_id(gemini_id)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", use)
    assert body_of(ChatRequest(messages=[{"role": "tool", "tool_call_id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                          "content": "ok"}]))["messages"][0]["content"][0]["toolResult"][
        "toolUseId"] == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"  # a Converse id is kept as is


def test_tool_results_open_the_merged_user_turn() -> None:
    body = body_of(ChatRequest(messages=[
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "tool_calls": [
            {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "tooluse_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"},
        {"role": "user", "content": "Also, keep it short."},
        {"role": "tool", "tool_call_id": "tooluse_2", "content": "14:05"},
    ]))
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}},
        {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "14:05"}]}},
        {"text": "Also, keep it short."},
    ]}


@pytest.mark.parametrize(("choice", "expected"), [
    ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                               params={"tools": tools, "tool_choice": choice}))
    assert body["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_drops_tools_unless_history_needs_them() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    plain = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                                params={"tools": tools, "tool_choice": "none"}))
    assert "toolConfig" not in plain
    history = body_of(ChatRequest(messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"},
    ], params={"tools": tools, "tool_choice": "none"}))
    assert history["toolConfig"] == {"tools": [{"toolSpec": {"name": "f", "inputSchema": {
        "json": {"type": "object", "properties": {}}}}}]}


HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        {"id": "call_3", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Nice"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
    {"role": "tool", "tool_call_id": "call_3", "content": "rain"},
]


def test_tool_history_without_tools_gets_a_tool_config_of_the_tools_it_called() -> None:
    """Converse rejects toolUse/toolResult blocks without a toolConfig ("The toolConfig field must be defined
    when using toolUse and toolResult content blocks"): a continuation sent without its tools gets one."""
    any_object = {"json": {"type": "object"}}
    body = body_of(ChatRequest(messages=HISTORY))
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["get_weather", "get_time"]
    assert all(t["toolSpec"]["inputSchema"] == any_object for t in body["toolConfig"]["tools"])
    assert "toolChoice" not in body["toolConfig"]  # nothing forced
    results_only = body_of(ChatRequest(messages=[{"role": "tool", "tool_call_id": "call_1", "content": "ok"}]))
    assert [t["toolSpec"]["name"] for t in results_only["toolConfig"]["tools"]] == [HISTORY_TOOL]
    assert "toolConfig" not in body_of(ChatRequest(messages=[{"role": "user", "content": "x"}]))
    fmt = {"type": "json_object"}  # a toolConfig of its own: ours, forced
    json_out = body_of(ChatRequest(messages=HISTORY, params={"response_format": fmt}))
    assert json_out["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}
    assert [t["toolSpec"]["name"] for t in json_out["toolConfig"]["tools"]] == [JSON_TOOL]


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
REPORT = {"type": "json_schema", "json_schema": {"name": "report", "schema": {"type": "object"}}}


@pytest.mark.parametrize(("tool_choice", "bedrock", "anthropic"), [
    (None, {"any": {}}, {"type": "any"}),
    ("auto", {"any": {}}, {"type": "any"}),
    ("required", {"any": {}}, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_response_format_with_the_callers_tools_lets_them_be_called(tool_choice: Any, bedrock: Any,
                                                                     anthropic: Any) -> None:
    """With the caller's tools, the structured-output tool is not forced (the caller's tools could never be
    called): the model must call one of them or ours, as the Anthropic adapter decides it."""
    from modelplex.providers.anthropic import AnthropicAdapter

    params: dict[str, Any] = {"tools": [WEATHER_TOOL], "response_format": REPORT}
    if tool_choice is not None:
        params["tool_choice"] = tool_choice
    req = ChatRequest(messages=[{"role": "user", "content": "Weather in Paris, as a report"}], params=params)
    body = body_of(req)
    assert [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]] == ["get_weather", JSON_TOOL]
    assert body["toolConfig"]["toolChoice"] == bedrock
    claude = AnthropicAdapter(ProviderConfig(name="anthropic", protocol="anthropic", api_key="k"))
    anth = orjson.loads(claude.chat_to_wire(req, ModelSpec(id="anthropic/c", provider="anthropic",
                                                           context_window=200_000)).body or b"")
    assert anth["tool_choice"] == anthropic


def test_inference_config_and_additional_fields() -> None:
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={
        "max_tokens": 512, "temperature": 0.2, "top_p": 0.8, "stop": ["###"], "top_k": 50, "seed": 3,
        "metadata": {"team": "search"}, "service_tier": "flex"}))
    assert body["inferenceConfig"] == {"maxTokens": 512, "temperature": 0.2, "topP": 0.8, "stopSequences": ["###"]}
    assert body["additionalModelRequestFields"] == {"top_k": 50}
    assert body["requestMetadata"] == {"team": "search"}
    assert body["serviceTier"] == {"type": "flex"}
    assert "seed" not in orjson.dumps(body).decode()
    nova = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={"top_k": 20}), NOVA)
    assert nova["additionalModelRequestFields"] == {"inferenceConfig": {"topK": 20}}


def test_max_tokens_required_by_the_catalog() -> None:
    model = ModelSpec(id="bedrock/m", provider="bedrock", context_window=1000, max_output_tokens=777,
                      api_requirements={"max_tokens_required": True})
    assert body_of(ChatRequest(messages=[{"role": "user", "content": "x"}]), model)["inferenceConfig"] == \
        {"maxTokens": 777}


def reasoning_body(model: ModelSpec, effort: str, **params: Any) -> dict[str, Any]:
    return body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                               params={"reasoning_effort": effort, **params}), model)


def test_reasoning_effort_mappings() -> None:
    # a caller's max_tokens: the budget is clipped to half of it (Claude needs budget_tokens < maxTokens)
    body = reasoning_body(CLAUDE_THINKING, "medium", max_tokens=20_000)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert body["inferenceConfig"] == {"maxTokens": 20_000}
    assert "additionalModelRequestFields" not in reasoning_body(CLAUDE_THINKING, "none")
    assert reasoning_body(NOVA, "high")["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}
    assert reasoning_body(NOVA, "none")["additionalModelRequestFields"] == {"reasoningConfig": {"type": "disabled"}}
    # any other mapped name gets the effort at that path of additionalModelRequestFields (Converse's own
    # outputConfig holds only textFormat)
    effort_model = ModelSpec(id="bedrock/e", provider="bedrock", context_window=1000,
                             capabilities=frozenset({"reasoning"}),
                             param_mappings={"reasoning_effort": "output_config.effort"})
    low = reasoning_body(effort_model, "low")
    assert low["additionalModelRequestFields"] == {"output_config": {"effort": "low"}}
    assert "outputConfig" not in low
    assert "additionalModelRequestFields" not in reasoning_body(CLAUDE, "high")  # not a reasoning model


def test_bundled_claude_models_get_claude_thinking_not_nova_reasoning() -> None:
    # Bedrock user guide, "Extended thinking": additionalModelRequestFields {"thinking": {"type": "enabled",
    # "budget_tokens": N}}, N >= 1024 and below max_tokens. The catalog's default max_tokens (4096, which the
    # router copies into the request) grows by the budget; a caller's max_tokens clips the budget instead.
    sonnet = BUNDLED.get("bedrock/anthropic.claude-sonnet-4-6")
    body = reasoning_body(sonnet, "high", max_tokens=4096)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 16384}}
    assert body["inferenceConfig"] == {"maxTokens": 4096 + 16384}
    small = reasoning_body(sonnet, "high", max_tokens=6000)
    assert small["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 3000}}
    assert small["inferenceConfig"] == {"maxTokens": 6000}
    # "Adaptive thinking": the models that reject budgets take {"type": "adaptive"} and output_config.effort
    opus = BUNDLED.get("bedrock/anthropic.claude-opus-4-8")
    assert reasoning_body(opus, "minimal")["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}
    assert reasoning_body(BUNDLED.get("bedrock/us.anthropic.claude-sonnet-5"), "xhigh")[
        "additionalModelRequestFields"] == {"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}}
    assert reasoning_body(BUNDLED.get("bedrock/amazon.nova-2-lite-v1:0"), "medium")[
        "additionalModelRequestFields"] == {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}}


def test_reasoning_form_follows_the_model_family_when_the_catalog_has_no_mapping() -> None:
    def spec(model_id: str) -> ModelSpec:
        return ModelSpec(id=f"bedrock/{model_id}", provider="bedrock", context_window=200_000,
                         max_output_tokens=64_000, capabilities=frozenset({"reasoning"}))

    assert reasoning_body(spec("global.anthropic.claude-sonnet-4-5-20250929-v1:0"), "low")[
        "additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert reasoning_body(spec("us.amazon.nova-2-lite-v1:0"), "low")["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}}
    # a family with no known reasoning parameter: dropped, not sent in Nova's shape
    assert "additionalModelRequestFields" not in reasoning_body(spec("deepseek.r1-v1:0"), "high")


def test_claude_thinking_drops_sampling_and_raises_top_p() -> None:
    body = reasoning_body(CLAUDE_THINKING, "low", max_tokens=8000, temperature=0.2, top_p=0.5, top_k=40)
    assert body["inferenceConfig"] == {"maxTokens": 8000, "topP": 0.95}
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    plain = reasoning_body(CLAUDE_THINKING, "none", max_tokens=8000, temperature=0.2, top_k=40)
    assert plain["inferenceConfig"] == {"maxTokens": 8000, "temperature": 0.2}
    assert plain["additionalModelRequestFields"] == {"top_k": 40}


def test_claude_thinking_budget_stays_below_max_tokens() -> None:
    with pytest.raises(UnsupportedParameterError):
        reasoning_body(CLAUDE_THINKING, "high", max_tokens=1024)  # no budget >= 1024 fits below 1024
    fitted = reasoning_body(CLAUDE_THINKING, "xhigh", max_tokens=3000)
    assert fitted["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 1500


@pytest.mark.parametrize("params", [
    {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
    {"tools": [{"type": "function", "function": {"name": "f"}}],
     "tool_choice": {"type": "function", "function": {"name": "f"}}},
    {"response_format": {"type": "json_object"}},
])
def test_forced_tool_keeps_its_contract_and_drops_thinking(params: dict[str, Any]) -> None:
    body = reasoning_body(CLAUDE_THINKING, "high", temperature=0.3, **params)
    assert "additionalModelRequestFields" not in body
    assert body["inferenceConfig"]["temperature"] == 0.3
    assert set(body["toolConfig"]["toolChoice"]) & {"any", "tool"}


def test_thinking_stays_with_an_unforced_tool_choice() -> None:
    auto = reasoning_body(CLAUDE_THINKING, "low", max_tokens=8000,
                          tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto")
    assert auto["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert auto["toolConfig"]["toolChoice"] == {"auto": {}}


def test_json_schema_becomes_a_forced_tool_or_native_output_config() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "description": "A person"}}
    body = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={"response_format": fmt}))
    assert body["toolConfig"] == {"tools": [{"toolSpec": {"name": JSON_TOOL, "description": "A person",
                                                          "inputSchema": {"json": schema}}}],
                                  "toolChoice": {"tool": {"name": JSON_TOOL}}}
    native_model = ModelSpec(id="bedrock/n", provider="bedrock", context_window=1000,
                             api_requirements={"structured_output": "native"})
    native = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}], params={"response_format": fmt}),
                     native_model)
    assert "toolConfig" not in native
    structure = native["outputConfig"]["textFormat"]
    assert structure["type"] == "json_schema"
    assert orjson.loads(structure["structure"]["jsonSchema"]["schema"]) == schema
    assert structure["structure"]["jsonSchema"]["name"] == "person"
    obj = body_of(ChatRequest(messages=[{"role": "user", "content": "x"}],
                              params={"response_format": {"type": "json_object"}}))
    assert obj["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}


# ============================================================================ responses (pure)


def test_text_response_adds_cache_tokens_to_input() -> None:
    resp = make().chat_from_wire(fixture("converse_text.json"), CLAUDE, {"x-amzn-RequestId": "req-123"})
    assert resp.content == "Paris is the capital of France."
    assert resp.finish_reason == "stop"
    assert resp.provider_request_id == "req-123"
    u = resp.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (12 + 1536 + 512, 9,
                                                                                           1536, 512)
    assert u.total_tokens == 2069  # Bedrock's own totalTokens
    assert u.provider_details["latency_ms"] == 812
    assert u.provider_details["reasoning"] == "Short answer wanted."


def test_tool_use_response() -> None:
    resp = make().chat_from_wire(fixture("converse_tool_use.json"), CLAUDE)
    assert resp.finish_reason == "tool_calls"
    assert resp.content == "Let me check the weather."
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in resp.tool_calls] == [
        ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", {"city": "Paris", "unit": "celsius"})]


def test_json_tool_response_is_content() -> None:
    resp = make().chat_from_wire(fixture("converse_json_tool.json"), CLAUDE)
    assert resp.finish_reason == "stop"
    assert resp.tool_calls == []
    assert orjson.loads(resp.content or "") == {"name": "Ada", "skills": ["math", "poetry"]}


def test_guardrail_is_content_filter() -> None:
    resp = make().chat_from_wire(fixture("converse_guardrail.json"), CLAUDE)
    assert resp.finish_reason == "content_filter"
    assert resp.usage.provider_details["stop_reason"] == "guardrail_intervened"


@pytest.mark.parametrize(("reason", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("content_filtered", "content_filter"),
    ("malformed_tool_use", "error"), ("something_new", "unknown"),
])
def test_stop_reasons(reason: str, expected: str) -> None:
    payload = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": reason,
               "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}
    assert make().chat_from_wire(orjson.dumps(payload), CLAUDE).finish_reason == expected


@pytest.mark.parametrize("payload", [b"<html>", b"[]", b'{"output": {}}', b'{"output": {"message": {}}}'])
def test_malformed_bodies(payload: bytes) -> None:
    with pytest.raises(InvalidResponseError):
        make().chat_from_wire(payload, CLAUDE)


# ============================================================================ errors (pure)


@pytest.mark.parametrize(("etype", "status", "cls"), [
    ("ThrottlingException", 429, RateLimitError),
    ("ServiceQuotaExceededException", 400, QuotaExceededError),
    ("ValidationException", 400, BadRequestError),
    ("AccessDeniedException", 403, PermissionDeniedError),
    ("UnrecognizedClientException", 403, AuthenticationError),
    ("ExpiredTokenException", 403, AuthenticationError),
    ("MissingAuthenticationTokenException", 403, AuthenticationError),
    ("ResourceNotFoundException", 404, NotFoundError),
    ("ModelNotReadyException", 429, OverloadedError),
    ("ServiceUnavailableException", 503, OverloadedError),
    ("ModelTimeoutException", 408, RequestTimeoutError),
    ("InternalServerException", 500, ServerError),
    ("ModelErrorException", 424, ServerError),
])
def test_error_types_from_the_header(etype: str, status: int, cls: type[ProviderError]) -> None:
    headers = {"x-amzn-ErrorType": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-RequestId": "rid-9"}
    err = make().classify_error(status, headers, b'{"message": "m"}', CLAUDE)
    assert type(err) is cls
    assert (err.error_type, err.request_id, err.status_code, err.message) == (etype, "rid-9", status, "m")


def test_error_type_from_the_body_and_retry_after() -> None:
    err = make().classify_error(400, {}, fixture("error_validation_typed_body.json"), CLAUDE)
    assert type(err) is ContextWindowExceededError  # "Input is too long": the message is the only signal
    plain = make().classify_error(400, {}, orjson.dumps({"__type": "ValidationException",
                                                         "message": "1 validation error detected"}), CLAUDE)
    assert type(plain) is BadRequestError
    throttled = make().classify_error(429, {"Retry-After": "3"}, fixture("error_throttling.json"), CLAUDE)
    assert type(throttled) is RateLimitError and throttled.retry_after == 3.0
    untyped = make().classify_error(502, {}, b"<html>gateway</html>", CLAUDE)
    assert type(untyped) is ServerError


def test_stream_exception_member_names_are_classified() -> None:
    err = make().stream_exception("throttlingException", b'{"message": "slow down"}', CLAUDE)
    assert type(err) is RateLimitError and err.status_code == 429
    err = make().stream_exception("modelStreamErrorException",
                                  b'{"message": "m", "originalStatusCode": 500}', CLAUDE)
    assert type(err) is ServerError and err.status_code == 424


def test_error_messages_are_redacted() -> None:
    err = make(aws_session_token=TOKEN).classify_error(
        403, {"x-amzn-ErrorType": "UnrecognizedClientException"},
        orjson.dumps({"message": f"bad token {TOKEN} for {ACCESS_KEY}"}), CLAUDE)
    assert err.message == "bad token *** for ***"
    assert TOKEN not in str(err) and TOKEN not in orjson.dumps(err.body).decode()


# ============================================================================ streams (pure)


def decode(events: list[tuple[str, bytes]]) -> list[StreamChunk]:
    decoder = make().new_stream_decoder(CLAUDE, ChatRequest(messages=[], stream=True))
    chunks: list[StreamChunk] = []
    for event, data in events:
        chunks.extend(decoder.feed(event, data))
    chunks.extend(decoder.close())
    return chunks


def recorded() -> list[tuple[str, bytes]]:
    return [(name, orjson.dumps(payload)) for name, payload in orjson.loads(fixture("stream_tool_use.json"))]


def test_stream_decoder_text_and_tool_use() -> None:
    chunks = decode(recorded())
    assert "".join(c.delta for c in chunks) == "Checking now."
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.id, d.name) for d in deltas if d.name] == [(0, "tooluse_abc", "get_weather")]
    assert "".join(d.arguments for d in deltas) == '{"city": "Paris"}'
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_tokens) == (400, 25, 300)
    assert final.usage.provider_details["latency_ms"] == 900


def test_stream_json_tool_deltas_are_text() -> None:
    events = [
        ("messageStart", b'{"role": "assistant"}'),
        ("contentBlockStart", orjson.dumps({"start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}},
                                            "contentBlockIndex": 0})),
        ("contentBlockDelta", b'{"delta": {"toolUse": {"input": "{\\"a\\": "}}, "contentBlockIndex": 0}'),
        ("contentBlockDelta", b'{"delta": {"toolUse": {"input": "1}"}}, "contentBlockIndex": 0}'),
        ("messageStop", b'{"stopReason": "tool_use"}'),
        ("metadata", b'{"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}'),
    ]
    chunks = decode(events)
    assert "".join(c.delta for c in chunks) == '{"a": 1}'
    assert not any(c.tool_calls for c in chunks)
    assert chunks[-1].finish_reason == "stop"


def test_stream_ends_need_message_stop() -> None:
    events = recorded()[:3]
    with pytest.raises(InvalidResponseError, match="messageStop"):
        decode(events)
    without_metadata = decode(recorded()[:-1])
    assert without_metadata[-1].finish_reason == "tool_calls" and without_metadata[-1].usage is None


def test_stream_exception_and_framing_events_raise() -> None:
    with pytest.raises(OverloadedError):
        decode([(EXCEPTION_EVENT + "serviceUnavailableException", b'{"message": "busy"}')])
    with pytest.raises(InvalidResponseError, match="ChecksumMismatch"):
        decode([(FRAMING_EVENT, b"ChecksumMismatch")])


class _Content:
    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step = data, step

    async def iter_any(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self._data), self._step):
            yield self._data[i:i + self._step]


@pytest.mark.parametrize("step", [1, 7, 4096])
async def test_events_decode_frames_split_anywhere(step: int) -> None:
    data = b"".join([event_frame("messageStart", {"role": "assistant"}),
                     event_frame("contentBlockDelta", {"delta": {"text": "hé"}, "contentBlockIndex": 0}),
                     exception_frame("throttlingException", "slow down")])
    got = [e async for e in make()._events(_Content(data, step))]  # type: ignore[arg-type]
    assert [name for name, _ in got] == ["messageStart", "contentBlockDelta", EXCEPTION_EVENT + "throttlingException"]
    assert orjson.loads(got[1][1]) == {"delta": {"text": "hé"}, "contentBlockIndex": 0}


async def test_events_report_corrupt_frames() -> None:
    good = event_frame("messageStart", {"role": "assistant"})
    bad = bytearray(event_frame("messageStop", {"stopReason": "end_turn"}))
    bad[-1] ^= 0x01
    got = [e async for e in make()._events(_Content(good + bytes(bad), 5))]  # type: ignore[arg-type]
    assert got[0][0] == "messageStart"
    assert got[1] == (FRAMING_EVENT, b"ChecksumMismatch")


async def test_error_frames() -> None:
    frame = encode_frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b"")
    got = [e async for e in make()._events(_Content(frame, 64))]  # type: ignore[arg-type]
    assert got == [("error:InternalFailure", b"boom")]


# ============================================================================ embeddings (pure)


def test_titan_sends_one_request_per_input() -> None:
    wires = make().embed_wires(EmbedRequest(input=["a", "b"], params={"dimensions": 256}), TITAN)
    assert [sub.input for sub, _ in wires] == [["a"], ["b"]]
    assert wires[0][1].url.endswith("/model/amazon.titan-embed-text-v2%3A0/invoke")
    assert [orjson.loads(w.body or b"") for _, w in wires] == [{"inputText": "a", "dimensions": 256},
                                                               {"inputText": "b", "dimensions": 256}]
    with pytest.raises(BadRequestError, match="embed_wires"):
        make().embed_to_wire(EmbedRequest(input=["a", "b"]), TITAN)


def test_cohere_batches_by_96() -> None:
    texts = [f"t{i}" for i in range(200)]
    wires = make().embed_wires(EmbedRequest(input=texts, params={"task_type": "RETRIEVAL_QUERY"}), COHERE)
    assert [len(sub.input) for sub, _ in wires] == [96, 96, 8]
    first = orjson.loads(wires[0][1].body or b"")
    assert first["input_type"] == "search_query" and first["texts"] == texts[:96]


def test_embed_from_wire_shapes() -> None:
    titan = make().embed_from_wire(fixture("titan_embed.json"), TITAN, EmbedRequest(input=["hello"]))
    assert titan.embeddings == [[0.0123, -0.0456, 0.0789]]
    assert (titan.usage.input_tokens, titan.usage.estimated) == (7, False)
    cohere = make().embed_from_wire(fixture("cohere_embed.json"), COHERE, EmbedRequest(input=["hello", "world"]))
    assert cohere.embeddings == [[0.1, 0.2], [0.3, 0.4]]
    assert cohere.usage.estimated is True and cohere.usage.input_tokens > 0
    v4 = make().embed_from_wire(fixture("cohere_v4_embed.json"), COHERE, EmbedRequest(input=["hello"]))
    assert v4.embeddings == [[0.5, 0.6]]
    unknown = ModelSpec(id="bedrock/x.embed", provider="bedrock", context_window=10, mode="embedding")
    with pytest.raises(BadRequestError, match="embed_format"):
        make().embed_wires(EmbedRequest(input=["a"]), unknown)


# ============================================================================ loopback


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("bedrock",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def chat(text: str = "Hello there", *, stream: bool = False, **params: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
                       params=params, stream=stream)


def assert_signed(fake: FakeProviderServer) -> None:
    assert fake.captured
    for c in fake.captured:
        url = fake.base_url + c.path  # the adapter sends ':' unescaped, so the decoded path is the raw path
        assert verify_sigv4(c.method, url, c.headers, c.body, secret_key=SECRET), c.path
        assert SECRET not in repr(c.headers)


async def test_complete_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="Bonjour.")
    resp = await make(fake.base_url).complete(session, chat(temperature=0.2, max_tokens=100), CLAUDE)
    assert resp.content == "Bonjour."
    assert resp.finish_reason == "stop"
    assert resp.usage.output_tokens == approx_tokens("Bonjour.")
    assert resp.usage.input_tokens == approx_tokens("Be brief.\nHello there")
    assert resp.provider_request_id
    c = fake.captured[-1]
    assert c.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
    assert c.json["inferenceConfig"] == {"temperature": 0.2, "maxTokens": 100}
    assert_signed(fake)


async def test_session_token_and_bearer_auth_over_loopback(fake: FakeProviderServer,
                                                           session: aiohttp.ClientSession) -> None:
    await make(fake.base_url, aws_session_token=TOKEN).complete(session, chat(), CLAUDE)
    c = fake.captured[-1]
    assert c.headers["X-Amz-Security-Token"] == TOKEN
    assert verify_sigv4(c.method, fake.base_url + c.path, c.headers, c.body, secret_key=SECRET, session_token=TOKEN)
    bearer = make(fake.base_url, aws_access_key_id=None, aws_secret_access_key=None, api_key="ABSK-key-1")
    resp = await bearer.complete(session, chat(), CLAUDE)
    assert resp.content
    assert fake.captured[-1].headers["Authorization"] == "Bearer ABSK-key-1"


async def test_structured_output_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply='{"name": "Ada"}')
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}}
    resp = await make(fake.base_url).complete(session, chat(response_format=fmt), CLAUDE)
    assert (orjson.loads(resp.content or ""), resp.finish_reason, resp.tool_calls) == ({"name": "Ada"}, "stop", [])
    chunks = [c async for c in make(fake.base_url).stream(session, chat(stream=True, response_format=fmt), CLAUDE)]
    assert orjson.loads("".join(c.delta for c in chunks)) == {"name": "Ada"}
    assert chunks[-1].finish_reason == "stop"


async def test_stream_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="one two three four five six", stream_chunks=3)
    chunks = [c async for c in make(fake.base_url).stream(session, chat(stream=True), CLAUDE)]
    assert "".join(c.delta for c in chunks) == "one two three four five six"
    assert len([c for c in chunks if c.delta]) == 3
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None and final.usage.output_tokens == approx_tokens("one two three four five six")
    assert fake.captured[-1].path.endswith("/converse-stream")
    assert_signed(fake)


async def test_stream_tool_use_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(tool_call={"name": "lookup", "arguments": {"q": "modelplex", "n": 3}})
    chunks = [c async for c in make(fake.base_url).stream(session, chat(stream=True), CLAUDE)]
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].name == "lookup" and deltas[0].id.startswith("tooluse_")
    assert orjson.loads("".join(d.arguments for d in deltas)) == {"q": "modelplex", "n": 3}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_tool_history_without_tools_over_loopback(fake: FakeProviderServer,
                                                        session: aiohttp.ClientSession) -> None:
    """The fake holds the adapter to Converse's rule: tool blocks need a toolConfig."""
    fake.behavior = Behavior(reply="Sunny in Paris.")
    for stream in (False, True):
        req = ChatRequest(messages=HISTORY, stream=stream)
        if stream:
            chunks = [c async for c in make(fake.base_url).stream(session, req, CLAUDE)]
            assert "".join(c.delta for c in chunks) == "Sunny in Paris."
        else:
            assert (await make(fake.base_url).complete(session, req, CLAUDE)).content == "Sunny in Paris."
        assert fake.captured[-1].json["toolConfig"]["tools"]
    bare = make(fake.base_url).chat_body(ChatRequest(messages=HISTORY), CLAUDE)
    del bare["toolConfig"]
    async with session.post(fake.base_url + "/model/m/converse", json=bare,
                            headers={"Authorization": "Bearer k"}) as resp:
        assert resp.status == 400 and "toolConfig field must be defined" in (await resp.json())["message"]


async def test_response_format_with_tools_over_loopback(fake: FakeProviderServer,
                                                        session: aiohttp.ClientSession) -> None:
    """``toolChoice: any`` with the caller's tool first: the fake answers with it, and the adapter reports it
    as a tool call (it used to be forced to the structured-output tool)."""
    req = ChatRequest(messages=[{"role": "user", "content": "Weather in Paris"}],
                      params={"tools": [WEATHER_TOOL], "response_format": REPORT})
    resp = await make(fake.base_url).complete(session, req, CLAUDE)
    assert [tc.name for tc in resp.tool_calls] == ["get_weather"] and resp.finish_reason == "tool_calls"


async def test_guardrail_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("content_policy"))
    resp = await make(fake.base_url).complete(session, chat(), CLAUDE)
    assert resp.finish_reason == "content_filter"


FAULTS: list[tuple[Fault, type[ProviderError]]] = [
    (Fault("rate_limit", retry_after=4), RateLimitError),
    (Fault("quota"), QuotaExceededError),
    (Fault("context_window"), ContextWindowExceededError),
    (Fault("auth"), AuthenticationError),
    (Fault("permission"), PermissionDeniedError),
    (Fault("not_found"), NotFoundError),
    (Fault("bad_request"), BadRequestError),
    (Fault("server_error"), ServerError),
    (Fault("server_error", status=424), ServerError),
    (Fault("overloaded"), OverloadedError),
    (Fault("overloaded", status=429), OverloadedError),
    (Fault("status", status=408), RequestTimeoutError),
    (Fault("malformed"), InvalidResponseError),
    (Fault("reset"), APIConnectionError),
]


@pytest.mark.parametrize(("fault", "cls"), FAULTS, ids=[f.kind + str(f.status or "") for f, _ in FAULTS])
async def test_every_fault_is_typed(fault: Fault, cls: type[ProviderError], fake: FakeProviderServer,
                                    session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(fault, times=2)
    with pytest.raises(cls) as info:
        await make(fake.base_url).complete(session, chat(), CLAUDE)
    assert type(info.value) is cls
    if fault.kind == "rate_limit":
        assert info.value.retry_after == 4.0
    with pytest.raises(cls) as streamed:
        async for _ in make(fake.base_url).stream(session, chat(stream=True), CLAUDE):
            pass
    assert type(streamed.value) is cls
    for err in (info.value, streamed.value):
        assert SECRET not in str(err) and SECRET not in repr(err)


async def test_truncated_body_is_invalid(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("truncated"))
    with pytest.raises(InvalidResponseError):
        await make(fake.base_url).complete(session, chat(), CLAUDE)


async def test_truncated_stream_is_interrupted(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("truncated"))
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for c in make(fake.base_url).stream(session, chat(stream=True), CLAUDE):
            got.append(c.delta)
    assert info.value.partial_content == "".join(got) != ""


async def test_stream_cut_after_first_chunk(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.behavior = Behavior(reply="alpha beta gamma delta", stream_chunks=4)
    fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
    got: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for c in make(fake.base_url).stream(session, chat(stream=True), CLAUDE):
            got.append(c.delta)
    assert "".join(got) == FakeProviderServer.split_chunks("alpha beta gamma delta", 4)[0]
    assert info.value.partial_usage.estimated is True
    assert info.value.partial_usage.output_tokens >= 1


async def test_exception_frame_mid_stream(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("stream_cut", after_chunks=2, status=429))
    with pytest.raises(StreamInterruptedError) as info:
        async for _ in make(fake.base_url).stream(session, chat(stream=True), CLAUDE):
            pass
    assert info.value.status_code == 429


async def test_titan_embeddings_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    resp = await make(fake.base_url).embed(session, EmbedRequest(input=["a b c d", "hello", "a b c d"],
                                                                 params={"dimensions": 256}), TITAN)
    assert [len(v) for v in resp.embeddings] == [256, 256, 256]
    assert resp.embeddings[0] == resp.embeddings[2] != resp.embeddings[1]
    assert resp.usage.input_tokens == approx_tokens("a b c d") * 2 + approx_tokens("hello")
    assert resp.usage.estimated is False
    assert len(fake.captured) == 3
    assert_signed(fake)


async def test_cohere_embeddings_over_loopback(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    resp = await make(fake.base_url).embed(session, EmbedRequest(input=["x", "y"]), COHERE)
    assert [len(v) for v in resp.embeddings] == [1024, 1024]
    assert resp.usage.estimated is True
    assert fake.captured[-1].json == {"texts": ["x", "y"], "input_type": "search_document"}


async def test_embedding_failure_is_typed(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    fake.plan.fail_next(Fault("rate_limit"))
    with pytest.raises(RateLimitError):
        await make(fake.base_url).embed(session, EmbedRequest(input=["a", "b", "c"]), TITAN)


async def test_health_has_no_probe(session: aiohttp.ClientSession) -> None:
    status = await make("http://127.0.0.1:9").health_check(session)
    assert status.ok and "no health endpoint" in status.detail


async def test_secrets_never_logged(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make(fake.base_url, aws_session_token=TOKEN)
    await adapter.complete(session, chat(seed=1), CLAUDE)
    fake.plan.fail_next(Fault("auth"))
    with pytest.raises(AuthenticationError) as info:
        await adapter.complete(session, chat(), CLAUDE)
    for text in (caplog.text, str(info.value), repr(info.value), orjson.dumps(info.value.body).decode()):
        assert SECRET not in text and TOKEN not in text


def test_importing_the_adapter_does_not_load_botocore() -> None:
    import subprocess
    import sys

    code = ("import sys, modelplex, modelplex.providers.bedrock, modelplex.testing.fake_bedrock; "
            "print('botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ signed reasoning (Claude's thinking)

SIGNED = {"type": "thinking", "thinking": "Check the tool first.", "signature": "EqQBsigBedrock"}
REDACTED = {"type": "redacted_thinking", "data": "RWNyeXB0ZWQ="}


def test_signed_reasoning_comes_back_as_thinking_blocks() -> None:
    payload = orjson.dumps({"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "Check the tool first.", "signature": "EqQBsigBedrock"}}},
        {"reasoningContent": {"redactedContent": "RWNyeXB0ZWQ="}},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Oslo"}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 20, "outputTokens": 30}})
    resp = make().chat_from_wire(payload, CLAUDE_THINKING)
    assert resp.provider_details["thinking_blocks"] == [SIGNED, REDACTED]
    assert resp.usage.provider_details["reasoning"] == "Check the tool first." and resp.tool_calls


def test_streamed_reasoning_comes_whole_as_each_block_closes() -> None:
    def ev(name: str, obj: dict[str, Any]) -> tuple[str, bytes]:
        return name, orjson.dumps(obj)

    chunks = decode([
        ev("messageStart", {"role": "assistant"}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Check the "}}}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "tool first."}}}),
        ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "EqQBsigBedrock"}}}),
        ev("contentBlockStop", {"contentBlockIndex": 0}),
        ev("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Sunny."}}),
        ev("contentBlockStop", {"contentBlockIndex": 1}),
        ev("messageStop", {"stopReason": "end_turn"}),
        ev("metadata", {"usage": {"inputTokens": 5, "outputTokens": 9}, "metrics": {"latencyMs": 10}})])
    assert "".join(c.reasoning_delta for c in chunks) == "Check the tool first."
    whole = [c.raw["thinking_block"] for c in chunks if isinstance(c.raw, dict) and "thinking_block" in c.raw]
    assert whole == [SIGNED]
    assert "".join(c.delta for c in chunks) == "Sunny."


def test_thinking_blocks_go_back_first_in_the_turn_only_when_claude_thinks() -> None:
    msgs = [{"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "thinking_blocks": [SIGNED, REDACTED], "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "-3C"}]
    on = body_of(ChatRequest(messages=msgs, params={"reasoning_effort": "low", "max_tokens": 4000}), CLAUDE_THINKING)
    assert on["messages"][1]["content"][:2] == [
        {"reasoningContent": {"reasoningText": {"text": "Check the tool first.", "signature": "EqQBsigBedrock"}}},
        {"reasoningContent": {"redactedContent": "RWNyeXB0ZWQ="}}]
    assert "toolUse" in on["messages"][1]["content"][2]
    off = body_of(ChatRequest(messages=msgs), CLAUDE_THINKING)
    assert [list(b) for b in off["messages"][1]["content"]] == [["toolUse"]]
    with pytest.raises(BadRequestError, match="thinking_blocks"):
        body_of(ChatRequest(messages=[{"role": "assistant", "content": "a", "thinking_blocks": [{"type": "x"}]},
                                      {"role": "user", "content": "b"}], params={"reasoning_effort": "low"}),
                CLAUDE_THINKING)
