"""docs/configuration.md is "every configuration key and environment variable" (README): every key of the
schema and every variable the code reads is on it, and its example file loads."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from modelplex.config import PROVIDER_CATALOG_FIELDS, Config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
SRC = ROOT / "src" / "modelplex"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        path = f"{prefix}{name}"
        out.append(path)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_keys(annotation, f"{path}."))
    return out


def _named(doc: str, key: str) -> bool:
    """``key`` (``routing.breaker.min_calls``) is named in a table or the example: its last part in backticks,
    or as a YAML key in the example."""
    leaf = key.rsplit(".", 1)[-1]
    return f"`{leaf}`" in doc or f"`{key}`" in doc or re.search(rf"(?m)^\s*{re.escape(leaf)}:", doc) is not None


def test_every_config_key_is_documented() -> None:
    from modelplex.config import (
        AccountingConfig,
        BudgetConfig,
        ComplexityConfig,
        ExperimentsConfig,
        ProviderSettings,
        ServerConfig,
        StrategyConfig,
        TaskConfig,
    )

    doc = _doc()
    keys = _keys(Config)
    for section, model in (("providers.<name>", ProviderSettings), ("tasks.<name>", TaskConfig),
                           ("strategies.<name>", StrategyConfig), ("experiments", ExperimentsConfig),
                           ("complexity", ComplexityConfig), ("budgets", BudgetConfig),
                           ("accounting", AccountingConfig), ("server", ServerConfig)):
        keys.extend(f"{section}.{k}" for k in _keys(model))
    keys.extend(f"providers.<name>.{k}" for k in PROVIDER_CATALOG_FIELDS)
    missing = sorted({k for k in keys if not _named(doc, k)})
    assert not missing, f"docs/configuration.md does not mention: {missing}"


def _env_vars_read_by_the_code() -> set[str]:
    names: set[str] = set()
    patterns = (r"""env(?:iron)?\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""", r"""environ\[["']([A-Z][A-Z0-9_]+)["']\]""",
                r"""["']([A-Z][A-Z0-9_]+)["'] in os\.environ""", r"""^[A-Z_]*ENV\s*=\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in SRC.rglob("*.py"):
        if "testing" in path.parts:  # the fake providers are not configuration
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            names.update(re.findall(pattern, text, re.MULTILINE))
    for path in (SRC / "catalog" / "data").glob("*.yaml"):
        provider = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("provider") or {}
        for key in ("api_key_env", "region_env", "endpoint_env"):
            value = provider.get(key) or []
            names.update([value] if isinstance(value, str) else value)
    return names


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    doc = _doc()
    found = _env_vars_read_by_the_code()
    assert {"MODELPLEX_ADMIN_KEY", "MODELPLEX_NO_AUTH", "OLLAMA_API_KEY", "AWS_DEFAULT_REGION"} <= found
    missing = sorted(name for name in found if f"`{name}" not in doc and f" {name}" not in doc)
    assert not missing, f"docs/configuration.md does not mention: {missing}"


def test_the_example_file_loads(tmp_path: Path) -> None:
    from modelplex import Router

    block = re.search(r"## The file\n.*?```yaml\n(.*?)```", _doc(), re.S)
    assert block is not None
    (tmp_path / "catalogs").mkdir()
    (tmp_path / "catalogs" / "litellm.yaml").write_text("models: []\n", encoding="utf-8")
    path = tmp_path / "modelplex.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    env = {"OPENAI_API_KEY": "sk-test", "AZURE_OPENAI_API_KEY": "az-test", "AWS_ACCESS_KEY_ID": "AKIA",
           "AWS_SECRET_ACCESS_KEY": "secret", "OR_KEY": "or-test", "GROQ_API_KEY": "gq-test",
           "MODELPLEX_ADMIN_KEY": "admin-test", "MODELPLEX_SERVER_SECRET": "0123456789abcdef"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the example names deprecated models on purpose
        router = Router.from_config(path, env=env)
    with router:
        cfg = router.config
        assert router.providers["openai"].timeout == 30
        assert router.provider_status["openrouter"].reason == "key from OR_KEY"
        assert not router.provider_status["mistral"].enabled
        assert cfg.providers["groq"].preferred_models == {"reasoning": "groq/openai/gpt-oss-120b"}
        assert cfg.experiments.salt == "modelplex" and cfg.complexity.many_messages == 12
        assert cfg.budgets.per_user_monthly_usd == 30 and cfg.accounting.flush_interval == 0.25
        assert cfg.server.key_store == "auto" and cfg.server.server_secret == "0123456789abcdef"


@pytest.mark.parametrize(("value", "env", "expected"), [
    ("${V}", {}, None),
    ("${V}", {"V": ""}, None),
    ("${V:-d}", {}, "d"),
    ("x${V}y", {}, "xy"),
    ("${V}", {"V": "set"}, "set"),
])
def test_unset_variables_as_the_doc_says(value: str, env: dict[str, str], expected: str | None) -> None:
    from modelplex.config import load_config

    cfg = load_config({"providers": {"openai": {"api_key": value}}}, env=env)
    assert cfg.providers["openai"].api_key == expected
    assert "becomes **null**, not an empty string" in _doc()
