"""Complaint cases: status changes, the SLA clock on durable timers, the follow-up."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.consumers import timer_handlers
from services.feedback.models import Complaint
from services.feedback.schemas import ComplaintCreate, ComplaintTransition
from services.feedback.service import complaints
from shared.db import Database
from shared.events.feedback import (
    ComplaintAcknowledged,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintSlaBreached,
    SurveyInvitationCreated,
)
from shared.timers import Scheduler
from tests.feedback.conftest import T0, running
from tests.feedback.support import create_survey, published
from tests.helpers import auth_headers

pytestmark = pytest.mark.db


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def scheduler(db: Database, settings: FeedbackSettings, clock: FakeClock) -> Scheduler:
    return Scheduler(db=db, handlers=timer_handlers(settings), service="feedback", clock=clock)


async def open_case(db: Database, settings: FeedbackSettings, severity: str = "high") -> str:
    body = ComplaintCreate.model_validate(
        {"customer_id": "c-1", "category": "delivery", "severity": severity, "channel": "chat"}
    )
    async with db.unit_of_work() as session:
        case = await complaints.open_complaint(session, complaint=body, at=T0, settings=settings)
    return case.id


async def move(
    db: Database, settings: FeedbackSettings, case_id: str, status: str, at: datetime
) -> None:
    change = ComplaintTransition.model_validate({"status": status, "note": "refunded"})
    async with db.unit_of_work() as session:
        await complaints.change_status(
            session, case_id=case_id, change=change, at=at, settings=settings
        )


async def breaches(db: Database) -> list[tuple[str, datetime]]:
    return [(e.data.deadline, e.time) for e in await published(db, ComplaintSlaBreached)]


async def test_a_missed_first_response_breaches_once_on_time(
    db: Database, settings: FeedbackSettings
) -> None:
    case_id = await open_case(db, settings)  # high: first response 4 h, resolution 24 h
    clock = FakeClock()
    sched = scheduler(db, settings, clock)
    clock.now = T0 + timedelta(hours=4) - timedelta(seconds=1)
    await sched.fire_due()
    assert await breaches(db) == []
    clock.now = T0 + timedelta(hours=4)
    await sched.fire_due()
    clock.now = T0 + timedelta(hours=5)
    await sched.fire_due()
    assert await breaches(db) == [("first_response", T0 + timedelta(hours=4))]
    async with db.unit_of_work() as session:
        case = await session.get(Complaint, case_id)
    assert case is not None
    assert (case.first_response_breached, case.resolution_breached) == (True, False)


async def test_a_breach_still_fires_after_a_restart(
    db: Database, settings: FeedbackSettings, feedback_url: str
) -> None:
    await open_case(db, settings)
    clock = FakeClock()
    await scheduler(db, settings, clock).fire_due()  # the first process sees nothing due
    await db.dispose()
    restarted = Database(feedback_url)  # a new process: new engine, new scheduler
    try:
        clock.now = T0 + timedelta(days=2)
        sched = scheduler(restarted, settings, clock)
        await sched.fire_due()
        await sched.fire_due()
        assert sorted(await breaches(restarted)) == [
            ("first_response", T0 + timedelta(hours=4)),
            ("resolution", T0 + timedelta(hours=24)),
        ]
    finally:
        await restarted.dispose()


async def test_a_deadline_met_in_time_never_breaches(
    db: Database, settings: FeedbackSettings
) -> None:
    case_id = await open_case(db, settings)
    await move(db, settings, case_id, "acknowledged", T0 + timedelta(hours=1))
    await move(db, settings, case_id, "resolved", T0 + timedelta(hours=2))
    clock = FakeClock()
    clock.now = T0 + timedelta(days=3)
    await scheduler(db, settings, clock).fire_due()
    assert await breaches(db) == []
    [resolved] = await published(db, ComplaintResolved)
    assert (resolved.data.case_id, resolved.data.resolution) == (case_id, "refunded")


async def test_resolution_schedules_a_follow_up_survey(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db, "won-back", audience="follow_up")
    case_id = await open_case(db, settings)
    resolved_at = T0 + timedelta(hours=2)
    await move(db, settings, case_id, "resolved", resolved_at)
    clock = FakeClock()
    due = resolved_at + timedelta(hours=settings.follow_up_delay_hours)
    clock.now = due - timedelta(seconds=1)
    sched = scheduler(db, settings, clock)
    await sched.fire_due()
    assert await published(db, SurveyInvitationCreated) == []
    clock.now = due
    await sched.fire_due()
    [follow_up] = await published(db, SurveyInvitationCreated)
    assert (follow_up.subject, follow_up.data.reason, follow_up.data.case_id) == (
        "c-1",
        "follow_up",
        case_id,
    )
    assert (follow_up.data.survey_id, follow_up.time) == ("won-back", due)


async def test_reopening_cancels_the_follow_up_and_restarts_the_resolution_clock(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db, "won-back", audience="follow_up")
    case_id = await open_case(db, settings)
    await move(db, settings, case_id, "resolved", T0 + timedelta(hours=1))
    reopened_at = T0 + timedelta(hours=2)
    await move(db, settings, case_id, "reopened", reopened_at)
    clock = FakeClock()
    clock.now = reopened_at + timedelta(hours=24)
    await scheduler(db, settings, clock).fire_due()
    assert await published(db, SurveyInvitationCreated) == []
    assert await breaches(db) == [("resolution", reopened_at + timedelta(hours=24))]


async def test_acknowledging_and_reopening_are_announced(
    db: Database, settings: FeedbackSettings
) -> None:
    case_id = await open_case(db, settings)  # high: first response 4 h, resolution 24 h
    await move(db, settings, case_id, "acknowledged", T0 + timedelta(hours=5))  # 1 h late
    await move(db, settings, case_id, "resolved", T0 + timedelta(hours=6))
    reopened_at = T0 + timedelta(hours=8)
    await move(db, settings, case_id, "reopened", reopened_at)
    await move(db, settings, case_id, "acknowledged", T0 + timedelta(hours=9))
    acks = await published(db, ComplaintAcknowledged)
    assert [(a.subject, a.time, a.data.case_id) for a in acks] == [
        ("c-1", T0 + timedelta(hours=5), case_id),
        ("c-1", T0 + timedelta(hours=9), case_id),
    ]
    # within_sla is about the case's first response, which came an hour late
    assert [(a.data.first_response_due, a.data.within_sla) for a in acks] == [
        (T0 + timedelta(hours=4), False)
    ] * 2
    assert acks[0].id != acks[1].id
    [reopened] = await published(db, ComplaintReopened)
    assert (reopened.time, reopened.data.reopen_count, reopened.data.note) == (
        reopened_at,
        1,
        "refunded",
    )
    assert reopened.data.resolution_due == reopened_at + timedelta(hours=24)


async def test_an_acknowledgement_in_time_is_within_the_sla(
    db: Database, settings: FeedbackSettings
) -> None:
    case_id = await open_case(db, settings, severity="critical")  # first response 1 h
    await move(db, settings, case_id, "acknowledged", T0 + timedelta(minutes=59))
    [ack] = await published(db, ComplaintAcknowledged)
    assert (ack.data.within_sla, ack.data.note) == (True, "refunded")


async def test_status_changes_over_the_api_and_invalid_ones_are_409(
    settings: FeedbackSettings,
) -> None:
    writer = auth_headers("feedback:write", "feedback:read", subject="agent-1")
    body = {"customer_id": "c-5", "category": "billing", "severity": "low", "channel": "email"}
    async with running(settings) as client:
        denied = await client.post(
            "/v1/complaints", json=body, headers=auth_headers("feedback:read")
        )
        created = await client.post("/v1/complaints", json=body, headers=writer)
        case = created.json()
        path = f"/v1/complaints/{case['id']}/status"
        reopen_open = await client.post(path, json={"status": "reopened"}, headers=writer)
        acked = await client.post(path, json={"status": "acknowledged"}, headers=writer)
        acked_again = await client.post(path, json={"status": "acknowledged"}, headers=writer)
        resolved = await client.post(
            path, json={"status": "resolved", "note": "fixed"}, headers=writer
        )
        listed = await client.get("/v1/complaints?status=resolved", headers=writer)
        missing = await client.post(
            "/v1/complaints/nope/status", json={"status": "resolved"}, headers=writer
        )
    assert (denied.status_code, created.status_code) == (403, 201)
    assert case["status"] == "open"
    hours = (
        datetime.fromisoformat(case["resolution_due"]) - datetime.fromisoformat(case["opened_at"])
    ) / timedelta(hours=1)
    assert hours == settings.sla_resolution_hours["low"]
    assert (reopen_open.status_code, acked_again.status_code) == (409, 409)
    assert (
        "the complaint is open and cannot become reopened" in reopen_open.json()["error"]["message"]
    )
    assert acked.json()["status"] == "acknowledged"
    assert (resolved.json()["status"], resolved.json()["resolution"]) == ("resolved", "fixed")
    assert [c["id"] for c in listed.json()] == [case["id"]]
    assert missing.status_code == 404


def test_sla_settings_must_cover_every_severity() -> None:
    with pytest.raises(ValueError, match="sla_resolution_hours needs positive hours"):
        FeedbackSettings(sla_resolution_hours={"high": 4})
    hours = {"low": 9, "medium": 5, "high": 2, "critical": 1}
    assert FeedbackSettings(sla_first_response_hours=hours).sla_first_response_hours == hours
