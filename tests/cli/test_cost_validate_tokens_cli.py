"""``modelplex cost``, ``modelplex validate`` and ``modelplex tokens``: exact JSON shapes, exit statuses,
value parsing and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelplex.cli.main import app

CONFIG = """
models:
  - id: acme/sage
    context_window: 100000
    max_output_tokens: 32000
    capabilities: [tool_calling, reasoning]
    pricing: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3, reasoning_per_mtok: 10}
  - id: acme/swift
    context_window: 64000
    max_output_tokens: 8192
    pricing: {input_per_mtok: 0.1, output_per_mtok: 0.4}
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


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


# ------------------------------------------------------------------------------------------ cost


def test_cost_json_shape_and_arithmetic(config: Path) -> None:
    result = run("cost", "acme/sage", "--input-tokens", "1000000", "--output-tokens", "100000",
                 "--cached-tokens", "200000", "--reasoning-tokens", "40000", "--config", str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["model", "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "breakdown"]
    assert data["model"] == "acme/sage"
    assert (data["input_tokens"], data["output_tokens"], data["cached_tokens"]) == (1_000_000, 100_000, 200_000)
    b = data["breakdown"]
    assert set(b) == {"input_usd", "cached_input_usd", "cache_write_usd", "output_usd", "reasoning_usd", "total_usd"}
    assert b["input_usd"] == pytest.approx(800_000 * 3 / 1e6)       # 2.40
    assert b["cached_input_usd"] == pytest.approx(200_000 * 0.3 / 1e6)  # 0.06
    assert b["output_usd"] == pytest.approx(60_000 * 15 / 1e6)      # 0.90
    assert b["reasoning_usd"] == pytest.approx(40_000 * 10 / 1e6)   # 0.40
    assert b["cache_write_usd"] == 0
    assert data["cost_usd"] == pytest.approx(3.76)
    assert b["total_usd"] == data["cost_usd"]


def test_cost_resolves_aliases_to_canonical_ids() -> None:
    result = run("cost", "gpt-4o-mini", "-i", "1000", "-o", "1000", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "openai/gpt-4o-mini"


def test_cost_table(config: Path) -> None:
    result = run("cost", "acme/swift", "-i", "1000000", "-o", "1000000", "--config", str(config))
    assert result.exit_code == 0
    assert "acme/swift: $0.5" in result.stdout
    assert "1,000,000" in result.stdout


def test_cost_rejects_impossible_counts(config: Path) -> None:
    result = run("cost", "acme/sage", "-i", "10", "-o", "10", "--cached-tokens", "11", "--config", str(config))
    assert result.exit_code == 2
    assert "cached tokens is more than the 10 input tokens" in result.stderr
    result = run("cost", "acme/sage", "-i", "10", "-o", "10", "--reasoning-tokens", "11", "--config", str(config))
    assert result.exit_code == 2
    result = run("cost", "acme/sage", "-i", "-1", "-o", "10", "--config", str(config))
    assert result.exit_code == 2
    result = run("cost", "acme/sage", "-o", "10", "--config", str(config))
    assert result.exit_code == 2
    assert "--input-tokens" in result.stderr


def test_cost_unknown_model(config: Path) -> None:
    result = run("cost", "acme/sag", "-i", "1", "-o", "1", "--config", str(config), "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: unknown model 'acme/sag'; did you mean 'acme/sage'")


# ------------------------------------------------------------------------------------------ validate


def test_validate_reports_the_output_limit_of_gpt_4o() -> None:
    result = run("validate", "openai/gpt-4o", "--param", "max_tokens=20000", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert list(data) == ["model", "issues"]
    assert data["model"] == "openai/gpt-4o"
    limit = [i for i in data["issues"] if i["param"] == "max_tokens"]
    assert len(limit) == 1
    assert list(limit[0]) == ["param", "code", "message"]
    assert limit[0]["code"] == "exceeds_output_limit"
    assert "16,384" in limit[0]["message"]


def test_validate_table_names_the_limit() -> None:
    result = run("validate", "openai/gpt-4o", "--param", "max_tokens=20000")
    assert result.exit_code == 1
    assert "exceeds_output_limit" in result.stdout
    assert "16,384" in result.stdout


def test_validate_ok_exits_0(config: Path) -> None:
    result = run("validate", "acme/swift", "-P", "temperature=0.5", "-P", "max_tokens=100", "-P", 'stop=["END"]',
                 "--config", str(config), "--json")
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout) == {"model": "acme/swift", "issues": []}
    table = run("validate", "acme/swift", "-P", "temperature=0.5", "--config", str(config))
    assert table.exit_code == 0
    assert "acme/swift: ok (temperature)" in table.stdout


def test_validate_parses_values_as_json(config: Path) -> None:
    # "3" is the number 3: out of the 0-2 range; the string "3" would be a different problem
    result = run("validate", "acme/swift", "-P", "temperature=3", "--config", str(config), "--json")
    assert result.exit_code == 1
    issues = json.loads(result.stdout)["issues"]
    assert [(i["param"], i["code"]) for i in issues] == [("temperature", "invalid_value")]


def test_validate_checks_the_window_with_input_tokens(config: Path) -> None:
    result = run("validate", "acme/swift", "-P", "max_tokens=8000", "--input-tokens", "60000",
                 "--config", str(config), "--json")
    assert result.exit_code == 1
    codes = [i["code"] for i in json.loads(result.stdout)["issues"]]
    assert codes == ["exceeds_context"]


def test_validate_unsupported_parameter(config: Path) -> None:
    result = run("validate", "acme/swift", "-P", "frobnicate=1", "--config", str(config), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["issues"][0]["code"] == "unsupported"


def test_validate_malformed_param_is_a_usage_error(config: Path) -> None:
    result = run("validate", "acme/swift", "--param", "max_tokens", "--config", str(config))
    assert result.exit_code == 2
    assert "expected KEY=VALUE, got 'max_tokens'" in result.stderr


def test_validate_unknown_model() -> None:
    result = run("validate", "gpt4o", "--param", "max_tokens=1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown model 'gpt4o'; did you mean 'openai/gpt-4o'")


# ------------------------------------------------------------------------------------------ tokens


def test_tokens_json_shape() -> None:
    result = run("tokens", "Hello, world! This is a test.", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == ["model", "tokens", "exact", "method"]
    assert data["model"] is None
    assert isinstance(data["tokens"], int) and 3 <= data["tokens"] <= 20
    assert isinstance(data["exact"], bool)
    assert isinstance(data["method"], str) and data["method"]


def test_tokens_exact_with_tiktoken_files(tiktoken_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_dir))
    monkeypatch.delenv("MODELPLEX_TOKENIZER", raising=False)
    text = "The quick brown fox jumps over the lazy dog."
    result = run("tokens", "--model", "openai/gpt-4o", text, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "openai/gpt-4o"
    assert data["exact"] is True
    assert "o200k_base" in data["method"]
    assert data["tokens"] == 10  # o200k_base: The| quick| brown| fox| jumps| over| the| lazy| dog|.


def test_tokens_from_file_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("one two three four five six seven eight", encoding="utf-8")
    from_file = json.loads(run("tokens", "--file", str(path), "--json").stdout)
    from_arg = json.loads(run("tokens", "one two three four five six seven eight", "--json").stdout)
    from_stdin = json.loads(run("tokens", "--file", "-", "--json",
                                input="one two three four five six seven eight").stdout)
    assert from_file == from_arg == from_stdin


def test_tokens_table() -> None:
    result = run("tokens", "hello there")
    assert result.exit_code == 0
    assert " tokens (" in result.stdout


def test_tokens_needs_exactly_one_source(tmp_path: Path) -> None:
    neither = run("tokens")
    assert neither.exit_code == 2
    assert "give the text as an argument or with --file" in neither.stderr
    path = tmp_path / "t.txt"
    path.write_text("x", encoding="utf-8")
    both = run("tokens", "text", "--file", str(path))
    assert both.exit_code == 2


def test_tokens_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    result = run("tokens", "--file", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"error: {missing}: No such file or directory\n"


def test_tokens_counts_a_model_the_catalog_does_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``count_text`` does (docs/tokens.md: any model name), the CLI counts a name that is not in the
    catalog from the name alone, exit 0, with a note (and the catalog's suggestions) on stderr."""
    monkeypatch.setenv("MODELPLEX_TOKENIZER", "heuristic")
    from modelplex.catalog.tokens import count_text

    text = "Hello, world! This is a test."
    result = run("tokens", "--model", "mycorp/llama-3-ft", text, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == {"model": "mycorp/llama-3-ft", "tokens": count_text(text, "mycorp/llama-3-ft").tokens,
                    "exact": False, "method": "heuristic:llama"}
    assert result.stderr == ("note: 'mycorp/llama-3-ft' is not in the catalog; counted from its name alone "
                             "(heuristic:llama)\n")

    typo = run("tokens", "--model", "gpt4o", "hi")
    assert typo.exit_code == 0, typo.stderr
    assert typo.stdout.endswith("tokens for gpt4o (estimate, heuristic:default)\n")
    assert typo.stderr.startswith("note: 'gpt4o' is not in the catalog (did you mean 'openai/gpt-4o'")


def test_tokens_without_a_model_is_the_generic_estimate() -> None:
    """``--help`` says so: no model is ``heuristic:default``, never exact (even with tiktoken files)."""
    result = run("tokens", "Hello, world!", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["model"], data["exact"], data["method"]) == (None, False, "heuristic:default")
    help_text = " ".join(run("tokens", "--help").stdout.split())
    assert "heuristic:default" in help_text and "o200k_base" not in help_text
