"""Profile domain logic. Takes the caller's session; flushes, never commits.

The 360° view is fed by events that may arrive late, twice (the runner
de-duplicates by id) or out of order, so every update is order-independent:
"latest" fields keep the max event time, "earliest" the min, counters and sums
are commutative, and the net spend is computed when read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Customer
from shared import outbox
from shared.events import Event, InvalidEvent, Money, derived_id, validate_python
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from shared.events.common import ContactHint
from shared.events.engagement import OutreachSent
from shared.events.interactions import InteractionRecorded
from shared.events.loyalty import PointsEarned
from shared.events.profile import CustomerDetails, CustomerRegistered, CustomerUpdated
from shared.http import AppError, NotFound

log = logging.getLogger(__name__)

SOURCE = "keepwell/profile"
CONTACT_FIELDS = ("name", "email", "phone", "language")
INGESTIBLE: tuple[type[Event], ...] = (PurchaseCompleted, PurchaseRefunded, InteractionRecorded)
MAX_INGEST_BATCH = 500


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class EventRejected(AppError):
    """A posted event that is not valid, or not one the ingest endpoint accepts."""

    status_code = 422
    code = "invalid_event"


class MalformedBody(AppError):
    status_code = 422
    code = "invalid_json"


@dataclass(frozen=True, slots=True)
class CustomerView:
    customer: Customer
    channels: list[str]
    total_spend: Money | None


# --- the customer of record -------------------------------------------------


async def _customer_for(
    session: AsyncSession, event: Event, hint: ContactHint | None = None
) -> Customer:
    """The customer ``event`` is about, locked; created (and announced) on first sight."""
    customer, created = await repository.get_customer_for_update(session, event.subject)
    changed = _apply_contact(customer, hint, event.time)
    if created:
        await _announce(session, CustomerRegistered, customer, cause=event)
    elif changed:
        await _announce(session, CustomerUpdated, customer, cause=event)
    return customer


def _apply_contact(customer: Customer, hint: ContactHint | None, at: datetime) -> bool:
    """Fill unknown details; overwrite known ones only from an event not older than the
    last details applied (a late, older hint must not undo a newer one). True if changed.
    """
    given = {f: v for f in CONTACT_FIELDS if (v := getattr(hint, f, None)) is not None}
    if not given:
        return False
    newer = _is_current(customer.contact_seen_at, at)
    changed = False
    for field, value in given.items():
        old = getattr(customer, field)
        if value != old and (old is None or newer):
            setattr(customer, field, value)
            changed = True
    customer.contact_seen_at = _latest(customer.contact_seen_at, at)
    return changed


async def _announce(
    session: AsyncSession,
    kind: type[CustomerRegistered | CustomerUpdated],
    customer: Customer,
    *,
    cause: Event,
) -> None:
    event_type = kind.model_fields["type"].default
    announcement = kind.create(
        id=derived_id(event_type, cause.source, cause.id),
        subject=customer.customer_id,
        source=SOURCE,
        time=cause.time,
        data=details(customer),
    )
    await outbox.enqueue(session, announcement)


def details(customer: Customer) -> CustomerDetails:
    return CustomerDetails(
        name=customer.name,
        email=customer.email,
        phone=customer.phone,
        language=customer.language,
        timezone=customer.timezone,
    )


# --- the 360° view, from events ----------------------------------------------


async def record_purchase(session: AsyncSession, *, event: PurchaseCompleted) -> None:
    customer = await _customer_for(session, event, event.data.customer)
    customer.order_count += 1
    if _in_spend_currency(customer, event.data.total):
        customer.gross_spend += event.data.total.amount
    customer.first_purchase_at = _earliest(customer.first_purchase_at, event.time)
    customer.last_purchase_at = _latest(customer.last_purchase_at, event.time)
    await repository.touch_channel(session, customer.customer_id, event.data.channel, event.time)


async def record_refund(session: AsyncSession, *, event: PurchaseRefunded) -> None:
    """Refunds are summed apart from purchases, so a refund seen first still converges."""
    customer = await _customer_for(session, event)
    if _in_spend_currency(customer, event.data.amount):
        customer.refunded_spend += event.data.amount.amount


async def record_interaction(session: AsyncSession, *, event: InteractionRecorded) -> None:
    customer = await _customer_for(session, event)
    await repository.touch_channel(session, customer.customer_id, event.data.channel, event.time)


async def record_points(session: AsyncSession, *, event: PointsEarned) -> None:
    """The last balance loyalty published wins.

    Loyalty's events for one customer arrive in ledger order (one partition, one
    outbox), but carry the purchase's own time, which can be older than an earlier
    entry's: comparing times would drop a late till upload's newer balance.
    """
    customer = await _customer_for(session, event)
    customer.points_balance = event.data.balance
    customer.points_updated_at = _latest(customer.points_updated_at, event.time)


async def record_outreach(session: AsyncSession, *, event: OutreachSent) -> None:
    customer = await _customer_for(session, event)
    if _is_current(customer.last_outreach_at, event.time):
        customer.last_outreach_at = event.time
        customer.last_outreach_journey = event.data.journey


def _in_spend_currency(customer: Customer, money: Money) -> bool:
    """Spend is kept in the first currency seen; other currencies are counted, not summed.

    Multi-currency spend (per-currency sums or conversion) is future work.
    """
    if customer.spend_currency is None:
        customer.spend_currency = money.currency
    if money.currency == customer.spend_currency:
        return True
    log.info(
        "amount not added to lifetime spend: currency differs",
        extra={"currency": money.currency, "spend_currency": customer.spend_currency},
    )
    return False


def _is_current(seen: datetime | None, at: datetime) -> bool:
    """An event at ``at`` is at least as new as what we hold (ties: the later arrival wins)."""
    return seen is None or at >= seen


def _latest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else max(current, at)


def _earliest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None else min(current, at)


# --- reading -------------------------------------------------------------------


async def get_customer_view(session: AsyncSession, *, customer_id: str) -> CustomerView:
    customer = await repository.get_customer(session, customer_id)
    if customer is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    channels = await repository.list_channels(session, customer_id)
    return CustomerView(customer, [c.channel for c in channels], net_spend(customer))


def net_spend(customer: Customer) -> Money | None:
    """Purchases minus refunds, never below zero; None before any money event."""
    if customer.spend_currency is None:
        return None
    amount = max(Decimal(0), customer.gross_spend - customer.refunded_spend)
    return Money(amount=amount, currency=customer.spend_currency)


# --- REST ingest -----------------------------------------------------------------


async def ingest(session: AsyncSession, *, body: Any) -> Sequence[Event]:
    """Validate posted events (all or nothing) and queue them for their topics.

    Re-posting an event (same source and id) is safe: consumers de-duplicate by them.
    """
    events = parse_ingest(body)
    await outbox.enqueue(session, *events)
    return events


def parse_ingest(body: Any) -> list[Event]:
    if isinstance(body, dict):
        return [_ingestible(body)]
    if not isinstance(body, list):
        raise EventRejected("the body must be a CloudEvent JSON object or an array of them")
    if not body:
        raise EventRejected("the array holds no events")
    if len(body) > MAX_INGEST_BATCH:
        raise EventRejected(f"{len(body)} events in one request; at most {MAX_INGEST_BATCH}")
    return [_ingestible(item, index) for index, item in enumerate(body)]


def _ingestible(obj: Any, index: int | None = None) -> Event:
    where = "" if index is None else f"event {index}: "
    try:
        event = validate_python(obj)
    except InvalidEvent as exc:
        raise EventRejected(where + exc.reason) from exc
    if not isinstance(event, INGESTIBLE):
        accepted = ", ".join(cls.model_fields["type"].default for cls in INGESTIBLE)
        raise EventRejected(
            f"{where}event type {event.type!r} cannot be ingested here (accepted: {accepted})"
        )
    return event
