"""Conformance with the official ``openai`` SDK, both ways, through the fake provider on loopback.

(a) Requests: the SDK and modelplex's adapters send the same logical request; the fake captures both,
and method, path, query, the auth header, the content type and the JSON body must match (after removing
what is SDK-specific: Azure's deployments path carries the deployment in the URL, so modelplex omits the
body's ``model``).

(b) Responses: the SDK parses the fake's bodies and streams (``include_usage`` too) without error and gets
the same content, tool calls, finish reason and usage as modelplex's adapter; errors carry the same status
and structured code on both sides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI

from modelplex import errors as mp_errors
from modelplex.catalog.schema import ModelSpec
from modelplex.providers.azure import AzureOpenAIAdapter
from modelplex.providers.base import ProviderConfig
from modelplex.providers.openai_compat import OpenAIAdapter
from modelplex.testing.faults import Behavior, Fault
from modelplex.testing.server import Captured, FakeProviderServer
from modelplex.types import ChatRequest, EmbedRequest, Response, Usage

KEY = "sk-test"
AZURE_KEY = "azure-test-key"
API_VERSION = "2024-10-21"

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False},
    "strict": True}}
PERSON_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                 "required": ["name", "age"], "additionalProperties": False}


@dataclass(frozen=True)
class Case:
    """One logical request: modelplex's params, and the keyword arguments the SDK takes for the same thing."""

    name: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    sdk: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    model: str = "gpt-4o-mini"
    mappings: dict[str, str] = field(default_factory=dict)


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


CASES = [
    Case("plain", _user("Say hello.")),
    Case("system_user", [{"role": "system", "content": "You are terse."}, *_user("Name a color.")],
         {"temperature": 0.3, "max_tokens": 64, "seed": 7, "stop": ["\n\n"], "top_p": 0.9},
         {"temperature": 0.3, "max_tokens": 64, "seed": 7, "stop": ["\n\n"], "top_p": 0.9}),
    Case("tools", _user("What's the weather in Paris?"),
         {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
          "parallel_tool_calls": False},
         {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
          "parallel_tool_calls": False}),
    Case("tool_result_turn", [
        *_user("Weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"city":"Paris","unit":"c"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'}],
         {"tools": [WEATHER_TOOL]}, {"tools": [WEATHER_TOOL]}),
    Case("json_schema", _user("Invent a person."),
         {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA,
                                                                     "strict": True}}},
         {"response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA,
                                                                     "strict": True}}}),
    Case("json_object", _user("Reply in JSON."), {"response_format": {"type": "json_object"}},
         {"response_format": {"type": "json_object"}}),
    Case("reasoning", _user("Prove it."), {"max_tokens": 2000, "reasoning_effort": "low"},
         {"max_completion_tokens": 2000, "reasoning_effort": "low"}, model="o3-mini",
         mappings={"max_tokens": "max_completion_tokens"}),
    Case("stream", _user("Count to five."), {"temperature": 0.0}, {"temperature": 0.0}, stream=True),
    Case("stream_tools", _user("Call get_weather for Rome."), {"tools": [WEATHER_TOOL]}, {"tools": [WEATHER_TOOL]},
         stream=True),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def spec(case: Case, provider: str = "openai") -> ModelSpec:
    return ModelSpec(id=f"{provider}/{case.model}", provider=provider, context_window=200_000,
                     param_mappings=case.mappings)


def auth_of(headers: dict[str, str]) -> tuple[str, str]:
    lower = {k.lower(): v for k, v in headers.items()}
    if "api-key" in lower:
        return "api-key", lower["api-key"]
    return "authorization", lower.get("authorization", "")


def view(cap: Captured, *, drop_model: bool = False) -> dict[str, Any]:
    lower = {k.lower(): v for k, v in cap.headers.items()}
    body = dict(cap.json)
    if drop_model:
        body.pop("model", None)
    return {"method": cap.method, "path": cap.path, "query": cap.query, "auth": auth_of(cap.headers),
            "content_type": lower.get("content-type", "").split(";")[0], "body": body}


@dataclass
class Outcome:
    content: str | None
    tools: list[tuple[str, str]]
    finish: str | None
    usage: tuple[int, int, int, int]


def outcome_of_response(resp: Response) -> Outcome:
    u = resp.usage
    return Outcome(resp.content, [(t.name, t.arguments) for t in resp.tool_calls], resp.finish_reason,
                   (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens))


def _sdk_usage(u: Any) -> tuple[int, int, int, int]:
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    reasoning = u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else 0
    return (u.prompt_tokens, u.completion_tokens, cached or 0, reasoning or 0)


