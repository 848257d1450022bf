from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from services.feedback.endpoints.deps import NowDep, SettingsDep
from services.feedback.schemas import ResponseRead, ResponseSubmit, StaffResponseCreate
from services.feedback.service import responses
from shared.app import SessionDep
from shared.auth import Principal, require

router = APIRouter(prefix="/v1/responses", tags=["responses"])


@router.post("", response_model=ResponseRead, status_code=status.HTTP_201_CREATED)
async def submit_response(
    body: ResponseSubmit, session: SessionDep, settings: SettingsDep, now: NowDep
) -> ResponseRead:
    """For the web and app answer form: no bearer token, the signed survey token is the
    credential. Sending the same token again updates the answer."""
    response = await responses.submit_with_token(session, body=body, settings=settings, now=now)
    return ResponseRead.model_validate(response)


@router.post("/staff", response_model=ResponseRead, status_code=status.HTTP_201_CREATED)
async def create_staff_response(
    principal: Annotated[Principal, Depends(require("feedback:write"))],
    body: StaffResponseCreate,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> ResponseRead:
    response = await responses.submit_by_staff(
        session, body=body, staff=principal.subject, settings=settings, now=now
    )
    return ResponseRead.model_validate(response)
