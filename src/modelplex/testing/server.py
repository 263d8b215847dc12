"""One loopback HTTP server that speaks all five provider protocols.

Owns: the aiohttp application, request capture, fault selection and the protocol-independent
parts of faults (timeouts, connection resets, latency). The protocols' paths do not collide
(``/v1/chat/completions``, ``/openai/deployments/...``, ``/v1/messages``, ``/v1beta/models/...``,
``/model/.../converse``), so one server hosts them all. Each protocol module in this package
contributes ``add_routes(app, server)`` and renders bodies, streams and error bodies in its own format.

Use it from tests (the ``fake_provider`` fixture), benchmarks and the demo
(``modelplex fake-providers --port P [--scenario FILE]``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from modelplex.testing.faults import Behavior, Fault, FaultPlan

PROTOCOL_MODULES = {
    "openai": "modelplex.testing.fake_openai",  # also serves the Azure paths
    "anthropic": "modelplex.testing.fake_anthropic",
    "gemini": "modelplex.testing.fake_gemini",
    "bedrock": "modelplex.testing.fake_bedrock",
}


@dataclass(slots=True)
class Captured:
    """One request as the fake received it."""

    protocol: str
    model: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass(slots=True)
class Turn:
    """What the protocol renderer needs to answer one request."""

    protocol: str
    model: str
    fault: Fault | None
    behavior: Behavior
    text: str
    input_tokens: int
    output_tokens: int


def approx_tokens(text: str) -> int:
    """The fakes' deterministic token count: about 4 characters a token, at least 1."""
    return max(1, (len(text) + 3) // 4)


@dataclass
class FakeProviderServer:
    """A running fake. ``base_url`` is ``http://127.0.0.1:PORT``."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    behavior: Behavior = field(default_factory=Behavior)
    per_model: dict[str, Behavior] = field(default_factory=dict)
    protocols: tuple[str, ...] = ("openai", "anthropic", "gemini", "bedrock")
    host: str = "127.0.0.1"
    port: int = 0
    captured: list[Captured] = field(default_factory=list)
    capture: bool = True
    max_captured: int = 10_000
    _runner: web.AppRunner | None = None
    _site_port: int = 0
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ app

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for proto in self.protocols:
            importlib.import_module(PROTOCOL_MODULES[proto]).add_routes(app, self)
        app.router.add_get("/__fake__/health", self._health)
        return app

    async def start(self) -> FakeProviderServer:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self._site_port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.plan.restart_clock()  # keep a scenario's faults; its outages count from now
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeProviderServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> FakeProviderServer:
        """Run the server on its own event loop in a daemon thread (for sync tests and the demo)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="modelplex-fake-providers", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
            self._thread = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "protocols": list(self.protocols)})

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._site_port}"

    # ------------------------------------------------------------------ helpers for protocol modules

    async def begin(self, request: web.Request, protocol: str, model: str, body: bytes,
                    parsed: Any, prompt_text: str, *, messages: list[dict[str, Any]] | None = None) -> Turn:
        """Capture the request, pick its fault and behaviour, apply latency and transport faults.

        ``messages``, when given, is what a ``Behavior.reply`` callable receives (protocols whose bodies have
        no OpenAI-style ``messages``, such as Gemini and Bedrock, pass an OpenAI-shaped rendering).
        Raises ``ConnectionResetError``-equivalents for ``reset``; sleeps for ``timeout``.
        """
        if self.capture:
            if len(self.captured) >= self.max_captured:
                del self.captured[: self.max_captured // 2]
            self.captured.append(Captured(protocol, model, request.method, request.path, dict(request.query),
                                          dict(request.headers), body, parsed))
        fault = self.plan.take(protocol, model)
        behavior = self.per_model.get(model, self.behavior)
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "reset":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise ConnectionResetError("fault: reset")
        if behavior.ttft_s:
            await asyncio.sleep(behavior.ttft_s)
        text = self.reply_text(behavior, model, parsed if messages is None else messages, prompt_text)
        return Turn(protocol, model, fault, behavior, text, approx_tokens(prompt_text), approx_tokens(text))

    @staticmethod
    def reply_text(behavior: Behavior, model: str, parsed: Any, prompt_text: str) -> str:
        if callable(behavior.reply):
            # ``parsed`` is the messages list, or a whole request body that carries ``messages``
            messages = parsed.get("messages") if isinstance(parsed, dict) else parsed
            return behavior.reply(model, messages if isinstance(messages, list) else [])
        if isinstance(behavior.reply, str):
            return behavior.reply
        digest = hashlib.sha256(prompt_text.encode()).hexdigest()[:8]
        return f"This is a reply from {model} ({digest}) to: {prompt_text[-60:]}"

    @staticmethod
    def split_chunks(text: str, n: int) -> list[str]:
        n = max(1, n)
        size = max(1, -(-len(text) // n))
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]

    @staticmethod
    async def pace(behavior: Behavior, fault: Fault | None, piece: str) -> None:
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        elif behavior.tokens_per_s:
            await asyncio.sleep(approx_tokens(piece) / behavior.tokens_per_s)

    @staticmethod
    def retry_headers(fault: Fault) -> dict[str, str]:
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = ra if isinstance(ra, str) else f"{ra:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
        return headers

    @staticmethod
    async def abort_stream(resp: web.StreamResponse, request: web.Request) -> None:
        """Cut a stream mid-flight: the client sees the connection drop without a terminal event."""
        transport = request.transport
        if transport is not None:
            transport.abort()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
