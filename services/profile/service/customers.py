"""The customer of record: finding (or creating) the customer an event is about,
contact details, announcements and the read side of the 360° view."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Consent, Customer
from services.profile.service import batching
from shared import outbox
from shared.events import Event, Money, derived_id
from shared.events.common import ContactHint
from shared.events.profile import CustomerDetails, CustomerRegistered, CustomerUpdated, QuietHours
from shared.http import NotFound

log = logging.getLogger(__name__)

SOURCE = "keepwell/profile"
CONTACT_FIELDS = ("name", "email", "phone", "language")


class CustomerNotFound(NotFound):
    code = "customer_not_found"


@dataclass(frozen=True, slots=True)
class CustomerView:
    customer: Customer
    channels: list[str]
    total_spend: Money | None
    consents: list[Consent]
    segments: list[str]


async def customer_for(
    session: AsyncSession, event: Event, hint: ContactHint | None = None
) -> Customer:
    """The customer ``event`` is about, locked; created (and announced) on first sight.

    An id absorbed by a merge resolves to its survivor; an erased customer takes
    no contact details (its tombstone stays anonymous).
    """
    ahead = await batching.state(session, event)
    known = batching.taken(ahead, event.subject) if ahead is not None else None
    customer, created = known or await repository.get_customer_for_update(session, event.subject)
    if customer.merged_into is not None:
        customer = await live_customer(session, customer.merged_into)
    if customer.erased_at is not None:
        return customer
    changed = apply_contact(customer, hint, event.time)
    if created:  # a customer created just now has no consent yet
        await announce(session, CustomerRegistered, customer, cause=event, consents=[])
    elif changed:
        none: list[Consent] | None = (
            [] if batching.made_here(session, customer.customer_id) else None
        )
        await announce(session, CustomerUpdated, customer, cause=event, consents=none)
    return customer


async def live_customer(session: AsyncSession, customer_id: str) -> Customer:
    """The customer with this id, or the survivor it was merged into; locked."""
    customer = batching.locked(session, customer_id) or await repository.lock_customer(
        session, customer_id
    )
    if customer is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    if customer.merged_into is not None:
        return await live_customer(session, customer.merged_into)
    return customer


def apply_contact(customer: Customer, hint: ContactHint | None, at: datetime) -> bool:
    """Fill unknown details; overwrite known ones only from an event not older than the
    last details applied (a late, older hint must not undo a newer one). True if changed.
    """
    given = {f: v for f in CONTACT_FIELDS if (v := getattr(hint, f, None)) is not None}
    if not given:
        return False
    newer = is_current(customer.contact_seen_at, at)
    changed = False
    for field, value in given.items():
        old = getattr(customer, field)
        if value != old and (old is None or newer):
            set_contact(customer, field, value)
            changed = True
    customer.contact_seen_at = latest(customer.contact_seen_at, at)
    return changed


def set_contact(customer: Customer, field: str, value: str | None) -> None:
    setattr(customer, field, value)
    if field == "name":
        customer.name_folded = value.casefold() if value else None


async def announce(
    session: AsyncSession,
    kind: type[CustomerRegistered | CustomerUpdated],
    customer: Customer,
    *,
    cause: Event | None = None,
    event_id: str | None = None,
    at: datetime | None = None,
    consents: list[Consent] | None = None,
) -> None:
    """Publish the customer's full details; ids derive from the cause when there is one.

    The snapshot is stamped with the time profile made it, never the cause's event
    time: consumers keep the newest snapshot, and a purchase delivered after a later
    refund (or imported from history) must still replace what they hold.
    """
    event_type = kind.model_fields["type"].default
    if cause is not None:
        event_id, at = derived_id(event_type, cause.source, cause.id), datetime.now(UTC)
    if consents is None:
        consents = await repository.list_consents(session, customer.customer_id)
    announcement = kind.create(
        id=event_id,
        subject=customer.customer_id,
        source=SOURCE,
        time=at,
        data=details(customer, consents),
    )
    await outbox.enqueue(session, announcement)


def details(customer: Customer, consents: list[Consent] | None = None) -> CustomerDetails:
    quiet = (
        QuietHours(start=customer.quiet_start, end=customer.quiet_end)
        if customer.quiet_start and customer.quiet_end
        else None
    )
    return CustomerDetails.model_validate(
        {
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "language": customer.language,
            "timezone": customer.timezone,
            "birthday": customer.birthday,
            "consents": {c.channel: c.status for c in consents or ()},
            "preferred_channel": customer.preferred_channel,
            "quiet_hours": quiet,
        }
    )


def is_current(seen: datetime | None, at: datetime) -> bool:
    """An event at ``at`` is at least as new as what we hold (ties: the later arrival wins)."""
    return seen is None or at >= seen


def latest(current: datetime | None, at: datetime | None) -> datetime | None:
    if current is None or at is None:
        return at or current
    return max(current, at)


def earliest(current: datetime | None, at: datetime | None) -> datetime | None:
    if current is None or at is None:
        return at or current
    return min(current, at)


# --- reading -------------------------------------------------------------------


async def find_customer(session: AsyncSession, customer_id: str) -> Customer:
    """The customer, following merges to the survivor; 404 if unknown."""
    customer = await repository.get_customer(session, customer_id)
    seen = 0
    while customer is not None and customer.merged_into is not None and seen < 16:
        customer, seen = await repository.get_customer(session, customer.merged_into), seen + 1
    if customer is None:
        raise CustomerNotFound(f"no customer with id {customer_id!r}")
    return customer


async def get_customer_view(session: AsyncSession, *, customer_id: str) -> CustomerView:
    customer = await find_customer(session, customer_id)
    rows = await repository.view_rows(session, customer.customer_id)
    return CustomerView(customer, rows.channels, net_spend(customer), rows.consents, rows.segments)


def net_spend(customer: Customer) -> Money | None:
    """Purchases minus refunds, never below zero; None before any money event."""
    if customer.spend_currency is None:
        return None
    amount = max(Decimal(0), customer.gross_spend - customer.refunded_spend)
    return Money(amount=amount, currency=customer.spend_currency)
