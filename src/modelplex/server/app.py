"""The gateway app factory: ``create_app(config | path | dict | None, *, router=None, no_auth=False)``.

Owns: assembling one gateway — the router (and its accounting: usage recorder, performance
tracker, budget manager, when the app builds the router), the key store and server secret, the
authenticator, metrics, runtime settings — into a Starlette app with

* the serving routes (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models[/{id}]``,
  ``/v1/messages``) as raw ASGI callables,
* the admin, health and metrics routes (``server.admin``),
* any ``extra_routes`` the caller adds (the dashboard mounts itself this way, or later with
  ``app.router.routes.append(...)``); ``app.state.gateway`` is the shared ``Gateway``,

and a lifespan that starts the key store, loads persisted settings, starts the usage recorder
(warming performance stats and, on the in-memory state backend, budget spend from stored usage),
keeps runtime settings in sync across replicas, and on shutdown flushes the recorder and closes
sessions. Also ``app_from_env()``, the factory ``uvicorn --factory`` / ``--workers`` imports.

Refuses to build without an admin key unless ``no_auth`` is set explicitly (``--no-auth`` or
``server.no_auth: true``).

Must not touch: request handling (route modules), the router's logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelplex.config import Config, load_config
from modelplex.errors import ConfigError
from modelplex.router import Router
from modelplex.server.admin import admin_routes
from modelplex.server.anthropic_routes import Messages
from modelplex.server.auth import Authenticator
from modelplex.server.count_tokens import CountTokens
from modelplex.server.dashboard_routes import dashboard_routes
from modelplex.server.errors import GatewayError, classify, openai_error_body
from modelplex.server.gateway import Gateway
from modelplex.server.keys import KeyManager, KeyStore, make_key_store, resolve_server_secret
from modelplex.server.metrics import GatewayMetrics
from modelplex.server.openai_routes import ChatCompletions, Embeddings, Models
from modelplex.server.responses_routes import Responses
from modelplex.server.settings_store import SettingsStore

log = logging.getLogger("modelplex.server")

ADMIN_KEY_ENV = "MODELPLEX_ADMIN_KEY"
NO_AUTH_ENV = "MODELPLEX_NO_AUTH"
CONFIG_ENV = "MODELPLEX_CONFIG"
SETTINGS_REFRESH_S = 5.0
PERFORMANCE_WARMUP_S = 7 * 86_400.0


def key_store_for(config: Config, env: Mapping[str, str]) -> KeyStore:
    """The key store ``server.key_store`` names; ``auto`` follows ``accounting.sink``."""
    kind = config.server.key_store
    sink = config.accounting.sink
    if kind == "auto":
        kind = sink if sink in ("sqlite", "postgres") else "memory"
    path: str | None = None
    if kind == "sqlite":
        from modelplex.accounting.sinks import sqlite_path

        path = sqlite_path(config.accounting, env)
    return make_key_store(kind, path=path, dsn=config.accounting.dsn)


def _build_accounting(router: Router, config: Config, env: Mapping[str, str]) -> None:
    """Give an app-built router its recorder, performance tracker and budget manager."""
    from modelplex.accounting import PerformanceTracker, make_recorder
    from modelplex.accounting.budgets import BudgetManager

    if router.recorder is None:
        router.recorder = make_recorder(config.accounting, clock=router.clock, env=env)
    if router.performance is None and router.recorder is not None:
        router.performance = PerformanceTracker(clock=router.clock)
    if router.budgets is None:
        manager = BudgetManager(config.budgets, router.state, router.clock)
        if manager.enabled:
            router.budgets = manager


def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    message = (f"{request.method} {request.url.path} is not a route of this gateway"
               if status == 404 else f"{request.method} is not allowed on {request.url.path}")
    body = openai_error_body(classify(GatewayError(status, message, type="invalid_request_error",
                                                   code="not_found" if status == 404 else "method_not_allowed")))
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class GatewayApp(Starlette):
    """A Starlette app whose serving routes skip the router and middleware stack on the hot path.

    ``POST /v1/chat/completions`` (and the other exact-path serving routes) are dispatched from a
    dict straight to their ASGI callables, which do their own error handling, as long as no user
    middleware was added (CORS, or anything added later with ``add_middleware``): then every request
    goes through the full stack. Everything else is plain Starlette.
    """

    fast_paths: dict[tuple[str, str], Any]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self.user_middleware:
            handler = self.fast_paths.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(config: Config | str | Path | Mapping[str, Any] | None = None, *, router: Router | None = None,
               no_auth: bool = False, env: Mapping[str, str] | None = None, key_store: KeyStore | None = None,
               extra_routes: Sequence[BaseRoute] = ()) -> GatewayApp:
    """Build the gateway app. ``config`` is a ``Config``, a YAML path, a mapping or ``None``
    (``$MODELPLEX_CONFIG`` or defaults); ``router`` an already-built router to serve (its config is
    used when ``config`` is ``None``). ``no_auth`` turns authentication off (local use only)."""
    env = dict(os.environ if env is None else env)
    cfg = router.config if config is None and router is not None else load_config(config, env)
    no_auth = bool(no_auth or cfg.server.no_auth)
    admin_key = cfg.server.admin_key or env.get(ADMIN_KEY_ENV) or None
    if not no_auth and not admin_key:
        raise ConfigError("the gateway will not start without an admin key: set server.admin_key or "
                          f"{ADMIN_KEY_ENV} (it manages inference keys through /api/v1/keys), or pass "
                          "--no-auth explicitly for an unauthenticated local gateway", key="server.admin_key")
    owns_router = router is None
    if router is None:
        router = Router(cfg, env=env)
        _build_accounting(router, cfg, env)
    store = key_store if key_store is not None else key_store_for(cfg, env)
    secret, secret_source = resolve_server_secret(cfg.server.server_secret, env, store)
    keys = KeyManager(store, secret)
    auth = Authenticator(keys, admin_key, no_auth=no_auth)
    settings = SettingsStore(router.state, getattr(store, "db", None))
    metrics = GatewayMetrics()
    gw = Gateway(router, cfg, auth=auth, keys=keys, metrics=metrics, settings=settings, no_auth=no_auth,
                 extra_secrets=(admin_key or "", secret.decode("utf-8", "replace")))
    if no_auth:
        log.warning("authentication is OFF (--no-auth): anyone who can reach this port can use every model%s",
                    "" if admin_key else " and the admin API")
    log.info("key store: %s; server secret from %s", store.name, secret_source)

    chat, messages, embeddings, models = ChatCompletions(gw), Messages(gw), Embeddings(gw), Models(gw)
    responses = Responses(gw)
    routes: list[BaseRoute] = [
        Route("/v1/chat/completions", chat, methods=["POST"], name="chat_completions"),
        Route("/v1/responses", responses, methods=["POST"], name="responses"),
        Route("/v1/messages", messages, methods=["POST"], name="messages"),
        Route("/v1/messages/count_tokens", CountTokens(gw), methods=["POST"], name="count_tokens"),
        Route("/v1/embeddings", embeddings, methods=["POST"], name="embeddings"),
        Route("/v1/models", models, methods=["GET"], name="models"),
        Route("/v1/models/{model:path}", Models(gw), methods=["GET"], name="model"),
        *admin_routes(gw),
        *dashboard_routes(router, gateway=gw),
        *extra_routes,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _startup(gw, owns_router)
        refresher = asyncio.get_running_loop().create_task(_sync_settings(gw)) if settings.shared else None
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            await _shutdown(gw, owns_router)

    app = GatewayApp(routes=routes, lifespan=lifespan, exception_handlers={404: _not_found, 405: _not_found})
    app.fast_paths = {("POST", "/v1/chat/completions"): chat, ("POST", "/v1/messages"): messages,
                      ("POST", "/v1/embeddings"): embeddings, ("GET", "/v1/models"): models,
                      ("POST", "/v1/responses"): responses}
    if cfg.server.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.server.cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["x-modelplex-request-id", "x-modelplex-model",
                                                                "x-modelplex-provider", "x-modelplex-cost-usd",
                                                                "x-modelplex-fallback", "x-modelplex-attempts"])
    app.state.gateway = gw
    return app


async def _startup(gw: Gateway, owns_router: bool) -> None:
    router = gw.router
    assert gw.keys is not None
    await gw.keys.store.start()
    await gw.settings.start()
    persisted = await gw.settings.load()
    if persisted is not None:
        _apply_strategy(gw, persisted.strategy)
        gw.settings_updated_at = persisted.updated_at
    for key in await gw.keys.list(include_revoked=False):
        if key.has_budget:
            gw.register_key_budget(key)
    if router.recorder is not None:
        await router.start()  # the usage writer runs on this loop; router.aclose() flushes it
        if owns_router:
            await _warm_up(gw)
    gw.attach()
    for status in sorted(router.provider_status.values(), key=lambda s: (not s.enabled, s.name)):
        log.info("provider %s", status.line())


async def _warm_up(gw: Gateway) -> None:
    """Performance stats from the last week of stored usage; budget spend of the open periods
    when the state backend is in-process memory (it forgets on restart)."""
    router = gw.router
    recorder = router.recorder
    sink = getattr(recorder, "sink", None)
    if recorder is None or sink is None:
        return
    try:
        # The journal first: spend spilled before a restart is in the budgets' seed, not replayed after it
        # (the writer's own replay runs in the background and would land after the seed was read).
        if not await recorder.replay():
            log.warning("usage journal not replayed at start-up (the usage store refused it): budget spend "
                        "seeded from the store may miss what the journal holds until it is replayed")
        if router.performance is not None and hasattr(router.performance, "load_from_sink"):
            await router.performance.load_from_sink(sink, since=time.time() - PERFORMANCE_WARMUP_S)
        budgets = router.budgets
        if budgets is not None and not router.state.shared and hasattr(budgets, "seed"):
            from modelplex.accounting.sinks.base import record_from_dict

            rows = await sink.query(budgets.open_since())
            await budgets.seed([record_from_dict(r) for r in rows])
    except Exception:
        log.warning("could not warm up performance/budget figures from stored usage", exc_info=True)


async def _shutdown(gw: Gateway, owns_router: bool) -> None:
    router = gw.router
    gw.detach()
    try:
        await router.aclose()  # flushes and closes the usage recorder, its state, then the HTTP sessions
    except Exception:
        log.exception("closing the router failed")
    if owns_router:
        budgets = router.budgets
        if budgets is not None and hasattr(budgets, "aclose"):
            with contextlib.suppress(Exception):
                await budgets.aclose()
    if gw.keys is not None:
        await gw.keys.store.close()


def _apply_strategy(gw: Gateway, strategy: str | None) -> None:
    from modelplex.policy.strategies import resolve_strategy_name

    if strategy is None:
        gw.router.runtime_strategy = None
        return
    try:
        gw.router.runtime_strategy = resolve_strategy_name(strategy, gw.router.planner.strategies)
    except ConfigError:
        log.warning("ignoring persisted strategy %r: not a strategy of this configuration", strategy)


async def refresh_settings(gw: Gateway) -> bool:
    """Apply settings saved by another replica when they are newer than ours; True when applied."""
    try:
        got = await gw.settings.load()
    except Exception:
        log.debug("settings refresh failed", exc_info=True)
        return False
    if got is not None and (gw.settings_updated_at is None or got.updated_at > gw.settings_updated_at):
        _apply_strategy(gw, got.strategy)
        gw.settings_updated_at = got.updated_at
        return True
    return False


async def _sync_settings(gw: Gateway) -> None:
    """Pick up strategy changes made through other replicas (shared state backend)."""
    while True:
        await asyncio.sleep(SETTINGS_REFRESH_S)
        await refresh_settings(gw)


def app_from_env() -> Starlette:
    """The factory for ``uvicorn --factory modelplex.server.app:app_from_env`` (and ``--workers``):
    config from ``$MODELPLEX_CONFIG``, ``--no-auth`` from ``MODELPLEX_NO_AUTH=1``."""
    no_auth = os.environ.get(NO_AUTH_ENV, "").lower() in ("1", "true", "yes")
    return create_app(os.environ.get(CONFIG_ENV) or None, no_auth=no_auth)


__all__ = ["GatewayApp", "app_from_env", "create_app", "key_store_for", "refresh_settings"]
