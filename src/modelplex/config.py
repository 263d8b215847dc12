"""Configuration: YAML + environment, validated once, with errors that name the file and the key.

Owns: the ``Config`` schema (providers, models, tasks, strategies, experiments, routing, budgets,
accounting, state, server), ``${ENV_VAR}`` substitution, ``load_config(path | dict | None)``.

The ``providers``/``models`` sections are catalog overlays (see ``catalog.loader``), applied after
the overlay files listed under ``catalog.overlays``; provider credential resolution lives in
``providers.credentials``. Nothing here does I/O beyond reading the file, the overlay files it names
and the environment.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelplex.errors import ConfigError

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
            known = sorted(set(type(self).model_fields) | PROVIDER_CATALOG_FIELDS)
            hint = difflib.get_close_matches(unknown[0], known, n=1)
            raise ValueError(f"unknown key {unknown[0]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                             + f"; known keys: {', '.join(known)}")
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
        A file that cannot be read raises ``ConfigError`` naming it."""
        provider_fields = PROVIDER_CATALOG_FIELDS
        providers: dict[str, Any] = {}
        models: list[Any] = []
        if self.catalog.overlays:
            from modelplex.catalog.loader import read_overlay

            for path in self.catalog.overlays:
                file_models, file_providers, _ = read_overlay(path)
                label = f"overlay:{Path(path).name}"
                models.extend({**m, "source": label} if isinstance(m, Mapping) and "source" not in m else m
                              for m in file_models)
                for entry in file_providers:
                    fields = {k: v for k, v in entry.items() if k != "name"}
                    providers[entry["name"]] = _merge_provider(providers.get(entry["name"]), fields)
        for name, ps in self.providers.items():
            data = ps.model_dump(exclude_unset=True)
            entry = {k: v for k, v in data.items() if k in provider_fields}
            if isinstance(entry.get("api_key_env"), str):
                entry["api_key_env"] = [entry["api_key_env"]]
            extras = ps.model_extra or {}
            entry.update({k: v for k, v in extras.items() if k in provider_fields})
            if entry:
                providers[name] = _merge_provider(providers.get(name), entry)
        return {"providers": providers, "models": models + list(self.models)}


_SECRET_KEY_RE = re.compile(r"key|secret|token|password|dsn|url", re.IGNORECASE)
"""Config keys whose value a validation error does not echo (a credential, or a URL that may carry one)."""


def substitute_env(value: Any, env: Mapping[str, str] | None = None, *, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string. An unset variable without a
    default becomes ``None`` when it is the whole value (a missing key disables a provider), and
    an empty string inside a larger string."""
    env = os.environ if env is None else env
    if isinstance(value, str):
        whole = _ENV_RE.fullmatch(value)
        if whole:
            name, default = whole.group(1), whole.group(2)
            got = env.get(name)
            return got if got not in (None, "") else default
        return _ENV_RE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: substitute_env(v, env, path=f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


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
    data = substitute_env(data, env)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = _format_loc(tuple(first.get("loc", ())))
        msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        got = first.get("input")
        secret = _SECRET_KEY_RE.search(str(first.get("loc", ())[-1:]))
        got_s = "" if isinstance(got, (dict, list)) or secret else f" (got {got!r})"
        more = f"; and {len(exc.errors()) - 1} more problem(s)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{msg}{got_s}{more}", file=file, key=key) from None
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
