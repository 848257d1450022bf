from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from services.feedback.endpoints.deps import require_report_reader
from services.feedback.fields import Instant, Text
from services.feedback.repository.analytics import (
    ComplaintDimension,
    Period,
    ResponseDimension,
    ResponseFilter,
)
from services.feedback.schemas import ComplaintStatsRow, FollowUpRow, ScoreRow, VerbatimRead
from services.feedback.service import analytics
from shared.app import SessionDep

router = APIRouter(
    prefix="/v1/analytics", tags=["analytics"], dependencies=[Depends(require_report_reader)]
)


def response_filter(
    since: Instant | None = None,
    until: Instant | None = None,
    survey_id: Annotated[Text | None, Query(max_length=64)] = None,
    store_id: Annotated[Text | None, Query(max_length=64)] = None,
    channel: Annotated[Text | None, Query(max_length=16)] = None,
    product_category: Annotated[Text | None, Query(max_length=100)] = None,
) -> ResponseFilter:
    return ResponseFilter(since, until, survey_id, store_id, channel, product_category)


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
    since: Instant | None = None,
    until: Instant | None = None,
) -> list[ComplaintStatsRow]:
    return await analytics.complaint_report(session, by=by, period=period, since=since, until=until)


@router.get("/follow-ups", response_model=list[FollowUpRow])
async def get_follow_ups(
    session: SessionDep,
    by: Literal["period", "none"] = "none",
    period: Period = "month",
    since: Instant | None = None,
    until: Instant | None = None,
) -> list[FollowUpRow]:
    """Whether customers were won back: answers to the follow-up survey after a resolution."""
    return await analytics.follow_up_report(session, by=by, period=period, since=since, until=until)


@router.get("/verbatims", response_model=list[VerbatimRead])
async def list_verbatims(
    session: SessionDep,
    where: FilterDep,
    category: Annotated[Text | None, Query(max_length=16)] = None,
    contains: Annotated[Text | None, Query(max_length=200)] = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> list[VerbatimRead]:
    return await analytics.verbatim_report(
        session, where=where, category=category, contains=contains, limit=limit
    )
