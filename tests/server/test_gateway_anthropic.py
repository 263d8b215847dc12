"""The Anthropic Messages ingress: the official ``anthropic`` SDK against a live gateway (messages.create,
messages.stream, tools, errors), the raw event sequence, and the body conversion as pure functions."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from gateway_testkit import gateway_models

from modelplex.server.anthropic_routes import AnthropicEventEncoder, message_object, to_router_request
from modelplex.server.errors import GatewayError
from modelplex.testing.faults import Behavior, Fault
from modelplex.types import Response, StreamChunk, ToolCall, ToolCallDelta, Usage

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(gw, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


# ------------------------------------------------------------------------------------------ live SDK


def test_messages_create_against_claude_and_openai_models(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    for model, provider in (("fakeclaude/sonnet", "fakeclaude"), ("fakeai/small", "fakeai")):
        raw = c.messages.with_raw_response.create(model=model, max_tokens=200, system="Be brief.",
                                                  messages=[{"role": "user", "content": "Hello there"}])
        msg = raw.parse()
        assert msg.type == "message" and msg.role == "assistant"
        assert msg.id.startswith("msg_")
        assert msg.model == model
        assert msg.content[0].type == "text" and msg.content[0].text.startswith("This is a reply from")
        assert msg.stop_reason == "end_turn"
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
        assert msg.usage.cache_read_input_tokens == 0
        assert raw.headers["x-modelplex-provider"] == provider
    # the system prompt and max_tokens reached both upstreams in their own protocol
    claude = [cap for cap in gw.fake.captured if cap.protocol == "anthropic"][-1].json
    assert claude["max_tokens"] == 200 and "Be brief." in json.dumps(claude["system"])
    oai = [cap for cap in gw.fake.captured if cap.protocol == "openai"][-1].json
    assert oai["messages"][0] == {"role": "system", "content": "Be brief."}


def test_messages_stream_with_the_sdk_helper(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    whole = c.messages.create(model="fakeclaude/sonnet", max_tokens=100,
                              messages=[{"role": "user", "content": "Stream me"}])
    with c.messages.stream(model="fakeclaude/sonnet", max_tokens=100,
                           messages=[{"role": "user", "content": "Stream me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens > 0


def test_an_openai_refusal_reads_as_anthropic_refusal(live) -> None:
    from modelplex.testing.fake_openai import REFUSAL_MARKER

    gw = live()
    gw.fake.behavior = Behavior(reply=f"{REFUSAL_MARKER}I can't help with that.")
    c = client(gw, gw.create_key())
    ask = {"model": "fakeai/small", "max_tokens": 100, "messages": [{"role": "user", "content": "Something"}]}
    msg = c.messages.create(**ask)
    assert msg.stop_reason == "refusal" and msg.content[0].text == "I can't help with that."
    with c.messages.stream(**ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "I can't help with that." and final.stop_reason == "refusal"


def test_stream_cost_rides_on_message_delta(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    whole = c.messages.with_raw_response.create(model="fakeclaude/sonnet", max_tokens=100,
                                                messages=[{"role": "user", "content": "Stream me"}])
    with c.messages.stream(model="fakeclaude/sonnet", max_tokens=100,
                           messages=[{"role": "user", "content": "Stream me"}]) as stream:
        deltas = [e for e in stream if e.type == "message_delta"]
    extra = (deltas[-1].model_extra or {})["modelplex"]
    assert extra["cost_usd"] == pytest.approx(float(whole.headers["x-modelplex-cost-usd"]), rel=1e-3)
    assert extra["cost_usd"] > 0 and extra["usage_estimated"] is False


def test_raw_event_sequence(live) -> None:
    gw = live()
    key = gw.create_key()
    with gw.http() as h, h.stream("POST", "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                                  json={"model": "fakeai/small", "max_tokens": 50, "stream": True,
                                        "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        events = [line[7:] for line in r.iter_lines() if line.startswith("event: ")]
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert set(events[3:-3]) == {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_tool_use_round_trip(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    gw.fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    for model in ("fakeclaude/sonnet", "fakeai/small"):
        gw.fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
        msg = c.messages.create(model=model, max_tokens=200, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": "Weather in Oslo?"}])
        assert msg.stop_reason == "tool_use"
        block = next(b for b in msg.content if b.type == "tool_use")
        assert block.name == "get_weather" and block.input == {"city": "Oslo"}
        gw.fake.behavior = Behavior()  # the fake Anthropic would call the tool again otherwise
        answer = c.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "-3C, snow"}]},
        ])
        assert answer.content[0].type == "text"
    sent = [cap for cap in gw.fake.captured if cap.protocol == "openai"][-1].json
    assert sent["messages"][-1]["role"] == "tool" and sent["messages"][-1]["content"] == "-3C, snow"
    gw.fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
    with c.messages.stream(model="fakeai/small", max_tokens=200, tools=[WEATHER],
                           tool_choice={"type": "any"},
                           messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
        final = stream.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "get_weather"
    assert tool.input == {"city": "Oslo"} and final.stop_reason == "tool_use"


def test_errors_use_anthropic_shapes_and_sdk_types(live) -> None:
    gw = live()
    key = gw.create_key(allowed_models=["fakeai/*"])
    with pytest.raises(anthropic.AuthenticationError) as e401:
        client(gw, "mpx-bbbbbbbb-wrong").messages.create(model="fakeai/small", max_tokens=10,
                                                         messages=[{"role": "user", "content": "x"}])
    assert e401.value.body["type"] == "error" and e401.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as e404:
        client(gw, key).messages.create(model="claude-nonexistent-9", max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])
    assert e404.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gw, key).messages.create(model="fakeclaude/sonnet", max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])
    with gw.http() as h:
        r = h.post("/v1/messages", headers={"x-api-key": key},
                   json={"model": "fakeai/small", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json()["error"] == {"type": "invalid_request_error", "message": r.json()["error"]["message"]}
    assert "max_tokens" in r.json()["error"]["message"]


def test_stream_failure_after_first_byte_is_an_error_event(live) -> None:
    gw = live()
    key = gw.create_key()
    gw.fake.behavior = Behavior(stream_chunks=6)
    gw.fake.plan.fail_next(Fault("stream_cut", after_chunks=2))
    with gw.http() as h, h.stream("POST", "/v1/messages", headers={"x-api-key": key},
                                  json={"model": "fakeai/small", "max_tokens": 50, "stream": True,
                                        "messages": [{"role": "user", "content": "hi"}]}) as r:
        lines = [line for line in r.iter_lines() if line]
    events = [line[7:] for line in lines if line.startswith("event: ")]
    assert events[-1] == "error" and "message_stop" not in events
    payload = json.loads(lines[-1][6:])
    assert payload["type"] == "error" and payload["error"]["type"] in ("api_error", "overloaded_error")
    gw.fake.plan.fail_next(Fault("stream_cut", after_chunks=2))
    with pytest.raises(anthropic.APIStatusError), client(gw, key).messages.stream(
            model="fakeai/small", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream.text_stream:
            pass


# ------------------------------------------------------------------------------------------ pure conversion


def test_conversion_of_system_images_tools_and_results() -> None:
    messages, params, stream, user = to_router_request({
        "model": "x", "max_tokens": 300, "stream": True, "metadata": {"user_id": "u-1"},
        "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        "stop_sequences": ["END"], "temperature": 0.2, "top_k": 5,
        "tools": [WEATHER], "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 10_000},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hot"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
                {"type": "text", "text": "thanks"}]},
        ]})
    assert stream is True and user == "u-1"
    assert messages == [
        {"role": "system", "content": "A\n\nB"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}],
         "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "hot"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom", "is_error": True},
        {"role": "user", "content": "thanks"},
    ]
    assert params == {"max_tokens": 300, "temperature": 0.2, "top_k": 5, "stop": ["END"],
                      "tools": [{"type": "function", "function": {"name": "get_weather",
                                                                  "parameters": WEATHER["input_schema"],
                                                                  "description": "Weather in a city"}}],
                      "tool_choice": "required", "parallel_tool_calls": False, "reasoning_effort": "high"}


@pytest.mark.parametrize("body, param", [
    ({"model": "x", "messages": [{"role": "user", "content": "a"}]}, "max_tokens"),
    ({"model": "x", "max_tokens": 5, "messages": []}, "messages"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "system", "content": "a"}]}, "messages[0].role"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
     "messages[0].content[0]"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}], "api_base": "http://e"},
     "api_base"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}], "extra": 1}, "extra"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}],
      "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}], "temperature": 1.5},
     "temperature"),
    ({"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "a"}], "top_p": -0.1}, "top_p"),
])
def test_conversion_rejects_bad_bodies(body, param) -> None:
    with pytest.raises(GatewayError) as exc:
        to_router_request(body)
    assert exc.value.status == 400 and exc.value.param == param


def test_message_object_and_usage_excludes_cache_from_input() -> None:
    resp = Response(content="ok", model="m/x", provider="m", finish_reason="length",
                    tool_calls=[ToolCall("call_1", "f", '{"a": 1}')],
                    usage=Usage(input_tokens=100, output_tokens=7, cache_read_tokens=60, cache_write_tokens=10))
    msg = message_object(resp, "abc")
    assert msg["id"] == "msg_abc"
    assert msg["content"] == [{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "call_1", "name": "f",
                                                              "input": {"a": 1}}]
    assert msg["stop_reason"] == "max_tokens"
    assert msg["usage"] == {"input_tokens": 30, "output_tokens": 7, "cache_creation_input_tokens": 10,
                            "cache_read_input_tokens": 60}


def test_encoder_holds_text_back_until_the_open_tool_blocks_arguments_are_whole() -> None:
    """Text between two fragments of a tool call's arguments: the tool block keeps all its arguments (it was
    closed early, and its last fragment dropped), and the text follows in a block of its own."""
    enc = AnthropicEventEncoder("r1")
    out = enc.start(StreamChunk(model="m/x"))
    out += enc.chunk(StreamChunk(tool_calls=[ToolCallDelta(0, id="call_9", name="f", arguments='{"a": ')]))
    out += enc.chunk(StreamChunk(delta="Checking."))
    out += enc.chunk(StreamChunk(tool_calls=[ToolCallDelta(0, arguments="1}")]))
    out += enc.chunk(StreamChunk(delta=" Done."))
    out += enc.chunk(StreamChunk(finish_reason="tool_calls"))
    out += enc.finish()
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    args = "".join(e["delta"]["partial_json"] for e in events
                   if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta")
    text = "".join(e["delta"]["text"] for e in events
                   if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta")
    assert json.loads(args) == {"a": 1} and text == "Checking. Done."
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["tool_use", "text"]


def test_encoder_interleaves_text_and_tool_blocks() -> None:
    enc = AnthropicEventEncoder("r1")
    out = enc.start(StreamChunk(model="m/x"))
    out += enc.chunk(StreamChunk(delta="Let me check."))
    out += enc.chunk(StreamChunk(tool_calls=[ToolCallDelta(0, id="call_9", name="f", arguments='{"a"')]))
    out += enc.chunk(StreamChunk(tool_calls=[ToolCallDelta(0, arguments=": 1}")]))
    out += enc.chunk(StreamChunk(finish_reason="tool_calls", usage=Usage(input_tokens=5, output_tokens=3)))
    out += enc.finish()
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    kinds = [(e["type"], e.get("index")) for e in events]
    assert kinds == [("message_start", None), ("content_block_start", 0), ("ping", None),
                     ("content_block_delta", 0), ("content_block_stop", 0), ("content_block_start", 1),
                     ("content_block_delta", 1), ("content_block_delta", 1), ("content_block_stop", 1),
                     ("message_delta", None), ("message_stop", None)]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "call_9", "name": "f", "input": {}}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["output_tokens"] == 3
    assert events[-2]["modelplex"]["cost_usd"] is None  # no cost on the chunks: none invented


THINKER = {"id": "fakeclaude/thinker", "context_window": 200_000, "max_output_tokens": 16_000,
           "capabilities": ["tool_calling", "streaming", "system_messages", "reasoning"], "category": "reasoning",
           "quality": 30, "default_params": {"max_tokens": 1024}, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}


def thinker_gateway(live):
    return live(models=[*gateway_models(), THINKER])


def test_thinking_blocks_come_back_signed_and_continue_a_tool_use(live) -> None:
    """With thinking on, a Claude tool-use turn must be sent back with its signed thinking block first: the
    API refuses the tool result otherwise. The SDK's own message goes back as it came, streamed or not."""
    gw = thinker_gateway(live)
    c = client(gw, gw.create_key())
    ask = {"model": "fakeclaude/thinker", "max_tokens": 4000, "tools": [WEATHER],
           "thinking": {"type": "enabled", "budget_tokens": 2048}}
    question = {"role": "user", "content": "Weather in Oslo?"}
    for streamed in (False, True):
        gw.fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}})
        if streamed:
            with c.messages.stream(**ask, messages=[question]) as stream:
                msg = stream.get_final_message()
        else:
            msg = c.messages.create(**ask, messages=[question])
        assert [b.type for b in msg.content] == ["thinking", "tool_use"], streamed
        assert msg.content[0].signature.startswith("sig_") and msg.content[0].thinking
        gw.fake.behavior = Behavior(reply="Snowing, -3C.")
        tool = msg.content[1]
        answer = c.messages.create(**ask, messages=[
            question, {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "-3C, snow"}]}])
        assert answer.content[-1].text == "Snowing, -3C." and answer.content[0].type == "thinking"
        sent = [cap for cap in gw.fake.captured if cap.protocol == "anthropic"][-1].json
        assert sent["messages"][1]["content"][0] == msg.content[0].model_dump()