async def sdk_call(client: AsyncOpenAI, case: Case, model: str) -> Outcome:
    if not case.stream:
        r = await client.chat.completions.create(model=model, messages=case.messages, **case.sdk)  # type: ignore[arg-type]
        msg = r.choices[0].message
        tools = [(t.function.name, t.function.arguments) for t in msg.tool_calls or ()]  # type: ignore[union-attr]
        return Outcome(msg.content, tools, r.choices[0].finish_reason, _sdk_usage(r.usage))
    stream = await client.chat.completions.create(model=model, messages=case.messages, stream=True,  # type: ignore[arg-type]
                                                  stream_options={"include_usage": True}, **case.sdk)
    text: list[str] = []
    calls: dict[int, list[str]] = {}
    finish: str | None = None
    usage: tuple[int, int, int, int] = (0, 0, 0, 0)
    async for chunk in stream:
        if chunk.usage is not None:
            usage = _sdk_usage(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
            for tc in choice.delta.tool_calls or ():
                entry = calls.setdefault(tc.index, ["", ""])
                if tc.function and tc.function.name:
                    entry[0] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry[1] += tc.function.arguments
            finish = choice.finish_reason or finish
    return Outcome("".join(text) if text else None, [(n, a) for n, a in calls.values()], finish, usage)


async def adapter_call(ad: OpenAIAdapter, session: aiohttp.ClientSession, case: Case, model: ModelSpec
                       ) -> Outcome:
    req = ChatRequest(messages=case.messages, params=dict(case.params), stream=case.stream)  # type: ignore[arg-type]
    if not case.stream:
        return outcome_of_response(await ad.complete(session, req, model))
    text: list[str] = []
    calls: dict[int, list[str]] = {}
    finish: str | None = None
    usage = Usage()
    async for chunk in ad.stream(session, req, model):
        text.append(chunk.delta)
        for d in chunk.tool_calls:
            entry = calls.setdefault(d.index, ["", ""])
            entry[0] = d.name or entry[0]
            entry[1] += d.arguments
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
    joined = "".join(text)
    return Outcome(joined or None, [(n, a) for n, a in calls.values()], finish,
                   (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.reasoning_tokens))


# ============================================================================ OpenAI


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_openai_request_and_response_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                                       case: Case) -> None:
    fake.behavior = Behavior(reply="One, two, three, four, five.", stream_chunks=3)
    client = AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=KEY, max_retries=0)
    ad = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url=fake.base_url + "/v1", api_key=KEY))
    try:
        sdk_out = await sdk_call(client, case, case.model)
        sdk_req = view(fake.captured[-1])
        mp_out = await adapter_call(ad, session, case, spec(case))
        mp_req = view(fake.captured[-1])
    finally:
        await client.close()
    assert mp_req == sdk_req
    assert mp_req["auth"] == ("authorization", f"Bearer {KEY}")
    assert mp_req["content_type"] == "application/json"
    if case.stream:
        assert mp_req["body"]["stream_options"] == {"include_usage": True}
    assert mp_out == sdk_out
    assert mp_out.usage[0] > 0 and mp_out.usage[1] > 0  # usage arrived on both sides, streams included
    if case.name in ("tools", "stream_tools"):
        assert mp_out.finish == "tool_calls" and [n for n, _ in mp_out.tools] == ["get_weather"]
        assert orjson.loads(mp_out.tools[0][1]).keys() == {"city", "unit"}
    elif case.name == "json_schema":
        assert orjson.loads(mp_out.content or "").keys() == {"name", "age"}
    else:
        assert mp_out.finish == "stop" and mp_out.content and not mp_out.tools


async def test_reasoning_usage_reaches_both(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    case = next(c for c in CASES if c.name == "reasoning")
    client = AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=KEY, max_retries=0)
    ad = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url=fake.base_url + "/v1", api_key=KEY))
    try:
        sdk_out = await sdk_call(client, case, case.model)
    finally:
        await client.close()
    mp_out = await adapter_call(ad, session, case, spec(case))
    assert sdk_out.usage[3] == mp_out.usage[3] == 32


async def test_embeddings_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    client = AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=KEY, max_retries=0)
    ad = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url=fake.base_url + "/v1", api_key=KEY))
    model = ModelSpec(id="openai/text-embedding-3-small", provider="openai", context_window=8191, mode="embedding")
    try:
        sdk = await client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"], dimensions=32,
                                             encoding_format="float")
        sdk_req = view(fake.captured[-1])
        mine = await ad.embed(session, EmbedRequest(input=["a cat", "a dog"], params={"dimensions": 32}), model)
        mp_req = view(fake.captured[-1])
        # the SDK's own default asks for base64 and decodes it; same vectors at float32 precision
        sdk_b64 = await client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"],
                                                 dimensions=32)
        assert fake.captured[-1].json["encoding_format"] == "base64"
    finally:
        await client.close()
    assert mp_req == sdk_req
    assert mine.embeddings == [d.embedding for d in sdk.data]
    assert mine.usage.input_tokens == sdk.usage.prompt_tokens
    for got, ref in zip(mine.embeddings, (d.embedding for d in sdk_b64.data), strict=True):
        assert got == pytest.approx(ref, abs=1e-6)


