from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.feedback.endpoints.deps import NowDep
from services.feedback.schemas import FeedbackReport
from services.feedback.service import reports
from shared.app import SessionDep
from shared.auth import Principal, require

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get("/feedback", response_model=FeedbackReport)
async def get_feedback_report(
    _: Annotated[Principal, Depends(require("reports:read"))],
    session: SessionDep,
    now: NowDep,
    start: Annotated[
        date | None, Query(alias="from", description="First day, inclusive (UTC)")
    ] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day, exclusive (UTC)")] = None,
) -> FeedbackReport:
    start, end = reports.check_range(start, end, now.date())
    return await reports.feedback_report(session, start=start, end=end, now=now)
