"""Profile's event handlers on a real, migrated database (no broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from services.profile import consumers, repository, service
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS
from services.profile.service import CustomerView
from shared.db import Database
from shared.events import Event, Money, derived_id
from shared.events.common import ContactHint
from shared.events.profile import CustomerDetails
from shared.migrations import upgrade_async
from shared.plumbing import outbox
from tests.conftest import DatabaseFactory
from tests.profile.builders import T0, at, interaction, outreach, points, purchase, refund

pytestmark = pytest.mark.db

HANDLERS = consumers.handlers(ProfileSettings())


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    url = await database_url("profile")
    await upgrade_async(MIGRATIONS, url)
    database = Database(url)
    yield database
    await database.dispose()


async def handle(db: Database, *events: Event) -> None:
    """Each event in its own transaction, as the runner would commit them."""
    for event in events:
        async with db.unit_of_work() as session:
            await HANDLERS[type(event)](session, event)


async def view(db: Database, customer_id: str) -> CustomerView:
    async with db.unit_of_work() as session:
        return await service.get_customer_view(session, customer_id=customer_id)


async def queued(db: Database) -> list[dict[str, Any]]:
    """The outbox, oldest first: what the relay will publish."""
    async with db.unit_of_work() as session:
        rows = await session.execute(select(outbox).order_by(outbox.c.id))
        return [
            {"topic": r.topic, "key": r.key, "type": r.event_type, "event": json.loads(r.value)}
            for r in rows
        ]


def details_in(row: dict[str, Any]) -> CustomerDetails:
    return CustomerDetails.model_validate(row["event"]["data"])


async def test_first_purchase_registers_the_customer_with_its_details(db: Database) -> None:
    first = purchase("c-1", "100.00", hint=ContactHint(name="An", email="an@example.com"))
    before = datetime.now(UTC)
    await handle(db, first)
    [row] = await queued(db)
    assert (row["topic"], row["key"], row["type"]) == (
        "profile.events",
        b"c-1",
        "customer.registered",
    )
    assert row["event"]["id"] == derived_id("customer.registered", first.source, first.id)
    assert row["event"]["source"] == "keepwell/profile"
    # stamped when profile made the snapshot (not the purchase's event time: see below)
    assert before <= datetime.fromisoformat(row["event"]["time"]) <= datetime.now(UTC)
    assert row["event"]["subject"] == "c-1"
    assert details_in(row) == CustomerDetails(name="An", email="an@example.com")
    seen = await view(db, "c-1")
    assert (seen.customer.name, seen.customer.email) == ("An", "an@example.com")
    assert seen.customer.order_count == 1
    assert seen.total_spend == Money(amount=Decimal("100.00"), currency="EUR")
    assert seen.customer.first_purchase_at == seen.customer.last_purchase_at == T0
    assert seen.channels == ["store"]


async def test_new_contact_details_publish_the_full_new_details(db: Database) -> None:
    await handle(
        db,
        purchase("c-2", hint=ContactHint(name="Binh", email="binh@example.com"), when=at(1)),
        purchase("c-2", hint=ContactHint(email="binh@work.example"), when=at(2)),
        purchase("c-2", hint=ContactHint(email="binh@work.example"), when=at(3)),
        purchase("c-2", when=at(4)),
    )
    rows = await queued(db)
    assert [r["type"] for r in rows] == ["customer.registered", "customer.updated"]
    assert details_in(rows[1]) == CustomerDetails(name="Binh", email="binh@work.example")
    assert (await view(db, "c-2")).customer.order_count == 4


async def test_details_learnt_from_a_late_purchase_are_announced_as_newest(db: Database) -> None:
    """A refund registers the customer first; its purchase (earlier in event time, later
    to arrive) brings the e-mail. Consumers keep the newest snapshot, so the update
    must be stamped after the registration or they would drop the address."""
    await handle(
        db,
        refund("c-20", "10.00", when=at(5)),
        purchase("c-20", "50.00", hint=ContactHint(email="late@example.com"), when=at(1)),
    )
    registered, updated = await queued(db)
    assert (registered["type"], updated["type"]) == ("customer.registered", "customer.updated")
    assert details_in(updated).email == "late@example.com"
    stamps = [datetime.fromisoformat(r["event"]["time"]) for r in (registered, updated)]
    assert stamps[0] <= stamps[1]


async def test_a_late_older_hint_fills_gaps_but_does_not_undo_newer_details(
    db: Database,
) -> None:
    await handle(
        db,
        purchase("c-3", hint=ContactHint(email="new@example.com"), when=at(5)),
        purchase("c-3", hint=ContactHint(email="old@example.com", phone="+8490"), when=at(1)),
    )
    customer = (await view(db, "c-3")).customer
    assert (customer.email, customer.phone) == ("new@example.com", "+8490")
    updated = [details_in(r) for r in await queued(db) if r["type"] == "customer.updated"]
    assert updated == [CustomerDetails(email="new@example.com", phone="+8490")]


async def test_out_of_order_purchases_keep_the_first_and_last_purchase_times(
    db: Database,
) -> None:
    later = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    # 15:00 at +07:00 is 08:00 UTC: earlier, though its wall clock reads later.
    earlier = datetime(2026, 3, 1, 15, 0, tzinfo=timezone(timedelta(hours=7)))
    await handle(
        db,
        purchase("c-4", "10.00", when=later),
        purchase("c-4", "5.50", when=earlier, channel="web"),
        purchase("c-4", "1.00", when=later - timedelta(minutes=30)),
    )
    seen = await view(db, "c-4")
    assert seen.customer.first_purchase_at == earlier
    assert seen.customer.last_purchase_at == later
    assert seen.customer.order_count == 3
    assert seen.total_spend == Money(amount=Decimal("16.50"), currency="EUR")
    assert seen.channels == ["web", "store"]  # by first seen


async def test_the_balance_follows_loyaltys_order_not_the_purchase_time(db: Database) -> None:
    # Loyalty publishes one customer's events in ledger order on one partition, stamped
    # with each purchase's own time: a till that uploads an old purchase late yields the
    # newest balance with an older time. The last balance loyalty published is the truth.
    await handle(db, points("c-5", 150, when=at(2)), points("c-5", 250, when=at(1)))
    seen = await view(db, "c-5")
    assert (seen.customer.points_balance, seen.customer.points_updated_at) == (250, at(2))
    assert [r["type"] for r in await queued(db)] == ["customer.registered"]


async def test_a_refund_before_its_purchase_converges(db: Database) -> None:
    await handle(db, refund("c-6", "30.00", when=at(2)), purchase("c-6", "100.00", when=at(1)))
    seen = await view(db, "c-6")
    assert seen.total_spend == Money(amount=Decimal("70.00"), currency="EUR")
    assert seen.customer.order_count == 1


async def test_refunds_never_take_spend_below_zero(db: Database) -> None:
    await handle(db, purchase("c-7", "20.00"), refund("c-7", "50.00"))
    assert (await view(db, "c-7")).total_spend == Money(amount=Decimal(0), currency="EUR")


async def test_a_purchase_in_another_currency_is_counted_not_summed(db: Database) -> None:
    await handle(
        db,
        purchase("c-8", "100.00", currency="EUR"),
        purchase("c-8", "2500000", currency="VND"),
        refund("c-8", "100000", currency="VND"),
    )
    seen = await view(db, "c-8")
    assert seen.customer.order_count == 2
    assert seen.total_spend == Money(amount=Decimal("100.00"), currency="EUR")


async def test_an_interaction_registers_an_unknown_customer_without_details(
    db: Database,
) -> None:
    await handle(db, interaction("c-9", "app", when=at(3)), interaction("c-9", "app", when=at(1)))
    await handle(db, purchase("c-9", hint=ContactHint(name="Chi"), when=at(4)))
    rows = await queued(db)
    assert [(r["type"], details_in(r)) for r in rows] == [
        ("customer.registered", CustomerDetails()),
        ("customer.updated", CustomerDetails(name="Chi")),
    ]
    seen = await view(db, "c-9")
    assert seen.channels == ["app", "store"]
    async with db.unit_of_work() as session:
        channels = await repository.list_channels(session, "c-9")
    [app] = [c for c in channels if c.channel == "app"]
    assert (app.channel, app.first_seen_at, app.last_seen_at) == ("app", at(1), at(3))


async def test_last_outreach_is_the_newest_one_sent(db: Database) -> None:
    await handle(db, outreach("c-10", "win_back", when=at(2)))
    await handle(db, outreach("c-10", "thank_you", when=at(1)))
    customer = (await view(db, "c-10")).customer
    assert (customer.last_outreach_at, customer.last_outreach_journey) == (at(2), "win_back")
    assert customer.order_count == 0


async def test_concurrent_first_sightings_register_the_customer_once(db: Database) -> None:
    events = [purchase("c-11", "1.00", when=at(i)) for i in range(5)]

    async def handle_alone(event: Event) -> None:
        async with db.unit_of_work() as session:
            await HANDLERS[type(event)](session, event)

    await asyncio.gather(*(handle_alone(e) for e in events))
    assert [r["type"] for r in await queued(db)] == ["customer.registered"]
    seen = await view(db, "c-11")
    assert seen.customer.order_count == 5
    assert seen.total_spend == Money(amount=Decimal("5.00"), currency="EUR")


async def test_an_unknown_customer_is_not_found(db: Database) -> None:
    with pytest.raises(service.CustomerNotFound, match="no customer with id 'nobody'"):
        await view(db, "nobody")
