"""Feedback domain logic (surveys and responses grow here). Flushes, never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.models import Survey, SurveyCandidate
from services.feedback.schemas import SurveyCreate
from shared.events.commerce import PurchaseCompleted
from shared.http import Conflict, NotFound


class SurveyNotFound(NotFound):
    code = "survey_not_found"


class SurveyExists(Conflict):
    code = "survey_exists"


async def create_survey(session: AsyncSession, *, survey: SurveyCreate) -> Survey:
    if await repository.get_survey(session, survey.id) is not None:
        raise SurveyExists(f"a survey with id {survey.id!r} already exists")
    row = Survey(
        id=survey.id,
        name=survey.name,
        kind=survey.kind,
        version=1,
        questions=[q.model_dump() for q in survey.questions],
    )
    session.add(row)
    await session.flush()
    return row


async def get_survey(session: AsyncSession, *, survey_id: str) -> Survey:
    row = await repository.get_survey(session, survey_id)
    if row is None:
        raise SurveyNotFound(f"no survey with id {survey_id!r}")
    return row


async def list_surveys(session: AsyncSession) -> Sequence[Survey]:
    return await repository.list_surveys(session)


async def note_purchase(session: AsyncSession, *, event: PurchaseCompleted) -> None:
    """Remember the customer's latest purchase (event time wins, not arrival order)."""
    current = await repository.get_candidate(session, event.subject)
    if current is None:
        session.add(
            SurveyCandidate(
                customer_id=event.subject,
                last_purchase_id=event.data.purchase_id,
                last_purchase_at=event.time,
                channel=event.data.channel,
                store_id=event.data.store_id,
            )
        )
        return
    if _as_aware(current.last_purchase_at) <= event.time:
        current.last_purchase_id = event.data.purchase_id
        current.last_purchase_at = event.time
        current.channel = event.data.channel
        current.store_id = event.data.store_id


def _as_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
