"""Tiers: earned by points earned (net of reversals) or net spend over a rolling window.

Upgrades happen as soon as a purchase (in event time) lifts the window total over a
higher threshold. Downgrades follow the policy: ``none`` never; ``window_end`` at the
review ``tier_since + window``; ``grace`` at ``tier_since + window + grace``. At a
review the member keeps the tier the last ``window`` days support (renewed for
another period) or falls to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Member, TierChange
from services.loyalty.service import held, rulebook, schedule
from services.loyalty.service.common import SOURCE, utc
from services.loyalty.service.rules import Rules, Tier
from shared import outbox
from shared.events import derived_id
from shared.events.loyalty import TierChanged, TierChangedData
from shared.timers import Timer


async def qualifying(session: AsyncSession, member: Member, rules: Rules, until: datetime) -> int:
    policy = rules.body.tier_policy
    ids = await repository.alias_ids(session, member.customer_id)
    since = until - timedelta(days=policy.window_days)
    value = await repository.qualifying(session, ids, basis=policy.basis, since=since, until=until)
    return int(value)


async def on_earn(session: AsyncSession, member: Member, rules: Rules, *, at: datetime) -> None:
    if not rules.body.tiers or _out_of_reach(member, rules):
        return
    await held.flush(session)  # the window sum must include this batch's entries
    amount = await qualifying(session, member, rules, at)
    target = rules.tier_for(amount)
    if target is not None and rules.rank(target.name) > rules.rank(member.tier):
        reason = f"{amount} {rules.body.tier_policy.basis} in the last "
        reason += f"{rules.body.tier_policy.window_days} days reached {target.threshold}"
        await change(session, member, rules, target, reason=reason, at=at)


def _out_of_reach(member: Member, rules: Rules) -> bool:
    """No upgrade is possible: the next tier up needs more than the member ever earned.

    On the ``earned`` basis the window sums the earn and reverse entries of the
    member and its merged ids; earn entries are positive and all of them, whenever
    earned, add up to ``lifetime_earned`` (merges carry it to the survivor), and
    reversals only subtract, so no window exceeds it. Then neither the flush nor the
    window query can change the answer, and a purchase (in a consumer batch) skips both.
    """
    if rules.body.tier_policy.basis != "earned":
        return False
    tiers = rules.sorted_tiers()
    above = rules.rank(member.tier) + 1
    return above >= len(tiers) or tiers[above].threshold > member.lifetime_earned


async def change(
    session: AsyncSession, member: Member, rules: Rules, new: Tier, *, reason: str, at: datetime
) -> None:
    old = rules.tier(member.tier)
    direction = "up" if rules.rank(new.name) > rules.rank(member.tier) else "down"
    member.tier = new.name
    member.tier_since = at
    await schedule.move(session, schedule.TIER_REVIEW, member, _review_at(rules, new, at))
    session.add(
        TierChange(
            customer_id=member.customer_id,
            old_tier=old.name if old is not None else None,
            new_tier=new.name,
            direction=direction,
            reason=reason[:300],
            occurred_at=at,
        )
    )
    event = TierChanged.create(
        id=derived_id("tier.changed", member.customer_id, new.name, at.isoformat()),
        subject=member.customer_id,
        source=SOURCE,
        time=at,
        data=TierChangedData(
            old_tier=old.name if old is not None else None,
            new_tier=new.name,
            direction=direction,
            reason=reason,
            benefits=list(new.perks),
            multiplier=str(new.multiplier),
        ),
    )
    await outbox.enqueue(session, event)


async def rearm_review(
    session: AsyncSession, member: Member, rules: Rules, *, now: datetime
) -> None:
    """Schedule the review of the member's tier where its policy puts it (at once if that
    is past): for a member whose timers were cancelled, e.g. merged away and restored."""
    tier = rules.tier(member.tier)
    due = None
    if tier is not None and member.tier_since is not None:
        due = _review_at(rules, tier, utc(member.tier_since))
    await schedule.move(session, schedule.TIER_REVIEW, member, due and max(due, now))


def _review_at(rules: Rules, tier: Tier, since: datetime) -> datetime | None:
    policy = rules.body.tier_policy
    if policy.downgrade == "none" or rules.rank(tier.name) == 0:
        return None
    grace = policy.grace_days if policy.downgrade == "grace" else 0
    return since + timedelta(days=policy.window_days + grace)


async def review(session: AsyncSession, timer: Timer, *, settings: LoyaltySettings) -> None:
    """A tier review is due: keep (and renew) the tier the window supports, or fall to it."""
    member = await repository.lock_member_or_none(session, timer.payload["customer_id"])
    if member is None or member.customer_id != timer.payload["customer_id"]:
        return  # merged away or erased: the survivor has its own review
    rules = await rulebook.current(session, settings)
    at = utc(timer.due_at)
    amount = await qualifying(session, member, rules, at)
    supported = rules.tier_for(amount)
    current = rules.tier(member.tier)
    if supported is None or current is None:
        await schedule.move(session, schedule.TIER_REVIEW, member, None, fired=timer.key)
        return
    if rules.rank(supported.name) >= rules.rank(current.name):
        await schedule.move(
            session, schedule.TIER_REVIEW, member, _review_at(rules, current, at), fired=timer.key
        )
        member.tier_since = at
        return
    await schedule.move(session, schedule.TIER_REVIEW, member, None, fired=timer.key)
    reason = f"only {amount} {rules.body.tier_policy.basis} in the last "
    reason += f"{rules.body.tier_policy.window_days} days (needs {current.threshold})"
    await change(session, member, rules, supported, reason=reason, at=at)
