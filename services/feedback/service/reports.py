"""The monthly feedback report (issue 10): NPS, CSAT, complaints and SLA attainment.

The database counts per month (event time, UTC); this module fills in the months
without data, adds the months up for ``overall`` and turns counts into scores:

* NPS and its 95 % interval as in ``analytics.nps`` (normal approximation of the
  +1 / 0 / -1 answers), clipped to -100..100.
* CSAT = share of 4-5 answers, 0..1, with a 95 % Wilson score interval.
* SLA attainment = cases that met every deadline over cases whose outcome is
  known (resolved in time, or a deadline missed by ``now``).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.repository import reports as queries
from services.feedback.repository.reports import CaseCounts, ScoreCounts
from services.feedback.schemas import FeedbackFigures, FeedbackMonth, FeedbackReport
from services.feedback.service import analytics
from services.feedback.service.errors import InvalidRange

MAX_YEARS = 10


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None


def default_range(today: date) -> tuple[date, date]:
    """The 12 whole months before this one, and this month so far."""
    this_month = today.replace(day=1)
    return add_months(this_month, -12), add_months(this_month, 1)


def check_range(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    default_start, default_end = default_range(today)
    start, end = start or default_start, end or default_end
    if start >= end:
        raise InvalidRange(f"'from' ({start}) must be before 'to' ({end}); 'to' is exclusive")
    if end > _latest_end(start):
        raise InvalidRange(f"the range may span at most {MAX_YEARS} years")
    return start, end


def _latest_end(start: date) -> date:
    """``start`` plus MAX_YEARS, or the last representable day if that is later."""
    if start.year > date.max.year - MAX_YEARS:
        return date.max
    return add_months(start, 12 * MAX_YEARS)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (or earlier), or the last day of a shorter month."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def months_between(start: date, end: date) -> list[str]:
    """Every 'YYYY-MM' that [start, end) touches (counted in months, so a range that
    ends on the last representable day never steps past it)."""
    last = end - timedelta(days=1)
    first_index, last_index = start.year * 12 + start.month - 1, last.year * 12 + last.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(first_index, last_index + 1)]


def nps_interval(n: int, promoters: int, detractors: int) -> Interval:
    estimate = analytics.nps(n, promoters, detractors)
    if estimate.score is None or estimate.half_width is None:
        return Interval(None, None, None)
    score, half = estimate.score, estimate.half_width
    return Interval(
        round(score, 2), round(max(-100.0, score - half), 2), round(min(100.0, score + half), 2)
    )


def wilson_interval(n: int, successes: int) -> Interval:
    if n <= 0:
        return Interval(None, None, None)
    p, z2 = successes / n, analytics.Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = analytics.Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return Interval(round(p, 4), round(low, 4), round(high, 4))


def figures(scores: ScoreCounts, cases: CaseCounts) -> dict[str, object]:
    nps = nps_interval(scores.nps_n, scores.promoters, scores.detractors)
    csat = wilson_interval(scores.csat_n, scores.satisfied)
    known = cases.sla_met + cases.sla_missed
    return {
        "nps": nps.value,
        "nps_low": nps.low,
        "nps_high": nps.high,
        "nps_responses": scores.nps_n,
        "csat": csat.value,
        "csat_low": csat.low,
        "csat_high": csat.high,
        "csat_responses": scores.csat_n,
        "complaints": cases.complaints,
        "sla_met": cases.sla_met,
        "sla_attainment": round(cases.sla_met / known, 4) if known else None,
    }


async def feedback_report(
    session: AsyncSession, *, start: date, end: date, now: datetime
) -> FeedbackReport:
    since = datetime.combine(start, time(), tzinfo=UTC)
    until = datetime.combine(end, time(), tzinfo=UTC)
    scores = await queries.score_counts(session, start=start, end=end)
    cases = await queries.case_counts(session, start=since, end=until, now=now)
    months = months_between(start, end)
    empty_scores, empty_cases = ScoreCounts(), CaseCounts()
    rows = [
        FeedbackMonth.model_validate(
            {"month": m, **figures(scores.get(m, empty_scores), cases.get(m, empty_cases))}
        )
        for m in months
    ]
    overall = figures(_total_scores(scores.values()), _total_cases(cases.values()))
    return FeedbackReport.model_validate(
        {
            "from": start,
            "to": end,
            "generated_at": now,
            "months": rows,
            "overall": FeedbackFigures.model_validate(overall),
        }
    )


def _total_scores(rows: Iterable[ScoreCounts]) -> ScoreCounts:
    items = list(rows)
    return ScoreCounts(*(sum(getattr(r, f.name) for r in items) for f in fields(ScoreCounts)))


def _total_cases(rows: Iterable[CaseCounts]) -> CaseCounts:
    items = list(rows)
    return CaseCounts(*(sum(getattr(r, f.name) for r in items) for f in fields(CaseCounts)))
