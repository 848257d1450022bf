"""The sender's sweeps and the exits: pending messages routed by consent, or decided against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import PENDING, SUPPRESSED, Consent, Contact, Outreach
from services.engagement.repository.addresses import address as _address
from shared.key_lists import one_of


async def suppress_opted_out(
    session: AsyncSession,
    *,
    channel: str,
    now: datetime,
    reason: str,
    journeys: Sequence[str] | None = None,
) -> Sequence[str]:
    """Due pending messages on ``channel`` to a customer who opted out of it."""
    opted_out = _consent_is(channel, "opt_out")
    return await suppress_where(
        session,
        reason,
        Outreach.status == PENDING,
        Outreach.channel == channel,
        Outreach.due_at <= now,
        Outreach.to_address.is_(None),
        _in_journeys(journeys),
        opted_out,
    )


async def suppress_where(session: AsyncSession, reason: str, *conditions: Any) -> Sequence[str]:
    """Suppress (with ``reason``) the messages matching ``conditions``; their ids."""
    stmt = (
        update(Outreach)
        .where(*conditions)
        .values(status=SUPPRESSED, last_error=reason)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


def _in_journeys(journeys: Sequence[str] | None) -> Any:
    return true() if journeys is None else Outreach.journey.in_(journeys)


async def reroute_opted_out(
    session: AsyncSession,
    *,
    from_channel: str,
    to_channel: str,
    now: datetime,
    journeys: Sequence[str] | None = None,
) -> Sequence[str]:
    """Due messages whose customer opted out of ``from_channel``, or is known but has no
    address for it, and can be reached, with consent not refused, on ``to_channel``:
    moved there (the journey's next channel)."""
    reachable = exists().where(
        Contact.customer_id == Outreach.customer_id, _address(to_channel).is_not(None)
    )
    no_address = exists().where(
        Contact.customer_id == Outreach.customer_id, _address(from_channel).is_(None)
    )
    stmt = (
        update(Outreach)
        .where(
            Outreach.status == PENDING,
            Outreach.channel == from_channel,
            Outreach.due_at <= now,
            Outreach.to_address.is_(None),
            _in_journeys(journeys),
            or_(_consent_is(from_channel, "opt_out"), no_address),
            ~_consent_is(to_channel, "opt_out"),
            reachable,
        )
        .values(channel=to_channel)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


def claimable(
    channel: str | None,
    *,
    due_since: datetime,
    due_since_by_journey: Mapping[str, datetime],
    not_journeys: Sequence[str],
) -> list[Any]:
    """Conditions a due message meets if the sweeps would leave it alone: not stale
    (``due_since``, or its journey's own), not of ``not_journeys``, and, on ``channel``
    (None: a fixed recipient, exempt from consent), not to a customer who opted out."""
    others = Outreach.due_at >= due_since
    fresh = others
    if due_since_by_journey:
        fresh = or_(
            and_(Outreach.journey.not_in(list(due_since_by_journey)), others),
            *(
                and_(Outreach.journey == journey, Outreach.due_at >= since)
                for journey, since in due_since_by_journey.items()
            ),
        )
    conditions = [fresh]
    if not_journeys:
        conditions.append(Outreach.journey.not_in(list(not_journeys)))
    if channel is not None:
        conditions.append(~_consent_is(channel, "opt_out"))
    return conditions


def _consent_is(channel: str, status: str) -> Any:
    return exists().where(
        Consent.customer_id == Outreach.customer_id,
        Consent.channel == channel,
        Consent.status == status,
    )


async def pending_on_channels(
    session: AsyncSession, *, channels: Sequence[str], now: datetime
) -> set[tuple[str, str]]:
    """(journey, channel) pairs of due pending customer messages planned on ``channels``."""
    stmt = (
        select(Outreach.journey, Outreach.channel)
        .where(
            Outreach.status == PENDING,
            Outreach.due_at <= now,
            Outreach.to_address.is_(None),
            Outreach.channel.in_(channels),
        )
        .distinct()
    )
    return {(str(j), str(c)) for j, c in (await session.execute(stmt)).all()}


async def move_channel(
    session: AsyncSession,
    *,
    from_channel: str,
    to_channel: str,
    journeys: Sequence[str],
    now: datetime,
) -> None:
    """Due pending messages planned on a channel with no provider: onto the next one."""
    await session.execute(
        update(Outreach)
        .where(
            Outreach.status == PENDING,
            Outreach.due_at <= now,
            Outreach.channel == from_channel,
            Outreach.to_address.is_(None),
            Outreach.journey.in_(journeys),
        )
        .values(channel=to_channel)
        .execution_options(synchronize_session=False)
    )


async def suppress_on_channel(
    session: AsyncSession, *, channel: str, journeys: Sequence[str], now: datetime, reason: str
) -> Sequence[str]:
    """Due pending messages of ``journeys`` on ``channel`` (one they cannot use)."""
    return await suppress_where(
        session,
        reason,
        Outreach.status == PENDING,
        Outreach.channel == channel,
        Outreach.due_at <= now,
        Outreach.to_address.is_(None),
        Outreach.journey.in_(journeys),
    )


async def suppress_unreachable(
    session: AsyncSession, *, channel: str, due_before: datetime, reason: str
) -> Sequence[str]:
    """Pending messages on a channel, due before ``due_before``, whose customer has no
    address for it."""
    reachable = exists().where(
        Contact.customer_id == Outreach.customer_id, _address(channel).is_not(None)
    )
    return await suppress_where(
        session,
        reason,
        Outreach.status == PENDING,
        Outreach.channel == channel,
        Outreach.due_at < due_before,
        Outreach.to_address.is_(None),
        ~reachable,
    )


async def suppress_pending(
    session: AsyncSession, *, customer_id: str, journey: str, reason: str
) -> Sequence[str]:
    """A customer's pending messages of one journey, decided against (an exit condition)."""
    return await suppress_where(
        session,
        reason,
        Outreach.customer_id == customer_id,
        Outreach.journey == journey,
        Outreach.status == PENDING,
    )


async def suppress_pending_keys(
    session: AsyncSession, *, keys: Sequence[str], reason: str
) -> Sequence[str]:
    """Pending messages with these dedupe keys, decided against (an exit condition)."""
    return await suppress_where(
        session,
        reason,
        one_of(Outreach.dedupe_key, keys),
        Outreach.status == PENDING,
    )


async def suppress_stale(
    session: AsyncSession,
    *,
    due_before: datetime,
    reason: str,
    journeys: Sequence[str] | None = None,
    other_than: Sequence[str] = (),
) -> Sequence[str]:
    """Pending messages that came due before ``due_before`` (a catch-up after downtime),
    of ``journeys`` (None: any) but not of ``other_than``."""
    return await suppress_where(
        session,
        reason,
        Outreach.status == PENDING,
        Outreach.due_at < due_before,
        _in_journeys(journeys),
        Outreach.journey.not_in(other_than),
    )
