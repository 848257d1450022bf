"""Posting to the ledger and keeping the projections (balance, lots) equal to it.

Invariant: ``member.balance`` is the sum of the member's ledger entries; when it
is positive it also equals the points left in the member's lots, and when it is
negative (a refund took back points already spent) every lot is empty and the
next earnings pay the debt first. ``member.pending`` is what is left in lots still
locked (``pending_until`` set); the spendable balance is ``balance - pending``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.models import ENTRY_KEY_LENGTH, LedgerEntry, Lot, Member
from services.loyalty.service import held, rollup, schedule
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

    def __post_init__(self) -> None:
        # A key cut to fit would make two entries one (the second then never posted):
        # refuse it instead, so the event is dead-lettered and seen.
        if len(self.key) > ENTRY_KEY_LENGTH:
            raise ValueError(f"ledger entry key longer than {ENTRY_KEY_LENGTH}: {self.key[:80]}…")


def post(
    session: AsyncSession,
    member: Member,
    *,
    kind: str,
    points: int,
    why: Why,
    at: datetime,
    hold: bool = False,
) -> LedgerEntry:
    """The entry, added to the session; with ``hold``, written as a held row instead
    (``held``: the object returned is then only a record of it, not in the session)."""
    member.balance += points
    if kind == "earn":
        member.lifetime_earned += points
    occurred_at = utc(at)
    row = {
        "customer_id": member.customer_id,
        "kind": kind,
        "points": points,
        "balance_after": member.balance,
        "reason": why.reason[:300],
        "entry_key": why.key,
        "source_event_id": why.source_event_id,
        "purchase_id": why.purchase_id,
        "rule_id": why.rule_id,
        "rule_version": why.rule_version,
        "operator": why.operator,
        "reference": why.reference,
        "occurred_at": occurred_at,
    }
    entry = held.place(session, LedgerEntry, row, held=hold)
    rollup.count_points(
        session, customer_id=member.customer_id, kind=kind, points=points, at=occurred_at
    )
    return entry


async def add_lot(
    session: AsyncSession,
    member: Member,
    entry: LedgerEntry,
    *,
    points: int,
    expiry_days: int | None,
    notice_days: int,
    pending_days: int | None = None,
    hold: bool = False,
) -> Lot:
    """A lot for points just posted; a negative balance absorbs them first.

    With ``pending_days`` the lot stays locked until its release timer fires. With
    ``hold`` it is written as a held row, as in ``post``.
    """
    earned_at = entry.occurred_at
    expires = earned_at + timedelta(days=expiry_days) if expiry_days else None
    remaining = min(points, max(0, member.balance))
    pending_until = None
    if pending_days and remaining > 0:
        pending_until = earned_at + timedelta(days=pending_days)
    row = {
        "customer_id": member.customer_id,
        "entry_key": entry.entry_key,
        "purchase_id": entry.purchase_id,
        "points": points,
        "remaining": remaining,
        "earned_at": earned_at,
        "expires_at": expires,
        "pending_until": pending_until,
        "warned": False,
    }
    lot = held.place(session, Lot, row, held=hold)
    if pending_until is not None:
        member.pending += remaining
        await schedule.release(session, member, at=pending_until)
    if expires is not None and remaining > 0:
        await schedule.expiry(session, member, expires_at=expires, notice_days=notice_days)
    return lot


async def take(
    session: AsyncSession,
    member: Member,
    points: int,
    *,
    first: Lot | None = None,
    spendable_only: bool = False,
) -> list[tuple[Lot, int]]:
    """Consume up to ``points`` from the lots, ``first`` then oldest expiry first.

    Spending (``spendable_only``) never touches locked lots; refunds, erasure and
    merges take from any lot, and what they take from a locked one leaves ``pending``.
    """
    lots = list(
        await repository.lots_with_points(
            session, member.customer_id, spendable_only=spendable_only
        )
    )
    if first is not None and first in lots:
        lots.remove(first)
        lots.insert(0, first)
    taken: list[tuple[Lot, int]] = []
    for lot in lots:
        if points <= 0:
            break
        amount = min(points, lot.remaining)
        lot.remaining -= amount
        if lot.pending_until is not None:
            member.pending -= amount
        points -= amount
        taken.append((lot, amount))
    return taken
