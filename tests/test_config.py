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


# ------------------------------------------------------------------------------- catalog.overlays

OVERLAY_YAML = """\
providers:
  acme: {protocol: openai, display_name: Acme, profile: {stream_usage: true}}
models:
  - id: acme/m1
    context_window: 32000
    pricing: {input_per_mtok: 1.0, output_per_mtok: 2.0}
  - id: openai/gpt-4o
    pricing: {input_per_mtok: 3.0, output_per_mtok: 12.0}
"""


def _config_with_overlay(tmp_path: Path) -> Path:
    (tmp_path / "catalogs").mkdir()
    (tmp_path / "catalogs" / "extra.yaml").write_text(OVERLAY_YAML, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("catalog:\n  overlays: [catalogs/extra.yaml]\n"
                      "accounting: {sink: none}\n"
                      "providers:\n  acme: {base_url: 'http://127.0.0.1:9/v1', profile: {reports_cost: true}}\n"
                      "models:\n  - id: openai/gpt-4o\n    pricing: {input_per_mtok: 2.0}\n", encoding="utf-8")
    return config


def test_catalog_overlays_are_resolved_against_the_config_directory(tmp_path: Path, monkeypatch):
    config = _config_with_overlay(tmp_path)
    monkeypatch.chdir(tmp_path / "catalogs")   # not where the config lives
    cfg = load_config(config, env={})
    assert cfg.catalog.overlays == [str(tmp_path / "catalogs" / "extra.yaml")]
    overlay = cfg.catalog_overlay()
    assert [m["id"] for m in overlay["models"]] == ["acme/m1", "openai/gpt-4o", "openai/gpt-4o"]
    assert overlay["models"][0]["source"] == "overlay:extra.yaml"
    # the config's own provider settings go on top, merging profile key by key
    assert overlay["providers"]["acme"] == {"protocol": "openai", "display_name": "Acme",
                                            "base_url": "http://127.0.0.1:9/v1",
                                            "profile": {"stream_usage": True, "reports_cost": True}}


def test_catalog_overlays_apply_before_the_configs_models(tmp_path: Path):
    from modelplex.cli._common import load_catalog_for
    from modelplex.router import Router

    config = _config_with_overlay(tmp_path)
    router = Router(config, env={})
    try:
        cli_catalog = load_catalog_for(config)
        for catalog in (router.catalog, cli_catalog):
            gpt = catalog.get("openai/gpt-4o")
            assert (gpt.pricing.input_per_mtok, gpt.pricing.output_per_mtok) == (2.0, 12.0)  # config wins
            m1 = catalog.get("acme/m1")
            assert m1.context_window == 32_000 and m1.source == "overlay:extra.yaml"
            assert catalog.provider("acme").base_url == "http://127.0.0.1:9/v1"
            assert catalog.provider("acme").profile == {"stream_usage": True, "reports_cost": True}
    finally:
        router.close()


def test_a_provider_split_between_an_overlay_and_the_config_is_one_provider(tmp_path: Path):
    """Its base_url in the overlay file, its protocol and key variable in the config: valid together (the
    overlay alone would lack the protocol), for the Router as for the CLI."""
    from modelplex.cli._common import load_catalog_for
    from modelplex.router import Router

    (tmp_path / "ov.yaml").write_text("providers:\n  acme: {base_url: 'http://127.0.0.1:9/v1'}\n"
                                      "models:\n  - {id: acme/m1, context_window: 32000}\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("catalog: {overlays: [ov.yaml]}\naccounting: {sink: none}\n"
                      "providers:\n  acme: {protocol: openai, api_key_env: ACME_KEY}\n", encoding="utf-8")
    router = Router(config, env={"ACME_KEY": "k"})
    try:
        for catalog in (router.catalog, load_catalog_for(config)):
            acme = catalog.provider("acme")
            assert (acme.protocol, acme.base_url) == ("openai", "http://127.0.0.1:9/v1")
            assert catalog.get("acme/m1").context_window == 32_000
        assert "acme" in router.enabled_providers()
    finally:
        router.close()


def test_a_missing_catalog_overlay_is_a_config_error_naming_the_path(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("catalog:\n  overlays: [nope/litellm.yaml]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_config(config, env={})
    assert ei.value.key == "catalog.overlays[0]" and ei.value.file == str(config)
    assert str(tmp_path / "nope" / "litellm.yaml") in str(ei.value)


def test_catalog_overlays_in_a_mapping_are_relative_to_the_working_directory(tmp_path: Path, monkeypatch):
    (tmp_path / "o.yaml").write_text(OVERLAY_YAML, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    cfg = load_config({"catalog": {"overlays": ["o.yaml"]}}, env={})
    assert cfg.catalog.overlays == [str(tmp_path / "o.yaml")]
    with pytest.raises(ConfigError, match="catalog overlay file not found"):
        load_config({"catalog": {"overlays": ["absent.yaml"]}}, env={})
    with pytest.raises(ConfigError) as ei:
        load_config({"catalog": {"overlay": ["o.yaml"]}}, env={})
    assert ei.value.key == "catalog.overlay"


def test_an_imported_overlay_can_be_listed_in_the_config(tmp_path: Path):
    """The header write_overlay puts on an import says to list it under catalog overlays: that works."""
    from modelplex.catalog import Catalog
    from modelplex.catalog.importers import import_litellm, write_overlay
    from modelplex.cli._common import load_catalog_for

    source = {"gpt-4o": {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 128_000,
                         "max_output_tokens": 16_384, "input_cost_per_token": 2.5e-6,
                         "output_cost_per_token": 1e-5}}
    path = write_overlay(import_litellm(source, base=Catalog()), tmp_path / "litellm.yaml")
    assert "list it under catalog overlays in the config" in path.read_text(encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("catalog: {overlays: [litellm.yaml]}\n", encoding="utf-8")
    gpt = load_catalog_for(config).get("openai/gpt-4o")
    assert gpt.source == "litellm" and gpt.pricing.input_per_mtok == 2.5


# ------------------------------------------------------------------------------- what an error says


@pytest.mark.parametrize("data, key, hint", [
    ({"routng": {}}, "routng", "'routing'"),
    ({"routing": {"timeot": 3}}, "routing.timeot", "'timeout'"),
    ({"routing": {"retry": {"max_retries": 3}}}, "routing.retry.max_retries", "'max_retries_per_target'"),
    ({"tasks": {"t": {"modles": ["a/b"]}}}, "tasks.t.modles", "'models'"),
    ({"routing": {"cross_provider_chain": [{"modle": "a/b"}]}}, "routing.cross_provider_chain[0].modle", "'model'"),
])
def test_an_unknown_key_says_which_keys_the_section_has(data, key, hint):
    with pytest.raises(ConfigError) as ei:
        load_config(data, env={})
    name = key.rsplit(".", 1)[-1]
    assert ei.value.key == key
    assert f"unknown key {name!r} (did you mean {hint}?); known keys: " in str(ei.value)
    assert "Extra inputs" not in str(ei.value)


def test_an_unknown_top_level_key_lists_the_sections_but_not_internal_fields():
    with pytest.raises(ConfigError) as ei:
        load_config({"routng": {"timeout": 5}}, env={})
    assert str(ei.value) == ("routng: unknown key 'routng' (did you mean 'routing'?); known keys: accounting, budgets, "
                             "catalog, complexity, experiments, models, providers, routing, server, state, strategies, "
                             "tasks")


def test_an_unset_variable_is_named_when_its_value_is_invalid(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("server:\n  port: ${PORT}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert ei.value.key == "server.port"
    assert str(ei.value) == (f"{p}: server.port: Input should be a valid integer (got nothing: the environment "
                             "variable PORT is not set)")
    assert load_config(p, env={"PORT": "4100"}).server.port == 4100
    assert load_config({"providers": {"openai": {"api_key": "${OPENAI_API_KEY}"}}}, env={}).providers["openai"].api_key \
        is None  # an optional value may stay unset: the provider is disabled


@pytest.mark.parametrize("providers", [
    {"openai": "sk-proj-REALSECRETVALUE1234567890"},                      # a key where a mapping belongs
    {"openai": {"timeout": "sk-proj-REALSECRETVALUE1234567890"}},         # a key in the wrong field
    {"openai": {"extra_headers": {"Authorization": ["sk-proj-REALSECRETVALUE1234567890"]}}},
    {"openai": {"aws_access_key_id": 12345678901234567890}},
])
def test_nothing_under_providers_is_echoed_nor_an_internal_class_name(providers):
    with pytest.raises(ConfigError) as ei:
        load_config({"providers": providers}, env={})
    msg = str(ei.value)
    assert "REALSECRET" not in msg and "12345678901234567890" not in msg
    assert "ProviderSettings" not in msg and ei.value.key.startswith("providers.openai")


def test_a_mapping_expected_says_so():
    with pytest.raises(ConfigError) as ei:
        load_config({"providers": {"openai": "sk-proj-REALSECRETVALUE1234567890"}}, env={})
    assert str(ei.value) == "providers.openai: expected a mapping (got a string)"
    with pytest.raises(ConfigError) as ei:
        load_config({"routing": {"retry": 3}}, env={})
    assert str(ei.value) == "routing.retry: expected a mapping (got 3)"


def test_a_union_members_name_is_not_part_of_the_key_path():
    with pytest.raises(ConfigError) as ei:
        load_config({"routing": {"universal_fallback": 5}}, env={})
    assert ei.value.key == "routing.universal_fallback"
    with pytest.raises(ConfigError) as ei:
        load_config({"routing": {"cross_provider_chain": [{"provider": "openai"}]}}, env={})
    assert ei.value.key == "routing.cross_provider_chain[0].model" and "required" in str(ei.value)


# ------------------------------------------------------------------------------- overlay files' errors

BAD_OVERLAY = """\
models:
  - id: acme/m1
    context_window: 32000
    pricing: {input_per_mtok: -1.0}
"""


def test_an_overlay_files_error_names_that_file_and_its_own_index(tmp_path: Path):
    from modelplex.catalog import bundled_catalog
    from modelplex.router import Router

    (tmp_path / "bad.yaml").write_text(BAD_OVERLAY, encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("catalog: {overlays: [bad.yaml]}\naccounting: {sink: none}\n"
                      "models:\n  - {id: openai/gpt-4o, pricing: {input_per_mtok: 2.0}}\n", encoding="utf-8")
    cfg = load_config(config, env={})
    for build in (lambda: cfg.build_catalog(bundled_catalog()), lambda: Router(config, env={})):
        with pytest.raises(ConfigError) as ei:
            build()
        assert ei.value.file == str(tmp_path / "bad.yaml") and ei.value.key == "models[0].pricing.input_per_mtok"


def test_the_configs_own_models_are_numbered_as_in_the_config(tmp_path: Path):
    from modelplex.router import Router

    (tmp_path / "extra.yaml").write_text(OVERLAY_YAML, encoding="utf-8")  # two models
    config = tmp_path / "c.yaml"
    config.write_text("catalog: {overlays: [extra.yaml]}\naccounting: {sink: none}\n"
                      "models:\n  - {id: openai/gpt-4o, pricing: {input_per_mtok: 2.0}}\n"
                      "  - {id: openai/gpt-4o, pricing: {output_per_mtok: -3}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        Router(config, env={})
    assert ei.value.file == str(config) and ei.value.key == "models[1].pricing.output_per_mtok"
    assert str(ei.value).startswith(f"{config}: models[1].pricing.output_per_mtok: ")


def test_a_custom_provider_without_a_protocol_is_pointed_at_the_close_known_name():
    from modelplex.catalog import bundled_catalog

    typo = load_config({"providers": {"opnai": {"base_url": "http://127.0.0.1:9/v1"}}}, env={})
    with pytest.raises(ConfigError) as ei:
        typo.build_catalog(bundled_catalog())
    assert str(ei.value) == ("providers.opnai.protocol: required field is missing; 'opnai' is not a known provider "
                             "(did you mean 'openai'?)")
    custom = load_config({"providers": {"my-inference": {"base_url": "http://127.0.0.1:9/v1"}}}, env={})
    with pytest.raises(ConfigError) as ei:
        custom.build_catalog(bundled_catalog())
    assert str(ei.value) == "providers.my-inference.protocol: required field is missing"
