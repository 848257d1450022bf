"""GET /v1/reports/{retention,value,engagement}: scope reports:read, ?from=&to= (dates)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.reports import activity, retention, value
from services.engagement.reports.period import Period, period
from services.engagement.reports.schemas import EngagementRead, RetentionRead, ValueRead
from shared.app import SessionDep
from shared.auth import require

router = APIRouter(prefix="/v1/reports", tags=["reports"])
READ = [Depends(require("reports:read"))]
Compute = Callable[[AsyncSession, Period], Awaitable[dict[str, Any]]]


def _period(
    start: Annotated[date | None, Query(alias="from", description="inclusive")] = None,
    end: Annotated[date | None, Query(alias="to", description="exclusive")] = None,
) -> Period:
    return period(start, end, today=datetime.now(UTC).date())


PeriodDep = Annotated[Period, Depends(_period)]


async def _report(name: str, compute: Compute, session: AsyncSession, p: Period) -> dict[str, Any]:
    body = await compute(session, p)
    head = {"report": name, "from": p.start, "to": p.end, "generated_at": datetime.now(UTC)}
    return {**head, **body}


@router.get("/retention", response_model=RetentionRead, dependencies=READ)
async def get_retention(p: PeriodDep, session: SessionDep) -> dict[str, Any]:
    return await _report("retention", retention.retention, session, p)


@router.get("/value", response_model=ValueRead, dependencies=READ)
async def get_value(p: PeriodDep, session: SessionDep) -> dict[str, Any]:
    return await _report("value", value.value, session, p)


@router.get("/engagement", response_model=EngagementRead, dependencies=READ)
async def get_engagement(p: PeriodDep, session: SessionDep) -> dict[str, Any]:
    return await _report("engagement", activity.engagement, session, p)
