from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from services.feedback.endpoints.deps import NowDep, SettingsDep
from services.feedback.fields import Text
from services.feedback.models import AccessLog
from services.feedback.schemas import (
    ComplaintCreate,
    ComplaintRead,
    ComplaintStatus,
    ComplaintTransition,
)
from services.feedback.service import complaints
from shared.access_log import record
from shared.app import SessionDep
from shared.auth import Principal, require

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])


@router.post("", response_model=ComplaintRead, status_code=status.HTTP_201_CREATED)
async def create_complaint(
    principal: Annotated[Principal, Depends(require("feedback:write"))],
    body: ComplaintCreate,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> ComplaintRead:
    case = await complaints.open_complaint(
        session, complaint=body, at=now, settings=settings, opened_by=principal.subject
    )
    return ComplaintRead.model_validate(case)


@router.get("", response_model=list[ComplaintRead])
async def list_complaints(
    request: Request,
    principal: Annotated[Principal, Depends(require("feedback:read"))],
    session: SessionDep,
    status: ComplaintStatus | None = None,
    customer_id: Annotated[Text | None, Query(max_length=64)] = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[ComplaintRead]:
    found = await complaints.list_complaints(
        session, status=status, customer_id=customer_id, limit=limit
    )
    ids = [c.customer_id for c in found if c.customer_id is not None]
    await record(session, AccessLog, principal=principal, request=request, customer_ids=ids)
    return [ComplaintRead.model_validate(c) for c in found]


@router.get("/{case_id}", response_model=ComplaintRead)
async def get_complaint(
    request: Request,
    principal: Annotated[Principal, Depends(require("feedback:read"))],
    case_id: Text,
    session: SessionDep,
) -> ComplaintRead:
    case = await complaints.get_complaint(session, case_id=case_id)
    if case.customer_id is not None:
        ids = [case.customer_id]
        await record(session, AccessLog, principal=principal, request=request, customer_ids=ids)
    return ComplaintRead.model_validate(case)


@router.post(
    "/{case_id}/status",
    response_model=ComplaintRead,
    dependencies=[Depends(require("feedback:write"))],
)
async def change_complaint_status(
    case_id: Text,
    body: ComplaintTransition,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> ComplaintRead:
    case = await complaints.change_status(
        session, case_id=case_id, change=body, at=now, settings=settings
    )
    return ComplaintRead.model_validate(case)
