"""Turning purchases and interactions into points."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import LedgerEntry, Member, Purchase
from services.loyalty.service import (
    earned,
    held,
    ledger,
    prefetch,
    refunds,
    rollup,
    rulebook,
    tiers,
)
from services.loyalty.service.common import utc
from services.loyalty.service.earned import Earning
from services.loyalty.service.ledger import Why
from services.loyalty.service.rules import (
    Campaign,
    Milestone,
    Quote,
    Rules,
    milestones_reached,
    quote_purchase,
    unit_points,
)
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.interactions import InteractionRecorded

SEEN = "loyalty.purchases_seen"


def _reversible(rule_id: str | None) -> bool:
    """Refunds take back base and campaign points, never a milestone's."""
    return rule_id is not None and not rule_id.startswith("milestone:")


async def award_purchase(
    session: AsyncSession, *, event: PurchaseCompleted, settings: LoyaltySettings
) -> int:
    """Earn for a purchase, once per purchase id.

    The hot path: nothing is flushed per event, so a consumer batch writes its ledger
    entries, lots, purchases and member updates in a few multi-row statements at commit.
    Reads that need this batch's pending rows flush first (refunds, tiers, budgets).
    """
    with session.no_autoflush:
        return await _award_purchase(session, event, settings)


async def _award_purchase(
    session: AsyncSession, event: PurchaseCompleted, settings: LoyaltySettings
) -> int:
    data = event.data
    seen: set[str] = session.info.setdefault(SEEN, set())
    if data.purchase_id in seen:
        return 0
    known, refunds_waiting = await prefetch.purchase_state(session, event, seen)
    if known:
        return 0  # the same purchase again under another event id: counted once
    seen.add(data.purchase_id)
    rules = await rulebook.current(session, settings)
    member = await repository.lock_member(session, event.subject)
    tier = rules.tier(member.tier)  # held before the purchase, as for the multiplier
    earning, quote = await _earn(session, member, rules, event)
    reversible = sum(e.points for e in earning.entries if _reversible(e.rule_id))
    occurred_at = utc(event.time)
    tier_name = tier.name if tier is not None else member.tier
    row = {
        "purchase_id": data.purchase_id,
        "customer_id": member.customer_id,
        "occurred_at": occurred_at,
        "total": data.total.amount,
        "currency": data.total.currency,
        "points": reversible,
        "reversed_points": 0,
        "refunded_exact": Decimal(0),
        "unit_points": unit_points(reversible, quote.line_weights, data.lines),
        "tier": tier_name,
    }
    rollup.count_purchase(
        session,
        customer_id=member.customer_id,
        tier=tier_name,
        currency=data.total.currency,
        total=data.total.amount,
        at=occurred_at,
    )
    if not refunds_waiting:  # the usual case: nothing reads the purchase in this batch
        held.hold(session, held.PURCHASES, row)
        await _finish(session, member, rules, earning, event, hold=True)
        return earning.points
    purchase = Purchase(**row)  # the refunds change it
    session.add(purchase)
    await _finish(session, member, rules, earning, event, hold=True)
    await held.flush(session)
    for refund in await repository.pending_refunds(session, data.purchase_id):
        await refunds.apply(session, member, purchase, refund)
    return earning.points


async def _earn(
    session: AsyncSession, member: Member, rules: Rules, event: PurchaseCompleted
) -> tuple[Earning, Quote]:
    """Post the base, campaign and milestone entries a purchase earns."""
    data = event.data
    quote = quote_purchase(
        rules,
        amount=data.total.amount,
        currency=data.total.currency,
        lines=data.lines,
        when=utc(event.time),
        tier=member.tier,
    )
    earning = Earning()
    base = _post_base(session, member, rules, quote, event)
    if base is not None:
        earning.entries.append(base)
    for campaign, bonus in quote.campaigns:
        capped = await _within_budget(session, member, campaign, bonus)
        if capped > 0:
            earning.entries.append(_post_campaign(session, member, rules, campaign, capped, event))
    member.purchase_count += 1
    for milestone in milestones_reached(rules, member.purchase_count):
        if milestone.reward_name:
            earning.unlocked.append(milestone)
        if milestone.points > 0:
            earning.entries.append(_post_milestone(session, member, rules, milestone, event))
    return earning, quote


