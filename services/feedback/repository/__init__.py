"""Every query feedback runs (analytics in ``repository.analytics``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback.models import (
    Complaint,
    Invitation,
    MergedCustomers,
    Response,
    SegmentMember,
    Survey,
    SurveyVersion,
)
from shared.db import dialect_insert
from shared.merges import Merges


async def get_survey(
    session: AsyncSession, survey_id: str, *, for_update: bool = False
) -> Survey | None:
    return await session.get(Survey, survey_id, with_for_update=for_update)


async def list_surveys(session: AsyncSession) -> Sequence[Survey]:
    return (await session.execute(select(Survey).order_by(Survey.created_at))).scalars().all()


async def get_survey_version(
    session: AsyncSession, survey_id: str, version: int
) -> SurveyVersion | None:
    return await session.get(SurveyVersion, (survey_id, version))


async def get_active_survey(session: AsyncSession, audience: str, at: datetime) -> Survey | None:
    """The newest survey for ``audience`` whose active window contains ``at``."""
    stmt = (
        select(Survey)
        .where(
            Survey.audience == audience,
            or_(Survey.active_from.is_(None), Survey.active_from <= at),
            or_(Survey.active_until.is_(None), Survey.active_until > at),
        )
        .order_by(Survey.created_at.desc(), Survey.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def get_last_invited_at(session: AsyncSession, customer_id: str) -> datetime | None:
    stmt = select(func.max(Invitation.created_at)).where(Invitation.customer_id == customer_id)
    return (await session.execute(stmt)).scalar_one()


async def get_invitation(session: AsyncSession, invitation_id: str) -> Invitation | None:
    return await session.get(Invitation, invitation_id)


async def get_open_invitation(
    session: AsyncSession, customer_id: str, survey_id: str, at: datetime
) -> Invitation | None:
    """The customer's latest invitation to this survey still open at ``at``."""
    stmt = (
        select(Invitation)
        .where(
            Invitation.customer_id == customer_id,
            Invitation.survey_id == survey_id,
            Invitation.created_at <= at,
            Invitation.expires_at > at,
        )
        .order_by(Invitation.created_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalars().first()


async def get_response(session: AsyncSession, response_id: str) -> Response | None:
    return await session.get(Response, response_id)


async def get_response_by_key(
    session: AsyncSession, dedupe_key: str, *, for_update: bool = False
) -> Response | None:
    stmt = select(Response).where(Response.dedupe_key == dedupe_key)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalars().first()


async def insert_response(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a new response; False if one with its dedupe key exists (or just committed).

    No conflict target: the id is derived from the dedupe key, so two concurrent
    inserts of one answer may meet on the primary key first. PostgreSQL raises on a
    conflict outside the named target, so any unique conflict means "already stored".
    """
    stmt = dialect_insert(session)(Response).values(**values)
    stmt = stmt.on_conflict_do_nothing().returning(Response.id)
    return (await session.execute(stmt)).first() is not None


async def upsert_response(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert the response, or overwrite the answer held under the same dedupe key."""
    insert = dialect_insert(session)
    kept = {"id", "dedupe_key", "submitted_at"}
    stmt = insert(Response).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["dedupe_key"], set_={k: v for k, v in values.items() if k not in kept}
    )
    await session.execute(stmt)


async def get_complaint(
    session: AsyncSession, case_id: str, *, for_update: bool = False
) -> Complaint | None:
    return await session.get(Complaint, case_id, with_for_update=for_update)


async def get_complaint_by_response(session: AsyncSession, response_id: str) -> Complaint | None:
    stmt = select(Complaint).where(Complaint.response_id == response_id)
    return (await session.execute(stmt)).scalars().first()


async def list_complaints(
    session: AsyncSession, *, status: str | None, customer_id: str | None, limit: int
) -> Sequence[Complaint]:
    stmt = select(Complaint).order_by(Complaint.opened_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Complaint.status == status)
    if customer_id is not None:
        stmt = stmt.where(Complaint.customer_id == customer_id)
    return (await session.execute(stmt)).scalars().all()


MERGES = Merges(MergedCustomers)


async def rekey_customer(session: AsyncSession, old: str, new: str) -> None:
    for model in (Invitation, Response, Complaint):
        await session.execute(update(model).where(model.customer_id == old).values(customer_id=new))
    segments = select(SegmentMember.segment).where(SegmentMember.customer_id == old)
    for segment in (await session.execute(segments)).scalars().all():
        await add_segment_member(session, segment, new)
    await session.execute(delete(SegmentMember).where(SegmentMember.customer_id == old))


async def add_segment_member(session: AsyncSession, segment: str, customer_id: str) -> None:
    insert = dialect_insert(session)
    stmt = insert(SegmentMember).values(segment=segment, customer_id=customer_id)
    await session.execute(stmt.on_conflict_do_nothing())


async def remove_segment_member(session: AsyncSession, segment: str, customer_id: str) -> None:
    await session.execute(
        delete(SegmentMember).where(
            SegmentMember.segment == segment, SegmentMember.customer_id == customer_id
        )
    )


async def list_uninvited_members(
    session: AsyncSession, segment: str, *, since: datetime
) -> Sequence[str]:
    """Members of ``segment`` with no invitation (any survey) after ``since``."""
    recent = (
        select(Invitation.id)
        .where(Invitation.customer_id == SegmentMember.customer_id, Invitation.created_at > since)
        .exists()
    )
    stmt = (
        select(SegmentMember.customer_id)
        .where(SegmentMember.segment == segment, ~recent)
        .order_by(SegmentMember.customer_id)
    )
    return (await session.execute(stmt)).scalars().all()


async def erase_customer(session: AsyncSession, customer_id: str) -> None:
    """Delete links and personal text; scores stay, with no customer attached."""
    await session.execute(delete(Invitation).where(Invitation.customer_id == customer_id))
    await session.execute(delete(SegmentMember).where(SegmentMember.customer_id == customer_id))
    await session.execute(
        update(Response)
        .where(Response.customer_id == customer_id)
        .values(customer_id=None, answers=None, comment=None, submitted_by=None)
    )
    await session.execute(
        update(Complaint)
        .where(Complaint.customer_id == customer_id)
        .values(customer_id=None, summary=None, resolution=None)
    )
