"""Members: reading, operator adjustments, merging two into one and undoing it, erasure."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import LedgerEntry, Lot, Member
from services.loyalty.service import birthdays, ledger, rulebook, schedule, tiers
from services.loyalty.service.common import SOURCE, utc
from services.loyalty.service.errors import InsufficientPoints, MemberNotFound, ReferenceReused
from services.loyalty.service.ledger import Why
from shared import outbox
from shared.events import Event, derived_id
from shared.events.loyalty import (
    PointsEarned,
    PointsEarnedData,
    PointsReversed,
    PointsReversedData,
)
from shared.events.profile import CustomerErased, CustomerMerged, CustomerUnmerged


async def get_member(session: AsyncSession, *, customer_id: str) -> Member:
    member = await repository.get_member(session, customer_id)
    if member is None:
        raise MemberNotFound(f"no loyalty member with customer id {customer_id!r}")
    return member


async def adjust(
    session: AsyncSession,
    *,
    customer_id: str,
    points: int,
    reason: str,
    reference: str,
    operator: str,
    now: datetime,
    settings: LoyaltySettings,
) -> tuple[LedgerEntry, bool]:
    """A manual correction; ``reference`` makes it idempotent. Returns (entry, replayed)."""
    member = await repository.lock_member(session, customer_id)
    key = f"adjust:{reference}"
    earlier = await _entry(session, key)
    if earlier is not None:
        if (earlier.customer_id, earlier.points) != (member.customer_id, points):
            raise ReferenceReused(f"reference {reference!r} was used for another adjustment")
        return earlier, True
    if points < 0 and member.spendable + points < 0:
        raise InsufficientPoints(
            f"spendable balance {member.spendable} cannot cover a {points} adjustment"
        )
    rules = await rulebook.current(session, settings)
    why = Why(reason=reason, key=key, rule_id="adjustment", operator=operator, reference=reference)
    entry = ledger.post(session, member, kind="adjust", points=points, why=why, at=now)
    if points > 0:
        await ledger.add_lot(
            session,
            member,
            entry,
            points=points,
            expiry_days=rules.body.expiry_days,
            notice_days=rules.body.expiring_notice_days,
        )
    else:
        await ledger.take(session, member, -points, spendable_only=True)
    await outbox.enqueue(session, _adjusted(member, entry, reference, now))
    await session.flush()
    return entry, False


async def _entry(session: AsyncSession, key: str) -> LedgerEntry | None:
    stmt = select(LedgerEntry).where(LedgerEntry.entry_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


def _adjusted(member: Member, entry: LedgerEntry, reference: str, now: datetime) -> Event:
    event_id = derived_id("points.adjusted", reference)
    reason = f"adjustment: {entry.reason}"
    if entry.points > 0:
        return PointsEarned.create(
            id=event_id,
            subject=member.customer_id,
            source=SOURCE,
            time=now,
            data=PointsEarnedData(
                points=entry.points,
                balance=member.spendable,
                reason=reason,
                source_event_id=reference,
                rule_id="adjustment",
            ),
        )
    return PointsReversed.create(
        id=event_id,
        subject=member.customer_id,
        source=SOURCE,
        time=now,
        data=PointsReversedData(
            points=-entry.points, balance=member.spendable, reason=reason, source_event_id=reference
        ),
    )


async def merge(session: AsyncSession, *, event: CustomerMerged, settings: LoyaltySettings) -> None:
    """Fold ``data.merged_id`` into ``subject``: balance, lots, history, tier progress."""
    first, second = sorted((event.subject, event.data.merged_id))
    locked = {
        first: await repository.lock_member(session, first),
        second: await repository.lock_member(session, second),
    }
    survivor, merged = locked[event.subject], locked[event.data.merged_id]
    if survivor is merged:
        return  # already one member (this merge, or an earlier one, was applied)
    at = utc(event.time)
    rules = await rulebook.current(session, settings)
    _transfer(session, merged, survivor, event, at)
    survivor.lifetime_earned += merged.lifetime_earned
    survivor.purchase_count += merged.purchase_count
    survivor.pending += merged.pending
    if rules.rank(merged.tier) > rules.rank(survivor.tier):
        survivor.tier, survivor.tier_since = merged.tier, merged.tier_since
        await schedule.move(
            session,
            schedule.TIER_REVIEW,
            survivor,
            merged.next_review_at and utc(merged.next_review_at),
        )
    if birthdays.merge(merged, survivor):
        await birthdays.arm(session, survivor, since=at.date())
    await schedule.cancel_all(session, merged)
    merged.merged_into = survivor.customer_id
    merged.lifetime_earned = merged.purchase_count = merged.pending = 0
    await session.flush()
    await repository.combine_campaign_usage(session, merged.customer_id, survivor.customer_id)
    await repository.reassign(session, merged.customer_id, survivor.customer_id)
    await _reconcile_lots(session, survivor.customer_id, rules.body.expiring_notice_days)


async def unmerge(
    session: AsyncSession, *, event: CustomerUnmerged, settings: LoyaltySettings
) -> None:
    """A merge undone: ``data.restored_id`` is its own member again from now on, so its
    later purchases, refunds of later purchases, redemptions and timers are its own, not
    the survivor's.

    What the merge moved stays with the survivor (``subject``): the balance with its lots,
    the purchases, refunds and redemptions, lifetime figures and tier progress. Points
    earned and spent since cannot be told apart; an operator who wants to give some back
    posts adjustments on both members. The restored member's ledger history never moved.
    It keeps the tier it had, reviewed as its policy says (at once if overdue), and its
    birthday timer is armed again (the birthday profile sends with the undo, else the one
    it kept). Chains are not unwound: a member merged into the restored one before the
    restored one was itself merged stays with the survivor.
    """
    restored = await repository.lock_member_row(session, event.data.restored_id)
    if restored is None or restored.merged_into is None:
        return  # never a member here, or restored already
    restored.merged_into = None
    if event.data.restored is not None:  # profile's word on the birthday, sent with the undo
        restored.birthday = event.data.restored.birthday
    at = utc(event.time)
    rules = await rulebook.current(session, settings)
    await tiers.rearm_review(session, restored, rules, now=at)
    await birthdays.arm(session, restored, since=at.date())


def _transfer(
    session: AsyncSession, merged: Member, survivor: Member, event: CustomerMerged, at: datetime
) -> None:
    points = merged.balance
    if points == 0:
        return
    merge_id = event.data.merge_id
    out = Why(
        reason="merged into another member",
        key=f"merge-out:{merge_id}",
        rule_id="merge",
        source_event_id=event.id,
        reference=merge_id,
    )
    into = Why(
        reason="merged from another member",
        key=f"merge-in:{merge_id}",
        rule_id="merge",
        source_event_id=event.id,
        reference=merge_id,
    )
    ledger.post(session, merged, kind="merge", points=-points, why=out, at=at)
    ledger.post(session, survivor, kind="merge", points=points, why=into, at=at)


async def _reconcile_lots(session: AsyncSession, customer_id: str, notice_days: int) -> None:
    """After a merge: a debt on either side eats the other side's lots; timers re-armed."""
    session.expire_all()
    repository.forget_locks(session)
    member = await repository.lock_member(session, customer_id)
    lots = await repository.lots_with_points(session, member.customer_id)
    excess = sum(lot.remaining for lot in lots) - max(0, member.balance)
    if excess > 0:
        await ledger.take(session, member, excess)
    soonest = await repository.next_expiry(session, member.customer_id, unwarned=False)
    if soonest is not None:
        await schedule.expiry(session, member, expires_at=utc(soonest), notice_days=notice_days)
    release = await repository.next_release(session, member.customer_id)
    if release is not None:
        await schedule.release(session, member, at=utc(release))


