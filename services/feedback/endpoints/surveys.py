from __future__ import annotations

from fastapi import APIRouter, Depends, status

from services.feedback.endpoints.deps import NowDep
from services.feedback.fields import Text
from services.feedback.schemas import SurveyCreate, SurveyRead, SurveyUpdate
from services.feedback.service import surveys
from shared.app import SessionDep
from shared.auth import require

router = APIRouter(prefix="/v1/surveys", tags=["surveys"])


@router.post(
    "",
    response_model=SurveyRead,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require("feedback:admin"))],
)
async def create_survey(body: SurveyCreate, session: SessionDep, now: NowDep) -> SurveyRead:
    survey = await surveys.create_survey(session, survey=body, now=now)
    return SurveyRead.model_validate(survey)


@router.put(
    "/{survey_id}", response_model=SurveyRead, dependencies=[Depends(require("feedback:admin"))]
)
async def update_survey(survey_id: Text, body: SurveyUpdate, session: SessionDep) -> SurveyRead:
    survey = await surveys.update_survey(session, survey_id=survey_id, change=body)
    return SurveyRead.model_validate(survey)


@router.get("", response_model=list[SurveyRead], dependencies=[Depends(require("feedback:read"))])
async def list_surveys(session: SessionDep) -> list[SurveyRead]:
    return [SurveyRead.model_validate(s) for s in await surveys.list_surveys(session)]


@router.get(
    "/{survey_id}", response_model=SurveyRead, dependencies=[Depends(require("feedback:read"))]
)
async def get_survey(survey_id: Text, session: SessionDep) -> SurveyRead:
    return SurveyRead.model_validate(await surveys.get_survey(session, survey_id=survey_id))
