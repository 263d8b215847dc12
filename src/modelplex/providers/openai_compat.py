"""The OpenAI chat-completions protocol, for OpenAI and every OpenAI-compatible vendor.

Owns: ``OpenAIAdapter`` (protocol ``"openai"``): request building for ``{base_url}/chat/completions``,
``/embeddings`` and ``/models`` (and ``/responses`` for models served only by OpenAI's Responses API,
``api_requirements.endpoint: responses``, through ``_responses_wire``), Bearer authentication (omitted when the provider has no key, as for
Ollama or vLLM), and the wiring of the shared pure helpers in ``_openai_wire``. Vendors (OpenRouter,
Groq, DeepSeek, Together, Ollama, vLLM ...) differ only by data: base URL, ``extra_headers`` (e.g.
OpenRouter's ``HTTP-Referer``/``X-Title``) and ``profile`` (``stream_usage``, ``max_tokens_param``).

Must not touch: retries, fallbacks, accounting (the router composes those), sockets (``base.Adapter``
does the I/O). Credentials never reach logs, exception messages or ``repr``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from modelplex.catalog.params import responses_only
from modelplex.providers import _openai_wire as wire
from modelplex.providers import _responses_wire as rwire
from modelplex.providers.base import Adapter, ProviderConfig, StreamDecoder, WireRequest, load_json_object

if TYPE_CHECKING:
    from modelplex.catalog.schema import ModelSpec
    from modelplex.errors import InvalidResponseError, ProviderError
    from modelplex.types import ChatRequest, EmbeddingResponse, EmbedRequest, Response

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_AUTH_HEADERS = frozenset({"authorization", "api-key"})


class OpenAIAdapter(Adapter):
    """OpenAI chat completions and embeddings. Azure's adapter subclasses this and overrides the
    URL, authentication and ``model``-field hooks."""

    protocol: ClassVar[str] = "openai"

    def __init__(self, provider: ProviderConfig) -> None:
        super().__init__(provider)
        self._base = (provider.base_url or DEFAULT_BASE_URL).rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider.name!r}, base_url={self._base!r})"

    # ------------------------------------------------------------------ hooks (Azure overrides)

    def chat_url(self, model: ModelSpec) -> str:
        return f"{self._base}/chat/completions"

    def embeddings_url(self, model: ModelSpec) -> str:
        return f"{self._base}/embeddings"

    def responses_url(self, model: ModelSpec) -> str:
        """Where a model served only by the Responses API (``endpoint: responses``) is called."""
        return f"{self._base}/responses"

    def responses_model(self, model: ModelSpec) -> str:
        """The Responses body's ``model`` field (always present on that API)."""
        return model.api_model

    def models_url(self) -> str:
        return f"{self._base}/models"

    def body_model(self, model: ModelSpec) -> str | None:
        """The body's ``model`` field; ``None`` omits it."""
        return model.api_model

    def auth_headers(self) -> dict[str, str]:
        key = self.provider.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ------------------------------------------------------------------ pure functions

    def headers(self, request_headers: Mapping[str, str] | None = None, *, json_body: bool = True
                ) -> dict[str, str]:
        """Content type, auth, the provider's ``extra_headers``, then the request's own headers (which
        may not replace the credentials). ``Accept`` is ``application/json`` for streams too, as the
        official SDKs send it."""
        h: dict[str, str] = ({"Accept": "application/json", "Content-Type": "application/json"} if json_body
                             else {"Accept": "application/json"})
        h.update(self.auth_headers())
        extra = self.provider.extra_headers
        if extra:
            h.update(extra)
        if request_headers:
            for k, v in request_headers.items():
                if k.lower() not in _AUTH_HEADERS:
                    h[k] = v
        return h

    def chat_to_wire(self, req: ChatRequest, model: ModelSpec) -> WireRequest:
        if responses_only(model):
            body, dropped = rwire.build_responses_body(self.protocol, req, model,
                                                       model_field=self.responses_model(model))
            url = self.responses_url(model)
        else:
            body, dropped = wire.build_chat_body(self.protocol, req, model, model_field=self.body_model(model),
                                                 profile=self.provider.profile)
            url = self.chat_url(model)
        if dropped:
            log.debug("%s: dropping parameters %s unsupported by %s", self.provider.name, sorted(dropped), model.id)
        return WireRequest("POST", url, self.headers(req.extra_headers), wire.dumps(body))

    def chat_from_wire(self, payload: bytes, model: ModelSpec, headers: Mapping[str, str] | None = None
                       ) -> Response:
        invalid = self._invalidator(model)  # one for the body check and the parse
        data = load_json_object(payload, invalid)
        if responses_only(model):
            return rwire.parse_response(data, model_id=model.id, provider=self.provider.name, invalid=invalid,
                                        classify_error=self._event_classifier(model))
        if "choices" not in data and data.get("error") is not None:
            # OpenRouter reports some failures in-band with a 200
            err = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            raise wire.classify(None, headers, err, provider=self.provider.name, model=model.id,
                                secrets=self.provider.secrets())
        return wire.parse_chat(data, model_id=model.id, provider=self.provider.name, invalid=invalid)

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes, model: ModelSpec
                       ) -> ProviderError:
        return wire.classify(status, headers, wire.error_object(body), provider=self.provider.name,
                             model=model.id, secrets=self.provider.secrets())

    def new_stream_decoder(self, model: ModelSpec, req: ChatRequest) -> StreamDecoder:
        if responses_only(model):
            return rwire.ResponsesStreamDecoder(self._event_classifier(model), self._invalidator(model))
        return wire.OpenAIStreamDecoder(self._event_classifier(model), self._invalidator(model))

    def _event_classifier(self, model: ModelSpec) -> Callable[[dict[str, Any]], ProviderError]:
        """The typed error for an error object that came in a 200 body or a stream event."""
        name, secrets = self.provider.name, self.provider.secrets()
        return lambda err: wire.classify(None, None, err, provider=name, model=model.id, secrets=secrets)

    def embed_to_wire(self, req: EmbedRequest, model: ModelSpec) -> WireRequest:
        body = wire.build_embed_body(list(req.input), req.params, model_field=self.body_model(model))
        return WireRequest("POST", self.embeddings_url(model), self.headers(), wire.dumps(body))

    def embed_from_wire(self, payload: bytes, model: ModelSpec, req: EmbedRequest) -> EmbeddingResponse:
        invalid = self._invalidator(model)
        return wire.parse_embeddings(self._json_object(payload, model), model_id=model.id,
                                     provider=self.provider.name, expected=len(req.input), invalid=invalid)

    def health_to_wire(self) -> WireRequest:
        return WireRequest("GET", self.models_url(), self.headers(json_body=False))

    # ------------------------------------------------------------------ helpers

    def _invalidator(self, model: ModelSpec) -> Callable[[str], InvalidResponseError]:
        def invalid(message: str) -> InvalidResponseError:
            return self._invalid(model, message)

        return invalid
