"""Seed 002 (``ModelFactory``, per-provider circuit breakers, fallback chains), over the ``Router``.

The seed's names keep working: ``ModelFactory.get_chat_model(model_id, provider=None)``,
``resolve_provider``, ``configure_fallback``, ``get_embedding_model``, ``record_success`` and
``record_failure`` (async); the module function ``get_chat_model``; ``get_circuit_breaker(provider)``;
the ``Provider`` enum and ``PROVIDER_PREFIXES``. The returned chat model keeps the seed's
``BaseChatModel`` contract: ``model_id``, ``provider``, ``context_window``, async ``generate``
(with ``response_format=<pydantic model>``), async ``stream``, ``count_tokens``, async
``health_check``, plus ``generate_structured`` and ``complete`` (the full ``Response``).

Calls on the class (``ModelFactory.get_chat_model(...)``, as the seed writes them) use the default
router's factory (``compat.get_default_router``); ``ModelFactory(router)`` gives an instance bound to
a router, with the same methods.

Provider resolution (``resolve_model``): an explicit ``provider`` wins; then the seed's prefix
table (``deepseek-ai/``, ``Qwen/``, ``01-ai/``, ``THUDM/`` -> SiliconFlow; ``gpt-`` -> OpenAI;
``azure/`` -> Azure; ``openai/``, ``anthropic/``, ``google/``, ``meta-llama/`` -> OpenRouter); then an
id that is already a catalog id and not an OpenRouter slug (``groq/...``, ``openrouter/...``) is used
as is; everything else goes to OpenRouter, as in the seed. The result is a catalog id such as
``openrouter/openai/gpt-4o`` or ``siliconflow/deepseek-ai/DeepSeek-V3``; an id the catalog does not
know raises ``UnknownModelError`` with suggestions (add it under ``models:`` in the config).

Breakers: ``record_success``/``record_failure`` report to the router's own ``provider:<name>``
breaker through a permit (``router.breakers.allow``), so a caller's reports and the router's own
attempts share one breaker: 3 counted failures open it, 300 s later one probe is let through. A
failure reported without a typed error counts; a typed ``ProviderError`` counts only when the
router would count it (5xx, timeouts, connection errors — not 4xx or 429).

Fallbacks: every call goes through the router with the resolved model named explicitly, so the
router tries it, then its fallback path, the provider's chain (``configure_fallback`` /
``providers.<name>.fallbacks``) and the cross-provider chain (``routing.cross_provider_chain``),
skipping targets whose breaker is open. ``use_fallback`` is accepted for the seed's signature;
fallbacks are configuration, not a per-call switch.

Must not touch: routing, retry or breaker logic (router, resilience), credentials.
"""

from __future__ import annotations

import functools
import types
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from modelplex.compat import default_for, resolve_router
from modelplex.config import ProviderSettings
from modelplex.errors import ProviderError, UnknownModelError
from modelplex.types import Message, Response

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.router import Router

T = TypeVar("T")


class Provider(StrEnum):
    """The seed's providers; the values are modelplex provider names (Google's is ``gemini``)."""

    OPENROUTER = "openrouter"
    SILICONFLOW = "siliconflow"
    AZURE = "azure"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "gemini"


PROVIDER_ALIASES: dict[str, str] = {"google": "gemini"}
"""Seed provider names that differ from modelplex's."""

PROVIDER_PREFIXES: tuple[tuple[str, Provider], ...] = (
    ("deepseek-ai/", Provider.SILICONFLOW),
    ("Qwen/", Provider.SILICONFLOW),
    ("01-ai/", Provider.SILICONFLOW),
    ("THUDM/", Provider.SILICONFLOW),
    ("gpt-", Provider.OPENAI),
    ("azure/", Provider.AZURE),
    ("openai/", Provider.OPENROUTER),
    ("anthropic/", Provider.OPENROUTER),
    ("google/", Provider.OPENROUTER),
    ("meta-llama/", Provider.OPENROUTER),
)
"""The seed's model-id prefixes, in order; the first match decides the provider."""

