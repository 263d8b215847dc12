"""ChatModelplex, the LangChain chat model over the router: an agent loop, streaming, structured output."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from pydantic import BaseModel

from modelplex.catalog import load_catalog
from modelplex.errors import StructuredOutputError
from modelplex.integrations.langchain import ChatModelplex, to_openai_messages
from modelplex.resilience.clock import FakeClock
from modelplex.router import Router
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import FakeProviderServer

CAPS = ["tool_calling", "json_mode", "structured_output", "streaming", "system_messages"]


def config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {"alpha": {"protocol": "openai", "base_url": base_url + "/v1", "api_key": "sk-alpha"}},
        "models": [
            {"id": "alpha/small", "context_window": 16_000, "max_output_tokens": 4_000, "capabilities": CAPS,
             "category": "basic", "quality": 40, "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}},
            {"id": "alpha/large", "context_window": 200_000, "max_output_tokens": 8_000, "capabilities": CAPS,
             "category": "comprehensive", "quality": 85, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
            {"id": "alpha/plain", "context_window": 16_000, "max_output_tokens": 4_000, "capabilities": ["streaming"],
             "category": "basic", "quality": 30, "pricing": {"input_per_mtok": 0.01, "output_per_mtok": 0.01}},
        ],
        "accounting": {"sink": "none"},
        "routing": {"retry": {"max_retries_per_target": 0}, "fallback_paths": {"alpha/large": ["alpha/small"]}},
    }


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture
async def router(fake: FakeProviderServer) -> AsyncIterator[Router]:
    r = Router.from_config(config(fake.base_url), catalog=load_catalog(bundled=False), env={}, clock=FakeClock())
    yield r
    await r.aclose()
    r.close()


@tool
def lookup_salary(role: str, city: str) -> str:
    """Look up the median salary for a role in a city."""
    return json.dumps({"role": role, "city": city, "median_usd": 142_000})


# ----------------------------------------------------------------------------- an agent loop


async def test_tool_calling_agent_loop(router: Router, fake: FakeProviderServer) -> None:
    """A LangGraph-style loop: the model asks for a tool, the loop runs it, the model answers."""
    fake.behavior = Behavior(tool_call={"name": "lookup_salary", "arguments": {"role": "data engineer",
                                                                                 "city": "Berlin"}})
    llm = ChatModelplex(model="alpha/large", router=router).bind_tools([lookup_salary])
    tools = {"lookup_salary": lookup_salary}
    messages: list[BaseMessage] = [SystemMessage("You help with job offers."),
                                   HumanMessage("What does a data engineer earn in Berlin?")]
    turns = 0
    while True:
        turns += 1
        reply = await llm.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            result = tools[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(result, tool_call_id=call["id"]))
    assert turns == 2
    first = messages[2]
    assert isinstance(first, AIMessage)
    assert first.tool_calls[0]["name"] == "lookup_salary"
    assert first.tool_calls[0]["args"] == {"role": "data engineer", "city": "Berlin"}
    assert first.response_metadata["finish_reason"] == "tool_calls"
    assert isinstance(messages[3], ToolMessage) and "142000" in messages[3].content
    final = messages[-1]
    assert isinstance(final, AIMessage) and final.content and not final.tool_calls
    # the second request carried the whole conversation in OpenAI's shape
    sent = fake.captured[-1].json
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert sent["messages"][2]["tool_calls"][0]["function"]["name"] == "lookup_salary"
    assert sent["messages"][3]["tool_call_id"] == first.tool_calls[0]["id"]
    assert sent["tools"][0]["function"]["name"] == "lookup_salary"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["role", "city"]


async def test_streamed_tool_calls_assemble(router: Router, fake: FakeProviderServer) -> None:
    fake.behavior = Behavior(tool_call={"name": "lookup_salary", "arguments": {"role": "cto", "city": "Paris"}})
    llm = ChatModelplex(model="alpha/small", router=router).bind_tools([lookup_salary], tool_choice="lookup_salary")
    total = None
    async for chunk in llm.astream("salary?"):
        total = chunk if total is None else total + chunk
    assert total is not None and total.tool_calls == [
        {"name": "lookup_salary", "args": {"role": "cto", "city": "Paris"}, "id": total.tool_calls[0]["id"],
         "type": "tool_call"}]
    assert fake.captured[-1].json["tool_choice"] == {"type": "function", "function": {"name": "lookup_salary"}}
    await ChatModelplex(model="alpha/small", router=router).bind_tools([lookup_salary], tool_choice="any").ainvoke("x")
    assert fake.captured[-1].json["tool_choice"] == "required"


# ----------------------------------------------------------------------------- invoke and stream


def test_invoke_sync_with_routing_metadata(router: Router, fake: FakeProviderServer) -> None:
    llm = ChatModelplex(task="fast", router=router, temperature=0.3, max_tokens=256)
    msg = llm.invoke("Classify this ticket.")
    meta = msg.response_metadata
    assert meta["task"] == "fast" and meta["provider"] == "alpha"
    assert meta["model"] == "alpha/plain"  # fast: the cheapest model with a 16k window
    assert meta["cost_usd"] > 0 and meta["attempts"][0]["outcome"] == "success"
    assert meta["selection_reason"].startswith("task fast")
    assert msg.usage_metadata["total_tokens"] == msg.usage_metadata["input_tokens"] + msg.usage_metadata[
        "output_tokens"] > 0
    assert fake.captured[-1].json["temperature"] == 0.3 and fake.captured[-1].json["max_tokens"] == 256
    # per-call keywords: routing keywords override, others are parameters
    msg = llm.invoke("Again.", model="alpha/large", stop=["END"], seed=7)
    assert msg.response_metadata["model"] == "alpha/large"
    assert fake.captured[-1].json["stop"] == ["END"] and fake.captured[-1].json["seed"] == 7
    chunks = list(llm.stream("Stream it."))
    assert chunks[-1].usage_metadata is not None
    assert all(c.usage_metadata is None for c in chunks[:-1])


def test_a_refusal_is_in_additional_kwargs(router: Router, fake: FakeProviderServer) -> None:
    from modelplex.testing.fake_openai import REFUSAL_MARKER

    fake.behavior = Behavior(reply=f"{REFUSAL_MARKER}No.")
    msg = ChatModelplex(task="fast", router=router).invoke("Do the thing.")
    assert msg.additional_kwargs["refusal"] == "No." and msg.content == ""


async def test_astream_usage_on_the_last_chunk_only(router: Router) -> None:
    llm = ChatModelplex(requirements={"tool_calling": True, "min_context": 100_000}, router=router)
    chunks = [c async for c in llm.astream("Write three lines about Spark.")]
    assert len(chunks) > 2
    text_chunks, last = chunks[:-1], chunks[-1]
    assert all(c.usage_metadata is None for c in text_chunks)
    assert last.content == "" and last.usage_metadata["output_tokens"] > 0
    assert last.response_metadata["model"] == "alpha/large" and last.response_metadata["cost_usd"] > 0
    assert last.response_metadata["finish_reason"] == "stop"
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content.startswith("This is a reply from large")
    assert total.usage_metadata == last.usage_metadata


async def test_fallback_path_visible_in_metadata(router: Router, fake: FakeProviderServer) -> None:
    fake.plan.fail_next(Fault("server_error", status=503), times=-1, model="large")
    msg = await ChatModelplex(model="alpha/large", router=router).ainvoke("hi")
    assert msg.response_metadata["model"] == "alpha/small" and msg.response_metadata["fallback_used"] is True
    assert [a["outcome"] for a in msg.response_metadata["attempts"]] == ["error", "success"]


# ----------------------------------------------------------------------------- structured output


class JobPosting(BaseModel):
    title: str
    skills: list[str]
    years: int


async def test_with_structured_output_pydantic_and_dict(router: Router, fake: FakeProviderServer) -> None:
    llm = ChatModelplex(model="alpha/small", router=router)
    job = await llm.with_structured_output(JobPosting).ainvoke("Senior data engineer, Spark, 5 years.")
    assert isinstance(job, JobPosting) and job.skills and job.years == 1
    assert fake.captured[-1].json["response_format"]["type"] == "json_schema"
    assert isinstance(llm.with_structured_output(JobPosting).invoke("again"), JobPosting)  # the sync path
    schema = {"title": "Salary", "type": "object", "properties": {"median": {"type": "integer"}},
              "required": ["median"]}
    data = await llm.with_structured_output(schema).ainvoke("How much?")
    assert data == {"median": 1}
    assert fake.captured[-1].json["response_format"]["json_schema"]["name"] == "Salary"
    raw = await llm.with_structured_output(JobPosting, include_raw=True).ainvoke("Parse it.")
    assert isinstance(raw["raw"], AIMessage) and isinstance(raw["parsed"], JobPosting)
    assert raw["parsing_error"] is None and raw["raw"].response_metadata["model"] == "alpha/small"
    # a model without JSON ability is never chosen for structured output
    auto = ChatModelplex(requirements={"min_context": 1_000}, router=router)
    parsed = await auto.with_structured_output(JobPosting, include_raw=True).ainvoke("Parse it.")
    assert parsed["raw"].response_metadata["model"] != "alpha/plain"


async def test_structured_output_errors_are_reported_with_include_raw(router: Router, fake: FakeProviderServer
                                                                      ) -> None:
    llm = ChatModelplex(model="alpha/small", router=router)
    fake.per_model["small"] = Behavior(reply='"just a string"')  # valid JSON, not an object
    schema = {"title": "Salary", "type": "object", "properties": {"median": {"type": "integer"}}}
    out = await llm.with_structured_output(schema, include_raw=True).ainvoke("How much?")
    assert out["parsed"] is None and isinstance(out["parsing_error"], OutputParserException)
    assert out["raw"].content == '"just a string"'
    fake.per_model["small"] = Behavior(reply='{"title": "x"}')  # misses required fields, twice
    out = await llm.with_structured_output(JobPosting, include_raw=True).ainvoke("Parse it.")
    assert out["parsed"] is None and isinstance(out["parsing_error"], StructuredOutputError)
    assert out["raw"].content == '{"title": "x"}'
    assert len(fake.captured) == 3  # the router's one repair turn
    with pytest.raises(StructuredOutputError):
        await llm.with_structured_output(JobPosting).ainvoke("Parse it.")


# ----------------------------------------------------------------------------- conversions and plumbing


def test_message_conversion() -> None:
    ai = AIMessage(content="", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "call_1"}])
    converted = to_openai_messages([
        SystemMessage("Be brief."),
        HumanMessage(content=[{"type": "text", "text": "What is this?"},
                              {"type": "image", "base64": "AAAA", "mime_type": "image/png"},
                              {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]),
        ai,
        ToolMessage(content=[{"type": "text", "text": "ok"}], tool_call_id="call_1"),
        ChatMessage(role="developer", content="Use metric units."),
    ])
    assert converted == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        {"role": "developer", "content": "Use metric units."},
    ]
    with pytest.raises(TypeError):
        to_openai_messages([FunctionMessage(content="x", name="f")])


def test_identity_and_token_counting(router: Router) -> None:
    llm = ChatModelplex(model="alpha/small", router=router, temperature=0.1)
    assert llm._llm_type == "modelplex"
    assert llm._identifying_params["model"] == "alpha/small" and llm._identifying_params["temperature"] == 0.1
    assert llm.get_num_tokens("hello world") > 0
    assert llm.get_num_tokens_from_messages([HumanMessage("hello world")]) > llm.get_num_tokens("hello world")


def test_router_built_from_config(fake: FakeProviderServer) -> None:
    llm = ChatModelplex(model="alpha/small", router_config=config(fake.base_url))
    try:
        assert llm.invoke("hi").response_metadata["model"] == "alpha/small"
    finally:
        llm.get_router().close()
