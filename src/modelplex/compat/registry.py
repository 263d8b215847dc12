"""Seed 001 (the LLM model registry: metadata, validation, costs, deprecation), over the catalog.

The seed's names keep working: ``get_model_registry()`` (a registry object with ``get_model``,
``register_model``, ``get_family_models``, ``get_provider_models``, ``is_model_supported``,
``get_parameter_mapping``, ``get_model_defaults``, ``validate_parameters_for_model``,
``get_all_models``) and the module functions ``get_model_metadata``, ``validate_model_parameters``,
``calculate_request_cost``, ``migrate_to_supported_model``, ``select_cost_effective_model`` and
``convert_request_for_model``; the enums ``LLMProvider`` and ``ModelFamily``.

Everything reads the router's ``Catalog``: metadata from ``ModelSpec`` (costs per 1K tokens derived
from the per-million prices), parameter names from ``Catalog.param_mapping``, checks from
``Catalog.validate_parameters``, costs from ``Catalog.cost``, migration from ``Catalog.migrate``,
the cheapest model from the ``Selector`` and provider-ready bodies from the protocol adapters'
pure ``chat_to_wire``.

Names: a canonical id (``azure/gpt-4o``) is exact. A bare name (``gpt-4o``) is looked up first at
the registry's preferred providers — the seed's Azure, Bedrock and Gemini, in that order, as id
(``azure/gpt-4o``) or alias (``azure-gpt-4o``) — then as any unambiguous alias or bare name.

Deliberate differences from the seed (docs/migration.md): an unknown model raises
``UnknownModelError`` in ``calculate_request_cost`` (a silent $0 hides a billing error) and in
``convert_request_for_model``; ``select_cost_effective_model`` raises ``NoCandidatesError``
instead of returning ``None``, ranks by the blended price (input + 3 x output) / 4 and considers only
providers with credentials; ``migrate_to_supported_model`` returns canonical ids, warns with
``ModelDeprecatedWarning`` instead of printing, and follows replacement chains; ``convert_request_for_model``
returns the provider's whole request body (messages in the protocol's shape, parameters renamed,
defaults filled, unsupported ones dropped or refused per ``routing.drop_unsupported_params``) and
never forces JSON mode.

Must not touch: routing and calls (nothing here sends a request), the bundled data files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from modelplex.catalog.params import param_name, split_params
from modelplex.compat import resolve_router
from modelplex.errors import NoCandidatesError, UnknownModelError, UnsupportedParameterError
from modelplex.types import ChatRequest, Requirements

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.catalog.validation import ParameterIssue
    from modelplex.router import Router


class LLMProvider(StrEnum):
    """The seed's providers; the values are modelplex provider names."""

    AZURE_OPENAI = "azure"
    BEDROCK = "bedrock"
    GEMINI = "gemini"


class ModelFamily(StrEnum):
    """The seed's family names (see ``SEED_FAMILIES`` for what each covers in the catalog)."""

    AZURE_GPT_4O = "azure_gpt_4o"
    AZURE_GPT_4 = "azure_gpt_4"
    AZURE_GPT_4_1 = "azure_gpt_4_1"
    AZURE_GPT_4_1_MINI = "azure_gpt_4_1_mini"
    AZURE_GPT_35 = "azure_gpt_35"
    BEDROCK_CLAUDE_3 = "bedrock_claude_3"
    BEDROCK_CLAUDE_35 = "bedrock_claude_35"
    GEMINI_PRO = "gemini_pro"
    GEMINI_1_5 = "gemini_1_5"


class SeedFamily(NamedTuple):
    provider: str
    family: str
    """The catalog's family name."""
    contains: str | None = None
    excludes: str | None = None
    """Substrings of the model name that select or exclude members (the catalog keeps GPT-4.1 mini in
    the GPT-4.1 family; the seed splits them)."""


SEED_FAMILIES: dict[str, SeedFamily] = {
    "azure_gpt_4o": SeedFamily("azure", "gpt-4o"),
    "azure_gpt_4": SeedFamily("azure", "gpt-4"),
    "azure_gpt_4_1": SeedFamily("azure", "gpt-4.1", excludes="-mini"),
    "azure_gpt_4_1_mini": SeedFamily("azure", "gpt-4.1", contains="-mini"),
    "azure_gpt_35": SeedFamily("azure", "gpt-3.5"),
    "bedrock_claude_3": SeedFamily("bedrock", "claude-3"),
    "bedrock_claude_35": SeedFamily("bedrock", "claude-3.5"),
    "gemini_pro": SeedFamily("gemini", "gemini-1.0"),
    "gemini_1_5": SeedFamily("gemini", "gemini-1.5"),
}

