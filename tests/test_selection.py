"""Selection: every filter, the three rankings and their tie-breaks, reasons, explanations, the
rejection order, caching, and property tests against an independent brute-force filter."""

from __future__ import annotations

import datetime as dt
import gc
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplex.catalog import Catalog, ModelSpec, load_catalog
from modelplex.errors import ConfigError
from modelplex.selection import (
    CHECK_ORDER,
    Candidate,
    Selection,
    Selector,
    balanced_score,
    blended_price,
    select,
    selector_for,
    validate_requirements,
)
from modelplex.types import Requirements


def spec(model_id: str, *, ctx: int = 128_000, out: int = 4096, inp: float = 1.0, outp: float = 2.0,
         caps: tuple[str, ...] = (), category: str = "basic", quality: float | None = None,
         deprecated: bool = False, mode: str = "chat", inputs: tuple[str, ...] = ("text",),
         outputs: tuple[str, ...] = ("text",), replacement: str | None = None,
         retires: dt.date | None = None) -> ModelSpec:
    return ModelSpec(
        id=model_id, provider=model_id.split("/", 1)[0], context_window=ctx, max_output_tokens=out,
        capabilities=frozenset(caps), category=category, quality=quality, mode=mode,
        input_modalities=frozenset(inputs), output_modalities=frozenset(outputs),
        pricing={"input_per_mtok": inp, "output_per_mtok": outp},
        deprecation={"deprecated": deprecated, "replacement": replacement, "date": retires},
    )


def zoo() -> Catalog:
    """A small catalog with one model for every corner the tests need."""
    return Catalog([
        spec("openai/gpt-4o", ctx=128_000, out=16_384, inp=2.5, outp=10.0, category="comprehensive", quality=88,
             caps=("tool_calling", "json_mode", "structured_output", "vision"), inputs=("text", "image")),
        spec("openai/gpt-4o-mini", ctx=128_000, out=16_384, inp=0.15, outp=0.6, category="basic", quality=70,
             caps=("tool_calling", "json_mode", "structured_output", "vision"), inputs=("text", "image")),
        spec("google/gemini-flash", ctx=1_048_576, out=65_536, inp=0.3, outp=2.5, category="analytical",
             quality=80, caps=("tool_calling", "json_mode", "vision"), inputs=("text", "image", "audio")),
        spec("anthropic/claude-opus", ctx=200_000, out=32_000, inp=15.0, outp=75.0, category="comprehensive",
             quality=95, caps=("tool_calling", "vision", "reasoning"), inputs=("text", "image", "pdf")),
        spec("anthropic/claude-haiku", ctx=200_000, out=8192, inp=0.8, outp=4.0, category="basic", quality=None,
             caps=("tool_calling",)),
        spec("deepseek/reasoner", ctx=64_000, out=8192, inp=0.55, outp=2.19, category="reasoning", quality=85,
             caps=("reasoning", "json_mode")),
        spec("openai/gpt-3.5-turbo", ctx=16_385, out=4096, inp=0.5, outp=1.5, category="basic", quality=50,
             caps=("tool_calling", "json_mode"), deprecated=True, replacement="openai/gpt-4o-mini",
             retires=dt.date(2025, 9, 30)),
        spec("openai/tts", ctx=4096, out=4096, inp=15.0, outp=0.0, outputs=("audio",)),
        spec("openai/text-embedding-3-small", mode="embedding", ctx=8191, out=1, inp=0.02, outp=0.0,
             outputs=("embedding",)),
        spec("openai/text-embedding-3-large", mode="embedding", ctx=8191, out=1, inp=0.13, outp=0.0,
             outputs=("embedding",)),
    ])


@pytest.fixture
def catalog() -> Catalog:
    return zoo()


def ids(catalog: Catalog, **req: Any) -> list[str]:
    return Selector(catalog).select(Requirements(**req)).ids()


def as_set(catalog: Catalog, **req: Any) -> set[str]:
    return set(ids(catalog, **req))


# ------------------------------------------------------------------------------------------ filters


def test_default_chat_excludes_deprecated_and_embeddings(catalog: Catalog) -> None:
    got = as_set(catalog)
    assert got == {"openai/gpt-4o", "openai/gpt-4o-mini", "google/gemini-flash", "anthropic/claude-opus",
                   "anthropic/claude-haiku", "deepseek/reasoner", "openai/tts"}


