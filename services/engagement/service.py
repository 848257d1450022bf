"""Engagement domain logic. Takes the caller's session; flushes, never commits.

This module plans messages (journeys) and keeps contacts; ``delivery`` moves a
planned message through its life cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import held, prefetch, recommendations, repository
from services.engagement.catalog import THANK_YOU
from services.engagement.config import EngagementSettings
from services.engagement.models import PENDING, SUPPRESSED, Outreach
from services.engagement.notices import publish_suppressed
from services.engagement.policy import known_zone
from shared.db import mark
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.profile import (
    ConsentChanged,
    CustomerDetails,
    CustomerRegistered,
    CustomerUpdated,
)
from shared.http import NotFound

__all__ = ["THANK_YOU", "OutreachPlan", "schedule_outreach", "utc"]
OUTREACH_FLAG = "engagement.outreach"  # marks a transaction the sender should wake for


class OutreachNotFound(NotFound):
    code = "outreach_not_found"


@dataclass(frozen=True, slots=True)
class OutreachPlan:
    """One journey step for one customer: what to send, when, and why."""

    customer_id: str
    journey: str
    template: str
    dedupe_key: str
    due_at: datetime
    trigger_event_id: str | None = None
    channel: str = "email"
    context: dict[str, Any] = field(default_factory=dict)
    trigger_at: datetime | None = None
    to_address: str | None = None


def utc(moment: datetime) -> datetime:
    """Every stored time is UTC (SQLite keeps no offset, so mixed zones would misorder)."""
    return moment.astimezone(UTC)


async def record_contact(
    session: AsyncSession, *, event: CustomerRegistered | CustomerUpdated
) -> None:
    """Keep the customer's contact details; the newest profile event wins.

    In a consumer batch the upserts are held and written at commit (``held``)."""
    await record_details(session, customer_id=event.subject, details=event.data, at=event.time)


async def record_details(
    session: AsyncSession, *, customer_id: str, details: CustomerDetails, at: datetime
) -> None:
    """``record_contact`` for details that came otherwise (a restored customer's)."""
    quiet = details.quiet_hours
    at = utc(at)
    values = {
        "customer_id": customer_id,
        "name": details.name,
        "email": details.email,
        "phone": details.phone,
        "language": details.language,
        "timezone": known_zone(details.timezone),
        "quiet_start": quiet.start if quiet else None,
        "quiet_end": quiet.end if quiet else None,
        "updated_at": at,
    }
    consents = [
        {"customer_id": customer_id, "channel": channel, "status": status, "changed_at": at}
        for channel, status in details.consents.items()
    ]
    holding = held.of(session)
    if holding is not None:
        holding.contact(values)
        for consent in consents:
            holding.consent(consent)
    else:
        await repository.upsert_contact(session, values)
        for consent in consents:
            await repository.upsert_consent(session, consent)
    mark(session, OUTREACH_FLAG)  # a waiting message may now have an address


async def record_consent_change(session: AsyncSession, *, event: ConsentChanged) -> None:
    """One channel's consent; a statement older than the stored one is ignored."""
    data = event.data
    values = {
        "customer_id": event.subject,
        "channel": data.channel,
        "status": data.status,
        "changed_at": utc(data.changed_at),
    }
    holding = held.of(session)
    if holding is not None:
        holding.consent(values)
    else:
        await repository.upsert_consent(session, values)


def outreach_values(
    plan: OutreachPlan, *, now: datetime, suppressed: str | None = None
) -> dict[str, Any]:
    """The outreach row that plans ``plan`` (see ``schedule_outreach``)."""
    return {
        "id": str(uuid.uuid4()),
        "customer_id": plan.customer_id,
        "journey": plan.journey,
        "channel": plan.channel,
        "template": plan.template,
        "trigger_event_id": plan.trigger_event_id,
        "dedupe_key": plan.dedupe_key,
        "status": SUPPRESSED if suppressed else PENDING,
        "attempts": 0,
        "last_error": suppressed,
        "context": plan.context,
        "due_at": utc(plan.due_at),
        "created_at": utc(now),
        "trigger_at": utc(plan.trigger_at) if plan.trigger_at else None,
        "to_address": plan.to_address,
    }


async def schedule_outreach(
    session: AsyncSession, plan: OutreachPlan, *, now: datetime, suppressed: str | None = None
) -> bool:
    """Record a planned message; False if this journey step was already planned.

    ``suppressed`` records the step as decided-against, with the reason, so the
    history shows why nothing was sent, and publishes ``outreach.suppressed``.
    """
    values = outreach_values(plan, now=now, suppressed=suppressed)
    inserted = await repository.insert_outreach(session, values)
    if inserted and not suppressed:
        mark(session, OUTREACH_FLAG)
    if inserted and suppressed:
        await publish_suppressed(session, str(values["id"]), now=now)
    return inserted


async def plan_thank_you(
    session: AsyncSession,
    *,
    event: PurchaseCompleted,
    now: datetime,
    max_age: timedelta,
    settings: EngagementSettings,
) -> bool:
    """A thank-you e-mail for a purchase, due at once; at most one per purchase.

    The key is the purchase (scoped by its source), not the event id: the consumer
    already skips a re-delivered event, and this also catches a till that re-sends
    the same sale under a new event id. Purchases older than ``max_age`` (a replay
    of history) are recorded as suppressed rather than thanked years late.
    The journey's settings (enabled, delay, first channel, template) apply.
    """
    config = await prefetch.journey(session, event, THANK_YOU, settings)
    if not config.enabled:
        return False
    suggestions = {
        "recommendations": await recommendations.recommend(session, event.data, event=event),
        "bought_after": await recommendations.recommend_after(session, event.data, event=event),
    }
    plan = OutreachPlan(
        customer_id=event.subject,
        journey=THANK_YOU,
        template=config.template,
        dedupe_key=f"{THANK_YOU}:{event.source}:{event.data.purchase_id}",
        due_at=now + config.delay,
        trigger_event_id=event.id,
        channel=config.channels[0],
        context=thank_you_context(event.data) | suggestions,
        trigger_at=event.time,
    )
    too_old = now - event.time > max_age
    reason = f"purchase older than {max_age} when processed" if too_old else None
    run = prefetch.run_of(session, event)
    if run is None:
        return await schedule_outreach(session, plan, now=now, suppressed=reason)
    # In a run: the run knows the keys planned so far (read ahead, then its own), so
    # "planned once" is decided here; a pending thank-you is held and written at commit.
    if plan.dedupe_key in run.thanked:
        return False
    run.thanked.add(plan.dedupe_key)
    holding = held.of(session)
    if reason is not None or holding is None:
        return await schedule_outreach(session, plan, now=now, suppressed=reason)
    holding.outreach[plan.dedupe_key] = outreach_values(plan, now=now)
    mark(session, OUTREACH_FLAG)
    return True


def thank_you_context(data: PurchaseCompletedData) -> dict[str, Any]:
    """What the thank-you template needs, frozen at purchase time (JSON-safe)."""
    return {
        "purchase_id": data.purchase_id,
        "total": {"amount": str(data.total.amount), "currency": data.total.currency},
        "items": [
            {"name": line.name, "quantity": line.quantity} for line in data.lines if line.name
        ],
    }


async def list_outreach(
    session: AsyncSession, *, customer_id: str, limit: int, before_id: str | None
) -> Sequence[Outreach]:
    before = None
    if before_id is not None:
        before = await repository.get_outreach(session, before_id)
        if before is None or before.customer_id != customer_id:
            raise OutreachNotFound(f"no outreach {before_id!r} for customer {customer_id!r}")
    return await repository.list_outreach(session, customer_id, limit=limit, before=before)


async def attribute(session: AsyncSession, event: PurchaseCompleted, *, window: float) -> None:
    """Attribute the purchase to the last message sent to the customer within ``window`` s."""
    at = utc(event.time)
    since = at - timedelta(seconds=window)
    purchase_key = recommendations.purchase_key(event)
    run = prefetch.run_of(session, event)
    if run is None or not prefetch.covers(run, since=since, until=at):
        await repository.attribute_purchase(
            session,
            customer_id=event.subject,
            purchase_key=purchase_key,
            purchased_at=at,
            since=since,
        )
        return
    outreach_id = prefetch.last_sent(run, event.subject, since=since, until=at)
    if outreach_id is not None:
        await repository.record_conversion(
            session,
            purchase_key=purchase_key,
            outreach_id=outreach_id,
            customer_id=event.subject,
            purchased_at=at,
        )
