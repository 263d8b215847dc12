"""``modelplex fake-providers``: run the loopback fake of every provider protocol until Ctrl-C.

Owns: the command — load a fault scenario (``--scenario FILE``, or the name of a bundled one such as
``demo``), start ``testing.server.FakeProviderServer`` with all protocols on one port, print each
protocol's base URL and a config snippet that points modelplex at it, and serve until interrupted.
``--json`` prints the URLs as one JSON line instead (for scripts).

Must not touch: the fake's behaviour (``modelplex.testing``), other commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelplex.cli._common import JsonOption, emit_json, fail

if TYPE_CHECKING:
    from modelplex.testing.faults import Behavior, FaultPlan
    from modelplex.testing.server import FakeProviderServer

app = typer.Typer(help="Run fake providers (all five protocols) on loopback.", add_completion=False)

SCENARIOS = Path(__file__).resolve().parent.parent / "testing" / "scenarios"
"""Bundled scenarios, addressable by name (``--scenario demo``)."""

ALL_PROTOCOLS = ("openai", "anthropic", "gemini", "bedrock")
"""The fake's protocol modules; ``openai`` also serves Azure OpenAI's paths."""


def resolve_scenario(value: str) -> Path:
    """A scenario file path, or the bundled scenario of that name."""
    path = Path(value)
    if path.exists():
        return path
    bundled = SCENARIOS / f"{value}.yaml"
    if "/" not in value and bundled.exists():
        return bundled
    known = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
    fail(f"no scenario file {value!r} (bundled scenarios: {', '.join(known) or 'none'})")


def load_scenario_file(path: Path) -> tuple[FaultPlan, Behavior, dict[str, Behavior]]:
    """Read a scenario YAML file (``faults.load_scenario`` shape); errors name the file."""
    from modelplex.config import read_yaml
    from modelplex.errors import ConfigError
    from modelplex.testing.faults import load_scenario

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("a scenario is a mapping (seed, behavior, models, random_faults, outages)", file=str(path))
    try:
        return load_scenario(data)
    except (TypeError, KeyError, ValueError) as exc:
        raise ConfigError(f"invalid scenario: {exc}", file=str(path)) from None


def endpoints(base_url: str) -> dict[str, dict[str, str]]:
    """Where each protocol lives on a fake at ``base_url``, and what to put in a modelplex config."""
    return {
        "openai": {"base_url": f"{base_url}/v1", "paths": "/v1/chat/completions, /v1/embeddings, /v1/models"},
        "azure": {"endpoint": base_url,
                  "paths": "/openai/deployments/{deployment}/chat/completions?api-version=..., /openai/v1/..."},
        "anthropic": {"base_url": base_url, "paths": "/v1/messages, /v1/messages/count_tokens"},
        "gemini": {"base_url": base_url,
                   "paths": "/v1beta/models/{model}:generateContent | :streamGenerateContent | :embedContent"},
        "bedrock": {"base_url": base_url, "paths": "/model/{model_id}/converse | /converse-stream | /invoke"},
    }


def config_snippet(base_url: str) -> str:
    """A ``providers:`` section routing the bundled catalog's providers to the fake."""
    return "\n".join([
        "providers:",
        f"  openai:    {{base_url: {base_url}/v1, api_key: sk-fake}}",
        f"  groq:      {{base_url: {base_url}/v1, api_key: gsk-fake}}",
        f"  azure:     {{endpoint: {base_url}, api_key: fake}}",
        f"  anthropic: {{base_url: {base_url}, api_key: sk-ant-fake}}",
        f"  gemini:    {{base_url: {base_url}, api_key: fake}}",
        f"  bedrock:   {{base_url: {base_url}, aws_access_key_id: AKIAFAKE, aws_secret_access_key: fake, "
        "region: us-east-1}",
    ])


def build_server(host: str, port: int, scenario: Path | None) -> FakeProviderServer:
    from modelplex.testing.faults import Behavior
    from modelplex.testing.server import FakeProviderServer

    _, behavior, per_model = load_scenario_file(scenario) if scenario else (None, Behavior(), {})
    return FakeProviderServer(behavior=behavior, per_model=per_model, protocols=ALL_PROTOCOLS, host=host,
                              port=port, capture=False)


async def _serve(server: FakeProviderServer, scenario: Path | None, announce: Any) -> None:
    await server.start()
    if scenario is not None:
        # start() resets its plan (faults and clock): the scenario's plan is built now, its clock starts now
        server.plan = load_scenario_file(scenario)[0]
    try:
        announce(server)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)
    finally:
        await server.stop()


@app.command("fake-providers")
def fake_providers_command(
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port to listen on (0: any free port, printed).")] = 8900,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    scenario: Annotated[str | None, typer.Option(
        "--scenario", metavar="FILE", help="Fault scenario YAML (seed, behavior, models, random_faults, "
                                           "outages), or a bundled one by name: demo.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Serve fake OpenAI, Azure OpenAI, Anthropic, Gemini and Bedrock APIs on one port until Ctrl-C.

    Each answers in its own wire format, with the scenario's latency and faults."""
    path = resolve_scenario(scenario) if scenario else None
    server = build_server(host, port, path)

    def announce(srv: FakeProviderServer) -> None:
        base = srv.base_url
        if json_out:
            emit_json({"base_url": base, "protocols": endpoints(base),
                       "scenario": str(path) if path else None, "health": f"{base}/__fake__/health"})
            return
        out = sys.stdout
        out.write(f"fake providers on {base}" + (f" (scenario {path})" if path else " (no faults)") + "\n")
        for name, info in endpoints(base).items():
            where = info.get("base_url") or info.get("endpoint")
            out.write(f"  {name:<10} {where:<34} {info['paths']}\n")
        out.write("\nmodelplex config to route the bundled catalog to these fakes:\n\n")
        out.write(config_snippet(base) + "\n\nPress Ctrl-C to stop.\n")
        out.flush()

    try:
        asyncio.run(_serve(server, path, announce))
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stderr.write("fake providers stopped\n")
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
