"""Export everything held; erase personal data and keep an anonymous tombstone."""

from __future__ import annotations

import pytest

from shared.db import Database
from shared.events.common import ContactHint
from tests.profile.builders import at, interaction, purchase
from tests.profile.support import app_client, handle, queued, resolve, view

pytestmark = pytest.mark.db


async def test_export_holds_everything_and_erasure_removes_the_personal_part(
    profile_url: str, profile_db: Database
) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="e@example.com", phone="0903333333"))["customer_id"]
        hint = ContactHint(name="Erin Ng", email="e@example.com")
        await handle(profile_db, purchase(cid, "20.00", hint=hint), interaction(cid, "web"))
        await client.put(
            f"/v1/customers/{cid}/preferences",
            json={"source": "web", "consents": {"sms": "opt_in"}, "timezone": "Europe/Paris"},
        )
        await client.post("/v1/segments", json={"name": "buyers", "expression": "order_count >= 1"})
        exported = (await client.get(f"/v1/customers/{cid}/export")).json()
        erased = await client.request("DELETE", f"/v1/customers/{cid}", json={"reason": "GDPR"})
        late = purchase(
            cid, "5.00", when=at(5), hint=ContactHint(name="Erin Ng", phone="0903333333")
        )
        await handle(profile_db, late)
        after = await view(client, cid)
        refill = await client.put(
            f"/v1/customers/{cid}/preferences", json={"source": "web", "language": "vi"}
        )
        after_export = (await client.get(f"/v1/customers/{cid}/export")).json()
        by_name = (await client.get("/v1/customers", params={"name_prefix": "erin"})).json()
        by_email = (
            await client.get("/v1/customers", params={"identity": "email:e@example.com"})
        ).json()
        members = (await client.get("/v1/segments/buyers/members")).json()
    assert exported["customer"]["name"] == "Erin Ng"
    assert exported["customer"]["timezone"] == "Europe/Paris"
    assert {(i["kind"], i["value"]) for i in exported["identities"]} == {
        ("email", "e@example.com"),
        ("phone", "+84903333333"),
    }
    assert [c["channel"] for c in exported["consents"]] == ["sms"]
    assert len(exported["timeline"]) == 2
    assert exported["segments"] == ["buyers"]
    assert erased.status_code == 204
    assert (refill.status_code, refill.json()["error"]["code"]) == (409, "customer_erased")
    assert (after["name"], after["email"], after["phone"], after["timezone"]) == (None,) * 4
    assert after["erased"] is True
    assert after["preferences"]["consents"] == {}
    assert after["lifetime"]["order_count"] == 2  # anonymous counters carry on
    assert after_export["identities"] == after_export["timeline"] == []
    assert by_name == by_email == []
    assert members["customer_ids"] == []
    [event] = await queued(profile_db, "customer.erased")
    assert (event["event"]["subject"], event["event"]["data"]) == (cid, {"reason": "GDPR"})
    exited = await queued(profile_db, "segment.exited")
    assert [e["event"]["subject"] for e in exited] == [cid]


async def test_search_by_name_prefix_and_segment(profile_url: str, profile_db: Database) -> None:
    await handle(
        profile_db,
        purchase("c-a", hint=ContactHint(name="Lan Anh")),
        purchase("c-b", hint=ContactHint(name="lan_ngoc")),
        purchase("c-c", hint=ContactHint(name="Minh")),
    )
    async with app_client(profile_url) as client:
        lan = (await client.get("/v1/customers", params={"name_prefix": "LAN"})).json()
        underscore = (await client.get("/v1/customers", params={"name_prefix": "lan_"})).json()
        nothing = await client.get("/v1/customers")
        bad = await client.get("/v1/customers", params={"identity": "fax:1"})
    assert [c["customer_id"] for c in lan] == ["c-a", "c-b"]
    assert [c["customer_id"] for c in underscore] == ["c-b"]
    assert nothing.status_code == bad.status_code == 422
