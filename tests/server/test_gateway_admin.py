"""The admin API, health and metrics on a live gateway: key lifecycle, runtime settings (validated,
applied, persisted), usage filters, feedback, budgets (global and per key), performance, readiness,
Prometheus series; the start-up refusal without an admin key; and no secret in any log or body."""

from __future__ import annotations

import datetime as dt
import logging
import time

import openai
import pytest
from gateway_testkit import ADMIN_HEADERS, ADMIN_KEY, PROVIDER_KEY, SERVER_SECRET, gateway_config, wait_for

from modelplex.errors import ConfigError
from modelplex.server import create_app
from modelplex.testing.faults import Behavior, Fault

MSG = [{"role": "user", "content": "hello admin"}]


def chat(gw, key: str, model: str = "fakeai/small", **kw) -> openai.types.chat.ChatCompletion:
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    return c.chat.completions.create(model=model, messages=MSG, **kw)


def test_key_lifecycle_through_the_admin_api(live) -> None:
    gw = live()
    with gw.http() as h:
        r = h.post("/api/v1/keys", headers=ADMIN_HEADERS, json={
            "name": "ci", "allowed_models": ["fakeai/*"], "rpm": 100, "prompt_logging": False,
            "metadata": {"owner": "qa"}})
        assert r.status_code == 201
        created = r.json()
        key, key_id = created["key"], created["id"]
        assert key.startswith(f"mpx-{key_id}-") and created["prefix"] == f"mpx-{key_id}"
        assert created["active"] is True and created["revoked_at"] is None
        listed = h.get("/api/v1/keys", headers=ADMIN_HEADERS).json()["data"]
        assert [k["id"] for k in listed] == [key_id]
        assert "key" not in listed[0] and "digest" not in listed[0]
        assert key not in h.get("/api/v1/keys", headers=ADMIN_HEADERS).text
        assert chat(gw, key).model == "fakeai/small"
        # an inference key does not open the admin API; the admin key does not serve inference
        assert h.get("/api/v1/keys", headers={"authorization": f"Bearer {key}"}).status_code == 401
        r = h.post("/v1/chat/completions", headers=ADMIN_HEADERS, json={"model": "fakeai/small", "messages": MSG})
        assert r.status_code == 401
        assert h.get(f"/api/v1/keys/{key_id}", headers=ADMIN_HEADERS).json()["metadata"] == {"owner": "qa"}
        r = h.delete(f"/api/v1/keys/{key_id}", headers=ADMIN_HEADERS)
        assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_at"] is not None
        with pytest.raises(openai.AuthenticationError) as exc:
            chat(gw, key)
        assert "revoked" in exc.value.body["message"]
        assert h.get("/api/v1/keys?include_revoked=false", headers=ADMIN_HEADERS).json()["data"] == []
        assert h.delete("/api/v1/keys/zzzzzzzz", headers=ADMIN_HEADERS).status_code == 404
        assert h.get("/api/v1/keys/not-an-id", headers=ADMIN_HEADERS).status_code == 404
        for bad in ({}, {"name": ""}, {"name": "x", "rpm": 0}, {"name": "x", "daily_usd": -1},
                    {"name": "x", "allowed_models": "fakeai/*"}, {"name": "x", "colour": "red"},
                    {"name": "bad\x00name"}):
            assert h.post("/api/v1/keys", headers=ADMIN_HEADERS, json=bad).status_code == 400, bad
        assert h.post("/api/v1/keys", headers={"authorization": "Bearer nope"}, json={"name": "x"}).status_code == 401
    rows = wait_for(lambda: gw.usage())
    assert rows[0]["api_key_id"] == key_id and "no_prompt_logging" in rows[0]["tags"]