DEFAULT_PROVIDER = "openrouter"


class ReportedFailure(ProviderError):
    """A failure the caller reported through ``record_failure`` without a typed error; counts for
    the breaker, as the seed counted every failure."""

    counts_for_breaker = True


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """The seed's usage record, from a ``Response``."""

    request_id: str
    model_id: str
    provider: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    latency_ms: int

    @classmethod
    def from_response(cls, resp: Response) -> ModelUsage:
        u = resp.usage
        return cls(resp.request_id, resp.model, resp.provider, u.input_tokens, u.output_tokens, u.total_tokens,
                   resp.cost_usd, round(resp.latency_ms))


def _provider_name(provider: str | Provider) -> str:
    name = str(provider.value if isinstance(provider, Provider) else provider)
    return PROVIDER_ALIASES.get(name, name)


# ---------------------------------------------------------------------------------------------
# breakers
# ---------------------------------------------------------------------------------------------


class CircuitBreakerView:
    """The seed's per-provider ``CircuitBreaker`` as a view of the router's ``provider:<name>`` breaker."""

    def __init__(self, router: Router, provider: str | Provider) -> None:
        self.router = router
        self.provider = _provider_name(provider)
        self.key = f"provider:{self.provider}"

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        return str(self.router.breakers.state(self.key).value)

    async def record_success(self) -> bool:
        """Report a success; ``False`` when the breaker is open and the report was not admitted."""
        permit = await self.router.breakers.allow(self.key)
        if permit is None:
            return False
        permit.success()
        return True

    async def record_failure(self, error: BaseException | None = None) -> bool:
        """Report a failure (see the module docstring for what counts); ``False`` when the breaker is
        open and the report was not admitted."""
        permit = await self.router.breakers.allow(self.key)
        if permit is None:
            return False
        exc = error if isinstance(error, ProviderError) else ReportedFailure(
            "failure reported by the caller", provider=self.provider)
        permit.failure(exc)
        return True

    async def should_use_fallback(self) -> bool:
        """True while the breaker refuses calls (open, recovery time not yet over)."""
        wait = self.router.breakers.retry_in(self.key)
        return wait is not None and wait > 0


def get_circuit_breaker(provider: str | Provider, router: Router | None = None) -> CircuitBreakerView:
    return CircuitBreakerView(resolve_router(router), provider)


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


