"""``modelplex serve``: refuses to start without an admin key, prints which providers are enabled and
why, and serves (one worker, and uvicorn's multi-process mode through the app factory) in front of a
fake provider on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from modelplex.cli.main import app
from modelplex.testing.server import FakeProviderServer

ADMIN = "serve-admin-key-0123456789"
runner = CliRunner()


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer(protocols=("openai",)).start_in_thread()
    yield server
    server.stop_thread()


def write_config(tmp_path: Path, fake_url: str, **server: object) -> Path:
    cfg = {
        "providers": {"fakeai": {"protocol": "openai", "base_url": fake_url + "/v1", "api_key": "sk-fake-123456789"}},
        "models": [{"id": "fakeai/small", "context_window": 16000, "max_output_tokens": 2000,
                    "capabilities": ["tool_calling", "streaming"], "pricing": {"input_per_mtok": 0.1}}],
        "accounting": {"sink": "sqlite", "path": str(tmp_path / "usage.db")},
        "server": {"server_secret": "serve-test-secret-0123456789", **server},
    }
    path = tmp_path / "modelplex.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_ACCESS_KEY_ID", "_SECRET_ACCESS_KEY")) and not k.startswith("MODELPLEX_")}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refuses_to_start_without_an_admin_key(tmp_path: Path, fake: FakeProviderServer, monkeypatch) -> None:
    for name in ("MODELPLEX_ADMIN_KEY", "MODELPLEX_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["serve", "--config", str(write_config(tmp_path, fake.base_url))])
    assert result.exit_code == 1
    assert "admin key" in result.output and "--no-auth" in result.output
    assert "Traceback" not in result.output


def test_runs_uvicorn_with_uvloop_httptools_and_no_per_request_extras(tmp_path: Path, fake: FakeProviderServer,
                                                                      monkeypatch) -> None:
    import uvicorn

    import modelplex.cli.serve as serve_module

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: seen.update(kw, target=target))
    monkeypatch.setattr(serve_module, "_tune_gc", lambda: None)  # not in the test process
    monkeypatch.setenv("MODELPLEX_ADMIN_KEY", ADMIN)
    result = runner.invoke(app, ["serve", "--config", str(write_config(tmp_path, fake.base_url)), "--port", "0"])
    assert result.exit_code == 0, result.output
    assert (seen["loop"], seen["http"]) == ("uvloop", "httptools")
    assert seen["access_log"] is False and seen["proxy_headers"] is False


@pytest.mark.parametrize("workers", [1, 2])
def test_serves_and_reports_providers(tmp_path: Path, fake: FakeProviderServer, workers: int) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "modelplex.cli.main", "serve", "--config", str(write_config(tmp_path, fake.base_url)),
           "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=clean_env(MODELPLEX_ADMIN_KEY=ADMIN), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as c:
            r = c.post("/api/v1/keys", json={"name": "cli"}, headers={"authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 201
            key = r.json()["key"]
            for _ in range(4):  # with two workers the key (in SQLite) works on whichever answers
                r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "fakeai/small", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
                assert r.json()["model"] == "fakeai/small"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"modelplex gateway on http://127.0.0.1:{port}" in out
    assert "+ fakeai: enabled (key from config)" in out
    assert "- ANTHROPIC_API_KEY not set: anthropic disabled" in out
    assert "Traceback" not in out


def test_an_unreachable_postgresql_fails_in_one_line_before_uvicorn_starts(tmp_path: Path, monkeypatch) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "pg.yaml"
    cfg.write_text(yaml.safe_dump({"accounting": {"sink": "postgres",
                                                  "dsn": f"postgresql://app:pw-SECRET@127.0.0.1:{port}/usage"},
                                   "server": {"admin_key": ADMIN}}))
    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(a))
    result = runner.invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 1 and not started
    assert f"cannot reach PostgreSQL at 127.0.0.1:{port}/usage" in result.output
    assert "pw-SECRET" not in result.output and "Traceback" not in result.output


def test_a_name_that_refers_to_nothing_fails_before_uvicorn_starts(tmp_path: Path, fake: FakeProviderServer,
                                                                   monkeypatch) -> None:
    path = write_config(tmp_path, fake.base_url, admin_key=ADMIN)
    cfg = yaml.safe_load(path.read_text())
    cfg["routing"] = {"universal_fallback": "fakeai/smal"}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(a))
    result = runner.invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 1 and not started
    assert f"{path}: routing.universal_fallback: unknown model 'fakeai/smal'; did you mean 'fakeai/small'?" \
        in result.output
    assert "Traceback" not in result.output
