"""Structured output: ``response_model=<pydantic model>`` in, a validated object out.

1. The request needs JSON, so a model without JSON ability is never chosen (the planner's hard needs).
2. Every target gets ``response_format={"type": "json_schema", ...}``; adapters use the provider's native
   structured output where the model has it (OpenAI ``json_schema``, Gemini ``responseSchema``, Anthropic
   native output or a forced tool) and JSON mode otherwise. The schema also goes into a system message so
   JSON-mode-only models know the shape.
3. The answer is validated; on failure one repair turn is made on the same model with the validation
   errors; a second failure raises ``StructuredOutputError``.
4. The result is ``response.parsed``; usage and cost of both turns are summed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelplex.errors import RefusalError, StructuredOutputError

if TYPE_CHECKING:
    from modelplex.router import Router
    from modelplex.types import Message, Response


def schema_of(response_model: type) -> dict[str, Any]:
    return response_model.model_json_schema()  # type: ignore[attr-defined,no-any-return]


def response_format_for(response_model: type) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": response_model.__name__, "schema": schema_of(response_model),
                                                    "strict": False}}


def _instruction(response_model: type) -> Message:
    schema = json.dumps(schema_of(response_model), separators=(",", ":"))
    return {"role": "system", "content": f"Reply with one JSON object only, no prose, matching this JSON Schema: "
                                         f"{schema}"}


def _strip_fences(text: str) -> str:
    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else t[3:]
        if t.rstrip().endswith("```"):
            t = t.rstrip()[:-3]
    return t.strip()


def parse(response_model: type, text: str | None) -> Any:
    from pydantic import ValidationError

    if text is None:
        raise StructuredOutputError("the model returned no content", raw=None)
    try:
        return response_model.model_validate_json(_strip_fences(text))  # type: ignore[attr-defined]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        where = f" at {loc}" if loc else ""  # a JSON syntax error has no location: its message says where
        raise StructuredOutputError(f"answer does not validate: {exc.error_count()} error(s): "
                                    f"{first.get('msg', '')}{where}", raw=text) from exc


async def complete_structured(router: Router, messages: list[Message], response_model: type, *,
                              model: str | None, task: str | None, requirements: Any, strategy: str | None,
                              user: str | None, tags: list[str] | None, request_id: str | None,
                              api_key_id: str | None, timeout: float | None, context: Mapping[str, Any] | None,
                              **params: Any) -> Response:
    if not hasattr(response_model, "model_validate_json"):
        raise TypeError("response_model must be a pydantic BaseModel subclass")
    msgs: list[Message] = [_instruction(response_model), *messages]
    params = {**params, "response_format": response_format_for(response_model)}
    resp = await router.acomplete(msgs, model=model, task=task, requirements=requirements, strategy=strategy,
                                  user=user, tags=tags, request_id=request_id, api_key_id=api_key_id,
                                  timeout=timeout, context=context, **params)
    if resp.refusal is not None:
        raise RefusalError(resp.refusal, resp)
    try:
        resp.parsed = parse(response_model, resp.content)
        return resp
    except StructuredOutputError as first:
        repair: list[Message] = [*msgs, {"role": "assistant", "content": resp.content or ""},
                                 {"role": "user", "content": f"That answer was invalid ({first}). Reply again with "
                                                             f"only the corrected JSON object."}]
        second = await router.acomplete(repair, model=resp.model, user=user, tags=tags,
                                        request_id=f"{resp.request_id}-repair", api_key_id=api_key_id,
                                        timeout=timeout, **params)
        second.usage = resp.usage + second.usage
        second.cost_usd = resp.cost_usd + second.cost_usd
        second.attempts = resp.attempts + second.attempts
        second.task, second.strategy, second.experiment_arm = resp.task, resp.strategy, resp.experiment_arm
        second.selection_reason = resp.selection_reason + "; one structured-output repair turn"
        second.request_id = resp.request_id
        if second.refusal is not None:
            raise RefusalError(second.refusal, second) from first
        second.parsed = parse(response_model, second.content)
        return second