async def erase(session: AsyncSession, *, event: CustomerErased) -> None:
    """Forfeit the balance, then replace the customer id everywhere by an anonymous one."""
    # Before the member lock: a redemption locks its Idempotency-Key's row, then the member.
    await repository.forget_requests(session, await repository.alias_ids(session, event.subject))
    member = await repository.lock_member_or_none(session, event.subject)
    if member is None or member.erased_at is not None:
        return
    if member.balance > 0:
        why = Why(
            reason="forfeited: the customer's data was erased",
            key=f"forfeit:{event.id}",
            rule_id="erasure",
            source_event_id=event.id,
        )
        ledger.post(session, member, kind="forfeit", points=-member.balance, why=why, at=event.time)
        lots = await repository.lots_with_points(session, member.customer_id)
        await ledger.take(session, member, sum(lot.remaining for lot in lots))
    await schedule.cancel_all(session, member)
    ids = await repository.alias_ids(session, member.customer_id)
    await session.flush()
    for customer_id in ids:
        anonymous = f"erased-{uuid.uuid4().hex[:24]}"
        await repository.anonymise(session, customer_id, anonymous)
        await session.execute(
            update(Member)
            .where(Member.customer_id == anonymous)
            .values(erased_at=utc(event.time), merged_into=None, birthday=None)
        )
    session.expunge_all()
    repository.forget_locks(session)


__all__ = ["Lot", "adjust", "erase", "get_member", "merge", "unmerge"]
