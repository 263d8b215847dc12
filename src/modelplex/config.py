"""Configuration: YAML + environment, validated once, with errors that name the file and the key.

Owns: the ``Config`` schema (providers, models, tasks, strategies, experiments, routing, budgets,
accounting, state, server), ``${ENV_VAR}`` substitution, ``load_config(path | dict | None)`` and what
its errors say (the key path; the keys a section has; the unset variable; never a value that may be a
credential).

The ``providers``/``models`` sections are catalog overlays (see ``catalog.loader``), applied after
the overlay files listed under ``catalog.overlays`` (``Config.build_catalog``); whether the names the
config refers to exist in that catalog is checked by ``policy.references``; provider credential
resolution lives in ``providers.credentials``. Nothing here does I/O beyond reading the file, the
overlay files it names and the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from modelplex.errors import ConfigError, did_you_mean, invalid_value_message

if TYPE_CHECKING:
    from modelplex.catalog.store import Catalog

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def unknown_key_message(name: str, known: Iterable[str]) -> str:
    """``unknown key 'routng' (did you mean 'routing'?); known keys: ...``: what every section says about
    a key it does not have."""
    names = sorted(known)
    return f"unknown key {name!r}{did_you_mean(name, names)}; known keys: {', '.join(names)}"


_UNKNOWN_KEY = "unknown_key"
"""The validation error type of a key a section does not have; its context names the key (``key``)."""


class _Model(BaseModel):
    """A config section: a key it does not define is an error naming the key and the ones it has."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = [name for name, f in cls.model_fields.items() if not f.exclude]
            for name in data:
                if name not in known:
                    raise PydanticCustomError(_UNKNOWN_KEY, "{message}",
                                              {"key": str(name), "message": unknown_key_message(str(name), known)})
        return data


PROVIDER_CATALOG_FIELDS = frozenset({"protocol", "display_name", "base_url", "api_key_env", "extra_headers",
                                     "profile", "requires_key", "endpoint_env", "api_version", "region_env"})
"""``providers.<name>`` keys that go to the catalog overlay (``ProviderSpec`` fields)."""


class ProviderSettings(BaseModel):
    """``providers.<name>``. Keys beyond these fields must be catalog provider fields
    (``PROVIDER_CATALOG_FIELDS``), kept for the catalog overlay; any other key is an error, so that a
    typo such as ``base_urll`` cannot send requests to the vendor's default endpoint."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _known_extras(self) -> ProviderSettings:
        unknown = sorted(set(self.model_extra or {}) - PROVIDER_CATALOG_FIELDS)
        if unknown:
            raise ValueError(unknown_key_message(unknown[0], set(type(self).model_fields) | PROVIDER_CATALOG_FIELDS))
        return self

    protocol: Literal["openai", "azure", "anthropic", "gemini", "bedrock"] | None = None
    enabled: bool = True
    priority: int = 0
    api_key: str | None = Field(None, repr=False)
    api_key_env: str | list[str] | None = None
    base_url: str | None = None
    endpoint: str | None = None
    api_version: str | None = None
    deployments: dict[str, str] = {}
    use_v1_path: bool = False
    region: str | None = None
    aws_access_key_id: str | None = Field(None, repr=False)
    aws_secret_access_key: str | None = Field(None, repr=False)
    aws_session_token: str | None = Field(None, repr=False)
    extra_headers: dict[str, str] = {}
    timeout: float | None = Field(None, gt=0)
    preferred_models: dict[str, str] = {}
    """Seed 000: preferred model per category, e.g. ``{reasoning: groq/llama-3.3-70b-versatile}``."""
    fallbacks: list[str] = []
    """Seed 002's per-provider chain (``fallback.yaml``)."""


class TaskConfig(_Model):
    """A task: a priority list of models, or requirements plus a strategy, or both (list first)."""

    models: list[str] = []
    requirements: dict[str, Any] = {}
    strategy: str | None = None
    description: str = ""
    fallbacks: list[str] = []
    max_tokens: int | None = None
    temperature: float | None = None
    escalate_to: str | None = None
    """Task to escalate to when the complexity score passes the threshold."""


class StrategyConfig(_Model):
    """A named strategy (seed 004): selection ordering plus optional per-task models and a cost cap."""

    selection: Literal["economy", "balanced", "quality", "adaptive"] = "balanced"
    models: dict[str, str] = {}
    """task -> model id; wins over the task's own list for this strategy."""
    max_cost_per_request: float | None = Field(None, ge=0)
    fallback_model: str | None = None