async def test_health_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession) -> None:
    client = AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=KEY, max_retries=0)
    try:
        page = await client.models.list()
        sdk_req = fake.captured[-1]
    finally:
        await client.close()
    ad = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url=fake.base_url + "/v1", api_key=KEY))
    assert (await ad.health_check(session)).ok
    mine = fake.captured[-1]
    assert (mine.method, mine.path, auth_of(mine.headers)) == (sdk_req.method, sdk_req.path, auth_of(sdk_req.headers))
    assert "gpt-4o-mini" in [m.id for m in page.data]


ERROR_PAIRS = [
    (Fault("rate_limit", retry_after=1), openai.RateLimitError, mp_errors.RateLimitError),
    (Fault("quota"), openai.RateLimitError, mp_errors.QuotaExceededError),
    (Fault("context_window"), openai.BadRequestError, mp_errors.ContextWindowExceededError),
    (Fault("content_policy"), openai.BadRequestError, mp_errors.ContentPolicyError),
    (Fault("auth"), openai.AuthenticationError, mp_errors.AuthenticationError),
    (Fault("permission"), openai.PermissionDeniedError, mp_errors.PermissionDeniedError),
    (Fault("not_found"), openai.NotFoundError, mp_errors.NotFoundError),
    (Fault("server_error"), openai.InternalServerError, mp_errors.ServerError),
    (Fault("overloaded"), openai.InternalServerError, mp_errors.OverloadedError),
]


@pytest.mark.parametrize(("fault", "sdk_cls", "mp_cls"), ERROR_PAIRS, ids=lambda v: getattr(v, "kind", ""))
async def test_error_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession, fault: Fault,
                                 sdk_cls: type[Exception], mp_cls: type[Exception]) -> None:
    client = AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=KEY, max_retries=0)
    ad = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url=fake.base_url + "/v1", api_key=KEY))
    model = ModelSpec(id="openai/gpt-4o-mini", provider="openai", context_window=128_000)
    fake.plan.fail_next(fault, times=2)
    try:
        with pytest.raises(sdk_cls) as sdk_info:
            await client.chat.completions.create(model="gpt-4o-mini", messages=_user("hi"))  # type: ignore[arg-type]
    finally:
        await client.close()
    with pytest.raises(mp_cls) as mp_info:
        await ad.complete(session, ChatRequest(messages=_user("hi")), model)  # type: ignore[arg-type]
    sdk_err: Any = sdk_info.value
    mp_err: Any = mp_info.value
    assert mp_err.status_code == sdk_err.status_code
    assert mp_err.error_code == sdk_err.code
    assert mp_err.request_id and mp_err.request_id.startswith("req_")


# ============================================================================ Azure


AZURE_CASES = [c for c in CASES if c.name in ("plain", "system_user", "tools", "json_schema", "stream")]


def azure_adapter(fake: FakeProviderServer, *, v1: bool) -> AzureOpenAIAdapter:
    return AzureOpenAIAdapter(ProviderConfig(name="azure", protocol="azure", base_url=fake.base_url,
                                             api_key=AZURE_KEY, api_version=API_VERSION, use_v1_path=v1,
                                             deployments={"gpt-4o-mini": "mini-prod"}))


@pytest.mark.parametrize("case", AZURE_CASES, ids=lambda c: c.name)
async def test_azure_deployments_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                             case: Case) -> None:
    client = AsyncAzureOpenAI(azure_endpoint=fake.base_url, api_version=API_VERSION, api_key=AZURE_KEY,
                              max_retries=0)
    try:
        sdk_out = await sdk_call(client, case, "mini-prod")
        sdk_cap = fake.captured[-1]
    finally:
        await client.close()
    mp_out = await adapter_call(azure_adapter(fake, v1=False), session, case, spec(case, "azure"))
    mine = fake.captured[-1]
    assert sdk_cap.json["model"] == "mini-prod" and "model" not in mine.json
    assert view(mine) == view(sdk_cap, drop_model=True)
    assert view(mine)["path"] == "/openai/deployments/mini-prod/chat/completions"
    assert view(mine)["query"] == {"api-version": API_VERSION}
    assert view(mine)["auth"] == ("api-key", AZURE_KEY)
    assert mp_out == sdk_out


