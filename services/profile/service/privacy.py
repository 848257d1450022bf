"""The right of access (export) and the right to erasure.

Erasure keeps an anonymised tombstone: the customer id with its counters and
``erased_at``, but no name, contact details, preferences, consent, identities,
timeline or segment memberships (open complaints, counted from the timeline,
drop to zero). Late events for the id still move the anonymous
counters but never bring personal data back (no contact hints, identities or
timeline entries are taken for a tombstone).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository, rollup
from services.profile.models import (
    Consent,
    Customer,
    Identity,
    TimelineEntry,
)
from services.profile.service import segments
from services.profile.service.customers import SOURCE, find_customer, live_customer
from shared import outbox
from shared.events.profile import CustomerErased, CustomerErasedData

PERSONAL = (
    "name", "name_folded", "email", "phone", "language", "timezone", "birthday",
    "preferred_channel", "quiet_start", "quiet_end",
)  # fmt: skip
EXPORT_LIMIT = 100_000


async def export(session: AsyncSession, *, customer_id: str) -> dict[str, Any]:
    """Everything profile holds about the customer, as JSON-ready data."""
    customer = await find_customer(session, customer_id)
    cid = customer.customer_id
    timeline = await repository.list_timeline(
        session, cid, channel=None, kind=None, before=None, limit=EXPORT_LIMIT
    )
    return {
        "customer": _columns(customer),
        "identities": [_columns(i) for i in await repository.list_identities(session, cid)],
        "consents": [_columns(c) for c in await repository.list_consents(session, cid)],
        "channels": [_columns(c) for c in await repository.list_channels(session, cid)],
        "segments": list(await repository.list_member_segments(session, cid)),
        "merges": [_columns(m) for m in await repository.list_merges(session, cid)],
        "timeline": [_columns(t) for t in timeline],
    }


def _columns(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


async def erase(
    session: AsyncSession, *, customer_id: str, reason: str | None, now: datetime
) -> Customer:
    """Erase personal data, keep the anonymous tombstone, publish ``customer.erased``."""
    customer = await live_customer(session, customer_id)
    cid = customer.customer_id
    for field in PERSONAL:
        setattr(customer, field, None)
    customer.erased_at = customer.erased_at or now
    await segments.leave_all(session, cid, now=now)
    await rollup.moving(session, cid, None)  # its money entries leave the segment rollup
    for table in (Identity, Consent, TimelineEntry):
        await session.execute(delete(table).where(table.customer_id == cid))
    # Counted from the timeline, which is gone: a rebuild (and any later complaint
    # event) would count zero, so the tombstone says zero too.
    customer.open_complaints = 0
    erased = CustomerErased.create(
        subject=cid, source=SOURCE, time=now, data=CustomerErasedData(reason=reason)
    )
    await outbox.enqueue(session, erased)
    return customer
