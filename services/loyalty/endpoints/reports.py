from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.loyalty.endpoints.deps import SettingsDep, require_any
from services.loyalty.schemas import LiabilityRead, LoyaltyReportRead
from services.loyalty.service import loyalty_report, reports
from services.loyalty.service.period import Period
from shared.app import ReadSessionDep
from shared.auth import require

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get(
    "/liability",
    response_model=LiabilityRead,
    dependencies=[Depends(require_any("reports:read", "loyalty:admin"))],
)
async def get_liability(session: ReadSessionDep, settings: SettingsDep) -> LiabilityRead:
    report = await reports.liability(session, settings=settings)
    return LiabilityRead.model_validate(asdict(report))


@router.get(
    "/loyalty",
    response_model=LoyaltyReportRead,
    response_model_by_alias=True,
    dependencies=[Depends(require("reports:read"))],
)
async def get_loyalty_report(
    session: ReadSessionDep,
    settings: SettingsDep,
    start: Annotated[date | None, Query(alias="from", description="Inclusive, YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(alias="to", description="Exclusive, YYYY-MM-DD")] = None,
) -> LoyaltyReportRead:
    now = datetime.now(UTC)
    period = Period.of(start, end, today=now.date())
    report = await loyalty_report.build(session, period=period, settings=settings, now=now)
    return LoyaltyReportRead.model_validate(asdict(report))
