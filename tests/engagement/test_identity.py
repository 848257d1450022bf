"""customer.merged and customer.erased: one person's history, and forgetting a person."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.engagement.identity import ERASED
from services.engagement.models import Consent, Contact, LastBasket
from shared.db import Database
from shared.events.profile import (
    CustomerDetails,
    CustomerErased,
    CustomerErasedData,
    CustomerMerged,
    CustomerMergedData,
    CustomerUnmerged,
    CustomerUnmergedData,
)
from tests.engagement.support import (
    customer,
    handle,
    now,
    outreach_rows,
    purchase,
    set_outreach,
    settings,
)
from tests.engagement.test_journeys import risk

pytestmark = pytest.mark.db
PROFILE = "keepwell/profile"


def merged(survivor: str, gone: str) -> CustomerMerged:
    data = CustomerMergedData(merge_id="m-1", merged_id=gone)
    return CustomerMerged.create(subject=survivor, source=PROFILE, data=data)


def erased(customer_id: str) -> CustomerErased:
    return CustomerErased.create(
        subject=customer_id, source=PROFILE, data=CustomerErasedData(reason="request")
    )


async def _all(db: Database, model: type[Any]) -> list[Any]:
    async with db.unit_of_work() as session:
        return list((await session.execute(select(model))).scalars())


async def test_a_merge_moves_history_consents_and_basket_to_the_survivor(db: Database) -> None:
    earlier = now() - timedelta(hours=1)
    await handle(db, customer("old", email="old@example.com", consents={"sms": "opt_out"}))
    await handle(db, customer("new", email="new@example.com", when=earlier))
    await handle(db, purchase("old", purchase_id="p-1"), purchase("new", purchase_id="p-2"))
    await handle(db, merged("new", "old"))
    rows = await outreach_rows(db)
    assert {r.customer_id for r in rows} == {"new"}
    assert sorted(r.context["purchase_id"] for r in rows) == ["p-1", "p-2"]
    contacts = await _all(db, Contact)
    assert [(c.customer_id, c.email) for c in contacts] == [("new", "new@example.com")]
    consents = await _all(db, Consent)
    assert [(c.customer_id, c.channel, c.status) for c in consents] == [("new", "sms", "opt_out")]
    assert [b.customer_id for b in await _all(db, LastBasket)] == ["new"]


async def test_a_merge_adopts_the_merged_contact_when_the_survivor_has_none(db: Database) -> None:
    await handle(db, customer("old", email="old@example.com"))
    await handle(db, merged("new", "old"))
    contacts = await _all(db, Contact)
    assert [(c.customer_id, c.email) for c in contacts] == [("new", "old@example.com")]


async def test_an_opt_out_on_either_side_survives_the_merge(db: Database) -> None:
    earlier = now() - timedelta(hours=2)
    await handle(db, customer("old", consents={"email": "opt_out"}, when=earlier))
    # The survivor's opt-in is newer, but the strictest statement wins.
    await handle(db, customer("new", consents={"email": "opt_in", "sms": "opt_in"}))
    await handle(db, merged("new", "old"))
    consents = await _all(db, Consent)
    assert sorted((c.customer_id, c.channel, c.status) for c in consents) == [
        ("new", "email", "opt_out"),
        ("new", "sms", "opt_in"),
    ]


async def test_events_naming_a_merged_id_act_for_its_survivor(db: Database) -> None:
    await handle(db, customer("a", email="a@example.com"), customer("b"), customer("c"))
    await handle(db, merged("b", "a"))
    await handle(db, purchase("a", purchase_id="p-1"))  # a till still knows the old id
    assert [(r.customer_id, r.context["purchase_id"]) for r in await outreach_rows(db)] == [
        ("b", "p-1")
    ]
    await handle(db, merged("c", "b"))  # the survivor is merged in turn: "a" follows
    await handle(db, purchase("a", purchase_id="p-2"))
    assert {r.context["purchase_id"]: r.customer_id for r in await outreach_rows(db)} == {
        "p-1": "c",
        "p-2": "c",
    }
    undo = CustomerUnmergedData(merge_id="m-1", restored_id="a")
    await handle(db, CustomerUnmerged.create(subject="b", source=PROFILE, data=undo))
    await handle(db, purchase("a", purchase_id="p-3"))
    assert [r.context["purchase_id"] for r in await outreach_rows(db, "a")] == ["p-3"]


async def test_an_undone_merge_gives_the_restored_customer_its_contact_and_consents(
    db: Database,
) -> None:
    """The merge folded them into the survivor's; profile sends them back with the undo,
    so the restored customer's next purchase is thanked at its own address, under its own
    consents."""
    await handle(db, customer("a", email="a@example.com", consents={"sms": "opt_out"}))
    await handle(db, customer("b", email="b@example.com"), merged("b", "a"))
    assert [c.customer_id for c in await _all(db, Contact)] == ["b"]
    details = CustomerDetails(
        name="An", email="a@example.com", language="en", consents={"sms": "opt_out"}
    )
    undo = CustomerUnmergedData(merge_id="m-1", restored_id="a", restored=details)
    await handle(db, CustomerUnmerged.create(subject="b", source=PROFILE, data=undo))
    contacts = {c.customer_id: c.email for c in await _all(db, Contact)}
    assert contacts == {"a": "a@example.com", "b": "b@example.com"}
    consents = {(c.customer_id, c.channel, c.status) for c in await _all(db, Consent)}
    assert ("a", "sms", "opt_out") in consents
    await handle(db, purchase("a", purchase_id="p-9"))
    [thanks] = await outreach_rows(db, "a")
    assert (thanks.customer_id, thanks.context["purchase_id"]) == ("a", "p-9")


async def test_erasure_cancels_pending_messages_and_deletes_personal_data(db: Database) -> None:
    config = settings(win_back_delay_seconds=3600)
    registered = customer("c-1", phone="+84900000000", consents={"sms": "opt_in"})
    await handle(db, registered, purchase("c-1"), config=config)
    await set_outreach(db, "c-1", status="sent", recipient="lan@example.com")
    await handle(db, risk("c-1", "high"), config=config)
    await handle(db, erased("c-1"), config=config)
    rows = {r.journey: r for r in await outreach_rows(db, "c-1")}
    assert (rows["win_back"].status, rows["win_back"].last_error) == ("suppressed", ERASED)
    thank_you = rows["thank_you"]
    assert (thank_you.status, thank_you.context, thank_you.recipient) == ("sent", {}, None)
    assert await _all(db, Contact) == []
    assert await _all(db, Consent) == []
    assert await _all(db, LastBasket) == []
