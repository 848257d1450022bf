"""Planning thank-yous and keeping contacts, against a real database."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from services.engagement import repository
from services.engagement.models import Contact
from shared.db import Database
from shared.events.engagement import OutreachSuppressed
from tests.engagement.support import (
    customer,
    handle,
    now,
    only_outreach,
    outreach_rows,
    published,
    purchase,
)
from tests.engagement.support import settings as make_settings

pytestmark = pytest.mark.db


async def test_a_purchase_plans_one_pending_thank_you(db: Database) -> None:
    event = purchase("c-1", purchase_id="p-9", amount="42.50", items=("Green tea",))
    await handle(db, event)
    row = await only_outreach(db, "c-1")
    assert (row.status, row.journey, row.channel, row.template) == (
        "pending",
        "thank_you",
        "email",
        "thank_you",
    )
    assert row.attempts == 0
    assert row.trigger_event_id == event.id
    assert row.context == {
        "purchase_id": "p-9",
        "total": {"amount": "42.50", "currency": "EUR"},
        "items": [{"name": "Green tea", "quantity": 1}],
        "recommendations": [],  # nobody bought anything before
        "bought_after": [],
    }


async def test_the_same_purchase_handled_twice_plans_one_message(db: Database) -> None:
    event = purchase("c-1", purchase_id="p-1")
    resent = purchase("c-1", purchase_id="p-1")  # the till sent the sale again, new event id
    await handle(db, event, event, resent)
    await only_outreach(db, "c-1")
    await handle(db, purchase("c-1", purchase_id="p-2"))
    assert len(await outreach_rows(db, "c-1")) == 2


async def test_thank_you_can_be_switched_off(db: Database) -> None:
    await handle(db, purchase("c-1"), config=make_settings(thank_you_enabled=False))
    assert await outreach_rows(db) == []


async def test_an_old_purchase_replayed_is_recorded_but_not_sent(db: Database) -> None:
    await handle(db, purchase("c-1", when=now() - timedelta(days=30)))
    row = await only_outreach(db, "c-1")
    assert row.status == "suppressed"
    assert row.last_error is not None
    assert "older than" in row.last_error
    [event] = await published(db)
    assert isinstance(event, OutreachSuppressed)
    assert (event.data.outreach_id, event.data.reason) == (row.id, row.last_error)


async def _contact(db: Database, customer_id: str) -> Contact | None:
    async with db.unit_of_work() as session:
        return await repository.get_contact(session, customer_id)


async def test_a_registered_customer_becomes_a_contact(db: Database) -> None:
    await handle(db, customer("c-1", name="Lan", email="lan@example.com", language="vi"))
    contact = await _contact(db, "c-1")
    assert contact is not None
    assert (contact.name, contact.email, contact.language) == ("Lan", "lan@example.com", "vi")


async def test_the_newest_update_wins_whatever_the_arrival_order(db: Database) -> None:
    t0 = now() - timedelta(hours=1)
    registered = customer("c-1", email="old@example.com", when=t0)
    newer = customer("c-1", email="new@example.com", when=t0 + timedelta(minutes=5), update=True)
    stale = customer("c-1", email="stale@example.com", when=t0 + timedelta(minutes=2), update=True)
    await handle(db, registered, newer, stale)
    contact = await _contact(db, "c-1")
    assert contact is not None
    assert contact.email == "new@example.com"


async def test_an_update_at_the_same_instant_applies(db: Database) -> None:
    t0 = now()
    await handle(db, customer("c-1", name="Lan", when=t0))
    await handle(db, customer("c-1", name="Lan Nguyen", email=None, when=t0, update=True))
    contact = await _contact(db, "c-1")
    assert contact is not None
    assert (contact.name, contact.email) == ("Lan Nguyen", None)


async def test_event_times_in_other_zones_compare_as_instants(db: Database) -> None:
    hanoi = timezone(timedelta(hours=7))
    t0 = now().replace(microsecond=0)
    # 10:00+07:00 is 03:00Z: older than 04:00Z although its wall clock reads later.
    await handle(db, customer("c-1", email="utc@example.com", when=t0))
    await handle(
        db,
        customer(
            "c-1",
            email="hanoi@example.com",
            when=(t0 - timedelta(hours=1)).astimezone(hanoi),
            update=True,
        ),
    )
    contact = await _contact(db, "c-1")
    assert contact is not None
    assert contact.email == "utc@example.com"
