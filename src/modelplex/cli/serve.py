"""``modelplex serve``: run the OpenAI- and Anthropic-compatible gateway on uvicorn.

Owns: the command. It builds the app once in this process (so a missing admin key, a bad config
or an unreachable PostgreSQL fails here, in one line), prints which providers are enabled and why
(``ANTHROPIC_API_KEY not set: anthropic disabled``), then runs uvicorn with uvloop and httptools,
no access log and no proxy-headers middleware (the gateway reads neither the client address nor
the scheme, and that layer wraps every request). ``--workers N`` (N > 1) runs uvicorn's
multi-process mode through the import string ``modelplex.server.app:app_from_env`` (a factory);
the config path travels in ``MODELPLEX_CONFIG`` and ``--no-auth`` in ``MODELPLEX_NO_AUTH``.

Must not touch: the app itself (``modelplex.server``), other commands.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from modelplex.cli._common import ConfigOption
from modelplex.errors import ConfigError

if TYPE_CHECKING:
    from modelplex.config import Config

app = typer.Typer(help="Run the OpenAI-compatible gateway.", add_completion=False)


def _loop_and_http() -> tuple[str, str]:
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    return loop, http


GC_THRESHOLD = (50_000, 20, 100)
"""Young-generation threshold for the served process: a request allocates many short-lived objects, and
the default (700) runs a collection every few requests; full collections over a large heap were the
p99 outliers in the gateway benchmark (docs/performance.md)."""


def _tune_gc() -> None:
    """Move everything allocated at start-up (catalog, modules) out of the collector's way, then raise the
    young-generation threshold. Only the ``serve`` process does this; the library never touches gc."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _check_database(cfg: Config) -> None:
    """Fail in one line, before uvicorn starts, when the PostgreSQL the gateway needs does not answer: the
    key store and the usage sink connect in the app's lifespan, where a failure is uvicorn's traceback."""
    dsn = cfg.accounting.dsn
    if not dsn or "postgres" not in (cfg.accounting.sink, cfg.server.key_store):
        return
    import asyncio
    from urllib.parse import urlsplit

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        place = urlsplit(dsn)
        where = f"{place.hostname or 'localhost'}:{place.port or 5432}{place.path}"  # no user or password
        raise ConfigError(f"cannot reach PostgreSQL at {where}: {type(exc).__name__}: {exc}",
                          key="accounting.dsn") from None


@app.command("serve")
def serve_command(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option("--host", help="Interface to bind (default: server.host, "
                                                            "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535,
                                             help="Port (default: server.port, 4000).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without API keys (local use only).")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the gateway: /v1/chat/completions, /v1/responses, /v1/messages, /v1/messages/count_tokens,
    /v1/embeddings, /v1/models (and /v1/models/{model}), the admin API under /api/v1, the dashboard at
    /dashboard, /health, /health/ready and /metrics."""
    import uvicorn

    from modelplex.config import load_config
    from modelplex.server.app import CONFIG_ENV, NO_AUTH_ENV, create_app

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("expected debug, info, warning or error", param_hint="'--log-level'")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(config)
    _check_database(cfg)
    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    app_obj = create_app(cfg, no_auth=no_auth)
    gw = app_obj.state.gateway
    out = sys.stdout
    out.write(f"modelplex gateway on http://{host}:{port}\n")
    for status in sorted(gw.router.provider_status.values(), key=lambda s: (not s.enabled, s.name)):
        out.write(f"  {'+' if status.enabled else '-'} {status.line()}\n")
    enabled = sorted(gw.router.enabled_providers())
    if not enabled:
        out.write("  warning: no provider is enabled; every request will fail until one has credentials\n")
    out.write(f"  auth: {'OFF (--no-auth)' if gw.no_auth else 'API keys (admin API at /api/v1/keys)'}; "
              f"key store: {gw.keys.store.name if gw.keys else 'none'}\n")
    if workers > 1:
        if gw.keys is not None and gw.keys.store.name == "memory":
            out.write("  warning: the in-memory key store is per worker; use SQLite or PostgreSQL with --workers\n")
        if not gw.router.state.shared:
            out.write("  warning: rate limits, breakers and budgets are per worker without a Redis state backend\n")
    out.flush()
    _tune_gc()
    loop, http = _loop_and_http()
    common = {"host": host, "port": port, "loop": loop, "http": http, "access_log": False,
              "proxy_headers": False, "log_level": log_level.lower(), "timeout_graceful_shutdown": 30}
    if workers == 1:
        uvicorn.run(app_obj, **common)
        return
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
    if no_auth:
        os.environ[NO_AUTH_ENV] = "1"
    uvicorn.run("modelplex.server.app:app_from_env", factory=True, workers=workers, **common)
