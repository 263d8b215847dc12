"""``modelplex catalog import|stats``: counts, the written overlay (loadable as a config), errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelplex.catalog import bundled_catalog
from modelplex.cli.main import app

LITELLM = {
    "sample_spec": {"mode": "one of: chat, embedding"},
    "testvendor/alpha-chat": {
        "litellm_provider": "testvendor", "mode": "chat", "max_input_tokens": 131072, "max_output_tokens": 8192,
        "input_cost_per_token": 2e-07, "output_cost_per_token": 8e-07, "supports_function_calling": True,
        "supports_vision": True,
    },
    "testvendor/alpha-embed": {
        "litellm_provider": "testvendor", "mode": "embedding", "max_input_tokens": 8192,
        "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0, "output_vector_size": 1024,
    },
    "otherco/beta": {
        "litellm_provider": "otherco", "mode": "chat", "max_input_tokens": 32000, "max_output_tokens": 4096,
        "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
    },
    "testvendor/painter": {"litellm_provider": "testvendor", "mode": "image_generation",
                           "output_cost_per_image": 0.04},
}

OPENROUTER = {"data": [{
    "id": "testlab/gamma-1",
    "name": "TestLab: Gamma 1",
    "context_length": 200000,
    "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
    "pricing": {"prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003"},
    "top_provider": {"context_length": 200000, "max_completion_tokens": 16000},
    "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice", "response_format"],
}]}

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPLEX_CONFIG", raising=False)


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


@pytest.fixture
def litellm_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(LITELLM), encoding="utf-8")
    return path


def test_import_litellm_json_counts_and_overlay(litellm_file: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "out" / "overlay.yaml"
    result = run("catalog", "import", "--format", "litellm", str(litellm_file), "-o", str(overlay), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    # the importer's summary, then the overlay path
    assert {"source", "origin", "as_of", "models", "providers", "skipped", "by_provider"} <= set(data)
    assert list(data)[-1] == "overlay"
    assert data["models"] == 3
    assert data["providers"] == 2
    assert data["by_provider"] == {"otherco": 1, "testvendor": 2}
    assert data["skipped"] == {"mode:image_generation": 1}
    assert data["origin"] == str(litellm_file)
    assert data["overlay"] == str(overlay)
    written = yaml.safe_load(overlay.read_text(encoding="utf-8"))
    assert sorted(m["id"] for m in written["models"]) == ["otherco/beta", "testvendor/alpha-chat",
                                                          "testvendor/alpha-embed"]
    assert set(written["providers"]) == {"otherco", "testvendor"}


def test_written_overlay_loads_as_a_config(litellm_file: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    assert run("catalog", "import", "-F", "litellm", str(litellm_file), "-o", str(overlay)).exit_code == 0
    result = run("models", "show", "testvendor/alpha-chat", "--config", str(overlay), "--json")
    assert result.exit_code == 0, result.stderr
    model = json.loads(result.stdout)
    assert model["context_window"] == 131072
    assert model["input_cost_per_mtok"] == pytest.approx(0.2)
    assert model["output_cost_per_mtok"] == pytest.approx(0.8)
    assert "tool_calling" in model["capabilities"] and "vision" in model["capabilities"]
    stats = json.loads(run("catalog", "stats", "--config", str(overlay), "--json").stdout)
    assert stats["models"] == len(bundled_catalog().models()) + 3
    assert stats["by_provider"]["testvendor"] == 2


def test_import_without_output_writes_nothing(litellm_file: Path, tmp_path: Path) -> None:
    result = run("catalog", "import", "--format", "litellm", str(litellm_file))
    assert result.exit_code == 0
    assert "imported 3 models from 2 providers" in result.stdout
    assert "skipped 1: mode:image_generation 1\n" in result.stdout
    assert "nothing written" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.json"]


def test_import_litellm_provider_filter(litellm_file: Path) -> None:
    data = json.loads(run("catalog", "import", "-F", "litellm", str(litellm_file), "-p", "otherco", "--json").stdout)
    assert data["models"] == 1
    assert data["by_provider"] == {"otherco": 1}
    assert data["skipped"]["provider_filtered"] == 2


def test_import_openrouter(tmp_path: Path) -> None:
    source = tmp_path / "models.json"
    source.write_text(json.dumps(OPENROUTER), encoding="utf-8")
    overlay = tmp_path / "or.yaml"
    result = run("catalog", "import", "--format", "openrouter", str(source), "-o", str(overlay), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["models"] == 1
    assert data["by_provider"] == {"openrouter": 1}
    shown = json.loads(run("models", "show", "openrouter/testlab/gamma-1", "--config", str(overlay), "--json").stdout)
    assert shown["context_window"] == 200000
    assert shown["max_output_tokens"] == 16000
    assert shown["cached_input_cost_per_mtok"] == pytest.approx(0.3)


def test_import_shared_litellm_map(litellm_map_path: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "litellm.yaml"
    result = run("catalog", "import", "--format", "litellm", str(litellm_map_path), "-o", str(overlay), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["models"] > 1500
    assert sum(data["skipped"].values()) > 0
    stats = json.loads(run("catalog", "stats", "--config", str(overlay), "--json").stdout)
    assert stats["models"] >= data["models"]


def test_import_errors(litellm_file: Path, tmp_path: Path) -> None:
    bad_format = run("catalog", "import", "--format", "csv", str(litellm_file))
    assert bad_format.exit_code == 2
    assert "expected one of litellm, openrouter, got 'csv'" in bad_format.stderr
    filter_openrouter = run("catalog", "import", "--format", "openrouter", str(litellm_file), "-p", "x")
    assert filter_openrouter.exit_code == 2
    missing = tmp_path / "missing.json"
    result = run("catalog", "import", "--format", "litellm", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"error: {missing}: file not found\n"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    result = run("catalog", "import", "--format", "litellm", str(garbage))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {garbage}: invalid JSON at line 1")
    no_format = run("catalog", "import", str(litellm_file))
    assert no_format.exit_code == 2


def test_import_into_an_unwritable_place(litellm_file: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    result = run("catalog", "import", "-F", "litellm", str(litellm_file), "-o", str(blocker / "overlay.yaml"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_stats_json_matches_the_catalog() -> None:
    result = run("catalog", "stats", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == json.loads(json.dumps(bundled_catalog().stats()))
    assert data["models"] == len(bundled_catalog().models())
    assert {"version", "models", "providers", "families", "deprecated", "by_provider", "by_mode"} <= set(data)


def test_stats_table() -> None:
    result = run("catalog", "stats")
    assert result.exit_code == 0
    assert result.stdout.startswith("catalog version ")
    assert "by provider" in result.stdout
    assert "openai" in result.stdout


def test_catalog_group_without_subcommand_shows_help() -> None:
    result = run("catalog")
    assert "import" in result.stdout + result.stderr
    assert "stats" in result.stdout + result.stderr
