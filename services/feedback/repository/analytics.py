"""Analytics queries: every aggregate is computed by the database (GROUP BY, windows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.models import Complaint, Invitation, Response

Period = Literal["day", "week", "month"]
ResponseDimension = Literal["period", "store", "channel", "product_category", "survey", "none"]
ComplaintDimension = Literal["period", "category", "severity", "channel", "none"]


@dataclass(frozen=True)
class ResponseFilter:
    since: datetime | None = None
    until: datetime | None = None
    survey_id: str | None = None
    store_id: str | None = None
    channel: str | None = None
    product_category: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.since is not None:
            found.append(Response.submitted_at >= self.since)
        if self.until is not None:
            found.append(Response.submitted_at < self.until)
        for column, value in (
            (Response.survey_id, self.survey_id),
            (Response.store_id, self.store_id),
            (Response.channel, self.channel),
            (Response.product_category, self.product_category),
        ):
            if value is not None:
                found.append(column == value)
        return found


@dataclass(frozen=True)
class Group:
    """What rows are grouped by (``key``) and how a group is shown (``label``)."""

    key: ColumnElement[Any]
    label: ColumnElement[Any]


def period_group(dialect: str, column: Any, period: Period) -> Group:
    """The first day of the period holding ``column`` as 'YYYY-MM-DD' (weeks start Monday).

    PostgreSQL groups on the truncated timestamp and formats each group once.
    """
    if dialect == "postgresql":
        start = func.date_trunc(period, func.timezone("UTC", column))
        return Group(start, func.to_char(start, "YYYY-MM-DD"))
    if period == "day":
        label = func.strftime("%Y-%m-%d", column)
    elif period == "month":
        label = func.strftime("%Y-%m-01", column)
    else:
        label = func.date(column, "weekday 0", "-6 days")
    return Group(label, label)


ALL: ColumnElement[str] = literal_column("'all'")


def _response_group(dialect: str, by: ResponseDimension, period: Period) -> Group | None:
    columns: dict[str, Any] = {
        "store": Response.store_id,
        "channel": Response.channel,
        "product_category": Response.product_category,
        "survey": Response.survey_id,
    }
    if by == "period":
        return period_group(dialect, Response.submitted_at, period)
    return Group(columns[by], columns[by]) if by in columns else None


def _grouped(stmt: Select[Any], group: Group | None) -> Select[Any]:
    return stmt if group is None else stmt.group_by(group.key).order_by(group.key)


async def nps_counts(
    session: AsyncSession, *, by: ResponseDimension, period: Period, where: ResponseFilter
) -> Sequence[Any]:
    """(group, responses, promoters, detractors) per group."""
    group = _response_group(dialect_of(session), by, period)
    stmt = select(
        _label(group),
        func.count().label("n"),
        count_if(Response.nps_score >= 9).label("promoters"),
        count_if(Response.nps_score <= 6).label("detractors"),
    ).where(Response.nps_score.is_not(None), *where.clauses())
    return list((await session.execute(_grouped(stmt, group))).all())


async def csat_counts(
    session: AsyncSession, *, by: ResponseDimension, period: Period, where: ResponseFilter
) -> Sequence[Any]:
    """(group, responses, satisfied) per group; satisfied = CSAT 4 or 5."""
    group = _response_group(dialect_of(session), by, period)
    stmt = select(
        _label(group),
        func.count().label("n"),
        count_if(Response.csat_score >= 4).label("satisfied"),
    ).where(Response.csat_score.is_not(None), *where.clauses())
    return list((await session.execute(_grouped(stmt, group))).all())


async def verbatims(
    session: AsyncSession,
    *,
    where: ResponseFilter,
    category: str | None,
    contains: str | None,
    limit: int,
) -> Sequence[Response]:
    stmt = select(Response).where(Response.comment.is_not(None), *where.clauses())
    if category is not None:
        stmt = stmt.where(Response.category == category)
    if contains:
        stmt = stmt.where(func.lower(Response.comment).contains(contains.lower(), autoescape=True))
    stmt = stmt.order_by(Response.submitted_at.desc(), Response.id).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def complaint_stats(
    session: AsyncSession,
    *,
    by: ComplaintDimension,
    period: Period,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, dict[str, Any]]:
    """Per group: volume, SLA attainment counts, median seconds to respond and to resolve."""
    dialect = dialect_of(session)
    group = _complaint_group(dialect, by, period)
    window = _complaint_window(since, until)
    rows = (await session.execute(_attainment(group, window))).all()
    stats = {r.grp: dict(r._mapping) for r in rows}
    for name, end in (("first_response", Complaint.acknowledged_at), ("resolution", None)):
        finished = end if end is not None else Complaint.resolved_at
        median = _median(dialect, group, finished, window)
        for grp, value in (await session.execute(median)).all():
            stats[grp][f"median_{name}"] = value
    return stats


async def follow_up_counts(
    session: AsyncSession,
    *,
    by: Literal["period", "none"],
    period: Period,
    since: datetime | None,
    until: datetime | None,
) -> Sequence[Any]:
    """Per group of follow-up invitations (by when sent): invited, answered, won back.

    Won back: the answer is not a detractor (NPS 7-10), or without an NPS score a
    satisfied CSAT (4-5).
    """
    i, r = Invitation, Response
    group = period_group(dialect_of(session), i.created_at, period) if by == "period" else None
    won = or_(r.nps_score >= 7, and_(r.nps_score.is_(None), r.csat_score >= 4))
    stmt = (
        select(
            _label(group),
            func.count(i.id).label("invited"),
            func.count(r.id).label("answered"),
            count_if(and_(r.id.is_not(None), won)).label("won_back"),
        )
        .select_from(i)
        .outerjoin(r, r.invitation_id == i.id)
        .where(i.reason == "follow_up")
    )
    if since is not None:
        stmt = stmt.where(i.created_at >= since)
    if until is not None:
        stmt = stmt.where(i.created_at < until)
    return list((await session.execute(_grouped(stmt, group))).all())


def _complaint_group(dialect: str, by: ComplaintDimension, period: Period) -> Group | None:
    columns: dict[str, Any] = {
        "category": Complaint.category,
        "severity": Complaint.severity,
        "channel": Complaint.channel,
    }
    if by == "period":
        return period_group(dialect, Complaint.opened_at, period)
    return Group(columns[by], columns[by]) if by in columns else None


def _complaint_window(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if since is not None:
        found.append(Complaint.opened_at >= since)
    if until is not None:
        found.append(Complaint.opened_at < until)
    return found


def _attainment(group: Group | None, window: list[ColumnElement[bool]]) -> Select[Any]:
    answered = Complaint.acknowledged_at.is_not(None)
    resolved = Complaint.resolved_at.is_not(None)
    stmt = select(
        _label(group),
        func.count().label("complaints"),
        count_if(or_(answered, Complaint.first_response_breached)).label("fr_due"),
        count_if(
            and_(
                answered,
                Complaint.acknowledged_at <= Complaint.first_response_due,
                ~Complaint.first_response_breached,
            )
        ).label("fr_met"),
        count_if(or_(resolved, Complaint.resolution_breached)).label("res_due"),
        count_if(
            and_(
                resolved,
                Complaint.resolved_at <= Complaint.resolution_due,
                ~Complaint.resolution_breached,
            )
        ).label("res_met"),
    ).where(*window)
    return _grouped(stmt, group)


def count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """How many rows meet ``condition``: 0, not NULL, when no row is aggregated (an
    ungrouped query over an empty range still answers one row)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _median(
    dialect: str, group: Group | None, finished: Any, window: list[ColumnElement[bool]]
) -> Select[Any]:
    """Median of (finished - opened_at) in seconds per group, with window functions."""
    seconds = _seconds_between(dialect, Complaint.opened_at, finished)
    key = None if group is None else group.key
    inner = (
        select(
            _label(group),
            seconds.label("d"),
            func.row_number().over(partition_by=key, order_by=seconds).label("rn"),
            func.count().over(partition_by=key).label("n"),
        )
        .where(finished.is_not(None), *window)
        .subquery()
    )
    middle = or_(inner.c.rn == (inner.c.n + 1) // 2, inner.c.rn == (inner.c.n + 2) // 2)
    return select(inner.c.grp, func.avg(inner.c.d)).where(middle).group_by(inner.c.grp)


def _seconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _label(group: Group | None) -> Any:
    return (ALL if group is None else group.label).label("grp")


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name