def test_settings_change_the_strategy_at_run_time_and_persist(live, tmp_path) -> None:
    db = str(tmp_path / "gw.db")
    extra = {"accounting": {"sink": "sqlite", "path": db, "flush_interval": 0.01}, "server": {"key_store": "auto"}}
    gw = live(**extra)
    with gw.http() as h:
        s = h.get("/api/v1/models/settings", headers=ADMIN_HEADERS).json()
        assert s["current_strategy"] == "balanced" and s["source"] == "config" and s["runtime_strategy"] is None
        assert {"cost_optimized", "balanced", "quality_optimized"} <= set(s["available_strategies"])
        assert s["available_models"] == {"chat": ["fakeai/large", "fakeai/small", "fakeclaude/sonnet"],
                                         "embedding": ["fakeai/embed"]}
        r = h.put("/api/v1/models/settings", headers=ADMIN_HEADERS, json={"strategy": "economy"})
        assert r.status_code == 200
        assert r.json()["current_strategy"] == "cost_optimized" and r.json()["source"] == "runtime"
        assert gw.gateway.router.runtime_strategy == "cost_optimized"
        r = h.put("/api/v1/models/settings", headers=ADMIN_HEADERS, json={"strategy": "fastest-please"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_strategy"
        assert h.put("/api/v1/models/settings", headers=ADMIN_HEADERS, json={"mode": "x"}).status_code == 400
        assert gw.gateway.router.runtime_strategy == "cost_optimized"
        # auto routing now follows the runtime strategy: the cheapest capable model
    key = gw.create_key()
    assert chat(gw, key, model="auto").model == "fakeai/small"
    gw.stop()
    # a new gateway on the same database starts with the persisted strategy
    again = live(**extra)
    assert again.gateway.router.runtime_strategy == "cost_optimized"
    with again.http() as h:
        assert h.get("/api/v1/models/settings", headers=ADMIN_HEADERS).json()["source"] == "runtime"
        r = h.put("/api/v1/models/settings", headers=ADMIN_HEADERS, json={"strategy": None})
        assert r.json()["current_strategy"] == "balanced" and r.json()["source"] == "config"
    # keys live in the same database
    assert again.create_key()
    assert (tmp_path / "gw.db.server-secret").exists() is False  # the config gives the secret


def test_usage_filters_feedback_and_performance(live) -> None:
    gw = live()
    key = gw.create_key()
    first = chat(gw, key, user="alice")
    chat(gw, key, user="bob")
    chat(gw, key, model="fakeai/large", user="alice")
    rows = wait_for(lambda: len(gw.usage()) == 3 and gw.usage())
    assert {r["user"] for r in rows} == {"alice", "bob"}
    assert [r["model"] for r in gw.usage(user="alice", model="fakeai/small")] == ["fakeai/small"]
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)  # the latest first
    assert all(len(r["attempts"]) == r["attempt_count"] >= 1 for r in rows)  # each with its attempts
    assert [r["request_id"] for r in gw.usage(limit=1)] == [rows[0]["request_id"]]
    assert [r["request_id"] for r in gw.usage(order="asc")] == [r["request_id"] for r in reversed(rows)]
    assert gw.usage(since=rows[0]["ts"] + 1) == []
    assert len(gw.usage(since="2000-01-01T00:00:00Z")) == 3
    assert len(gw.usage(since="7d")) == 3 and gw.usage(until="2000-01-01") == []  # as `modelplex usage` reads them
    with gw.http() as h:
        summary = h.get("/api/v1/usage", params={"user": "alice"}, headers=ADMIN_HEADERS).json()["summary"]
        assert summary["requests"] == 2 and summary["cost_usd"] > 0
        page = h.get("/api/v1/usage", params={"limit": 1}, headers=ADMIN_HEADERS).json()
        assert len(page["data"]) == 1 and page["has_more"] is True and page["order"] == "desc"
        assert page["summary"]["requests"] == 3  # the totals cover every matching record, not the page
        assert page["summary"]["cost_usd"] == round(sum(r["cost_usd"] for r in rows), 10)
        for params in ({"limit": 0}, {"limit": "many"}, {"since": "yesterday"}, {"user": ""}, {"by": "model"},
                       {"usr": "alice"}, {"order": "newest"}):
            assert h.get("/api/v1/usage", params=params, headers=ADMIN_HEADERS).status_code == 400, params
        typo = h.get("/api/v1/usage", params={"usr": "alice"}, headers=ADMIN_HEADERS).json()["error"]
        assert typo["param"] == "usr" and \
            "expected cursor, limit, model, order, provider, since, task, until, user" in typo["message"]
        rid = first.id.removeprefix("chatcmpl-")
        r = h.post("/api/v1/feedback", headers=ADMIN_HEADERS, json={"request_id": rid, "score": 0.9,
                                                                   "comment": "good"})
        assert r.status_code == 202 and r.json()["recorded"] is True
        for bad in ({"request_id": rid, "score": 1.5}, {"request_id": rid}, {"request_id": "", "score": 0.5},
                    {"request_id": rid, "score": True}, {"request_id": rid, "score": 0.5, "x": 1}):
            assert h.post("/api/v1/feedback", headers=ADMIN_HEADERS, json=bad).status_code == 400, bad
        rec = wait_for(lambda: [r for r in gw.usage(user="alice") if r["request_id"] == rid and r["quality_score"]])
        assert rec[0]["quality_score"] == pytest.approx(0.9)
        perf = h.get("/api/v1/models/performance", headers=ADMIN_HEADERS).json()
        assert perf["enabled"] is True
        assert perf["model_performance"]["fakeai/small"]["total_generations"] == 2
        assert perf["model_performance"]["fakeai/small"]["avg_quality_score"] == pytest.approx(0.9)
        assert perf["model_performance"]["fakeai/large"]["success_rate"] == 1.0
        assert set(perf["recommendations"]) == {"cost_leader", "quality_leader", "balanced_choice"}


def test_every_admin_operation_refuses_unknown_and_repeated_query_parameters(live) -> None:
    gw = live()
    key_id = gw.create_key().split("-")[1]
    operations = [("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"), ("GET", f"/api/v1/keys/{key_id}"),
                  ("DELETE", f"/api/v1/keys/{key_id}"), ("GET", "/api/v1/budgets"),
                  ("GET", "/api/v1/models/performance"), ("GET", "/api/v1/models/settings"),
                  ("PUT", "/api/v1/models/settings"), ("GET", "/api/v1/usage"), ("POST", "/api/v1/feedback"),
                  ("GET", "/api/v1/openapi.json")]
    with gw.http() as h:
        for method, path in operations:
            r = h.request(method, path, params={"foo": "1"}, headers=ADMIN_HEADERS)
            assert r.status_code == 400, (method, path, r.text)
            err = r.json()["error"]
            assert err["code"] == "unknown_parameter" and err["param"] == "foo", (method, path, err)
            assert "unknown query parameter(s): foo" in err["message"]
        assert "expected include_revoked" in h.get("/api/v1/keys?foo=1", headers=ADMIN_HEADERS).text
        assert "this operation takes none" in h.get("/api/v1/budgets?foo=1", headers=ADMIN_HEADERS).text
        # the admin key is still checked first
        assert h.get("/api/v1/keys?foo=1", headers={"authorization": "Bearer nope"}).status_code == 401
        for path, name in (("/api/v1/usage?limit=1&limit=2", "limit"), ("/api/v1/keys?include_revoked=true"
                           "&include_revoked=false", "include_revoked"), ("/api/v1/models/performance?task=a&task=b",
                                                                          "task")):
            r = h.get(path, headers=ADMIN_HEADERS)
            assert r.status_code == 400, path
            err = r.json()["error"]
            assert err["code"] == "invalid_value" and err["param"] == name
            assert f"query parameter '{name}' is given 2 times; give it once" == err["message"]
        # what they do take still works
        assert h.get("/api/v1/keys?include_revoked=false", headers=ADMIN_HEADERS).status_code == 200
        assert h.get("/api/v1/models/performance?task=fast", headers=ADMIN_HEADERS).status_code == 200
        assert h.get("/api/v1/keys", headers=ADMIN_HEADERS).status_code == 200
        assert h.get("/health?foo=1").status_code == 200  # probes and scrapers are not the admin API


def test_usage_pages_follow_next_cursor_to_the_end(live) -> None:
    gw = live()
    key = gw.create_key()
    for _ in range(5):
        chat(gw, key)
    rows = wait_for(lambda: len(gw.usage()) == 5 and gw.usage())
    with gw.http() as h:
        for order, expected in (("desc", [r["request_id"] for r in rows]),
                                ("asc", [r["request_id"] for r in reversed(rows)])):
            seen: list[str] = []
            params: dict[str, object] = {"limit": 2, "order": order}
            while True:
                page = h.get("/api/v1/usage", params=params, headers=ADMIN_HEADERS).json()
                seen += [r["request_id"] for r in page["data"]]
                assert page["summary"]["requests"] == 5
                if not page["has_more"]:
                    assert page["next_cursor"] is None
                    break
                params["cursor"] = page["next_cursor"]
            assert seen == expected, order
        bad = h.get("/api/v1/usage", params={"cursor": "not-a-cursor"}, headers=ADMIN_HEADERS)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"


def test_usage_echoes_the_resolved_window_and_explains_an_unencoded_plus(live) -> None:
    gw = live()
    with gw.http() as h:
        got = h.get("/api/v1/usage", params={"since": "7d", "user": "alice"}, headers=ADMIN_HEADERS).json()
        since = dt.datetime.fromisoformat(got["filters"]["since"])
        assert since.utcoffset() == dt.timedelta(0) and set(got["filters"]) == {"since", "user"}
        assert abs(since.timestamp() - (time.time() - 7 * 86400)) < 60
        got = h.get("/api/v1/usage?since=2026-12-07T00:00:00%2B05:00&until=1796601600", headers=ADMIN_HEADERS).json()
        assert got["filters"] == {"since": "2026-12-06T19:00:00+00:00", "until": "2026-12-07T00:00:00+00:00"}
        assert h.get("/api/v1/usage", headers=ADMIN_HEADERS).json()["filters"] == {}
        for raw in ("2026-12-07T00:00:00+05:00", "2026-12-07T00:00+0530", "2026-12-07 10:00:00.5+05:00"):
            r = h.get(f"/api/v1/usage?until={raw}", headers=ADMIN_HEADERS)  # '+' unencoded: the server reads ' '
            assert r.status_code == 400, raw
            err = r.json()["error"]
            assert err["param"] == "until" and "write '+' as %2B in a URL" in err["message"], raw
        r = h.get("/api/v1/usage?since=yesterday", headers=ADMIN_HEADERS).json()["error"]
        assert "%2B" not in r["message"] and "ISO 8601" in r["message"]


def test_feedback_says_whether_the_request_was_found(live) -> None:
    """An unknown request id is not reported as recorded. The usage store has no lookup by request id,
    so the gateway answers what it can tell: ``attached`` for a request it knows, ``pending`` otherwise
    (the score still waits for a record with that id: feedback may come first)."""
    gw = live()
    key = gw.create_key()
    rid = chat(gw, key, user="carol").id.removeprefix("chatcmpl-")
    with gw.http() as h:
        known = h.post("/api/v1/feedback", headers=ADMIN_HEADERS, json={"request_id": rid, "score": 0.7})
        assert known.status_code == 202
        assert known.json() == {"ok": True, "request_id": rid, "score": 0.7, "recorded": True, "status": "attached"}
        unknown = h.post("/api/v1/feedback", headers=ADMIN_HEADERS, json={"request_id": "nope", "score": 0.5})
        assert unknown.status_code == 202
        assert unknown.json() == {"ok": True, "request_id": "nope", "score": 0.5, "recorded": False,
                                  "status": "pending"}
    rec = wait_for(lambda: [r for r in gw.usage() if r["request_id"] == rid and r["quality_score"]])
    assert rec[0]["quality_score"] == pytest.approx(0.7)


def test_feedback_status_without_usage_store_or_statistics() -> None:
    from types import SimpleNamespace

    from modelplex.accounting.performance import PerformanceTracker
    from modelplex.accounting.records import UsageRecord
    from modelplex.server.admin import _feedback_status

    assert _feedback_status(SimpleNamespace(performance=None, recorder=None), False) == "not_recorded"
    assert _feedback_status(SimpleNamespace(performance=None, recorder=object()), False) == "pending"
    perf = PerformanceTracker()
    router = SimpleNamespace(performance=perf, recorder=None)
    assert _feedback_status(router, perf.feedback("r1", 0.5)) == "pending"
    perf.observe(UsageRecord("r1", model="fakeai/small", provider="fakeai", latency_ms=5.0))
    assert _feedback_status(router, perf.feedback("r1", 0.25)) == "attached"


def test_budgets_global_and_per_key(live) -> None:
    gw = live(budgets={"daily_usd": 100.0})
    rich = gw.create_key(name="rich")
    poor = gw.create_key(name="poor", daily_usd=0.0000001)
    chat(gw, rich)
    with pytest.raises(openai.RateLimitError) as exc:
        chat(gw, poor)
    assert exc.value.body["code"] == "budget_exceeded"
    assert exc.value.body["scope"].startswith(f"key:{poor[4:12]}:")
    # the request's worst case is larger than the key's whole budget: no wait helps, and the SDKs are told so
    assert exc.value.response.headers["x-should-retry"] == "false" and "retry-after" not in exc.value.response.headers
    with gw.http() as h:
        b = h.get("/api/v1/budgets", headers=ADMIN_HEADERS).json()
    assert b["enabled"] is True
    scopes = {s["scope"]: s for s in b["scopes"]}
    assert scopes["global:daily"]["limit_usd"] == 100.0 and scopes["global:daily"]["spent_usd"] > 0
    assert any(s.startswith(f"key:{poor[4:12]}:daily") for s in scopes)


def test_key_budget_without_a_configured_budget(live) -> None:
    gw = live()
    assert gw.gateway.router.budgets is None
    poor = gw.create_key(daily_usd=0.0)
    with pytest.raises(openai.RateLimitError) as exc:
        chat(gw, poor)
    assert exc.value.body["code"] == "budget_exceeded"
    with gw.http() as h:
        assert h.get("/api/v1/budgets", headers=ADMIN_HEADERS).json()["enabled"] is True


def test_tpm_limit(live) -> None:
    gw = live()
    key = gw.create_key(tpm=200)
    with pytest.raises(openai.RateLimitError) as exc:  # max_tokens alone is more than the minute's tokens
        chat(gw, key, max_tokens=1000)
    assert exc.value.body["code"] == "rate_limit_exceeded"
    assert chat(gw, key, max_tokens=20).choices[0].message.content


def test_a_failed_request_gives_its_tpm_estimate_back(live) -> None:
    gw = live(routing={"retry": {"max_retries_per_target": 0}, "breaker": {"failure_threshold": 10}})
    key = gw.create_key(tpm=700)
    for stream in (False, True, False):
        gw.fake.plan.fail_next(Fault("server_error", status=500), model="large")
        with pytest.raises(openai.APIStatusError) as exc:
            response = chat(gw, key, model="fakeai/large", max_tokens=300, stream=stream)
            list(response)  # a stream's error comes with its first chunk
        assert exc.value.status_code != 429
    # three failed requests' estimates (over 300 tokens each) would exceed the minute's 700: they were given back
    assert chat(gw, key, model="fakeai/small", max_tokens=300).choices[0].message.content


def test_health_ready_and_metrics(live) -> None:
    gw = live(routing={"breaker": {"failure_threshold": 1, "recovery_time": 60},
                       "retry": {"max_retries_per_target": 0}})
    key = gw.create_key()
    chat(gw, key)
    chat(gw, key, stream=True)
    gw.fake.plan.fail_next(Fault("server_error", status=500), model="large")
    with pytest.raises(openai.APIStatusError):
        chat(gw, key, model="fakeai/large")
    with gw.http() as h:
        assert h.get("/health").json()["status"] == "ok"
        ready = h.get("/health/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ready"
        lines = {p["name"]: p["line"] for p in body["providers"]}
        assert lines["anthropic"] == "ANTHROPIC_API_KEY not set: anthropic disabled"
        assert lines["fakeai"] == "fakeai: enabled (key from config)"
        assert set(body["enabled_providers"]) == {"fakeai", "fakeclaude"}
        assert body["breakers"]["model:fakeai/large"]["state"] == "open"
        assert body["state"]["ok"] is True and body["state"]["degraded"] is False
        assert body["sink"]["enabled"] is True and body["key_store"]["ok"] is True
        text = h.get("/metrics").text
    assert 'modelplex_requests_total{model="fakeai/small",provider="fakeai",route="chat",status="200"} 2.0' in text
    assert 'modelplex_tokens_total{kind="output",model="fakeai/small",provider="fakeai"}' in text
    assert 'modelplex_cost_usd_total{model="fakeai/small",provider="fakeai"}' in text
    assert 'modelplex_attempts_total{outcome="error",provider="fakeai"} 1.0' in text
    assert 'modelplex_breaker_state{key="model:fakeai/large"} 2.0' in text
    assert 'modelplex_provider_enabled{provider="anthropic"} 0.0' in text
    assert "modelplex_state_degraded 0.0" in text and "modelplex_state_pending_merge_usd 0.0" in text
    assert "modelplex_recorder_queue_depth" in text and "modelplex_recorder_written" in text
    assert 'modelplex_request_duration_seconds_bucket{le="0.005",route="chat"}' in text
    assert 'modelplex_time_to_first_token_seconds_count{route="chat"} 1.0' in text


def test_refuses_to_start_without_an_admin_key(fake) -> None:
    cfg = gateway_config(fake.base_url)
    cfg["server"] = {"key_store": "memory", "server_secret": SERVER_SECRET}
    with pytest.raises(ConfigError) as exc:
        create_app(cfg, env={})
    assert "MODELPLEX_ADMIN_KEY" in str(exc.value) and "--no-auth" in str(exc.value)
    assert create_app(cfg, env={"MODELPLEX_ADMIN_KEY": ADMIN_KEY}).state.gateway.auth.admin_configured
    assert create_app(cfg, env={}, no_auth=True).state.gateway.no_auth


def test_refuses_to_start_with_a_name_that_refers_to_nothing(fake) -> None:
    """``modelplex serve`` builds the app once before serving: a typo in a fallback fails there, naming the key."""
    cfg = gateway_config(fake.base_url, routing={"fallback_paths": {"fakeai/small": ["fakeai/larg"]}})
    with pytest.raises(ConfigError) as exc:
        create_app(cfg, env={})
    assert exc.value.key == "routing.fallback_paths.fakeai/small[0]" and "did you mean 'fakeai/large'" in str(exc.value)
    cfg = gateway_config(fake.base_url, routing={"default_strategy": "balancd"})
    with pytest.raises(ConfigError) as exc:
        create_app(cfg, env={})
    assert exc.value.key == "routing.default_strategy"


def test_no_auth_serves_without_keys(live) -> None:
    gw = live(no_auth=True, server={"admin_key": None})
    with gw.http() as h:
        r = h.post("/v1/chat/completions", json={"model": "fakeai/small", "messages": MSG})
        assert r.status_code == 200
        assert h.get("/api/v1/models/settings").status_code == 200


def test_no_secret_in_logs_or_bodies(live, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw = live()
    key = gw.create_key()
    bodies: list[str] = []
    with gw.http() as h:
        auth = {"authorization": f"Bearer {key}"}
        for payload in ({"model": "fakeai/small", "messages": MSG},
                        {"model": "fakeai/small", "messages": MSG, "stream": True},
                        {"model": "nope/nothing", "messages": MSG},
                        {"model": "fakeai/small", "messages": MSG, "api_key": PROVIDER_KEY}):
            r = h.post("/v1/chat/completions", json=payload, headers=auth)
            bodies.append(r.text + str(r.headers))
        gw.fake.plan.fail_next(Fault("auth"), times=-1)
        r = h.post("/v1/chat/completions", json={"model": "fakeai/small", "messages": MSG}, headers=auth)
        assert r.status_code == 502
        bodies.append(r.text + str(r.headers))
        gw.fake.plan.reset()
        gw.fake.behavior = Behavior(stream_chunks=5)
        gw.fake.plan.fail_next(Fault("stream_cut", after_chunks=1))
        r = h.post("/v1/chat/completions", json={"model": "fakeai/small", "messages": MSG, "stream": True},
                   headers=auth)
        bodies.append(r.text)
        r = h.post("/v1/chat/completions", json={"model": "fakeai/small", "messages": MSG},
                   headers={"authorization": f"Bearer {key[:-3]}xyz"})
        assert r.status_code == 401
        bodies.append(r.text)
        for path in ("/api/v1/keys", "/api/v1/usage", "/health/ready", "/metrics", "/api/v1/models/settings"):
            bodies.append(h.get(path, headers=ADMIN_HEADERS).text)
    wait_for(lambda: len(gw.usage()) >= 4)
    assert "upstream failure route=chat" in caplog.text  # the gateway thread's log lines are captured
    everything = "\n".join(bodies) + "\n" + caplog.text
    for secret in (PROVIDER_KEY, ADMIN_KEY, SERVER_SECRET, key, key[13:]):
        assert secret not in everything


async def test_a_replica_picks_up_a_strategy_saved_by_another(fake) -> None:
    from modelplex.server.app import refresh_settings
    from modelplex.server.settings_store import STATE_KEY
    from modelplex.state import MemoryState

    class SharedMemory(MemoryState):
        shared = True  # stands in for Redis: one state object seen by both "replicas"

    from modelplex.router import Router

    state = SharedMemory()
    cfg = gateway_config(fake.base_url)
    apps = [create_app(router=Router(cfg, env={}, state=state), env={}) for _ in range(2)]
    a, b = (app.state.gateway for app in apps)
    assert a.settings.shared
    saved = await a.settings.save("quality_optimized")
    a.router.runtime_strategy, a.settings_updated_at = "quality_optimized", saved.updated_at
    assert b.router.runtime_strategy is None
    assert await refresh_settings(b) is True
    assert b.router.runtime_strategy == "quality_optimized"
    assert await refresh_settings(b) is False  # nothing newer
    await state.set(STATE_KEY, {"strategy": "no-such-strategy", "updated_at": saved.updated_at + 10})
    assert await refresh_settings(b) is True
    assert b.router.runtime_strategy == "quality_optimized"  # an unknown name is ignored: the last good stays


def test_start_up_replays_the_usage_journal_before_seeding_budgets(live, tmp_path) -> None:
    """Spend spilled to the journal before a restart (the store was down) is in the budgets the gateway
    starts with: the journal is replayed before the open periods' spend is read back."""
    from modelplex.accounting.journal import Journal
    from modelplex.accounting.records import UsageRecord

    db = tmp_path / "usage.db"
    journal = Journal(f"{db}.journal.jsonl")
    journal.append([UsageRecord(f"spilled-{i}", ts=time.time(), model="fakeai/large", provider="fakeai",
                                cost_usd=0.5, latency_ms=1.0) for i in range(3)])
    journal.close()
    gw = live(accounting={"sink": "sqlite", "path": str(db)}, budgets={"daily_usd": 10.0})
    with gw.http() as c:
        scopes = c.get("/api/v1/budgets", headers=ADMIN_HEADERS).json()["scopes"]
    daily = next(s for s in scopes if s["kind"] == "global" and s["window"] == "daily")
    assert daily["spent_usd"] == pytest.approx(1.5)


def test_ready_is_degraded_while_the_recorder_cannot_write(live) -> None:
    gw = live()
    recorder = gw.gateway.router.recorder
    with gw.http() as c:
        assert c.get("/health/ready").json()["status"] == "ready"
        recorder._sink_ok = False  # what a failed write leaves: the store may still answer its health check
        recorder._next_retry = float("inf")  # and no retry comes before the check below
        body = c.get("/health/ready").json()
    assert body["status"] == "degraded" and body["sink"]["recorder"]["sink_ok"] is False
