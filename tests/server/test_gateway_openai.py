"""The OpenAI-compatible routes against a live gateway, with the official ``openai`` SDK used unchanged
(sync, async, streaming with include_usage, tools, JSON mode, embeddings, models) plus raw HTTP where
the SDK would hide the wire: SSE framing, error events, headers, disconnects."""

from __future__ import annotations

import asyncio
import json
import socket

import openai
import orjson
import pytest
from gateway_testkit import CAPS, PROVIDER_KEY, gateway_models, wait_for
from pydantic import BaseModel

from modelplex.testing.faults import Behavior, Fault

MSG = [{"role": "user", "content": "Say hello to the gateway"}]


def client(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def aclient(gw, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


# ------------------------------------------------------------------------------------------ happy paths


def test_sync_chat_completion_is_parsed_by_the_sdk_with_routing_headers(live) -> None:
    gw = live()
    key = gw.create_key()
    raw = client(gw, key).chat.completions.with_raw_response.create(model="fakeai/small", messages=MSG)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "fakeai/small"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith("This is a reply from small")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    rid = raw.headers["x-modelplex-request-id"]
    assert completion.id == f"chatcmpl-{rid}"
    assert raw.headers["x-modelplex-model"] == "fakeai/small"
    assert raw.headers["x-modelplex-provider"] == "fakeai"
    assert raw.headers["x-modelplex-fallback"] == "false"
    assert raw.headers["x-modelplex-attempts"] == "1"
    assert float(raw.headers["x-modelplex-cost-usd"]) > 0
    # the upstream got the wire name and never the gateway key
    sent = [c for c in gw.fake.captured if c.protocol == "openai"][-1]
    assert sent.json["model"] == "small"
    assert sent.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"


def test_body_is_byte_shaped_like_openai(live) -> None:
    gw = live()
    key = gw.create_key()
    with gw.http() as c:
        r = c.post("/v1/chat/completions", json={"model": "fakeai/small", "messages": MSG},
                   headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body)[:6] == ["id", "object", "created", "model", "choices", "usage"]
    choice = body["choices"][0]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"],
                                              "refusal": None, "annotations": []},
                      "logprobs": None, "finish_reason": "stop"}
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                                  "completion_tokens_details"}
    assert body["modelplex"]["provider"] == "fakeai"
    assert body["modelplex"]["request_id"] == r.headers["x-modelplex-request-id"]


async def test_async_streaming_with_include_usage(live) -> None:
    gw = live()
    key = gw.create_key()
    c = aclient(gw, key)
    whole = await c.chat.completions.create(model="fakeai/small", messages=MSG)
    stream = await c.chat.completions.create(model="fakeai/small", messages=MSG, stream=True,
                                             stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    await c.close()
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == whole.usage.completion_tokens
    extra = (last.model_extra or {})["modelplex"]  # the stream's cost rides on its usage chunk
    assert extra["cost_usd"] == pytest.approx((whole.model_extra or {})["modelplex"]["cost_usd"])
    assert extra["cost_usd"] > 0 and extra["usage_estimated"] is False and extra["request_id"]
    assert all(ch.usage is None for ch in chunks[:-1])
    assert {ch.id for ch in chunks} == {chunks[0].id}
    assert all(ch.model == "fakeai/small" for ch in chunks)


def test_stream_without_include_usage_has_no_usage_chunk_and_ends_with_done(live) -> None:
    gw = live()
    key = gw.create_key()
    with gw.http() as c, c.stream("POST", "/v1/chat/completions",
                                  json={"model": "fakeai/small", "messages": MSG, "stream": True},
                                  headers={"authorization": f"Bearer {key}"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-modelplex-model"] == "fakeai/small"
        assert r.headers["x-modelplex-provider"] == "fakeai"
        assert r.headers["x-modelplex-request-id"]
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(e["choices"] for e in events)
    assert all("usage" not in e for e in events)


def test_tools_round_trip_and_streamed_tool_calls(live) -> None:
    gw = live()
    key = gw.create_key()
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    c = client(gw, key)
    gw.fake.behavior = Behavior(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}})
    resp = c.chat.completions.create(model="fakeai/small", messages=MSG, tools=tools, tool_choice="auto")
    call = resp.choices[0].message.tool_calls[0]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # the tool result goes back through the gateway
    follow = c.chat.completions.create(model="fakeai/small", tools=tools, messages=[
        *MSG, resp.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}])
    assert follow.choices[0].message.content
    # streamed, the SDK's accumulated arguments are the same JSON
    stream = c.chat.completions.create(model="fakeai/small", messages=MSG, tools=tools, stream=True)
    args, name = "", None
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}


