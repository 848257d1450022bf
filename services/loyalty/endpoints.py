from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.loyalty import repository, service
from services.loyalty.schemas import LedgerEntryRead, LedgerPage, MemberRead
from shared.app import SessionDep
from shared.auth import require

router = APIRouter(
    prefix="/v1/members", tags=["members"], dependencies=[Depends(require("loyalty:read"))]
)


@router.get("/{customer_id}", response_model=MemberRead)
async def get_member(customer_id: str, session: SessionDep) -> MemberRead:
    member = await service.get_member(session, customer_id=customer_id)
    return MemberRead.model_validate(member)


@router.get("/{customer_id}/ledger", response_model=LedgerPage)
async def list_ledger(
    customer_id: str,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> LedgerPage:
    await service.get_member(session, customer_id=customer_id)
    entries = await repository.list_ledger(session, customer_id, limit=limit, before_id=before_id)
    items = [LedgerEntryRead.model_validate(e) for e in entries]
    next_id = items[-1].id if len(items) == limit else None
    return LedgerPage(items=items, next_before_id=next_id)
