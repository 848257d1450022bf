from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends

from services.loyalty.endpoints.deps import SettingsDep, require_any
from services.loyalty.schemas import LiabilityRead
from services.loyalty.service import reports
from shared.app import SessionDep

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get(
    "/liability",
    response_model=LiabilityRead,
    dependencies=[Depends(require_any("reports:read", "loyalty:admin"))],
)
async def get_liability(session: SessionDep, settings: SettingsDep) -> LiabilityRead:
    report = await reports.liability(session, settings=settings)
    return LiabilityRead.model_validate(asdict(report))