class ExperimentsConfig(_Model):
    strategy_split: dict[str, float] = {}
    """strategy -> weight; a user's arm is chosen by a hash of the user id (sticky)."""
    salt: str = "modelplex"


class ComplexityConfig(_Model):
    """Documented in docs/routing.md: score in [0, 1] from request features."""

    enabled: bool = True
    threshold: float = Field(0.8, ge=0, le=1)
    long_input_tokens: int = 2000
    many_messages: int = 12
    artifacts_weight: float = 0.05
    artifacts_cap: float = 0.4
    creative_weight: float = 0.3


class RetryConfig(_Model):
    max_retries_per_target: int = Field(2, ge=0)
    max_total_attempts: int = Field(8, ge=1)
    base_delay: float = Field(0.5, ge=0)
    max_delay: float = Field(8.0, ge=0)
    retry_after_cap: float = Field(30.0, ge=0)


class BreakerSettings(_Model):
    failure_threshold: int = Field(3, ge=1)
    recovery_time: float = Field(300.0, ge=0)
    half_open_max_calls: int = Field(1, ge=1)
    probe_timeout: float = Field(30.0, gt=0)
    mode: Literal["count", "rate"] = "count"
    window_size: int = Field(20, ge=1)
    min_calls: int = Field(10, ge=1)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    slow_call_threshold_s: float | None = None


class CrossProviderStep(_Model):
    provider: str | None = None
    model: str


class RoutingConfig(_Model):
    default_strategy: str = "balanced"
    fallback_paths: dict[str, list[str]] = {}
    """Seed 000: model -> models tried after it."""
    cross_provider_chain: list[CrossProviderStep | str] = []
    """Seed 002: tried after the per-model and per-provider chains."""
    universal_fallback: str | list[str] | None = None
    """Seed 003: the last resort."""
    content_policy_fallback: bool = False
    drop_unsupported_params: bool = True
    timeout: float = Field(60.0, gt=0)
    stream_idle_timeout: float = Field(30.0, gt=0)
    deadline: float = Field(120.0, gt=0)
    max_candidates: int = Field(5, ge=1)
    token_safety_margin: int = Field(100, ge=0)
    retry: RetryConfig = RetryConfig()
    breaker: BreakerSettings = BreakerSettings()
    model_breakers: bool = True


class BudgetConfig(_Model):
    daily_usd: float | None = Field(None, ge=0)
    monthly_usd: float | None = Field(None, ge=0)
    per_user_daily_usd: float | None = Field(None, ge=0)
    per_user_monthly_usd: float | None = Field(None, ge=0)
    per_request_max_usd: float | None = Field(None, ge=0)
    alert_at: float = Field(0.8, gt=0, le=1)
    on_exceed: Literal["reject", "downgrade"] = "reject"
    timezone: str = "UTC"
    webhook: str | None = None


class AccountingConfig(_Model):
    sink: Literal["memory", "sqlite", "postgres", "none"] = "sqlite"
    path: str | None = None
    """SQLite file; default ``$MODELPLEX_DB`` or ``./modelplex.db``."""
    dsn: str | None = Field(None, repr=False)
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(500, ge=1)
    flush_interval: float = Field(0.25, gt=0)
    journal_path: str | None = None
    log_prompts: bool = False


class StateConfig(_Model):
    url: str = "memory"
    """``memory`` or ``redis://host:port/db``."""


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    admin_key: str | None = Field(None, repr=False)
    server_secret: str | None = Field(None, repr=False)
    no_auth: bool = False
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    cors_origins: list[str] = []
    key_store: Literal["auto", "memory", "sqlite", "postgres"] = "auto"
    """Where gateway API keys live; ``auto`` follows ``accounting.sink`` (sqlite/postgres: the same
    database, its own table; memory/none: in memory)."""


class CatalogSettings(_Model):
    """``catalog``: where the model catalog comes from beyond the bundled data."""

    overlays: list[str] = []
    """Overlay files (YAML or JSON, e.g. written by ``modelplex catalog import``) applied in order on top
    of the bundled catalog and before this config's own ``providers``/``models``, so those win. A
    relative path is relative to the config file's directory (to the working directory for a config
    given as a mapping)."""


