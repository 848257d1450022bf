from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status

from services.loyalty import repository
from services.loyalty.endpoints.deps import SettingsDep
from services.loyalty.models import AccessLog
from services.loyalty.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    LedgerEntryRead,
    LedgerPage,
    MemberRead,
    RedemptionCreate,
    RedemptionPage,
    RedemptionRead,
)
from services.loyalty.service import codes, members, redemption
from shared.access_log import audited_read
from shared.app import QuickReadSessionDep, RuntimeDep, SessionDep
from shared.auth import Principal, require
from shared.http import AppError

router = APIRouter(prefix="/v1/members", tags=["members"])

Reader = Depends(require("loyalty:read"))
# Customer-scoped reads: a staff principal's call is written to the access log (in a unit
# of work of its own once the read-only route has answered).
Audited = audited_read(AccessLog)
Redeemer = Annotated[Principal, Depends(require("loyalty:redeem"))]
Admin = Annotated[Principal, Depends(require("loyalty:admin"))]
CustomerId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
IdempotencyKey = Annotated[
    str, Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]


@router.get("/{customer_id}", response_model=MemberRead, dependencies=[Reader, Audited])
async def get_member(customer_id: CustomerId, session: QuickReadSessionDep) -> MemberRead:
    member = await members.get_member(session, customer_id=customer_id)
    return MemberRead.model_validate(member)


@router.get("/{customer_id}/ledger", response_model=LedgerPage, dependencies=[Reader, Audited])
async def list_ledger(
    customer_id: CustomerId,
    session: QuickReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> LedgerPage:
    await members.get_member(session, customer_id=customer_id)
    ids = await repository.alias_ids(session, customer_id)
    entries = await repository.list_ledger(session, ids, limit=limit, before_id=before_id)
    items = [LedgerEntryRead.model_validate(e) for e in entries]
    next_id = items[-1].id if len(items) == limit else None
    return LedgerPage(items=items, next_before_id=next_id)


@router.get(
    "/{customer_id}/redemptions", response_model=RedemptionPage, dependencies=[Reader, Audited]
)
async def list_redemptions(
    customer_id: CustomerId,
    session: QuickReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(max_length=36, description="next_before of a page")] = None,
) -> RedemptionPage:
    member = await members.get_member(session, customer_id=customer_id)
    after = None
    if before is not None:
        after = await repository.get_redemption(session, before)
        if after is None or after.customer_id != member.customer_id:
            raise AppError(f"before={before!r} is not a redemption of this member")
    found = await repository.list_redemptions(
        session, member.customer_id, limit=limit, before=after
    )
    items = [RedemptionRead.model_validate(r) for r in found]
    return RedemptionPage(items=items, next_before=items[-1].id if len(items) == limit else None)


@router.post(
    "/{customer_id}/redemptions",
    response_model=RedemptionRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No such member or reward"},
        409: {"description": "Insufficient points or reward unavailable"},
    },
)
async def create_redemption(
    customer_id: CustomerId,
    body: RedemptionCreate,
    key: IdempotencyKey,
    principal: Redeemer,
    runtime: RuntimeDep,
    settings: SettingsDep,
    response: Response,
) -> RedemptionRead:
    # Its own unit of work, not SessionDep's: a refusal is committed (remembered under
    # the key) before it is raised as the error response.
    async with runtime.db.unit_of_work() as session:
        outcome = await redemption.redeem(
            session,
            customer_id=customer_id,
            reward_id=body.reward_id,
            idempotency_key=key,
            operator=principal.subject,
            now=datetime.now(UTC),
            settings=settings,
        )
    made = outcome.result()
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return RedemptionRead.model_validate(made)


@router.post("/{customer_id}/redemptions/{redemption_id}/cancel", response_model=RedemptionRead)
async def cancel_redemption(
    customer_id: CustomerId,
    redemption_id: str,
    principal: Redeemer,
    session: SessionDep,
    settings: SettingsDep,
) -> RedemptionRead:
    cancelled = await redemption.cancel(
        session,
        customer_id=customer_id,
        redemption_id=redemption_id,
        operator=principal.subject,
        now=datetime.now(UTC),
        settings=settings,
    )
    return RedemptionRead.model_validate(cancelled)


@router.post("/{customer_id}/redemptions/{redemption_id}/use", response_model=RedemptionRead)
async def use_redemption(
    customer_id: CustomerId,
    redemption_id: str,
    _: Redeemer,
    session: SessionDep,
) -> RedemptionRead:
    used = await codes.use(
        session, customer_id=customer_id, redemption_id=redemption_id, now=datetime.now(UTC)
    )
    return RedemptionRead.model_validate(used)


@router.post(
    "/{customer_id}/adjustments", response_model=AdjustmentRead, status_code=status.HTTP_201_CREATED
)
async def create_adjustment(
    customer_id: CustomerId,
    body: AdjustmentCreate,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> AdjustmentRead:
    if body.points == 0:
        raise AppError("an adjustment must move at least one point")
    entry, replayed = await members.adjust(
        session,
        customer_id=customer_id,
        points=body.points,
        reason=body.reason,
        reference=body.reference,
        operator=principal.subject,
        now=datetime.now(UTC),
        settings=settings,
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    member = await members.get_member(session, customer_id=entry.customer_id)
    return AdjustmentRead(entry=LedgerEntryRead.model_validate(entry), balance=member.balance)
