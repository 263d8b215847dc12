"""A router is built from a config whose names all exist: a typo fails at construction, with the file and key
path, not silently (a dropped fallback) nor on every request; deprecated models and providers without
credentials keep their per-request handling; an unknown model name suggests close tasks too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelplex.catalog import load_catalog
from modelplex.errors import ConfigError, UnknownModelError
from modelplex.router import Router

MSGS = [{"role": "user", "content": "Summarize the quarterly numbers."}]


def test_a_fallback_typo_fails_when_the_router_is_built(tmp_path: Path, make_config, fake) -> None:
    path = tmp_path / "modelplex.yaml"
    path.write_text(yaml.safe_dump(make_config(fake.base_url,
                                               routing={"fallback_paths": {"alpha/small": ["alpha/lareg"]}})))
    with pytest.raises(ConfigError) as ei:
        Router(path, catalog=load_catalog(bundled=False), env={})
    assert ei.value.file == str(path) and ei.value.key == "routing.fallback_paths.alpha/small[0]"
    assert "unknown model 'alpha/lareg'; did you mean 'alpha/large'" in str(ei.value)


def test_an_unknown_universal_fallback_fails_instead_of_disabling_the_last_resort(make_config, fake) -> None:
    with pytest.raises(ConfigError) as ei:
        Router(make_config(fake.base_url, routing={"universal_fallback": "beta/mdi"}),
               catalog=load_catalog(bundled=False), env={})
    assert ei.value.key == "routing.universal_fallback" and "did you mean 'beta/mid'" in str(ei.value)


def test_a_deprecated_fallback_and_one_without_credentials_keep_todays_handling(make_router, make_config,
                                                                                 fake) -> None:
    old = {"id": "alpha/old", "context_window": 8_000, "max_output_tokens": 1_000,
           "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2},
           "deprecation": {"deprecated": True, "replacement": "alpha/large"}}
    models = make_config(fake.base_url)["models"]  # plus one deprecated model and one whose provider has no key
    r = make_router(models=[*models, old, {**old, "id": "delta/m", "deprecation": {}}],
                    providers={"delta": {"protocol": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                    routing={"fallback_paths": {"alpha/small": ["alpha/old", "delta/m"]}})
    with pytest.warns(DeprecationWarning):
        plan = r.planner.plan(model="alpha/small")
    assert [t.id for t in plan.targets][:2] == ["alpha/small", "alpha/large"]  # migrated to its replacement
    assert plan.dropped["delta/m"] == "provider delta not configured"


async def test_the_check_runs_once_per_router_not_per_request(make_router, monkeypatch) -> None:
    import modelplex.router as router_module

    calls: list[object] = []
    real = router_module.check_references
    monkeypatch.setattr(router_module, "check_references", lambda cfg, cat: calls.append(cfg) or real(cfg, cat))
    r = make_router()
    await r.acomplete(MSGS, model="alpha/small")
    await r.acomplete(MSGS, task="fast")
    assert len(calls) == 1


async def test_an_unknown_bare_name_suggests_close_tasks_too(make_router) -> None:
    r = make_router()
    with pytest.raises(UnknownModelError) as ei:
        await r.acomplete(MSGS, model="reasonin")
    assert "task:reasoning" in ei.value.suggestions
    assert "did you mean" in str(ei.value) and "'task:reasoning'" in str(ei.value)
    with pytest.raises(UnknownModelError) as ei:
        await r.acomplete(MSGS, model="alpha/smal")  # a provider-qualified id never means a task
    assert ei.value.suggestions[0] == "alpha/small" and not any(s.startswith("task:") for s in ei.value.suggestions)
