"""NPS, CSAT and complaint figures. Counts come from the database; only the
arithmetic on a handful of aggregates happens here.

Confidence intervals are 95 % normal approximations:
* NPS = 100·(p₊ - p₋) over n answers; each answer is +1, 0 or -1, so the variance
  of one answer is p₊ + p₋ - (p₊ - p₋)² and the standard error of NPS is
  100·sqrt((p₊ + p₋ - (p₊ - p₋)²) / n).
* CSAT = 100·p (share of 4-5) with standard error 100·sqrt(p(1 - p) / n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.repository import analytics as queries
from services.feedback.schemas import ComplaintStatsRow, FollowUpRow, ScoreRow, VerbatimRead

Z95 = 1.959964


@dataclass(frozen=True)
class Estimate:
    score: float | None
    half_width: float | None


def nps(n: int, promoters: int, detractors: int) -> Estimate:
    if n <= 0:
        return Estimate(None, None)
    plus, minus = promoters / n, detractors / n
    variance = plus + minus - (plus - minus) ** 2
    return Estimate(100 * (plus - minus), 100 * Z95 * math.sqrt(max(variance, 0.0) / n))


def csat(n: int, satisfied: int) -> Estimate:
    if n <= 0:
        return Estimate(None, None)
    share = satisfied / n
    return Estimate(100 * share, 100 * Z95 * math.sqrt(share * (1 - share) / n))


def _row(group: str | None, n: int, estimate: Estimate) -> ScoreRow:
    score, half = estimate.score, estimate.half_width
    return ScoreRow(
        group=group,
        responses=n,
        score=None if score is None else round(score, 2),
        ci_low=None if score is None or half is None else round(score - half, 2),
        ci_high=None if score is None or half is None else round(score + half, 2),
        ci_half_width=None if half is None else round(half, 2),
    )


async def nps_report(
    session: AsyncSession,
    *,
    by: queries.ResponseDimension,
    period: queries.Period,
    where: queries.ResponseFilter,
) -> list[ScoreRow]:
    rows = await queries.nps_counts(session, by=by, period=period, where=where)
    return [_row(r.grp, int(r.n), nps(int(r.n), int(r.promoters), int(r.detractors))) for r in rows]


async def csat_report(
    session: AsyncSession,
    *,
    by: queries.ResponseDimension,
    period: queries.Period,
    where: queries.ResponseFilter,
) -> list[ScoreRow]:
    rows = await queries.csat_counts(session, by=by, period=period, where=where)
    return [_row(r.grp, int(r.n), csat(int(r.n), int(r.satisfied))) for r in rows]


async def complaint_report(
    session: AsyncSession,
    *,
    by: queries.ComplaintDimension,
    period: queries.Period,
    since: datetime | None,
    until: datetime | None,
) -> list[ComplaintStatsRow]:
    stats = await queries.complaint_stats(session, by=by, period=period, since=since, until=until)
    return [_complaint_row(group, stats[group]) for group in sorted(stats, key=str)]


def _complaint_row(group: str, s: dict[str, Any]) -> ComplaintStatsRow:
    return ComplaintStatsRow(
        group=group,
        complaints=int(s["complaints"]),
        first_response_sla_met_pct=_pct(s["fr_met"], s["fr_due"]),
        resolution_sla_met_pct=_pct(s["res_met"], s["res_due"]),
        median_first_response_seconds=_seconds(s.get("median_first_response")),
        median_resolution_seconds=_seconds(s.get("median_resolution")),
    )


def _pct(met: Any, due: Any) -> float | None:
    return round(100 * int(met) / int(due), 2) if due else None


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


async def follow_up_report(
    session: AsyncSession,
    *,
    by: Literal["period", "none"],
    period: queries.Period,
    since: datetime | None,
    until: datetime | None,
) -> list[FollowUpRow]:
    rows = await queries.follow_up_counts(session, by=by, period=period, since=since, until=until)
    return [
        FollowUpRow(
            group=r.grp,
            invited=int(r.invited),
            answered=int(r.answered),
            won_back=int(r.won_back or 0),
            won_back_pct=_pct(r.won_back or 0, r.answered),
        )
        for r in rows
    ]


async def verbatim_report(
    session: AsyncSession,
    *,
    where: queries.ResponseFilter,
    category: str | None,
    contains: str | None,
    limit: int,
) -> list[VerbatimRead]:
    rows = await queries.verbatims(
        session, where=where, category=category, contains=contains, limit=limit
    )
    return [
        VerbatimRead(
            response_id=r.id,
            survey_id=r.survey_id,
            channel=r.channel,
            store_id=r.store_id,
            nps_score=r.nps_score,
            csat_score=r.csat_score,
            category=r.category,
            comment=r.comment or "",
            submitted_at=r.submitted_at,
        )
        for r in rows
    ]
