"""``modelplex demo``: the whole product on one machine with no keys — fake providers, the real
gateway, a mixed workload through the official OpenAI SDK, a summary, and the dashboard.

Owns: the demo's configuration (custom providers that send the bundled catalog's real model ids to
the fakes, one per protocol, plus Groq; tasks with cross-provider priority lists; an A/B strategy
split; budgets; SQLite usage recording), the fakes' deterministic answers, the workload (job parsing
with JSON out, streamed CV drafting, reasoning, long-input summarization, embeddings), the summary
(read back from the SQLite usage store, so it shows what accounting recorded) and the tour.

Steps: start ``FakeProviderServer`` (every protocol, latency and faults from
``testing/scenarios/demo.yaml``: random 429s and 500s, the Anthropic API overloaded from t=5 s to
t=15 s) -> build the gateway with ``create_app`` and serve it with uvicorn in a thread, with a fresh
SQLite store under ``--dir`` -> create an inference key through the admin API -> send ``--requests``
requests spread over ``--duration`` seconds with ``--concurrency`` in flight -> print the summary ->
print the dashboard URL and ready-to-paste ``curl``/SDK commands -> serve until Ctrl-C (unless
``--once``). Provider variables in the environment are ignored: nothing leaves loopback.

Must not touch: the gateway, the router or the fakes' code (it only configures them).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import random
import secrets
import socket
import sqlite3
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelplex.cli._common import JsonOption, emit_json, fail

if TYPE_CHECKING:
    from rich.console import Console

    from modelplex.testing.server import FakeProviderServer

app = typer.Typer(help="Fake providers + the gateway + a workload, then the dashboard.", add_completion=False)

SCENARIO = Path(__file__).resolve().parent.parent / "testing" / "scenarios" / "demo.yaml"
DEFAULT_DIR = Path(".modelplex-demo")
DEFAULT_REQUESTS = 200
ONCE_REQUESTS = 60
DEFAULT_DURATION_S = 22.0
"""The workload is spread over this long, so that it spans the scenario's outage (t=5..15 s)."""
USERS = 16
TASKS = ("job_parsing", "cv_generation", "reasoning", "summarization", "embedding")
TASK_WEIGHTS = (0.25, 0.15, 0.20, 0.15, 0.25)
MAX_TOKENS = {"job_parsing": 400, "cv_generation": 900, "reasoning": 700, "summarization": 300}
EXIT_MISMATCH = 1

# ------------------------------------------------------------------------------------------ config


