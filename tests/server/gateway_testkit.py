"""Helpers for gateway tests: live gateways — uvicorn on 127.0.0.1 with a random port, in a thread —
in front of a fake provider, configured with two custom providers (``fakeai``: OpenAI protocol,
``fakeclaude``: Anthropic protocol) that point at the fake; constants and ``wait_for``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from modelplex.server.gateway import Gateway
from modelplex.testing.server import FakeProviderServer

PROVIDER_KEY = "sk-fakeprovider-SECRET-9f8e7d6c5b4a3210"
ADMIN_KEY = "admin-SECRET-key-0123456789abcdef"
SERVER_SECRET = "server-secret-for-tests-0123456789"
CAPS = ["tool_calling", "json_mode", "structured_output", "streaming", "system_messages"]


def gateway_models() -> list[dict[str, Any]]:
    return [
        {"id": "fakeai/small", "context_window": 16_000, "max_output_tokens": 2_000, "capabilities": CAPS,
         "category": "basic", "quality": 40, "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
        {"id": "fakeai/large", "context_window": 128_000, "max_output_tokens": 8_000, "capabilities": CAPS,
         "category": "comprehensive", "quality": 85, "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "fakeclaude/sonnet", "context_window": 200_000, "max_output_tokens": 8_000,
         "capabilities": ["tool_calling", "streaming", "system_messages", "structured_output", "vision"],
         "category": "comprehensive", "quality": 88, "default_params": {"max_tokens": 1024},
         "pricing": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
        {"id": "fakeai/embed", "mode": "embedding", "context_window": 8_000, "max_output_tokens": 1,
         "embedding_dimensions": 8, "pricing": {"input_per_mtok": 0.02}},
    ]


def gateway_config(fake_url: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {
            "fakeai": {"protocol": "openai", "base_url": fake_url + "/v1", "api_key": PROVIDER_KEY},
            "fakeclaude": {"protocol": "anthropic", "base_url": fake_url, "api_key": PROVIDER_KEY},
        },
        "models": gateway_models(),
        "accounting": {"sink": "memory", "flush_interval": 0.01},
        "routing": {"retry": {"base_delay": 0.0, "max_delay": 0.0}},
        "server": {"admin_key": ADMIN_KEY, "server_secret": SERVER_SECRET, "key_store": "memory"},
    }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class LiveGateway:
    """A gateway app served by uvicorn on loopback from a background thread."""

    app: Any
    fake: FakeProviderServer
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    port: int = 0
    keys: list[str] = field(default_factory=list)

    def start(self) -> LiveGateway:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, loop="uvloop", http="httptools", access_log=False, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="modelplex-test-gateway")
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway(self) -> Gateway:
        return self.app.state.gateway

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def create_key(self, **fields: Any) -> str:
        body = {"name": fields.pop("name", "test key"), **fields}
        with self.http() as c:
            r = c.post("/api/v1/keys", json=body, headers=ADMIN_HEADERS)
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        self.keys.append(key)
        return key

    def usage(self, **params: Any) -> list[dict[str, Any]]:
        with self.http() as c:
            r = c.get("/api/v1/usage", params=params, headers=ADMIN_HEADERS)
        assert r.status_code == 200, r.text
        return r.json()["data"]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy (for work finishing on another thread); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)
