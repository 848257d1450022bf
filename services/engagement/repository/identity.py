"""Queries for profile's identity events: merging two customers into one, erasing one."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import (
    PENDING,
    SUPPRESSED,
    Consent,
    Contact,
    Conversion,
    LastBasket,
    MergedCustomer,
    Outreach,
)
from services.engagement.repository.sweeps import suppress_where
from shared.merges import Merges

OPT_OUT = "opt_out"


# Ids merged into another: their later events act for the survivor (``shared.merges``).
MERGES = Merges(MergedCustomer.__table__)


async def rekey_history(session: AsyncSession, *, old: str, new: str) -> None:
    """Every message and conversion of ``old`` now belongs to ``new``."""
    for model in (Outreach, Conversion):
        await session.execute(
            update(model)
            .where(model.customer_id == old)
            .values(customer_id=new)
            .execution_options(synchronize_session=False)
        )


async def merge_contact(session: AsyncSession, *, old: str, new: str) -> None:
    """Keep the survivor's contact; adopt the merged one's only if the survivor has none."""
    survivor = await session.get(Contact, new)
    merged = await session.get(Contact, old)
    if merged is None:
        return
    if survivor is None:
        await session.execute(
            update(Contact).where(Contact.customer_id == old).values(customer_id=new)
        )
    else:
        await session.delete(merged)
    await session.flush()


async def merge_consents(session: AsyncSession, *, old: str, new: str) -> None:
    """Per channel the strictest statement of either customer wins: an opt-out on
    either side stays an opt-out (the newer of two opt-ins or two opt-outs is kept)."""
    rows = (
        await session.execute(select(Consent).where(Consent.customer_id.in_((old, new))))
    ).scalars()
    newest: dict[str, Consent] = {}
    for row in rows:
        kept = newest.get(row.channel)
        if kept is None or _stricter(row, kept):
            newest[row.channel] = row
    await session.execute(delete(Consent).where(Consent.customer_id.in_((old, new))))
    for channel, row in newest.items():
        session.add(
            Consent(customer_id=new, channel=channel, status=row.status, changed_at=row.changed_at)
        )
    await session.flush()


def _stricter(row: Consent, kept: Consent) -> bool:
    if (row.status == OPT_OUT) != (kept.status == OPT_OUT):
        return row.status == OPT_OUT
    return row.changed_at > kept.changed_at


async def merge_last_basket(session: AsyncSession, *, old: str, new: str) -> None:
    """The newer of the two latest purchases stays the survivor's latest."""
    merged = await session.get(LastBasket, old)
    if merged is None:
        return
    survivor = await session.get(LastBasket, new)
    if survivor is None or merged.purchased_at > survivor.purchased_at:
        if survivor is not None:
            await session.delete(survivor)
            await session.flush()
        merged.customer_id = new
    else:
        await session.delete(merged)
    await session.flush()


async def cancel_pending(session: AsyncSession, customer_id: str, reason: str) -> Sequence[str]:
    return await suppress_where(
        session, reason, Outreach.customer_id == customer_id, Outreach.status == PENDING
    )


async def erase(session: AsyncSession, customer_id: str) -> None:
    """Delete what identifies or describes the customer; keep the bare outcomes (statistics)."""
    for model in (Contact, Consent, LastBasket):
        await session.execute(delete(model).where(model.customer_id == customer_id))
    await MERGES.forget_everywhere(session, customer_id)
    await session.execute(
        update(Outreach)
        .where(Outreach.customer_id == customer_id)
        .values(context={}, recipient=None, provider_message_id=None, to_address=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Outreach)
        .where(Outreach.customer_id == customer_id, Outreach.status != SUPPRESSED)
        .values(last_error=None)
        .execution_options(synchronize_session=False)
    )
