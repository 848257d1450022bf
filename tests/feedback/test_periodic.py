"""Periodic surveys for a segment: a durable timer invites rested members each period."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.consumers import timer_handlers
from services.feedback.service import periodic, privacy, surveys
from shared.db import Database
from shared.events.feedback import SurveyInvitationCreated
from shared.events.profile import (
    CustomerMerged,
    CustomerMergedData,
    SegmentChangeData,
    SegmentEntered,
    SegmentExited,
)
from shared.timers import Scheduler
from tests.feedback.conftest import T0, nps_survey
from tests.feedback.support import invite, published

pytestmark = pytest.mark.db


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def join(db: Database, *customers: str, segment: str = "vip") -> None:
    async with db.unit_of_work() as session:
        for customer in customers:
            event = SegmentEntered.create(
                subject=customer, source="keepwell/profile", data=SegmentChangeData(segment=segment)
            )
            await periodic.enter_segment(session, event=event)


async def leave(db: Database, customer: str, segment: str = "vip") -> None:
    event = SegmentExited.create(
        subject=customer, source="keepwell/profile", data=SegmentChangeData(segment=segment)
    )
    async with db.unit_of_work() as session:
        await periodic.exit_segment(session, event=event)


async def create_periodic(db: Database, starts: datetime) -> None:
    survey = nps_survey("quarterly", "periodic", segment="vip", period_days=90, active_from=starts)
    async with db.unit_of_work() as session:
        await surveys.create_survey(session, survey=survey, now=T0)


async def invited_at(db: Database) -> list[tuple[str, datetime]]:
    found = await published(db, SurveyInvitationCreated)
    return sorted((e.subject, e.time) for e in found if e.data.reason == "periodic")


async def test_each_period_invites_the_segment_members_who_are_rested(
    db: Database, settings: FeedbackSettings
) -> None:
    await join(db, "c-1", "c-2", "c-3")
    await join(db, "c-9", segment="other")
    starts = T0 + timedelta(days=1)
    await create_periodic(db, starts)
    assert await invite(db, settings, "c-2", T0) is None  # periodic is not after-purchase
    clock = FakeClock()
    sched = Scheduler(db=db, handlers=timer_handlers(settings), service="feedback", clock=clock)
    clock.now = starts - timedelta(seconds=1)
    await sched.fire_due()
    assert await invited_at(db) == []
    clock.now = starts
    await sched.fire_due()
    assert await invited_at(db) == [("c-1", starts), ("c-2", starts), ("c-3", starts)]
    await leave(db, "c-3")
    await join(db, "c-4")
    clock.now = starts + timedelta(days=90)
    await sched.fire_due()
    second = starts + timedelta(days=90)
    assert [e for e in await invited_at(db) if e[1] == second] == [
        ("c-1", second),
        ("c-2", second),
        ("c-4", second),
    ]


async def test_members_invited_recently_by_another_survey_are_skipped(
    db: Database, settings: FeedbackSettings
) -> None:
    await join(db, "c-1", "c-2")
    async with db.unit_of_work() as session:
        await surveys.create_survey(session, survey=nps_survey(), now=T0)
    assert await invite(db, settings, "c-1", T0) is not None  # after-purchase, same day
    await create_periodic(db, T0 + timedelta(days=1))
    clock = FakeClock()
    clock.now = T0 + timedelta(days=1)
    sched = Scheduler(db=db, handlers=timer_handlers(settings), service="feedback", clock=clock)
    await sched.fire_due()
    assert [c for c, _ in await invited_at(db)] == ["c-2"]


async def test_a_merge_moves_segment_membership_to_the_survivor(
    db: Database, settings: FeedbackSettings
) -> None:
    await join(db, "c-old", "c-new")
    merged = CustomerMerged.create(
        subject="c-new",
        source="keepwell/profile",
        data=CustomerMergedData(merge_id="m", merged_id="c-old"),
    )
    async with db.unit_of_work() as session:
        await privacy.merge_customer(session, event=merged)
    await create_periodic(db, T0)
    clock = FakeClock()
    sched = Scheduler(db=db, handlers=timer_handlers(settings), service="feedback", clock=clock)
    await sched.fire_due()
    assert [c for c, _ in await invited_at(db)] == ["c-new"]


@pytest.mark.parametrize(
    ("audience", "extra", "message"),
    [
        ("periodic", {"segment": "vip"}, "segment and period_days are required"),
        ("after_purchase", {"segment": "vip", "period_days": 7}, "only for, periodic"),
        (
            "manual",
            {"active_from": T0, "active_until": T0 - timedelta(days=1)},
            "active_until must be after active_from",
        ),
    ],
)
def test_survey_definitions_are_checked(
    audience: str, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        nps_survey("s", audience, **extra)
