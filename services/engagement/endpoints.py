from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.engagement import service
from services.engagement.models import AccessLog
from services.engagement.schemas import OutreachPage, OutreachRead
from shared.access_log import staff_reads
from shared.app import SessionDep
from shared.auth import require

router = APIRouter(
    prefix="/v1/customers", tags=["outreach"], dependencies=[Depends(require("engagement:read"))]
)


@router.get(
    "/{customer_id}/outreach",
    response_model=OutreachPage,
    dependencies=[Depends(staff_reads(AccessLog))],
)
async def list_outreach(
    customer_id: str,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[str | None, Query(max_length=36)] = None,
) -> OutreachPage:
    """The customer's messages, newest first; pass ``next_before_id`` for the next page."""
    rows = await service.list_outreach(
        session, customer_id=customer_id, limit=limit, before_id=before_id
    )
    items = [OutreachRead.model_validate(r) for r in rows]
    next_id = items[-1].id if len(items) == limit else None
    return OutreachPage(items=items, next_before_id=next_id)
