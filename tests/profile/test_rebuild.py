"""Rebuilding from the topics gives back the live view (real broker, real database)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from services.profile import repository, service
from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS, create_app
from services.profile.rebuild import rebuild
from services.profile.schemas import CustomerRead, TimelineEntryRead
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from shared.migrations import upgrade_async
from shared.plumbing import processed_events
from tests.conftest import DatabaseFactory
from tests.helpers import TEST_SECRET, auth_headers, wait_until
from tests.profile.builders import resent
from tests.profile.history import customer_ids, history
from tests.profile.support import ALL_SCOPES

pytestmark = [pytest.mark.db, pytest.mark.kafka]

CUSTOMERS = 40  # ~700 events; the 1,000-customer run is `python -m bench.profile rebuild`


async def publish(broker: str, topics: str, events: list[Event]) -> None:
    """Send without waiting for each acknowledgement (the broker keeps per-key order)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topics + e.TOPIC, value=e.to_json(), key=e.key) for e in events]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def processed(db: Database) -> int:
    async with db.unit_of_work() as session:
        return int(await session.scalar(select(func.count()).select_from(processed_events)) or 0)


async def snapshot(db: Database, ids: list[str]) -> dict[str, Any]:
    """Every customer's view and timeline, as the API would show them."""
    out: dict[str, Any] = {}
    async with db.unit_of_work() as session:
        for cid in ids:
            view = await service.get_customer_view(session, customer_id=cid)
            rows = await repository.list_timeline(
                session, view.customer.customer_id, channel=None, kind=None, before=None, limit=500
            )
            timeline = [TimelineEntryRead.from_row(r).model_dump(exclude={"cursor"}) for r in rows]
            out[cid] = (CustomerRead.from_view(view).model_dump(), timeline)
    return out


def hinted(events: list[Event]) -> list[str]:
    return sorted(
        {
            e.data.customer.email
            for e in events
            if isinstance(e, PurchaseCompleted) and e.data.customer and e.data.customer.email
        }
    )


async def test_the_rebuilt_view_equals_the_live_one(
    broker: str, topics: str, database_url: DatabaseFactory
) -> None:
    live_url, fresh_url = await database_url("profile"), await database_url("profile")
    await upgrade_async(MIGRATIONS, live_url)
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=live_url,
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        relay_enabled=False,
    )
    ids = customer_ids(CUSTOMERS)
    first, second = history(ids), history(ids, wave=1)
    # Published while merged: a third wave, and a quarter of the first wave's sales re-sent
    # under new event ids (the same sales: counted once, live and in the rebuild).
    while_merged = (
        history(ids, wave=2)
        + [resent(e) for e in first if isinstance(e, PurchaseCompleted | PurchaseRefunded)][::4]
    )
    live = Database(live_url)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers(*ALL_SCOPES),
        ) as client,
    ):
        await client.post("/v1/segments", json={"name": "loyal", "expression": "order_count >= 4"})
        await publish(broker, topics, first)
        await wait_until(lambda: _reached(live, len(first)), timeout=120)
        emails, merges = hinted(first), []
        for a, b in zip(emails[0:6:2], emails[1:6:2], strict=True):
            merged = await client.post(
                "/v1/customers/resolve",
                json={"identities": [{"kind": "email", "value": a}, {"kind": "email", "value": b}]},
            )
            assert merged.json()["merge_ids"], merged.text
            merges.extend(merged.json()["merge_ids"])
        # Events for both ids while they are merged go to the survivor; the undo
        # (customer.unmerged) moves the absorbed id's share back.
        await publish(broker, topics, while_merged)
        total = len(first) + len(while_merged)
        await wait_until(lambda: _reached(live, total), timeout=120)
        undone = await client.post(f"/v1/merges/{merges[0]}/undo")
        assert undone.status_code == 200, undone.text
        prefs = {"source": "test", "consents": {"sms": "opt_out"}, "language": "vi"}
        assert (
            await client.put(f"/v1/customers/{ids[10]}/preferences", json=prefs)
        ).status_code == 200
        assert (await client.delete(f"/v1/customers/{ids[11]}")).status_code == 204
        await publish(broker, topics, second)
        await wait_until(lambda: _reached(live, total + len(second)), timeout=120)
    before = await snapshot(live, ids)
    await live.dispose()

    applied = await rebuild(settings, target_url=fresh_url, records_from=live_url)
    rebuilt_db = Database(fresh_url)
    after = await snapshot(rebuilt_db, ids)
    await rebuilt_db.dispose()
    assert applied == total + len(second)
    assert {k: v for k, v in after.items() if v != before[k]} == {
        k: v for k, v in before.items() if v != after[k]
    }
    assert sum(1 for view, _ in before.values() if view["segments"]) > 0


async def _reached(db: Database, count: int) -> bool:
    return await processed(db) >= count