def demo_config(fake_url: str, db_path: Path, admin_key: str, server_secret: str) -> dict[str, Any]:
    """The gateway's configuration: every provider is a custom endpoint on the fake."""
    return {
        "providers": {
            "openai": {"base_url": f"{fake_url}/v1", "api_key": "sk-demo-openai", "timeout": 20},
            "groq": {"base_url": f"{fake_url}/v1", "api_key": "gsk-demo-groq", "timeout": 20},
            "azure": {"endpoint": fake_url, "api_key": "demo-azure", "api_version": "2024-10-21", "timeout": 20},
            "anthropic": {"base_url": fake_url, "api_key": "sk-ant-demo", "timeout": 20},
            "gemini": {"base_url": fake_url, "api_key": "demo-gemini", "timeout": 20},
            "bedrock": {"base_url": fake_url, "aws_access_key_id": "AKIADEMODEMODEMO",
                        "aws_secret_access_key": "demo-secret", "region": "us-east-1", "timeout": 20},
        },
        "tasks": {
            "job_parsing": {"models": ["groq/openai/gpt-oss-20b", "openai/gpt-6-luna", "gemini/gemini-3.1-flash-lite"],
                            "requirements": {"min_context": 16_000, "response_format": "json"},
                            "description": "Parse a job posting into JSON."},
            "cv_generation": {"models": ["anthropic/claude-sonnet-5", "azure/gpt-5.6-terra", "openai/gpt-6-sol"],
                              "requirements": {"min_context": 32_000},
                              "description": "Draft CV sections for a profile and a job (streamed)."},
            "reasoning": {"models": ["anthropic/claude-opus-5", "bedrock/anthropic.claude-opus-5-5",
                                     "openai/gpt-6.1-sol"],
                          "requirements": {"min_context": 32_000}, "description": "Plan and decide."},
            "summarization": {"models": ["gemini/gemini-3.7-flash", "anthropic/claude-haiku-5-5", "azure/gpt-6-luna"],
                              "requirements": {"min_context": 100_000},
                              "description": "Summarize long reports."},
            "embedding": {"models": ["openai/text-embedding-3-small", "azure/text-embedding-3-small",
                                     "bedrock/amazon.titan-embed-text-v2:0"],
                          "requirements": {"mode": "embedding"}, "description": "Embed skills and titles."},
        },
        "strategies": {
            "cost_optimized": {"selection": "economy", "max_cost_per_request": 0.05,
                               "models": {"reasoning": "groq/qwen/qwen3.8-27b",
                                          "cv_generation": "gemini/gemini-3.5-flash-lite",
                                          "summarization": "anthropic/claude-haiku-5-5"}},
        },
        "experiments": {"strategy_split": {"balanced": 0.75, "cost_optimized": 0.25}, "salt": "modelplex-demo"},
        "complexity": {"enabled": False},
        "routing": {
            "default_strategy": "balanced",
            "deadline": 30,
            "retry": {"max_retries_per_target": 2, "base_delay": 0.05, "max_delay": 0.3, "retry_after_cap": 1.0},
            "breaker": {"failure_threshold": 3, "recovery_time": 3.0},
        },
        "budgets": {"daily_usd": 5.0, "monthly_usd": 100.0, "per_user_daily_usd": 1.0},
        "accounting": {"sink": "sqlite", "path": str(db_path), "flush_interval": 0.1},
        "server": {"admin_key": admin_key, "server_secret": server_secret, "key_store": "sqlite"},
    }


# ------------------------------------------------------------------------------------------ the fakes' answers


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    return ""


def demo_reply(model: str, messages: list[dict[str, Any]]) -> str:
    """What a fake model answers: JSON for job postings, a CV draft, an extractive summary or a
    step-by-step plan, chosen from the prompt, deterministic for a given (model, prompt)."""
    prompt = "\n".join(_text_of(m) for m in messages if m.get("role") in ("user", None))
    rng = random.Random(hashlib.sha256(f"{model}\n{prompt}".encode()).digest())
    if "into JSON" in prompt:
        skills = [s.strip() for s in _field(prompt, "Skills").split(",") if s.strip()]
        return json.dumps({"title": _field(prompt, "Title"), "company": _field(prompt, "Company"),
                           "location": _field(prompt, "Location"), "seniority": _field(prompt, "Seniority"),
                           "skills": skills, "remote": "remote" in prompt.lower(), "parsed_by": model})
    if "Draft the CV" in prompt:
        name = _field(prompt, "Candidate") or "The candidate"
        paragraphs = [f"{name} — profile summary. " + " ".join(rng.sample(_CV_LINES, 3))]
        for _ in range(rng.randint(3, 5)):
            paragraphs.append("• " + " ".join(rng.sample(_CV_LINES, 2)))
        return "\n\n".join(paragraphs)
    if "Summarize" in prompt:
        sentences = [s.strip() for s in prompt.split(".") if len(s.strip()) > 40]
        picked = rng.sample(sentences, min(5, len(sentences))) if sentences else ["Nothing to summarize"]
        return "\n".join(f"- {s}." for s in picked)
    steps = rng.randint(3, 6)
    lines = [f"{i + 1}. {rng.choice(_PLAN_LINES)}" for i in range(steps)]
    return "Plan:\n" + "\n".join(lines) + f"\n\nAnswer: {rng.choice(_ANSWERS)}"


