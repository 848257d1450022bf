"""Every query engagement runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import PENDING, SENDING, SUPPRESSED, Contact, Outreach


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def upsert_contact(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert or replace a contact, unless the stored one comes from a newer event."""
    stmt = _insert(session)(Contact).values(**values)
    changed = {k: stmt.excluded[k] for k in values if k != "customer_id"}
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id"],
            set_=changed,
            where=Contact.updated_at <= stmt.excluded.updated_at,
        )
    )


async def get_contact(session: AsyncSession, customer_id: str) -> Contact | None:
    return await session.get(Contact, customer_id, populate_existing=True)


async def insert_outreach(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a planned message; False if one with the same dedupe key exists."""
    stmt = _insert(session)(Outreach).values(**values)
    result = await session.execute(stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    return bool(getattr(result, "rowcount", 0))


async def get_outreach(session: AsyncSession, outreach_id: str) -> Outreach | None:
    return await session.get(Outreach, outreach_id, populate_existing=True)


async def list_outreach(
    session: AsyncSession, customer_id: str, *, limit: int, before: Outreach | None
) -> Sequence[Outreach]:
    stmt = select(Outreach).where(Outreach.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(
            or_(
                Outreach.created_at < before.created_at,
                and_(Outreach.created_at == before.created_at, Outreach.id < before.id),
            )
        )
    stmt = stmt.order_by(Outreach.created_at.desc(), Outreach.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def lock_due_with_contact(
    session: AsyncSession, *, channel: str, now: datetime, limit: int
) -> Sequence[Row[Outreach, Contact]]:
    """Due pending messages on a channel whose customer has an e-mail, locked for claiming.

    On PostgreSQL ``SKIP LOCKED`` lets replicas claim disjoint rows; SQLite has a
    single writer (``BEGIN IMMEDIATE``), so its claims are serialised anyway.
    """
    stmt = (
        select(Outreach, Contact)
        .join(Contact, Contact.customer_id == Outreach.customer_id)
        .where(
            Outreach.status == PENDING,
            Outreach.channel == channel,
            Outreach.due_at <= now,
            Contact.email.is_not(None),
        )
        .order_by(Outreach.due_at)
        .limit(limit)
        .with_for_update(of=Outreach, skip_locked=True)
    )
    return (await session.execute(stmt)).all()


async def settle_claim(
    session: AsyncSession, *, outreach_id: str, attempt: int, values: dict[str, Any]
) -> bool:
    """Record a claim's outcome, only if no later claim of the same row exists.

    A row put back to pending because its claim looked stalled keeps its
    ``attempts``, so the original sender can still settle it until someone else
    claims it again.
    """
    result = await session.execute(
        update(Outreach)
        .where(
            Outreach.id == outreach_id,
            Outreach.attempts == attempt,
            Outreach.status.in_((SENDING, PENDING)),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def update_stalled(
    session: AsyncSession,
    *,
    claimed_before: datetime,
    max_attempts: int,
    exhausted: bool,
    values: dict[str, Any],
) -> Sequence[str]:
    """Move on messages stuck in ``sending``: those with attempts left, or (``exhausted``)
    those without."""
    out_of_attempts = Outreach.attempts >= max_attempts
    stmt = (
        update(Outreach)
        .where(
            Outreach.status == SENDING,
            Outreach.claimed_at < claimed_before,
            out_of_attempts if exhausted else ~out_of_attempts,
        )
        .values(**values)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


async def suppress_unreachable(
    session: AsyncSession, *, channel: str, due_before: datetime, reason: str
) -> Sequence[str]:
    """Pending messages on a channel, due before ``due_before``, whose customer has no e-mail."""
    reachable = exists().where(
        Contact.customer_id == Outreach.customer_id, Contact.email.is_not(None)
    )
    stmt = (
        update(Outreach)
        .where(
            Outreach.status == PENDING,
            Outreach.channel == channel,
            Outreach.due_at < due_before,
            ~reachable,
        )
        .values(status=SUPPRESSED, last_error=reason)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()