class ChatModel:
    """The seed's ``BaseChatModel`` for one resolved model; every call goes through the router."""

    def __init__(self, router: Router, model_id: str | None, spec: ModelSpec | None) -> None:
        self.router = router
        self._requested = model_id
        self.spec = spec

    @property
    def model_id(self) -> str:
        """The id as the caller named it (``"auto"`` when none was given)."""
        return self._requested or "auto"

    @property
    def catalog_id(self) -> str | None:
        """The catalog id called: the resolved model, or its replacement when it is retired (``None``
        for ``auto``, where each call selects)."""
        return self.spec.id if self.spec is not None else None

    @property
    def provider(self) -> str:
        return self.spec.provider if self.spec is not None else "auto"

    @property
    def context_window(self) -> int:
        """The model's window; for ``auto``, the largest window among models the router can call."""
        if self.spec is not None:
            return self.spec.context_window
        enabled = self.router.enabled_providers()
        return max((s.context_window for s in self.router.catalog.list(mode="chat") if s.provider in enabled),
                   default=0)

    def _target(self) -> dict[str, Any]:
        return {"model": self.spec.id} if self.spec is not None else {"model": "auto"}

    async def complete(self, messages: list[Message], **params: Any) -> Response:
        """The full ``Response`` (usage, cost, attempts, fallback_used ...)."""
        return await self.router.acomplete(list(messages), **self._target(), **params)

    async def generate(self, messages: list[Message], temperature: float = 0.0, max_tokens: int | None = None,
                       response_format: type | None = None) -> str:
        """The answer's text. With a pydantic ``response_format`` the answer is validated (one repair
        turn) and returned as that model's JSON."""
        params: dict[str, Any] = {"temperature": temperature}
        if max_tokens:
            params["max_tokens"] = max_tokens
        if response_format is not None:
            resp = await self.complete(messages, response_model=response_format, **params)
            return str(resp.parsed.model_dump_json())
        resp = await self.complete(messages, **params)
        return resp.content or ""

    async def generate_structured(self, messages: list[Message], schema: type[T], temperature: float = 0.0,
                                  max_tokens: int | None = None) -> T:
        """A validated instance of the pydantic model ``schema``."""
        params: dict[str, Any] = {"temperature": temperature}
        if max_tokens:
            params["max_tokens"] = max_tokens
        resp = await self.complete(messages, response_model=schema, **params)
        return resp.parsed  # type: ignore[no-any-return]

    async def stream(self, messages: list[Message], temperature: float = 0.0, **params: Any) -> AsyncIterator[str]:
        """Text pieces as they arrive."""
        async for chunk in self.router.astream(list(messages), **self._target(), temperature=temperature, **params):
            if chunk.delta:
                yield chunk.delta

    def count_tokens(self, text: str) -> int:
        from modelplex.catalog.tokens import count_text

        return count_text(text, self.spec).tokens

    async def health_check(self) -> bool:
        """Whether the provider answers (an authenticated list-models call)."""
        if self.spec is None:
            results = await self.router.awarm_up()
            return bool(results) and all(results.values())
        results = await self.router.awarm_up([self.spec.id])
        return bool(results.get(self.spec.provider, False))

    def __repr__(self) -> str:
        return f"ChatModel(model_id={self.model_id!r}, catalog_id={self.catalog_id!r})"


class EmbeddingModel:
    """Embeddings through the router (``model`` when given, else the ``embedding`` task)."""

    def __init__(self, router: Router, spec: ModelSpec | None) -> None:
        self.router = router
        self.spec = spec

    @property
    def model_id(self) -> str:
        return self.spec.id if self.spec is not None else "task:embedding"

    @property
    def dimensions(self) -> int | None:
        return self.spec.embedding_dimensions if self.spec is not None else None

    async def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        target: dict[str, Any] = {"model": self.spec.id} if self.spec is not None else {"task": "embedding"}
        resp = await self.router.aembed(list(texts), **target, **params)
        return resp.embeddings

    async def embed_query(self, text: str, **params: Any) -> list[float]:
        return (await self.embed([text], **params))[0]


# ---------------------------------------------------------------------------------------------
# the factory
# ---------------------------------------------------------------------------------------------


