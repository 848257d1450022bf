"""The loyalty app against the real broker: purchases in, loyalty events out."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from services.loyalty.config import LoyaltySettings
from services.loyalty.main import create_app
from shared.db import Database
from shared.events import decode
from shared.events.loyalty import PointsEarned, PointsReversed
from tests.helpers import TEST_SECRET, auth_headers, produce, read_topic, wait_until
from tests.loyalty.support import purchase, refund

pytestmark = [pytest.mark.db, pytest.mark.kafka]


async def test_a_purchase_on_kafka_earns_points_and_a_refund_reverses_them(
    broker: str, topics: str, db: Database
) -> None:
    settings = LoyaltySettings(
        database_url=db.url,
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_ms=50,
        auth_secret=TEST_SECRET,
        log_json=False,
    )
    app = create_app(settings)
    # Bought now: the service's expiry clock is the wall clock, and a purchase dated
    # long ago would also publish points.expiring for its lot.
    now = datetime.now(UTC)
    bought = purchase("cus-k", "64.90", purchase_id="K-1", when=now)
    returned = refund("cus-k", "K-1", "32.45", refund_id="KR-1", when=now)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            await produce(broker, f"{topics}commerce.purchases", (b"cus-k", bought.to_json()))

            async def balance() -> int | None:
                r = await api.get("/v1/members/cus-k", headers=auth_headers("loyalty:read"))
                return r.json()["balance"] if r.status_code == 200 else None

            assert await wait_until(balance) == 64
            await produce(broker, f"{topics}commerce.purchases", (b"cus-k", returned.to_json()))

            async def reversed_half() -> bool:
                return await balance() == 32

            await wait_until(reversed_half)
            records = await read_topic(broker, f"{topics}loyalty.events", expect=2)
    events = [decode(r.value) for r in records]
    assert [type(e) for e in events] == [PointsEarned, PointsReversed]
    earned, reversed_ = events
    assert isinstance(earned, PointsEarned)
    assert isinstance(reversed_, PointsReversed)
    assert (earned.data.points, earned.data.purchase_id, earned.subject) == (64, "K-1", "cus-k")
    assert (reversed_.data.points, reversed_.data.balance, reversed_.data.refund_id) == (
        32,
        32,
        "KR-1",
    )
    assert {r.key for r in records} == {b"cus-k"}