PROTOCOL_REQUIREMENTS: dict[str, dict[str, Any]] = {
    "azure": {"uses_deployment_name": True, "requires_api_version": True},
    "bedrock": {"requires_region": True},
    "gemini": {"supports_system_instruction": True},
}
"""The seed's per-provider API requirement tables, by protocol. ``supports_response_format`` is the
model's JSON ability, and the model's own ``api_requirements`` are laid over both."""

SEED_PROVIDERS: tuple[str, ...] = ("azure", "bedrock", "gemini")
_NO_KEY = "not-sent"
_NO_URL = "https://not-sent.invalid"
"""Stands in for credentials when ``convert_request_for_model`` builds a body for a provider that has
none: adapters build headers alongside the body, and only the body is returned (nothing is sent)."""

_SEED_PARAM_FLAGS = (("supports_temperature", "temperature"), ("supports_top_p", "top_p"),
                     ("supports_frequency_penalty", "frequency_penalty"),
                     ("supports_presence_penalty", "presence_penalty"), ("supports_stop_sequences", "stop"))


class ModelMetadata(dict[str, Any]):
    """The seed's ``ModelMetadata`` as a dict whose keys also read as attributes
    (``metadata["max_output_tokens"]`` and ``metadata.max_output_tokens``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _value(v: Any) -> Any:
    return v.value if isinstance(v, Enum) else v


class ModelRegistry:
    """The seed's registry over the router's catalog. ``providers`` are the providers a bare model
    name is looked up at first (the seed's Azure, Bedrock, Gemini by default)."""

    def __init__(self, router: Router | None = None, *, providers: Sequence[str] = SEED_PROVIDERS) -> None:
        self.router = resolve_router(router)
        self.providers = tuple(providers)

    @property
    def catalog(self) -> Any:
        return self.router.catalog

    # ------------------------------------------------------------------ lookup

    def find(self, model_name: str) -> ModelSpec | None:
        """The spec for a seed model name or catalog id (see the module docstring), or ``None``."""
        catalog = self.catalog
        spec = catalog.find(model_name) if "/" in model_name else None
        if spec is not None:
            return spec  # type: ignore[no-any-return]
        for p in self.providers:
            spec = catalog.find(f"{p}/{model_name}") or catalog.find(f"{p}-{model_name}")
            if spec is not None:
                return spec  # type: ignore[no-any-return]
        return catalog.find(model_name)  # type: ignore[no-any-return]

    def spec(self, model_name: str) -> ModelSpec:
        spec = self.find(model_name)
        if spec is None:
            raise UnknownModelError(model_name, self.catalog.ambiguous(model_name) or self.catalog.suggest(model_name))
        return spec

    def is_model_supported(self, model_name: str) -> bool:
        return self.find(model_name) is not None

    # ------------------------------------------------------------------ metadata

    def get_model(self, model_name: str) -> ModelMetadata | None:
        """The seed's metadata for a model, or ``None`` when the catalog does not know it."""
        spec = self.find(model_name)
        return None if spec is None else self.metadata(spec)

    def metadata(self, spec: ModelSpec) -> ModelMetadata:
        catalog = self.catalog
        protocol = catalog.protocol_of(spec)
        caps = spec.capabilities
        json_mode = bool({"json_mode", "structured_output"} & caps)
        outputs = set(spec.output_modalities) | ({"json"} if json_mode else set())
        dep = spec.deprecation
        data: dict[str, Any] = {
            "id": spec.id,
            "model_name": spec.model_name,
            "provider": spec.provider,
            "model_family": spec.family,
            "display_name": spec.display_name,
            "supported_input_types": sorted(spec.input_modalities),
            "supported_output_types": sorted(outputs),
            "supports_streaming": "streaming" in caps,
            "supports_function_calling": "tool_calling" in caps,
            "supports_vision": "vision" in caps or "image" in spec.input_modalities,
            "supports_json_mode": json_mode,
            "max_context_length": spec.context_window,
            "max_output_tokens": spec.max_output_tokens,
            "max_input_tokens": spec.input_limit,
        }
        for flag, param in _SEED_PARAM_FLAGS:
            data[flag] = param_name(protocol, spec, param) is not None
        data.update({
            "parameter_mappings": {k: v for k, v in catalog.param_mapping(spec).items() if v is not None},
            "default_parameters": catalog.default_params(spec),
            "api_requirements": {**PROTOCOL_REQUIREMENTS.get(protocol, {}), "supports_response_format": json_mode,
                                 **spec.api_requirements},
            "cost_per_1k_input_tokens": spec.pricing.input_per_mtok / 1000,
            "cost_per_1k_output_tokens": spec.pricing.output_per_mtok / 1000,
            "is_deprecated": dep.deprecated,
            "deprecation_date": dep.date.isoformat() if dep.date else None,
            "replacement_model": dep.replacement,
        })
        return ModelMetadata(data)

    def get_all_models(self) -> dict[str, ModelMetadata]:
        """Metadata of every catalog model (deprecated ones included), by canonical id."""
        return {s.id: self.metadata(s) for s in self.catalog.list(include_deprecated=True)}

    def get_family_models(self, family: ModelFamily | str) -> list[str]:
        """Canonical ids in a seed family (``ModelFamily``) or a catalog family name."""
        name = str(_value(family))
        seed = SEED_FAMILIES.get(name)
        if seed is None:
            return [s.id for s in self.catalog.list(family=name, include_deprecated=True)]
        return [s.id for s in self.catalog.list(provider=seed.provider, family=seed.family, include_deprecated=True)
                if (seed.contains is None or seed.contains in s.model_name)
                and (seed.excludes is None or seed.excludes not in s.model_name)]

    def get_provider_models(self, provider: LLMProvider | str) -> list[str]:
        return [s.id for s in self.catalog.list(provider=str(_value(provider)), include_deprecated=True)]

    def get_parameter_mapping(self, model_name: str, param: str) -> str | None:
        """The provider's name for an OpenAI-named parameter, or ``None`` when the model takes none."""
        return self.catalog.param_mapping(self.spec(model_name)).get(param, param)  # type: ignore[no-any-return]

    def get_model_defaults(self, model_name: str) -> dict[str, Any]:
        return self.catalog.default_params(self.spec(model_name))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ registration

    def register_model(self, metadata: Mapping[str, Any]) -> str:
        """Add (or replace) a model given in the seed's ``ModelMetadata`` shape; returns its id.
        The router's catalog changes at once (selection re-indexes on the next call)."""
        from modelplex.catalog.schema import ModelSpec

        provider = str(_value(metadata["provider"]))
        name = str(metadata["model_name"])
        caps = {"streaming"} if metadata.get("supports_streaming", True) else set()
        for flag, cap in (("supports_function_calling", "tool_calling"), ("supports_vision", "vision"),
                          ("supports_json_mode", "json_mode")):
            if metadata.get(flag):
                caps.add(cap)
        mappings = {k: v for k, v in (metadata.get("parameter_mappings") or {}).items() if k != v}
        replacement = metadata.get("replacement_model")
        if replacement and "/" not in str(replacement):
            replacement = f"{provider}/{replacement}"
        spec = ModelSpec(
            id=f"{provider}/{name}", provider=provider, family=str(_value(metadata.get("model_family") or "")),
            display_name=str(metadata.get("display_name") or name),
            context_window=int(metadata.get("max_context_length") or 128_000),
            max_input_tokens=metadata.get("max_input_tokens"),
            max_output_tokens=int(metadata.get("max_output_tokens") or 4096),
            capabilities=frozenset(caps),
            input_modalities=frozenset(str(_value(t)).lower() for t in metadata.get("supported_input_types") or ["text"]),
            pricing={"input_per_mtok": float(metadata.get("cost_per_1k_input_tokens") or 0) * 1000,
                     "output_per_mtok": float(metadata.get("cost_per_1k_output_tokens") or 0) * 1000},
            param_mappings=mappings, default_params=dict(metadata.get("default_parameters") or {}),
            api_requirements=dict(metadata.get("api_requirements") or {}),
            deprecation={"deprecated": bool(metadata.get("is_deprecated")),
                         "date": metadata.get("deprecation_date"), "replacement": replacement},
            source="compat.registry")
        self.catalog.add(spec)
        return spec.id

    # ------------------------------------------------------------------ validation

    def validate_parameters_for_model(self, model_name: str, parameters: Mapping[str, Any]) -> list[str]:
        """The seed's list of issue messages (empty when the parameters are fine)."""
        spec = self.find(model_name)
        if spec is None:
            return [f"Model {model_name} not found in registry"]
        protocol = self.catalog.protocol_of(spec)
        return [_seed_message(issue, spec, protocol, parameters)
                for issue in self.catalog.validate_parameters(spec, parameters)]


def _seed_message(issue: ParameterIssue, spec: ModelSpec, protocol: str, parameters: Mapping[str, Any]) -> str:
    """The seed's wording where it has one (output limit, unsupported parameter), else the catalog's."""
    from modelplex.catalog.params import PARAMS

    if issue.code == "exceeds_output_limit":
        return f"{issue.param} {parameters.get(issue.param)} exceeds model limit {spec.max_output_tokens}"
    if issue.code == "unsupported" and issue.param in PARAMS and param_name(protocol, spec, issue.param) is None:
        return f"Model {spec.id} does not support {issue.param} parameter"
    return issue.message


def get_model_registry(router: Router | None = None) -> ModelRegistry:
    """A registry over ``router`` (the default router when ``None``)."""
    return ModelRegistry(router)


def get_model_metadata(model_id: str, router: Router | None = None) -> ModelMetadata | None:
    return ModelRegistry(router).get_model(model_id)


def validate_model_parameters(model_id: str, params: Mapping[str, Any], router: Router | None = None) -> list[str]:
    """E.g. ``["max_tokens 20000 exceeds model limit 16384"]`` for Azure's gpt-4o."""
    return ModelRegistry(router).validate_parameters_for_model(model_id, params)


def calculate_request_cost(model_id: str, input_tokens: int, output_tokens: int, router: Router | None = None) -> float:
    """USD for one request at the catalog's prices; ``UnknownModelError`` for an unknown model."""
    reg = ModelRegistry(router)
    return float(reg.catalog.cost(reg.spec(model_id), input_tokens, output_tokens).total_usd)


def migrate_to_supported_model(model_id: str, router: Router | None = None) -> str:
    """The canonical id to use instead of a deprecated model (replacement chains followed; warns
    once with ``ModelDeprecatedWarning``), or the model's own canonical id when it is current."""
    reg = ModelRegistry(router)
    return str(reg.catalog.migrate(reg.spec(model_id)).id)


def select_cost_effective_model(task: str, max_tokens: int, router: Router | None = None) -> str:
    """The cheapest live model with tool calling and at least ``max_tokens`` of output, among
    providers with credentials; a known task's requirements (e.g. ``job_parsing``'s JSON) apply too."""
    r = resolve_router(router)
    spec_task = r.planner.tasks.get(task)
    base = spec_task.requirements if spec_task is not None else Requirements()
    req = base.merged(tool_calling=True, min_output_tokens=max(base.min_output_tokens, int(max_tokens)),
                      strategy="economy", economy_mode=False)
    selection = r.selector.select(req, providers=r.enabled_providers(), limit=1)
    if not selection.candidates:
        raise NoCandidatesError(f"no cost-effective model for {task!r} with {max_tokens} output tokens: "
                                f"{selection.explanation}", selection.rejected)
    return selection.candidates[0].id


def convert_request_for_model(messages: list[dict[str, Any]], model_id: str, params: Mapping[str, Any],
                              router: Router | None = None) -> dict[str, Any]:
    """The provider-ready request body for ``model_id``: the protocol adapter's own ``chat_to_wire``
    (messages converted, e.g. a system prompt moved to Anthropic's ``system`` or Gemini's
    ``systemInstruction``; parameters renamed, e.g. ``max_tokens`` -> ``generationConfig.maxOutputTokens``;
    the model's defaults filled in). Credentials never appear in it."""
    from modelplex.providers import adapter_class
    from modelplex.providers.base import ProviderConfig

    reg = ModelRegistry(router)
    r = reg.router
    spec = reg.spec(model_id)
    protocol = reg.catalog.protocol_of(spec)
    _, dropped = split_params(protocol, spec, params)
    if dropped and not r.config.routing.drop_unsupported_params:
        raise UnsupportedParameterError(spec.id, dropped)
    pc = r.providers.get(spec.provider)
    if pc is None:  # a provider without credentials: the body does not depend on them; only it is returned
        pspec = reg.catalog.find_provider(spec.provider)
        pc = ProviderConfig(name=spec.provider, protocol=protocol, api_key=_NO_KEY, aws_access_key_id=_NO_KEY,
                            aws_secret_access_key=_NO_KEY, region="us-east-1",
                            base_url=(pspec.base_url if pspec is not None else None) or _NO_URL,
                            extra_headers=dict(pspec.extra_headers) if pspec is not None else {},
                            profile=dict(pspec.profile) if pspec is not None else {},
                            api_version=pspec.api_version if pspec is not None else None, spec=pspec)
    wire = adapter_class(protocol)(pc).chat_to_wire(ChatRequest(messages=list(messages), params=dict(params)), spec)
    return json.loads(wire.body) if wire.body else {}  # type: ignore[no-any-return]


__all__ = [
    "LLMProvider",
    "ModelFamily",
    "ModelMetadata",
    "ModelRegistry",
    "calculate_request_cost",
    "convert_request_for_model",
    "get_model_metadata",
    "get_model_registry",
    "migrate_to_supported_model",
    "select_cost_effective_model",
    "validate_model_parameters",
]
