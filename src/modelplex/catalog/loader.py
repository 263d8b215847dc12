"""Loading the catalog: the bundled data files plus user overlays.

Owns: reading ``catalog/data/*.yaml`` (one file per provider: ``provider: {ProviderSpec fields}``
and ``models: [ModelSpec fields]``, the provider implied), reading overlays (a YAML path or a dict
whose ``providers`` and ``models`` keys are applied; every other key is ignored, so the full config
file is also an overlay), and turning bad data into ``ConfigError`` naming the file, the key path
and what was expected.

The bundled files are parsed and validated once per process (a memo keyed on the directory);
``bundled_catalog()`` returns a fresh ``Catalog`` over those immutable specs on every call, so
callers may ``add`` to it freely. ``${ENV}`` strings pass through untouched (the config layer
resolves them).

Must not touch: environment variables, the network, anything outside the files it is given.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from modelplex.catalog.schema import ModelSpec, ProviderSpec
from modelplex.catalog.store import Catalog, config_error_from_validation
from modelplex.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Where the bundled catalog lives: every ``*.yaml`` file here is read."""

_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

OverlaySource = str | Path | Mapping[str, Any]


def read_yaml(path: str | Path) -> Any:
    """Parse one YAML file (or a ``.json`` file, which is YAML too, with a JSON parser many times
    faster: large imported overlays load quickest as JSON). Unreadable files and bad YAML/JSON raise
    ``ConfigError`` with the file and line."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", file=file) from None
    if Path(path).suffix.lower() == ".json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file) from None
    try:
        return yaml.load(text, Loader=_YamlLoader)  # a safe loader (CSafeLoader when built)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML at {where}{problem}", file=file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None


# ---------------------------------------------------------------------------------- bundled data


def _provider_entries(raw: Any, file: str) -> list[dict[str, Any]]:
    """Overlay-style ``providers``: a mapping name -> fields (the name is the key) or a list of
    entries with ``name``."""
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        out = []
        for name, fields in raw.items():
            if fields is None:
                fields = {}
            if not isinstance(fields, Mapping):
                raise ConfigError(f"expected a mapping of provider fields, got {type(fields).__name__}",
                                  file=file, key=f"providers.{name}")
            out.append({**fields, "name": str(name)})
        return out
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, Mapping) or "name" not in item:
                raise ConfigError("expected a mapping with a name", file=file, key=f"providers[{i}]")
        return [dict(item) for item in raw]
    raise ConfigError(f"expected a mapping of provider name -> fields, got {type(raw).__name__}",
                      file=file, key="providers")


def _model_entries(raw: Any, file: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"expected a list of model entries, got {type(raw).__name__}", file=file, key="models")
    return raw


def parse_bundled_file(path: Path) -> tuple[list[ModelSpec], list[ProviderSpec]]:
    """Validate one bundled provider file. Model ids may omit the provider prefix."""
    file = str(path)
    data = read_yaml(path)
    if data is None:
        return [], []
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", file=file)
    providers: list[ProviderSpec] = []
    default_provider: str | None = None
    raw_provider = data.get("provider")
    if raw_provider is not None:
        if not isinstance(raw_provider, Mapping):
            raise ConfigError("expected a mapping of ProviderSpec fields", file=file, key="provider")
        try:
            spec = ProviderSpec.model_validate(dict(raw_provider))
        except ValidationError as exc:
            raise config_error_from_validation(exc, file=file, key_prefix="provider") from None
        providers.append(spec)
        default_provider = spec.name
    for entry in _provider_entries(data.get("providers"), file):
        try:
            providers.append(ProviderSpec.model_validate(entry))
        except ValidationError as exc:
            raise config_error_from_validation(exc, file=file, key_prefix=f"providers.{entry['name']}") from None
    models: list[ModelSpec] = []
    for i, entry in enumerate(_model_entries(data.get("models"), file)):
        key = f"models[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"expected a mapping of model fields, got {type(entry).__name__}", file=file, key=key)
        fields = dict(entry)
        model_id = fields.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise ConfigError("a model entry needs an id", file=file, key=f"{key}.id")
        provider = fields.get("provider") or default_provider or model_id.split("/", 1)[0]
        fields["provider"] = provider
        if not model_id.startswith(f"{provider}/"):
            fields["id"] = f"{provider}/{model_id}"
        fields.setdefault("source", "bundled")
        try:
            models.append(ModelSpec.model_validate(fields))
        except ValidationError as exc:
            raise config_error_from_validation(exc, file=file, key_prefix=key) from None
    return models, providers


@functools.lru_cache(maxsize=8)
def _bundled_specs(data_dir: str) -> tuple[tuple[ModelSpec, ...], tuple[ProviderSpec, ...]]:
    models: dict[str, tuple[ModelSpec, str]] = {}
    providers: dict[str, tuple[ProviderSpec, str]] = {}
    directory = Path(data_dir)
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        file_models, file_providers = parse_bundled_file(path)
        for provider in file_providers:
            if provider.name in providers:
                raise ConfigError(f"provider {provider.name!r} is also defined in {providers[provider.name][1]}",
                                  file=str(path), key=f"providers.{provider.name}")
            providers[provider.name] = (provider, path.name)
        for i, spec in enumerate(file_models):
            if spec.id in models:
                raise ConfigError(f"model {spec.id!r} is also defined in {models[spec.id][1]}",
                                  file=str(path), key=f"models[{i}].id")
            models[spec.id] = (spec, path.name)
    return tuple(m for m, _ in models.values()), tuple(p for p, _ in providers.values())


def bundled_catalog(data_dir: str | Path | None = None) -> Catalog:
    """A fresh ``Catalog`` of the bundled data (parsed once per process, then reused)."""
    directory = Path(data_dir).resolve() if data_dir is not None else DATA_DIR
    models, providers = _bundled_specs(str(directory))
    return Catalog(models, providers)


def clear_bundled_cache() -> None:
    """Forget the parsed bundled data (tests that edit a data directory call this)."""
    _bundled_specs.cache_clear()


# ---------------------------------------------------------------------------------- overlays


def read_overlay(source: OverlaySource) -> tuple[list[Any], list[dict[str, Any]], str | None]:
    """(model entries, provider entries, file name or ``None``) of one overlay."""
    if isinstance(source, Mapping):
        data: Any = source
        file: str | None = None
    else:
        file = str(source)
        data = read_yaml(source)
    if data is None:
        return [], [], file
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", file=file)
    label = file or "<overlay>"
    return _model_entries(data.get("models"), label), _provider_entries(data.get("providers"), label), file


def load_catalog(overlays: Iterable[OverlaySource] = (), *, bundled: bool = True,
                 data_dir: str | Path | None = None) -> Catalog:
    """The bundled catalog (unless ``bundled=False``) with each overlay applied in order.

    An overlay is a YAML path or a dict; only its ``providers`` (name -> ProviderSpec fields) and
    ``models`` (list of ModelSpec fields; ``provider`` defaults to the id's prefix) are read.
    Entries for existing ids merge; see ``Catalog.with_overlay``. ``data_dir`` replaces the bundled
    data directory (tests, or a vendored copy of the data).
    """
    catalog = bundled_catalog(data_dir) if bundled else Catalog()
    if isinstance(overlays, str | Path | Mapping):
        overlays = [overlays]
    for overlay in overlays:
        models, providers, file = read_overlay(overlay)
        if not models and not providers:
            continue
        source = f"overlay:{Path(file).name}" if file else "overlay"
        catalog = catalog.with_overlay(models, providers, source=source, file=file)
    return catalog
