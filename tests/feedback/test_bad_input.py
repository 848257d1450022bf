"""Inputs the API fuzzer found answered with a 500: each is now a clear 4xx (or, for
the empty-range aggregate, a correct answer). Run on PostgreSQL too: NUL bytes only
break there."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint, Response, Survey
from services.feedback.service import answers
from services.feedback.service.errors import InvalidAnswers
from services.feedback.service.reports import months_between
from shared.db import Database
from tests.feedback.conftest import nps_survey, running
from tests.feedback.support import count, create_survey
from tests.helpers import auth_headers

pytestmark = pytest.mark.db

STAFF = auth_headers(
    "feedback:admin", "feedback:write", "feedback:read", "reports:read", subject="agent-1"
)
NO_RESPONSES = {
    "group": "all",
    "responses": 0,
    "score": None,
    "ci_low": None,
    "ci_high": None,
    "ci_half_width": None,
}


async def call(
    settings: FeedbackSettings, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, str]:
    """Status and body text; a JSON body is sent as written, escapes and all."""
    headers = {**STAFF, "content-type": "application/json"}
    content = None if body is None else json.dumps(body).encode()
    async with running(settings) as client:
        got = await client.request(method, path, content=content, headers=headers)
    return got.status_code, got.text


@pytest.mark.parametrize("kind", ["nps", "csat"])
async def test_an_overall_score_over_a_range_without_answers_is_empty_not_an_error(
    settings: FeedbackSettings, db: Database, kind: str
) -> None:
    """An ungrouped SUM over no rows is NULL; the counts read it as 0."""
    status, text = await call(settings, "GET", f"/v1/analytics/{kind}?until=2000-01-01T00:00:00Z")
    assert status == 200, text
    assert json.loads(text) == [NO_RESPONSES]
    complaints = await call(settings, "GET", "/v1/analytics/complaints?until=2000-01-01T00:00:00Z")
    assert json.loads(complaints[1])[0]["complaints"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/v1/analytics/nps?since=0001-01-01T00:00:00%2B01:00", None, "since"),
        ("GET", "/v1/analytics/complaints?until=9999-12-31T23:59:59-01:00", None, "until"),
        ("GET", "/v1/analytics/follow-ups?since=0001-01-01T00:00:00%2B05:00", None, "since"),
        ("GET", "/v1/analytics/verbatims?until=9999-12-31T22:00:00-03:00", None, "until"),
        (
            "POST",
            "/v1/surveys",
            {**nps_survey("edge").model_dump(mode="json"), "active_from": "0001-01-01T00:00+01:00"},
            "active_from",
        ),
    ],
)
async def test_a_time_that_leaves_the_calendar_in_utc_is_422(
    settings: FeedbackSettings,
    db: Database,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    status, text = await call(settings, method, path, body)
    assert status == 422, text
    [error] = json.loads(text)["detail"]
    assert error["loc"][-1] == field
    assert "out of range: in UTC it must fall within years 1 to 9999" in error["msg"]
    assert await count(db, Survey) == 0


SURVEY = nps_survey("nul").model_dump(mode="json")
COMPLAINT = {"customer_id": "c-1", "category": "delivery", "severity": "high", "channel": "web"}
STAFF_ANSWER = {"customer_id": "c-1", "survey_id": "after-buy", "answers": {"recommend": 9}}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/v1/analytics/nps?store_id=s%001", None, "store_id"),
        ("GET", "/v1/analytics/verbatims?contains=late%00", None, "contains"),
        ("GET", "/v1/complaints?customer_id=c%00", None, "customer_id"),
        ("GET", "/v1/complaints/case%00", None, "case_id"),
        ("GET", "/v1/surveys/after-buy%00", None, "survey_id"),
        ("POST", "/v1/surveys", {**SURVEY, "name": "How\x00 did we do?"}, "name"),
        ("POST", "/v1/complaints", {**COMPLAINT, "summary": "late\x00"}, "summary"),
        ("POST", "/v1/responses/staff", {**STAFF_ANSWER, "store_id": "s\x00"}, "store_id"),
        (
            "POST",
            "/v1/responses/staff",
            {**STAFF_ANSWER, "answers": {"recommend": 9, "why": "slow\x00"}},
            "why",
        ),
        ("POST", "/v1/responses", {"token": "abc\x00def.ghi", "answers": {"a": 1}}, "token"),
    ],
)
async def test_text_with_a_nul_byte_is_422_on_every_backend(
    settings: FeedbackSettings,
    db: Database,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    await create_survey(db)
    status, text = await call(settings, method, path, body)
    assert status == 422, text
    errors = json.loads(text)["detail"]
    assert any(
        field in e["loc"] and "must not contain NUL (\\u0000) characters" in e["msg"]
        for e in errors
    ), errors
    assert (await count(db, Complaint), await count(db, Response), await count(db, Survey)) == (
        0,
        0,
        1,
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/complaints", {**COMPLAINT, "summary": "\ud800"}, "summary"),
        ("/v1/complaints", {**COMPLAINT, "customer_id": "\udfff"}, "customer_id"),
        ("/v1/surveys", {**SURVEY, "name": "x\ud83d"}, "name"),
    ],
)
async def test_an_unpaired_surrogate_is_422_and_the_answer_is_readable_json(
    settings: FeedbackSettings, db: Database, path: str, body: dict[str, Any], field: str
) -> None:
    """``"\\ud800"`` is valid JSON but not UTF-8: the 422 that echoes it must still render."""
    status, text = await call(settings, "POST", path, body)
    assert status == 422, text
    [error] = json.loads(text)["detail"]
    assert error["loc"][-1] == field
    assert error["input"] == body[field]
    assert await count(db, Complaint) == 0


async def test_a_report_ending_on_the_last_calendar_day_is_answered(
    settings: FeedbackSettings, db: Database
) -> None:
    status, text = await call(settings, "GET", "/v1/reports/feedback?from=9990-01-01&to=9999-12-31")
    assert status == 200, text
    months = [m["month"] for m in json.loads(text)["months"]]
    assert (len(months), months[0], months[-1]) == (120, "9990-01", "9999-12")
    too_long = await call(settings, "GET", "/v1/reports/feedback?from=9989-12-01&to=9999-12-31")
    assert too_long[0] == 422
    assert "the range may span at most 10 years" in too_long[1]


def test_months_are_counted_up_to_the_last_representable_day() -> None:
    assert months_between(date(9999, 11, 30), date.max) == ["9999-11", "9999-12"]
    assert months_between(date(2026, 1, 31), date(2026, 3, 1)) == ["2026-01", "2026-02"]
    assert months_between(date(2026, 1, 31), date(2026, 3, 2)) == ["2026-01", "2026-02", "2026-03"]


def test_a_nul_byte_in_a_text_answer_from_any_channel_is_refused() -> None:
    """Kafka answers skip the request models; scoring refuses what PostgreSQL cannot store."""
    questions = [q.model_dump() for q in nps_survey().questions]
    with pytest.raises(InvalidAnswers, match=r"'why' takes text without NUL"):
        answers.score(questions, {"recommend": 9, "why": "slow\x00"})
