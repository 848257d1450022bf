from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from services.feedback.endpoints.deps import require_report_reader
from services.feedback.repository.analytics import (
    ComplaintDimension,
    Period,
    ResponseDimension,
    ResponseFilter,
)
from services.feedback.schemas import ComplaintStatsRow, ScoreRow, VerbatimRead
from services.feedback.service import analytics, as_utc
from shared.app import SessionDep

router = APIRouter(
    prefix="/v1/analytics", tags=["analytics"], dependencies=[Depends(require_report_reader)]
)


def response_filter(
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    survey_id: str | None = Query(default=None, max_length=64),
    store_id: str | None = Query(default=None, max_length=64),
    channel: str | None = Query(default=None, max_length=16),
    product_category: str | None = Query(default=None, max_length=100),
) -> ResponseFilter:
    return ResponseFilter(_utc(since), _utc(until), survey_id, store_id, channel, product_category)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


FilterDep = Annotated[ResponseFilter, Depends(response_filter)]


@router.get("/nps", response_model=list[ScoreRow])
async def get_nps(
    session: SessionDep, where: FilterDep, by: ResponseDimension = "none", period: Period = "month"
) -> list[ScoreRow]:
    return await analytics.nps_report(session, by=by, period=period, where=where)


@router.get("/csat", response_model=list[ScoreRow])
async def get_csat(
    session: SessionDep, where: FilterDep, by: ResponseDimension = "none", period: Period = "month"
) -> list[ScoreRow]:
    return await analytics.csat_report(session, by=by, period=period, where=where)


@router.get("/complaints", response_model=list[ComplaintStatsRow])
async def get_complaint_stats(
    session: SessionDep,
    by: ComplaintDimension = "none",
    period: Period = "month",
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> list[ComplaintStatsRow]:
    return await analytics.complaint_report(session, by=by, period=period, since=since, until=until)


@router.get("/verbatims", response_model=list[VerbatimRead])
async def list_verbatims(
    session: SessionDep,
    where: FilterDep,
    category: str | None = Query(default=None, max_length=16),
    contains: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=500),
) -> list[VerbatimRead]:
    return await analytics.verbatim_report(
        session, where=where, category=category, contains=contains, limit=limit
    )
