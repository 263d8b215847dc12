"""OpenAI's Responses API as the wire of ``endpoint: responses`` models: the pure request/response/stream
conversions on payloads shaped as the API reference documents them, then the adapter against the fake,
whose answers the official ``openai`` SDK parses (its stream helper rebuilds the final response from the
events, so an inconsistent event sequence fails there)."""

from __future__ import annotations

import openai
import orjson
import pytest

from modelplex.catalog.params import param_name, split_params, supported
from modelplex.catalog.schema import ModelSpec
from modelplex.errors import InvalidResponseError, RateLimitError, ServerError
from modelplex.providers._responses_wire import ResponsesStreamDecoder, build_responses_body, parse_response
from modelplex.providers.azure import AzureOpenAIAdapter
from modelplex.providers.base import ProviderConfig
from modelplex.providers.openai_compat import OpenAIAdapter
from modelplex.testing.fake_responses import output_items, response_object, stream_events
from modelplex.testing.server import FakeProviderServer
from modelplex.types import ChatRequest

PRO = ModelSpec(id="openai/gpt-5-pro", provider="openai", context_window=400_000, max_output_tokens=272_000,
                capabilities=["tool_calling", "json_mode", "structured_output", "reasoning", "vision"],
                api_requirements={"endpoint": "responses"})
CHAT = ModelSpec(id="openai/gpt-6-luna", provider="openai", context_window=400_000)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


def invalid(message: str) -> InvalidResponseError:
    return InvalidResponseError(message, provider="openai", model=PRO.id)


def classify(err: dict) -> Exception:
    kind = RateLimitError if err.get("code") == "rate_limit_exceeded" else ServerError
    return kind(err.get("message", ""), provider="openai", model=PRO.id)


# ----------------------------------------------------------------------------------------- parameters


def test_responses_models_take_only_what_the_responses_api_has() -> None:
    assert {"stop", "seed", "n", "logit_bias", "frequency_penalty", "logprobs"}.isdisjoint(supported("openai", PRO))
    assert {"max_tokens", "tools", "response_format", "reasoning_effort"} <= supported("openai", PRO)
    assert param_name("openai", PRO, "max_tokens") == "max_output_tokens"
    assert param_name("openai", PRO, "response_format") == "text.format"
    assert param_name("openai", CHAT, "max_tokens") == "max_tokens"  # chat models are unchanged
    # metadata: the Responses API takes it with store false; chat completions only with store true
    assert "metadata" in supported("openai", PRO) and param_name("openai", PRO, "metadata") == "metadata"
    assert "metadata" not in supported("openai", CHAT) and param_name("openai", CHAT, "metadata") is None
    assert split_params("openai", PRO, {"stop": ["x"], "temperature": 0.2})[1] == {"stop": ["x"]}


# ----------------------------------------------------------------------------------------- requests


def test_a_chat_request_becomes_input_items_and_responses_fields() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is here?"},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
    ]
    params = {"max_tokens": 500, "temperature": 0.3, "stop": ["\n"], "tools": TOOLS,
              "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
              "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"},
                                                                         "strict": True}},
              "reasoning_effort": "high", "user": "u-1", "timeout": 30, "extra_body": {"truncation": "auto"}}
    body, dropped = build_responses_body("openai", ChatRequest(messages=messages, params=params, stream=True), PRO,
                                         model_field="gpt-5-pro")
    assert dropped == ["stop"]
    assert body == {
        "model": "gpt-5-pro",
        "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "What is here?"},
                                         {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
            {"role": "user", "content": "Thanks"},
        ],
        "max_output_tokens": 500, "temperature": 0.3,
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                   "parameters": TOOLS[0]["function"]["parameters"], "strict": False}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "high"}, "user": "u-1", "store": False, "stream": True, "truncation": "auto",
    }


# ----------------------------------------------------------------------------------------- responses

RESPONSE = {
    "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41", "object": "response", "created_at": 1741476777,
    "status": "completed", "error": None, "incomplete_details": None, "model": "gpt-5-pro-2025-10-06",
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Checking the weather."}]},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
    ],
    "usage": {"input_tokens": 2048, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 300,
              "output_tokens_details": {"reasoning_tokens": 256}, "total_tokens": 2348},
}


def test_a_response_object_becomes_a_response() -> None:
    r = parse_response(RESPONSE, model_id=PRO.id, provider="openai", invalid=invalid, classify_error=classify)
    assert r.content == "Let me look." and r.finish_reason == "tool_calls"
    assert [(t.id, t.name, t.arguments) for t in r.tool_calls] == [("call_9", "get_weather", '{"city":"Paris"}')]
    assert (r.usage.input_tokens, r.usage.cache_read_tokens, r.usage.output_tokens, r.usage.reasoning_tokens) == (
        2048, 1024, 300, 256)
    assert r.provider_request_id == RESPONSE["id"] and r.provider_details["reasoning_summary"] == "Checking the weather."


