"""The admin API against its own OpenAPI document: schemathesis generates requests for every
operation (with the admin key) against a live gateway, and no answer may be a server error; answers
must also match the documented statuses, content types and schemas."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from gateway_testkit import ADMIN_HEADERS
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelplex.server.openapi import admin_spec

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
OPERATIONS = sorted((path, method) for path, ops in admin_spec()["paths"].items() for method in ops)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_admin_api_never_answers_with_a_server_error(live, path: str, method: str, mode: GenerationMode) -> None:
    gw = live(budgets={"daily_usd": 50.0})
    gw.create_key(name="existing", daily_usd=5.0)
    with gw.http() as h:  # some usage, so the read endpoints have content
        key = gw.create_key(name="user")
        h.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
               json={"model": "fakeai/small", "messages": [{"role": "user", "content": "hi"}], "user": "u1"})
    schema = schemathesis.openapi.from_url(f"{gw.url}/api/v1/openapi.json")
    operation = schema[path][method]
    checks = CHECKS if mode is GenerationMode.POSITIVE else NEGATIVE_CHECKS
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        response = case.call_and_validate(headers=ADMIN_HEADERS, checks=checks)
        seen.append(response.status_code)

    run()
    assert seen and all(s < 500 for s in seen)
    if mode is GenerationMode.POSITIVE and method == "get" and "{" not in path:
        assert 200 in seen  # valid reads succeed


def test_spec_covers_every_admin_route(live) -> None:
    gw = live()
    spec = admin_spec()
    assert spec["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = set()
    for route in gw.app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
            served |= {(path, m) for m in route.methods if m != "HEAD"}
    assert documented == served
    with httpx.Client(base_url=gw.url) as h:
        assert h.get("/api/v1/openapi.json").json() == spec  # served without the admin key
        for path, method in sorted(documented):
            url = path.replace("{key_id}", "abcdefgh")
            assert h.request(method, url).status_code == 401, (method, path)
    assert ADMIN_HEADERS


def test_feedback_answer_matches_its_schema_exactly(live) -> None:
    """``POST /api/v1/feedback`` answers ``{ok, request_id, score, recorded, status}``; the documented
    ``FeedbackAccepted`` names every field (no more, no fewer) and ``status``'s three values."""
    import jsonschema_rs

    from modelplex.server.admin import _feedback_status

    schema = admin_spec()["components"]["schemas"]["FeedbackAccepted"]
    assert set(schema["required"]) == set(schema["properties"]) == {"ok", "request_id", "score", "recorded", "status"}
    assert schema["properties"]["status"]["enum"] == ["attached", "pending", "not_recorded"]
    validator = jsonschema_rs.Draft4Validator(schema)
    gw = live()
    key = gw.create_key(name="user")
    with gw.http() as h:
        r = h.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                   json={"model": "fakeai/small", "messages": [{"role": "user", "content": "hi"}]})
        rid = r.headers["x-modelplex-request-id"]
        answers = [h.post("/api/v1/feedback", headers=ADMIN_HEADERS, json={"request_id": i, "score": 0.5})
                   for i in (rid, "never-seen")]
    assert [a.status_code for a in answers] == [202, 202]
    assert [a.json()["status"] for a in answers] == ["attached", "pending"]
    for a in answers:
        assert validator.is_valid(a.json()), a.json()
    # the third status, from a router with neither a usage store nor performance statistics
    from types import SimpleNamespace

    status = _feedback_status(SimpleNamespace(performance=None, recorder=None), False)
    assert validator.is_valid({"ok": True, "request_id": "r1", "score": 0.5, "recorded": False, "status": status})
    assert not validator.is_valid({"ok": True, "request_id": "r1", "score": 0.5, "recorded": False})
    assert not validator.is_valid({"ok": True, "request_id": "r1", "score": 0.5, "recorded": False,
                                   "status": "queued"})