class _DefaultBound:
    """A method that, called on the class, runs on the default router's factory (the seed calls
    ``ModelFactory.get_chat_model(...)`` on the class) and, called on an instance, on that instance."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Any, owner: type) -> Any:
        return types.MethodType(self.fn, obj if obj is not None else owner.default())


class ModelFactory:
    """The seed's factory over a ``Router`` (``ModelFactory.<method>`` on the class: the default router)."""

    def __init__(self, router: Router | None = None) -> None:
        self.router = resolve_router(router)
        self._instances: dict[str, ChatModel] = {}

    @classmethod
    def default(cls) -> ModelFactory:
        """The default router's factory."""
        return default_for("factory", cls)

    # ------------------------------------------------------------------ resolution

    @_DefaultBound
    def resolve_provider(self, model_id: str) -> Provider | str:
        """The provider the seed's rules give ``model_id`` (a ``Provider`` when it is one of the seed's)."""
        name = self._provider_for(model_id)
        try:
            return Provider(name)
        except ValueError:
            return name

    def _provider_for(self, model_id: str) -> str:
        for prefix, provider in PROVIDER_PREFIXES:
            if model_id.startswith(prefix):
                return provider.value
        head = model_id.split("/", 1)[0] if "/" in model_id else ""
        catalog = self.router.catalog
        if head and catalog.find_provider(head) is not None and model_id in catalog \
                and catalog.find(f"{DEFAULT_PROVIDER}/{model_id}") is None:
            return head
        return DEFAULT_PROVIDER

    @_DefaultBound
    def resolve_model(self, model_id: str, provider: str | Provider | None = None) -> str:
        """The catalog id for ``model_id`` at ``provider`` (resolved by the seed's rules when ``None``)."""
        name = _provider_name(provider) if provider is not None else self._provider_for(model_id)
        candidate = model_id if model_id.startswith(f"{name}/") else f"{name}/{model_id}"
        catalog = self.router.catalog
        spec = catalog.find(candidate)
        if spec is None or spec.provider != name:
            raise UnknownModelError(candidate, catalog.suggest(candidate))
        return str(spec.id)

    # ------------------------------------------------------------------ models

    @_DefaultBound
    def get_chat_model(self, model_id: str | None = None, provider: str | Provider | None = None,
                       use_fallback: bool = True) -> ChatModel:
        """A chat model for ``model_id`` (resolved as in ``resolve_model``; cached per provider and id).
        With no ``model_id``: the head of OpenRouter's configured chain, else ``auto`` selection."""
        del use_fallback  # fallbacks are configuration; see the module docstring
        if model_id is None:
            ps = self.router.config.providers.get(DEFAULT_PROVIDER)
            model_id = ps.fallbacks[0] if ps is not None and ps.fallbacks else None
        if model_id is None:
            key = "auto"
            spec = None
        else:
            named = self.router.catalog.get(self.resolve_model(model_id, provider))
            key = f"{named.provider}:{model_id}"
            spec = self.router.catalog.migrate(named)  # what the router will call (warns once if retired)
        model = self._instances.get(key)
        if model is None:
            model = self._instances[key] = ChatModel(self.router, model_id, spec)
        return model

    @_DefaultBound
    def get_embedding_model(self, model_id: str | None = None) -> EmbeddingModel:
        """Embeddings: ``model_id`` when given (any catalog id or alias), else the ``embedding`` task."""
        return EmbeddingModel(self.router, self.router.catalog.get(model_id) if model_id else None)

    @_DefaultBound
    def configure_fallback(self, provider: str | Provider, models: Sequence[str]) -> list[str]:
        """Set ``provider``'s chain (``providers.<name>.fallbacks``); names are resolved at that
        provider. Returns the canonical ids."""
        name = _provider_name(provider)
        ids = [self.resolve_model(m, name) for m in models]
        providers = self.router.config.providers
        ps = providers.get(name) or ProviderSettings()
        ps.fallbacks = ids
        providers[name] = ps
        return ids

    # ------------------------------------------------------------------ breakers

    @_DefaultBound
    def circuit_breaker(self, provider: str | Provider) -> CircuitBreakerView:
        return CircuitBreakerView(self.router, provider)

    @_DefaultBound
    async def record_success(self, model_id: str, provider: str | Provider | None = None) -> bool:
        """Report a success to the provider's breaker (the model's provider when ``provider`` is ``None``)."""
        return await CircuitBreakerView(self.router, provider or self._provider_for(model_id)).record_success()

    @_DefaultBound
    async def record_failure(self, model_id: str, provider: str | Provider | None = None,
                             error: BaseException | None = None) -> bool:
        """Report a failure to the provider's breaker; see the module docstring for what counts."""
        view = CircuitBreakerView(self.router, provider or self._provider_for(model_id))
        return await view.record_failure(error)


def get_chat_model(model_id: str | None = None, provider: str | Provider | None = None,
                   router: Router | None = None) -> ChatModel:
    """The seed's convenience function (it now passes ``provider`` on, which the seed forgot)."""
    factory = ModelFactory(router) if router is not None else ModelFactory.default()
    return factory.get_chat_model(model_id, provider)


__all__ = [
    "PROVIDER_PREFIXES",
    "ChatModel",
    "CircuitBreakerView",
    "EmbeddingModel",
    "ModelFactory",
    "ModelUsage",
    "Provider",
    "ReportedFailure",
    "get_chat_model",
    "get_circuit_breaker",
]