def test_no_thinking_blocks_unless_asked(live) -> None:
    gw = thinker_gateway(live)
    c = client(gw, gw.create_key())
    msg = c.messages.create(model="fakeclaude/thinker", max_tokens=300, messages=[{"role": "user", "content": "Hi"}])
    assert [b.type for b in msg.content] == ["text"]


def test_streamed_reasoning_of_other_providers_is_unsigned_thinking() -> None:
    enc = AnthropicEventEncoder("r1", thinking=True)
    out = enc.start(StreamChunk(model="m/x"))
    out += enc.chunk(StreamChunk(reasoning_delta="First, "))
    out += enc.chunk(StreamChunk(reasoning_delta="think."))
    out += enc.chunk(StreamChunk(delta="Answer."))
    out += enc.chunk(StreamChunk(finish_reason="stop", usage=Usage(input_tokens=5, output_tokens=3)))
    out += enc.finish()
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == [{"type": "thinking_delta", "thinking": "First, "}, {"type": "thinking_delta", "thinking": "think."},
                      {"type": "text_delta", "text": "Answer."}]
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1]
    # unsigned thinking cannot be sent back to Claude: it is left out of the next request
    messages, _, _, _ = to_router_request({"model": "x", "max_tokens": 5, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "First, think.", "signature": ""},
                                          {"type": "text", "text": "Answer."}]},
        {"role": "user", "content": "more"}]})
    assert messages[1] == {"role": "assistant", "content": "Answer."}