_MERGED_PROVIDER_FIELDS = ("profile", "extra_headers")
"""Provider fields that merge key by key when two overlays name one provider (as ``Catalog.with_overlay``)."""


def _merge_provider(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    if old is None:
        return dict(new)
    out = {**old, **new}
    for name in _MERGED_PROVIDER_FIELDS:
        if isinstance(old.get(name), Mapping) and isinstance(new.get(name), Mapping):
            out[name] = {**old[name], **new[name]}
    return out


class Config(_Model):
    catalog: CatalogSettings = CatalogSettings()
    providers: dict[str, ProviderSettings] = {}
    models: list[dict[str, Any]] = []
    tasks: dict[str, TaskConfig] = {}
    strategies: dict[str, StrategyConfig] = {}
    experiments: ExperimentsConfig = ExperimentsConfig()
    complexity: ComplexityConfig = ComplexityConfig()
    routing: RoutingConfig = RoutingConfig()
    budgets: BudgetConfig = BudgetConfig()
    accounting: AccountingConfig = AccountingConfig()
    state: StateConfig = StateConfig()
    server: ServerConfig = ServerConfig()
    source: str | None = Field(None, exclude=True)
    """The file this came from, for messages."""

    def catalog_overlay(self) -> dict[str, Any]:
        """One catalog overlay: the ``catalog.overlays`` files in order (their entries without a
        ``source`` get ``overlay:<file name>``, as ``load_catalog`` gives them), then the
        ``providers``/``models`` sections (ProviderSpec fields only), so the config's own settings win.
        A file that cannot be read raises ``ConfigError`` naming it. An invalid entry in this merged form
        can no longer be traced to its file: ``build_catalog`` applies the files one by one."""
        providers: dict[str, Any] = {}
        models: list[Any] = []
        for layer_models, layer_providers, _, _ in self._catalog_layers():
            models.extend(layer_models)
            for name, fields in layer_providers.items():
                providers[name] = _merge_provider(providers.get(name), fields)
        return {"providers": providers, "models": models}

    def build_catalog(self, base: Catalog) -> Catalog:
        """``base`` with this config's catalog applied: each ``catalog.overlays`` file in order, then the
        ``providers``/``models`` sections. An invalid entry raises ``ConfigError`` naming the file it is in
        and its key path there (``models[0].pricing.input_per_mtok`` is the file's first model)."""
        layers = self._catalog_layers()
        # Providers first, their fields merged across every layer (a provider's base_url in an overlay file
        # and its protocol in this config is one provider), so that any layer's models may name them.
        providers: dict[str, dict[str, Any]] = {}
        for _models, layer_providers, _file, _source in layers:
            for name, fields in layer_providers.items():
                providers[name] = _merge_provider(providers.get(name), fields)
        catalog = base
        if providers:
            catalog = catalog.with_overlay([], [{"name": k, **v} for k, v in providers.items()],
                                           source=self.source or "config", file=self.source)
        for models, _providers, file, source in layers:
            if models:
                catalog = catalog.with_overlay(models, [], source=source, file=file)
        return catalog

    def _catalog_layers(self) -> list[tuple[list[Any], dict[str, dict[str, Any]], str | None, str]]:
        """(model entries, provider name -> fields, file, source label) of each ``catalog.overlays`` file in
        order, then of this config's own ``providers``/``models`` (ProviderSpec fields only)."""
        layers: list[tuple[list[Any], dict[str, dict[str, Any]], str | None, str]] = []
        if self.catalog.overlays:
            from modelplex.catalog.loader import read_overlay

            for path in self.catalog.overlays:
                file_models, file_providers, _ = read_overlay(path)
                label = f"overlay:{Path(path).name}"
                models = [{**m, "source": label} if isinstance(m, Mapping) and "source" not in m else m
                          for m in file_models]
                providers: dict[str, dict[str, Any]] = {}
                for entry in file_providers:
                    fields = {k: v for k, v in entry.items() if k != "name"}
                    providers[entry["name"]] = _merge_provider(providers.get(entry["name"]), fields)
                layers.append((models, providers, path, label))
        own: dict[str, dict[str, Any]] = {}
        for name, ps in self.providers.items():
            data = ps.model_dump(exclude_unset=True)
            entry = {k: v for k, v in data.items() if k in PROVIDER_CATALOG_FIELDS}
            if isinstance(entry.get("api_key_env"), str):
                entry["api_key_env"] = [entry["api_key_env"]]
            extras = ps.model_extra or {}
            entry.update({k: v for k, v in extras.items() if k in PROVIDER_CATALOG_FIELDS})
            if entry:
                own[name] = entry
        layers.append((list(self.models), own, self.source, self.source or "config"))
        return layers


def substitute_env(value: Any, env: Mapping[str, str] | None = None, *, path: str = "",
                   unset: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string. An unset variable without a
    default becomes ``None`` when it is the whole value (a missing key disables a provider), and
    an empty string inside a larger string. ``unset``, when given, collects key path -> variable name
    for each value that became ``None`` that way (so that an error about it can name the variable)."""
    env = os.environ if env is None else env
    if isinstance(value, str):
        whole = _ENV_RE.fullmatch(value)
        if whole:
            name, default = whole.group(1), whole.group(2)
            got = env.get(name)
            out = got if got not in (None, "") else default
            if out is None and unset is not None:
                unset[path] = name
            return out
        return _ENV_RE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: substitute_env(v, env, path=f"{path}.{k}" if path else str(k), unset=unset)
                for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, path=f"{path}[{i}]", unset=unset) for i, v in enumerate(value)]
    return value


def _key_path(error: Mapping[str, Any], data: Any) -> str:
    """A validation error's location as a key path (``routing.retry.max_delay``, ``tasks.x.models[0]``),
    following ``data`` so that the names pydantic gives the members of a union (``str``,
    ``CrossProviderStep``), which are not keys of the file, are left out."""
    loc = tuple(error.get("loc", ()))
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(data, list):
            out += f"[{part}]"
            data = data[part] if part < len(data) else None
        elif (isinstance(data, Mapping) and part in data) or (i == len(loc) - 1 and error.get("type") == "missing"):
            out += ("." if out else "") + str(part)
            data = data.get(part) if isinstance(data, Mapping) else None
    return out


def _validation_error(exc: ValidationError, data: Mapping[str, Any], file: str | None,
                      unset: Mapping[str, str]) -> ConfigError:
    """The ``ConfigError`` for the first problem pydantic found (the count of the others is added)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    key = _key_path(first, data)
    if first.get("type") == _UNKNOWN_KEY:  # the error is the section's; its key is the one it lacks
        key = ".".join(k for k in (key, first["ctx"]["key"]) if k)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    got = first.get("input")
    if got is None and key in unset:
        msg = f"{msg} (got nothing: the environment variable {unset[key]} is not set)"
    else:
        msg = invalid_value_message(str(first.get("type", "")), msg, key, got)
    others = len({_key_path(e, data) for e in errors[1:]} - {key})
    more = f"; and {others} more problem(s)" if others else ""
    return ConfigError(f"{msg}{more}", file=file, key=key or None)


def read_yaml(path: str | Path) -> Any:
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", file=str(p)) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {where}{problem}", file=str(p)) from None


def load_config(source: str | Path | Mapping[str, Any] | Config | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load and validate configuration.

    ``source`` is a YAML path, a mapping, a ``Config``, or ``None`` (then ``$MODELPLEX_CONFIG`` if
    set, else defaults). Errors raise ``ConfigError`` naming the file, the key path and what was
    expected.
    """
    if isinstance(source, Config):
        return source
    env = os.environ if env is None else env
    file: str | None = None
    if source is None:
        path = env.get("MODELPLEX_CONFIG")
        if not path:
            return Config()
        source = path
    if isinstance(source, (str, Path)):
        file = str(source)
        data = read_yaml(source)
    else:
        data = dict(source)
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", file=file)
    unset: dict[str, str] = {}
    data = substitute_env(data, env, unset=unset)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, file, unset) from None
    cfg.source = file
    _resolve_overlays(cfg, file)
    return cfg


def _resolve_overlays(cfg: Config, file: str | None) -> None:
    """Make ``catalog.overlays`` absolute (relative to the config file's directory) and check that
    each exists, so a wrong path is reported when the config loads, with its key."""
    if not cfg.catalog.overlays:
        return
    root = Path(file).resolve().parent if file is not None else Path.cwd()
    resolved = []
    for i, raw in enumerate(cfg.catalog.overlays):
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ConfigError(f"catalog overlay file not found: {path}", file=file, key=f"catalog.overlays[{i}]")
        resolved.append(str(path))
    cfg.catalog.overlays = resolved
