"""Preferences and per-channel consent, set by the customer or on their behalf."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Customer
from services.profile.service import segments
from services.profile.service.customers import SOURCE, announce, live_customer
from shared import outbox
from shared.events.profile import ConsentChanged, ConsentStatus, ContactChannel, CustomerUpdated
from shared.http import AppError

EARLIEST_BIRTHDAY = date(1900, 1, 1)
AHEAD_OF_UTC = timedelta(hours=14)
"""The earliest time zone (UTC+14) may already be on the next calendar day."""


class PreferencesRejected(AppError):
    status_code = 422
    code = "invalid_preferences"


class CustomerErased(AppError):
    """An erased customer's tombstone takes no personal data."""

    status_code = 409
    code = "customer_erased"


@dataclass(frozen=True, slots=True)
class PreferencesChange:
    """What to change; ``fields`` holds only the preference fields the caller sent."""

    fields: dict[str, str | date | None]
    consents: dict[ContactChannel, ConsentStatus]
    source: str


async def update_preferences(
    session: AsyncSession, *, customer_id: str, change: PreferencesChange, now: datetime
) -> Customer:
    """Apply the change; publish ``consent.changed`` per changed channel and, if anything
    changed, ``customer.updated`` with the full details."""
    _check_timezone(change.fields.get("timezone"))
    _check_birthday(change.fields.get("birthday"), now)
    customer = await live_customer(session, customer_id)
    if customer.erased_at is not None:
        raise CustomerErased(f"customer {customer_id!r} was erased")
    changed = _apply_fields(customer, change.fields)
    current = {c.channel: c.status for c in await repository.list_consents(session, customer_id)}
    for channel, status in sorted(change.consents.items()):
        if current.get(channel) != status:
            await _set_consent(session, customer, channel, status, change.source, now)
            changed = True
    if changed:
        await announce(session, CustomerUpdated, customer, event_id=str(uuid.uuid4()), at=now)
        await segments.reevaluate(session, customer, now=now)
    return customer


def _check_timezone(zone: object) -> None:
    if not isinstance(zone, str):
        return
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PreferencesRejected(f"timezone {zone!r} is not an IANA time zone") from exc


def _check_birthday(birthday: object, now: datetime) -> None:
    if not isinstance(birthday, date):
        return
    if birthday > (now + AHEAD_OF_UTC).date():
        raise PreferencesRejected(f"birthday {birthday.isoformat()} is in the future")
    if birthday < EARLIEST_BIRTHDAY:
        raise PreferencesRejected(f"birthday {birthday.isoformat()} is before 1900")


def _apply_fields(customer: Customer, fields: dict[str, str | date | None]) -> bool:
    changed = False
    for field, value in fields.items():
        if getattr(customer, field) != value:
            setattr(customer, field, value)
            changed = True
    return changed


async def _set_consent(
    session: AsyncSession,
    customer: Customer,
    channel: ContactChannel,
    status: ConsentStatus,
    source: str,
    now: datetime,
) -> None:
    await repository.set_consent(session, customer.customer_id, channel, status, source, now)
    await outbox.enqueue(
        session,
        ConsentChanged.create(
            subject=customer.customer_id,
            source=SOURCE,
            time=now,
            data={"channel": channel, "status": status, "source": source, "changed_at": now},
        ),
    )