def test_response_format_json_object_and_json_schema(live) -> None:
    gw = live()
    key = gw.create_key()
    c = client(gw, key)
    resp = c.chat.completions.create(model="fakeai/small", messages=MSG, response_format={"type": "json_object"})
    assert "reply" in json.loads(resp.choices[0].message.content)
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["title", "n"]}
    resp = c.chat.completions.create(model="fakeai/small", messages=MSG, response_format={
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema}})
    assert set(json.loads(resp.choices[0].message.content)) >= {"title", "n"}
    sent = [cap for cap in gw.fake.captured if cap.protocol == "openai"][-1].json
    assert sent["response_format"]["type"] == "json_schema"


def test_task_and_auto_with_modelplex_extension(live) -> None:
    gw = live(tasks={"summaries": {"models": ["fakeai/large"]}})
    key = gw.create_key()
    c = client(gw, key)
    for name in ("task:summaries", "summaries"):
        raw = c.chat.completions.with_raw_response.create(model=name, messages=MSG)
        assert raw.parse().model == "fakeai/large"
        assert raw.headers["x-modelplex-task"] == "summaries"
    # auto + requirements: a 100k window leaves only the large models
    resp = c.chat.completions.create(model="auto", messages=MSG, user="alice", extra_body={
        "modelplex": {"requirements": {"min_context": 150_000}, "tags": ["exp-1"]}})
    assert resp.model == "fakeclaude/sonnet"
    rec = wait_for(lambda: [r for r in gw.usage(user="alice") if r["model"] == "fakeclaude/sonnet"])
    assert rec[0]["tags"] == ["exp-1"]
    # auto + task from the extension
    resp = c.chat.completions.create(model="auto", messages=MSG, extra_body={"modelplex": {"task": "summaries"}})
    assert resp.model == "fakeai/large"


