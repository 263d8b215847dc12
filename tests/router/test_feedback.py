"""``Router.feedback`` validates its arguments and raises the library's typed ``InvalidRequestError``
(naming the argument) before anything is recorded; valid scores reach the performance stats and the
adaptive chooser."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest

from modelplex.errors import InvalidRequestError

MESSAGES = [{"role": "user", "content": "hi"}]


def _arm(router: Any, model: str) -> dict[str, Any]:
    return next(a for a in router.adaptive.snapshot()["arms"] if a["model"] == model)


def _quality(router: Any, model: str) -> Any:
    rows = router.performance.stats(by=("model",))
    return next(r for r in rows if r["model"] == model)["avg_quality"]


@pytest.mark.parametrize("score", [None, "0.5", b"1", True, False, math.nan, math.inf, -math.inf, -0.01, 1.01,
                                   2, [0.5], {"score": 1}], ids=repr)
async def test_feedback_rejects_a_bad_score_with_a_typed_error(make_router, score: Any) -> None:
    router = make_router()
    resp = await router.acomplete(MESSAGES, model="alpha/small")
    with pytest.raises(InvalidRequestError) as exc:
        router.feedback(resp.request_id, score)
    assert exc.value.param == "score" and "'score' must be a number from 0 to 1" in str(exc.value)
    assert isinstance(exc.value, ValueError)  # still catchable as before
    assert _arm(router, "alpha/small")["feedback_n"] == 0 and _quality(router, "alpha/small") is None


@pytest.mark.parametrize("comment", [1, b"bytes", ["a"], {"text": "x"}], ids=repr)
async def test_feedback_rejects_a_comment_that_is_not_a_string(make_router, comment: Any) -> None:
    router = make_router()
    resp = await router.acomplete(MESSAGES, model="alpha/small")
    with pytest.raises(InvalidRequestError) as exc:
        router.feedback(resp.request_id, 0.5, comment)
    assert exc.value.param == "comment" and "'comment' must be None or a string" in str(exc.value)
    assert _arm(router, "alpha/small")["feedback_n"] == 0 and _quality(router, "alpha/small") is None


@pytest.mark.parametrize("request_id", [None, "", 42], ids=repr)
async def test_feedback_rejects_a_request_id_that_is_not_a_string(make_router, request_id: Any) -> None:
    router = make_router()
    with pytest.raises(InvalidRequestError) as exc:
        router.feedback(request_id, 0.5)
    assert exc.value.param == "request_id"


@pytest.mark.parametrize("score, expected", [(0, 0.0), (1, 1.0), (0.25, 0.25), (Fraction(1, 2), 0.5)], ids=repr)
async def test_feedback_accepts_real_numbers_in_range(make_router, score: Any, expected: float) -> None:
    router = make_router()
    resp = await router.acomplete(MESSAGES, model="alpha/small")
    router.feedback(resp.request_id, score, "fine")
    router.feedback(resp.request_id, score, None)
    assert _arm(router, "alpha/small")["feedback_n"] == 2  # both received; the second replaced the first
    assert _quality(router, "alpha/small") == pytest.approx(expected)
