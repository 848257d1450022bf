"""Publishing an outreach row's outcomes other than "sent": failed, suppressed, deferred.

Event ids derive from the row's id, so settling the same row twice (a retried
transaction) publishes one event, not two.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast, get_args

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import repository
from services.engagement.models import FAILED, SUPPRESSED, Outreach
from shared import outbox
from shared.events import derived_id
from shared.events.engagement import (
    OutreachChannel,
    OutreachDeferred,
    OutreachDeferredData,
    OutreachFailed,
    OutreachFailedData,
    OutreachSuppressed,
    OutreachSuppressedData,
)

SOURCE = "keepwell/engagement"


async def publish_failed(session: AsyncSession, outreach_id: str, *, now: datetime) -> None:
    """``outreach.failed`` for a row just marked failed (its id derives from the row's)."""
    row = await _settled_row(session, outreach_id, FAILED)
    event = OutreachFailed.create(
        id=derived_id("outreach.failed", row.id),
        subject=row.customer_id,
        source=SOURCE,
        time=now,
        data=OutreachFailedData(
            outreach_id=row.id,
            journey=row.journey,
            channel=channel_of(row.channel),
            error=row.last_error or "unknown",
            attempts=row.attempts,
        ),
    )
    await outbox.enqueue(session, event)


async def publish_suppressed(session: AsyncSession, outreach_id: str, *, now: datetime) -> None:
    """``outreach.suppressed`` for a row just marked suppressed, with its reason."""
    row = await _settled_row(session, outreach_id, SUPPRESSED)
    await outbox.enqueue(session, suppressed_event(row, now=now))


def suppressed_event(row: Outreach, *, now: datetime) -> OutreachSuppressed:
    return OutreachSuppressed.create(
        id=derived_id("outreach.suppressed", row.id),
        subject=row.customer_id,
        source=SOURCE,
        time=now,
        data=OutreachSuppressedData(
            outreach_id=row.id, journey=row.journey, reason=row.last_error or "unknown"
        ),
    )


def channel_of(channel: str) -> OutreachChannel:
    if channel not in get_args(OutreachChannel):
        raise ValueError(f"unknown channel {channel!r}")
    return cast(OutreachChannel, channel)


async def _settled_row(session: AsyncSession, outreach_id: str, status: str) -> Outreach:
    row = await repository.get_outreach(session, outreach_id)
    if row is None or row.status != status:
        raise LookupError(f"outreach {outreach_id!r} is not {status}")
    return row


def deferred_event(
    outreach: Outreach, *, until: datetime, reason: str, now: datetime
) -> OutreachDeferred:
    return OutreachDeferred.create(
        id=derived_id("outreach.deferred", outreach.id, until.isoformat()),
        subject=outreach.customer_id,
        source=SOURCE,
        time=now,
        data=OutreachDeferredData(
            outreach_id=outreach.id, journey=outreach.journey, reason=reason, until=until
        ),
    )