_CV_LINES = [
    "Led the migration of a monolith to event-driven services, cutting p95 latency by 40%.",
    "Mentored five engineers and introduced design reviews that halved production incidents.",
    "Built the data pipeline behind the pricing engine, processing 2 TB a day.",
    "Owned on-call for the payments platform with 99.98% availability over two years.",
    "Shipped a recommendation feature that lifted conversion by 6%.",
    "Designed typed APIs and contract tests used by twelve teams.",
    "Automated infrastructure with Terraform and cut provisioning time from days to minutes.",
    "Partnered with product to define OKRs and a quarterly roadmap.",
]
_PLAN_LINES = [
    "List the constraints and rank them by cost of violation.",
    "Estimate the effort of each option from the last three comparable projects.",
    "Run the cheapest experiment that could falsify the favoured option.",
    "Stage the rollout behind a flag and watch error rates per cohort.",
    "Keep a rollback path until two full business cycles have passed.",
    "Assign one owner per risk and review them weekly.",
    "Compare the options on total cost over three years, not on the first quarter.",
]
_ANSWERS = ["migrate the read path first, then the writes", "option B, with a two-week pilot",
            "defer until the dependency upgrade lands", "split the team: two on the pilot, three on hardening"]


# ------------------------------------------------------------------------------------------ the workload

_TITLES = ["Senior Backend Engineer", "Data Scientist", "Product Designer", "Site Reliability Engineer",
           "Machine Learning Engineer", "Engineering Manager", "Frontend Developer", "Security Analyst"]
_COMPANIES = ["Northwind Labs", "Acme Analytics", "Blue Harbor Health", "Quanta Logistics", "Fern & Finch",
              "Helios Energy", "Orbital Retail"]
_PLACES = ["Berlin", "Lisbon", "Toronto", "Austin (remote friendly)", "Remote, EU time zones", "Singapore"]
_SKILLS = ["Python", "Go", "Kubernetes", "PostgreSQL", "React", "TypeScript", "PyTorch", "Terraform", "AWS",
           "GCP", "Kafka", "Rust", "SQL", "dbt", "Figma", "incident response"]
_LEVELS = ["junior", "mid", "senior", "staff", "lead"]
_REPORT_SENTENCES = [
    "Quarterly revenue grew nine percent while operating costs stayed flat across all regions",
    "The support backlog fell by a third after the triage rota moved to a follow-the-sun model",
    "Two enterprise customers asked for single sign-on and audit logs before renewing their contracts",
    "Churn concentrated in the self-serve tier, mostly among accounts created during the spring promotion",
    "Infrastructure spend rose because the analytics cluster was sized for a peak that never came",
    "The mobile release slipped two weeks after a payment provider changed its certificate chain",
    "Hiring closed eleven of fourteen roles, with data engineering the hardest to fill",
    "A pricing experiment showed annual plans convert better when the monthly price is shown beside them",
    "Security completed the penetration test with no critical findings and three medium ones to fix",
    "The partner channel brought in a fifth of new bookings, up from a tenth a year earlier",
]
_QUESTIONS = [
    "We have {n} services on a shared database and {k} engineers. In what order should we split the database, "
    "and how long will it take?",
    "Our error budget for the quarter is {n} minutes and we have used {k}. Should we freeze feature releases?",
    "A vendor offers a {n}% discount for a {k}-year commitment. Under what usage growth is it worth it?",
    "We can hire {k} generalists or {n} specialists for the same budget. Which fits a two-year roadmap better?",
]
_EMBED_TEXTS = _SKILLS + _TITLES + ["distributed systems", "customer onboarding", "A/B testing", "team leadership"]


@dataclass(slots=True)
class Job:
    """One request of the workload."""

    index: int
    task: str
    user: str
    messages: list[dict[str, str]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)

    @property
    def streamed(self) -> bool:
        return self.task == "cv_generation"


