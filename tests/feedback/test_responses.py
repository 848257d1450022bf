"""Answers over REST: the token is the credential; repeats update, never double count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint, Response
from services.feedback.schemas import ComplaintTransition, SurveyUpdate
from services.feedback.service import complaints as complaints_service
from services.feedback.service import responses as responses_service
from services.feedback.service import surveys
from shared.db import Database
from shared.events.feedback import ComplaintOpened, ComplaintResolved, ResponseRecorded
from shared.events.interactions import FeedbackSubmitted, FeedbackSubmittedData
from tests.feedback.conftest import nps_survey, running
from tests.feedback.support import (
    complaints,
    count,
    create_survey,
    invite,
    published,
    responses,
    token_of,
)
from tests.helpers import LONGEST_SUBJECT, auth_headers

pytestmark = pytest.mark.db


async def fresh_token(db: Database, settings: FeedbackSettings, customer: str = "c-1") -> str:
    invitation = await invite(db, settings, customer, datetime.now(UTC))
    assert invitation is not None
    return token_of(invitation)


async def test_a_token_answer_is_stored_and_a_second_answer_updates_it(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    token = await fresh_token(db, settings)
    async with running(settings) as client:
        first = await client.post(
            "/v1/responses", json={"token": token, "answers": {"recommend": 8}}
        )
        again = await client.post(
            "/v1/responses", json={"token": token, "answers": {"recommend": 8}}
        )
        changed = await client.post(
            "/v1/responses",
            json={"token": token, "answers": {"recommend": 10, "liked": ["staff"]}},
        )
    assert (first.status_code, again.status_code, changed.status_code) == (201, 201, 201)
    assert first.json()["id"] == changed.json()["id"]
    [stored] = await responses(db)
    assert (stored.customer_id, stored.nps_score, stored.category, stored.source) == (
        "c-1",
        10,
        "promoter",
        "token",
    )
    assert stored.answers == {"recommend": 10, "liked": ["staff"]}
    recorded = await published(db, ResponseRecorded)
    assert [(e.data.score, e.data.category) for e in recorded] == [
        (8, "passive"),
        (10, "promoter"),
    ]


def tampered(token: str) -> str:
    payload, signature = token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    return f"{payload}.{flipped}{signature[1:]}"


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("tampered", 403, "invalid_token"),
        ("other_customer", 403, "token_for_another_customer"),
        ("expired", 410, "token_expired"),
        ("bad_answer", 422, "invalid_answers"),
        ("unknown_question", 422, "invalid_answers"),
    ],
)
async def test_a_bad_token_or_answer_is_refused_and_nothing_is_stored(
    db: Database, settings: FeedbackSettings, case: str, status: int, code: str
) -> None:
    await create_survey(db)
    when = datetime.now(UTC) - timedelta(days=30 if case == "expired" else 0)
    invitation = await invite(db, settings, "c-1", when)
    assert invitation is not None
    token = token_of(invitation)
    body: dict[str, object] = {"token": token, "answers": {"recommend": 3}}
    if case == "tampered":
        body["token"] = tampered(token)
    elif case == "other_customer":
        body["customer_id"] = "c-2"
    elif case == "bad_answer":
        body["answers"] = {"recommend": 11}
    elif case == "unknown_question":
        body["answers"] = {"recommend": 5, "favourite_colour": "red"}
    async with running(settings) as client:
        response = await client.post("/v1/responses", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await count(db, Response) == 0
    assert await count(db, Complaint) == 0
    assert await published(db, ResponseRecorded) == []


async def test_an_answer_keeps_the_version_it_was_invited_to(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    token = await fresh_token(db, settings)
    v2 = nps_survey().model_dump(include={"questions", "languages"})
    v2["questions"] = v2["questions"][:1]
    async with db.unit_of_work() as session:
        changed = await surveys.update_survey(
            session, survey_id="after-buy", change=SurveyUpdate.model_validate(v2)
        )
    assert changed.version == 2
    async with running(settings) as client:
        response = await client.post(
            "/v1/responses", json={"token": token, "answers": {"recommend": 9, "why": "quick"}}
        )
    assert response.status_code == 201, response.text
    assert response.json()["survey_version"] == 1


async def test_staff_with_the_longest_subject_are_recorded_whole(
    db: Database, settings: FeedbackSettings
) -> None:
    """An answer entered and a case opened under a 255-character subject (OpenID Connect's
    limit) are stored with it whole, on PostgreSQL too."""
    await create_survey(db)
    staff = auth_headers("feedback:write", "feedback:read", subject=LONGEST_SUBJECT, staff=True)
    answer = {
        "customer_id": "c-3",
        "survey_id": "after-buy",
        "answers": {"recommend": 9},
        "channel": "phone",
        "idempotency_key": "call-1",
    }
    case = {"customer_id": "c-3", "category": "delivery", "severity": "high", "channel": "web"}
    async with running(settings) as client:
        entered = await client.post("/v1/responses/staff", json=answer, headers=staff)
        opened = await client.post("/v1/complaints", json=case, headers=staff)
    assert entered.status_code == 201, entered.text
    assert opened.status_code == 201, opened.text
    [stored] = await responses(db)
    [complaint] = await complaints(db)
    assert stored.submitted_by == complaint.opened_by == LONGEST_SUBJECT


async def test_staff_answers_need_the_write_scope_and_record_who_entered_them(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    body = {
        "customer_id": "c-9",
        "survey_id": "after-buy",
        "answers": {"recommend": 2, "why": "rude staff"},
        "channel": "phone",
        "idempotency_key": "call-77",
    }
    async with running(settings) as client:
        anonymous = await client.post("/v1/responses/staff", json=body)
        reader = await client.post(
            "/v1/responses/staff", json=body, headers=auth_headers("feedback:read")
        )
        headers = auth_headers("feedback:write", subject="agent-7", staff=True)
        first = await client.post("/v1/responses/staff", json=body, headers=headers)
        repeat = await client.post("/v1/responses/staff", json=body, headers=headers)
    assert (anonymous.status_code, reader.status_code) == (401, 403)
    assert (first.status_code, repeat.status_code) == (201, 201)
    [stored] = await responses(db)
    assert (stored.submitted_by, stored.source, stored.category) == (
        "agent-7",
        "staff",
        "detractor",
    )
    [opened] = await published(db, ComplaintOpened)
    assert (opened.subject, opened.data.category, opened.data.summary) == (
        "c-9",
        "detractor",
        "rude staff",
    )
    assert opened.data.response_id == stored.id


async def test_resolving_a_case_opened_by_an_answer_names_the_answer(
    db: Database, settings: FeedbackSettings
) -> None:
    """``complaint.resolved`` carries the response as ``complaint.opened`` did, so
    engagement can end that incident's apology and alert and no other case's."""
    await create_survey(db)
    body = {
        "customer_id": "c-9",
        "survey_id": "after-buy",
        "answers": {"recommend": 1},
        "channel": "phone",
        "idempotency_key": "call-78",
    }
    headers = auth_headers("feedback:write", subject="agent-7", staff=True)
    async with running(settings) as client:
        assert (await client.post("/v1/responses/staff", json=body, headers=headers)).is_success
    [opened] = await published(db, ComplaintOpened)
    change = ComplaintTransition.model_validate({"status": "resolved", "note": "called back"})
    async with db.unit_of_work() as session:
        await complaints_service.change_status(
            session,
            case_id=opened.data.case_id,
            change=change,
            at=datetime.now(UTC),
            settings=settings,
        )
    [resolved] = await published(db, ComplaintResolved)
    assert (resolved.data.case_id, resolved.data.response_id) == (
        opened.data.case_id,
        opened.data.response_id,
    )
    assert resolved.data.response_id is not None


async def test_a_late_event_older_than_the_stored_answer_does_not_overwrite_it(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db)
    newer = datetime.now(UTC)
    invitation = await invite(db, settings, "c-1", newer - timedelta(hours=2))
    assert invitation is not None
    for minutes, score in ((0, 9), (-30, 4)):  # the older answer arrives second
        event = FeedbackSubmitted.create(
            subject="c-1",
            source="/call-centre",
            time=newer + timedelta(minutes=minutes),
            data=FeedbackSubmittedData(
                survey_id="after-buy", channel="phone", answers={"recommend": score}
            ),
        )
        async with db.unit_of_work() as session:
            await responses_service.record_submitted(session, event=event, settings=settings)
    [stored] = await responses(db)
    assert (stored.nps_score, stored.invitation_id) == (9, invitation.data.invitation_id)
    assert await count(db, Complaint) == 0


async def test_staff_answers_to_an_unknown_survey_are_404(settings: FeedbackSettings) -> None:
    body = {"customer_id": "c-9", "survey_id": "nope", "answers": {"recommend": 9}}
    async with running(settings) as client:
        response = await client.post(
            "/v1/responses/staff", json=body, headers=auth_headers("feedback:write")
        )
    assert (response.status_code, response.json()["error"]["code"]) == (404, "survey_not_found")


async def test_surveys_over_the_api_new_questions_make_a_new_version(
    settings: FeedbackSettings,
) -> None:
    admin = auth_headers("feedback:admin", "feedback:read")
    survey = nps_survey().model_dump(mode="json")
    change = {"questions": survey["questions"][:1], "languages": ["en"]}
    async with running(settings) as client:
        created = await client.post("/v1/surveys", json=survey, headers=admin)
        duplicate = await client.post("/v1/surveys", json=survey, headers=admin)
        reader = await client.put("/v1/surveys/after-buy", json=change, headers=auth_headers())
        changed = await client.put("/v1/surveys/after-buy", json=change, headers=admin)
        missing = await client.put("/v1/surveys/nope", json=change, headers=admin)
        fetched = await client.get("/v1/surveys/after-buy", headers=admin)
    assert (created.status_code, duplicate.status_code, reader.status_code) == (201, 409, 403)
    assert (changed.status_code, missing.status_code) == (200, 404)
    assert (fetched.json()["version"], len(fetched.json()["questions"])) == (2, 1)
