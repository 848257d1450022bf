"""Survey definitions and their versions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.models import Survey, SurveyVersion
from services.feedback.schemas import SurveyCreate, SurveyUpdate
from services.feedback.service import periodic
from services.feedback.service.errors import SurveyExists, SurveyNotFound


async def create_survey(session: AsyncSession, *, survey: SurveyCreate, now: datetime) -> Survey:
    if await repository.get_survey(session, survey.id) is not None:
        raise SurveyExists(f"a survey with id {survey.id!r} already exists")
    questions = [q.model_dump() for q in survey.questions]
    row = Survey(
        id=survey.id,
        name=survey.name,
        kind=survey.kind,
        version=1,
        questions=questions,
        languages=list(survey.languages),
        audience=survey.audience,
        segment=survey.segment,
        period_days=survey.period_days,
        active_from=survey.active_from,
        active_until=survey.active_until,
    )
    session.add(row)
    session.add(SurveyVersion(survey_id=survey.id, version=1, questions=questions))
    await session.flush()
    await periodic.start(session, survey=row, now=now)
    return row


async def update_survey(session: AsyncSession, *, survey_id: str, change: SurveyUpdate) -> Survey:
    """New questions become the next version; earlier answers keep theirs."""
    row = await repository.get_survey(session, survey_id, for_update=True)
    if row is None:
        raise SurveyNotFound(f"no survey with id {survey_id!r}")
    row.version += 1
    row.questions = [q.model_dump() for q in change.questions]
    row.languages = list(change.languages)
    session.add(SurveyVersion(survey_id=survey_id, version=row.version, questions=row.questions))
    await session.flush()
    return row


async def get_survey(session: AsyncSession, *, survey_id: str) -> Survey:
    row = await repository.get_survey(session, survey_id)
    if row is None:
        raise SurveyNotFound(f"no survey with id {survey_id!r}")
    return row


async def list_surveys(session: AsyncSession) -> Sequence[Survey]:
    return await repository.list_surveys(session)


async def get_version(session: AsyncSession, *, survey_id: str, version: int) -> SurveyVersion:
    row = await repository.get_survey_version(session, survey_id, version)
    if row is None:
        raise SurveyNotFound(f"no version {version} of survey {survey_id!r}")
    return row
