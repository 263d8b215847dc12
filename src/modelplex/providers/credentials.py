"""Which providers are usable, and with what credentials.

Owns: ``resolve_providers(config, catalog, env)`` -> the enabled ``ProviderConfig``s plus a status
line for every known provider (``"ANTHROPIC_API_KEY not set: anthropic disabled"``), and
``missing_credentials_error`` for a call to a disabled provider.

Rules: config values win over the environment; a provider that needs a key is enabled only when
the key resolves; local servers (``requires_key: false`` such as Ollama and vLLM) are enabled only
when the config names them, so a fresh machine never routes to a server that is not there.

Must not touch: HTTP, logging of values (only variable *names* appear in messages).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelplex.errors import ProviderNotConfiguredError
from modelplex.providers.base import ProviderConfig

if TYPE_CHECKING:
    from modelplex.catalog.schema import ProviderSpec
    from modelplex.catalog.store import Catalog
    from modelplex.config import Config, ProviderSettings

DEFAULT_AZURE_API_VERSION = "2024-10-21"
DEFAULT_BEDROCK_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    name: str
    protocol: str
    enabled: bool
    reason: str
    env_vars: tuple[str, ...] = ()

    def line(self) -> str:
        return f"{self.name}: enabled ({self.reason})" if self.enabled else f"{self.reason}: {self.name} disabled"


def _first_env(names: tuple[str, ...] | list[str], env: Mapping[str, str]) -> tuple[str | None, str | None]:
    for n in names:
        v = env.get(n)
        if v:
            return v, n
    return None, None


def _key_envs(spec: ProviderSpec, settings: ProviderSettings | None) -> tuple[str, ...]:
    if settings is not None and settings.api_key_env:
        v = settings.api_key_env
        return (v,) if isinstance(v, str) else tuple(v)
    return tuple(spec.api_key_env)


def resolve_one(spec: ProviderSpec, settings: ProviderSettings | None, env: Mapping[str, str],
                default_timeout: float = 60.0) -> tuple[ProviderConfig | None, ProviderStatus]:
    name = spec.name
    protocol = (settings.protocol if settings is not None and settings.protocol else spec.protocol)
    envs = _key_envs(spec, settings)
    if settings is not None and not settings.enabled:
        return None, ProviderStatus(name, protocol, False, "disabled in config", envs)
    configured = settings is not None
    base_url = (settings.base_url if settings is not None and settings.base_url else spec.base_url) or ""
    timeout = settings.timeout if settings is not None and settings.timeout else default_timeout
    extra = {**spec.extra_headers, **(settings.extra_headers if settings is not None else {})}
    common = {"name": name, "protocol": protocol, "extra_headers": extra, "profile": dict(spec.profile),
              "timeout": timeout, "spec": spec}

    if protocol == "bedrock":
        s = settings
        key_id = (s.aws_access_key_id if s is not None else None) or env.get("AWS_ACCESS_KEY_ID")
        secret = (s.aws_secret_access_key if s is not None else None) or env.get("AWS_SECRET_ACCESS_KEY")
        token = (s.aws_session_token if s is not None else None) or env.get("AWS_SESSION_TOKEN")
        region = (s.region if s is not None else None) or _first_env(spec.region_env or
                                                                    ("AWS_REGION", "AWS_DEFAULT_REGION"), env)[0]
        if not key_id or not secret:
            return None, ProviderStatus(name, protocol, False, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY not set",
                                        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
        if importlib.util.find_spec("botocore") is None:
            return None, ProviderStatus(name, protocol, False, "botocore missing (pip install 'modelplex[bedrock]')")
        region = region or DEFAULT_BEDROCK_REGION
        return ProviderConfig(base_url=base_url or f"https://bedrock-runtime.{region}.amazonaws.com", region=region,
                              aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token,
                              **common), \
            ProviderStatus(name, protocol, True, f"AWS credentials, region {region}")

    api_key = settings.api_key if settings is not None and settings.api_key else None
    source = "config"
    if api_key is None:
        api_key, source = _first_env(envs, env)
    if not spec.requires_key and not configured:
        return None, ProviderStatus(name, protocol, False,
                                    f"local server not configured (add providers.{name} to enable)", envs)
    if spec.requires_key and not api_key:
        label = " or ".join(envs) if envs else f"providers.{name}.api_key"
        return None, ProviderStatus(name, protocol, False, f"{label} not set", envs)

    if protocol == "azure":
        endpoint = (settings.endpoint if settings is not None and settings.endpoint else None) or (
            env.get(spec.endpoint_env or "AZURE_OPENAI_ENDPOINT")) or base_url
        if not endpoint:
            return None, ProviderStatus(name, protocol, False, f"{spec.endpoint_env or 'AZURE_OPENAI_ENDPOINT'} not set",
                                        (spec.endpoint_env or "AZURE_OPENAI_ENDPOINT",))
        api_version = ((settings.api_version if settings is not None else None) or env.get("OPENAI_API_VERSION")
                       or spec.api_version or DEFAULT_AZURE_API_VERSION)
        return ProviderConfig(base_url=endpoint.rstrip("/"), api_key=api_key, api_version=api_version,
                              deployments=dict(settings.deployments) if settings is not None else {},
                              use_v1_path=bool(settings.use_v1_path) if settings is not None else False,
                              **common), \
            ProviderStatus(name, protocol, True, f"key from {source}, api-version {api_version}")

    if not base_url:
        return None, ProviderStatus(name, protocol, False, f"no base_url (set providers.{name}.base_url)", envs)
    reason = f"key from {source}" if api_key else "no key needed"
    return ProviderConfig(base_url=base_url.rstrip("/"), api_key=api_key, **common), \
        ProviderStatus(name, protocol, True, reason)


def resolve_providers(config: Config, catalog: Catalog, env: Mapping[str, str] | None = None
                      ) -> tuple[dict[str, ProviderConfig], list[ProviderStatus]]:
    """Enabled providers by name, and a status for every provider the catalog knows."""
    env = os.environ if env is None else env
    enabled: dict[str, ProviderConfig] = {}
    statuses: list[ProviderStatus] = []
    for spec in sorted(catalog.providers(), key=lambda s: s.name):
        cfg, status = resolve_one(spec, config.providers.get(spec.name), env, config.routing.timeout)
        statuses.append(status)
        if cfg is not None:
            enabled[spec.name] = cfg
    return enabled, statuses


def missing_credentials_error(status: ProviderStatus | None, provider: str) -> ProviderNotConfiguredError:
    if status is None:
        return ProviderNotConfiguredError(provider, (), "unknown provider")
    return ProviderNotConfiguredError(provider, status.env_vars, status.reason)