def test_encoder_streams_signed_and_redacted_thinking() -> None:
    enc = AnthropicEventEncoder("r1", thinking=True)
    out = enc.start(StreamChunk(model="m/x"))
    out += enc.chunk(StreamChunk(reasoning_delta="Need the weather."))
    out += enc.chunk(StreamChunk(raw={"thinking_block": {"type": "thinking", "thinking": "Need the weather.",
                                                         "signature": "sig_1"}}))
    out += enc.chunk(StreamChunk(raw={"thinking_block": {"type": "redacted_thinking", "data": "opaque"}}))
    out += enc.chunk(StreamChunk(delta="Done."))
    out += enc.chunk(StreamChunk(finish_reason="stop", raw={"thinking_blocks": []}))
    out += enc.finish()
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "text"]
    assert {"type": "signature_delta", "signature": "sig_1"} in [e.get("delta") for e in events]
    redacted = next(e for e in events if e["type"] == "content_block_start" and e["index"] == 1)
    assert redacted["content_block"] == {"type": "redacted_thinking", "data": "opaque"}
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1, 2]


def test_stop_sequence_is_reported(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    gw.fake.behavior = Behavior(reply="one two STOP three")
    ask = {"model": "fakeclaude/sonnet", "max_tokens": 100, "stop_sequences": ["STOP"],
           "messages": [{"role": "user", "content": "Count"}]}
    msg = c.messages.create(**ask)
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "STOP"
    assert msg.content[0].text == "one two "
    with c.messages.stream(**ask) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "STOP"
    plain = c.messages.create(**{**ask, "stop_sequences": ["NEVER"]})
    assert plain.stop_reason == "end_turn" and plain.stop_sequence is None


def test_cache_control_reaches_claude_and_not_a_strict_openai_upstream(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    policy = "Company policy. " * 300
    ask = {"max_tokens": 100, "tools": [{**WEATHER, "cache_control": {"type": "ephemeral"}}],
           "system": [{"type": "text", "text": policy, "cache_control": {"type": "ephemeral"}}],
           "messages": [{"role": "user", "content": [
               {"type": "text", "text": "Question?", "cache_control": {"type": "ephemeral"}}]}]}
    first = c.messages.create(model="fakeclaude/sonnet", **ask)
    second = c.messages.create(model="fakeclaude/sonnet", **ask)
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    sent = [cap for cap in gw.fake.captured if cap.protocol == "anthropic"][-1].json
    assert sent["system"] == [{"type": "text", "text": policy, "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["tools"][0]["cache_control"] == {"type": "ephemeral"}
    c.messages.create(model="fakeai/small", **ask)
    oai = [cap for cap in gw.fake.captured if cap.protocol == "openai"][-1].json
    assert "cache_control" not in json.dumps(oai)
    assert oai["messages"][0] == {"role": "system", "content": policy}  # a plain string again, as before the mark
    assert oai["messages"][1] == {"role": "user", "content": "Question?"}


def test_tool_error_flag_reaches_claude(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    c.messages.create(model="fakeclaude/sonnet", max_tokens=100, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Atlantis"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such city",
                                      "is_error": True}]}])
    sent = [cap for cap in gw.fake.captured if cap.protocol == "anthropic"][-1].json
    assert sent["messages"][-1]["content"][0]["is_error"] is True


def _parallel_calls(*, interleaved: bool) -> list[StreamChunk]:
    """Two tool calls as an OpenAI-protocol upstream streams them: both opened first, then their argument
    fragments, alternating (``interleaved``) or one call after the other."""
    fragments = [(0, '{"a":'), (1, '{"b":'), (0, " 1}"), (1, " 2}")] if interleaved else \
        [(0, '{"a":'), (0, " 1}"), (1, '{"b":'), (1, " 2}")]
    return [StreamChunk(tool_calls=[ToolCallDelta(0, id="call_A", name="f", arguments="")]),
            StreamChunk(tool_calls=[ToolCallDelta(1, id="call_B", name="g", arguments="")]),
            *(StreamChunk(tool_calls=[ToolCallDelta(i, arguments=a)]) for i, a in fragments),
            StreamChunk(finish_reason="tool_calls", usage=Usage(input_tokens=9, output_tokens=12))]


def _sdk_stream(body: bytes) -> list[Any]:
    """The official SDK's events for ``body`` (an SSE answer served from memory, no network)."""
    import httpx2  # the HTTP client this SDK takes

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    sdk = anthropic.Anthropic(api_key="k", base_url="http://gateway.test", max_retries=0,
                              http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))
    tools = [{"name": "f", "input_schema": {"type": "object"}}, {"name": "g", "input_schema": {"type": "object"}}]
    with sdk.messages.stream(model="m/x", max_tokens=100, tools=tools,
                             messages=[{"role": "user", "content": "hi"}]) as stream:
        events = list(stream)
        events.append(stream.get_final_message())
    return events


