"""``modelplex models list|show`` and the CLI's shared behaviour: lazy help, --version, --config
(flag and environment), one-line errors with the right exit status, and the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelplex import __version__
from modelplex.catalog import bundled_catalog
from modelplex.cli.main import COMMANDS, app

CONFIG = """
providers:
  acme:
    protocol: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: ACME_API_KEY
models:
  - id: acme/swift
    family: acme-1
    context_window: 64000
    max_output_tokens: 8192
    capabilities: [tool_calling, json_mode]
    category: basic
    quality: 60
    pricing: {input_per_mtok: 0.1, output_per_mtok: 0.4}
  - id: acme/sage
    family: acme-1
    display_name: Acme Sage
    aliases: [sage]
    context_window: 1000000
    max_output_tokens: 32000
    capabilities: [tool_calling, vision, structured_output, reasoning]
    input_modalities: [text, image]
    category: comprehensive
    quality: 90
    pricing: {input_per_mtok: 3, output_per_mtok: 15, cached_input_per_mtok: 0.3}
  - id: acme/old
    context_window: 16000
    capabilities: [tool_calling]
    pricing: {input_per_mtok: 0.05, output_per_mtok: 0.1}
    deprecation: {deprecated: true, replacement: acme/swift, date: 2025-01-01}
"""

PUBLIC_KEYS = [
    "id", "provider", "family", "display_name", "aliases", "mode", "context_window", "max_input_tokens",
    "max_output_tokens", "embedding_dimensions", "input_cost_per_mtok", "output_cost_per_mtok",
    "cached_input_cost_per_mtok", "cache_write_cost_per_mtok", "reasoning_cost_per_mtok", "capabilities",
    "input_modalities", "output_modalities", "category", "cost_tier", "quality", "supported_params",
    "param_mappings", "default_params", "api_requirements", "tokenizer", "deprecated", "deprecation_date",
    "replacement", "source", "as_of",
]

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPLEX_CONFIG", raising=False)
    monkeypatch.delenv("MODELPLEX_DEBUG", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "modelplex.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> object:
    return runner.invoke(app, list(args), env=env)


# ------------------------------------------------------------------------------------------ models list


def test_list_json_is_a_list_of_public_model_objects(config: Path) -> None:
    result = run("models", "list", "--provider", "acme", "--config", str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [m["id"] for m in data] == ["acme/sage", "acme/swift"]  # ordered by id, deprecated left out
    swift = data[1]
    assert list(swift) == PUBLIC_KEYS
    assert swift["provider"] == "acme"
    assert swift["family"] == "acme-1"
    assert swift["display_name"] == "swift"
    assert swift["context_window"] == 64000
    assert swift["max_output_tokens"] == 8192
    assert swift["input_cost_per_mtok"] == 0.1
    assert swift["output_cost_per_mtok"] == 0.4
    assert swift["capabilities"] == ["chat", "json_mode", "tool_calling"]
    assert swift["category"] == "basic"
    assert swift["cost_tier"] == "low"  # blended (0.1 + 3 * 0.4) / 4 = 0.325
    assert swift["deprecated"] is False
    assert swift["deprecation_date"] is None
    assert swift["replacement"] is None
    assert swift["source"] == "config:modelplex.yaml"


def test_list_include_deprecated_and_filters(config: Path) -> None:
    result = run("models", "list", "-p", "acme", "--include-deprecated", "--config", str(config), "--json")
    data = {m["id"]: m for m in json.loads(result.stdout)}
    assert set(data) == {"acme/old", "acme/sage", "acme/swift"}
    assert data["acme/old"]["deprecated"] is True
    assert data["acme/old"]["deprecation_date"] == "2025-01-01"
    assert data["acme/old"]["replacement"] == "acme/swift"

    vision = json.loads(run("models", "list", "-p", "acme", "-c", "vision", "--config", str(config),
                            "--json").stdout)
    assert [m["id"] for m in vision] == ["acme/sage"]
    both = json.loads(run("models", "list", "-p", "acme", "-c", "tool_calling,json_mode", "--config", str(config),
                          "--json").stdout)
    assert [m["id"] for m in both] == ["acme/swift"]
    family = json.loads(run("models", "list", "--family", "acme-1", "--config", str(config), "--json").stdout)
    assert [m["id"] for m in family] == ["acme/sage", "acme/swift"]


def test_list_without_filters_is_the_whole_bundled_catalog() -> None:
    result = run("models", "list", "--json", "--include-deprecated")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [m["id"] for m in data] == [m.id for m in bundled_catalog().models()]
    assert len(data) > 50


def test_list_mode_embedding() -> None:
    data = json.loads(run("models", "list", "--mode", "embedding", "--json").stdout)
    assert data and all(m["mode"] == "embedding" for m in data)


def test_config_from_environment(config: Path) -> None:
    result = run("models", "list", "-p", "acme", "--json", env={"MODELPLEX_CONFIG": str(config)})
    assert result.exit_code == 0, result.stderr
    assert [m["id"] for m in json.loads(result.stdout)] == ["acme/sage", "acme/swift"]


def test_list_table(config: Path) -> None:
    result = run("models", "list", "-p", "acme", "--include-deprecated", "--config", str(config))
    assert result.exit_code == 0
    for model_id in ("acme/sage", "acme/swift", "acme/old"):
        assert model_id in result.stdout
    assert "3 models" in result.stdout
    assert "1,000,000" in result.stdout


def test_unknown_filter_values_are_usage_errors(config: Path) -> None:
    result = run("models", "list", "--provider", "acme-corp", "--config", str(config))
    assert result.exit_code == 2
    assert "unknown provider 'acme-corp'; did you mean 'acme'?" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    result = run("models", "list", "--capability", "visoin")
    assert result.exit_code == 2
    assert "unknown capability 'visoin'; did you mean 'vision'?" in result.stderr
    result = run("models", "list", "--mode", "completion")
    assert result.exit_code == 2


# ------------------------------------------------------------------------------------------ models show


def test_show_json_has_every_field(config: Path) -> None:
    result = run("models", "show", "sage", "--config", str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == PUBLIC_KEYS
    assert data["id"] == "acme/sage"
    assert data["display_name"] == "Acme Sage"
    assert data["aliases"] == ["sage"]
    assert data["cached_input_cost_per_mtok"] == 0.3
    assert data["input_modalities"] == ["image", "text"]
    assert data["capabilities"] == ["chat", "long_context", "reasoning", "structured_output", "tool_calling",
                                    "vision"]


def test_show_table(config: Path) -> None:
    result = run("models", "show", "acme/sage", "--config", str(config))
    assert result.exit_code == 0
    assert "Acme Sage" in result.stdout
    assert "1,000,000" in result.stdout


def test_show_unknown_model_suggests_close_matches(config: Path) -> None:
    result = run("models", "show", "acme/sagee", "--config", str(config))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: unknown model 'acme/sagee'; did you mean 'acme/sage'")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_unknown_bundled_model_points_at_the_real_one() -> None:
    result = run("models", "show", "gpt4o")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown model 'gpt4o'; did you mean ")
    assert "'openai/gpt-4o'" in result.stderr


# ------------------------------------------------------------------------------------------ config errors


def test_invalid_config_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - id: acme/x\n    context_window: -5\n", encoding="utf-8")
    result = run("models", "list", "--config", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {bad}: models[0].context_window")
    assert result.stderr.count("\n") == 1
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("routing:\n  retries_please: 3\n", encoding="utf-8")
    result = run("models", "list", "--config", str(unknown))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {unknown}: routing.retries_please")


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run("models", "list", "--config", str(missing))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {missing}: ")
    assert "Traceback" not in result.stderr


def test_invalid_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n", encoding="utf-8")
    result = run("models", "list", "--config", str(broken))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {broken}: invalid YAML")


# ------------------------------------------------------------------------------------------ the app


def test_help_lists_every_registered_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for entry in COMMANDS:
        assert entry.name in result.stdout
        assert entry.help[:30] in result.stdout


def test_no_arguments_shows_help() -> None:
    result = run()
    assert "models" in result.stdout + result.stderr


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"modelplex {__version__}\n"


def test_unknown_command_is_a_one_line_usage_error() -> None:
    result = run("modles")
    assert result.exit_code == 2
    assert result.stderr == "error: No such command 'modles'. Did you mean 'models'? (see 'modelplex --help')\n"


def test_unknown_option_is_a_usage_error() -> None:
    result = run("models", "list", "--bogus")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: No such option: --bogus")


def test_every_registered_command_loads() -> None:
    from modelplex.cli.main import load_command

    for entry in COMMANDS:
        command = load_command(entry)
        assert command.name == entry.name
        assert command.callback is not None or getattr(command, "commands", None)


def _bin(name: str) -> Path:
    return Path(sys.executable).parent / name


def test_help_imports_no_command_module_and_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from modelplex.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('modelplex.cli.models', 'modelplex.cli.select', 'modelplex.catalog', 'pydantic',"
        " 'yaml', 'aiohttp') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_real_entry_point_unknown_model_has_no_traceback() -> None:
    exe = _bin("modelplex")
    if not exe.exists():
        pytest.skip(f"console script not installed at {exe}")
    proc = subprocess.run([str(exe), "models", "show", "gpt4o"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: unknown model 'gpt4o'; did you mean ")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([str(exe), "select", "--min-context", "lots"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: Invalid value for '--min-context'")
    assert "Traceback" not in proc.stderr


def test_piped_tables_never_fold_an_id(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, ["models", "list", "--provider", "anthropic"])
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if "claude-fable-5" in line]
    assert any(line.split()[0] == "anthropic/claude-fable-5-1" for line in lines)  # grep finds whole ids
