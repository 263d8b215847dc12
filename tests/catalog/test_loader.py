"""Tests for modelplex.catalog.loader: bundled data files, overlays and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplex.catalog import Catalog, bundled_catalog, load_catalog
from modelplex.catalog.loader import DATA_DIR, clear_bundled_cache, parse_bundled_file, read_overlay
from modelplex.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLED = FIXTURES / "bundled"
OVERLAY = FIXTURES / "overlay.yaml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- bundled


def test_bundled_fixture_directory_loads() -> None:
    cat = bundled_catalog(BUNDLED)
    assert [p.name for p in cat.providers()] == ["anthropic", "openai"]
    assert cat.provider("openai").base_url == "https://api.openai.com/v1"
    assert cat.provider("openai").api_key_env == ("OPENAI_API_KEY",)
    # ids written without the provider prefix get it from the file's provider
    assert {m.id for m in cat.list(provider="openai", include_deprecated=True)} == {
        "openai/gpt-4o", "openai/gpt-4o-mini", "openai/o3-mini", "openai/gpt-3.5-turbo-16k",
        "openai/text-embedding-3-small"}
    assert cat.get("haiku").id == "anthropic/claude-3-haiku"
    assert cat.get("gpt-4o").id == "openai/gpt-4o"  # unambiguous here: only one provider has it
    assert all(m.source == "bundled" for m in cat)
    assert cat.get("openai/gpt-4o").tokenizer == "o200k_base"
    assert cat.get("openai/gpt-3.5-turbo-16k").deprecation.replacement == "openai/gpt-4o-mini"
    assert cat.param_mapping("openai/o3-mini")["max_tokens"] == "max_completion_tokens"
    assert cat.get("openai/text-embedding-3-small").mode == "embedding"


def test_bundled_catalog_returns_independent_catalogs() -> None:
    first = bundled_catalog(BUNDLED)
    first.add(first.get("openai/gpt-4o").model_copy(update={"id": "openai/extra"}))
    second = bundled_catalog(BUNDLED)
    assert "openai/extra" in first and "openai/extra" not in second
    # the specs themselves are shared (immutable), so this is cheap
    assert second.get("openai/gpt-4o") is bundled_catalog(BUNDLED).get("openai/gpt-4o")


def test_real_bundled_directory_loads() -> None:
    """Whatever the package ships in catalog/data must load, and every model's provider be defined."""
    clear_bundled_cache()
    cat = bundled_catalog()
    assert isinstance(cat, Catalog)
    if not list(DATA_DIR.glob("*.yaml")):
        assert len(cat) == 0
        return
    providers = {p.name for p in cat.providers()}
    assert providers
    for model in cat:
        assert model.provider in providers, f"{model.id}: provider {model.provider!r} has no ProviderSpec"
        assert model.id.startswith(model.provider + "/")
    assert len(load_catalog()) == len(cat)


def test_bundled_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "provider: {name: p, protocol: openai}\nmodels:\n  - {id: m, context_window: 10}\n")
    write(tmp_path, "b.yaml", "providers: {q: {protocol: openai}}\nmodels:\n  - {id: p/m, context_window: 10}\n")
    clear_bundled_cache()
    with pytest.raises(ConfigError) as info:
        bundled_catalog(tmp_path)
    assert info.value.file == str(tmp_path / "b.yaml")
    assert info.value.key == "models[0].id"
    assert "also defined in a.yaml" in str(info.value)


def test_bundled_file_errors_name_file_and_key(tmp_path: Path) -> None:
    bad_provider = write(tmp_path, "x.yaml", "provider: {name: x, protocol: smoke-signals}\n")
    with pytest.raises(ConfigError) as info:
        parse_bundled_file(bad_provider)
    assert info.value.file == str(bad_provider) and info.value.key == "provider.protocol"
    assert "smoke-signals" in str(info.value)
    bad_model = write(tmp_path, "y.yaml", "provider: {name: y, protocol: openai}\nmodels:\n"
                                          "  - {id: ok, context_window: 10}\n"
                                          "  - {id: bad, context_window: 10, max_output_tokens: -5}\n")
    with pytest.raises(ConfigError) as info2:
        parse_bundled_file(bad_model)
    assert info2.value.key == "models[1].max_output_tokens"
    assert "greater than 0" in str(info2.value)


# ------------------------------------------------------------------------------------- overlays