def build_jobs(n: int, seed: int) -> list[Job]:
    """``n`` requests of the five tasks in the demo's mix, with seeded prompts."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        task = rng.choices(TASKS, TASK_WEIGHTS)[0]
        user = f"user-{rng.randrange(USERS) + 1:02d}"
        job = Job(i, task, user)
        if task == "job_parsing":
            posting = "\n".join([
                f"Title: {rng.choice(_TITLES)}", f"Company: {rng.choice(_COMPANIES)}",
                f"Location: {rng.choice(_PLACES)}", f"Seniority: {rng.choice(_LEVELS)}",
                f"Skills: {', '.join(rng.sample(_SKILLS, rng.randint(3, 6)))}",
                "About the role: " + " ".join(rng.sample(_CV_LINES, 3))])
            job.messages = [{"role": "system", "content": "You are a precise job-posting parser."},
                            {"role": "user", "content": "Parse this job posting into JSON with the keys title, "
                                                        f"company, location, seniority, skills.\n\n{posting}"}]
        elif task == "cv_generation":
            profile = "\n".join([f"Candidate: {rng.choice(['Ana', 'Ben', 'Chloé', 'Dev', 'Emeka', 'Fatima'])} "
                                 f"{rng.choice(['Ortiz', 'Keller', 'Nakamura', 'Okafor', 'Silva'])}",
                                 f"Years of experience: {rng.randint(2, 15)}",
                                 f"Skills: {', '.join(rng.sample(_SKILLS, 5))}",
                                 f"Target job: {rng.choice(_TITLES)} at {rng.choice(_COMPANIES)}"])
            job.messages = [{"role": "system", "content": "You write concise, factual CVs."},
                            {"role": "user", "content": f"Draft the CV sections (summary, highlights, skills) "
                                                        f"for this profile.\n\n{profile}"}]
        elif task == "reasoning":
            question = rng.choice(_QUESTIONS).format(n=rng.randint(3, 40), k=rng.randint(2, 12))
            job.messages = [{"role": "user", "content": f"Think it through step by step. {question}"}]
        elif task == "summarization":
            body = ". ".join(rng.choice(_REPORT_SENTENCES) for _ in range(rng.randint(60, 220))) + "."
            job.messages = [{"role": "system", "content": "You summarize business reports."},
                            {"role": "user", "content": f"Summarize the following report in five bullet points.\n\n"
                                                        f"{body}"}]
        else:
            job.inputs = rng.sample(_EMBED_TEXTS, rng.randint(4, 12))
        jobs.append(job)
    return jobs


@dataclass(slots=True)
class Outcome:
    """What the client saw for one request."""

    task: str
    ok: bool
    status: str
    request_id: str | None = None
    model: str | None = None
    fallback: bool = False
    json_valid: bool | None = None
    latency_ms: float = 0.0


async def run_job(client: Any, job: Job) -> Outcome:
    """Send one request through the gateway with the OpenAI SDK."""
    import openai

    started = time.perf_counter()
    try:
        if job.task == "embedding":
            raw = await client.embeddings.with_raw_response.create(model=f"task:{job.task}", input=job.inputs,
                                                                   user=job.user)
            headers = raw.headers
            raw.parse()
            text = None
        elif job.streamed:
            stream = await client.chat.completions.create(
                model=f"task:{job.task}", messages=job.messages, max_tokens=MAX_TOKENS[job.task], user=job.user,
                stream=True, stream_options={"include_usage": True})
            headers = stream.response.headers
            parts = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            text = "".join(parts)
        else:
            extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if job.task == "job_parsing" else {}
            raw = await client.chat.completions.with_raw_response.create(
                model=f"task:{job.task}", messages=job.messages, max_tokens=MAX_TOKENS[job.task], user=job.user,
                **extra)
            headers = raw.headers
            text = raw.parse().choices[0].message.content
    except openai.APIStatusError as exc:
        return Outcome(job.task, False, str(exc.status_code), exc.response.headers.get("x-modelplex-request-id"),
                       latency_ms=(time.perf_counter() - started) * 1000)
    except openai.APIError as exc:
        return Outcome(job.task, False, type(exc).__name__, latency_ms=(time.perf_counter() - started) * 1000)
    outcome = Outcome(job.task, True, "200", headers.get("x-modelplex-request-id"), headers.get("x-modelplex-model"),
                      headers.get("x-modelplex-fallback") == "true",
                      latency_ms=(time.perf_counter() - started) * 1000)
    if job.task == "job_parsing":
        try:
            outcome.json_valid = isinstance(json.loads(text or ""), dict)
        except ValueError:
            outcome.json_valid = False
    return outcome


class BreakerWatch:
    """Counts breaker trips (transitions to OPEN) and knows which breakers are open now.

    Called on the gateway's thread (``on_transition``), read from the demo's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.trips: Counter[str] = Counter()
        self.open: set[str] = set()

    def on_transition(self, event: Any) -> None:
        to = str(getattr(event.to_state, "value", event.to_state))
        with self._lock:
            if to == "open":
                self.trips[event.key] += 1
                self.open.add(event.key)
            else:
                self.open.discard(event.key)

    def open_now(self) -> list[str]:
        with self._lock:
            return sorted(k for k in self.open if k.startswith("provider:")) or sorted(self.open)


