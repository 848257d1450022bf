"""The profile app in-process: REST ingest, the 360° view, the real broker and database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS, create_app
from shared.db import Database
from shared.events import decode, derived_id
from shared.events.common import ContactHint
from shared.events.profile import CustomerDetails, CustomerRegistered
from shared.migrations import upgrade_async
from shared.plumbing import outbox
from tests.conftest import DatabaseFactory
from tests.helpers import TEST_SECRET, auth_headers, produce, read_topic, wait_until
from tests.profile.builders import at, interaction, outreach, points, purchase, refund

pytestmark = pytest.mark.db


@asynccontextmanager
async def running(settings: ProfileSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (relay, consumer) running, and a client to call it."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers("events:write", "customers:read"),
        ) as client,
    ):
        yield client


async def migrated(database_url: DatabaseFactory) -> str:
    url = await database_url("profile")
    await upgrade_async(MIGRATIONS, url)
    return url


def as_json(event: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(event.to_json())
    return loaded


def without_total() -> dict[str, Any]:
    body = as_json(purchase("c-1"))
    del body["data"]["total"]
    return body


def naive_time() -> dict[str, Any]:
    return {**as_json(purchase("c-1")), "time": "2026-03-01T10:00:00"}


REJECTED: list[tuple[str, Callable[[], Any], str, str]] = [
    ("malformed", lambda: b'{"id": "x", ', "invalid_json", "the body is not valid JSON"),
    ("empty", lambda: b"", "invalid_json", "the body is not valid JSON"),
    ("missing field", without_total, "invalid_event", "data.total: Field required"),
    ("naive time", naive_time, "invalid_event", "time: Value error, timestamp must carry a"),
    (
        "unknown type",
        lambda: {**as_json(purchase("c-1")), "type": "purchase.teleported"},
        "invalid_event",
        "unknown event type: 'purchase.teleported'",
    ),
    (
        "not ingestible",
        lambda: as_json(points("c-1", 10)),
        "invalid_event",
        "event type 'points.earned' cannot be ingested here",
    ),
    (
        "bad one in a batch",
        lambda: [as_json(purchase("c-1")), without_total()],
        "invalid_event",
        "event 1: purchase.completed.data.total: Field required",
    ),
    (
        "too many",
        lambda: [as_json(purchase("c-1"))] * 501,
        "invalid_event",
        "501 events in one request; at most 500",
    ),
    ("empty batch", lambda: [], "invalid_event", "the array holds no events"),
    ("not an object", lambda: "purchase", "invalid_event", "must be a CloudEvent JSON object"),
]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [pytest.param(body, code, message, id=name) for name, body, code, message in REJECTED],
)
async def test_an_invalid_post_is_rejected_with_a_reason_and_nothing_is_queued(
    database_url: DatabaseFactory, body: Callable[[], Any], code: str, message: str
) -> None:
    url = await migrated(database_url)
    # No relay: whatever a request queued would stay in the outbox for us to see.
    settings = ProfileSettings(
        auth_secret=TEST_SECRET, database_url=url, relay_enabled=False, consumer_enabled=False
    )
    payload = body()
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with running(settings) as client:
        response = await client.post("/v1/events", content=content)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert message in error["message"]
    db = Database(url)
    async with db.unit_of_work() as session:
        assert await session.scalar(select(func.count()).select_from(outbox)) == 0
    await db.dispose()


@pytest.mark.kafka
async def test_posted_events_are_published_to_their_topics(
    broker: str, topics: str, database_url: DatabaseFactory
) -> None:
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=await migrated(database_url),
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        consumer_enabled=False,
        relay_poll_interval_ms=50,
    )
    bought, returned, visited = purchase("c-1"), refund("c-1", "5.00"), interaction("c-1")
    async with running(settings) as client:
        one = await client.post("/v1/events", json=as_json(bought))
        many = await client.post("/v1/events", json=[as_json(returned), as_json(visited)])
        again = await client.post("/v1/events", json=as_json(bought))
        purchases = await read_topic(broker, f"{topics}commerce.purchases", expect=3)
        interactions = await read_topic(broker, f"{topics}customer.interactions", expect=1)
    assert (one.status_code, many.status_code, again.status_code) == (202, 202, 202)
    assert one.json() == {
        "id": bought.id,
        "type": "purchase.completed",
        "topic": "commerce.purchases",
    }
    assert many.json() == [
        {"id": returned.id, "type": "purchase.refunded", "topic": "commerce.purchases"},
        {"id": visited.id, "type": "interaction.recorded", "topic": "customer.interactions"},
    ]
    assert [decode(r.value) for r in purchases] == [bought, returned, bought]
    assert {r.key for r in purchases} == {b"c-1"}
    assert [decode(r.value) for r in interactions] == [visited]


@pytest.mark.kafka
async def test_the_view_follows_the_events_of_every_service(
    broker: str, topics: str, database_url: DatabaseFactory
) -> None:
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=await migrated(database_url),
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_ms=50,
    )
    bought = purchase("c-42", "120.50", hint=ContactHint(name="Dung", email="dung@example.com"))
    sent = outreach("c-42", "thank_you", when=at(1))
    async with running(settings) as client:
        await produce(broker, f"{topics}commerce.purchases", (b"c-42", bought.to_json()))
        await wait_until(lambda: _view_when(client, "c-42", lambda v: v["lifetime"]["order_count"]))
        await produce(broker, f"{topics}loyalty.events", (b"c-42", points("c-42", 120).to_json()))
        await produce(broker, f"{topics}engagement.events", (b"c-42", sent.to_json()))
        view = await wait_until(
            lambda: _view_when(client, "c-42", lambda v: v["loyalty"] and v["last_outreach"])
        )
        posted = await client.post("/v1/events", json=as_json(interaction("c-42", "web")))
        assert posted.status_code == 202
        later = await wait_until(
            lambda: _view_when(client, "c-42", lambda v: len(v["channels"]) > 1)
        )
        missing = await client.get("/v1/customers/nobody")
        announced = await read_topic(broker, f"{topics}profile.events", expect=1)
    assert view == {
        "customer_id": "c-42",
        "name": "Dung",
        "email": "dung@example.com",
        "phone": None,
        "language": None,
        "timezone": None,
        "birthday": None,
        "created_at": view["created_at"],
        "erased": False,
        "preferences": {
            "language": None,
            "timezone": None,
            "preferred_channel": None,
            "quiet_hours": None,
            "consents": {},
        },
        "tier": None,
        "churn": None,
        "feedback": {"last_nps": None, "last_nps_at": None, "open_complaints": 0},
        "segments": [],
        "lifetime": {
            "order_count": 1,
            "total_spend": {"amount": "120.5000", "currency": "EUR"},
            "first_purchase_at": "2026-03-01T10:00:00Z",
            "last_purchase_at": "2026-03-01T10:00:00Z",
        },
        "channels": ["store"],
        "loyalty": {"points_balance": 120, "updated_at": "2026-03-01T10:00:00Z"},
        "last_outreach": {"at": "2026-03-01T11:00:00Z", "journey": "thank_you"},
    }
    assert later["channels"] == ["store", "web"]
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "customer_not_found", "message": "no customer with id 'nobody'"}
    }
    registered = [decode(r.value) for r in announced]
    # Stamped with the time profile made the snapshot, not the purchase's event time.
    assert len(registered) == 1
    assert registered[0].time > bought.time
    assert registered == [
        CustomerRegistered.create(
            id=derived_id("customer.registered", bought.source, bought.id),
            subject="c-42",
            source="keepwell/profile",
            time=registered[0].time,
            data=CustomerDetails(name="Dung", email="dung@example.com"),
        )
    ]


async def _view_when(
    client: httpx.AsyncClient, customer_id: str, ready: Callable[[dict[str, Any]], Any]
) -> dict[str, Any] | None:
    """The customer's view once ``ready`` says the expected events have been applied."""
    response = await client.get(f"/v1/customers/{customer_id}")
    if response.status_code != 200:
        return None
    view: dict[str, Any] = response.json()
    return view if ready(view) else None
