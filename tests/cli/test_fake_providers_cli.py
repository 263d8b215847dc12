"""``modelplex fake-providers`` (and ``python -m modelplex.testing``): the fake answers every protocol
on one port, applies the scenario's faults, prints a config that modelplex accepts, and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelplex.cli.fake_providers import (
    SCENARIOS,
    config_snippet,
    endpoints,
    load_scenario_file,
    resolve_scenario,
)
from modelplex.errors import ConfigError
from modelplex.router import Router

OPENAI_BODY = {"model": "gpt-6-luna", "messages": [{"role": "user", "content": "ping"}]}


def start(*args: str, module: str = "modelplex.cli.main") -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cmd = [sys.executable, "-m", module] + (["fake-providers"] if module == "modelplex.cli.main" else [])
    proc = subprocess.Popen([*cmd, "--port", "0", "--json", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    text = ""
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        text += line
        try:
            return proc, json.loads(text)
        except ValueError:
            continue
    proc.kill()
    raise AssertionError(f"no JSON announcement; stdout={text!r} stderr={proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def served() -> Iterator[dict[str, Any]]:
    proc, info = start()
    try:
        yield info
    finally:
        assert stop(proc) == 0


def test_every_protocol_answers_on_one_port(served: dict[str, Any]) -> None:
    base = served["base_url"]
    assert served["protocols"]["openai"]["base_url"] == f"{base}/v1"
    with httpx.Client(timeout=10) as c:
        health = c.get(served["health"]).json()
        assert set(health["protocols"]) == {"openai", "anthropic", "gemini", "bedrock"}
        r = c.post(f"{base}/v1/chat/completions", json=OPENAI_BODY, headers={"authorization": "Bearer sk-x"})
        assert r.status_code == 200 and r.json()["object"] == "chat.completion"
        r = c.post(f"{base}/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                   json={"model": "claude-sonnet-5", "max_tokens": 50,
                         "messages": [{"role": "user", "content": "ping"}]})
        assert r.status_code == 200 and r.json()["type"] == "message"
        r = c.post(f"{base}/openai/deployments/gpt-4.1/chat/completions", params={"api-version": "2024-10-21"},
                   headers={"api-key": "k"}, json={"messages": OPENAI_BODY["messages"]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
        r = c.post(f"{base}/v1beta/models/gemini-3.7-flash:generateContent", headers={"x-goog-api-key": "k"},
                   json={"contents": [{"role": "user", "parts": [{"text": "ping"}]}]})
        assert r.status_code == 200 and r.json()["candidates"][0]["content"]["parts"][0]["text"]


def test_the_scenario_faults_apply(tmp_path: Path) -> None:
    scenario = tmp_path / "down.yaml"
    scenario.write_text(yaml.safe_dump({"seed": 1, "outages": [
        {"start": 0, "end": 600, "protocol": "openai", "fault": {"kind": "server_error", "status": 503}}]}))
    proc, info = start("--scenario", str(scenario))
    try:
        assert info["scenario"] == str(scenario)
        with httpx.Client(timeout=10) as c:
            r = c.post(f"{info['base_url']}/v1/chat/completions", json=OPENAI_BODY)
            assert r.status_code == 503
            r = c.post(f"{info['base_url']}/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                       json={"model": "claude-sonnet-5", "max_tokens": 20,
                             "messages": [{"role": "user", "content": "ping"}]})
            assert r.status_code == 200  # the outage is scoped to the OpenAI protocol
    finally:
        assert stop(proc) == 0


def test_python_dash_m_modelplex_testing_runs_the_same_command() -> None:
    proc, info = start("--scenario", "demo", module="modelplex.testing")
    try:
        assert info["scenario"] == str(SCENARIOS / "demo.yaml")
        with httpx.Client(timeout=10) as c:
            assert c.get(info["health"]).json()["ok"] is True
    finally:
        assert stop(proc) == 0


def test_unknown_scenario_is_one_error_line() -> None:
    got = subprocess.run([sys.executable, "-m", "modelplex.cli.main", "fake-providers", "--scenario", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 1
    assert got.stderr.startswith("error: no scenario file 'nope'") and "demo" in got.stderr


def test_bundled_demo_scenario_has_faults_and_an_anthropic_outage() -> None:
    path = resolve_scenario("demo")
    plan, behavior, per_model = load_scenario_file(path)
    assert behavior.ttft_s > 0 and behavior.tokens_per_s > 0
    assert all(0.02 <= b.ttft_s <= 0.08 for b in per_model.values())
    assert all(b.tokens_per_s == 0 or 200 <= b.tokens_per_s <= 800 for b in per_model.values())
    [outage] = plan._outages
    assert (outage.start, outage.end, outage.protocol, outage.fault.kind) == (5.0, 15.0, "anthropic", "overloaded")
    assert {r.fault.kind for r in plan._random} == {"rate_limit", "server_error"}


def test_invalid_scenario_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("behavior: {ttft: 1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_scenario_file(bad)


def test_printed_config_enables_every_provider_on_the_fake() -> None:
    base = "http://127.0.0.1:8900"
    cfg = yaml.safe_load(config_snippet(base))
    router = Router(cfg, env={})
    assert router.enabled_providers() >= {"openai", "groq", "azure", "anthropic", "gemini", "bedrock"} - (
        set() if _has_botocore() else {"bedrock"})
    assert router.providers["openai"].base_url == f"{base}/v1"
    assert router.providers["azure"].base_url == base
    assert set(endpoints(base)) == {"openai", "azure", "anthropic", "gemini", "bedrock"}


def _has_botocore() -> bool:
    import importlib.util

    return importlib.util.find_spec("botocore") is not None


def test_python_dash_m_modelplex_testing_reports_errors_in_one_line() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "modelplex.testing", "--scenario", "/nonexistent.yaml"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: no scenario file '/nonexistent.yaml' (bundled scenarios: demo)"