async def drive(base_url: str, api_key: str, jobs: list[Job], *, duration_s: float, concurrency: int,
                watch: BreakerWatch, out: Console, show_progress: bool) -> list[Outcome]:
    """Send ``jobs`` at an even pace over ``duration_s`` with at most ``concurrency`` in flight."""
    import httpx
    from openai import AsyncOpenAI
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, connect=5.0))
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, http_client=http)
    gate = asyncio.Semaphore(concurrency)
    interval = duration_s / max(1, len(jobs))
    stats = Counter[str]()
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=out,
                        disable=not show_progress)
    bar = progress.add_task("requests", total=len(jobs), stats="")
    start = loop.time()

    async def one(job: Job) -> Outcome:
        delay = start + job.index * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            got = await run_job(client, job)
        stats["fallbacks"] += got.fallback
        stats["errors"] += not got.ok
        opened = watch.open_now()
        text = f"fallbacks {stats['fallbacks']} · errors {stats['errors']}"
        if opened:
            text += " · [red]open: " + ", ".join(opened) + "[/red]"
        progress.update(bar, advance=1, stats=text)
        return got

    try:
        with progress:
            return list(await asyncio.gather(*(one(j) for j in jobs)))
    finally:
        await client.close()
        await http.aclose()


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class DemoStack:
    """The fake providers and the gateway (uvicorn in a thread) of one demo run."""

    fake: FakeProviderServer
    app: Any
    host: str
    sock: socket.socket
    server: Any = None
    thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        import uvicorn

        loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
        http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
        config = uvicorn.Config(self.app, loop=loop, http=http, access_log=False, log_level="error",
                                lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="modelplex-demo-gateway")
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start (see the log file for the reason)")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(20)
        self.sock.close()
        self.fake.stop_thread()


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass --port with a free port (0: any)")
    sock.listen(128)
    return sock


def fresh_dir(workdir: Path) -> Path:
    """Create ``workdir`` and remove the previous run's database, its WAL files and journal."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("usage.db*"):
        old.unlink()
    return workdir / "usage.db"


def start_fakes(scenario: Path) -> FakeProviderServer:
    from modelplex.cli.fake_providers import ALL_PROTOCOLS, load_scenario_file
    from modelplex.testing.server import FakeProviderServer

    _, behavior, per_model = load_scenario_file(scenario)
    for b in (behavior, *per_model.values()):
        if b.reply is None:
            b.reply = demo_reply
    fake = FakeProviderServer(behavior=behavior, per_model=per_model, protocols=ALL_PROTOCOLS, capture=False)
    fake.start_in_thread()
    if fake.base_url.endswith(":0"):
        raise RuntimeError("the fake providers did not start")
    # start() resets its plan (faults and clock); the scenario's plan, built now, starts its clock now
    fake.plan = load_scenario_file(scenario)[0]
    return fake


def quiet_logs(path: Path) -> logging.Handler:
    """Send modelplex's log lines (every failed attempt is a warning) to a file, not the terminal."""
    path.write_text("", encoding="utf-8")
    # append mode: uvicorn's logging.config.dictConfig closes every handler, and a closed handler
    # reopens its file on the next record only in append mode
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("modelplex")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    return handler


# ------------------------------------------------------------------------------------------ the summary


