"""``modelplex demo --once`` end to end (fake providers, the real gateway, the OpenAI SDK, SQLite
accounting), plus the demo's pieces: its config, workload and the fakes' answers."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelplex.cli.demo import (
    TASKS,
    build_jobs,
    demo_config,
    demo_reply,
    fresh_dir,
)
from modelplex.router import Router

REQUESTS = 40


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "usage.db").write_text("stale file from an earlier run")
    # provider variables in the environment must be ignored: the demo never leaves loopback
    env = {**os.environ, "OPENAI_API_KEY": "sk-real-key-must-not-be-used",
           "ANTHROPIC_API_KEY": "sk-ant-real-key-must-not-be-used", "COLUMNS": "200"}
    got = subprocess.run(
        [sys.executable, "-m", "modelplex.cli.main", "demo", "--once", "--requests", str(REQUESTS), "--duration",
         "16", "--port", "0", "--dir", str(workdir)],
        capture_output=True, text=True, timeout=240, env=env)
    summary_path = workdir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"proc": got, "dir": workdir, "summary": summary}


def test_demo_once_exits_cleanly_and_prints_the_summary(demo_run: dict[str, Any]) -> None:
    proc = demo_run["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Workload summary" in out
    for task in TASKS:
        assert task in out
    assert "/dashboard?key=mpx-admin-" in out
    assert "curl -s http://127.0.0.1:" in out and "from openai import OpenAI" in out
    assert f"{REQUESTS} rows for {REQUESTS} requests" in out
    assert "Serving until Ctrl-C" not in out  # --once does not keep serving
    assert out.rstrip().endswith("demo stopped")


def test_every_task_ran_and_the_outage_caused_fallbacks(demo_run: dict[str, Any]) -> None:
    s = demo_run["summary"]
    assert s["requests"] == REQUESTS and s["client_errors"] == 0
    tasks = {t["task"]: t for t in s["tasks"]}
    assert set(TASKS) <= set(tasks)
    assert all(tasks[t]["requests"] > 0 for t in TASKS)
    assert sum(t["requests"] for t in s["tasks"]) == REQUESTS
    assert s["totals"]["fallbacks"] > 0
    assert s["breaker_trips"] > 0 and any(b["key"] == "provider:anthropic" for b in s["breakers"])
    served_by = {m.split("/", 1)[0] for t in s["tasks"] for m in t["models"]}
    assert {"groq", "openai", "gemini"} <= served_by and len(served_by) >= 4
    jp = tasks["job_parsing"]
    assert jp["json_valid"] == jp["requests"] - jp["errors"]
    assert s["totals"]["cost_usd"] > 0 and s["totals"]["p95_ms"] >= s["totals"]["p50_ms"] > 0
    assert set(s["strategies"]) == {"balanced (arm balanced)", "cost_optimized (arm cost_optimized)"}


def test_the_usage_store_has_one_row_per_request(demo_run: dict[str, Any]) -> None:
    s = demo_run["summary"]
    db = Path(s["db_path"])
    assert db.parent == demo_run["dir"].resolve()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM usage_records").fetchone()
        by_task = dict(conn.execute("SELECT task, COUNT(*) FROM usage_records GROUP BY task").fetchall())
        fallbacks = conn.execute("SELECT COUNT(*) FROM usage_records WHERE fallback_used").fetchone()[0]
        kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM usage_records")}
    assert rows == (REQUESTS, REQUESTS)  # no loss, no double count
    assert by_task == {t["task"]: t["requests"] for t in s["tasks"]}
    assert fallbacks == s["totals"]["fallbacks"]
    assert kinds == {"chat", "stream", "embedding"}
    assert s["usage_rows"] == REQUESTS


def test_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        got = subprocess.run([sys.executable, "-m", "modelplex.cli.main", "demo", "--once", "-n", "1", "--port",
                              str(port), "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert got.returncode == 1
    assert got.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "--port" in got.stderr


# ------------------------------------------------------------------------------------------ pieces


def test_config_routes_every_provider_to_the_fake_and_ignores_the_environment(tmp_path: Path) -> None:
    fake = "http://127.0.0.1:9"
    env = {"OPENAI_API_KEY": "sk-real", "AZURE_OPENAI_ENDPOINT": "https://real.openai.azure.com"}
    router = Router(demo_config(fake, tmp_path / "u.db", "admin", "secret"), env=env)
    expected = {"openai", "groq", "azure", "anthropic", "gemini", "bedrock"}
    assert expected <= router.enabled_providers()
    for name in expected:
        cfg = router.providers[name]
        assert cfg.base_url.startswith(fake), name
        assert cfg.api_key != "sk-real"
    for task in TASKS:
        spec = router.planner.tasks[task]
        assert spec.models and all(router.catalog.get(m).provider in expected for m in spec.models)
        assert not any(router.catalog.get(m).deprecation.deprecated for m in spec.models), task
    assert router.planner.tasks["embedding"].is_embedding


def test_workload_is_seeded_and_mixes_every_task() -> None:
    a, b = build_jobs(200, seed=7), build_jobs(200, seed=7)
    assert [(j.task, j.user, j.messages, j.inputs) for j in a] == [(j.task, j.user, j.messages, j.inputs) for j in b]
    assert [j.task for j in build_jobs(200, seed=8)] != [j.task for j in a]
    assert {j.task for j in a} == set(TASKS)
    summaries = [j for j in a if j.task == "summarization"]
    assert min(len(j.messages[-1]["content"]) for j in summaries) > 4_000  # long inputs
    assert all(j.inputs and not j.messages for j in a if j.task == "embedding")
    assert all(j.streamed for j in a if j.task == "cv_generation")


def test_fake_answers_fit_the_task() -> None:
    job = next(j for j in build_jobs(50, seed=3) if j.task == "job_parsing")
    answer = json.loads(demo_reply("gpt-oss-20b", job.messages))
    assert answer["title"] and answer["company"] and len(answer["skills"]) >= 3
    assert demo_reply("gpt-oss-20b", job.messages) == demo_reply("gpt-oss-20b", job.messages)
    blocks = [{"role": "user", "content": [{"type": "text", "text": "Summarize this. " + "A long sentence about "
                                                                                        "quarterly revenue. " * 20}]}]
    assert demo_reply("claude-haiku-5-5", blocks).startswith("- ")
    assert demo_reply("m", [{"role": "user", "content": "Think it through step by step."}]).startswith("Plan:")


def test_fresh_dir_removes_the_previous_database(tmp_path: Path) -> None:
    for name in ("usage.db", "usage.db-wal", "usage.db.journal.jsonl", "keep.txt"):
        (tmp_path / name).write_text("x")
    assert fresh_dir(tmp_path) == tmp_path / "usage.db"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
