"""Requirements -> ranked candidates, each with a one-line reason; indexed so a warm call takes microseconds.

Owns: ``Selector`` (the bitset indexes built once per ``catalog.version``, the filter, the three
ranking strategies, the explanation of an empty result and the per-model rejection reasons),
``Candidate``, ``Selection`` and the module-level ``select()`` convenience.

How it works (docs/selection.md has the full story):

* Every model gets an index (models sorted by id, so "index ascending" is the final tie-break).
  Python ints are bitsets: one per capability, provider, category, mode, input/output modality,
  plus a deprecated mask. Numeric limits (context, max output, prices) keep the models sorted by
  value; ``bisect`` finds the threshold and the mask of everything past it is built once per
  distinct threshold and memoized.
* Each strategy's ranking of *all* models is precomputed. Scores never depend on which other
  models match, so a selection is: AND the masks, then read the matching models off the
  strategy's order (or sort the few matching ones by their precomputed rank), stopping at ``limit``.
* Whole results are memoized in a small LRU keyed by every input plus ``catalog.version``.

Must not touch: I/O, provider calls, credentials (the caller passes the set of configured
providers), the catalog's own storage (read through ``catalog.models()`` and ``catalog.version``).
"""

from __future__ import annotations

import difflib
import functools
import math
import threading
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from modelplex.catalog.schema import CAPABILITIES, CATEGORIES, MODALITIES
from modelplex.errors import ConfigError
from modelplex.types import Requirements

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec

__all__ = [
    "BALANCED_PRICE_WEIGHT",
    "CATEGORY_RANK",
    "CHECK_ORDER",
    "DEFAULT_QUALITY",
    "PRICE_CEILING",
    "PRICE_FLOOR",
    "STRATEGIES",
    "TIER_RANK",
    "Candidate",
    "Selection",
    "Selector",
    "balanced_score",
    "blended_price",
    "required_capabilities",
    "select",
    "selector_for",
    "validate_requirements",
]

# ------------------------------------------------------------------------------------------ constants

STRATEGIES: tuple[str, ...] = ("economy", "balanced", "quality")
CATEGORY_RANK: dict[str, int] = {"basic": 0, "creative": 1, "analytical": 2, "reasoning": 3, "comprehensive": 4}
"""comprehensive > reasoning > analytical > creative > basic."""
TIER_RANK: dict[str, int] = {"lowest": 0, "low": 1, "medium": 2, "high": 3}
DEFAULT_QUALITY = 50.0
"""Quality assumed for a model without a ``quality`` score."""
PRICE_FLOOR = 0.01
"""Blended USD/M below which price no longer improves the balanced score (free models sit here)."""
PRICE_CEILING = 100.0
"""Blended USD/M above which price no longer worsens the balanced score."""
BALANCED_PRICE_WEIGHT = 0.5
RESPONSE_FORMATS: dict[str, tuple[str, ...]] = {
    "json": ("json_mode", "structured_output"),
    "json_schema": ("structured_output",),
    "text": (),
}
"""response_format -> capabilities of which a model needs at least one (none for text)."""
MODES: tuple[str, ...] = ("chat", "embedding")

CHECK_ORDER: tuple[str, ...] = (
    "mode",
    "deprecated",
    "excluded",
    "provider",
    "providers_deny",
    "providers_allow",
    "configured",
    "category",
    "capabilities",
    "response_format",
    "input_modalities",
    "output_modalities",
    "min_context",
    "min_output_tokens",
    "max_input_price",
    "max_output_price",
)
"""The order requirements are checked in; ``rejected`` names the first one a model fails.
A model that passes them all but ranks past ``limit`` is rejected as ``limit``."""

CACHE_SIZE = 512


def blended_price(spec: ModelSpec) -> float:
    """USD per million tokens at a 1:3 input:output weighting: ``(input + 3 * output) / 4``."""
    return (spec.pricing.input_per_mtok + 3 * spec.pricing.output_per_mtok) / 4


def _quality(spec: ModelSpec) -> float:
    return DEFAULT_QUALITY if spec.quality is None else float(spec.quality)


