"""The customer's birthday: set over the API, published in the snapshot, merged, erased."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.db import Database
from tests.profile.support import app_client, queued, resolve, view

pytestmark = pytest.mark.db


async def put(client: httpx.AsyncClient, cid: str, **body: Any) -> httpx.Response:
    return await client.put(f"/v1/customers/{cid}/preferences", json={"source": "app", **body})


async def test_the_birthday_is_set_shown_and_published(
    profile_url: str, profile_db: Database
) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="b@example.com"))["customer_id"]
        response = await put(client, cid, birthday="1990-03-10", language="vi")
        seen = await view(client, cid)
        again = await put(client, cid, birthday="1990-03-10")  # unchanged: nothing published
        cleared = await put(client, cid, birthday=None)
    assert response.status_code == 200, response.text
    assert response.json()["birthday"] == "1990-03-10"
    assert seen["birthday"] == "1990-03-10"
    assert again.status_code == 200
    assert cleared.json()["birthday"] is None
    snapshots = [e["event"]["data"] for e in await queued(profile_db, "customer.updated")]
    assert [s.get("birthday") for s in snapshots] == ["1990-03-10", None]
    assert snapshots[0]["language"] == "vi"


@pytest.mark.parametrize(
    ("birthday", "message"),
    [
        ((datetime.now(UTC) + timedelta(days=2)).date().isoformat(), "is in the future"),
        ("1899-12-31", "before 1900"),
        ("1990-02-30", "birthday"),
    ],
)
async def test_an_impossible_birthday_is_422(profile_url: str, birthday: str, message: str) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="f@example.com"))["customer_id"]
        response = await put(client, cid, birthday=birthday)
        seen = await view(client, cid)
    assert response.status_code == 422
    assert message in response.text
    assert seen["birthday"] is None


@pytest.mark.parametrize(("own", "kept"), [(None, "1991-09-01"), ("1980-01-01", "1980-01-01")])
async def test_a_merge_keeps_the_survivors_birthday_or_adopts_the_other(
    profile_url: str, profile_db: Database, own: str | None, kept: str
) -> None:
    async with app_client(profile_url) as client:
        a = (await resolve(client, email="a@example.com"))["customer_id"]
        b = (await resolve(client, phone="0900000001"))["customer_id"]
        if own is not None:
            await put(client, a, birthday=own)
        await put(client, b, birthday="1991-09-01")
        merged = await resolve(client, email="a@example.com", phone="0900000001")
        seen = await view(client, b)
    assert merged["customer_id"] == a  # the older customer survives
    assert (seen["customer_id"], seen["birthday"]) == (a, kept)
    last = (await queued(profile_db, "customer.updated"))[-1]["event"]
    assert (last["subject"], last["data"]["birthday"]) == (a, kept)


async def test_erasure_removes_the_birthday(profile_url: str, profile_db: Database) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="e@example.com"))["customer_id"]
        await put(client, cid, birthday="1985-12-24")
        exported = (await client.get(f"/v1/customers/{cid}/export")).json()
        erased = await client.request("DELETE", f"/v1/customers/{cid}", json={"reason": "GDPR"})
        after = await view(client, cid)
        after_export = (await client.get(f"/v1/customers/{cid}/export")).json()
    assert exported["customer"]["birthday"] == "1985-12-24"
    assert erased.status_code == 204
    assert after["birthday"] is None
    assert after_export["customer"]["birthday"] is None
    assert len(await queued(profile_db, "customer.erased")) == 1
