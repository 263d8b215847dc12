"""Shared fixtures. Tests touch no network: a guard turns any non-loopback connection into a failure."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LITELLM_MAP = SHARED / "data" / "litellm_model_prices_2026-11.json.gz"
TIKTOKEN_DIR = SHARED / "data" / "tiktoken"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        if isinstance(host, str):
            if host in ("localhost",):
                return
            try:
                ip = ipaddress.ip_address(host.split("%")[0])
            except ValueError:
                raise RuntimeError(f"tests touch no network: refused connection to {host!r}") from None
            if not ip.is_loopback:
                raise RuntimeError(f"tests touch no network: refused connection to {host!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a clear reason when a service is absent; under CI=true, fail instead."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


@pytest.fixture
def postgres_dsn() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("MODELPLEX_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return os.environ.get("MODELPLEX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def litellm_map_path() -> Path:
    if not LITELLM_MAP.exists():
        pytest.skip(f"shared LiteLLM price map absent ({LITELLM_MAP})")
    return LITELLM_MAP


@pytest.fixture
def tiktoken_dir() -> Path:
    if not TIKTOKEN_DIR.exists():
        pytest.skip(f"shared tiktoken files absent ({TIKTOKEN_DIR})")
    return TIKTOKEN_DIR


@pytest.fixture
async def fake_provider() -> AsyncIterator[object]:
    """A fake provider on loopback speaking every protocol, with fault injection via ``.plan``."""
    from modelplex.testing.server import FakeProviderServer

    server = FakeProviderServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def aiohttp_session() -> AsyncIterator[object]:
    """A plain ``aiohttp.ClientSession`` on the test's loop, closed after it."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def threaded_fake() -> Iterator[object]:
    """A fake OpenAI + Anthropic provider on loopback in a thread of its own, for tests whose code under
    test runs its own event loop (the sync API, a live gateway)."""
    from modelplex.testing.server import FakeProviderServer

    server = FakeProviderServer(protocols=("openai", "anthropic")).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()
