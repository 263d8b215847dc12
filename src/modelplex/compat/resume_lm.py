"""Seed 000 (Resume-LM's model abstraction layer for LangGraph), as a thin layer over the ``Router``.

The seed's names keep working: ``ModelRegistry`` with ``select_model(requirements)``,
``get_model`` / ``get_model_with_fallbacks(key, temperature)``, ``get_model_info``,
``fallback_paths`` and ``configure_providers``; the module functions ``estimate_token_count``,
``estimate_context_size``, ``estimate_combined_size``, ``check_token_limits``,
``ModelTrackingMixin.record_model_usage`` / ``record_model_usage``, ``analyze_model_usage`` and
``warm_up_models``; ``ModelCategory``. Each maps onto modelplex:

* requirement dicts -> ``Requirements`` (``requirements_from_seed``, table below) -> ``Planner.plan``;
* chat models -> ``integrations.langchain.ChatModelplex`` (a LangChain ``BaseChatModel``, as in the
  seed) calling the router with an explicit model, so the router applies that model's fallback path
  (``routing.fallback_paths``), breakers and retries on every call;
* token estimates -> ``catalog.tokens`` (tiktoken where possible, calibrated heuristics otherwise);
* limits -> ``Catalog.check_token_limits`` with the router's ``token_safety_margin``;
* provider configuration -> the router's ``Config`` (``providers.<name>.enabled/priority/api_key_env/
  preferred_models/fallbacks``, ``routing.fallback_paths``) followed by ``refresh_providers()``.

Deliberate differences from the seed (docs/migration.md):

* ``select_model`` has **no silent default**: when nothing meets the requirements it raises
  ``NoCandidatesError`` explaining which requirement emptied the pool, instead of returning
  ``groq/llama-3.3-70b-versatile``. Selection covers only providers with credentials.
* ``economy_mode`` false (or absent) ranks by the ``quality`` strategy, true by ``economy`` (the seed
  sorted by cost tier, highest first unless economy); a ``strategy`` key wins over both.
* Unknown model keys raise ``UnknownModelError`` (with suggestions) in ``check_token_limits`` and
  ``get_model``; ``get_model_info`` keeps the seed's ``{"error": ...}`` answer.
* Provider ``priority`` (lower first; providers without one last) orders each fallback path by the
  provider of its models, stably, and breaks ties between providers' preferred models.
* ``get_model`` and ``get_model_with_fallbacks`` return the same kind of object: the router always
  applies the configured chains; a model without a fallback path simply has none.

Seed capability words: ``tool_use``/``function_calling`` -> ``tool_calling``; ``formatting``,
``basic_reasoning``, ``instruction_following`` and category names are dropped (every chat model has
them; ``primary_category`` carries the category); any word of modelplex's vocabulary (``reasoning``,
``long_context``, ``vision`` ...) is kept; an unknown word raises ``ConfigError``. Response formats
``markdown``, ``xml``, ``yaml`` and ``text`` need nothing; ``json`` needs JSON mode.

Must not touch: selection, routing or retry logic (the planner, selector and router own them).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from modelplex.compat import default_for, resolve_router
from modelplex.config import ProviderSettings
from modelplex.errors import ConfigError, UnknownModelError
from modelplex.types import Requirements, Response

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.integrations.langchain import ChatModelplex
    from modelplex.router import Router


class ModelCategory(StrEnum):
    """The seed's categories; the values are modelplex's catalog categories."""

    BASIC = "basic"
    REASONING = "reasoning"
    CREATIVE = "creative"
    ANALYTICAL = "analytical"
    COMPREHENSIVE = "comprehensive"


SEED_CAPABILITY_MAP: dict[str, str | None] = {
    "tool_use": "tool_calling",
    "function_calling": "tool_calling",
    "formatting": None,
    "basic_reasoning": None,
    "instruction_following": None,
    "basic": None,
    "creative": None,
    "analytical": None,
    "comprehensive": None,
}
"""Seed capability word -> modelplex capability (``None``: no constraint). Other words pass through."""

TEXT_FORMATS = frozenset({"text", "markdown", "xml", "yaml"})
PROMPT_OVERHEAD: dict[str, int] = {"llama": 250, "claude": 300, "gemini": 200, "default": 350}
"""The seed's prompt-template overhead added by ``estimate_combined_size``, by tokenizer family."""
SEED_MODEL_TYPES = frozenset({"llama", "claude", "gemma", "default"})
"""The seed's ``model_type`` words: tokenizer families, counted without a catalog lookup."""
DEFAULT_PROVIDER = "groq"
"""The seed's provider for a model key without a ``provider/`` prefix."""


