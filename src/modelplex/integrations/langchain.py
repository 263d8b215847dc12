"""LangChain: ``ChatModelplex``, a ``BaseChatModel`` whose every call goes through a modelplex ``Router``.

Configure it by task, requirements or model, with a router (or a config to build one)::

    llm = ChatModelplex(task="reasoning", router=router)
    llm = ChatModelplex(requirements={"tool_calling": True, "min_context": 32_000}, router_config="modelplex.yaml")
    llm = ChatModelplex(model="openai/gpt-4o", temperature=0.2)   # router from the environment

It supports ``invoke``/``ainvoke``, ``stream``/``astream`` (text and tool-call chunks; the last chunk
carries ``usage_metadata`` and the routing metadata), ``bind_tools`` (any tool LangChain can convert
with ``convert_to_openai_tool``; tool calls come back as ``AIMessage.tool_calls``) and
``with_structured_output`` (a pydantic model uses the router's ``response_model`` path, validated
with one repair turn; a JSON schema dict, TypedDict or OpenAI tool schema uses a ``json_schema``
response format and returns a dict). ``response_metadata`` holds ``model``, ``provider``,
``cost_usd``, ``attempts``, ``selection_reason``, ``fallback_used``, ``finish_reason`` and more.

Owns: the conversion between LangChain messages and modelplex's OpenAI-shaped messages, and between
``Response``/``StreamChunk`` and ``AIMessage``/``AIMessageChunk``.

Must not touch: routing, retries, fallbacks, accounting (the router does them all). This module
imports ``langchain_core`` itself; nothing else in modelplex imports this module, so the core stays
free of LangChain (``pip install 'modelplex[langchain]'``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
    from langchain_core.exceptions import OutputParserException
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        ChatMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("modelplex.integrations.langchain needs langchain-core: "
                      "pip install 'modelplex[langchain]'") from exc
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from modelplex.errors import StructuredOutputError
from modelplex.types import Message, Response, StreamChunk, Usage

if TYPE_CHECKING:
    from modelplex.router import Router

ROUTE_KEYS = frozenset({"model", "task", "requirements", "strategy", "user", "tags", "context", "timeout",
                        "request_id", "api_key_id", "response_model"})
"""Call-time keyword arguments that steer routing; every other keyword is a model parameter."""
_TARGET_KEYS = ("model", "task", "requirements")
_HAS_CHUNK_POSITION = "chunk_position" in AIMessageChunk.model_fields


# ---------------------------------------------------------------------------------------------
# messages: LangChain -> OpenAI-shaped dicts
# ---------------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    """The text of a LangChain content value (a string, or a list of strings and content blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return str(content)


def _image_part(block: Mapping[str, Any]) -> dict[str, Any]:
    """A LangChain standard image block (``url`` or ``base64`` + ``mime_type``) as an ``image_url`` part."""
    url = block.get("url")
    data = block.get("base64") or (block.get("data") if block.get("source_type") == "base64" else None)
    if url is None and block.get("source_type") == "url":
        url = block.get("data")
    if url is None and data is not None:
        url = f"data:{block.get('mime_type') or 'image/png'};base64,{data}"
    if url is None:
        raise ValueError(f"image block without url or base64 data: {sorted(block)}")
    return {"type": "image_url", "image_url": {"url": url}}


def _user_content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for block in content or ():
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
        elif isinstance(block, Mapping):
            kind = block.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind == "image_url":
                image = block.get("image_url")
                parts.append({"type": "image_url", "image_url": image if isinstance(image, Mapping)
                              else {"url": str(image)}})
            elif kind == "image":
                parts.append(_image_part(block))
            else:
                parts.append(dict(block))  # audio, files ...: the adapters decide
    return parts


def _assistant_tool_calls(message: AIMessage) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for i, tc in enumerate(message.tool_calls):
        calls.append({"id": tc.get("id") or f"call_{i}", "type": "function",
                      "function": {"name": tc["name"], "arguments": json.dumps(tc.get("args") or {})}})
    for j, bad in enumerate(message.invalid_tool_calls, start=len(calls)):
        calls.append({"id": bad.get("id") or f"call_{j}", "type": "function",
                      "function": {"name": bad.get("name") or "", "arguments": bad.get("args") or ""}})
    return calls


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as modelplex's OpenAI-shaped message dicts.

    System -> ``system``; Human -> ``user`` (text and image blocks become content parts); AI ->
    ``assistant`` with its ``tool_calls`` (arguments as JSON text); Tool -> ``tool`` with its
    ``tool_call_id``; a ``ChatMessage`` keeps its role. Other message types raise ``TypeError``.
    """
    out: list[Message] = []
    for m in messages:
        msg: dict[str, Any]
        if isinstance(m, SystemMessage):
            msg = {"role": "system", "content": _text(m.content)}
        elif isinstance(m, HumanMessage):
            msg = {"role": "user", "content": _user_content(m.content)}
        elif isinstance(m, AIMessage):
            calls = _assistant_tool_calls(m)
            text = _text(m.content)
            msg = {"role": "assistant", "content": text if text or not calls else None}
            if calls:
                msg["tool_calls"] = calls
        elif isinstance(m, ToolMessage):
            content = m.content if isinstance(m.content, str) else (
                _text(m.content) if isinstance(m.content, list) else json.dumps(m.content))
            msg = {"role": "tool", "tool_call_id": m.tool_call_id, "content": content}
        elif isinstance(m, ChatMessage):
            msg = {"role": m.role, "content": _user_content(m.content) if m.role == "user" else _text(m.content)}
        else:
            raise TypeError(f"cannot convert {type(m).__name__} to a chat message; use System, Human, AI, "
                            f"Tool or ChatMessage")
        if m.name and msg["role"] in ("user", "system", "assistant"):
            msg["name"] = m.name
        out.append(msg)  # type: ignore[arg-type]
    return out


# ---------------------------------------------------------------------------------------------
# results: Response / StreamChunk -> AIMessage / AIMessageChunk
# ---------------------------------------------------------------------------------------------


def usage_metadata(usage: Usage) -> UsageMetadata:
    """modelplex ``Usage`` as LangChain ``UsageMetadata`` (cache and reasoning details when present)."""
    meta: dict[str, Any] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                            "total_tokens": usage.total_tokens}
    inp = {k: v for k, v in (("cache_read", usage.cache_read_tokens), ("cache_creation", usage.cache_write_tokens))
           if v}
    if inp:
        meta["input_token_details"] = inp
    if usage.reasoning_tokens:
        meta["output_token_details"] = {"reasoning": usage.reasoning_tokens}
    return meta  # type: ignore[return-value]


def response_metadata(resp: Response) -> dict[str, Any]:
    """The routing facts of a response, as ``AIMessage.response_metadata``."""
    return {
        "model": resp.model,
        "model_name": resp.model,
        "provider": resp.provider,
        "finish_reason": resp.finish_reason,
        "cost_usd": resp.cost_usd,
        "latency_ms": resp.latency_ms,
        "attempts": [a.to_dict() for a in resp.attempts],
        "fallback_used": resp.fallback_used,
        "selection_reason": resp.selection_reason,
        "task": resp.task,
        "strategy": resp.strategy,
        "request_id": resp.request_id,
        "usage_estimated": resp.usage.estimated,
    }


def response_to_message(resp: Response) -> AIMessage:
    """A modelplex ``Response`` as an ``AIMessage``: content, tool calls (arguments parsed; unparsable
    ones become ``invalid_tool_calls``), usage, routing metadata, and ``additional_kwargs["parsed"]``
    for structured output."""
    calls: list[Any] = []
    invalid: list[Any] = []
    for tc in resp.tool_calls:
        try:
            args = json.loads(tc.arguments) if tc.arguments else {}
        except ValueError as exc:
            invalid.append(invalid_tool_call(name=tc.name, args=tc.arguments, id=tc.id, error=str(exc)))
            continue
        if isinstance(args, dict):
            calls.append(tool_call(name=tc.name, args=args, id=tc.id))
        else:
            invalid.append(invalid_tool_call(name=tc.name, args=tc.arguments, id=tc.id,
                                             error="arguments are not a JSON object"))
    extra: dict[str, Any] = {}
    if resp.parsed is not None:
        extra["parsed"] = resp.parsed
    if resp.refusal is not None:  # where langchain-openai puts it
        extra["refusal"] = resp.refusal
    return AIMessage(content=resp.content or "", tool_calls=calls, invalid_tool_calls=invalid,
                     usage_metadata=usage_metadata(resp.usage), response_metadata=response_metadata(resp),
                     additional_kwargs=extra)


class _StreamAssembler:
    """Turns the router's ``StreamChunk``s into ``ChatGenerationChunk``s.

    Text, reasoning and tool-call fragments pass through as they arrive. Usage is held back and
    attached once, to a final empty chunk that also carries the routing metadata (and
    ``chunk_position="last"``, so LangChain assembles the tool calls), so merged chunks count it
    exactly once. A provider that sent no usage gets the catalog's estimate, flagged
    ``usage_estimated``.
    """

    def __init__(self, router: Router, messages: list[Message]) -> None:
        self.router = router
        self.messages = messages
        self.text: list[str] = []
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.finish: str | None = None
        self.model = ""
        self.provider = ""

    def feed(self, chunk: StreamChunk) -> ChatGenerationChunk | None:
        self.model = chunk.model or self.model
        self.provider = chunk.provider or self.provider
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.cost_usd is not None:
            self.cost = chunk.cost_usd
        if chunk.finish_reason:
            self.finish = chunk.finish_reason
        if not (chunk.delta or chunk.tool_calls or chunk.reasoning_delta):
            return None
        self.text.append(chunk.delta)
        extra = {"reasoning_content": chunk.reasoning_delta} if chunk.reasoning_delta else {}
        fragments = [tool_call_chunk(name=d.name, args=d.arguments, id=d.id, index=d.index) for d in chunk.tool_calls]
        return ChatGenerationChunk(message=AIMessageChunk(content=chunk.delta, tool_call_chunks=fragments,
                                                          additional_kwargs=extra))

    def final(self) -> ChatGenerationChunk:
        usage = self.usage
        estimated = usage is None or usage.estimated
        if usage is None:
            usage = self._estimate()
        if self.cost is None and self.model:
            spec = self.router.catalog.find(self.model)
            self.cost = self.router.catalog.cost_of_usage(spec, usage) if spec is not None else None
        meta = {"model": self.model, "model_name": self.model, "provider": self.provider,
                "finish_reason": self.finish, "cost_usd": self.cost, "usage_estimated": estimated}
        kwargs: dict[str, Any] = {"chunk_position": "last"} if _HAS_CHUNK_POSITION else {}
        message = AIMessageChunk(content="", usage_metadata=usage_metadata(usage), response_metadata=meta, **kwargs)
        return ChatGenerationChunk(message=message, generation_info={"finish_reason": self.finish})

    def _estimate(self) -> Usage:
        from modelplex.catalog.tokens import count_messages, count_text

        spec = self.router.catalog.find(self.model) if self.model else None
        model: Any = spec if spec is not None else (self.model or None)
        return Usage(input_tokens=count_messages(list(self.messages), model).tokens,  # type: ignore[arg-type]
                     output_tokens=count_text("".join(self.text), model).tokens, estimated=True)


def _tool_choice(choice: Any) -> Any:
    """LangChain's tool_choice spellings as OpenAI's: ``any``/``True`` -> ``required``, a tool name ->
    that function, ``False`` -> ``none``; ``auto``, ``none``, ``required`` and dicts unchanged."""
    if choice is True or choice == "any":
        return "required"
    if choice is False:
        return "none"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    return choice


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else t[3:]
        t = t.rstrip()
        if t.endswith("```"):
            t = t[:-3]
    return t.strip()


# ---------------------------------------------------------------------------------------------
# the chat model
# ---------------------------------------------------------------------------------------------


class ChatModelplex(BaseChatModel):
    """A LangChain chat model routed by modelplex.

    Name what to route by with ``task``, ``requirements`` (a dict of ``Requirements`` keys, the seeds'
    names included) or ``model`` (an id or alias; ``"auto"`` or nothing for default selection).
    ``router`` is used as given; otherwise one is built from ``router_config`` (a YAML path or a
    mapping), or from the environment. ``temperature``, ``max_tokens`` and ``model_kwargs`` are sent
    with every call; call-time keywords add to them (routing keywords such as ``model``, ``task``,
    ``strategy``, ``user``, ``request_id`` override the instance's routing for that call).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str | None = None
    task: str | None = None
    requirements: Any = None
    """A mapping of requirement keys, or a ``modelplex.Requirements``."""
    strategy: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    user: str | None = None
    route_tags: list[str] | None = None
    """Tags recorded with each request's usage (LangChain's own ``tags`` go to its callbacks)."""
    context: dict[str, Any] | None = None
    """Request features for the planner (``artifacts``, ``requires_creative_writing``)."""
    timeout: float | None = None
    router: Any = Field(default=None, exclude=True)
    router_config: Any = Field(default=None, exclude=True)

    _built_router: Any = PrivateAttr(default=None)

    # ------------------------------------------------------------------ LangChain plumbing

    @property
    def _llm_type(self) -> str:
        return "modelplex"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "requirements": self._requirements_repr(),
                "strategy": self.strategy, "temperature": self.temperature, "max_tokens": self.max_tokens,
                **self.model_kwargs}

    def _requirements_repr(self) -> Any:
        req = self.requirements
        if req is None or isinstance(req, Mapping):
            return dict(req) if req is not None else None
        return repr(req)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "modelplex"
        model = kwargs.get("model") or self.model
        params["ls_model_name"] = model if isinstance(model, str) else (
            f"task:{kwargs.get('task') or self.task}" if (kwargs.get("task") or self.task) else "auto")
        return params

    def get_router(self) -> Router:
        """The router this model calls (built once from ``router_config`` or the environment)."""
        if self.router is not None:
            return self.router  # type: ignore[no-any-return]
        if self._built_router is None:
            from modelplex.router import Router

            self._built_router = Router.from_config(self.router_config)
        return self._built_router  # type: ignore[no-any-return]

    def _arguments(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(routing keywords, model parameters) for one call."""
        route: dict[str, Any] = {k: v for k, v in (
            ("model", self.model), ("task", self.task), ("requirements", self.requirements),
            ("strategy", self.strategy), ("user", self.user), ("tags", self.route_tags),
            ("context", self.context), ("timeout", self.timeout)) if v is not None}
        params: dict[str, Any] = dict(self.model_kwargs)
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if stop:
            params["stop"] = list(stop)
        if any(kwargs.get(k) is not None for k in _TARGET_KEYS):
            for k in _TARGET_KEYS:
                route.pop(k, None)
        for k, v in kwargs.items():
            if v is None:
                continue
            if k in ROUTE_KEYS:
                route[k] = v
            elif k == "route_tags":
                route["tags"] = v
            else:
                params[k] = v
        return route, params

    # ------------------------------------------------------------------ generation

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        route, params = self._arguments(stop, kwargs)
        resp = self.get_router().complete(to_openai_messages(messages), **route, **params)
        return _chat_result(resp)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        route, params = self._arguments(stop, kwargs)
        resp = await self.get_router().acomplete(to_openai_messages(messages), **route, **params)
        return _chat_result(resp)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        route, params = self._arguments(stop, kwargs)
        if "response_model" in route:  # structured output is validated whole: one chunk
            yield _as_chunk(_chat_result(self.get_router().complete(to_openai_messages(messages), **route, **params)))
            return
        router = self.get_router()
        msgs = to_openai_messages(messages)
        assembler = _StreamAssembler(router, msgs)
        for chunk in router.stream(msgs, **route, **params):
            gen = assembler.feed(chunk)
            if gen is not None:
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.delta, chunk=gen)
                yield gen
        yield assembler.final()

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        route, params = self._arguments(stop, kwargs)
        router = self.get_router()
        msgs = to_openai_messages(messages)
        if "response_model" in route:
            yield _as_chunk(_chat_result(await router.acomplete(msgs, **route, **params)))
            return
        assembler = _StreamAssembler(router, msgs)
        async for chunk in router.astream(msgs, **route, **params):
            gen = assembler.feed(chunk)
            if gen is not None:
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.delta, chunk=gen)
                yield gen
        yield assembler.final()

    # ------------------------------------------------------------------ tools and structured output

    def bind_tools(self, tools: Sequence[Mapping[str, Any] | type | Callable[..., Any] | Any], *,
                   tool_choice: Any = None, **kwargs: Any) -> Runnable[Any, AIMessage]:
        """Bind tools (dicts, pydantic models, functions or ``BaseTool``s) in OpenAI's format.
        ``tool_choice``: ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, or a tool's name."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = _tool_choice(tool_choice)
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: Mapping[str, Any] | type, *, include_raw: bool = False,
                               **kwargs: Any) -> Runnable[Any, Any]:
        """Answers as ``schema``: a pydantic model (validated, with one repair turn, by the router's
        ``response_model`` path; the result is an instance) or a JSON schema / TypedDict / OpenAI tool
        schema (a ``json_schema`` response format; the result is a dict).

        ``include_raw=True`` returns ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``, with the
        error (``StructuredOutputError`` or ``OutputParserException``) instead of raising it.
        ``method`` is accepted and ignored (modelplex picks the provider's native mechanism);
        ``strict`` is passed on for dict schemas.
        """
        kwargs.pop("method", None)
        strict = kwargs.pop("strict", None)
        if kwargs:
            raise ValueError(f"unsupported arguments: {sorted(kwargs)}")
        parse: Callable[[AIMessage], Any]
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            bound = self.bind(response_model=schema)

            def parse(message: AIMessage) -> Any:
                return message.additional_kwargs["parsed"]
        else:
            function = convert_to_openai_tool(schema)["function"]
            fmt = {"type": "json_schema", "json_schema": {
                "name": function["name"], "schema": function.get("parameters") or {"type": "object"},
                "strict": bool(strict)}}
            bound = self.bind(response_format=fmt)

            def parse(message: AIMessage) -> Any:
                text = _text(message.content)
                try:
                    value = json.loads(_strip_fences(text))
                except ValueError as exc:
                    raise OutputParserException(f"the answer is not JSON: {exc}", llm_output=text) from exc
                if not isinstance(value, dict):
                    raise OutputParserException("the answer is not a JSON object", llm_output=text)
                return value

        if not include_raw:
            return bound | RunnableLambda(parse)

        def with_raw(message: AIMessage) -> dict[str, Any]:
            try:
                return {"raw": message, "parsed": parse(message), "parsing_error": None}
            except OutputParserException as exc:
                return {"raw": message, "parsed": None, "parsing_error": exc}

        def failed(exc: StructuredOutputError) -> dict[str, Any]:
            """The router validated and repaired once, and the answer still failed: report, not raise."""
            return {"raw": AIMessage(content=exc.raw or ""), "parsed": None, "parsing_error": exc}

        def run(value: Any, config: RunnableConfig) -> dict[str, Any]:
            try:
                return with_raw(bound.invoke(value, config))
            except StructuredOutputError as exc:
                return failed(exc)

        async def arun(value: Any, config: RunnableConfig) -> dict[str, Any]:
            try:
                return with_raw(await bound.ainvoke(value, config))
            except StructuredOutputError as exc:
                return failed(exc)

        return RunnableLambda(run, afunc=arun)

    # ------------------------------------------------------------------ token counting

    def get_num_tokens(self, text: str) -> int:
        from modelplex.catalog.tokens import count_text

        return count_text(text, self._count_model()).tokens

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        from modelplex.catalog.tokens import count_messages

        formatted = [convert_to_openai_tool(t) for t in tools] if tools else None
        return count_messages(list(to_openai_messages(messages)), self._count_model(),  # type: ignore[arg-type]
                              tools=formatted).tokens

    def _count_model(self) -> Any:
        if self.model and self.model != "auto" and not self.model.startswith("task:"):
            return self.get_router().catalog.find(self.model) or self.model
        return None


def _chat_result(resp: Response) -> ChatResult:
    message = response_to_message(resp)
    u = resp.usage
    return ChatResult(generations=[ChatGeneration(message=message, generation_info={"finish_reason": resp.finish_reason})],
                      llm_output={"model_name": resp.model, "token_usage": {
                          "prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                          "total_tokens": u.total_tokens}})


def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
    message = result.generations[0].message
    kwargs: dict[str, Any] = {"chunk_position": "last"} if _HAS_CHUNK_POSITION else {}
    chunk = AIMessageChunk(content=message.content, additional_kwargs=dict(message.additional_kwargs),
                           response_metadata=dict(message.response_metadata),
                           usage_metadata=getattr(message, "usage_metadata", None),
                           tool_call_chunks=[tool_call_chunk(name=tc["name"], args=json.dumps(tc["args"]),
                                                             id=tc.get("id"), index=i)
                                             for i, tc in enumerate(getattr(message, "tool_calls", []))],
                           **kwargs)
    return ChatGenerationChunk(message=chunk, generation_info=result.generations[0].generation_info)


__all__ = [
    "ChatModelplex",
    "response_metadata",
    "response_to_message",
    "to_openai_messages",
    "usage_metadata",
]
