"""Helpers the feedback tests share: reading the outbox, counting rows, inviting."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, select

from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint, Response
from services.feedback.service import invitations, surveys
from shared.db import Database
from shared.events import Event, decode
from shared.events.commerce import PurchaseCompleted
from shared.events.feedback import SurveyInvitationCreated
from shared.plumbing import outbox
from tests.feedback.conftest import T0, nps_survey
from tests.helpers import purchase

E = TypeVar("E", bound=Event)


async def published(db: Database, kind: type[E]) -> list[E]:
    async with db.unit_of_work() as session:
        values = (await session.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars()
        events = [decode(v) for v in values]
    return [e for e in events if isinstance(e, kind)]


async def count(db: Database, model: Any) -> int:
    async with db.unit_of_work() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def responses(db: Database) -> list[Response]:
    async with db.unit_of_work() as session:
        return list((await session.execute(select(Response))).scalars())


async def complaints(db: Database) -> list[Complaint]:
    async with db.unit_of_work() as session:
        return list((await session.execute(select(Complaint))).scalars())


async def create_survey(db: Database, survey_id: str = "after-buy", **kw: Any) -> None:
    async with db.unit_of_work() as session:
        await surveys.create_survey(session, survey=nps_survey(survey_id, **kw), now=T0)


async def invite(
    db: Database, settings: FeedbackSettings, customer: str, when: datetime
) -> SurveyInvitationCreated | None:
    """A purchase at ``when``; the invitation event it caused, if any."""
    event: PurchaseCompleted = purchase(customer, when=when)
    async with db.unit_of_work() as session:
        made = await invitations.invite_after_purchase(session, event=event, settings=settings)
    if made is None:
        return None
    [found] = [
        e for e in await published(db, SurveyInvitationCreated) if e.data.invitation_id == made.id
    ]
    return found


def token_of(invitation: SurveyInvitationCreated) -> str:
    return parse_qs(urlparse(invitation.data.url).query)["token"][0]
