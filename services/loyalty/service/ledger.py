"""Posting to the ledger and keeping the projections (balance, lots) equal to it.

Invariant: ``member.balance`` is the sum of the member's ledger entries; when it
is positive it also equals the points left in the member's lots, and when it is
negative (a refund took back points already spent) every lot is empty and the
next earnings pay the debt first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.models import LedgerEntry, Lot, Member
from services.loyalty.service import schedule
from services.loyalty.service.common import utc


@dataclass(frozen=True)
class Why:
    """Why an entry exists: what every ledger row must say."""

    reason: str
    key: str
    source_event_id: str | None = None
    purchase_id: str | None = None
    rule_id: str | None = None
    rule_version: int | None = None
    operator: str | None = None
    reference: str | None = None


def post(
    session: AsyncSession, member: Member, *, kind: str, points: int, why: Why, at: datetime
) -> LedgerEntry:
    member.balance += points
    if kind == "earn":
        member.lifetime_earned += points
    entry = LedgerEntry(
        customer_id=member.customer_id,
        kind=kind,
        points=points,
        balance_after=member.balance,
        reason=why.reason[:300],
        entry_key=why.key[:300],
        source_event_id=why.source_event_id,
        purchase_id=why.purchase_id,
        rule_id=why.rule_id,
        rule_version=why.rule_version,
        operator=why.operator,
        reference=why.reference,
        occurred_at=utc(at),
    )
    session.add(entry)
    return entry


async def add_lot(
    session: AsyncSession,
    member: Member,
    entry: LedgerEntry,
    *,
    points: int,
    expiry_days: int | None,
    notice_days: int,
) -> Lot:
    """A lot for points just posted; a negative balance absorbs them first."""
    earned_at = entry.occurred_at
    expires = earned_at + timedelta(days=expiry_days) if expiry_days else None
    lot = Lot(
        customer_id=member.customer_id,
        entry_key=entry.entry_key,
        purchase_id=entry.purchase_id,
        points=points,
        remaining=min(points, max(0, member.balance)),
        earned_at=earned_at,
        expires_at=expires,
        warned=False,
    )
    session.add(lot)
    if expires is not None and lot.remaining > 0:
        await schedule.expiry(session, member, expires_at=expires, notice_days=notice_days)
    return lot


async def take(
    session: AsyncSession, member: Member, points: int, *, first: Lot | None = None
) -> list[tuple[Lot, int]]:
    """Consume up to ``points`` from the lots, ``first`` then oldest expiry first."""
    lots = list(await repository.spendable_lots(session, member.customer_id))
    if first is not None and first in lots:
        lots.remove(first)
        lots.insert(0, first)
    taken: list[tuple[Lot, int]] = []
    for lot in lots:
        if points <= 0:
            break
        amount = min(points, lot.remaining)
        lot.remaining -= amount
        points -= amount
        taken.append((lot, amount))
    return taken