def test_embeddings_float_and_base64(live) -> None:
    gw = live()
    key = gw.create_key()
    c = client(gw, key)
    resp = c.embeddings.create(model="fakeai/embed", input=["one", "two"])  # the SDK asks for base64
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.model == "fakeai/embed"
    assert resp.usage.prompt_tokens > 0
    with gw.http() as h:
        r = h.post("/v1/embeddings", json={"model": "fakeai/embed", "input": ["one", "two"],
                                          "encoding_format": "float"},
                   headers={"authorization": f"Bearer {key}"})
    floats = r.json()["data"]
    assert len(resp.data[0].embedding) == len(floats[0]["embedding"]) > 0
    for got, want in zip(resp.data[1].embedding, floats[1]["embedding"], strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_embeddings_dimensions_shorten_the_vectors(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    resp = c.embeddings.create(model="fakeai/embed", input=["one", "two"], dimensions=4)
    assert [len(d.embedding) for d in resp.data] == [4, 4]
    with pytest.raises(openai.BadRequestError) as err:  # the model's vectors have 8
        c.embeddings.create(model="fakeai/embed", input="one", dimensions=9)
    assert err.value.body["param"] == "dimensions"


def test_models_lists_enabled_models_and_tasks_filtered_by_the_key(live) -> None:
    gw = live()
    everything = client(gw, gw.create_key())
    ids = {m.id for m in everything.models.list()}
    assert {"fakeai/small", "fakeai/large", "fakeclaude/sonnet", "fakeai/embed", "task:fast", "auto"} <= ids
    assert not any(i.startswith("openai/") for i in ids)  # no credentials: not listed
    assert everything.models.retrieve("fakeai/small").owned_by == "fakeai"
    narrow = client(gw, gw.create_key(allowed_models=["fakeai/*"], allowed_tasks=["fast"]))
    ids = {m.id for m in narrow.models.list()}
    assert ids == {"fakeai/small", "fakeai/large", "fakeai/embed", "task:fast"}
    with pytest.raises(openai.NotFoundError):
        narrow.models.retrieve("fakeclaude/sonnet")


def test_a_deprecated_model_is_not_listed_and_retrieving_it_says_why(live) -> None:
    """/v1/models lists no deprecated model (a request naming one is served by its replacement); retrieving
    one is still a 404, saying it is deprecated, with its retirement date and the replacement, and only to
    a key that may use the model (and the replacement only when the key may use that too)."""
    old = {**gateway_models()[0], "id": "fakeai/old", "aliases": ["old"],
           "deprecation": {"deprecated": True, "date": "2027-01-14", "replacement": "fakeai/large"}}
    gone = {**gateway_models()[0], "id": "fakeai/gone", "deprecation": {"deprecated": True}}
    gw = live(models=[*gateway_models(), old, gone])
    everything = client(gw, gw.create_key())
    assert not {"fakeai/old", "fakeai/gone"} & {m.id for m in everything.models.list()}
    for name in ("fakeai/old", "old"):
        with pytest.raises(openai.NotFoundError) as err:
            everything.models.retrieve(name)
        body = err.value.body
        assert body["code"] == "model_not_found" and body["param"] == "model"
        assert body["message"] == ("The model 'fakeai/old' is deprecated (retirement date 2027-01-14) and is not "
                                   "listed; requests naming it are served by its replacement, 'fakeai/large'.")
        assert body["suggestions"] == ["fakeai/large"]
    with pytest.raises(openai.NotFoundError) as err:
        everything.models.retrieve("fakeai/gone")
    assert err.value.body["message"] == "The model 'fakeai/gone' is deprecated and is not listed."
    assert "suggestions" not in err.value.body
    # a key that may use the old model but not its replacement is not told the replacement
    no_large = client(gw, gw.create_key(allowed_models=["fakeai/old", "fakeai/small"]))
    with pytest.raises(openai.NotFoundError) as err:
        no_large.models.retrieve("fakeai/old")
    assert "deprecated" in err.value.body["message"] and "large" not in str(err.value.body)
    # a key that may not use it learns nothing, exactly as for a model that does not exist
    narrow = client(gw, gw.create_key(allowed_models=["fakeclaude/*"]))
    for name in ("fakeai/old", "fakeai/nope"):
        with pytest.raises(openai.NotFoundError) as err:
            narrow.models.retrieve(name)
        assert err.value.body["message"] == f"The model {name!r} does not exist or this key may not use it."
        assert "suggestions" not in err.value.body


# ------------------------------------------------------------------------------------------ errors


def test_error_statuses_with_sdk_exceptions(live) -> None:
    gw = live(routing={"breaker": {"failure_threshold": 1, "recovery_time": 30}})
    key = gw.create_key(allowed_models=["fakeai/*"], rpm=2)
    c = client(gw, key)
    # 400: bad schema
    with pytest.raises(openai.BadRequestError) as e400:
        c.chat.completions.create(model="fakeai/small", messages=[])
    assert e400.value.body["param"] == "messages"
    # 401: wrong key
    with pytest.raises(openai.AuthenticationError) as e401:
        client(gw, "mpx-aaaaaaaa-not-the-secret").chat.completions.create(model="fakeai/small", messages=MSG)
    assert e401.value.body["code"] == "invalid_api_key"
    # 403: outside the allow-list
    with pytest.raises(openai.PermissionDeniedError) as e403:
        c.chat.completions.create(model="fakeclaude/sonnet", messages=MSG)
    assert e403.value.body["code"] == "model_not_allowed"
    # 404: unknown model, with suggestions
    with pytest.raises(openai.NotFoundError) as e404:
        c.chat.completions.create(model="fakeai/smal", messages=MSG)
    assert e404.value.body["code"] == "model_not_found"
    assert "fakeai/small" in e404.value.body["suggestions"]
    # 429: the key's RPM (requests refused with 400/403/404 never reached the limiter)
    c.chat.completions.create(model="fakeai/small", messages=MSG)
    c.chat.completions.create(model="fakeai/small", messages=MSG)
    with pytest.raises(openai.RateLimitError) as e429:
        c.chat.completions.create(model="fakeai/small", messages=MSG)
    assert e429.value.body["code"] == "rate_limit_exceeded"
    assert int(e429.value.response.headers["retry-after"]) >= 1


def test_an_unknown_bare_name_suggests_close_tasks_as_well_as_models(live) -> None:
    """docs/gateway.md: an unknown name's ``suggestions`` are close model ids or the known tasks."""
    gw = live()
    c = client(gw, gw.create_key())
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="reasonin", messages=MSG)
    assert err.value.body["code"] == "model_not_found" and "task:reasoning" in err.value.body["suggestions"]
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="fakeai/smal", messages=MSG)
    assert err.value.body["suggestions"][0] == "fakeai/small"
    assert not [s for s in err.value.body["suggestions"] if s.startswith("task:")]