def summarize(db_path: Path, outcomes: list[Outcome], watch: BreakerWatch, breakers: dict[str, Any],
              duration_s: float) -> dict[str, Any]:
    """The per-task summary, from the SQLite usage store (what accounting recorded)."""
    from modelplex.accounting.performance import percentile

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT request_id, task, model, attributed_model, success, fallback_used, cost_usd, "
                          "latency_ms, strategy, experiment_arm FROM usage_records").fetchall()
        skipped = {r[0] for r in db.execute("SELECT DISTINCT request_id FROM usage_attempts "
                                            "WHERE outcome = 'skipped_breaker'")}
    json_ok = Counter(o.task for o in outcomes if o.json_valid)
    json_seen = Counter(o.task for o in outcomes if o.json_valid is not None)

    def block(selected: list[tuple[Any, ...]], task: str | None) -> dict[str, Any]:
        ok_lat = sorted(float(r[7]) for r in selected if r[4])
        models = Counter(r[2] for r in selected if r[4] and r[2])
        out = {"task": task, "requests": len(selected), "errors": sum(1 for r in selected if not r[4]),
               "models": dict(models.most_common()), "fallbacks": sum(1 for r in selected if r[5]),
               "breaker_skips": sum(1 for r in selected if r[0] in skipped),
               "cost_usd": round(sum(float(r[6] or 0) for r in selected), 8),
               "p50_ms": percentile(ok_lat, 50), "p95_ms": percentile(ok_lat, 95)}
        if task is not None and json_seen.get(task):
            out["json_valid"] = json_ok.get(task, 0)
        return out

    tasks = [block([r for r in rows if r[1] == t], t) for t in TASKS]
    tasks += [block([r for r in rows if r[1] == t], t) for t in sorted({r[1] for r in rows} - set(TASKS), key=str)]
    arms = Counter(f"{r[8]}" + (f" (arm {r[9]})" if r[9] else "") for r in rows)
    return {
        "requests": len(outcomes), "usage_rows": len(rows), "client_errors": sum(1 for o in outcomes if not o.ok),
        "db_path": str(db_path), "duration_s": round(duration_s, 2), "tasks": tasks, "totals": block(rows, None),
        "strategies": dict(arms.most_common()), "breaker_trips": sum(watch.trips.values()),
        "breakers": [{"key": k, "trips": n, "state": (breakers.get(k) or {}).get("state", "closed")}
                     for k, n in sorted(watch.trips.items(), key=lambda kv: (-kv[1], kv[0]))],
    }


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def _usd(v: float) -> str:
    return f"${v:.4f}" if v < 1 else f"${v:,.2f}"


def print_summary(out: Console, s: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Workload summary — {s['requests']} requests in {s['duration_s']:.1f} s "
                        "(from the SQLite usage store)", title_justify="left", show_lines=False)
    for name, justify in (("Task", "left"), ("Requests", "right"), ("Errors", "right"), ("Models used", "left"),
                          ("Fallbacks", "right"), ("Breaker skips", "right"), ("Cost", "right"),
                          ("p50", "right"), ("p95", "right")):
        if name == "Models used":
            table.add_column(name, justify="left", overflow="fold", min_width=28, ratio=1)
        else:
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]

    def row(b: dict[str, Any], label: str, *, style: str | None = None) -> None:
        models = b.get("models_label") or ", ".join(f"{m} ×{n}" for m, n in b["models"].items()) or "—"
        if "json_valid" in b:
            models += f"  [dim](valid JSON {b['json_valid']}/{b['requests'] - b['errors']})[/dim]"
        table.add_row(label, str(b["requests"]), str(b["errors"]), models, str(b["fallbacks"]),
                      str(b["breaker_skips"]), _usd(b["cost_usd"]), _ms(b["p50_ms"]), _ms(b["p95_ms"]), style=style)

    for b in s["tasks"]:
        row(b, str(b["task"]))
    t = s["totals"]
    table.add_section()
    row({**t, "models_label": f"{len(t['models'])} models"}, "total", style="bold")
    out.print(table)
    if s["breakers"]:
        bt = Table(title=f"Circuit breakers that tripped — {s['breaker_trips']} trips", title_justify="left")
        bt.add_column("Breaker")
        bt.add_column("Trips (→ OPEN)", justify="right")
        bt.add_column("State now")
        for b in s["breakers"]:
            color = {"open": "red", "half_open": "yellow"}.get(b["state"], "green")
            bt.add_row(b["key"], str(b["trips"]), f"[{color}]{b['state']}[/{color}]")
        out.print(bt)
    else:
        out.print("No circuit breaker tripped.")
    split = ", ".join(f"{k}: {v}" for k, v in s["strategies"].items())
    out.print(f"Strategy split: {split}")
    mark = "[green]✓[/green]" if s["usage_rows"] == s["requests"] else "[red]✗[/red]"
    out.print(f"Usage store: {s['db_path']} — {s['usage_rows']} rows for {s['requests']} requests {mark}")


