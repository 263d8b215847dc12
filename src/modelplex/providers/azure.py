"""The Azure OpenAI protocol: OpenAI's wire format behind Azure's URLs and authentication.

Owns: ``AzureOpenAIAdapter`` (protocol ``"azure"``). The endpoint is ``ProviderConfig.base_url``
(``https://RESOURCE.openai.azure.com``); a catalog model maps to a deployment through
``ProviderConfig.deployments`` (by model name, then by canonical id; else the model's wire name).

Two URL shapes:

* deployments (default): ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V``
  with an ``api-key`` header and no ``model`` in the body (the deployment names it);
* v1 (``use_v1_path``, or an endpoint ending in ``/openai/v1``): ``{endpoint}/openai/v1/chat/completions``
  with ``model`` = the deployment and no ``api-version``, authenticated as the OpenAI client does it
  (``Authorization: Bearer <key>``), which Azure's v1 API accepts for keys.

``profile: {auth_header: "api-key" | "bearer"}`` overrides the header for either shape. Bodies, streams,
usage and errors are OpenAI's (Azure adds ``prompt_filter_results``/``content_filter_results``, an
initial stream chunk with no choices, and ``innererror.code`` ``ResponsibleAIPolicyViolation`` on
content-filter errors, which the shared helpers handle).

Must not touch: retries, fallbacks, accounting, sockets; credentials never reach logs or exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from modelplex.errors import ConfigError
from modelplex.providers.openai_compat import OpenAIAdapter

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.providers.base import ProviderConfig

DEFAULT_API_VERSION = "2024-10-21"
"""The latest GA data-plane inference version; used when neither provider nor model names one."""


class AzureOpenAIAdapter(OpenAIAdapter):
    protocol: ClassVar[str] = "azure"

    def __init__(self, provider: ProviderConfig) -> None:
        super().__init__(provider)
        endpoint = (provider.base_url or "").rstrip("/")
        if not endpoint:
            raise ConfigError("Azure OpenAI needs its endpoint, e.g. https://RESOURCE.openai.azure.com",
                              key=f"providers.{provider.name}.endpoint")
        v1 = provider.use_v1_path
        if endpoint.endswith("/openai/v1"):
            endpoint, v1 = endpoint[: -len("/openai/v1")], True
        elif endpoint.endswith("/openai"):
            endpoint = endpoint[: -len("/openai")]
        self._endpoint = endpoint
        self.v1 = v1
        auth = str(provider.profile.get("auth_header") or ("bearer" if v1 else "api-key")).lower()
        if auth not in ("bearer", "api-key"):
            raise ConfigError(f"auth_header must be 'api-key' or 'bearer', not {auth!r}",
                              key=f"providers.{provider.name}.profile.auth_header")
        self._auth = auth

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(provider={self.provider.name!r}, endpoint={self._endpoint!r}, "
                f"v1={self.v1!r})")

    # ------------------------------------------------------------------ hooks

    def deployment(self, model: ModelSpec) -> str:
        deps = self.provider.deployments
        return deps.get(model.model_name) or deps.get(model.id) or model.api_model

    def api_version(self, model: ModelSpec | None = None) -> str:
        if model is not None and model.api_requirements.get("api_version"):
            return str(model.api_requirements["api_version"])
        return self.provider.api_version or DEFAULT_API_VERSION

    def _deployment_url(self, model: ModelSpec, operation: str) -> str:
        if self.v1:
            return f"{self._endpoint}/openai/v1/{operation}"
        dep = quote(self.deployment(model), safe="")
        return (f"{self._endpoint}/openai/deployments/{dep}/{operation}"
                f"?api-version={quote(self.api_version(model), safe='')}")

    def chat_url(self, model: ModelSpec) -> str:
        return self._deployment_url(model, "chat/completions")

    def embeddings_url(self, model: ModelSpec) -> str:
        return self._deployment_url(model, "embeddings")

    def responses_url(self, model: ModelSpec) -> str:
        """Azure serves the Responses API on its v1 path only (``model`` = the deployment), for either shape."""
        return f"{self._endpoint}/openai/v1/responses"

    def responses_model(self, model: ModelSpec) -> str:
        return self.deployment(model)

    def models_url(self) -> str:
        if self.v1:
            return f"{self._endpoint}/openai/v1/models"
        return f"{self._endpoint}/openai/models?api-version={quote(self.api_version(), safe='')}"

    def body_model(self, model: ModelSpec) -> str | None:
        return self.deployment(model) if self.v1 else None

    def auth_headers(self) -> dict[str, str]:
        key = self.provider.api_key
        if not key:
            return {}
        return {"Authorization": f"Bearer {key}"} if self._auth == "bearer" else {"api-key": key}
