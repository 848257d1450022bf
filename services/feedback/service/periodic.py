"""Periodic surveys: every ``period_days`` a durable timer invites the survey's segment.

Each run invites the members not invited to anything within the fatigue window,
then schedules the next run; the chain stops when the survey's active window ends
or the survey is no longer periodic. Segment membership comes from profile's
``segment.entered`` / ``segment.exited`` events.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.models import Survey
from services.feedback.service import as_utc, invitations
from shared import timers
from shared.events.profile import SegmentEntered, SegmentExited

PERIODIC_TIMER = "survey_periodic"


async def start(session: AsyncSession, *, survey: Survey, now: datetime) -> None:
    """Schedule a periodic survey's first run (at once, or when its window opens)."""
    if survey.audience != "periodic":
        return
    first = max(now, as_utc(survey.active_from)) if survey.active_from else now
    await _schedule(session, survey.id, first)


async def on_due(session: AsyncSession, timer: timers.Timer, *, settings: FeedbackSettings) -> int:
    """Invite the segment's rested members; returns how many were invited."""
    survey = await repository.get_survey(session, timer.payload["survey_id"])
    at = timer.due_at
    if survey is None or survey.audience != "periodic" or not survey.segment:
        return 0
    if survey.active_until is not None and at >= as_utc(survey.active_until):
        return 0
    since = at - timedelta(days=settings.fatigue_days)
    members = await repository.list_uninvited_members(session, survey.segment, since=since)
    for customer_id in members:
        await invitations.invite_periodic(
            session, survey=survey, customer_id=customer_id, at=at, settings=settings
        )
    await _schedule(session, survey.id, at + timedelta(days=survey.period_days or 1))
    return len(members)


async def _schedule(session: AsyncSession, survey_id: str, due_at: datetime) -> None:
    await timers.schedule(
        session,
        kind=PERIODIC_TIMER,
        key=f"survey:{survey_id}:periodic:{due_at.isoformat()}",
        due_at=due_at,
        payload={"survey_id": survey_id},
    )


async def enter_segment(session: AsyncSession, *, event: SegmentEntered) -> None:
    await repository.add_segment_member(session, event.data.segment, event.subject)


async def exit_segment(session: AsyncSession, *, event: SegmentExited) -> None:
    await repository.remove_segment_member(session, event.data.segment, event.subject)