def balanced_score(spec: ModelSpec) -> float:
    """``quality_norm - 0.5 * log_price_norm``, both in [0, 1] and independent of the rest of the catalog.

    * ``quality_norm = (quality / 100 + category_rank / 4) / 2`` (quality defaults to 50);
    * ``log_price_norm = (log10(clamp(blended, 0.01, 100)) + 2) / 4``.
    """
    quality_norm = (_quality(spec) / 100.0 + CATEGORY_RANK.get(spec.category, 0) / 4.0) / 2.0
    price = min(max(blended_price(spec), PRICE_FLOOR), PRICE_CEILING)
    log_price_norm = (math.log10(price) - math.log10(PRICE_FLOOR)) / (
        math.log10(PRICE_CEILING) - math.log10(PRICE_FLOOR))
    return quality_norm - BALANCED_PRICE_WEIGHT * log_price_norm


def _fmt_price(usd_per_mtok: float) -> str:
    if usd_per_mtok == 0:
        return "$0"
    if usd_per_mtok >= 0.1:
        return f"${usd_per_mtok:,.2f}"
    return f"${usd_per_mtok:.3g}"


def _fmt_quality(spec: ModelSpec) -> str:
    return "quality n/a" if spec.quality is None else f"quality {spec.quality:g}"


# ------------------------------------------------------------------------------------------ results


class Candidate:
    """One model that meets the requirements, with why it ranks where it does.

    ``score`` is the strategy's primary sort value, higher is better: economy ``-blended price``,
    quality ``100 * category_rank + quality``, balanced ``balanced_score``. ``reason`` may be given as
    a function that writes it: it is then written on first read, once (a router reads the first
    candidate's reason only, and a plain ``select`` none). Immutable otherwise; compares by (model,
    reason, score).
    """

    __slots__ = ("_reason", "_write", "model", "score")

    def __init__(self, model: ModelSpec, reason: str | Callable[[], str], score: float) -> None:
        self.model = model
        self.score = score
        if isinstance(reason, str):
            self._reason: str | None = reason
            self._write: Callable[[], str] | None = None
        else:
            self._reason = None
            self._write = reason

    @property
    def reason(self) -> str:
        text = self._reason
        if text is None:
            write = self._write
            if write is None:  # another thread wrote it between our two reads
                return self._reason  # type: ignore[return-value]
            text = self._reason = write()  # idempotent: two threads may both write the same text
            self._write = None
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (Candidate, (self.model, self.reason, self.score))  # the text, not the function that writes it

    @property
    def id(self) -> str:
        return self.model.id

    def _key(self) -> tuple[ModelSpec, str, float]:
        return (self.model, self.reason, self.score)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Candidate):
            return NotImplemented
        return self._key() == other._key()

    def __repr__(self) -> str:
        return f"Candidate(model={self.model.id!r}, reason={self.reason!r}, score={self.score!r})"


