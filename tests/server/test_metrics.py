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


async def test_per_user_budgets_are_one_series_per_window_not_one_per_user() -> None:
    rows = [{"scope": "global:daily", "kind": "global", "window": "daily", "fraction": 0.5, "spent_usd": 5.0},
            {"scope": "user:alice:daily", "kind": "user", "window": "daily", "fraction": 0.9, "spent_usd": 0.9},
            {"scope": "user:bob:daily", "kind": "user", "window": "daily", "fraction": 0.2, "spent_usd": 0.2},
            {"scope": "key:k1:monthly", "kind": "key", "window": "monthly", "fraction": 0.1, "spent_usd": 1.0}]

    async def status() -> list[dict[str, object]]:
        return rows

    router = _router(object())
    router.budgets = SimpleNamespace(status=status)
    metrics = GatewayMetrics()
    await metrics.refresh(router)
    text = metrics.render().decode()
    assert 'modelplex_budget_used_ratio{scope="user:*:daily"} 0.9' in text  # the fullest user
    assert 'modelplex_budget_spent_usd{scope="user:*:daily"} 1.1' in text  # all users together
    assert 'modelplex_budget_used_ratio{scope="global:daily"} 0.5' in text
    assert 'modelplex_budget_used_ratio{scope="key:k1:monthly"} 0.1' in text
    assert "alice" not in text and "bob" not in text
