"""``POST /v1/messages/count_tokens``: the official ``anthropic`` SDK's ``messages.count_tokens`` against a
live gateway, counted locally for the model that would answer; nothing reaches the upstream or the books."""

from __future__ import annotations

import anthropic
import pytest
from gateway_testkit import gateway_config

from modelplex.catalog.tokens import count_messages
from modelplex.router import Router

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
HELLO = [{"role": "user", "content": "Hello there, how many tokens is this?"}]


def client(gw, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def test_sdk_count_tokens_for_a_model_a_task_and_auto(live) -> None:
    gw = live()
    c = client(gw, gw.create_key())
    before = len(gw.fake.captured)
    raw = c.messages.with_raw_response.count_tokens(model="fakeai/small", system="Be brief.", messages=HELLO)
    counted = raw.parse()
    assert counted.input_tokens > 0
    assert raw.headers["x-modelplex-model"] == "fakeai/small" and raw.headers["x-modelplex-provider"] == "fakeai"
    assert raw.headers["x-modelplex-token-count"] in ("exact", "estimate")
    # the system prompt counts: it is a message of its own
    assert counted.input_tokens > c.messages.count_tokens(model="fakeai/small", messages=HELLO).input_tokens
    with_tools = c.messages.count_tokens(model="fakeclaude/sonnet", messages=HELLO, tools=[WEATHER])
    assert with_tools.input_tokens > c.messages.count_tokens(model="fakeclaude/sonnet", messages=HELLO).input_tokens
    for model in ("auto", "task:fast"):
        raw = c.messages.with_raw_response.count_tokens(model=model, messages=HELLO)
        assert raw.parse().input_tokens > 0 and raw.headers["x-modelplex-model"].startswith("fake")
    assert len(gw.fake.captured) == before  # nothing was sent upstream
    assert gw.usage() == []  # and nothing was recorded


def test_count_tokens_errors_use_anthropic_shapes(live) -> None:
    gw = live()
    key = gw.create_key(allowed_models=["fakeai/*"])
    c = client(gw, key)
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(model="nope/model", messages=HELLO)
    with pytest.raises(anthropic.PermissionDeniedError):
        c.messages.count_tokens(model="fakeclaude/sonnet", messages=HELLO)
    with pytest.raises(anthropic.AuthenticationError):
        client(gw, "mpx-wrong").messages.count_tokens(model="fakeai/small", messages=HELLO)
    with gw.http() as h:
        for body, param in (({"model": "fakeai/small"}, "messages"),
                            ({"model": "fakeai/small", "messages": HELLO, "max_tokens": 10}, "max_tokens"),
                            ({"model": "fakeai/small", "messages": "hi"}, "messages")):
            r = h.post("/v1/messages/count_tokens", json=body, headers={"x-api-key": key})
            assert r.status_code == 400, r.text
            err = r.json()
            assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
            assert param in err["error"]["message"]


def test_router_count_tokens_plans_like_a_request(fake) -> None:
    router = Router(gateway_config(fake.base_url), env={})
    try:
        spec, count = router.count_tokens(HELLO, model="fakeclaude/sonnet")
        assert spec.id == "fakeclaude/sonnet"
        assert count == count_messages(HELLO, spec)
        spec, _ = router.count_tokens(HELLO, task="fast")
        assert spec.id.startswith("fake")
        spec, with_tools = router.count_tokens(HELLO, model="fakeai/small", tools=[
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}])
        assert with_tools.tokens > count_messages(HELLO, spec).tokens
    finally:
        router.close()


def test_router_count_tokens_skips_a_target_the_prompt_does_not_fit(fake) -> None:
    router = Router(gateway_config(fake.base_url, routing={"fallback_paths": {"fakeai/small": ["fakeai/large"]}}),
                    env={})
    try:
        long_prompt = [{"role": "user", "content": "word " * 20_000}]  # ~20k tokens: over fakeai/small's 16k
        spec, count = router.count_tokens(long_prompt, model="fakeai/small")
        assert spec.id == "fakeai/large" and count.tokens > 16_000  # where the request would go
        spec, _ = router.count_tokens(HELLO, model="fakeai/small")
        assert spec.id == "fakeai/small"
    finally:
        router.close()
