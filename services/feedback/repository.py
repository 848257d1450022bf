"""Every query feedback runs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.models import Survey, SurveyCandidate


async def get_survey(session: AsyncSession, survey_id: str) -> Survey | None:
    return await session.get(Survey, survey_id)


async def list_surveys(session: AsyncSession) -> Sequence[Survey]:
    return (await session.execute(select(Survey).order_by(Survey.created_at))).scalars().all()


async def get_candidate(session: AsyncSession, customer_id: str) -> SurveyCandidate | None:
    return await session.get(SurveyCandidate, customer_id, with_for_update=True)