@pytest.mark.parametrize(("req", "expected"), [
    ({"provider": "anthropic"}, {"anthropic/claude-opus", "anthropic/claude-haiku"}),
    ({"capabilities": frozenset({"vision", "reasoning"})}, {"anthropic/claude-opus"}),
    ({"tool_calling": True, "capabilities": frozenset({"json_mode"})},
     {"openai/gpt-4o", "openai/gpt-4o-mini", "google/gemini-flash"}),
    ({"category": "reasoning"}, {"deepseek/reasoner"}),
    ({"min_context": 200_000}, {"google/gemini-flash", "anthropic/claude-opus", "anthropic/claude-haiku"}),
    ({"min_context": 200_001}, {"google/gemini-flash"}),
    ({"min_output_tokens": 16_384}, {"openai/gpt-4o", "openai/gpt-4o-mini", "google/gemini-flash",
                                     "anthropic/claude-opus"}),
    ({"response_format": "json"}, {"openai/gpt-4o", "openai/gpt-4o-mini", "google/gemini-flash",
                                   "deepseek/reasoner"}),
    ({"response_format": "json_schema"}, {"openai/gpt-4o", "openai/gpt-4o-mini"}),
    ({"providers_allow": frozenset({"google", "deepseek"})}, {"google/gemini-flash", "deepseek/reasoner"}),
    ({"providers_deny": frozenset({"openai", "anthropic"})}, {"google/gemini-flash", "deepseek/reasoner"}),
    ({"input_modalities": frozenset({"image", "audio"})}, {"google/gemini-flash"}),
    ({"output_modalities": frozenset({"audio"})}, {"openai/tts"}),
    ({"max_input_price": 0.55}, {"openai/gpt-4o-mini", "google/gemini-flash", "deepseek/reasoner"}),
    ({"max_output_price": 2.5}, {"openai/gpt-4o-mini", "google/gemini-flash", "deepseek/reasoner", "openai/tts"}),
    ({"include_deprecated": True, "provider": "openai", "max_input_price": 0.5},
     {"openai/gpt-4o-mini", "openai/gpt-3.5-turbo"}),
    ({"mode": "embedding"}, {"openai/text-embedding-3-small", "openai/text-embedding-3-large"}),
])
def test_each_requirement_filters(catalog: Catalog, req: dict[str, Any], expected: set[str]) -> None:
    assert as_set(catalog, **req) == expected


def test_text_response_format_needs_nothing(catalog: Catalog) -> None:
    assert as_set(catalog, response_format="text") == as_set(catalog)


def test_configured_providers_intersect_with_allow_list(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(providers_allow=frozenset({"openai", "google"})),
                                   providers=frozenset({"google", "anthropic"}), explain=True)
    assert sel.ids() == ["google/gemini-flash"]
    assert sel.rejected["openai/gpt-4o"] == "provider openai not configured"
    assert sel.rejected["anthropic/claude-opus"] == "provider anthropic not in allowed providers (google, openai)"


def test_exclude_leaves_models_out(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(provider="anthropic"), exclude=frozenset({"anthropic/claude-opus"}),
                                   explain=True)
    assert sel.ids() == ["anthropic/claude-haiku"]
    assert sel.rejected["anthropic/claude-opus"] == "excluded by the caller"


# ------------------------------------------------------------------------------------------ ranking


def test_economy_orders_by_blended_price(catalog: Catalog) -> None:
    got = ids(catalog, strategy="economy", tool_calling=True)
    assert got == ["openai/gpt-4o-mini", "google/gemini-flash", "anthropic/claude-haiku", "openai/gpt-4o",
                   "anthropic/claude-opus"]
    # blended (input + 3 * output) / 4: 0.4875, 1.95, 3.2, 8.125, 60
    assert [blended_price(catalog.get(m)) for m in got] == pytest.approx([0.4875, 1.95, 3.2, 8.125, 60.0])


def test_economy_mode_flag_means_economy(catalog: Catalog) -> None:
    assert ids(catalog, economy_mode=True, strategy="quality") == ids(catalog, strategy="economy")