def _value(v: Any) -> Any:
    return v.value if isinstance(v, Enum) else v


def requirements_from_seed(requirements: Mapping[str, Any]) -> Requirements:
    """The seed's requirement dict as ``Requirements`` (see the module docstring for the mapping)."""
    data: dict[str, Any] = {}
    for key, raw in requirements.items():
        value = _value(raw)
        if key == "required_capabilities":
            caps: list[str] = []
            for word in value or ():
                mapped = SEED_CAPABILITY_MAP.get(str(_value(word)), str(_value(word)))
                if mapped is not None:
                    caps.append(mapped)
            data["capabilities"] = caps
        elif key == "response_format":
            fmt = str(value).lower() if value is not None else None
            if fmt is not None and fmt not in TEXT_FORMATS:
                data["response_format"] = fmt
        elif key == "economy_mode":
            data["economy_mode"] = bool(value)
        else:
            data[key] = value
    if "strategy" not in data and not data.get("economy_mode"):
        data["strategy"] = "quality"
    return Requirements.from_dict(data)


class ModelRegistry:
    """The seed's ``ModelRegistry`` over a ``Router`` (the default router when none is given)."""

    def __init__(self, router: Router | None = None) -> None:
        self.router = resolve_router(router)
        self._instances: dict[tuple[str, float], ChatModelplex] = {}

    # ------------------------------------------------------------------ names

    def resolve(self, model_key: str, provider: str | None = None) -> str:
        """The canonical catalog id for a seed model key (``provider/model``, or a bare name, which
        the seed reads as a Groq model), or ``UnknownModelError`` with suggestions."""
        catalog = self.router.catalog
        tries = [f"{provider}/{model_key}"] if provider else []
        if "/" not in model_key:
            tries.append(f"{DEFAULT_PROVIDER}/{model_key}")
        tries.append(model_key)
        for name in tries:
            spec = catalog.find(name)
            if spec is not None:
                return spec.id
        raise UnknownModelError(model_key, catalog.ambiguous(model_key) or catalog.suggest(model_key))

    def _spec(self, model_key: str) -> ModelSpec:
        return self.router.catalog.get(self.resolve(model_key))

    # ------------------------------------------------------------------ the seed's registry views

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """Capability profiles (the seed's ``ModelCapability`` shape) of the live chat models whose
        provider is enabled."""
        enabled = self.router.enabled_providers()
        return {s.id: self._capability(s) for s in self.router.catalog.list(mode="chat") if s.provider in enabled}

    def _capability(self, spec: ModelSpec) -> dict[str, Any]:
        caps = spec.capabilities
        formats = ["text", "markdown"] + (["json"] if {"json_mode", "structured_output"} & caps else [])
        return {
            "context_window": spec.context_window,
            "max_tokens_out": spec.max_output_tokens,
            "capabilities": sorted(caps),
            "cost_tier": spec.cost_tier,
            "provider": spec.provider,
            "primary_category": spec.category,
            "tool_calling": "tool_calling" in caps,
            "streaming": "streaming" in caps,
            "response_format": formats,
            "model_version": spec.family,
            "token_limit_safety_margin": self.router.config.routing.token_safety_margin,
        }

    @property
    def fallback_paths(self) -> dict[str, list[str]]:
        """The router's ``routing.fallback_paths`` (live: changes apply to the next call)."""
        return self.router.config.routing.fallback_paths

    def set_fallback_path(self, model_key: str, fallbacks: Sequence[str], provider: str | None = None) -> None:
        """Set ``model_key``'s fallback path. Keys are stored under the id the planner looks up (a
        deprecated model's replacement, since the planner migrates before it reads paths); values are
        canonical ids. Priorities are applied by ``configure_providers``."""
        spec = self.router.catalog.migrate(self._spec(self.resolve(model_key, provider)))
        path = [self.resolve(f, provider) for f in fallbacks]
        self.fallback_paths[spec.id] = [p for p in path if p != spec.id]

    def get_model_info(self, model_key: str) -> dict[str, Any]:
        """The seed's model info dict, plus ``model_id`` (the canonical id); ``{"model_key", "error"}``
        for an unknown key."""
        try:
            spec = self._spec(model_key)
        except UnknownModelError:
            return {"model_key": model_key, "error": "Model not found in registry"}
        return {"model_key": model_key, "model_id": spec.id, "provider": spec.provider,
                "context_window": spec.context_window, "max_tokens_out": spec.max_output_tokens,
                "cost_tier": spec.cost_tier, "primary_category": spec.category,
                "tool_calling": "tool_calling" in spec.capabilities, "model_version": spec.family,
                "deprecated": spec.deprecated}

    # ------------------------------------------------------------------ selection

    def select_model(self, requirements: Mapping[str, Any]) -> str:
        """The best model id for the seed's requirement dict, through the router's planner.

        A provider's preferred model for the requested ``primary_category`` (``configure_providers``)
        wins when it meets every requirement, providers taken by priority. Raises
        ``NoCandidatesError`` when nothing qualifies (the seed returned a fixed default).
        """
        req = requirements_from_seed(requirements)
        plan = self.router.planner.plan(requirements=req)
        if req.category is not None and not self.router.planner.overrides.force_model:
            preferred = self._preferred(req.category, plan.requirements or req)
            if preferred is not None:
                return preferred
        return plan.targets[0].id

    def _preferred(self, category: str, req: Requirements) -> str | None:
        enabled = self.router.enabled_providers()
        eligible = set(self.router.selector.select(req, providers=enabled).ids())
        for name in self._providers_by_priority():
            ps = self.router.config.providers[name]
            model = ps.preferred_models.get(category)
            if model is None or name not in enabled:
                continue
            try:
                model_id = self.resolve(model, name)
            except UnknownModelError:
                continue
            if model_id in eligible:
                return model_id
        return None

    def _priority(self, provider: str) -> float:
        ps = self.router.config.providers.get(provider)
        if ps is None or "priority" not in ps.model_fields_set:
            return math.inf
        return float(ps.priority)

    def _providers_by_priority(self) -> list[str]:
        return sorted(self.router.config.providers, key=lambda p: (self._priority(p), p))

    # ------------------------------------------------------------------ chat models

    def get_model(self, model_key: str, temperature: float = 0.7) -> ChatModelplex:
        """A LangChain chat model for ``model_key`` (cached per key and temperature). Every call goes
        through the router with this model named explicitly: its fallback path, the provider's chain
        and the cross-provider chain apply, with breakers and retries."""
        model_id = self.resolve(model_key)
        key = (model_id, float(temperature))
        model = self._instances.get(key)
        if model is None:
            from modelplex.integrations.langchain import ChatModelplex

            model = ChatModelplex(router=self.router, model=model_id, temperature=temperature)
            self._instances[key] = model
        return model

    def get_model_with_fallbacks(self, primary_model_key: str, temperature: float = 0.7) -> ChatModelplex:
        """The seed's name for ``get_model``: the router applies ``fallback_paths[primary]`` itself."""
        return self.get_model(primary_model_key, temperature)

    # ------------------------------------------------------------------ provider configuration

    def configure_providers(self, provider_config: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """Apply the seed's per-provider configuration at run time and return each provider's status line.

        Per provider: ``enabled``, ``priority``, ``api_key_env``, ``api_key``, ``base_url`` and
        ``timeout`` go to ``providers.<name>``; ``models.preferred`` (or ``preferred_models``),
        category -> model, to ``preferred_models``; ``models.fallbacks`` (or a ``fallbacks`` mapping),
        model -> list, to ``routing.fallback_paths``; a ``fallbacks`` list to the provider's chain.
        Model names may omit the provider prefix. Then every fallback path is ordered by provider
        priority and the router re-resolves its providers (credentials, enabled set).
        """
        providers = self.router.config.providers
        for name, raw in provider_config.items():
            if self.router.catalog.find_provider(name) is None:
                known = ", ".join(p.name for p in self.router.catalog.providers())
                raise ConfigError(f"unknown provider {name!r}; known providers: {known}",
                                  key=f"provider_config.{name}")
            settings = dict(raw)
            models = dict(settings.pop("models", None) or {})
            preferred = models.get("preferred") or settings.pop("preferred_models", None) or {}
            fallbacks = settings.pop("fallbacks", None)
            model_paths = models.get("fallbacks") or (fallbacks if isinstance(fallbacks, Mapping) else {})
            chain = fallbacks if isinstance(fallbacks, list | tuple) else None
            ps = providers.get(name) or ProviderSettings()
            for key, value in settings.items():
                if key not in ProviderSettings.model_fields:
                    raise ConfigError(f"unknown provider setting {key!r}", key=f"provider_config.{name}.{key}")
                setattr(ps, key, value)
            providers[name] = ps
            if preferred:
                ps.preferred_models = {str(_value(cat)): self._canonical(model, name)
                                       for cat, model in preferred.items()}
            if chain is not None:
                ps.fallbacks = [self._canonical(m, name) for m in chain]
            for model, path in model_paths.items():
                self.set_fallback_path(model, path, name)
        self._order_fallbacks()
        self.router.refresh_providers()
        self._instances.clear()
        return {s.name: s.line() for s in self.router.provider_status.values() if s.name in provider_config}

    def _canonical(self, model: str, provider: str) -> str:
        try:
            return self.resolve(model, provider)
        except UnknownModelError:
            return model if "/" in model else f"{provider}/{model}"

    def _order_fallbacks(self) -> None:
        catalog = self.router.catalog
        for key, path in list(self.fallback_paths.items()):
            def rank(model_id: str) -> float:
                spec = catalog.find(model_id)
                return self._priority(spec.provider if spec is not None else model_id.split("/", 1)[0])

            self.fallback_paths[key] = sorted(path, key=rank)

    # ------------------------------------------------------------------ warm-up

    def warm_up(self, model_keys: Sequence[str]) -> dict[str, bool]:
        """Open connections to the models' providers (health checks); provider -> reachable."""
        return self.router.warm_up([self.resolve(k) for k in model_keys])

    async def awarm_up(self, model_keys: Sequence[str]) -> dict[str, bool]:
        return await self.router.awarm_up([self.resolve(k) for k in model_keys])


def _registry(registry: ModelRegistry | Router | None) -> ModelRegistry:
    if isinstance(registry, ModelRegistry):
        return registry
    if registry is not None:
        return ModelRegistry(registry)
    return default_for("resume_lm.registry", ModelRegistry)


# ---------------------------------------------------------------------------------------------
# token estimates
# ---------------------------------------------------------------------------------------------


def _count_model(model: Any, registry: ModelRegistry | Router | None) -> Any:
    """A catalog spec when ``model`` names a catalog model, else the string itself (a family hint such
    as the seed's ``"llama"``/``"claude"``/``"gemma"``) or ``None``."""
    if model is None or not isinstance(model, str) or (registry is None and model in SEED_MODEL_TYPES):
        return model
    reg = _registry(registry)
    try:
        return reg._spec(model)
    except UnknownModelError:
        return model


def estimate_token_count(text: str, model: Any = None, *, registry: ModelRegistry | Router | None = None) -> int:
    """Tokens in ``text`` for ``model`` (a catalog id, a ``ModelSpec``, or the seed's model type such
    as ``"llama"``): exact with tiktoken where the model has an encoding, estimated otherwise."""
    from modelplex.catalog.tokens import count_text

    if not text:
        return 0
    return count_text(text, _count_model(model, registry)).tokens


def _serialize(content: Any, compact: bool) -> str:
    try:
        return json.dumps(content, separators=(",", ":")) if compact else json.dumps(content, indent=2)
    except TypeError:
        return str(content)


def estimate_context_size(content: Any, model: Any = None, compact: bool = False, *,
                          registry: ModelRegistry | Router | None = None) -> int:
    """Tokens of a string, or of a dict/list serialized as JSON (minified when ``compact``)."""
    if content is None:
        return 0
    text = content if isinstance(content, str) else _serialize(content, compact) \
        if isinstance(content, dict | list | tuple) else str(content)
    return estimate_token_count(text, model, registry=registry)


def estimate_combined_size(*items: Any, model: Any = None, model_type: str | None = None, compact: bool = False,
                           include_prompt_overhead: bool = True,
                           registry: ModelRegistry | Router | None = None) -> int:
    """Total tokens of several inputs: strings, lists of strings (each counted on its own) and
    dicts/lists (as JSON), plus the seed's prompt overhead for the model's family unless
    ``include_prompt_overhead=False``. ``model_type`` is the seed's name for ``model``."""
    from modelplex.catalog.tokens import family_of

    target = _count_model(model if model is not None else model_type, registry)
    total = 0
    for item in items:
        if isinstance(item, list | tuple) and all(isinstance(x, str) for x in item):
            total += sum(estimate_token_count(x, target, registry=registry) for x in item)
        else:
            total += estimate_context_size(item, target, compact, registry=registry)
    if include_prompt_overhead:
        total += PROMPT_OVERHEAD.get(family_of(target), PROMPT_OVERHEAD["default"])
    return total


def check_token_limits(model_key: str, input_text_or_tokens: str | int, max_output: int | None = None,
                       registry: ModelRegistry | Router | None = None) -> bool:
    """Whether the input (a text, counted for the model, or a token count) plus ``max_output`` fits
    the model's window and output limit, keeping the router's ``token_safety_margin`` free.
    ``router.catalog.check_token_limits`` gives the reason as well."""
    reg = _registry(registry)
    spec = reg._spec(model_key)
    if isinstance(input_text_or_tokens, str):
        tokens = estimate_token_count(input_text_or_tokens, spec)
    else:
        tokens = int(input_text_or_tokens)
    check = reg.router.catalog.check_token_limits(spec, tokens, max_output,
                                                  safety_margin=reg.router.config.routing.token_safety_margin)
    return check.fits


# ---------------------------------------------------------------------------------------------
# LangGraph state tracking
# ---------------------------------------------------------------------------------------------


def _usage_entry(used: Any, reg: ModelRegistry) -> dict[str, Any]:
    """The seed's usage entry for a model key, a ``Response`` or a LangChain message from
    ``ChatModelplex`` (the last two record the model that actually answered, with cost and tokens)."""
    if isinstance(used, str):
        return {"model_key": used, **reg.get_model_info(used)}
    if isinstance(used, Response):
        entry = {"model_key": used.model, **reg.get_model_info(used.model)}
        entry.update(provider=used.provider, cost_usd=used.cost_usd, input_tokens=used.usage.input_tokens,
                     output_tokens=used.usage.output_tokens, fallback_used=used.fallback_used,
                     request_id=used.request_id)
        return entry
    meta = getattr(used, "response_metadata", None)
    if isinstance(meta, Mapping) and meta.get("model"):
        model = str(meta["model"])
        entry = {"model_key": model, **reg.get_model_info(model)}
        usage = getattr(used, "usage_metadata", None) or {}
        entry.update(provider=meta.get("provider", entry.get("provider")), cost_usd=meta.get("cost_usd"),
                     input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
                     fallback_used=meta.get("fallback_used"), request_id=meta.get("request_id"))
        return entry
    raise TypeError(f"record_model_usage takes a model key, a Response or a ChatModelplex message, "
                    f"not {type(used).__name__}")


def record_model_usage(state: dict[str, Any], phase: str, model_key: Any,
                       registry: ModelRegistry | Router | None = None) -> dict[str, Any]:
    """Append a usage entry for ``phase`` to ``state["model_usage"]`` (the seed's shape) and return
    the state. ``model_key`` may also be the ``Response`` or ``AIMessage`` of the call, which records
    the model that actually answered (after fallbacks) with its cost and tokens."""
    reg = _registry(registry)
    entry = _usage_entry(model_key, reg)
    entry["timestamp"] = dt.datetime.fromtimestamp(reg.router.clock.wall(), dt.UTC).isoformat()
    usage = state.get("model_usage")
    if usage is None:
        usage = state["model_usage"] = {}
    usage.setdefault(phase, []).append(entry)
    return state


class ModelTrackingMixin:
    """The seed's mixin for LangGraph nodes."""

    @staticmethod
    def record_model_usage(state: dict[str, Any], phase: str, model_key: Any,
                           registry: ModelRegistry | Router | None = None) -> dict[str, Any]:
        return record_model_usage(state, phase, model_key, registry)


def analyze_model_usage(state: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's usage statistics over ``state["model_usage"]`` (lists sorted), plus
    ``total_cost_usd`` and ``fallback_count`` over the entries that carry them."""
    model_usage = state.get("model_usage") or {}
    if not model_usage:
        return {"error": "No model usage data found"}
    models: set[str] = set()
    providers: set[str] = set()
    mapping: dict[str, list[str]] = {}
    model_freq: dict[str, int] = {}
    provider_freq: dict[str, int] = {}
    cost = 0.0
    fallbacks = 0
    for phase, usages in model_usage.items():
        mapping[phase] = []
        for usage in usages:
            key = str(usage.get("model_key", "unknown"))
            provider = str(usage.get("provider", "unknown"))
            models.add(key)
            providers.add(provider)
            mapping[phase].append(key)
            model_freq[key] = model_freq.get(key, 0) + 1
            provider_freq[provider] = provider_freq.get(provider, 0) + 1
            cost += float(usage.get("cost_usd") or 0.0)
            fallbacks += 1 if usage.get("fallback_used") else 0
    return {"models_used": sorted(models), "providers_used": sorted(providers), "phase_model_mapping": mapping,
            "model_frequency": model_freq, "provider_frequency": provider_freq, "total_cost_usd": cost,
            "fallback_count": fallbacks}


# ---------------------------------------------------------------------------------------------
# module-level forms of the registry's methods (the default router's registry unless given one)
# ---------------------------------------------------------------------------------------------


def select_model(requirements: Mapping[str, Any], registry: ModelRegistry | Router | None = None) -> str:
    return _registry(registry).select_model(requirements)


def get_model_with_fallbacks(model_key: str, temperature: float = 0.7,
                             registry: ModelRegistry | Router | None = None) -> ChatModelplex:
    return _registry(registry).get_model_with_fallbacks(model_key, temperature)


def configure_providers(provider_config: Mapping[str, Mapping[str, Any]],
                        registry: ModelRegistry | Router | None = None) -> dict[str, str]:
    return _registry(registry).configure_providers(provider_config)


def warm_up_models(frequently_used_models: Sequence[str],
                   registry: ModelRegistry | Router | None = None) -> dict[str, bool]:
    """Pre-open the providers of the given models (the seed pre-built client objects)."""
    return _registry(registry).warm_up(frequently_used_models)


async def awarm_up_models(frequently_used_models: Sequence[str],
                          registry: ModelRegistry | Router | None = None) -> dict[str, bool]:
    return await _registry(registry).awarm_up(frequently_used_models)


__all__ = [
    "ModelCategory",
    "ModelRegistry",
    "ModelTrackingMixin",
    "analyze_model_usage",
    "awarm_up_models",
    "check_token_limits",
    "configure_providers",
    "estimate_combined_size",
    "estimate_context_size",
    "estimate_token_count",
    "get_model_with_fallbacks",
    "record_model_usage",
    "requirements_from_seed",
    "select_model",
    "warm_up_models",
]
