"""The durable timers a member needs: expiry, expiring notice, tier review, release, birthday.

At most one live timer of each kind per member; its due time is kept on the member
row (``next_expiry_at``, ``next_notice_at``, ``next_review_at``, ``next_release_at``,
``next_birthday_at``). The key holds the due time, so a handler can arm the next timer
while its own row is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Member
from services.loyalty.service.common import maybe_utc, utc
from shared import timers

EXPIRE = "loyalty.expire"
NOTICE = "loyalty.expiring"
TIER_REVIEW = "loyalty.tier_review"
RELEASE = "loyalty.release"
CODE_EXPIRY = "loyalty.code_expiry"
BIRTHDAY = "loyalty.birthday"


def key(kind: str, customer_id: str, due: datetime) -> str:
    return f"{kind}:{customer_id}:{utc(due).isoformat()}"


async def expiry(
    session: AsyncSession, member: Member, *, expires_at: datetime, notice_days: int
) -> None:
    """Make sure the member's expiry (and notice) timers fire no later than needed."""
    current = maybe_utc(member.next_expiry_at)
    if current is None or expires_at < current:
        await move(session, EXPIRE, member, expires_at)
    if not notice_days:
        return
    notice_at = expires_at - timedelta(days=notice_days)
    current = maybe_utc(member.next_notice_at)
    if current is None or notice_at < current:
        await move(session, NOTICE, member, notice_at)


async def release(session: AsyncSession, member: Member, *, at: datetime) -> None:
    """Make sure the member's release timer fires no later than ``at``."""
    current = maybe_utc(member.next_release_at)
    if current is None or at < current:
        await move(session, RELEASE, member, at)


async def code_expiry(session: AsyncSession, redemption_id: str, *, at: datetime) -> None:
    """One timer per redemption code; it does nothing if the code was used or cancelled."""
    await timers.schedule(
        session,
        kind=CODE_EXPIRY,
        key=f"{CODE_EXPIRY}:{redemption_id}",
        due_at=at,
        payload={"redemption_id": redemption_id},
    )


async def move(
    session: AsyncSession,
    kind: str,
    member: Member,
    due: datetime | None,
    *,
    fired: str | None = None,
) -> None:
    """Replace the member's timer of ``kind`` by one at ``due`` (or none)."""
    due = maybe_utc(due)
    current = _current(kind, member)
    if current is not None and key(kind, member.customer_id, current) != fired:
        await timers.cancel(session, key=key(kind, member.customer_id, current))
    _set(kind, member, due)
    if due is not None:
        await timers.schedule(
            session,
            kind=kind,
            key=key(kind, member.customer_id, due),
            due_at=due,
            payload={"customer_id": member.customer_id},
        )


async def cancel_all(session: AsyncSession, member: Member) -> None:
    for kind in (EXPIRE, NOTICE, TIER_REVIEW, RELEASE, BIRTHDAY):
        await move(session, kind, member, None)


def _current(kind: str, member: Member) -> datetime | None:
    if kind == EXPIRE:
        return maybe_utc(member.next_expiry_at)
    if kind == NOTICE:
        return maybe_utc(member.next_notice_at)
    if kind == RELEASE:
        return maybe_utc(member.next_release_at)
    if kind == BIRTHDAY:
        return maybe_utc(member.next_birthday_at)
    return maybe_utc(member.next_review_at)


def _set(kind: str, member: Member, due: datetime | None) -> None:
    if kind == EXPIRE:
        member.next_expiry_at = due
    elif kind == NOTICE:
        member.next_notice_at = due
    elif kind == RELEASE:
        member.next_release_at = due
    elif kind == BIRTHDAY:
        member.next_birthday_at = due
    else:
        member.next_review_at = due
