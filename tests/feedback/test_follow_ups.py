"""After a resolution: the follow-up survey's answers say whether the customer was won back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.schemas import ResponseSubmit
from services.feedback.service import analytics, responses
from shared.db import Database
from shared.events.feedback import ResponseRecorded, SurveyInvitationCreated
from tests.feedback.conftest import T0
from tests.feedback.support import create_survey, published, token_of
from tests.feedback.test_complaints import FakeClock, move, open_case, scheduler

pytestmark = pytest.mark.db


async def followed_up(db: Database, settings: FeedbackSettings, count: int) -> list[str]:
    """Open and resolve ``count`` cases, let the follow-ups fire; their cases' ids."""
    case_ids = [await open_case(db, settings) for _ in range(count)]
    for case_id in case_ids:
        await move(db, settings, case_id, "resolved", T0 + timedelta(hours=1))
    clock = FakeClock()
    clock.now = T0 + timedelta(hours=1 + settings.follow_up_delay_hours)
    await scheduler(db, settings, clock).fire_due()
    return case_ids


async def answer(
    db: Database, settings: FeedbackSettings, invitation: SurveyInvitationCreated, score: int
) -> None:
    body = ResponseSubmit.model_validate(
        {"token": token_of(invitation), "answers": {"recommend": score}}
    )
    async with db.unit_of_work() as session:
        await responses.submit_with_token(
            session, body=body, settings=settings, now=invitation.time + timedelta(hours=2)
        )


async def test_follow_up_answers_name_their_case_and_count_as_won_back_or_not(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db, "won-back", audience="follow_up")
    case_ids = await followed_up(db, settings, 3)
    invitations = {i.data.case_id or "": i for i in await published(db, SurveyInvitationCreated)}
    assert sorted(invitations) == sorted(case_ids)
    happy, unhappy, silent = case_ids
    await answer(db, settings, invitations[happy], 8)  # a passive now: won back
    await answer(db, settings, invitations[unhappy], 4)  # still a detractor
    recorded = {r.data.case_id: r.data.category for r in await published(db, ResponseRecorded)}
    assert recorded == {happy: "passive", unhappy: "detractor"}
    async with db.unit_of_work() as session:
        [row] = await analytics.follow_up_report(
            session, by="none", period="month", since=None, until=None
        )
    assert (row.invited, row.answered, row.won_back, row.won_back_pct) == (3, 2, 1, 50.0)
    assert silent not in recorded