def test_prompt_larger_than_every_window_is_a_400_context_length_exceeded(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    huge = [{"role": "user", "content": "word " * 40_000}]  # ~40k tokens: more than fakeai/small's 16k window
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="fakeai/small", messages=huge)
    assert e.value.body["code"] == "context_length_exceeded" and e.value.body["param"] == "messages"
    assert "16,000 tokens" in e.value.body["message"]
    assert not [x for x in gw.fake.captured if x.protocol == "openai"]  # nothing was sent
    assert c.chat.completions.create(model="fakeai/large", messages=huge).choices[0].message.content


def test_413_on_declared_and_streamed_size(live) -> None:
    gw = live(server={"max_body_bytes": 2048})
    key = gw.create_key()
    big = {"model": "fakeai/small", "messages": [{"role": "user", "content": "x" * 5000}]}
    with pytest.raises(openai.APIStatusError) as exc:
        client(gw, key).chat.completions.create(**big)
    assert exc.value.status_code == 413
    assert exc.value.body["code"] == "request_too_large"

    def chunks():
        data = orjson.dumps(big)
        for i in range(0, len(data), 512):
            yield data[i:i + 512]

    with gw.http() as h:  # chunked: no Content-Length, counted as it streams
        r = h.post("/v1/chat/completions", content=chunks(), headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 413


def test_400s_malformed_json_forbidden_fields_and_unknown_params(live) -> None:
    gw = live()
    key = gw.create_key()
    auth = {"authorization": f"Bearer {key}"}
    with gw.http() as h:
        r = h.post("/v1/chat/completions", content=b'{"model": "fakeai/small", "messages": [', headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        r = h.post("/v1/chat/completions", content=b"[1, 2]", headers=auth)
        assert r.status_code == 400
        for field in ("api_base", "base_url"):
            r = h.post("/v1/chat/completions", headers=auth, json={
                "model": "fakeai/small", "messages": MSG, field: "http://evil.example/v1"})
            assert r.status_code == 400
            assert r.json()["error"] == {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                         "param": field, "code": "forbidden_parameter"}
        r = h.post("/v1/chat/completions", headers=auth, json={"model": "fakeai/small", "messages": MSG,
                                                               "frobnicate": 1})
        assert r.status_code == 400 and r.json()["error"]["param"] == "frobnicate"
        r = h.post("/v1/chat/completions", headers=auth, json={"model": "fakeai/small", "messages": MSG,
                                                               "temperature": "hot"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
        for name, value in (("temperature", 7), ("temperature", -0.1), ("top_p", 1.5), ("presence_penalty", 3),
                            ("frequency_penalty", -2.5), ("top_logprobs", 21)):  # the OpenAI API's bounds
            r = h.post("/v1/chat/completions", headers=auth, json={"model": "fakeai/small", "messages": MSG,
                                                                   name: value})
            assert r.status_code == 400, (name, value)
            assert r.json()["error"]["param"] == name and r.json()["error"]["type"] == "invalid_request_error"
    assert not [c for c in gw.fake.captured if c.protocol == "openai"]  # nothing reached the upstream


def test_fuzzed_bodies_that_were_forwarded_are_400s_naming_the_param(live) -> None:
    """Shapes a fuzzer got past the gateway (forwarded upstream, or refused there as an upstream error):
    each is a 400 invalid_request_error naming the part, and nothing is sent."""
    vision = {**gateway_models()[0], "id": "fakeai/vision", "capabilities": [*CAPS, "vision"]}
    gw = live(models=[*gateway_models(), vision])
    auth = {"authorization": f"Bearer {gw.create_key()}"}

    def user(*parts):
        return [{"role": "user", "content": list(parts)}]

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    cases = [
        ({"messages": user({"type": "image_url", "image_url": 3})}, "messages[0].content[0].image_url"),
        ({"messages": user({"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "max"}})},
         "messages[0].content[0].image_url"),
        ({"messages": user({"type": "text"})}, "messages[0].content[0].text"),
        ({"messages": user({"type": "file", "file": 1})}, "messages[0].content[0].file"),
        ({"messages": user()}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "a", "name": 5}]}, "messages[0].name"),
        ({"messages": [*MSG, {"role": "assistant", "content": None, "tool_calls": [{**call, "type": "banana"}]}]},
         "messages[1].tool_calls[0].type"),
        ({"messages": [*MSG, {"role": "tool", "content": "r"}]}, "messages[1].tool_call_id"),
        ({"logit_bias": {"x": "y"}}, "logit_bias"),
        ({"logit_bias": {"50256": 101}}, "logit_bias"),
        ({"metadata": {"a": {"b": 1}}}, "metadata"),
        ({"tools": [{"type": "function", "function": {"name": "f", "strict": "no"}}]}, "tools"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": "yes"}}},
         "response_format"),
        ({"stop": [1, 2]}, "stop"),
        ({"seed": 1.5}, "seed"),
        # only function tools (a built-in tool reached Anthropic, which refused it upstream)
        ({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "web_search"}]}, "tools[1].type"),
        ({"tool_choice": "required"}, "tool_choice"),  # a tool_choice needs tools, as OpenAI says
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),  # one of them
    ]
    with gw.http() as h:
        for extra, param in cases:
            r = h.post("/v1/chat/completions", headers=auth, json={"model": "fakeai/vision", "messages": MSG, **extra})
            assert r.status_code == 400, (extra, r.text)
            err = r.json()["error"]
            assert err["param"] == param and err["type"] == "invalid_request_error", (extra, err)
        ok = {"model": "fakeai/vision", "logit_bias": {"50256": -100}, "messages": user(
            {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/a.png",
                                                                                 "detail": "low"}},
            {"type": "image_url", "image_url": "https://x/b.png"})}  # a bare URL: some SDKs send one
        r = h.post("/v1/chat/completions", headers=auth, json=ok)
        assert r.status_code == 200, r.text
    sent = [c for c in gw.fake.captured if c.protocol == "openai"]
    assert len(sent) == 1 and sent[0].json["logit_bias"] == {"50256": -100}  # only the well-formed one


