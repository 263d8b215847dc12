"""``POST /v1/responses`` through a live gateway, driven by the official ``openai`` SDK: text, tools and their
results across providers, JSON output, streams (the SDK's stream helper rebuilds the final response from
the events, so an inconsistent sequence fails there), usage records, and the 400s for what a stateless
gateway cannot serve."""

from __future__ import annotations

import json

import openai
import pytest
from gateway_testkit import wait_for
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from modelplex.server.responses_routes import ResponsesEventEncoder
from modelplex.testing.faults import Behavior, Fault
from modelplex.types import StreamChunk, Usage

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": False,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def client(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def test_a_response_is_parsed_by_the_sdk_and_recorded(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    raw = c.responses.with_raw_response.create(model="fakeai/small", input="Say hello", instructions="Be brief.",
                                               max_output_tokens=300, user="alice")
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.model == "fakeai/small"
    assert r.output_text.startswith("This is a reply from small") and r.usage.output_tokens > 0
    assert raw.headers["x-modelplex-model"] == "fakeai/small"
    sent = gw.fake.captured[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."} and sent["max_tokens"] == 300
    rec = wait_for(lambda: gw.usage(user="alice"))
    assert rec[0]["model"] == "fakeai/small" and rec[0]["output_tokens"] == r.usage.output_tokens


def test_tools_and_their_results_round_trip_through_an_anthropic_model(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    first = c.responses.create(model="fakeclaude/sonnet", input="What is the weather? Use get_weather.",
                               tools=TOOLS, tool_choice={"type": "function", "name": "get_weather"})
    calls = [o for o in first.output if o.type == "function_call"]
    assert [c_.name for c_ in calls] == ["get_weather"] and json.loads(calls[0].arguments)["city"]
    follow = [{"role": "user", "content": "What is the weather? Use get_weather."},
              {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
               "arguments": calls[0].arguments},
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}]
    second = c.responses.create(model="fakeclaude/sonnet", input=follow, tools=TOOLS)
    assert second.status == "completed" and second.output_text
    sent = gw.fake.captured[-1].json["messages"]  # Anthropic's wire: a tool_use turn, then its tool_result
    assert sent[1]["content"][0]["type"] == "tool_use" and sent[2]["content"][0]["type"] == "tool_result"


def test_the_documented_agent_loop_sends_the_previous_output_back(live) -> None:
    """OpenAI's function-calling guide for this API: ``input += response.output``, then the tool results."""
    gw = live()
    c = client(gw, gw.create_key())
    conversation: list = [{"role": "user", "content": "What is the weather? Use get_weather."}]
    first = c.responses.create(model="fakeai/large", input=conversation, tools=TOOLS)
    conversation += first.output  # SDK objects: function_call items with their ids and status
    for item in first.output:
        if item.type == "function_call":
            conversation.append({"type": "function_call_output", "call_id": item.call_id, "output": "sunny"})
    second = c.responses.create(model="fakeai/large", input=conversation, tools=TOOLS)
    assert second.output_text
    conversation += second.output  # an assistant message item, sent back as the next turn's context
    conversation.append({"role": "user", "content": "Thanks"})
    third = c.responses.create(model="fakeai/large", input=conversation)
    sent = gw.fake.captured[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"] and third.output_text
    assert sent[3]["content"] == second.output_text


def test_json_schema_output_and_task_routing(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    r = c.responses.create(model="task:fast", input="Parse: Ada, engineer", text={"format": {
        "type": "json_schema", "name": "person", "schema": {"type": "object", "properties": {
            "name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}, "strict": True}})
    assert set(json.loads(r.output_text)) == {"name"}


def test_a_stream_is_rebuilt_by_the_sdk_helper(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    with c.responses.stream(model="fakeai/small", input="Say hello") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert final.output_text.startswith("This is a reply from small") and final.usage.total_tokens > 0
    with c.responses.stream(model="fakeai/small", input="What is the weather? Use get_weather.",
                            tools=TOOLS) as stream:
        for _ in stream:
            pass
        called = stream.get_final_response()
    assert [o.type for o in called.output] == ["function_call"] and json.loads(called.output[0].arguments)


def test_a_cut_answer_is_incomplete(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    r = c.responses.create(model="fakeai/small", input="Say hello", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"


def test_what_a_stateless_gateway_cannot_serve_is_a_clear_400(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    cases = [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"input": []}, "input"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0]"),
        ({"temperature": 5}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"frobnicate": True}, "frobnicate"),
        ({"api_key": "sk-other"}, "api_key"),
        ({"tools": {}}, "tools"),
        ({"stream": {}}, "stream"),
        ({"user": 0}, "user"),
    ]
    for extra, param in cases:
        body = {"model": "fakeai/small", "input": "hi", **extra}
        with pytest.raises(openai.BadRequestError) as err:
            c.post("/responses", body=body, cast_to=object)
        assert err.value.body["param"] == param, (extra, err.value.body)
    with pytest.raises(openai.NotFoundError):
        c.responses.create(model="fakeai/nonexistent", input="hi")


def test_an_upstream_failure_mid_stream_is_an_error_event(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    gw.fake.behavior = Behavior(stream_chunks=6)
    gw.fake.plan.fail_next(Fault("stream_cut", after_chunks=2))
    with c.responses.stream(model="fakeai/small", input="Say hello") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError):  # the SDK's helper: no response.completed came
            stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds and "response.completed" not in kinds
    assert kinds[-2:] == ["error", "response.failed"] and events[-2].code == "upstream_error"
    assert events[-1].response.status == "failed" and events[-1].response.output[0].content[0].text
    # the text cut short is not reported as done and completed: its item ends incomplete
    assert "response.output_text.done" not in kinds and "response.content_part.done" not in kinds
    assert kinds[-3] == "response.output_item.done" and events[-3].item.status == "incomplete"
    assert events[-1].response.output[0].status == "incomplete"


def test_a_failure_ends_the_item_it_cut_incomplete_and_keeps_finished_ones_completed() -> None:
    """Pure: a finished tool call stays completed; the text being written when the upstream failed ends
    incomplete, with no ``.done`` event claiming its text is final; then ``error`` and ``response.failed``."""
    from modelplex.server.errors import ErrorInfo
    from modelplex.types import ToolCallDelta

    enc = ResponsesEventEncoder("r1", 1, {"model": "m/x"})
    out = enc.start(StreamChunk(model="m/x"))
    out += enc.chunk(StreamChunk(tool_calls=[ToolCallDelta(0, id="call_1", name="f", arguments='{"a": 1}')]))
    out += enc.chunk(StreamChunk(delta="Half a sen"))
    out += enc.error(ErrorInfo(502, "api_error", "upstream failed", code="upstream_error"))
    adapter = TypeAdapter(ResponseStreamEvent)
    events = [adapter.validate_json(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.output_item.added", "response.content_part.added",
                     "response.output_text.delta", "response.output_item.done", "error", "response.failed"]
    assert events[5].item.status == "completed" and events[9].item.status == "incomplete"
    failed = events[-1].response
    assert [(o.type, o.status) for o in failed.output] == [("function_call", "completed"), ("message", "incomplete")]
    assert failed.output[1].content[0].text == "Half a sen" and failed.error.code == "server_error"
    assert events[-2].code == "upstream_error"


def test_a_refusal_is_a_refusal_part_whole_and_streamed(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    gw.fake.behavior = Behavior(reply="[refusal] I can't help with that.", stream_chunks=3)
    # the fake's own Responses API is the oracle: the gateway answers as OpenAI would
    direct = openai.OpenAI(base_url=f"{gw.fake.base_url}/v1", api_key="sk-test", max_retries=0)
    r = c.responses.create(model="fakeai/small", input="Say hello")
    want = direct.responses.create(model="small", input="Say hello")
    assert [p.model_dump() for p in r.output[0].content] == [p.model_dump() for p in want.output[0].content] == [
        {"type": "refusal", "refusal": "I can't help with that."}]
    assert r.output_text == "" and r.status == "completed"
    with direct.responses.stream(model="small", input="Say hello") as stream:
        want_kinds = [e.type for e in stream]
    with c.responses.stream(model="fakeai/small", input="Say hello") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == want_kinds
    assert "".join(e.delta for e in events if e.type == "response.refusal.delta") == "I can't help with that."
    assert next(e for e in events if e.type == "response.refusal.done").refusal == "I can't help with that."
    added = next(e for e in events if e.type == "response.content_part.added")
    assert added.part.type == "refusal" and added.part.refusal == ""
    assert [p.model_dump() for p in final.output[0].content] == [{"type": "refusal",
                                                                  "refusal": "I can't help with that."}]


def test_text_then_refusal_are_two_parts_of_one_message_each_closed_in_turn() -> None:
    enc = ResponsesEventEncoder("r1", 0, {})
    out = enc.start(StreamChunk(model="m/x"))
    for c in (StreamChunk(delta="Sure, "), StreamChunk(refusal_delta="but not "), StreamChunk(refusal_delta="that."),
              StreamChunk(finish_reason="stop", usage=Usage(1, 2))):
        out += enc.chunk(c)
    out += enc.finish()
    payloads = [block.split(b"\ndata: ", 1)[1] for block in out.split(b"\n\n") if block]
    adapter = TypeAdapter(ResponseStreamEvent)  # strict: every event but the last has the SDK's exact shape
    events = [adapter.validate_json(p) for p in payloads[:-1]]
    assert [(e.type, getattr(e, "content_index", None)) for e in events[2:]] == [
        ("response.output_item.added", None), ("response.content_part.added", 0), ("response.output_text.delta", 0),
        ("response.output_text.done", 0), ("response.content_part.done", 0),
        ("response.content_part.added", 1), ("response.refusal.delta", 1), ("response.refusal.delta", 1),
        ("response.refusal.done", 1), ("response.content_part.done", 1), ("response.output_item.done", None)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = json.loads(payloads[-1])
    assert final["type"] == "response.completed" and final["sequence_number"] == len(events)
    assert [{k: p[k] for k in ("type", "text", "refusal") if k in p} for p in final["response"]["output"][0]["content"]
            ] == [{"type": "output_text", "text": "Sure, "}, {"type": "refusal", "refusal": "but not that."}]