def test_overlay_file_adds_fine_tune_and_vllm_and_merges_price() -> None:
    cat = load_catalog([OVERLAY], data_dir=BUNDLED)
    ft = cat.get("support-ft")
    assert ft.id == "openai/ft:gpt-4o-mini:acme:support:abc123"
    assert ft.provider == "openai" and ft.source == "overlay:overlay.yaml"
    assert ft.api_model == "ft:gpt-4o-mini:acme:support:abc123"
    vllm = cat.provider("vllm")
    assert vllm.base_url == "${VLLM_BASE_URL}"  # left for the config layer to resolve
    assert vllm.requires_key is False and vllm.protocol == "openai"
    llama = cat.get("vllm/meta-llama/Llama-3.1-8B-Instruct")
    assert llama.provider == "vllm" and llama.cost_tier == "lowest"
    gpt = cat.get("openai/gpt-4o")
    assert gpt.pricing.input_per_mtok == 2.0
    assert gpt.pricing.output_per_mtok == 10.0 and gpt.pricing.cached_input_per_mtok == 1.25
    assert gpt.display_name == "GPT-4o" and gpt.category == "comprehensive"
    # the "tasks" key of the same file is not the catalog's business
    assert len(cat) == len(bundled_catalog(BUNDLED)) + 2


def test_overlays_apply_in_order_and_accept_dicts() -> None:
    cat = load_catalog([OVERLAY, {"models": [{"id": "openai/gpt-4o", "pricing": {"input_per_mtok": 1.0}}],
                                  "budgets": {"daily": 5}}], data_dir=BUNDLED)
    assert cat.get("openai/gpt-4o").pricing.input_per_mtok == 1.0
    assert cat.get("openai/gpt-4o").source == "overlay"
    # without the bundled data, the gpt-4o price change is a new, incomplete entry
    with pytest.raises(ConfigError) as info:
        load_catalog([OVERLAY], bundled=False)
    assert info.value.key == "models[2].context_window" and info.value.file == str(OVERLAY)
    assert len(load_catalog([{"providers": [{"name": "z", "protocol": "openai"}]}], bundled=False).providers()) == 1
    assert len(load_catalog([{}, {"tasks": {}}], bundled=False)) == 0


def test_overlay_validation_errors_name_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "user.yaml", "models:\n"
                                        "  - {id: acme/one, context_window: 1000}\n"
                                        "  - {id: acme/two, context_window: 1000, pricing: {input_per_mtok: -3}}\n")
    with pytest.raises(ConfigError) as info:
        load_catalog([path], bundled=False)
    assert info.value.file == str(path)
    assert info.value.key == "models[1].pricing.input_per_mtok"
    assert str(info.value).startswith(f"{path}: models[1].pricing.input_per_mtok: ")
    assert "(got -3)" in str(info.value)


def test_overlay_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog([write(tmp_path, "a.yaml", "models: {id: x}\n")], bundled=False)
    assert info.value.key == "models" and "list" in str(info.value)
    with pytest.raises(ConfigError) as info2:
        load_catalog([write(tmp_path, "b.yaml", "- just\n- a list\n")], bundled=False)
    assert "top level" in str(info2.value)
    with pytest.raises(ConfigError) as info3:
        load_catalog([write(tmp_path, "c.yaml", "providers:\n  acme: 5\n")], bundled=False)
    assert info3.value.key == "providers.acme"
    with pytest.raises(ConfigError) as info4:
        load_catalog([{"models": ["not a mapping"]}], bundled=False)
    assert info4.value.key == "models[0]"


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "models:\n  - id: a/b\n    context_window: [1, 2\n  - id: c\n")
    with pytest.raises(ConfigError) as info:
        load_catalog([path], bundled=False)
    assert info.value.file == str(path)
    assert "invalid YAML at line" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog([tmp_path / "nope.yaml"], bundled=False)
    assert info.value.file == str(tmp_path / "nope.yaml") and "not found" in str(info.value)


def test_read_overlay_ignores_other_keys() -> None:
    models, providers, file = read_overlay(OVERLAY)
    assert file == str(OVERLAY)
    assert models[0]["id"] == "openai/ft:gpt-4o-mini:acme:support:abc123"
    assert providers == [{"protocol": "openai", "display_name": "vLLM (on-prem)", "base_url": "${VLLM_BASE_URL}",
                          "requires_key": False, "name": "vllm"}]


def test_json_overlay_and_its_errors(tmp_path: Path) -> None:
    good = write(tmp_path, "o.json", '{"models": [{"id": "acme/one", "context_window": 1000}], "other": 1}')
    assert load_catalog([good], bundled=False).get("one").source == "overlay:o.json"
    bad = write(tmp_path, "b.json", '{"models": [\n  {"id": "acme/one",}\n]}')
    with pytest.raises(ConfigError) as info:
        load_catalog([bad], bundled=False)
    assert info.value.file == str(bad) and "invalid JSON at line 2" in str(info.value)