def test_economy_ties_break_on_quality_then_id() -> None:
    cat = Catalog([
        spec("p/b", inp=1, outp=1, quality=60), spec("p/a", inp=1, outp=1, quality=60),
        spec("p/c", inp=1, outp=1, quality=90), spec("p/d", inp=1, outp=1, quality=None),
    ])
    # same price: quality 90 first; then 60 (a before b by id); None counts as 50
    assert ids(cat, strategy="economy") == ["p/c", "p/a", "p/b", "p/d"]


def test_quality_orders_category_then_score_then_tier_then_context(catalog: Catalog) -> None:
    got = ids(catalog, strategy="quality", tool_calling=True)
    # comprehensive (95 > 88) > analytical > basic (70 > None=50)
    assert got == ["anthropic/claude-opus", "openai/gpt-4o", "google/gemini-flash", "openai/gpt-4o-mini",
                   "anthropic/claude-haiku"]


def test_quality_tie_breaks() -> None:
    cat = Catalog([
        spec("p/cheap", category="reasoning", quality=80, inp=0.1, outp=0.1),           # lowest tier
        spec("p/pricey", category="reasoning", quality=80, inp=10, outp=30),            # high tier
        spec("p/wide", category="reasoning", quality=80, inp=10, outp=30, ctx=1_000_000),
        spec("p/a-twin", category="reasoning", quality=80, inp=10, outp=30, ctx=1_000_000),
    ])
    # same category and quality: higher tier first, then larger context, then id ascending
    assert ids(cat, strategy="quality") == ["p/a-twin", "p/wide", "p/pricey", "p/cheap"]


def test_balanced_score_formula() -> None:
    m = spec("p/m", category="analytical", quality=80, inp=1.0, outp=3.0)  # blended 2.5
    quality_norm = (0.80 + 2 / 4) / 2
    price_norm = (math.log10(2.5) + 2) / 4
    assert balanced_score(m) == pytest.approx(quality_norm - 0.5 * price_norm)
    free = spec("p/free", quality=None, inp=0, outp=0)  # clamps to the $0.01 floor: price_norm 0
    assert balanced_score(free) == pytest.approx((0.5 + 0) / 2)
    huge = spec("p/huge", category="comprehensive", quality=100, inp=500, outp=500)  # clamps to $100: norm 1
    assert balanced_score(huge) == pytest.approx(1.0 - 0.5)


def test_balanced_orders_by_score_desc(catalog: Catalog) -> None:
    got = ids(catalog, strategy="balanced", tool_calling=True)
    scores = [balanced_score(catalog.get(m)) for m in got]
    assert scores == sorted(scores, reverse=True)
    assert got[0] == "openai/gpt-4o"


def test_ranking_does_not_depend_on_other_filters(catalog: Catalog) -> None:
    everything = ids(catalog, strategy="balanced")
    subset = ids(catalog, strategy="balanced", min_context=128_000)
    assert subset == [m for m in everything if m in set(subset)]


def test_limit_takes_the_top(catalog: Catalog) -> None:
    sel = Selector(catalog)
    full = sel.select(Requirements(strategy="economy")).ids()
    assert sel.select(Requirements(strategy="economy"), limit=2).ids() == full[:2]
    with pytest.raises(ConfigError):
        sel.select(Requirements(), limit=0)


# ------------------------------------------------------------------------------------------ reasons


def test_reasons_say_why(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(strategy="economy", tool_calling=True, min_context=200_000))
    assert [c.reason for c in sel.candidates] == [
        "cheapest of 3 matching (blended $1.95/M); tool_calling, 1,048,576 ctx",
        "#2 cheapest of 3 matching (blended $3.20/M); tool_calling, 200,000 ctx",
        "#3 cheapest of 3 matching (blended $60.00/M); tool_calling, 200,000 ctx",
    ]
    assert [c.score for c in sel.candidates] == [-1.95, -3.2, -60.0]
    quality = Selector(catalog).select(Requirements(strategy="quality", provider="anthropic",
                                                    response_format="text"))
    assert quality.candidates[0].reason == (
        "highest quality of 2 matching (comprehensive, quality 95, high cost tier); 200,000 ctx")
    assert quality.candidates[1].reason == "#2 by quality of 2 matching (basic, quality n/a, medium cost tier); " \
                                           "200,000 ctx"
    balanced = Selector(catalog).select(Requirements(provider="google", response_format="json"))
    assert balanced.candidates[0].reason == (
        f"best balance of 1 matching (score {balanced_score(catalog.get('google/gemini-flash')):.3f}: analytical, "
        "quality 80, blended $1.95/M); json output, 1,048,576 ctx")


