"""``params.supported`` is memoized per (protocol, spec object): the memo must answer what the uncached
computation answers, for every protocol and spec, and two specs that share an id get their own answers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from modelplex.catalog import Catalog, ModelSpec
from modelplex.catalog import params as P
from modelplex.catalog.params import PARAMS, PROTOCOL_PARAMS, param_name, split_params, supported, unsupported

PROTOCOLS = [*PROTOCOL_PARAMS, "unknown-protocol"]


def spec(model_id: str = "openai/o3", **fields: Any) -> ModelSpec:
    return ModelSpec(id=model_id, provider=model_id.split("/", 1)[0], context_window=128_000, **fields)


def by_param_name(protocol: str, s: ModelSpec | None) -> frozenset[str]:
    """An independent statement of the rule: what ``param_name`` names, plus the model's own mappings."""
    names = {p for p in PARAMS if param_name(protocol, s, p) is not None}
    if s is not None:
        extra = set(s.param_mappings) - set(PARAMS)
        names |= extra if s.supported_params is None else extra & set(s.supported_params)
        if s.mode != "embedding":
            names -= {"dimensions"}
    return frozenset(names)


SPECS: list[ModelSpec | None] = [
    None,
    spec(),
    spec(param_mappings={"max_tokens": "max_completion_tokens"}),
    spec(supported_params=frozenset({"max_tokens", "tools", "seed"})),
    spec(supported_params=frozenset({"max_tokens", "reasoning_effort"}),
         param_mappings={"max_tokens": "max_completion_tokens", "reasoning_effort": "effort"}),
    spec(param_mappings={"top_k": "top_k", "verbosity": "text.verbosity"}),  # a name the protocol lacks
    spec(supported_params=frozenset()),
    spec("openai/text-embedding-3-small", mode="embedding", embedding_dimensions=1536),
    spec("openai/text-embedding-ada-002", mode="embedding", supported_params=frozenset({"user", "timeout"})),
    spec("openai/gpt-5-pro", api_requirements={"endpoint": "responses"}),  # OpenAI's Responses API
    spec("openai/gpt-5-codex", api_requirements={"endpoint": "responses"}, param_mappings={"stop": "stop"},
         supported_params=frozenset({"stop", "metadata", "max_tokens", "seed"})),
]


@pytest.fixture(autouse=True)
def empty_memo() -> None:
    P._SUPPORTED_MEMO.clear()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_memoized_answers_equal_the_computation(protocol: str) -> None:
    for s in SPECS:
        want = P._supported(protocol, s)
        assert want == by_param_name(protocol, s)
        first = supported(protocol, s)
        assert first == want
        assert supported(protocol, s) is first  # the memo answered
        assert unsupported(protocol, s, [*PARAMS, "nonsense"]) == [p for p in [*PARAMS, "nonsense"] if p not in want]
        kept, dropped = split_params(protocol, s, {p: 1 for p in PARAMS})
        assert set(kept) - set(s.default_params if s else {}) == want & set(PARAMS)
        assert set(dropped) == set(PARAMS) - want


def test_the_protocol_is_part_of_the_answer() -> None:
    s = spec()
    answers = {protocol: supported(protocol, s) for protocol in PROTOCOLS}
    assert "top_k" in answers["anthropic"] and "top_k" not in answers["openai"]
    assert "logit_bias" in answers["openai"] and "logit_bias" not in answers["gemini"]
    assert answers["unknown-protocol"] == answers["openai"]  # the OpenAI table by default
    for protocol, s2 in itertools.product(PROTOCOLS, SPECS):
        assert supported(protocol, s2) == P._supported(protocol, s2)


def test_specs_sharing_an_id_get_their_own_answers() -> None:
    narrow = spec(supported_params=frozenset({"max_tokens"}))
    wide = spec(supported_params=frozenset({"max_tokens", "tools", "temperature"}))
    mapped = spec(param_mappings={"verbosity": "text.verbosity"})
    plain = spec()
    assert narrow.id == wide.id == mapped.id == plain.id
    for _ in range(2):
        assert supported("openai", narrow) == {"max_tokens"}
        assert supported("openai", wide) == {"max_tokens", "tools", "temperature"}
        assert "verbosity" in supported("openai", mapped)
        assert "verbosity" not in supported("openai", plain) and "temperature" in supported("openai", plain)


def test_a_catalog_overlay_gets_its_own_answer() -> None:
    base = Catalog([spec("openai/o3", supported_params=frozenset({"max_tokens", "reasoning_effort"}))])
    base_spec = base.get("openai/o3")
    before = supported("openai", base_spec)
    assert before == {"max_tokens", "reasoning_effort"}
    over = base.with_overlay([{"id": "openai/o3", "supported_params": ["max_tokens", "tools"],
                               "param_mappings": {"max_tokens": "max_completion_tokens", "store": "store"}}])
    over_spec = over.get("openai/o3")
    assert over_spec is not base_spec and over_spec.id == base_spec.id
    assert supported("openai", over_spec) == {"max_tokens", "tools"}
    assert supported("openai", base_spec) == before  # the base catalog is unchanged, and so is its answer
    # a catalog entry replaced in place (a new spec object under the same id) is answered afresh
    base.add(spec("openai/o3", supported_params=frozenset({"seed"})))
    assert supported("openai", base.get("openai/o3")) == {"seed"}


def test_short_lived_specs_never_inherit_an_answer() -> None:
    """Specs made and dropped one after another (their memory, and so their id(), may be reused) each get
    the answer for their own fields."""
    names = sorted(PARAMS)
    for i in range(300):
        allowed = frozenset(names[j] for j in range(len(names)) if (i >> (j % 9)) & 1)
        s = spec(supported_params=allowed)
        chat_params = P._supported("openai", None) - P.EMBEDDING_ONLY  # ``spec`` makes a chat model
        assert supported("openai", s) == P._supported("openai", s) == allowed & chat_params
        del s


def test_dimensions_belong_to_embedding_models_only() -> None:
    embed = spec("openai/text-embedding-3-small", mode="embedding", embedding_dimensions=1536)
    assert "dimensions" in supported("openai", embed)
    assert param_name("gemini", spec("gemini/gemini-embedding-001", mode="embedding"), "dimensions") == \
        "output_dimensionality"
    assert param_name("anthropic", None, "dimensions") is None
    chat = spec("openai/gpt-4o")
    assert "dimensions" not in supported("openai", chat) and param_name("openai", chat, "dimensions") is None
    assert split_params("openai", chat, {"dimensions": 8}) == ({}, {"dimensions": 8})


def test_metadata_is_not_sent_to_openai_chat_completions() -> None:
    """OpenAI's chat completions take ``metadata`` only with ``store: true``, which modelplex never sends; its
    Responses API and the other protocols take it."""
    chat, pro = spec("openai/gpt-4o"), spec("openai/gpt-5-pro", api_requirements={"endpoint": "responses"})
    for protocol in ("openai", "azure"):
        assert "metadata" not in supported(protocol, chat) and param_name(protocol, chat, "metadata") is None
        assert split_params(protocol, chat, {"metadata": {"a": "b"}}) == ({}, {"metadata": {"a": "b"}})
        assert "metadata" in supported(protocol, pro) and param_name(protocol, pro, "metadata") == "metadata"
    assert param_name("anthropic", None, "metadata") == "metadata"
    mapped = spec("openai/local", param_mappings={"metadata": "metadata"})  # a server that takes it anyway
    assert "metadata" in supported("openai", mapped)