@pytest.mark.parametrize("interleaved", [True, False])
def test_parallel_tool_calls_stream_as_sequential_blocks(interleaved: bool) -> None:
    """Each tool_use block opens, gets all its input and closes before the next opens, even when the upstream
    interleaves the calls' argument fragments: the SDK's snapshot at each content_block_stop holds the whole
    input (it used to see block 0 closed with no input, then deltas for a closed block)."""
    enc = AnthropicEventEncoder("r1")
    out = enc.start(StreamChunk(model="m/x"))
    for c in _parallel_calls(interleaved=interleaved):
        out += enc.chunk(c)
    out += enc.finish()
    events = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    open_index: int | None = None
    for e in events:  # strictly sequential: deltas only to the open block
        if e["type"] == "content_block_start":
            assert open_index is None
            open_index = e["index"]
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index
            open_index = None
    *stream_events, final = _sdk_stream(out)
    stops = [(e.index, e.content_block.name, e.content_block.input) for e in stream_events
             if e.type == "content_block_stop"]
    assert stops == [(0, "f", {"a": 1}), (1, "g", {"b": 2})]
    assert [(b.id, b.name, b.input) for b in final.content] == [("call_A", "f", {"a": 1}), ("call_B", "g", {"b": 2})]
    assert final.stop_reason == "tool_use"
    if not interleaved:  # one call after the other: the second streams as it comes, not held to the end
        assert [e["delta"]["partial_json"] for e in events
                if e["type"] == "content_block_delta" and e["index"] == 1] == ['{"b":', " 2}"]