def print_tour(out: Console, url: str, admin_key: str, api_key: str, db_path: Path, log_path: Path,
               keep_serving: bool) -> None:
    """The dashboard URL, the keys and commands to paste (plain lines: nothing is cropped or boxed)."""
    lines = [
        "",
        "[bold cyan]The gateway is yours to try[/bold cyan]",
        f"  Dashboard    {url}/dashboard?key={admin_key}",
        f"  OpenAI API   {url}/v1        Anthropic API  {url}/v1/messages",
        f"  Admin key    {admin_key}",
        f"  API key      {api_key}",
        f"  Usage DB     {db_path}",
        f"  Gateway log  {log_path}",
        "",
        "[bold]curl[/bold]",
        f"  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {api_key}' "
        "-H 'Content-Type: application/json' -d '{\"model\": \"task:reasoning\", \"messages\": "
        "[{\"role\": \"user\", \"content\": \"Should we split the database first?\"}]}'",
        f"  curl -s '{url}/api/v1/usage?limit=3' -H 'Authorization: Bearer {admin_key}'",
        f"  curl -s {url}/health/ready",
        f"  modelplex usage report --db {db_path}",
        "",
        "[bold]OpenAI SDK (Python)[/bold]",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{url}/v1", api_key="{api_key}")',
        '  reply = client.chat.completions.create(model="task:job_parsing", response_format={"type": "json_object"},',
        '      messages=[{"role": "user", "content": "Parse this job posting into JSON with the keys title, company, '
        'skills.\\nTitle: Data Scientist\\nCompany: Acme\\nSkills: Python, SQL"}])',
        "  print(reply.model, reply.choices[0].message.content)",
        '  answer = client.responses.create(model="task:reasoning", input="Should we split the database first?")',
        "  print(answer.model, answer.output_text)   # the Responses API, served by any routed model",
    ]
    if keep_serving:
        lines += ["", "[bold]Serving until Ctrl-C[/bold]; whatever you send shows up on the dashboard within 2 s."]
    for line in lines:
        out.print(line, soft_wrap=True, highlight=False, markup=line.startswith("[bold"))


# ------------------------------------------------------------------------------------------ the command


async def _create_key(url: str, admin_key: str) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(f"{url}/api/v1/keys", json={"name": "modelplex-demo"},
                               headers={"authorization": f"Bearer {admin_key}"})
        resp.raise_for_status()
        return str(resp.json()["key"])


