"""The monthly feedback report's queries, and the daily score roll-up they read.

``response_days`` holds score counts per UTC day (see ``models.ResponseDay``): every
response write shifts its day's counts by the change it made, so the report sums at
most a few thousand day rows instead of scanning the responses. Complaints are read
directly (their SLA outcome depends on the time of asking).
"""

from __future__ import annotations

import zlib
from dataclasses import astuple, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.models import Complaint, Response, ResponseDay
from services.feedback.repository.analytics import count_if, dialect_of, period_group
from shared.db import dialect_insert


@dataclass(frozen=True)
class ScoreCounts:
    nps_n: int = 0
    promoters: int = 0
    detractors: int = 0
    csat_n: int = 0
    satisfied: int = 0

    @classmethod
    def of(cls, nps: int | None, csat: int | None) -> ScoreCounts:
        """What one response with these scores adds to its day."""
        return cls(
            nps_n=int(nps is not None),
            promoters=int(nps is not None and nps >= 9),
            detractors=int(nps is not None and nps <= 6),
            csat_n=int(csat is not None),
            satisfied=int(csat is not None and csat >= 4),
        )

    def minus(self, other: ScoreCounts) -> ScoreCounts:
        return ScoreCounts(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True)
class CaseCounts:
    complaints: int = 0
    sla_met: int = 0
    sla_missed: int = 0


SHARDS = 8
ROLLUP_COLUMNS = ("nps_responses", "promoters", "detractors", "csat_responses", "satisfied")


def shard_of(response_id: str) -> int:
    return zlib.crc32(response_id.encode()) % SHARDS


async def shift_day(session: AsyncSession, *, day: date, shard: int, delta: ScoreCounts) -> None:
    """Add ``delta`` (negative parts allowed) to one day's counts."""
    if not any(astuple(delta)):
        return
    values = dict(zip(ROLLUP_COLUMNS, astuple(delta), strict=True))
    table = ResponseDay.__table__
    stmt = dialect_insert(session)(ResponseDay).values(day=day, shard=shard, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "shard"],
        set_={c: table.c[c] + stmt.excluded[c] for c in ROLLUP_COLUMNS},
    )
    await session.execute(stmt)


async def rebuild_response_days(session: AsyncSession) -> None:
    """Recount every day from the responses, set-based (imports, repairs, tests)."""
    day = _utc_day(dialect_of(session), Response.submitted_at)
    counts = select(
        day,
        literal(0),
        count_if(Response.nps_score.is_not(None)),
        count_if(Response.nps_score >= 9),
        count_if(Response.nps_score <= 6),
        count_if(Response.csat_score.is_not(None)),
        count_if(Response.csat_score >= 4),
    ).group_by(day)
    await session.execute(delete(ResponseDay))
    target = insert(ResponseDay).from_select(["day", "shard", *ROLLUP_COLUMNS], counts)
    await session.execute(target)


def _utc_day(dialect: str, column: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


async def score_counts(session: AsyncSession, *, start: date, end: date) -> dict[str, ScoreCounts]:
    """Per month ('YYYY-MM'): NPS answers, promoters, detractors, CSAT answers, satisfied."""
    if dialect_of(session) == "postgresql":
        month = func.to_char(ResponseDay.day, "YYYY-MM")
    else:
        month = func.strftime("%Y-%m", ResponseDay.day)
    d = ResponseDay
    stmt = (
        select(
            month.label("month"),
            func.sum(d.nps_responses).label("nps_n"),
            func.sum(d.promoters).label("promoters"),
            func.sum(d.detractors).label("detractors"),
            func.sum(d.csat_responses).label("csat_n"),
            func.sum(d.satisfied).label("satisfied"),
        )
        .where(d.day >= start, d.day < end)
        .group_by(month)
    )
    rows = (await session.execute(stmt)).all()
    return {
        str(r.month)[:7]: ScoreCounts(
            int(r.nps_n), int(r.promoters), int(r.detractors), int(r.csat_n), int(r.satisfied)
        )
        for r in rows
    }


async def case_counts(
    session: AsyncSession, *, start: datetime, end: datetime, now: datetime
) -> dict[str, CaseCounts]:
    """Per month a case was opened in: cases, cases that met the SLA, cases that missed it."""
    month = period_group(dialect_of(session), Complaint.opened_at, "month")
    missed = sla_missed(now)
    stmt = (
        select(
            month.label.label("month"),
            func.count().label("complaints"),
            count_if(and_(Complaint.resolved_at.is_not(None), not_(missed))).label("met"),
            count_if(missed).label("missed"),
        )
        .where(Complaint.opened_at >= start, Complaint.opened_at < end)
        .group_by(month.key)
    )
    rows = (await session.execute(stmt)).all()
    return {
        str(r.month)[:7]: CaseCounts(int(r.complaints), int(r.met), int(r.missed)) for r in rows
    }


def sla_missed(now: datetime) -> ColumnElement[bool]:
    """A deadline was breached, met late, or has passed unmet by ``now`` (never NULL)."""
    c = Complaint
    return or_(
        c.first_response_breached,
        c.resolution_breached,
        and_(c.acknowledged_at.is_(None), c.first_response_due <= now),
        and_(c.resolved_at.is_(None), c.resolution_due <= now),
        and_(c.acknowledged_at.is_not(None), c.acknowledged_at > c.first_response_due),
        and_(c.resolved_at.is_not(None), c.resolved_at > c.resolution_due),
    )