# ------------------------------------------------------------------------------------------ explanations


def test_no_silent_default_names_the_blocking_requirement(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(tool_calling=True, min_context=2_000_000))
    assert sel.candidates == []
    assert sel.explanation == ("no model meets: min_context 2,000,000 (the largest window among the 5 chat "
                               "models meeting capability tool_calling is 1,048,576)")
    assert sel.rejected == {}  # only filled with explain


def test_explanation_lists_each_single_blocker(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(provider="deepseek", max_input_price=0.5))
    assert sel.explanation == (
        "no model meets: provider deepseek (providers among the 2 chat models meeting max_input_price $0.50/M: "
        "google, openai); max_input_price $0.50/M (the cheapest input among the one chat model meeting provider "
        "deepseek is $0.55/M)")


def test_explanation_when_no_single_requirement_is_to_blame(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(provider="deepseek", category="comprehensive",
                                                min_context=300_000))
    assert sel.explanation == (
        "no model meets: category comprehensive (categories among the one chat model meeting provider deepseek: "
        "reasoning); relaxing it alone is not enough")


def test_explanation_for_missing_capability_and_unknown_provider(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(provider="anthropic", capabilities=frozenset({"web_search"})))
    assert sel.explanation.startswith("no model meets: capability web_search (of the 2 chat models meeting "
                                      "provider anthropic, 0 have web_search)")
    sel = Selector(catalog).select(Requirements(provider="nosuch"))
    assert sel.explanation == "no model meets: provider nosuch (provider nosuch has no models in the catalog)"


def test_explanation_when_only_deprecated_models_qualify() -> None:
    cat = Catalog([spec("p/old", deprecated=True, ctx=200_000), spec("p/new", ctx=8000)])
    sel = Selector(cat).select(Requirements(min_context=100_000))
    assert sel.explanation == (
        "no model meets: not deprecated (the one chat model meeting min_context 100,000 is deprecated (p/old); "
        "include_deprecated would allow it); min_context 100,000 (the largest window among the one chat model "
        "is 8,000)")
    assert Selector(cat).select(Requirements(min_context=100_000, include_deprecated=True)).ids() == ["p/old"]


def test_explanation_for_denied_and_unconfigured_providers(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(providers_deny=frozenset({"google"}), min_context=500_000))
    assert sel.explanation == (
        "no model meets: providers_deny google (the one chat model meeting min_context 500,000 is from denied "
        "providers: google); min_context 500,000 (the largest window among the 6 chat models meeting "
        "providers_deny google is 200,000)")
    sel = Selector(catalog).select(Requirements(category="reasoning"), providers=frozenset({"openai"}))
    assert sel.explanation.startswith(
        "no model meets: a configured provider (the one chat model meeting category reasoning is from "
        "unconfigured providers: deepseek); category reasoning (categories among the 3 chat models meeting "
        "a configured provider: basic, comprehensive)")


def test_explanation_for_empty_mode_and_empty_catalog() -> None:
    only_chat = Catalog([spec("p/a")])
    assert Selector(only_chat).select(Requirements(mode="embedding")).explanation == (
        "no model meets: mode embedding (the catalog has no embedding models)")
    assert Selector(Catalog()).select(Requirements()).explanation == (
        "no model meets: mode chat (the catalog has no models)")


# ------------------------------------------------------------------------------------------ explain / rejected


def test_rejected_names_the_first_failed_requirement_in_check_order(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(provider="google", min_context=300_000, tool_calling=True),
                                   explain=True)
    assert sel.ids() == ["google/gemini-flash"]
    # claude-opus fails provider (4th) before min_context (13th)
    assert sel.rejected["anthropic/claude-opus"] == "provider anthropic, need google"
    assert sel.rejected["openai/text-embedding-3-small"] == "mode embedding, need chat"
    assert sel.rejected["openai/gpt-3.5-turbo"] == (
        "deprecated (retires 2025-09-30; replacement openai/gpt-4o-mini)")
    assert set(sel.rejected) | set(sel.ids()) == {m.id for m in catalog.models()}
    assert CHECK_ORDER.index("provider") < CHECK_ORDER.index("min_context")


def test_rejected_messages_for_every_check(catalog: Catalog) -> None:
    sel = Selector(catalog).select(
        Requirements(category="basic", capabilities=frozenset({"vision"}), response_format="json_schema",
                     input_modalities=frozenset({"image"}), min_context=150_000, min_output_tokens=20_000,
                     max_input_price=0.1, max_output_price=0.5, providers_deny=frozenset({"deepseek"})),
        explain=True)
    assert sel.candidates == []
    r = sel.rejected
    assert r["deepseek/reasoner"] == "provider deepseek is denied"
    assert r["openai/gpt-4o"] == "category comprehensive, need basic"
    assert r["anthropic/claude-haiku"] == "lacks vision"
    assert r["openai/tts"] == "lacks vision"
    assert r["openai/gpt-4o-mini"] == "context window 128,000 < 150,000"


def test_rejected_includes_ranks_past_the_limit(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(strategy="economy", tool_calling=True), limit=2, explain=True)
    assert sel.ids() == ["openai/gpt-4o-mini", "google/gemini-flash"]
    assert sel.rejected["anthropic/claude-haiku"] == "ranked #3 of 5 matching, past limit 2"
    assert sel.rejected["anthropic/claude-opus"] == "ranked #5 of 5 matching, past limit 2"