async def _breaker_states(url: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(f"{url}/health/ready")
        return dict(resp.json().get("breakers") or {})


async def _flush(app_obj: Any) -> None:
    recorder = app_obj.state.gateway.router.recorder
    if recorder is not None:
        await recorder.flush()


@app.command("demo")
def demo_command(
    once: Annotated[bool, typer.Option("--once", help="Run the workload, print the summary and exit "
                                                      f"(default {ONCE_REQUESTS} requests).")] = False,
    requests: Annotated[int | None, typer.Option("--requests", "-n", min=1, max=100_000,
                                                 help=f"Requests to send (default {DEFAULT_REQUESTS}).")] = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Gateway port (0: any free port).")] = 4000,
    host: Annotated[str, typer.Option("--host", help="Gateway interface.")] = "127.0.0.1",
    keep_serving: Annotated[bool | None, typer.Option(
        "--keep-serving/--no-keep-serving", help="Keep the gateway and the fakes up after the summary "
                                                 "(default: yes, unless --once).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=256,
                                             help="Requests in flight at most.")] = 8,
    duration: Annotated[float, typer.Option("--duration", min=1.0, max=3600.0,
                                            help="Seconds to spread the requests over (the scenario's outage "
                                                 "runs from 5 s to 15 s).")] = DEFAULT_DURATION_S,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the workload's task mix and prompts.")] = 7,
    workdir: Annotated[Path, typer.Option("--dir", file_okay=False,
                                          help="Where the demo keeps its SQLite store and log.")] = DEFAULT_DIR,
    scenario: Annotated[Path, typer.Option("--scenario", dir_okay=False, exists=True,
                                           help="Fault scenario for the fakes.")] = SCENARIO,
    json_out: JsonOption = False,
) -> None:
    """Start fake providers for every protocol and the real gateway in front of them (no keys, nothing
    leaves loopback), drive a mixed workload through the OpenAI SDK, print what happened, and leave the
    dashboard running."""
    try:
        import openai  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        fail(f"the demo needs the gateway extra and the OpenAI SDK ({exc.name} is missing): "
             "pip install 'modelplex[server]' openai")
    from modelplex.server import create_app
    from modelplex.server.dashboard_routes import mount_dashboard

    n = requests or (ONCE_REQUESTS if once else DEFAULT_REQUESTS)
    serve_after = (not once) if keep_serving is None else keep_serving
    out = _console()
    sock = bind(host, port)
    db_path = fresh_dir(workdir).resolve()
    log_path = (workdir / "gateway.log").resolve()
    handler = quiet_logs(log_path)
    admin_key = "mpx-admin-" + secrets.token_urlsafe(18)
    fake = start_fakes(scenario)
    stack = DemoStack(fake, None, host, sock)
    watch = BreakerWatch()
    try:
        app_obj = create_app(demo_config(fake.base_url, db_path, admin_key, secrets.token_urlsafe(32)), env={})
        mount_dashboard(app_obj)
        app_obj.state.gateway.router.breakers.on_transition.append(watch.on_transition)
        stack.app = app_obj
        stack.start()
        url = stack.url
        if not json_out:
            out.print(f"[bold]modelplex demo[/bold]: fake providers on {fake.base_url} (OpenAI, Azure OpenAI, "
                      f"Anthropic, Gemini, Bedrock, Groq); gateway on {url}")
            out.print(f"Scenario {scenario.name}: random 429s and 500s; the Anthropic API is overloaded from "
                      f"t=5 s to t=15 s. Sending {n} requests over ~{duration:.0f} s, {concurrency} at a time.")
            out.print(f"Watch it live: {url}/dashboard?key={admin_key}", soft_wrap=True, highlight=False)
        api_key = asyncio.run(_create_key(url, admin_key))
        jobs = build_jobs(n, seed)
        started = time.monotonic()
        outcomes = asyncio.run(drive(url, api_key, jobs, duration_s=duration, concurrency=concurrency,
                                     watch=watch, out=out, show_progress=not json_out))
        elapsed = time.monotonic() - started
        asyncio.run(_flush(app_obj))
        summary = summarize(db_path, outcomes, watch, asyncio.run(_breaker_states(url)), elapsed)
        summary.update({"gateway_url": url, "dashboard_url": f"{url}/dashboard", "log_path": str(log_path)})
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if json_out:
            emit_json(summary)
        else:
            print_summary(out, summary)
            print_tour(out, url, admin_key, api_key, db_path, log_path, serve_after)
        if summary["usage_rows"] != summary["requests"]:
            out.print(f"[red]error[/red]: the usage store has {summary['usage_rows']} rows for "
                      f"{summary['requests']} requests")
            raise typer.Exit(EXIT_MISMATCH)
        if serve_after:
            _wait_for_interrupt(stack)
    finally:
        stack.stop()
        logging.getLogger("modelplex").removeHandler(handler)
        handler.close()
    if not json_out:
        sys.stdout.write("demo stopped\n")


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _wait_for_interrupt(stack: DemoStack) -> None:
    thread = stack.thread
    try:
        while thread is not None and thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass
