"""The load-time check of the names a config refers to: a typo is a ConfigError naming the file and the key
path (with close matches), never a fallback silently dropped or a request failing later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelplex.catalog import Catalog
from modelplex.config import Config, load_config
from modelplex.errors import ConfigError
from modelplex.policy import check_references

CAPS = ["tool_calling", "json_mode", "streaming", "system_messages"]


def model(model_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "context_window": 32_000, "max_output_tokens": 4_000, "capabilities": CAPS,
            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}, **extra}


BASE: dict[str, Any] = {
    "providers": {
        "alpha": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"},
        "beta": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"},
        "gamma": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1"},  # no key: disabled, still known
    },
    "models": [model("alpha/small"), model("alpha/large"), model("beta/mid"), model("gamma/remote"),
               model("alpha/old", deprecation={"deprecated": True, "replacement": "alpha/large"})],
}


def config(**extra: Any) -> Config:
    data = {**BASE, **{k: v for k, v in extra.items() if k != "providers"}}
    extra_providers = extra.get("providers", {})
    data["providers"] = {name: {**BASE["providers"].get(name, {}), **extra_providers.get(name, {})}
                         for name in {**BASE["providers"], **extra_providers}}
    return load_config(data, env={})


def check(cfg: Config) -> None:
    check_references(cfg, cfg.build_catalog(Catalog()))


@pytest.mark.parametrize("extra, key, says", [
    ({"routing": {"fallback_paths": {"alpha/smal": ["alpha/large"]}}},
     "routing.fallback_paths.alpha/smal", "unknown model 'alpha/smal'; did you mean 'alpha/small'"),
    ({"routing": {"fallback_paths": {"alpha/small": ["beta/mid", "alpha/lage"]}}},
     "routing.fallback_paths.alpha/small[1]", "did you mean 'alpha/large'"),
    ({"routing": {"cross_provider_chain": ["beta/mid", "beta/mdi"]}}, "routing.cross_provider_chain[1]", "beta/mid"),
    ({"routing": {"cross_provider_chain": [{"provider": "beta", "model": "mdi"}]}},
     "routing.cross_provider_chain[0].model", "unknown model 'beta/mdi'"),
    ({"routing": {"universal_fallback": "beta/mdi"}}, "routing.universal_fallback", "did you mean 'beta/mid'"),
    ({"routing": {"universal_fallback": ["beta/mid", "alpha/smal"]}}, "routing.universal_fallback[1]", "alpha/small"),
    ({"providers": {"alpha": {"fallbacks": ["beta/mdi"]}}}, "providers.alpha.fallbacks[0]", "beta/mid"),
    ({"routing": {"default_strategy": "balancd"}}, "routing.default_strategy",
     "unknown strategy 'balancd' (did you mean 'balanced'?)"),
    ({"tasks": {"t": {"strategy": "cost_optimised"}}}, "tasks.t.strategy", "did you mean 'cost_optimized'"),
    ({"experiments": {"strategy_split": {"balanced": 50, "qualty_optimized": 50}}},
     "experiments.strategy_split.qualty_optimized", "did you mean 'quality_optimized'"),
    ({"tasks": {"t": {"models": ["alpha/small", "alpha/larg"]}}}, "tasks.t.models[1]", "alpha/large"),
    ({"tasks": {"t": {"fallbacks": ["beta/mdi"]}}}, "tasks.t.fallbacks[0]", "beta/mid"),
    ({"strategies": {"balanced": {"models": {"reasoning": "alpha/lrge"}}}},
     "strategies.balanced.models.reasoning", "alpha/large"),
    ({"strategies": {"balanced": {"models": {"reasonin": "alpha/large"}}}},
     "strategies.balanced.models.reasonin", "unknown task 'reasonin' (did you mean 'reasoning'?)"),
    ({"strategies": {"mine": {"fallback_model": "alpha/smal"}}}, "strategies.mine.fallback_model", "alpha/small"),
    ({"tasks": {"t": {"escalate_to": "reasonin"}}}, "tasks.t.escalate_to", "did you mean 'reasoning'"),
    ({"tasks": {"t": {"requirements": {"capabilities": ["visoin"]}}}}, "tasks.t.requirements.capabilities",
     "unknown capability 'visoin'; did you mean 'vision'?"),
    ({"tasks": {"t": {"requirements": {"min_contxt": 5}}}}, "tasks.t.requirements.min_contxt",
     "unknown requirement 'min_contxt' (did you mean 'min_context'?)"),
    ({"providers": {"alpah": {"api_key": "k"}}}, "providers.alpah", "unknown provider 'alpah' (did you mean 'alpha'?)"),
    ({"providers": {"bta": {"enabled": False}}}, "providers.bta", "did you mean 'beta'"),
])
def test_an_unknown_name_is_a_config_error_naming_the_key(extra: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as ei:
        check(config(**extra))
    assert ei.value.key == key
    assert says in str(ei.value)


def test_the_error_names_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "modelplex.yaml"
    path.write_text(yaml.safe_dump({**BASE, "routing": {"fallback_paths": {"alpha/small": ["alpha/lage"]}}}))
    with pytest.raises(ConfigError) as ei:
        check(load_config(path, env={}))
    assert ei.value.file == str(path)
    assert str(ei.value).startswith(f"{path}: routing.fallback_paths.alpha/small[0]: unknown model 'alpha/lage'")


def test_deprecated_models_models_without_credentials_and_every_accepted_form_pass() -> None:
    """Not typos: the planner migrates a deprecated model and skips a provider without credentials per request."""
    check(config(
        providers={"alpha": {"fallbacks": ["large", "alpha/old"]},  # a bare name is read as alpha/large
                   "local": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1", "requires_key": False}},
        routing={"fallback_paths": {"alpha/old": ["gamma/remote"], "small": ["alpha/old"]},
                 "cross_provider_chain": [{"provider": "beta", "model": "mid"}, {"model": "gamma/remote"}],
                 "universal_fallback": ["alpha/old", "gamma/remote"], "default_strategy": "economy"},
        tasks={"t": {"models": ["alpha/old", "gamma/remote"], "strategy": "quality", "escalate_to": "u",
                     "requirements": {"capabilities": ["vision"], "min_context_window": 8000}},
               "u": {"fallbacks": ["alpha/old"]}},
        strategies={"mine": {"models": {"t": "gamma/remote", "reasoning": "alpha/old"}, "fallback_model": "beta/mid"}},
        experiments={"strategy_split": {"mine": 1, "cheap": 1, "balanced": 1}}))


def test_an_ambiguous_bare_name_is_an_error_listing_the_models() -> None:
    with pytest.raises(ConfigError) as ei:
        check(config(models=[*BASE["models"], model("beta/small")], routing={"universal_fallback": "small"}))
    assert ei.value.key == "routing.universal_fallback"
    assert "'small' could name more than one model: alpha/small, beta/small" in str(ei.value)
