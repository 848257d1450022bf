"""Preferences and consent; the strictest consent survives a merge."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.profile.config import ProfileSettings
from services.profile.main import create_app
from shared.db import Database
from shared.events import decode
from tests.helpers import TEST_SECRET, auth_headers, read_topic
from tests.profile.support import ALL_SCOPES, app_client, queued, resolve, view

pytestmark = pytest.mark.db


async def put(client: httpx.AsyncClient, cid: str, **body: Any) -> httpx.Response:
    return await client.put(f"/v1/customers/{cid}/preferences", json={"source": "web", **body})


async def test_preferences_are_stored_and_each_consent_change_is_published(
    profile_url: str, profile_db: Database
) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="p@example.com"))["customer_id"]
        first = await put(
            client,
            cid,
            language="vi",
            timezone="Asia/Ho_Chi_Minh",
            preferred_channel="sms",
            quiet_hours={"start": "21:00", "end": "08:00"},
            consents={"email": "opt_in", "sms": "opt_in"},
        )
        second = await put(client, cid, consents={"email": "opt_out", "sms": "opt_in"})
        seen = await view(client, cid)
    assert first.status_code == second.status_code == 200
    prefs = seen["preferences"]
    assert (prefs["language"], prefs["timezone"], prefs["preferred_channel"]) == (
        "vi",
        "Asia/Ho_Chi_Minh",
        "sms",
    )
    assert prefs["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert {k: v["status"] for k, v in prefs["consents"].items()} == {
        "email": "opt_out",
        "sms": "opt_in",
    }
    changes = [c["event"]["data"] for c in await queued(profile_db, "consent.changed")]
    assert [(c["channel"], c["status"], c["source"]) for c in changes] == [
        ("email", "opt_in", "web"),
        ("sms", "opt_in", "web"),
        ("email", "opt_out", "web"),
    ]
    updated = (await queued(profile_db, "customer.updated"))[-1]["event"]["data"]
    assert updated["consents"] == {"email": "opt_out", "sms": "opt_in"}
    assert updated["quiet_hours"] == {"start": "21:00", "end": "08:00"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"consents": {"fax": "opt_in"}}, '"fax"'),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_preferences_are_422(
    profile_url: str, body: dict[str, Any], message: str
) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="q@example.com"))["customer_id"]
        response = await put(client, cid, **body)
        missing = await put(client, "nobody", language="vi")
    assert response.status_code == 422
    assert message in response.text
    assert missing.status_code == 404


@pytest.mark.kafka
@pytest.mark.parametrize("opted_out", ["older", "newer"])
async def test_an_opt_out_before_a_merge_survives_it_on_profile_events(
    broker: str, topics: str, profile_url: str, opted_out: str
) -> None:
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=profile_url,
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        consumer_enabled=False,
        relay_poll_interval_ms=50,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=auth_headers(*ALL_SCOPES)
        ) as client,
    ):
        older = (await resolve(client, phone="0901111111"))["customer_id"]
        newer = (await resolve(client, email="m@example.com"))["customer_id"]
        quitter, keen = (older, newer) if opted_out == "older" else (newer, older)
        await put(client, quitter, consents={"email": "opt_out"})
        await put(client, keen, consents={"email": "opt_in", "sms": "opt_in"})
        merged = await resolve(client, phone="0901111111", email="m@example.com")
        seen = await view(client, newer)
        records = await read_topic(broker, f"{topics}profile.events", expect=9)
    events = [decode(r.value) for r in records]
    assert merged["customer_id"] == older
    assert {k: v["status"] for k, v in seen["preferences"]["consents"].items()} == {
        "email": "opt_out",
        "sms": "opt_in",
    }
    last_details = [e for e in events if e.type == "customer.updated" and e.subject == older][-1]
    assert last_details.data.consents == {"email": "opt_out", "sms": "opt_in"}
    [merge] = [e for e in events if e.type == "customer.merged"]
    assert (merge.subject, merge.data.merged_id) == (older, newer)
