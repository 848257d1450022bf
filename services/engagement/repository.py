"""Every query engagement runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    PENDING,
    SENDING,
    SENT,
    SUPPRESSED,
    Consent,
    Contact,
    Outreach,
)
from shared.db import upsertable_insert


async def upsert_contact(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert or replace a contact, unless the stored one comes from a newer event."""
    stmt = upsertable_insert(session)(Contact).values(**values)
    changed = {k: stmt.excluded[k] for k in values if k != "customer_id"}
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id"],
            set_=changed,
            where=Contact.updated_at <= stmt.excluded.updated_at,
        )
    )


async def upsert_consent(session: AsyncSession, values: dict[str, Any]) -> None:
    """Record one channel's consent, unless the stored one was stated later."""
    stmt = upsertable_insert(session)(Consent).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id", "channel"],
            set_={"status": stmt.excluded.status, "changed_at": stmt.excluded.changed_at},
            where=Consent.changed_at <= stmt.excluded.changed_at,
        )
    )


async def consents(session: AsyncSession, customer_id: str) -> dict[str, str]:
    stmt = select(Consent.channel, Consent.status).where(Consent.customer_id == customer_id)
    return {channel: status for channel, status in (await session.execute(stmt)).all()}


async def suppress_opted_out(
    session: AsyncSession, *, channel: str, now: datetime, reason: str
) -> Sequence[str]:
    """Due pending messages on ``channel`` to a customer who opted out of it."""
    opted_out = _consent_is(channel, "opt_out")
    stmt = (
        update(Outreach)
        .where(
            Outreach.status == PENDING,
            Outreach.channel == channel,
            Outreach.due_at <= now,
            opted_out,
        )
        .values(status=SUPPRESSED, last_error=reason)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


async def get_contact(session: AsyncSession, customer_id: str) -> Contact | None:
    return await session.get(Contact, customer_id, populate_existing=True)


async def insert_outreach(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a planned message; False if one with the same dedupe key exists."""
    stmt = upsertable_insert(session)(Outreach).values(**values)
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
    """Due pending messages on a channel whose customer has an address for it, locked.

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
            _address(channel).is_not(None),
        )
        .order_by(Outreach.due_at)
        .limit(limit)
        .with_for_update(of=Outreach, skip_locked=True)
    )
    return (await session.execute(stmt)).all()


def _address(channel: str) -> Any:
    return Contact.phone if channel == "sms" else Contact.email


async def reroute_opted_out(
    session: AsyncSession, *, from_channel: str, to_channel: str, now: datetime
) -> Sequence[str]:
    """Due messages whose customer opted out of ``from_channel`` but can be reached, with
    consent not refused, on ``to_channel``: moved there (the journey's next channel)."""
    reachable = exists().where(
        Contact.customer_id == Outreach.customer_id, _address(to_channel).is_not(None)
    )
    stmt = (
        update(Outreach)
        .where(
            Outreach.status == PENDING,
            Outreach.channel == from_channel,
            Outreach.due_at <= now,
            _consent_is(from_channel, "opt_out"),
            ~_consent_is(to_channel, "opt_out"),
            reachable,
        )
        .values(channel=to_channel)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


def _consent_is(channel: str, status: str) -> Any:
    return exists().where(
        Consent.customer_id == Outreach.customer_id,
        Consent.channel == channel,
        Consent.status == status,
    )


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


async def suppress_pending(
    session: AsyncSession, *, customer_id: str, journey: str, reason: str
) -> Sequence[str]:
    """A customer's pending messages of one journey, decided against (an exit condition)."""
    stmt = (
        update(Outreach)
        .where(
            Outreach.customer_id == customer_id,
            Outreach.journey == journey,
            Outreach.status == PENDING,
        )
        .values(status=SUPPRESSED, last_error=reason)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


async def suppress_stale(
    session: AsyncSession, *, due_before: datetime, reason: str
) -> Sequence[str]:
    """Pending messages that came due before ``due_before`` (a catch-up after downtime)."""
    stmt = (
        update(Outreach)
        .where(Outreach.status == PENDING, Outreach.due_at < due_before)
        .values(status=SUPPRESSED, last_error=reason)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


async def marketing_sent_since(
    session: AsyncSession, *, customer_id: str, journeys: Sequence[str], since: datetime
) -> int:
    """Marketing messages sent (or being sent) to a customer since ``since``."""
    stmt = select(func.count()).where(
        Outreach.customer_id == customer_id,
        Outreach.journey.in_(journeys),
        or_(
            and_(Outreach.status == SENT, Outreach.sent_at >= since),
            and_(Outreach.status == SENDING, Outreach.claimed_at >= since),
        ),
    )
    return int((await session.execute(stmt)).scalar_one())
