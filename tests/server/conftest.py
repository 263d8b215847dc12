"""Fixtures for gateway tests: a fake provider on loopback in its own thread, and ``live(**config)``,
which starts gateways in front of it (see ``gateway_testkit``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gateway_testkit import LiveGateway, gateway_config

from modelplex.server import create_app
from modelplex.testing.server import FakeProviderServer


@pytest.fixture
def fake(threaded_fake: FakeProviderServer) -> FakeProviderServer:
    return threaded_fake


@pytest.fixture
def live(fake: FakeProviderServer) -> Iterator[Callable[..., LiveGateway]]:
    """``live(**config_overrides)`` -> a started ``LiveGateway`` (stopped after the test)."""
    started: list[LiveGateway] = []

    def build(*, no_auth: bool = False, app_kwargs: dict[str, Any] | None = None, **extra: Any) -> LiveGateway:
        app = create_app(gateway_config(fake.base_url, **extra), env={}, no_auth=no_auth, **(app_kwargs or {}))
        gw = LiveGateway(app, fake).start()
        started.append(gw)
        return gw

    yield build
    for gw in started:
        gw.stop()
