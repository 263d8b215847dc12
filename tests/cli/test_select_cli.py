"""``modelplex select``: options -> requirements, the exact JSON shape, --explain, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelplex.cli.main import app

CONFIG = """
providers:
  acme:
    protocol: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: ACME_API_KEY
models:
  - id: acme/swift
    context_window: 64000
    max_output_tokens: 8192
    capabilities: [tool_calling, json_mode]
    category: basic
    quality: 60
    pricing: {input_per_mtok: 0.1, output_per_mtok: 0.4}
  - id: acme/sage
    context_window: 1000000
    max_output_tokens: 32000
    capabilities: [tool_calling, vision, structured_output, reasoning]
    input_modalities: [text, image]
    category: comprehensive
    quality: 90
    pricing: {input_per_mtok: 3, output_per_mtok: 15}
  - id: acme/old
    context_window: 16000
    capabilities: [tool_calling]
    pricing: {input_per_mtok: 0.05, output_per_mtok: 0.1}
    deprecation: {deprecated: true, replacement: acme/swift, date: 2025-01-01}
  - id: acme/embed
    mode: embedding
    context_window: 8192
    max_output_tokens: 1
    output_modalities: [embedding]
    pricing: {input_per_mtok: 0.02, output_per_mtok: 0}
"""

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPLEX_CONFIG", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "modelplex.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def select(config: Path, *args: str) -> Any:
    return runner.invoke(app, ["select", "--config", str(config), *args])


def test_json_shape_and_economy_order(config: Path) -> None:
    result = select(config, "--provider", "acme", "--needs", "tool_calling", "--strategy", "economy", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["candidates"]
    assert data["candidates"] == [
        {"id": "acme/swift", "reason": "cheapest of 2 matching (blended $0.33/M); tool_calling, 64,000 ctx"},
        {"id": "acme/sage", "reason": "#2 cheapest of 2 matching (blended $12.00/M); tool_calling, 1,000,000 ctx"},
    ]
    assert result.stderr == ""


def test_quality_strategy(config: Path) -> None:
    data = json.loads(select(config, "-p", "acme", "-s", "quality", "--json").stdout)
    assert [c["id"] for c in data["candidates"]] == ["acme/sage", "acme/swift"]
    assert data["candidates"][0]["reason"] == (
        "highest quality of 2 matching (comprehensive, quality 90, high cost tier); 1,000,000 ctx")


@pytest.mark.parametrize(("args", "expected"), [
    (["--needs", "tool_calling,vision"], ["acme/sage"]),
    (["--needs", "tool_calling", "--needs", "json_mode"], ["acme/swift"]),
    (["--min-context", "100000"], ["acme/sage"]),
    (["--min-output", "10000"], ["acme/sage"]),
    (["--max-input-price", "0.1"], ["acme/swift"]),
    (["--max-output-price", "1"], ["acme/swift"]),
    (["--category", "comprehensive"], ["acme/sage"]),
    (["--response-format", "json_schema"], ["acme/sage"]),
    (["--response-format", "json"], ["acme/sage", "acme/swift"]),
    (["--input-modality", "image"], ["acme/sage"]),
    (["--include-deprecated", "-s", "economy"], ["acme/old", "acme/swift", "acme/sage"]),
    (["--embedding"], ["acme/embed"]),
    (["-s", "economy", "--limit", "1"], ["acme/swift"]),
])
def test_options_map_onto_requirements(config: Path, args: list[str], expected: list[str]) -> None:
    result = select(config, "--provider", "acme", *args, "--json")
    assert result.exit_code == 0, result.stderr
    got = [c["id"] for c in json.loads(result.stdout)["candidates"]]
    if "-s" in args or len(expected) == 1:
        assert got == expected
    else:
        assert sorted(got) == sorted(expected)


def test_several_providers_allow_any_of_them(config: Path) -> None:
    result = select(config, "--provider", "acme,deepseek", "--explain", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {c["id"].split("/")[0] for c in data["candidates"]} == {"acme", "deepseek"}
    why = {r["id"]: r["why"] for r in data["rejected"]}
    openai = {w for m, w in why.items() if m.startswith("openai/") and not w.startswith(("deprecated", "mode"))}
    assert openai == {"provider openai not in allowed providers (acme, deepseek)"}


def test_deny_provider(config: Path) -> None:
    result = select(config, "--deny-provider", "acme", "--json", "--explain")
    data = json.loads(result.stdout)
    assert not any(c["id"].startswith("acme/") for c in data["candidates"])
    why = {r["id"]: r["why"] for r in data["rejected"]}
    assert why["acme/swift"] == "provider acme is denied"


def test_explain_lists_rejections_sorted_by_id(config: Path) -> None:
    result = select(config, "--provider", "acme", "--needs", "vision", "--explain", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert list(data) == ["candidates", "rejected"]
    assert [c["id"] for c in data["candidates"]] == ["acme/sage"]
    rejected = data["rejected"]
    assert all(list(r) == ["id", "why"] for r in rejected)
    assert [r["id"] for r in rejected] == sorted(r["id"] for r in rejected)
    why = {r["id"]: r["why"] for r in rejected}
    assert why["acme/swift"] == "lacks vision"
    assert why["acme/old"] == "deprecated (retires 2025-01-01; replacement acme/swift)"
    assert why["acme/embed"] == "mode embedding, need chat"
    assert why["openai/gpt-4o"].startswith(("provider openai, need acme", "deprecated"))
    # every model is either a candidate or rejected
    assert len(rejected) + 1 == len(json.loads(runner.invoke(
        app, ["models", "list", "--include-deprecated", "--json", "--config", str(config)]).stdout))


def test_no_candidates_exits_1_with_the_explanation(config: Path) -> None:
    result = select(config, "--provider", "acme", "--needs", "tool_calling", "--min-context", "5000000", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"candidates": []}
    assert result.stderr == ("error: no model meets: min_context 5,000,000 (the largest window among the 2 chat "
                             "models meeting provider acme, capability tool_calling is 1,000,000)\n")


def test_no_candidates_table_mode(config: Path) -> None:
    result = select(config, "--provider", "nobody")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == ("error: no model meets: provider nobody (provider nobody has no models in the "
                             "catalog)\n")


def test_configured_only_uses_resolved_credentials(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    result = select(config, "--provider", "acme", "--configured-only", "--explain", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["candidates"] == []
    why = {r["id"]: r["why"] for r in data["rejected"]}
    assert why["acme/swift"] == "provider acme not configured"
    assert result.stderr == ("error: no model meets: a configured provider (the 2 chat models meeting "
                             "provider acme are all from unconfigured providers: acme)\n")
    monkeypatch.setenv("ACME_API_KEY", "sk-test")
    result = select(config, "--provider", "acme", "--configured-only", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(c["id"] for c in json.loads(result.stdout)["candidates"]) == ["acme/sage", "acme/swift"]


def test_table_output(config: Path) -> None:
    result = select(config, "--provider", "acme", "--explain")
    assert result.exit_code == 0
    assert "2 candidates (balanced)" in result.stdout
    assert "acme/sage" in result.stdout and "acme/swift" in result.stdout
    assert "rejected" in result.stdout
    assert "acme/old" in result.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (["--needs", "visoin"], "did you mean 'vision'?"),
    (["--category", "smart"], "unknown category 'smart'"),
    (["--strategy", "fastest"], "unknown strategy 'fastest'"),
    (["--response-format", "yaml"], "unknown response_format 'yaml'"),
    (["--input-modality", "smell"], "unknown modality 'smell'"),
    (["--limit", "0"], "'--limit'"),
    (["--min-context", "-1"], "'--min-context'"),
    (["--max-input-price", "cheap"], "'--max-input-price'"),
])
def test_bad_values_are_usage_errors(config: Path, args: list[str], fragment: str) -> None:
    result = select(config, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert fragment in result.stderr


def test_bundled_catalog_selection() -> None:
    result = runner.invoke(app, ["select", "--needs", "tool_calling", "--min-context", "200000", "--strategy",
                                 "economy", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.stderr
    candidates = json.loads(result.stdout)["candidates"]
    assert len(candidates) == 3
    assert candidates[0]["reason"].startswith("cheapest of ")
    assert all("tool_calling" in c["reason"] for c in candidates)