@dataclass(slots=True)
class Selection:
    """The ranked candidates; ``explanation`` is non-empty exactly when there are none."""

    candidates: list[Candidate]
    rejected: dict[str, str]
    requirements: Requirements
    explanation: str = ""

    def ids(self) -> list[str]:
        return [c.model.id for c in self.candidates]

    def __bool__(self) -> bool:
        return bool(self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def to_dict(self, explain: bool = False) -> dict[str, Any]:
        """The documented JSON shape: ``{"candidates": [{"id", "reason"}], "rejected": [{"id", "why"}]}``;
        ``rejected`` (sorted by id) only when ``explain``."""
        out: dict[str, Any] = {"candidates": [{"id": c.model.id, "reason": c.reason} for c in self.candidates]}
        if explain:
            out["rejected"] = [{"id": mid, "why": why} for mid, why in sorted(self.rejected.items())]
        return out

    def copy(self) -> Selection:
        return Selection(list(self.candidates), dict(self.rejected), self.requirements, self.explanation)


class CatalogLike(Protocol):
    """What selection reads from a catalog."""

    @property
    def version(self) -> int: ...

    def models(self) -> Sequence[ModelSpec] | Iterable[ModelSpec]: ...


# ------------------------------------------------------------------------------------------ bitsets

_BYTE_BITS: tuple[tuple[int, ...], ...] = tuple(tuple(b for b in range(8) if v >> b & 1) for v in range(256))


def _mask_of(indices: Iterable[int], n: int) -> int:
    buf = bytearray((n + 7) // 8)
    for i in indices:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def _indices(mask: int) -> list[int]:
    """Set bits of ``mask``, ascending."""
    out: list[int] = []
    if not mask:
        return out
    data = mask.to_bytes((mask.bit_length() + 7) // 8, "little")
    for pos, byte in enumerate(data):
        if byte:
            base = pos << 3
            out.extend(base + b for b in _BYTE_BITS[byte])
    return out


class _SortedField:
    """Models sorted by one numeric field; ``at_least(x)``/``at_most(x)`` masks, memoized per bisect position."""

    __slots__ = ("_at_least", "_at_most", "_keys", "_n", "_order")

    def __init__(self, values: Sequence[float]) -> None:
        self._n = len(values)
        self._order = sorted(range(self._n), key=values.__getitem__)
        self._keys = [values[i] for i in self._order]
        self._at_least: dict[int, int] = {}
        self._at_most: dict[int, int] = {}

    def at_least(self, x: float) -> int:
        p = bisect_left(self._keys, x)
        m = self._at_least.get(p)
        if m is None:
            m = self._at_least[p] = _mask_of(self._order[p:], self._n)
        return m

    def at_most(self, x: float) -> int:
        p = bisect_right(self._keys, x)
        m = self._at_most.get(p)
        if m is None:
            m = self._at_most[p] = _mask_of(self._order[:p], self._n)
        return m


def _group(n: int, keyed: Iterable[tuple[int, Iterable[str]]]) -> dict[str, int]:
    members: dict[str, list[int]] = {}
    for i, keys in keyed:
        for k in keys:
            members.setdefault(k, []).append(i)
    return {k: _mask_of(v, n) for k, v in members.items()}


class _Index:
    """Everything precomputed for one catalog version."""

    def __init__(self, specs: Iterable[ModelSpec], version: int) -> None:
        self.version = version
        self.specs: list[ModelSpec] = sorted(specs, key=lambda s: s.id)
        n = self.n = len(self.specs)
        s = self.specs
        self.all = (1 << n) - 1
        self.by_cap = _group(n, ((i, m.capabilities) for i, m in enumerate(s)))
        self.by_provider = _group(n, ((i, (m.provider,)) for i, m in enumerate(s)))
        self.by_category = _group(n, ((i, (m.category,)) for i, m in enumerate(s)))
        self.by_mode = _group(n, ((i, (m.mode,)) for i, m in enumerate(s)))
        self.by_in_mod = _group(n, ((i, m.input_modalities) for i, m in enumerate(s)))
        self.by_out_mod = _group(n, ((i, m.output_modalities) for i, m in enumerate(s)))
        self.deprecated = _mask_of((i for i, m in enumerate(s) if m.deprecation.deprecated), n)
        self.live = self.all ^ self.deprecated
        self.pos = {m.id: i for i, m in enumerate(s)}
        self.context = _SortedField([m.context_window for m in s])
        self.max_output = _SortedField([m.max_output_tokens for m in s])
        self.input_price = _SortedField([m.pricing.input_per_mtok for m in s])
        self.output_price = _SortedField([m.pricing.output_per_mtok for m in s])
        self.blended = [blended_price(m) for m in s]
        self.quality = [_quality(m) for m in s]
        self.balanced = [balanced_score(m) for m in s]
        self.ctx_text = [f"{m.context_window:,} ctx" for m in s]
        q, b = self.quality, self.blended
        keys: dict[str, Callable[[int], tuple[Any, ...]]] = {
            "economy": lambda i: (b[i], -q[i], i),
            "quality": lambda i: (-CATEGORY_RANK.get(s[i].category, 0), -q[i],
                                  -TIER_RANK.get(s[i].cost_tier or "", 0), -s[i].context_window, i),
            "balanced": lambda i: (-self.balanced[i], b[i], i),
        }
        self.rank: dict[str, list[int]] = {}
        """strategy -> each model's position in that strategy's ranking of the whole catalog."""
        self.order: dict[tuple[str, str], list[int]] = {}
        """(strategy, mode) -> the mode's models, best first."""
        for name, key in keys.items():
            order = sorted(range(n), key=key)
            rank = [0] * n
            for r, i in enumerate(order):
                rank[i] = r
            self.rank[name] = rank
            for mode in MODES:
                self.order[(name, mode)] = [i for i in order if s[i].mode == mode]
        self.score: dict[str, list[float]] = {
            "economy": [-x for x in b],
            "quality": [100.0 * CATEGORY_RANK.get(m.category, 0) + q[i] for i, m in enumerate(s)],
            "balanced": self.balanced,
        }

    def providers_mask(self, names: Iterable[str]) -> int:
        m = 0
        for p in names:
            m |= self.by_provider.get(p, 0)
        return m


# ------------------------------------------------------------------------------------------ checks

Hint = Callable[["_Index", int, str], str]
"""``hint(index, pool, phrase)``: what the models meeting every *other* requirement (``pool``,
described by ``phrase``) offer for this one."""


@dataclass(frozen=True, slots=True)
class _Check:
    """One active requirement: the mask of models that pass it and how to say why one fails."""

    name: str
    label: str
    """How the requirement reads in an explanation, e.g. ``min_context 200,000``."""
    mask: int
    why: Callable[[ModelSpec], str]
    hint: Hint
    user: bool = True
    """False for the implicit checks (mode, deprecated) that the caller did not spell out."""


def _pool_phrase(n: int, mode: str, others: Sequence[str]) -> str:
    text = f"the one {mode} model" if n == 1 else f"the {n:,} {mode} models"
    if others:
        text += " meeting " + ", ".join(others)
    return text


def _distinct(idx: _Index, pool: int, attr: Callable[[ModelSpec], str], limit: int = 6) -> str:
    values = sorted({attr(idx.specs[i]) for i in _indices(pool)})
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _suggest(value: str, vocabulary: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(vocabulary), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _validate(req: Requirements, strategy: str) -> None:
    """Reject values outside the vocabularies: a typo is a configuration error, not 'no match'."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}",
                          key="strategy")
    if req.mode not in MODES:
        raise ConfigError(f"unknown mode {req.mode!r}; expected chat or embedding", key="mode")
    for cap in sorted(req.capabilities):
        if cap not in CAPABILITIES:
            raise ConfigError(f"unknown capability {cap!r}{_suggest(cap, CAPABILITIES)} "
                              f"(the vocabulary: {', '.join(sorted(CAPABILITIES))})", key="capabilities")
    if req.category is not None and req.category not in CATEGORIES:
        raise ConfigError(f"unknown category {req.category!r}{_suggest(req.category, CATEGORIES)} "
                          f"(expected one of {', '.join(CATEGORIES)})", key="category")
    if req.response_format is not None and req.response_format not in RESPONSE_FORMATS:
        raise ConfigError(f"unknown response_format {req.response_format!r}; expected json, json_schema or text",
                          key="response_format")
    for key, mods in (("input_modalities", req.input_modalities), ("output_modalities", req.output_modalities)):
        for m in sorted(mods):
            if m not in MODALITIES:
                raise ConfigError(f"unknown modality {m!r}{_suggest(m, MODALITIES)} "
                                  f"(expected some of {', '.join(sorted(MODALITIES))})", key=key)
    for key, value in (("min_context", req.min_context), ("min_output_tokens", req.min_output_tokens)):
        if value < 0:
            raise ConfigError(f"must be >= 0, got {value}", key=key)
    for key, price in (("max_input_price", req.max_input_price), ("max_output_price", req.max_output_price)):
        if price is not None and not price >= 0:  # also rejects NaN
            raise ConfigError(f"must be a price >= 0 in USD per million tokens, got {price}", key=key)


def validate_requirements(req: Requirements) -> None:
    """Raise ``ConfigError`` (with ``key`` set) for a value outside the vocabularies or a negative limit."""
    _validate(req, req.effective_strategy)


def required_capabilities(req: Requirements) -> frozenset[str]:
    """``req.capabilities`` plus ``tool_calling`` when ``req.tool_calling`` is set."""
    return req.capabilities | {"tool_calling"} if req.tool_calling else req.capabilities


def _deprecation_why(m: ModelSpec) -> str:
    d = m.deprecation
    extras = []
    if d.date is not None:
        extras.append(f"retires {d.date.isoformat()}")
    if d.replacement:
        extras.append(f"replacement {d.replacement}")
    return "deprecated" + (f" ({'; '.join(extras)})" if extras else "")


def _largest(attr: Callable[[ModelSpec], int], what: str) -> Hint:
    return lambda i, pool, phrase: (
        f"the largest {what} among {phrase} is {max(attr(i.specs[j]) for j in _indices(pool)):,}")


def _cheapest(attr: Callable[[ModelSpec], float], what: str) -> Hint:
    return lambda i, pool, phrase: (
        f"the cheapest {what} among {phrase} is {_fmt_price(min(attr(i.specs[j]) for j in _indices(pool)))}/M")


def _providers_hint(prefix: str) -> Hint:
    return lambda i, pool, phrase: f"{prefix} {phrase}: {_distinct(i, pool, lambda m: m.provider)}"


def _all_from(kind: str) -> Hint:
    return lambda i, pool, phrase: (f"{phrase} {'is' if pool.bit_count() == 1 else 'are all'} from {kind} "
                                    f"providers: {_distinct(i, pool, lambda m: m.provider)}")


LazyCheck = tuple[int, Callable[[int], _Check]]
"""An active check as ``_build_checks`` gives it: its mask, and a function of that mask that writes the
described ``_Check`` (label, why, hint). Only an explanation needs the description, so a plain ``select``
intersects the masks and never builds one."""


def _build_checks(idx: _Index, req: Requirements, providers: frozenset[str] | None,
                  exclude: frozenset[str]) -> list[LazyCheck]:
    """The active checks in ``CHECK_ORDER``; a requirement left at its default adds no check. Each
    described ``_Check`` is written on demand (``describe_checks``); its texts close over this call's
    values only (names bound once per call, or bound as defaults inside the modality loop)."""
    checks: list[LazyCheck] = []
    mode = req.mode
    checks.append((idx.by_mode.get(mode, 0), lambda mask: _Check(
        "mode", f"mode {mode}", mask, lambda m: f"mode {m.mode}, need {mode}",
        lambda _i, _p, _ph: f"the catalog has no {mode} models", user=False)))
    if not req.include_deprecated:
        checks.append((idx.live, lambda mask: _Check(
            "deprecated", "not deprecated", mask, _deprecation_why,
            lambda i, pool, phrase: (f"{phrase} {'is' if pool.bit_count() == 1 else 'are all'} deprecated "
                                     f"({_distinct(i, pool, lambda m: m.id, 4)}); include_deprecated would allow "
                                     f"{'it' if pool.bit_count() == 1 else 'them'}"),
            user=False)))
    if exclude:
        gone = _mask_of((idx.pos[e] for e in exclude if e in idx.pos), idx.n)
        checks.append((idx.all ^ gone, lambda mask: _Check(
            "excluded", f"not excluded ({len(exclude)} excluded)", mask,
            lambda m: "excluded by the caller",
            lambda i, pool, phrase: (f"{phrase} {'is' if pool.bit_count() == 1 else 'are all'} excluded "
                                     f"({_distinct(i, pool, lambda m: m.id, 4)})"))))
    if req.provider is not None:
        want = req.provider
        checks.append((idx.by_provider.get(want, 0), lambda mask: _Check(
            "provider", f"provider {want}", mask,
            lambda m: f"provider {m.provider}, need {want}",
            (lambda _i, _p, _ph: f"provider {want} has no models in the catalog") if want not in idx.by_provider
            else _providers_hint("providers among"))))
    if req.providers_deny:
        deny = req.providers_deny
        checks.append((idx.all ^ idx.providers_mask(deny), lambda mask: _Check(
            "providers_deny", f"providers_deny {', '.join(sorted(deny))}", mask,
            lambda m: f"provider {m.provider} is denied", _all_from("denied"))))
    if req.providers_allow:
        allow = req.providers_allow

        def allow_check(mask: int) -> _Check:
            allowed_text = ", ".join(sorted(allow))
            return _Check("providers_allow", f"providers_allow {allowed_text}", mask,
                          lambda m: f"provider {m.provider} not in allowed providers ({allowed_text})",
                          _providers_hint("providers among"))

        checks.append((idx.providers_mask(allow), allow_check))
    if providers is not None:
        checks.append((idx.providers_mask(providers), lambda mask: _Check(
            "configured", "a configured provider", mask,
            lambda m: f"provider {m.provider} not configured",
            _all_from("unconfigured"))))
    if req.category is not None:
        cat = req.category
        checks.append((idx.by_category.get(cat, 0), lambda mask: _Check(
            "category", f"category {cat}", mask,
            lambda m: f"category {m.category}, need {cat}",
            lambda i, pool, phrase: f"categories among {phrase}: {_distinct(i, pool, lambda m: m.category)}")))
    caps = required_capabilities(req)
    if caps:
        cap_mask = idx.all
        for c in caps:
            cap_mask &= idx.by_cap.get(c, 0)

        def caps_check(mask: int) -> _Check:
            def caps_hint(i: _Index, pool: int, phrase: str) -> str:
                members = _indices(pool)
                counts = ", ".join(f"{sum(1 for j in members if c in i.specs[j].capabilities):,} have {c}"
                                   for c in sorted(caps))
                return f"of {phrase}, {counts}"

            return _Check("capabilities", ("capability " if len(caps) == 1 else "capabilities ") + ", ".join(
                sorted(caps)), mask, lambda m: f"lacks {', '.join(sorted(caps - m.capabilities))}", caps_hint)

        checks.append((cap_mask, caps_check))
    if req.response_format is not None and RESPONSE_FORMATS[req.response_format]:
        rf = req.response_format
        rf_caps = RESPONSE_FORMATS[rf]

        def rf_check(mask: int) -> _Check:
            rf_text = " or ".join(rf_caps)
            return _Check("response_format", f"response_format {rf}", mask,
                          lambda m: f"lacks {rf_text} (response_format {rf})",
                          lambda _i, _p, phrase: f"none of {phrase} has {rf_text}")

        checks.append((functools.reduce(lambda a, c: a | idx.by_cap.get(c, 0), rf_caps, 0), rf_check))
    for name, mods, table, direction in (
        ("input_modalities", req.input_modalities, idx.by_in_mod, "input"),
        ("output_modalities", req.output_modalities, idx.by_out_mod, "output"),
    ):
        if not mods:
            continue
        m_mask = idx.all
        for mod in mods:
            m_mask &= table.get(mod, 0)

        def mod_check(mask: int, n: str = name, wanted: frozenset[str] = frozenset(mods), d: str = direction
                      ) -> _Check:
            wanted_text = ", ".join(sorted(wanted))
            return _Check(n, f"{wanted_text} {d}", mask,
                          lambda m: f"no {', '.join(sorted(wanted - getattr(m, n)))} {d}",
                          lambda _i, _p, phrase: f"none of {phrase} has {wanted_text} {d}")

        checks.append((m_mask, mod_check))
    if req.min_context > 0:
        need = req.min_context
        checks.append((idx.context.at_least(need), lambda mask: _Check(
            "min_context", f"min_context {need:,}", mask,
            lambda m: f"context window {m.context_window:,} < {need:,}",
            _largest(lambda m: m.context_window, "window"))))
    if req.min_output_tokens > 0:
        need_out = req.min_output_tokens
        checks.append((idx.max_output.at_least(need_out), lambda mask: _Check(
            "min_output_tokens", f"min_output_tokens {need_out:,}", mask,
            lambda m: f"max output {m.max_output_tokens:,} < {need_out:,}",
            _largest(lambda m: m.max_output_tokens, "max output"))))
    if req.max_input_price is not None:
        cap_in = req.max_input_price
        checks.append((idx.input_price.at_most(cap_in), lambda mask: _Check(
            "max_input_price", f"max_input_price {_fmt_price(cap_in)}/M", mask,
            lambda m: f"input {_fmt_price(m.pricing.input_per_mtok)}/M > {_fmt_price(cap_in)}/M",
            _cheapest(lambda m: m.pricing.input_per_mtok, "input"))))
    if req.max_output_price is not None:
        cap_out = req.max_output_price
        checks.append((idx.output_price.at_most(cap_out), lambda mask: _Check(
            "max_output_price", f"max_output_price {_fmt_price(cap_out)}/M", mask,
            lambda m: f"output {_fmt_price(m.pricing.output_per_mtok)}/M > {_fmt_price(cap_out)}/M",
            _cheapest(lambda m: m.pricing.output_per_mtok, "output"))))
    return checks


def describe_checks(checks: Sequence[LazyCheck]) -> list[_Check]:
    """The described checks, for an explanation."""
    return [make(mask) for mask, make in checks]


def _explain_empty(idx: _Index, mode: str, checks: Sequence[_Check]) -> str:
    """Name the requirement(s) that leave nothing, each with what the catalog offers instead.

    A requirement is named when dropping it alone would leave candidates (the mode never is: it is
    what was asked for). When no single one is to blame, the first in check order that empties the
    set is named, against the earlier ones.
    """
    n = len(checks)
    prefix = [idx.all] * (n + 1)  # prefix[j]: models passing checks[:j]
    for j, c in enumerate(checks):
        prefix[j + 1] = prefix[j] & c.mask
    suffix = [idx.all] * (n + 1)  # suffix[j]: models passing checks[j:]
    for j in range(n - 1, -1, -1):
        suffix[j] = suffix[j + 1] & checks[j].mask
    parts: list[str] = []
    for j, c in enumerate(checks):
        pool = prefix[j] & suffix[j + 1]
        if pool and c.name != "mode":  # the mode asked for is never the thing to relax
            others = [o.label for k, o in enumerate(checks) if k != j and o.user]
            parts.append(f"{c.label} ({c.hint(idx, pool, _pool_phrase(pool.bit_count(), mode, others))})")
    if parts:
        return "no model meets: " + "; ".join(parts)
    for j, c in enumerate(checks):
        if not prefix[j + 1]:
            pool = prefix[j]
            if not pool:  # only for the first check, on an empty catalog
                return f"no model meets: {c.label} (the catalog has no models)"
            earlier = [o.label for o in checks[:j] if o.user]
            text = f"no model meets: {c.label} ({c.hint(idx, pool, _pool_phrase(pool.bit_count(), mode, earlier))})"
            if j + 1 < n and c.name != "mode":
                text += "; relaxing it alone is not enough"
            return text
    raise AssertionError("an empty selection always has a check that empties it")


# ------------------------------------------------------------------------------------------ selector


class Selector:
    """Selects models from one catalog. Indexes are rebuilt when ``catalog.version`` changes.

    Thread-safe: an index is immutable once built (its lazily memoized threshold masks are
    idempotent), and the result cache is ``functools.lru_cache``.
    """

    def __init__(self, catalog: CatalogLike, *, cache_size: int = CACHE_SIZE) -> None:
        self._catalog_ref: Callable[[], CatalogLike | None] = lambda: catalog
        self._index: _Index | None = None
        self._lock = threading.Lock()
        self._cached = functools.lru_cache(maxsize=cache_size)(self._compute)

    @property
    def catalog(self) -> CatalogLike:
        catalog = self._catalog_ref()
        if catalog is None:
            raise ReferenceError("the catalog of this selector no longer exists")
        return catalog

    def _current(self, version: int) -> _Index:
        idx = self._index
        if idx is None or idx.version != version:
            with self._lock:
                idx = self._index
                if idx is None or idx.version != version:
                    idx = _Index(self.catalog.models(), version)
                    self._index = idx
                    self._cached.cache_clear()
        return idx

    def select(self, req: Requirements, *, explain: bool = False, limit: int | None = None,
               providers: frozenset[str] | None = None, exclude: frozenset[str] = frozenset()) -> Selection:
        """Rank the models that meet ``req``.

        ``providers``: the providers usable right now (e.g. those with credentials), or ``None`` for
        no restriction; combined with ``req.providers_allow``. ``exclude``: model ids to leave out
        (e.g. targets already tried). ``explain`` fills ``Selection.rejected`` with the first failed
        requirement of every other model. Never falls back silently: no match gives an empty list and
        an ``explanation``.
        """
        if limit is not None and limit < 1:
            raise ConfigError(f"limit must be >= 1, got {limit}", key="limit")
        if providers is not None and not isinstance(providers, frozenset):
            providers = frozenset(providers)
        if not isinstance(exclude, frozenset):
            exclude = frozenset(exclude)
        version = self.catalog.version
        if self._index is None or self._index.version != version:
            self._current(version)
        return self._cached(req, explain, limit, providers, exclude, version).copy()

    def cache_info(self) -> Any:
        return self._cached.cache_info()

    def _compute(self, req: Requirements, explain: bool, limit: int | None,
                 providers: frozenset[str] | None, exclude: frozenset[str], version: int) -> Selection:
        idx = self._current(version)
        strategy = req.effective_strategy
        _validate(req, strategy)
        checks = _build_checks(idx, req, providers, exclude)
        mask = idx.all
        for check_mask, _ in checks:
            mask &= check_mask
        count = mask.bit_count()
        chosen = self._ranked(idx, strategy, req.mode, mask, count, limit)
        candidates = self._candidates(idx, req, strategy, chosen, count)
        described = describe_checks(checks) if explain or not candidates else []
        rejected = self._rejections(idx, described, mask, strategy, chosen, count) if explain else {}
        explanation = "" if candidates else _explain_empty(idx, req.mode, described)
        return Selection(candidates, rejected, req, explanation)

    @staticmethod
    def _ranked(idx: _Index, strategy: str, mode: str, mask: int, count: int, limit: int | None) -> list[int]:
        """The matching models best first, at most ``limit``."""
        if count == 0:
            return []
        want = count if limit is None else min(limit, count)
        order = idx.order[(strategy, mode)]
        # walking the mode's precomputed order costs ~ want * len(order) / count bit tests;
        # sorting the matches by their precomputed rank costs ~ count
        if want * len(order) <= count * count:
            data = mask.to_bytes((idx.n + 7) // 8, "little")
            out: list[int] = []
            for i in order:
                if data[i >> 3] >> (i & 7) & 1:
                    out.append(i)
                    if len(out) == want:
                        break
            return out
        rank = idx.rank[strategy]
        ranked = sorted(_indices(mask), key=rank.__getitem__)
        return ranked[:want]

    @staticmethod
    def _candidates(idx: _Index, req: Requirements, strategy: str, chosen: list[int],
                    count: int) -> list[Candidate]:
        if not chosen:
            return []
        score = idx.score[strategy]

        def reason(k: int, i: int) -> str:
            facts_caps = sorted(required_capabilities(req))
            if req.response_format in ("json", "json_schema"):
                facts_caps.append(f"{req.response_format} output")
            caps_text = ", ".join(facts_caps)
            of = f"of {count:,} matching"
            m = idx.specs[i]
            if strategy == "economy":
                head = ("cheapest" if k == 1 else f"#{k} cheapest") + f" {of} (blended {_fmt_price(idx.blended[i])}/M)"
            elif strategy == "quality":
                head = (("highest quality" if k == 1 else f"#{k} by quality") +
                        f" {of} ({m.category}, {_fmt_quality(m)}, {m.cost_tier} cost tier)")
            else:
                head = (("best balance" if k == 1 else f"#{k} by balance") +
                        f" {of} (score {idx.balanced[i]:.3f}: {m.category}, {_fmt_quality(m)}, "
                        f"blended {_fmt_price(idx.blended[i])}/M)")
            tail = f"{caps_text}, {idx.ctx_text[i]}" if caps_text else idx.ctx_text[i]
            return f"{head}; {tail}"

        # reasons are written when read (functools.partial binds k and i now)
        return [Candidate(idx.specs[i], functools.partial(reason, k, i), score[i]) for k, i in enumerate(chosen, 1)]

    @staticmethod
    def _rejections(idx: _Index, checks: Sequence[_Check], mask: int, strategy: str, chosen: list[int],
                    count: int) -> dict[str, str]:
        """Every model that is not a candidate -> the first check it fails, or its rank past the limit."""
        rejected: dict[str, str] = {}
        for i in _indices(idx.all ^ mask):
            bit = 1 << i
            m = idx.specs[i]
            for c in checks:
                if not c.mask & bit:
                    rejected[m.id] = c.why(m)
                    break
        if count > len(chosen):
            limit = len(chosen)
            rank = idx.rank[strategy]
            ordered = sorted(_indices(mask), key=rank.__getitem__)
            for k, i in enumerate(ordered[limit:], limit + 1):
                rejected[idx.specs[i].id] = f"ranked #{k} of {count:,} matching, past limit {limit}"
        return rejected


_selectors: weakref.WeakKeyDictionary[Any, Selector] = weakref.WeakKeyDictionary()
_selectors_lock = threading.Lock()


def selector_for(catalog: CatalogLike) -> Selector:
    """The shared ``Selector`` of a catalog (held weakly: it goes when the catalog goes)."""
    try:
        sel = _selectors.get(catalog)
    except TypeError:  # not weak-referenceable: no sharing
        return Selector(catalog)
    if sel is None:
        with _selectors_lock:
            sel = _selectors.get(catalog)
            if sel is None:
                sel = Selector(catalog)
                sel._catalog_ref = weakref.ref(catalog)  # the map's value must not keep its key alive
                _selectors[catalog] = sel
    return sel


def select(catalog: CatalogLike, req: Requirements, **kw: Any) -> Selection:
    """``Selector(catalog).select(req, **kw)`` with the selector cached per catalog."""
    return selector_for(catalog).select(req, **kw)
