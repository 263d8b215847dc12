"""Configuration loading: env substitution, validation errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplex.config import Config, load_config, substitute_env
from modelplex.errors import ConfigError


def test_env_substitution_whole_and_embedded():
    env = {"KEY": "sk-1", "HOST": "example"}
    data = {"a": "${KEY}", "b": "https://${HOST}/v1", "c": "${MISSING}", "d": "${MISSING:-dflt}",
            "e": ["${KEY}"]}
    assert substitute_env(data, env) == {"a": "sk-1", "b": "https://example/v1", "c": None, "d": "dflt",
                                         "e": ["sk-1"]}


def test_invalid_value_names_file_and_key(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("routing:\n  retry:\n    max_delay: -1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    msg = str(ei.value)
    assert str(p) in msg and "routing.retry.max_delay" in msg and "greater than or equal to 0" in msg
    assert ei.value.key == "routing.retry.max_delay"


def test_unknown_key_is_an_error(tmp_path: Path):
    p = tmp_path / "typo.yaml"
    p.write_text("routing:\n  defualt_strategy: balanced\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert "routing.defualt_strategy" in str(ei.value)


def test_bad_yaml_names_line(tmp_path: Path):
    p = tmp_path / "broken.yaml"
    p.write_text("providers:\n  openai: {api_key: ${X}}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert "line 2" in str(ei.value) and str(p) in str(ei.value)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "nope.yaml", env={})
    assert "cannot read config" in str(ei.value)


def test_env_var_points_at_config(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("routing:\n  default_strategy: quality_optimized\n")
    cfg = load_config(None, env={"MODELPLEX_CONFIG": str(p)})
    assert cfg.routing.default_strategy == "quality_optimized" and cfg.source == str(p)
    assert load_config(None, env={}) == Config()


def test_catalog_overlay_carries_provider_fields_only():
    cfg = load_config({"providers": {"mine": {"protocol": "openai", "base_url": "http://x/v1", "api_key": "s",
                                              "requires_key": False}}}, env={})
    overlay = cfg.catalog_overlay()
    assert overlay["providers"]["mine"] == {"protocol": "openai", "base_url": "http://x/v1", "requires_key": False}


@pytest.mark.parametrize("provider, typo, hint", [
    ({"apikey": "sk-TYPO-SECRET", "base_url": "http://127.0.0.1:1/v1"}, "apikey", "api_key"),
    ({"api_key": "k", "base_urll": "http://127.0.0.1:1"}, "base_urll", "base_url"),
])
def test_a_typo_under_a_provider_is_an_error_not_the_vendors_default_endpoint(provider, typo, hint):
    with pytest.raises(ConfigError) as ei:
        load_config({"providers": {"anthropic": provider}}, env={})
    msg = str(ei.value)
    assert f"unknown key {typo!r} (did you mean {hint!r}?)" in msg and ei.value.key == "providers.anthropic"
    assert "SECRET" not in msg


def test_catalog_provider_fields_are_accepted_under_a_provider():
    cfg = load_config({"providers": {"my": {"protocol": "openai", "base_url": "http://x/v1", "profile": {"a": 1},
                                            "display_name": "Mine", "requires_key": False}}}, env={})
    assert cfg.catalog_overlay()["providers"]["my"]["display_name"] == "Mine"


@pytest.mark.parametrize("server, key", [({"port": 99_999}, "server.port"), ({"max_body_bytes": -1}, "server.max_body_bytes")])
def test_server_values_are_range_checked(server, key):
    with pytest.raises(ConfigError) as ei:
        load_config({"server": server}, env={})
    assert ei.value.key == key


@pytest.mark.parametrize("section, field", [("server", "admin_key"), ("server", "server_secret"),
                                            ("accounting", "dsn")])
def test_a_mistyped_secret_is_not_echoed(section, field):
    with pytest.raises(ConfigError) as ei:
        load_config({section: {field: 123456789012345}}, env={})
    assert "123456789012345" not in str(ei.value) and ei.value.key == f"{section}.{field}"