def test_incomplete_failed_and_malformed_responses() -> None:
    cut = {**RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
           "output": RESPONSE["output"][:2]}
    assert parse_response(cut, model_id=PRO.id, provider="openai", invalid=invalid,
                          classify_error=classify).finish_reason == "length"
    refused = {**RESPONSE, "output": [{"type": "message", "id": "m", "role": "assistant", "status": "completed",
                                       "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]}
    got = parse_response(refused, model_id=PRO.id, provider="openai", invalid=invalid, classify_error=classify)
    assert got.content is None and got.refusal == "I can't help with that."
    failed = {**RESPONSE, "status": "failed", "output": [],
              "error": {"code": "rate_limit_exceeded", "message": "slow down"}}
    with pytest.raises(RateLimitError):
        parse_response(failed, model_id=PRO.id, provider="openai", invalid=invalid, classify_error=classify)
    with pytest.raises(InvalidResponseError):
        parse_response({"id": "resp_1", "status": "completed"}, model_id=PRO.id, provider="openai", invalid=invalid,
                       classify_error=classify)


# ----------------------------------------------------------------------------------------- streams


def _final(content: str | None, calls: list[dict], status: str = "completed", refusal: str | None = None) -> dict:
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    return response_object({}, rid="resp_1", model="gpt-5-pro", created=1, status=status,
                           output=output_items("resp_1", content, calls, 0, refusal=refusal), usage=usage)


def _decode(final: dict) -> list:
    decoder = ResponsesStreamDecoder(classify, invalid)
    chunks = []
    for _, event in stream_events(final, lambda t: [t[i:i + 4] for i in range(0, len(t), 4)]):
        head, data = event.split(b"\ndata: ", 1)
        chunks += decoder.feed(head.removeprefix(b"event: ").decode(), data.strip())
    chunks += decoder.close()
    return chunks


def test_a_text_stream_decodes_to_deltas_then_usage() -> None:
    chunks = _decode(_final("Hello there, world", []))
    assert "".join(c.delta for c in chunks) == "Hello there, world"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.input_tokens == 10


def test_a_refusal_stream_decodes_to_refusal_deltas_not_text() -> None:
    chunks = _decode(_final(None, [], refusal="I can't help with that."))
    assert "".join(c.refusal_delta for c in chunks) == "I can't help with that."
    assert not any(c.delta for c in chunks) and chunks[-1].finish_reason == "stop"


def test_a_tool_call_stream_decodes_to_indexed_deltas() -> None:
    calls = [{"id": "call_a", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
             {"id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}]
    chunks = _decode(_final(None, calls))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.id, d.name) for d in deltas if d.id] == [(0, "call_a", "get_weather"), (1, "call_b", "get_time")]
    assert "".join(d.arguments for d in deltas if d.index == 0) == '{"city":"Paris"}'
    assert chunks[-1].finish_reason == "tool_calls"
    assert _decode(_final("cut", [], status="incomplete"))[-1].finish_reason == "length"


def test_stream_errors_and_a_stream_without_its_terminal_event() -> None:
    decoder = ResponsesStreamDecoder(classify, invalid)
    with pytest.raises(RateLimitError):
        decoder.feed("error", orjson.dumps({"type": "error", "code": "rate_limit_exceeded", "message": "slow",
                                            "param": None, "sequence_number": 3}))
    failed = {"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error",
                                                                                   "message": "boom"}}}
    with pytest.raises(ServerError):
        ResponsesStreamDecoder(classify, invalid).feed("response.failed", orjson.dumps(failed))
    cut = ResponsesStreamDecoder(classify, invalid)
    cut.feed("response.output_text.delta", orjson.dumps({"type": "response.output_text.delta", "delta": "Hi"}))
    with pytest.raises(InvalidResponseError):
        cut.close()


# ----------------------------------------------------------------------------------------- URLs


def test_urls_and_model_fields() -> None:
    openai_adapter = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", api_key="sk-x"))
    wire = openai_adapter.chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), PRO)
    assert wire.url == "https://api.openai.com/v1/responses" and orjson.loads(wire.body)["model"] == "gpt-5-pro"
    azure = AzureOpenAIAdapter(ProviderConfig(name="azure", protocol="azure", api_key="k",
                                              base_url="https://res.openai.azure.com",
                                              deployments={"gpt-5-pro": "pro-prod"}))
    aspec = PRO.model_copy(update={"id": "azure/gpt-5-pro", "provider": "azure"})
    wire = azure.chat_to_wire(ChatRequest(messages=[{"role": "user", "content": "hi"}]), aspec)
    assert wire.url == "https://res.openai.azure.com/openai/v1/responses"
    assert orjson.loads(wire.body)["model"] == "pro-prod" and wire.headers["api-key"] == "k"


# ----------------------------------------------------------------------------------------- the fake, checked by the SDK


async def test_the_fake_answers_as_the_official_sdk_expects() -> None:
    fake = await FakeProviderServer().start()
    try:
        client = openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="sk-test", max_retries=0)
        r = await client.responses.create(model="gpt-5-pro", input="Hello", instructions="Be brief.",
                                          max_output_tokens=200)
        assert r.status == "completed" and r.output_text and r.usage.input_tokens > 0
        tools = [{"type": "function", "name": "get_weather", "strict": False,
                  "parameters": TOOLS[0]["function"]["parameters"]}]
        r = await client.responses.create(model="gpt-5-pro", input="weather?", tools=tools, tool_choice="required")
        assert [(o.type, o.name) for o in r.output] == [("function_call", "get_weather")]
        async with client.responses.stream(model="gpt-5-pro", input="Hello", reasoning={"effort": "low"}) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_response()
        assert final.status == "completed" and final.output_text.startswith("This is a reply")
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model="gpt-5-pro", input=[])
    finally:
        await fake.stop()