def _post_base(
    session: AsyncSession, member: Member, rules: Rules, quote: Quote, event: PurchaseCompleted
) -> LedgerEntry | None:
    if quote.base <= 0:
        return None
    data = event.data
    reason = f"purchase {data.purchase_id}: {data.total.amount} {data.total.currency}"
    reason += f" at {rules.rate(data.total.currency)} pt/unit"
    if quote.line_weights:
        reason += " with category/SKU multipliers"
    if quote.tier_multiplier != 1:
        reason += f", tier x{quote.tier_multiplier}"
    why = Why(
        reason=reason,
        key=f"earn:{data.purchase_id}:base",
        source_event_id=event.id,
        purchase_id=data.purchase_id,
        rule_id="base",
        rule_version=rules.version,
    )
    return ledger.post(
        session, member, kind="earn", points=quote.base, why=why, at=event.time, hold=True
    )


def _post_campaign(
    session: AsyncSession,
    member: Member,
    rules: Rules,
    campaign: Campaign,
    points: int,
    event: PurchaseCompleted,
) -> LedgerEntry:
    why = Why(
        reason=f"campaign {campaign.name}",
        key=f"earn:{event.data.purchase_id}:campaign:{campaign.id}",
        source_event_id=event.id,
        purchase_id=event.data.purchase_id,
        rule_id=f"campaign:{campaign.id}",
        rule_version=rules.version,
    )
    return ledger.post(
        session, member, kind="earn", points=points, why=why, at=event.time, hold=True
    )


def _post_milestone(
    session: AsyncSession,
    member: Member,
    rules: Rules,
    milestone: Milestone,
    event: PurchaseCompleted,
) -> LedgerEntry:
    why = Why(
        reason=f"milestone: purchase number {milestone.nth_purchase}",
        key=f"earn:{event.data.purchase_id}:milestone:{milestone.id}",
        source_event_id=event.id,
        purchase_id=event.data.purchase_id,
        rule_id=f"milestone:{milestone.id}",
        rule_version=rules.version,
    )
    return ledger.post(
        session, member, kind="earn", points=milestone.points, why=why, at=event.time, hold=True
    )


async def _within_budget(
    session: AsyncSession, member: Member, campaign: Campaign, bonus: int
) -> int:
    """The bonus, cut to what the member's and the global budget have left.

    The usage rows are locked once per transaction and then kept in memory
    (``repository.lock_campaign_usage``), so this batch's earlier bonuses are counted
    without a flush.
    """
    usages = []
    if campaign.member_budget is not None:
        usage = await repository.lock_campaign_usage(session, campaign.id, member.customer_id)
        bonus = min(bonus, campaign.member_budget - usage.points)
        usages.append(usage)
    if campaign.global_budget is not None:
        usage = await repository.lock_campaign_usage(session, campaign.id, "*")
        bonus = min(bonus, campaign.global_budget - usage.points)
        usages.append(usage)
    bonus = max(0, bonus)
    for usage in usages:
        usage.points += bonus
    return bonus


async def award_interaction(
    session: AsyncSession, *, event: InteractionRecorded, settings: LoyaltySettings
) -> int:
    rules = await rulebook.current(session, settings)
    kind = event.data.kind
    points = rules.body.interaction_points.get(kind, 0) if kind in ("review", "referral") else 0
    if points <= 0:
        return 0
    member = await repository.lock_member(session, event.subject)
    why = Why(
        reason=f"{kind} ({event.data.channel})",
        key=f"earn:interaction:{event.id}",
        source_event_id=event.id,
        rule_id=f"interaction:{kind}",
        rule_version=rules.version,
    )
    entry = ledger.post(session, member, kind="earn", points=points, why=why, at=event.time)
    await _finish(session, member, rules, Earning(entries=[entry]), event)
    return points


async def _finish(
    session: AsyncSession,
    member: Member,
    rules: Rules,
    earning: Earning,
    event: Event,
    *,
    hold: bool = False,
) -> None:
    """Lot, tier, and the events: what every earning ends with (``hold``: a purchase's)."""
    at = utc(event.time)
    pending_until = None
    if earning.points > 0:
        lot = await ledger.add_lot(
            session,
            member,
            earning.entries[0],
            points=earning.points,
            expiry_days=rules.body.expiry_days,
            notice_days=rules.body.expiring_notice_days,
            pending_days=rules.body.pending_days if isinstance(event, PurchaseCompleted) else None,
            hold=hold,
        )
        pending_until = lot.pending_until
    await earned.publish(session, member, rules, earning, event, at, pending_until)
    await tiers.on_earn(session, member, rules, at=at)  # tier.changed after what caused it