@pytest.mark.parametrize("case", AZURE_CASES, ids=lambda c: c.name)
async def test_azure_v1_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession, case: Case) -> None:
    # Microsoft documents the v1 API with the plain OpenAI client pointed at {endpoint}/openai/v1/
    client = AsyncOpenAI(base_url=fake.base_url + "/openai/v1/", api_key=AZURE_KEY, max_retries=0)
    try:
        sdk_out = await sdk_call(client, case, "mini-prod")
        sdk_cap = fake.captured[-1]
    finally:
        await client.close()
    mp_out = await adapter_call(azure_adapter(fake, v1=True), session, case, spec(case, "azure"))
    mine = fake.captured[-1]
    assert view(mine) == view(sdk_cap)
    assert view(mine)["path"] == "/openai/v1/chat/completions" and view(mine)["query"] == {}
    assert mine.json["model"] == "mini-prod"
    assert mp_out == sdk_out


@pytest.mark.parametrize("v1", [False, True])
async def test_azure_embeddings_conformance(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                            v1: bool) -> None:
    client: AsyncOpenAI
    if v1:
        client = AsyncOpenAI(base_url=fake.base_url + "/openai/v1/", api_key=AZURE_KEY, max_retries=0)
    else:
        client = AsyncAzureOpenAI(azure_endpoint=fake.base_url, api_version=API_VERSION, api_key=AZURE_KEY,
                                  max_retries=0)
    ad = AzureOpenAIAdapter(ProviderConfig(name="azure", protocol="azure", base_url=fake.base_url, api_key=AZURE_KEY,
                                           api_version=API_VERSION, use_v1_path=v1,
                                           deployments={"text-embedding-3-small": "emb-small"}))
    model = ModelSpec(id="azure/text-embedding-3-small", provider="azure", context_window=8191, mode="embedding")
    try:
        sdk = await client.embeddings.create(model="emb-small", input=["hello"], encoding_format="float")
        sdk_cap = fake.captured[-1]
    finally:
        await client.close()
    mine = await ad.embed(session, EmbedRequest(input=["hello"]), model)
    assert view(fake.captured[-1]) == view(sdk_cap, drop_model=not v1)
    assert mine.embeddings == [sdk.data[0].embedding]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_refusal_and_logprobs_reach_both(fake: FakeProviderServer, session: aiohttp.ClientSession,
                                               stream: bool) -> None:
    """The SDK's ``message.refusal``/``logprobs`` (accumulated by its stream helper) are the adapter's
    ``refusal``/``logprobs``; the refusal never lands in ``content``."""
    fake.behavior = Behavior(reply="[refusal] I can't help with that.", stream_chunks=3)
    case = Case("refusal", _user("Do the bad thing."), {"logprobs": True, "top_logprobs": 1},
                {"logprobs": True, "top_logprobs": 1}, stream=stream)
    client = AsyncOpenAI(base_url=fake.base_url + "/v1", api_key=KEY, max_retries=0)
    ad = OpenAIAdapter(ProviderConfig(name="openai", protocol="openai", base_url=fake.base_url + "/v1", api_key=KEY))
    try:
        if stream:
            async with client.chat.completions.stream(model=case.model, messages=case.messages,  # type: ignore[arg-type]
                                                      **case.sdk) as s:
                async for _ in s:
                    pass
                choice = (await s.get_final_completion()).choices[0]
        else:
            choice = (await client.chat.completions.create(model=case.model, messages=case.messages,  # type: ignore[arg-type]
                                                           **case.sdk)).choices[0]
    finally:
        await client.close()
    req = ChatRequest(messages=case.messages, params=dict(case.params), stream=stream)  # type: ignore[arg-type]
    if stream:
        chunks = [c async for c in ad.stream(session, req, spec(case))]
        content = "".join(c.delta for c in chunks) or None
        refusal = "".join(c.refusal_delta for c in chunks)
        tokens = [t for c in chunks if c.logprobs for t in c.logprobs["refusal"] or ()]
    else:
        resp = await ad.complete(session, req, spec(case))
        content, refusal = resp.content, resp.refusal
        tokens = (resp.logprobs or {}).get("refusal") or []
    assert refusal == choice.message.refusal == "I can't help with that."
    assert not content and not choice.message.content
    assert choice.logprobs is not None and not choice.logprobs.content
    assert tokens == [t.model_dump() for t in choice.logprobs.refusal or ()]
    assert "".join(t["token"] for t in tokens) == refusal
