"""Resolve, merge and undo, through the HTTP API on a real database."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from shared.db import Database
from tests.profile.builders import at, points, purchase
from tests.profile.support import app_client, handle, queued, resolve, view

pytestmark = pytest.mark.db

POS = {"phone": "090 123 4567"}
WEB = {"email": "Lan@Example.com"}
APP = {"device_id": "dev-77", "email": "lan@example.com", "phone": "+84901234567"}


async def arrive(client: httpx.AsyncClient, db: Database, who: dict[str, str], hour: int) -> str:
    """A visit: the channel resolves the customer, then a purchase is made for that id."""
    customer_id: str = (await resolve(client, **who))["customer_id"]
    await handle(db, purchase(customer_id, "10.00", when=at(hour)))
    return customer_id


@pytest.mark.parametrize("order", list(itertools.permutations(["pos", "web", "app"])))
async def test_the_same_person_on_every_channel_is_one_customer_in_any_order(
    profile_url: str, profile_db: Database, order: tuple[str, ...]
) -> None:
    visits = {"pos": POS, "web": WEB, "app": APP}
    async with app_client(profile_url) as client:
        ids = [await arrive(client, profile_db, visits[v], h) for h, v in enumerate(order)]
        survivor = (await resolve(client, **WEB))["customer_id"]
        await handle(profile_db, points(ids[0], 500, when=at(9)))
        seen = [await view(client, cid) for cid in ids]
        timeline = (await client.get(f"/v1/customers/{survivor}/timeline")).json()
    assert survivor == ids[0]  # the oldest survives
    assert {v["customer_id"] for v in seen} == {survivor}
    assert seen[0]["lifetime"]["order_count"] == 3
    assert seen[0]["lifetime"]["total_spend"] == {"amount": "30.0000", "currency": "EUR"}
    assert seen[0]["loyalty"]["points_balance"] == 500
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds == ["points.earned"] + ["purchase.completed"] * 3
    merged = await queued(profile_db, "customer.merged")
    assert {m["event"]["subject"] for m in merged} <= {survivor}
    assert len(merged) == len(set(ids)) - 1


async def test_identities_in_another_spelling_find_the_same_customer(profile_url: str) -> None:
    async with app_client(profile_url) as client:
        first = await resolve(client, phone="+84 90 123 4567", loyalty_card="kw-0001")
        again = await resolve(client, phone="0901234567")
        card = await resolve(client, loyalty_card="KW 0001")
        found = await client.get("/v1/customers", params={"identity": "phone:090.123.4567"})
    assert first["created"]
    assert not again["created"]
    assert first["customer_id"] == again["customer_id"] == card["customer_id"]
    assert [c["customer_id"] for c in found.json()] == [first["customer_id"]]


@pytest.mark.parametrize(
    ("identities", "message"),
    [
        ([{"kind": "phone", "value": "call me"}], "identities.0: 'call me' is not a phone"),
        ([{"kind": "email", "value": "nobody"}], "is not an e-mail address"),
        ([{"kind": "fax", "value": "123"}], "Input should be 'email'"),
        ([], "identities"),
    ],
)
async def test_malformed_identities_are_422(
    profile_url: str, identities: list[dict[str, Any]], message: str
) -> None:
    async with app_client(profile_url) as client:
        response = await client.post("/v1/customers/resolve", json={"identities": identities})
    assert response.status_code == 422, response.text
    assert message in response.text


async def test_a_purchase_hint_adds_identities_but_never_merges(
    profile_url: str, profile_db: Database
) -> None:
    from shared.events.common import ContactHint

    async with app_client(profile_url) as client:
        owner = (await resolve(client, email="gift@example.com"))["customer_id"]
        hint = ContactHint(email="gift@example.com", phone="0912000111")
        await handle(profile_db, purchase("pos-9", hint=hint))
        by_email = await resolve(client, email="gift@example.com")
        by_phone = await resolve(client, phone="+84912000111")
    assert by_email["customer_id"] == owner
    assert by_phone["customer_id"] == "pos-9"
    assert await queued(profile_db, "customer.merged") == []


async def test_an_undone_merge_restores_both_customers(
    profile_url: str, profile_db: Database
) -> None:
    async with app_client(profile_url) as client:
        older = await arrive(client, profile_db, {"email": "a@example.com"}, 1)
        newer = await arrive(client, profile_db, {"phone": "0900000001"}, 2)
        await handle(profile_db, purchase(newer, "5.00", when=at(3), channel="web"))
        merged = await resolve(client, email="a@example.com", phone="0900000001")
        [merge_id] = merged["merge_ids"]
        undone = await client.post(f"/v1/merges/{merge_id}/undo")
        again = await client.post(f"/v1/merges/{merge_id}/undo")
        unknown = await client.post("/v1/merges/nope/undo")
        old_view, new_view = await view(client, older), await view(client, newer)
        by_phone = await resolve(client, phone="0900000001")
        new_timeline = (await client.get(f"/v1/customers/{newer}/timeline")).json()
    assert merged["customer_id"] == older
    assert undone.status_code == 200
    assert undone.json()["undone_at"]
    assert (again.status_code, again.json()["error"]["code"]) == (409, "merge_not_undoable")
    assert unknown.status_code == 404
    assert old_view["lifetime"]["order_count"] == 1
    assert old_view["channels"] == ["store"]
    assert new_view["customer_id"] == newer
    assert new_view["lifetime"]["order_count"] == 2
    assert new_view["lifetime"]["total_spend"]["amount"] == "15.0000"
    assert new_view["channels"] == ["store", "web"]
    assert by_phone["customer_id"] == newer
    assert len(new_timeline["entries"]) == 2
    [unmerged] = await queued(profile_db, "customer.unmerged")
    data = unmerged["event"]["data"]
    assert (data["merge_id"], data["restored_id"]) == (merge_id, newer)
    # the restored customer's own details ride along, for services that folded them in
    assert data["restored"]["phone"] == "+84900000001"
    assert data["restored"]["email"] is None
