"""The catalog store: validated ``ModelSpec``/``ProviderSpec`` objects behind lookup indexes.

Owns: ``Catalog`` (lookup by id, alias or unambiguous bare name; listing by provider, family,
capability and mode; parameter mapping; deprecation migration; costs; token-limit checks;
overlays that merge into a new catalog), and the small result types it returns (``CostBreakdown``,
``TokenLimitCheck``, ``ModelDeprecatedWarning``). Parameter checks live in ``catalog.validation``.

Indexes are built incrementally, so construction is linear in the number of models and ``add``
is constant time. ``version`` increases on every mutation; selection caches key on it.

Must not touch: file I/O and YAML (``catalog.loader``), selection or ranking policy, the network.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from modelplex.catalog.params import PARAMS, param_name
from modelplex.catalog.schema import PROTOCOLS, ModelSpec, ProviderSpec
from modelplex.catalog.validation import ParameterIssue, deprecation_text, validate_parameters
from modelplex.errors import CatalogError, ConfigError, UnknownModelError, did_you_mean, invalid_value_message

if TYPE_CHECKING:
    from modelplex.types import Usage

logger = logging.getLogger("modelplex.catalog")

DEFAULT_SAFETY_MARGIN = 100
"""Tokens kept free by ``check_token_limits`` for counting error and framing."""

_DERIVED_CAPABILITIES = frozenset({"chat", "embeddings", "long_context"})
"""Capabilities the schema derives from ``mode`` and ``context_window``; re-derived on merge."""

_MODEL_MERGED_FIELDS = ("pricing", "deprecation")
_PROVIDER_MERGED_FIELDS = ("profile", "extra_headers")


class ModelDeprecatedWarning(DeprecationWarning):
    """A deprecated model was requested. ``model`` is its id, ``replacement`` what it migrates to."""

    def __init__(self, message: str, *, model: str = "", replacement: str | None = None) -> None:
        self.model = model
        self.replacement = replacement
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """The cost of one call in USD, by kind of token. ``total_usd`` is the sum of the parts."""

    input_usd: float
    cached_input_usd: float
    cache_write_usd: float
    output_usd: float
    reasoning_usd: float
    total_usd: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TokenLimitCheck:
    """Whether a prompt (and an optional output budget) fits a model's window.

    ``available_output`` is how many output tokens remain after the input and the safety margin,
    capped by the model's output limit (0 when nothing is left).
    """

    fits: bool
    input_tokens: int
    max_output_tokens: int | None
    context_window: int
    available_output: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _price_parts(spec: ModelSpec, input_tokens: int, output_tokens: int, cached_tokens: int,
                 cache_write_tokens: int, reasoning_tokens: int
                 ) -> tuple[float, float, float, float, float]:
    """USD for (uncached input, cache reads, cache writes, visible output, reasoning)."""
    p = spec.pricing
    inp = p.input_per_mtok
    out = p.output_per_mtok
    cached_price = inp if p.cached_input_per_mtok is None else p.cached_input_per_mtok
    write_price = inp if p.cache_write_per_mtok is None else p.cache_write_per_mtok
    reasoning_price = out if p.reasoning_per_mtok is None else p.reasoning_per_mtok
    uncached = input_tokens - cached_tokens - cache_write_tokens
    if uncached < 0:
        uncached = 0
    visible = output_tokens - reasoning_tokens
    if visible < 0:
        visible = 0
    return (
        uncached * inp / 1e6,
        cached_tokens * cached_price / 1e6,
        cache_write_tokens * write_price / 1e6,
        visible * out / 1e6,
        reasoning_tokens * reasoning_price / 1e6,
    )


def config_error_from_validation(exc: ValidationError, *, file: str | None = None, key_prefix: str = "",
                                 hint: str = "") -> ConfigError:
    """A ``ConfigError`` naming the key path of the first error (``models[3].pricing.input_per_mtok``)
    and saying what was expected, with any further errors listed in the message, then ``hint``. Values
    are quoted only where ``errors.invalid_value_message`` allows it."""
    parts: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        key = key_prefix
        for loc in err.get("loc", ()):
            key += f"[{loc}]" if isinstance(loc, int) else (f".{loc}" if key else str(loc))
        msg = str(err.get("msg", "invalid value"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        kind = err.get("type", "")
        if kind == "missing":
            msg = "required field is missing"
        elif kind == "extra_forbidden":
            msg = "unknown field (not part of the schema; see docs/catalog.md)"
        elif "input" in err:
            msg = invalid_value_message(str(kind), msg, key, err["input"])
        parts.append((key, msg))
    if not parts:
        return ConfigError(str(exc) + hint, file=file, key=key_prefix or None)
    first_key, first_msg = parts[0]
    message = first_msg
    if len(parts) > 1:
        message += "; also " + "; ".join(f"{k or '<entry>'}: {m}" for k, m in parts[1:])
    return ConfigError(message + hint, file=file, key=first_key or None)


def _merge(base: dict[str, Any], changes: Mapping[str, Any], nested: tuple[str, ...]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if key in nested and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _explicit_model_fields(spec: ModelSpec) -> dict[str, Any]:
    """The fields a spec was built from, without values the schema derived (cost tier, display
    name, mode/window capabilities), so a merge re-derives them from the merged facts."""
    data = spec.model_dump(exclude_unset=True)
    if "capabilities" in data:
        data["capabilities"] = set(data["capabilities"]) - _DERIVED_CAPABILITIES
    if "pricing" in data:
        data["pricing"] = spec.pricing.model_dump(exclude_unset=True)
    if "deprecation" in data:
        data["deprecation"] = spec.deprecation.model_dump(exclude_unset=True)
    return data


def _fmt(n: int) -> str:
    return f"{n:,}"


class Catalog:
    """Every known model and provider, indexed for lookup and listing.

    Lookups accept a canonical id (``openai/gpt-4o``), an alias, or a bare model name
    (``gpt-4o``) when exactly one model has it, with a case-insensitive fallback.
    Specs are immutable; ``add``/``add_provider`` replace whole entries and bump ``version``.
    """

    def __init__(self, models: Iterable[ModelSpec] = (), providers: Iterable[ProviderSpec] = ()) -> None:
        self.version = 0
        self._models: dict[str, ModelSpec] = {}
        self._ids_lower: dict[str, set[str]] = {}
        self._aliases: dict[str, set[str]] = {}
        self._aliases_lower: dict[str, set[str]] = {}
        self._names: dict[str, set[str]] = {}
        self._names_lower: dict[str, set[str]] = {}
        self._by_provider: dict[str, set[str]] = {}
        self._by_family: dict[str, set[str]] = {}
        self._by_capability: dict[str, set[str]] = {}
        self._by_mode: dict[str, set[str]] = {}
        self._providers: dict[str, ProviderSpec] = {}
        self._sorted: list[ModelSpec] | None = None
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()
        for spec in models:
            self._insert(spec)
        for provider in providers:
            self._providers[provider.name] = provider

    # ------------------------------------------------------------------ indexes

    @staticmethod
    def _index_add(index: dict[str, set[str]], key: str, model_id: str) -> None:
        bucket = index.get(key)
        if bucket is None:
            index[key] = {model_id}
        else:
            bucket.add(model_id)

    @staticmethod
    def _index_remove(index: dict[str, set[str]], key: str, model_id: str) -> None:
        bucket = index.get(key)
        if bucket is not None:
            bucket.discard(model_id)
            if not bucket:
                del index[key]

    def _index_keys(self, spec: ModelSpec) -> Iterator[tuple[dict[str, set[str]], str]]:
        yield self._ids_lower, spec.id.lower()
        for alias in spec.aliases:
            yield self._aliases, alias
            yield self._aliases_lower, alias.lower()
        yield self._names, spec.model_name
        yield self._names_lower, spec.model_name.lower()
        yield self._by_provider, spec.provider
        if spec.family:
            yield self._by_family, spec.family
        for cap in spec.capabilities:
            yield self._by_capability, cap
        yield self._by_mode, spec.mode

    def _insert(self, spec: ModelSpec) -> None:
        old = self._models.get(spec.id)
        if old is not None:
            for index, key in self._index_keys(old):
                self._index_remove(index, key, old.id)
        self._models[spec.id] = spec
        for index, key in self._index_keys(spec):
            self._index_add(index, key, spec.id)
        self._sorted = None

    # ------------------------------------------------------------------ lookup

    @staticmethod
    def _single(index: dict[str, set[str]], key: str) -> str | None:
        ids = index.get(key)
        if ids is not None and len(ids) == 1:
            return next(iter(ids))
        return None

    def find(self, id_or_alias: str) -> ModelSpec | None:
        """The model for an id, alias or unambiguous bare name, or ``None``."""
        spec = self._models.get(id_or_alias)
        if spec is not None:
            return spec
        for index, key in ((self._aliases, id_or_alias), (self._names, id_or_alias)):
            found = self._single(index, key)
            if found is not None:
                return self._models[found]
        lower = id_or_alias.lower()
        for index in (self._ids_lower, self._aliases_lower, self._names_lower):
            found = self._single(index, lower)
            if found is not None:
                return self._models[found]
        return None

    def get(self, id_or_alias: str) -> ModelSpec:
        """Like ``find``, but raises ``UnknownModelError`` with suggestions (the candidates when a
        bare name or alias is ambiguous, close matches otherwise)."""
        spec = self.find(id_or_alias)
        if spec is not None:
            return spec
        raise UnknownModelError(id_or_alias, self.ambiguous(id_or_alias) or self.suggest(id_or_alias))

    def ambiguous(self, name: str) -> builtins.list[str]:
        """Ids that an alias or bare name could mean when it names more than one model."""
        lower = name.lower()
        for index, key in ((self._aliases, name), (self._names, name), (self._aliases_lower, lower),
                           (self._names_lower, lower), (self._ids_lower, lower)):
            ids = index.get(key)
            if ids and len(ids) > 1:
                return sorted(ids)
        return []

    def suggest(self, name: str, n: int = 5) -> builtins.list[str]:
        """Close matches among ids, aliases and bare names, as catalog ids (an alias or a bare name maps back
        to its id: the suggestion names one model, whatever form the mistyped name had)."""
        lower = name.lower()
        choices: dict[str, str] = {}
        for model_id in self._models:
            choices.setdefault(model_id.lower(), model_id)
        for alias, ids in self._aliases.items():
            choices.setdefault(alias.lower(), min(ids))
        for bare, ids in self._names.items():
            choices.setdefault(bare.lower(), min(ids))
        matches = difflib.get_close_matches(lower, choices.keys(), n=n * 2, cutoff=0.6)
        out: builtins.list[str] = []
        for match in matches:
            target = choices[match]
            if target not in out:
                out.append(target)
        return out[:n]

    def _resolve(self, model: str | ModelSpec) -> ModelSpec:
        if isinstance(model, ModelSpec):
            return model
        return self.get(model)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, ModelSpec):
            return self._models.get(item.id) == item
        return isinstance(item, str) and self.find(item) is not None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models())

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return f"Catalog({len(self._models)} models, {len(self._providers)} providers, version={self.version})"

    # ------------------------------------------------------------------ listing

    def models(self) -> builtins.list[ModelSpec]:
        """Every model, ordered by id."""
        if self._sorted is None:
            self._sorted = [self._models[k] for k in sorted(self._models)]
        return builtins.list(self._sorted)

    def list(self, *, provider: str | None = None, family: str | None = None, capability: str | None = None,
             mode: str | None = None, include_deprecated: bool = False) -> builtins.list[ModelSpec]:
        """Models matching every given filter, ordered by id; deprecated ones only on request."""
        buckets: builtins.list[set[str]] = []
        for index, key in ((self._by_provider, provider), (self._by_family, family),
                           (self._by_capability, capability), (self._by_mode, mode)):
            if key is not None:
                bucket = index.get(key)
                if not bucket:
                    return []
                buckets.append(bucket)
        if buckets:
            buckets.sort(key=len)
            ids = set(buckets[0]).intersection(*buckets[1:])
            specs = [self._models[k] for k in sorted(ids)]
        else:
            specs = self.models()
        if not include_deprecated:
            specs = [s for s in specs if not s.deprecation.deprecated]
        return specs

    def families(self) -> dict[str, builtins.list[ModelSpec]]:
        """Family name -> its models ordered by id (models without a family are left out)."""
        return {fam: [self._models[k] for k in sorted(ids)] for fam, ids in sorted(self._by_family.items())}

    def provider(self, name: str) -> ProviderSpec:
        spec = self._providers.get(name)
        if spec is None:
            known = ", ".join(sorted(self._providers)) or "none"
            raise CatalogError(f"unknown provider {name!r}; known providers: {known}")
        return spec

    def find_provider(self, name: str) -> ProviderSpec | None:
        return self._providers.get(name)

    def providers(self) -> builtins.list[ProviderSpec]:
        return [self._providers[k] for k in sorted(self._providers)]

    # ------------------------------------------------------------------ mutation

    def add(self, spec: ModelSpec, *, replace: bool = True) -> None:
        """Add a model, replacing an entry with the same id unless ``replace`` is false."""
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"Catalog.add takes a ModelSpec, not {type(spec).__name__}")
        if not replace and spec.id in self._models:
            raise CatalogError(f"model {spec.id!r} is already in the catalog")
        self._insert(spec)
        self.version += 1

    def add_provider(self, spec: ProviderSpec) -> None:
        if not isinstance(spec, ProviderSpec):
            raise TypeError(f"Catalog.add_provider takes a ProviderSpec, not {type(spec).__name__}")
        self._providers[spec.name] = spec
        self.version += 1

    def copy(self) -> Catalog:
        """A new catalog with the same (immutable) specs; mutations of either do not affect the other."""
        return Catalog(self._models.values(), self._providers.values())

    # ------------------------------------------------------------------ parameters

    def protocol_of(self, model: str | ModelSpec) -> str:
        """The wire protocol of the model's provider (``openai`` for providers the catalog lacks,
        unless the provider's name is itself a protocol)."""
        spec = self._resolve(model)
        provider = self._providers.get(spec.provider)
        if provider is not None:
            return provider.protocol
        return spec.provider if spec.provider in PROTOCOLS else "openai"

    def param_mapping(self, model: str | ModelSpec) -> dict[str, str | None]:
        """OpenAI parameter name -> the provider's name for it on this model (``None``: unsupported)."""
        spec = self._resolve(model)
        protocol = self.protocol_of(spec)
        names = [*PARAMS, *(k for k in spec.param_mappings if k not in PARAMS)]
        return {p: param_name(protocol, spec, p) for p in names}

    def default_params(self, model: str | ModelSpec) -> dict[str, Any]:
        return dict(self._resolve(model).default_params)

    def validate_parameters(self, model: str | ModelSpec, params: Mapping[str, Any], *,
                            input_tokens: int | None = None) -> builtins.list[ParameterIssue]:
        """Every problem with ``params`` (OpenAI names) for this model; empty when all is well.
        See ``catalog.validation`` for the checks."""
        spec = self._resolve(model)
        return validate_parameters(spec, self.protocol_of(spec), params, input_tokens=input_tokens)

    # ------------------------------------------------------------------ deprecation

    def replacement_of(self, spec: ModelSpec) -> ModelSpec:
        """Where ``spec``'s replacement chain ends (cycle-safe): the first model on it that is current or
        has no replacement in the catalog; ``spec`` itself when it has none. No warning (``migrate`` warns)."""
        target = spec
        seen = {spec.id}
        while target.deprecation.deprecated and target.deprecation.replacement:
            nxt = self.find(target.deprecation.replacement)
            if nxt is None or nxt.id in seen:
                break
            seen.add(nxt.id)
            target = nxt
        return target

    def migrate(self, model: str | ModelSpec) -> ModelSpec:
        """The model to use instead of a deprecated one, following replacement chains (cycle-safe).

        Returns the model itself when it is not deprecated. Warns once per model per catalog with a
        ``ModelDeprecatedWarning`` and a log line.
        """
        spec = self._resolve(model)
        if not spec.deprecation.deprecated:
            return spec
        target = self.replacement_of(spec)
        with self._warn_lock:
            first = spec.id not in self._warned
            self._warned.add(spec.id)
        if first:
            message = deprecation_text(spec)
            if target is not spec:
                message += f"; migrating to {target.id}"
            elif spec.deprecation.replacement:
                message += f" (replacement {spec.deprecation.replacement!r} is not in the catalog)"
            logger.warning("%s", message)
            warnings.warn(ModelDeprecatedWarning(message, model=spec.id,
                                                 replacement=target.id if target is not spec else None),
                          stacklevel=2)
        return target

    # ------------------------------------------------------------------ cost and limits

    def cost(self, model: str | ModelSpec, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
             reasoning_tokens: int = 0, cache_write_tokens: int = 0) -> CostBreakdown:
        """Cost in USD. ``input_tokens`` includes cached and cache-write tokens; ``output_tokens``
        includes reasoning tokens (see ``types.Usage``)."""
        spec = self._resolve(model)
        parts = _price_parts(spec, input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens)
        return CostBreakdown(input_usd=parts[0], cached_input_usd=parts[1], cache_write_usd=parts[2],
                             output_usd=parts[3], reasoning_usd=parts[4], total_usd=sum(parts))

    def cost_of_usage(self, model: ModelSpec | str, usage: Usage) -> float:
        """USD for one call's ``Usage``: the per-call hot path, arithmetic only."""
        spec = model if isinstance(model, ModelSpec) else self.get(model)
        return sum(_price_parts(spec, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                                usage.cache_write_tokens, usage.reasoning_tokens))

    def check_token_limits(self, model: str | ModelSpec, input_tokens: int, max_output_tokens: int | None = None,
                           safety_margin: int = DEFAULT_SAFETY_MARGIN) -> TokenLimitCheck:
        """Whether ``input_tokens`` (+ ``max_output_tokens`` when given) fits, keeping ``safety_margin``
        tokens free."""
        spec = self._resolve(model)
        window = spec.context_window
        room = min(window - input_tokens - safety_margin, spec.max_output_tokens)
        available = max(room, 0)
        reason = ""
        if input_tokens + safety_margin > spec.input_limit:
            reason = (f"input of {_fmt(input_tokens)} tokens (+{safety_margin} margin) exceeds the input limit of "
                      f"{_fmt(spec.input_limit)}")
        elif max_output_tokens is not None and max_output_tokens > spec.max_output_tokens:
            reason = (f"max_output_tokens {_fmt(max_output_tokens)} exceeds the model's output limit of "
                      f"{_fmt(spec.max_output_tokens)}")
        elif max_output_tokens is not None and input_tokens + max_output_tokens + safety_margin > window:
            reason = (f"input of {_fmt(input_tokens)} + output of {_fmt(max_output_tokens)} tokens "
                      f"(+{safety_margin} margin) exceeds the context window of {_fmt(window)}")
        elif available <= 0:
            reason = f"no room left for output in the context window of {_fmt(window)}"
        fits = not reason
        if fits:
            reason = f"fits: {_fmt(available)} output tokens available in a window of {_fmt(window)}"
        return TokenLimitCheck(fits=fits, input_tokens=input_tokens, max_output_tokens=max_output_tokens,
                               context_window=window, available_output=available, reason=reason)

    # ------------------------------------------------------------------ overlays

    def with_overlay(self, models: Iterable[Mapping[str, Any] | ModelSpec] = (),
                     providers: Iterable[Mapping[str, Any] | ProviderSpec] = (), *, source: str = "overlay",
                     file: str | None = None) -> Catalog:
        """A new catalog with the overlay applied; this one is unchanged.

        A model entry whose ``id`` exists merges into it (only changed fields are needed; ``pricing``
        and ``deprecation`` merge key by key); a new id must be a complete entry, and its ``provider``
        defaults to the id's prefix. Provider entries merge the same way by ``name`` (``profile`` and
        ``extra_headers`` key by key). Entries without ``source`` get ``source``. Invalid entries
        raise ``ConfigError`` naming ``file`` and the key path (``models[3].pricing.input_per_mtok``).
        """
        result = self.copy()
        result.version = self.version + 1  # a cache keyed on version alone never confuses the two
        for i, entry in enumerate(providers):
            result._providers_put(self._merged_provider(result, i, entry, file))
        for i, entry in enumerate(models):
            result._insert(self._merged_model(result, i, entry, source, file))
        return result

    def _providers_put(self, spec: ProviderSpec) -> None:
        self._providers[spec.name] = spec

    @staticmethod
    def _merged_provider(target: Catalog, i: int, entry: Mapping[str, Any] | ProviderSpec, file: str | None
                         ) -> ProviderSpec:
        if isinstance(entry, ProviderSpec):
            return entry
        key = f"providers[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"expected a mapping of provider fields, got {type(entry).__name__}", file=file, key=key)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError("a provider entry needs a name", file=file, key=key)
        key = f"providers.{name}"
        existing = target._providers.get(name)
        data = dict(entry)
        if existing is not None:
            data = _merge(existing.model_dump(exclude_unset=True), data, _PROVIDER_MERGED_FIELDS)
        try:
            return ProviderSpec.model_validate(data)
        except ValidationError as exc:
            # a new provider that is not complete may be a known one's name mistyped
            close = "" if existing is not None else did_you_mean(name, target._providers)
            hint = f"; {name!r} is not a known provider{close}" if close else ""
            raise config_error_from_validation(exc, file=file, key_prefix=key, hint=hint) from None

    @staticmethod
    def _merged_model(target: Catalog, i: int, entry: Mapping[str, Any] | ModelSpec, source: str,
                      file: str | None) -> ModelSpec:
        if isinstance(entry, ModelSpec):
            return entry
        key = f"models[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"expected a mapping of model fields, got {type(entry).__name__}", file=file, key=key)
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise ConfigError("a model entry needs an id of the form provider/model", file=file, key=f"{key}.id")
        existing = target._models.get(model_id)
        data = dict(entry)
        data.setdefault("source", source)
        if existing is not None:
            data = _merge(_explicit_model_fields(existing), data, _MODEL_MERGED_FIELDS)
        elif "provider" not in data and "/" in model_id:
            data["provider"] = model_id.split("/", 1)[0]
        try:
            return ModelSpec.model_validate(data)
        except ValidationError as exc:
            raise config_error_from_validation(exc, file=file, key_prefix=key) from None

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, Any]:
        """Counts for ``modelplex catalog stats``."""
        specs = self._models.values()
        return {
            "version": self.version,
            "models": len(self._models),
            "providers": len(self._providers),
            "families": len(self._by_family),
            "deprecated": sum(1 for s in specs if s.deprecation.deprecated),
            "by_provider": {k: len(v) for k, v in sorted(self._by_provider.items())},
            "by_mode": {k: len(v) for k, v in sorted(self._by_mode.items())},
            "by_capability": {k: len(v) for k, v in sorted(self._by_capability.items())},
            "by_cost_tier": dict(sorted(Counter(str(s.cost_tier) for s in specs).items())),
            "by_category": dict(sorted(Counter(s.category for s in specs).items())),
            "by_source": dict(sorted(Counter(s.source for s in specs).items())),
            "providers_without_spec": sorted(p for p in self._by_provider if p not in self._providers),
        }