def test_503_when_every_target_is_down_with_retry_after(live) -> None:
    gw = live(routing={"breaker": {"failure_threshold": 1, "recovery_time": 30},
                       "retry": {"max_retries_per_target": 0, "base_delay": 0, "max_delay": 0}})
    key = gw.create_key()
    gw.fake.plan.fail_next(Fault("server_error", status=500), times=-1)
    c = client(gw, key)
    with pytest.raises(openai.InternalServerError) as exc:
        c.chat.completions.create(model="fakeai/small", messages=MSG)
    assert exc.value.status_code == 503
    assert exc.value.body["code"] == "all_targets_failed"
    retry_after = int(exc.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 30


def test_502_for_other_upstream_failures_without_leaking_the_provider_message(live) -> None:
    gw = live()
    key = gw.create_key()
    gw.fake.plan.fail_next(Fault("auth"), times=-1)
    with pytest.raises(openai.APIStatusError) as exc:
        client(gw, key).chat.completions.create(model="fakeai/small", messages=MSG)
    assert exc.value.status_code == 502
    assert exc.value.body["code"] == "upstream_error"
    assert "retry-after" not in exc.value.response.headers
    assert PROVIDER_KEY not in exc.value.response.text


def test_stream_failure_after_first_byte_sends_error_event_and_no_done(live) -> None:
    gw = live()
    key = gw.create_key()
    gw.fake.behavior = Behavior(stream_chunks=6)
    gw.fake.plan.fail_next(Fault("stream_cut", after_chunks=2))
    with gw.http() as h, h.stream("POST", "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                  json={"model": "fakeai/small", "messages": MSG, "stream": True}) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert "data: [DONE]" not in lines
    last = json.loads(lines[-1][6:])
    assert set(last) == {"error"} and last["error"]["type"] and last["error"]["message"]
    content = [json.loads(line[6:]) for line in lines[:-1]]
    assert any(ch["choices"][0]["delta"].get("content") for ch in content)
    # the SDK surfaces it as an APIError
    gw.fake.plan.fail_next(Fault("stream_cut", after_chunks=2))
    with pytest.raises(openai.APIError):
        for _ in client(gw, key).chat.completions.create(model="fakeai/small", messages=MSG, stream=True):
            pass


def test_client_disconnect_cancels_the_stream_and_records_usage_once(live) -> None:
    gw = live()
    key = gw.create_key()
    gw.fake.behavior = Behavior(reply="word " * 400, stream_chunks=100, tokens_per_s=20.0)  # ~25 s long
    body = orjson.dumps({"model": "fakeai/small", "messages": MSG, "stream": True})
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                 b"authorization: Bearer " + key.encode() + b"\r\ncontent-length: " + str(len(body)).encode() +
                 b"\r\n\r\n" + body)
    received = b""
    while b'"delta":{"content":"word' not in received:  # headers plus the first content chunk
        received += sock.recv(65536)
    assert b" 200 " in received.split(b"\r\n", 1)[0]
    rid = next(line.split(b":", 1)[1].strip().decode() for line in received.split(b"\r\n")
               if line.lower().startswith(b"x-modelplex-request-id"))
    sock.close()
    records = wait_for(lambda: [r for r in gw.usage() if r["request_id"] == rid])
    assert len(records) == 1
    assert records[0]["success"] is False
    assert records[0]["kind"] == "stream"
    assert records[0]["error_type"] in ("CancelledError", "GeneratorExit")
    assert 0 < records[0]["output_tokens"] < 400  # stopped early: the estimate covers what was streamed
    assert records[0]["usage_estimated"] is True
    with gw.http() as h:
        metrics = h.get("/metrics").text
    assert 'modelplex_stream_outcomes_total{outcome="disconnected",route="chat"} 1.0' in metrics
    # the metrics count the abandoned stream's tokens and cost as its usage record does
    labels = '{kind="output",model="fakeai/small",provider="fakeai"}'
    assert f"modelplex_tokens_total{labels} {float(records[0]['output_tokens'])}" in metrics
    cost = next(line for line in metrics.splitlines() if line.startswith("modelplex_cost_usd_total{"))
    assert float(cost.split()[-1]) == pytest.approx(records[0]["cost_usd"])
    asyncio.run(asyncio.sleep(0.3))  # nothing else arrives later
    assert len([r for r in gw.usage() if r["request_id"] == rid]) == 1


def test_user_field_maps_to_the_usage_records_user(live) -> None:
    gw = live()
    key = gw.create_key()
    client(gw, key).chat.completions.create(model="fakeai/small", messages=MSG, user="bob")
    rows = wait_for(lambda: gw.usage(user="bob"))
    assert rows[0]["model"] == "fakeai/small"
    assert rows[0]["api_key_id"] == key[4:12]


def test_cors_middleware_applies_to_the_serving_routes(live) -> None:
    gw = live(server={"cors_origins": ["https://app.example"]})
    key = gw.create_key()
    origin = {"origin": "https://app.example"}
    with gw.http() as h:
        r = h.post("/v1/chat/completions", json={"model": "fakeai/small", "messages": MSG},
                   headers={"authorization": f"Bearer {key}", **origin})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-modelplex-model" in r.headers["access-control-expose-headers"]
        pre = h.options("/v1/chat/completions", headers={**origin, "access-control-request-method": "POST"})
        assert pre.status_code == 200


def test_a_keys_model_allow_list_also_bounds_what_tasks_and_auto_route_to(live) -> None:
    gw = live(tasks={"mixed": {"models": ["fakeclaude/sonnet", "fakeai/large"]},
                     "claude_only": {"models": ["fakeclaude/sonnet"]}})
    openai_only = client(gw, gw.create_key(allowed_models=["fakeai/*"]))
    # the task's first model is outside the list: the request is served by the allowed one
    r = openai_only.chat.completions.with_raw_response.create(model="task:mixed", messages=MSG)
    assert r.parse().model == "fakeai/large"
    for model in ("auto", "task:mixed"):
        assert openai_only.chat.completions.create(model=model, messages=MSG).model.startswith("fakeai/")
    # the task's only model is outside the list: its fallbacks inside the list serve it
    before = len([c for c in gw.fake.captured if c.protocol == "anthropic"])
    assert openai_only.chat.completions.create(model="task:claude_only", messages=MSG).model.startswith("fakeai/")
    assert len([c for c in gw.fake.captured if c.protocol == "anthropic"]) == before
    # nothing the request routes to is allowed: 403, nothing sent
    elsewhere = client(gw, gw.create_key(allowed_models=["other/*"]))
    sent = len(gw.fake.captured)
    with pytest.raises(openai.PermissionDeniedError) as e:
        elsewhere.chat.completions.create(model="task:claude_only", messages=MSG)
    assert e.value.body["code"] == "model_not_allowed" and "fakeclaude/sonnet" in e.value.body["message"]
    with pytest.raises(openai.PermissionDeniedError):
        list(elsewhere.chat.completions.create(model="auto", messages=MSG, stream=True))
    with pytest.raises(openai.PermissionDeniedError):
        elsewhere.embeddings.create(model="task:embedding", input=["a"])
    assert len(gw.fake.captured) == sent
    # a task-only key (no model may be named) still routes its tasks anywhere
    task_only = client(gw, gw.create_key(allowed_models=[], allowed_tasks=["claude_only"]))
    assert task_only.chat.completions.create(model="task:claude_only", messages=MSG).model == "fakeclaude/sonnet"
    with pytest.raises(openai.PermissionDeniedError):
        task_only.chat.completions.create(model="fakeai/small", messages=MSG)


# ------------------------------------------------------------------------------------------ refusals, logprobs


class Verdict(BaseModel):
    answer: str


REFUSAL = "I can't help with that."
PRO_MODEL = {"id": "fakeai/pro", "context_window": 128_000, "max_output_tokens": 8_000, "capabilities": CAPS,
             "category": "comprehensive", "quality": 90, "api_requirements": {"endpoint": "responses"},
             "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}
"""A model served by the Responses API upstream (the fake's ``/v1/responses``)."""


def upstream(gw) -> openai.OpenAI:
    """The SDK aimed at the fake itself: what a real upstream answers, the oracle for the gateway's answer."""
    return openai.OpenAI(base_url=f"{gw.fake.base_url}/v1", api_key=PROVIDER_KEY, max_retries=0)


@pytest.mark.parametrize("model", ["fakeai/small", "fakeai/pro"])
def test_a_refusal_reaches_the_sdk_as_message_refusal_whole_and_streamed(live, model: str) -> None:
    gw = live(models=[*gateway_models(), PRO_MODEL])
    c = client(gw, gw.create_key())
    gw.fake.behavior = Behavior(reply=f"[refusal] {REFUSAL}", stream_chunks=3)
    direct = upstream(gw).chat.completions.parse(model="small", messages=MSG, response_format=Verdict)
    parsed = c.chat.completions.parse(model=model, messages=MSG, response_format=Verdict)
    message = parsed.choices[0].message
    assert message.refusal == direct.choices[0].message.refusal == REFUSAL
    assert message.content is None and message.parsed is None and parsed.choices[0].finish_reason == "stop"
    with upstream(gw).chat.completions.stream(model="small", messages=MSG, response_format=Verdict) as stream:
        direct_kinds = [e.type for e in stream]
    with c.chat.completions.stream(model=model, messages=MSG, response_format=Verdict) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_completion()
    assert kinds == direct_kinds and "refusal.done" in kinds and "content.delta" not in kinds
    assert final.choices[0].message.refusal == REFUSAL and final.choices[0].message.parsed is None
    assert not final.choices[0].message.content


def test_logprobs_are_answered_as_the_upstream_sent_them(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    gw.fake.behavior = Behavior(reply="Hello from the fake upstream", stream_chunks=3)
    whole = c.chat.completions.create(model="fakeai/small", messages=MSG, logprobs=True, top_logprobs=2)
    sent = [cap for cap in gw.fake.captured if cap.protocol == "openai"][-1].json
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    direct = upstream(gw).chat.completions.create(model="small", messages=MSG, logprobs=True, top_logprobs=2)
    assert whole.choices[0].logprobs == direct.choices[0].logprobs
    tokens = whole.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == whole.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in tokens)
    stream = c.chat.completions.create(model="fakeai/small", messages=MSG, logprobs=True, top_logprobs=2,
                                       stream=True)
    chunks = [ch for ch in stream if ch.choices]
    streamed = [t for ch in chunks if ch.choices[0].logprobs for t in ch.choices[0].logprobs.content or ()]
    assert "".join(t.token for t in streamed) == whole.choices[0].message.content
    assert all(ch.choices[0].logprobs is None for ch in chunks if not ch.choices[0].delta.content)
    # not asked, not answered
    assert c.chat.completions.create(model="fakeai/small", messages=MSG).choices[0].logprobs is None


def test_metadata_is_not_sent_to_chat_completions_without_store(live) -> None:
    gw = live(models=[*gateway_models(), PRO_MODEL])
    c = client(gw, gw.create_key())
    r = c.chat.completions.create(model="fakeai/small", messages=MSG, metadata={"team": "search"})
    assert r.choices[0].message.content
    sent = gw.fake.captured[-1]
    assert sent.path == "/v1/chat/completions" and "metadata" not in sent.json and "store" not in sent.json
    # the Responses API takes metadata with store false
    c.chat.completions.create(model="fakeai/pro", messages=MSG, metadata={"team": "search"})
    sent = gw.fake.captured[-1]
    assert sent.path == "/v1/responses" and sent.json["metadata"] == {"team": "search"}
    assert sent.json["store"] is False


def test_an_end_user_id_longer_than_the_store_indexes_is_refused(live) -> None:
    """``user`` is stored in an indexed column; 16,000 characters would be answered and then refused by
    PostgreSQL, so the gateway refuses it up front (as it does ``metadata`` beyond its bounds)."""
    gw = live()
    key = gw.create_key()
    with gw.http() as c:
        for body in ({"user": "u" * 513}, {"modelplex": {"user": "u" * 513}}):
            r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "fakeai/small", "messages": [{"role": "user", "content": "hi"}], **body})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] in ("user", "modelplex.user")
        ok = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                    json={"model": "fakeai/small", "user": "u" * 512, "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200, ok.text