def test_to_dict_shapes(catalog: Catalog) -> None:
    sel = Selector(catalog).select(Requirements(provider="anthropic", strategy="economy"), explain=True)
    plain = sel.to_dict(False)
    assert list(plain) == ["candidates"]
    assert plain["candidates"][0] == {"id": "anthropic/claude-haiku", "reason": sel.candidates[0].reason}
    full = sel.to_dict(True)
    assert list(full) == ["candidates", "rejected"]
    assert all(set(r) == {"id", "why"} for r in full["rejected"])
    assert [r["id"] for r in full["rejected"]] == sorted(r["id"] for r in full["rejected"])


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("req", "key", "fragment"), [
    (Requirements(capabilities=frozenset({"visoin"})), "capabilities", "did you mean 'vision'?"),
    (Requirements(category="reasonin"), "category", "did you mean 'reasoning'?"),
    (Requirements(strategy="fastest"), "strategy", "expected one of economy, balanced, quality"),  # type: ignore[arg-type]
    (Requirements(response_format="yaml"), "response_format", "expected json, json_schema or text"),
    (Requirements(input_modalities=frozenset({"imag"})), "input_modalities", "did you mean 'image'?"),
    (Requirements(min_context=-1), "min_context", ">= 0"),
    (Requirements(max_input_price=float("nan")), "max_input_price", "price >= 0"),
])
def test_values_outside_the_vocabulary_are_config_errors(catalog: Catalog, req: Requirements, key: str,
                                                         fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Selector(catalog).select(req)
    assert info.value.key == key
    assert fragment in str(info.value)
    with pytest.raises(ConfigError):
        validate_requirements(req)


# ------------------------------------------------------------------------------------------ caching


def test_results_are_cached_and_returned_as_copies(catalog: Catalog) -> None:
    selector = Selector(catalog)
    req = Requirements(tool_calling=True)
    first = selector.select(req)
    first.candidates.clear()
    again = selector.select(req)
    assert len(again.candidates) == 5
    info = selector.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def test_catalog_mutation_invalidates_indexes_and_cache(catalog: Catalog) -> None:
    selector = Selector(catalog)
    req = Requirements(provider="mistral")
    assert selector.select(req).candidates == []
    catalog.add(spec("mistral/large", category="comprehensive"))
    assert selector.select(req).ids() == ["mistral/large"]


def test_select_shares_one_selector_per_catalog_held_weakly() -> None:
    cat = zoo()
    assert selector_for(cat) is selector_for(cat)
    assert select(cat, Requirements(provider="google")).ids() == ["google/gemini-flash"]
    import weakref

    ref = weakref.ref(cat)
    del cat
    gc.collect()
    assert ref() is None  # the shared selector does not keep its catalog alive


def test_candidate_and_selection_types(catalog: Catalog) -> None:
    sel = select(catalog, Requirements(provider="google"))
    assert isinstance(sel, Selection) and isinstance(sel.candidates[0], Candidate)
    assert sel.candidates[0].id == "google/gemini-flash"
    assert sel.requirements == Requirements(provider="google")
    assert sel and len(sel) == 1
    assert sel.explanation == ""


def test_large_catalog_picks_between_walk_and_sort() -> None:
    """Both ranking paths (walking the order for a small limit, sorting the matches) agree."""
    models = [spec(f"p{i % 7}/m{i:04d}", inp=(i * 37 % 101) / 10, outp=(i * 53 % 97) / 10,
                   ctx=[8192, 32_000, 128_000, 1_000_000][i % 4], quality=float(i * 13 % 100),
                   category=["basic", "creative", "analytical", "reasoning", "comprehensive"][i % 5],
                   caps=("tool_calling",) if i % 3 else ())
              for i in range(600)]
    cat = Catalog(models)
    selector = Selector(cat)
    for strategy in ("economy", "balanced", "quality"):
        for req in (Requirements(strategy=strategy), Requirements(strategy=strategy, provider="p3", tool_calling=True),  # type: ignore[arg-type]
                    Requirements(strategy=strategy, min_context=1_000_000, max_input_price=2.0)):  # type: ignore[arg-type]
            full = selector.select(req).ids()
            for limit in (1, 3, 50, 10_000):
                assert selector.select(req, limit=limit).ids() == full[:limit]


# ------------------------------------------------------------------------------------------ properties

_CHECK_PATTERNS: dict[str, re.Pattern[str]] = {
    "mode": re.compile(r"^mode (chat|embedding), need (chat|embedding)$"),
    "deprecated": re.compile(r"^deprecated"),
    "excluded": re.compile(r"^excluded by the caller$"),
    "provider": re.compile(r"^provider \S+, need \S+$"),
    "providers_deny": re.compile(r"^provider \S+ is denied$"),
    "providers_allow": re.compile(r"^provider \S+ not in allowed providers"),
    "configured": re.compile(r"^provider \S+ not configured$"),
    "category": re.compile(r"^category \w+, need \w+$"),
    "capabilities": re.compile(r"^lacks [\w, ]+$"),
    "response_format": re.compile(r"^lacks .* \(response_format json(_schema)?\)$"),
    "input_modalities": re.compile(r"^no [\w, ]+ input$"),
    "output_modalities": re.compile(r"^no [\w, ]+ output$"),
    "min_context": re.compile(r"^context window [\d,]+ < [\d,]+$"),
    "min_output_tokens": re.compile(r"^max output [\d,]+ < [\d,]+$"),
    "max_input_price": re.compile(r"^input \$.*/M > \$.*/M$"),
    "max_output_price": re.compile(r"^output \$.*/M > \$.*/M$"),
}


def first_failure(m: ModelSpec, req: Requirements, providers: frozenset[str] | None,
                  exclude: frozenset[str]) -> str | None:
    """An independent, obvious implementation of the documented check order."""
    caps = set(req.capabilities) | ({"tool_calling"} if req.tool_calling else set())
    checks: list[tuple[str, bool]] = [
        ("mode", m.mode == req.mode),
        ("deprecated", req.include_deprecated or not m.deprecation.deprecated),
        ("excluded", m.id not in exclude),
        ("provider", req.provider is None or m.provider == req.provider),
        ("providers_deny", m.provider not in req.providers_deny),
        ("providers_allow", not req.providers_allow or m.provider in req.providers_allow),
        ("configured", providers is None or m.provider in providers),
        ("category", req.category is None or m.category == req.category),
        ("capabilities", caps <= set(m.capabilities)),
        ("response_format", req.response_format in (None, "text")
         or (req.response_format == "json" and bool({"json_mode", "structured_output"} & m.capabilities))
         or (req.response_format == "json_schema" and "structured_output" in m.capabilities)),
        ("input_modalities", set(req.input_modalities) <= set(m.input_modalities)),
        ("output_modalities", set(req.output_modalities) <= set(m.output_modalities)),
        ("min_context", m.context_window >= req.min_context),
        ("min_output_tokens", m.max_output_tokens >= req.min_output_tokens),
        ("max_input_price", req.max_input_price is None or m.pricing.input_per_mtok <= req.max_input_price),
        ("max_output_price", req.max_output_price is None or m.pricing.output_per_mtok <= req.max_output_price),
    ]
    assert [name for name, _ in checks] == list(CHECK_ORDER)
    for name, ok in checks:
        if not ok:
            return name
    return None


PROVIDERS = ("alpha", "beta", "gamma")
CAPS = ("tool_calling", "vision", "json_mode", "structured_output", "reasoning")
PRICES = (0.0, 0.1, 0.15, 0.5, 1.0, 2.5, 10.0, 15.0, 75.0)
CONTEXTS = (4096, 8192, 128_000, 200_000, 1_048_576)
OUTPUTS = (1024, 4096, 16_384, 65_536)


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


# Strategies are built once, at import: building them inside a composite per draw is what is slow.
_MODEL_FIELDS = st.fixed_dictionaries({
    "provider": st.sampled_from(PROVIDERS),
    "mode": st.sampled_from(("chat", "chat", "chat", "embedding")),
    "context_window": st.sampled_from(CONTEXTS),
    "max_output_tokens": st.sampled_from(OUTPUTS),
    "capabilities": st.frozensets(st.sampled_from(CAPS)),
    "input_modalities": st.frozensets(st.sampled_from(("image", "audio"))).map(lambda s: s | {"text"}),
    "output_modalities": st.frozensets(st.sampled_from(("audio",))).map(lambda s: s | {"text"}),
    "category": st.sampled_from(("basic", "creative", "analytical", "reasoning", "comprehensive")),
    "quality": _opt(st.sampled_from((40.0, 60.0, 75.0, 90.0))),
    "pricing": st.fixed_dictionaries({"input_per_mtok": st.sampled_from(PRICES),
                                      "output_per_mtok": st.sampled_from(PRICES)}),
    "deprecation": st.fixed_dictionaries({"deprecated": st.booleans()}),
})


def _catalog_of(entries: list[dict[str, Any]]) -> Catalog:
    return Catalog([ModelSpec(id=f"{e['provider']}/m{i}", **e) for i, e in enumerate(entries)])


catalogs = st.lists(_MODEL_FIELDS, max_size=40).map(_catalog_of)

requirements = st.fixed_dictionaries({
    "provider": _opt(st.sampled_from(PROVIDERS)),
    "capabilities": st.frozensets(st.sampled_from(CAPS), max_size=2),
    "category": _opt(st.sampled_from(("basic", "reasoning", "comprehensive"))),
    "min_context": st.sampled_from((0, 0, 8192, 128_000, 150_000, 1_000_000)),
    "min_output_tokens": st.sampled_from((0, 0, 4096, 16_385)),
    "tool_calling": st.booleans(),
    "response_format": _opt(st.sampled_from(("json", "json_schema", "text"))),
    "economy_mode": st.booleans(),
    "providers_allow": st.frozensets(st.sampled_from(PROVIDERS), max_size=2),
    "providers_deny": st.frozensets(st.sampled_from(PROVIDERS), max_size=1),
    "input_modalities": st.frozensets(st.sampled_from(("text", "image", "audio")), max_size=2),
    "output_modalities": st.frozensets(st.sampled_from(("text", "audio")), max_size=1),
    "max_input_price": _opt(st.sampled_from(PRICES)),
    "max_output_price": _opt(st.sampled_from(PRICES)),
    "include_deprecated": st.booleans(),
    "mode": st.sampled_from(("chat", "chat", "embedding")),
    "strategy": st.sampled_from(("economy", "balanced", "quality")),
}).map(lambda kw: Requirements(**kw))


PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(cat=catalogs, req=requirements, providers=_opt(st.frozensets(st.sampled_from(PROVIDERS))),
       exclude_some=st.booleans(), limit=_opt(st.integers(min_value=1, max_value=5)))
def test_selection_equals_brute_force(cat: Catalog, req: Requirements, providers: frozenset[str] | None,
                                      exclude_some: bool, limit: int | None) -> None:
    models = cat.models()
    exclude = frozenset(m.id for m in models[::3]) if exclude_some else frozenset()
    sel = Selector(cat).select(req, explain=True, providers=providers, exclude=exclude)
    expected = {m.id for m in models if first_failure(m, req, providers, exclude) is None}
    # the result set is exactly the brute-force filter's
    assert set(sel.ids()) == expected
    assert len(sel.ids()) == len(expected)
    # every candidate satisfies every requirement
    for cand in sel.candidates:
        assert first_failure(cand.model, req, providers, exclude) is None
        if not req.include_deprecated:
            assert not cand.model.deprecated
    # every other model is rejected with the first requirement it fails
    assert set(sel.rejected) == {m.id for m in models} - expected
    for m in models:
        failed = first_failure(m, req, providers, exclude)
        if failed is not None:
            assert _CHECK_PATTERNS[failed].match(sel.rejected[m.id]), (failed, sel.rejected[m.id])
    # economy never decreases in blended price
    if req.effective_strategy == "economy":
        prices = [blended_price(c.model) for c in sel.candidates]
        assert prices == sorted(prices)
    if req.effective_strategy == "balanced":
        scores = [c.score for c in sel.candidates]
        assert scores == sorted(scores, reverse=True)
    # no silent default
    assert bool(sel.explanation) == (not sel.candidates)
    if not sel.candidates:
        assert sel.explanation.startswith("no model meets: ")
    # a limit takes a prefix of the full ranking
    if limit is not None:
        limited = Selector(cat).select(req, limit=limit, providers=providers, exclude=exclude)
        assert limited.ids() == sel.ids()[:limit]


@PROPERTY_SETTINGS
@given(cat=catalogs, req=requirements)
def test_deprecated_models_appear_only_when_asked(cat: Catalog, req: Requirements) -> None:
    without = Selector(cat).select(req.merged(include_deprecated=False))
    assert not any(c.model.deprecated for c in without.candidates)
    with_dep = Selector(cat).select(req.merged(include_deprecated=True))
    assert set(without.ids()) <= set(with_dep.ids())
    assert {c.model.id for c in with_dep.candidates if c.model.deprecated} == {
        m.id for m in cat.models()
        if m.deprecated and first_failure(m, req.merged(include_deprecated=True), None, frozenset()) is None}


def test_candidate_reason_is_written_once_on_first_read() -> None:
    from modelplex.selection import Candidate

    spec = load_catalog().get("openai/gpt-4o-mini")
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        return "cheapest of 3 matching"

    lazy = Candidate(spec, write, -0.3)
    assert calls == []
    assert lazy.reason == "cheapest of 3 matching" and lazy.reason == "cheapest of 3 matching"
    assert calls == [1]
    eager = Candidate(spec, "cheapest of 3 matching", -0.3)
    assert lazy == eager and lazy.id == "openai/gpt-4o-mini"
    assert eager != Candidate(spec, "other", -0.3)
    assert "cheapest of 3 matching" in repr(eager)


def test_selection_reasons_read_the_same_whenever_they_are_read() -> None:
    sel = Selector(load_catalog())
    req = Requirements(min_context=100_000, capabilities=frozenset({"tool_calling"}), strategy="economy")
    first = sel.select(req, limit=3)
    again = sel.select(req, limit=3)  # the cached selection: its candidates' reasons were not read yet
    texts = [c.reason for c in again.candidates]
    assert [c.reason for c in first.candidates] == texts
    assert texts[0].startswith("cheapest of ") and texts[1].startswith("#2 cheapest of ")
    assert all("tool_calling" in t and "ctx" in t for t in texts)


def test_a_selection_pickles_with_its_reasons_unread() -> None:
    import pickle

    sel = Selector(load_catalog())
    got = sel.select(Requirements(min_context=100_000, strategy="quality"), limit=2)
    back = pickle.loads(pickle.dumps(got))
    assert [c.reason for c in back.candidates] == [c.reason for c in got.candidates]
    assert back.candidates == got.candidates
