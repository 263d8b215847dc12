"""``GatewayMetrics.refresh``: point-in-time series read from the router's collaborators at scrape time."""

from __future__ import annotations

from types import SimpleNamespace

from modelplex.server.metrics import GatewayMetrics


def _router(state: object) -> SimpleNamespace:
    return SimpleNamespace(state=state, breakers=SimpleNamespace(snapshot=dict), provider_status={}, budgets=None,
                           recorder=None)


async def test_state_outage_series_follow_the_state_backend() -> None:
    metrics = GatewayMetrics()
    await metrics.refresh(_router(SimpleNamespace(degraded=True, pending_merge_usd=2.5)))
    text = metrics.render().decode()
    assert "modelplex_state_degraded 1.0" in text and "modelplex_state_pending_merge_usd 2.5" in text
    await metrics.refresh(_router(object()))  # an in-process backend: never degraded, nothing to merge
    text = metrics.render().decode()
    assert "modelplex_state_degraded 0.0" in text and "modelplex_state_pending_merge_usd 0.0" in text
