"""Idempotency-Keys are kept for ``redemption_key_retention_days``, then pruned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select

from services.loyalty.config import LoyaltySettings
from services.loyalty.main import create_app
from services.loyalty.models import RedemptionRequest
from services.loyalty.service.redemption import prune_keys
from shared.db import Database
from shared.retention import PRUNE_BATCH
from tests.helpers import TEST_SECRET
from tests.loyalty.support import Loyalty
from tests.loyalty.test_redemption import balance, credit, redeem, requests_held, reward

pytestmark = pytest.mark.db

SETTINGS = LoyaltySettings(redemption_key_retention_days=7)


async def age(db: Database, days: float, *keys: str) -> None:
    """Make the keys' first use ``days`` older than it was."""
    async with db.unit_of_work() as session:
        rows = await session.execute(
            select(RedemptionRequest).where(RedemptionRequest.idempotency_key.in_(keys))
        )
        for request in rows.scalars():
            request.created_at -= timedelta(days=days)


async def test_only_keys_past_their_retention_are_pruned(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await reward(api, "mug", 20)
    await credit(api, "c", 30)
    assert (await redeem(api, "c", "mug", key="old")).status_code == 201
    assert (await redeem(api, "c", "mug", key="new")).status_code == 409
    await age(loyalty.db, 8, "old")
    now = datetime.now(UTC)
    assert await prune_keys(loyalty.db, SETTINGS, now=now) == 1
    assert await requests_held(loyalty) == [("c", "new")]
    assert await prune_keys(loyalty.db, SETTINGS, now=now + timedelta(days=6)) == 0
    assert await prune_keys(loyalty.db, SETTINGS, now=now + timedelta(days=8)) == 1
    assert await requests_held(loyalty) == []


async def test_a_granted_key_still_replays_after_pruning_and_is_never_spent_twice(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    """Its redemption row remembers the key and the request: a retry a month later gets
    the same redemption, and the same key with another body is still refused."""
    await reward(api, "mug", 20)
    await reward(api, "cap", 5)
    await credit(api, "c", 50)
    first = await redeem(api, "c", "mug", key="k-1")
    assert first.status_code == 201
    await age(loyalty.db, 30, "k-1")
    assert await prune_keys(loyalty.db, SETTINGS, now=datetime.now(UTC)) == 1
    again = await redeem(api, "c", "mug", key="k-1")
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await balance(api, "c") == 30
    assert (await redeem(api, "c", "cap", key="k-1")).status_code == 422
    await loyalty.check_invariants()


async def test_a_pruned_refusal_is_decided_afresh(api: httpx.AsyncClient, loyalty: Loyalty) -> None:
    """Within the retention a refusal is the key's answer; after it, a retry of the key
    is a new request (clients retry within seconds or minutes, not days)."""
    await reward(api, "mug", 20)
    await credit(api, "c", 10)
    assert (await redeem(api, "c", "mug", key="k-1")).status_code == 409
    await credit(api, "c", 20)
    kept = await redeem(api, "c", "mug", key="k-1")
    assert (kept.status_code, kept.headers["Idempotent-Replayed"]) == (409, "true")
    await age(loyalty.db, 8, "k-1")
    await prune_keys(loyalty.db, SETTINGS, now=datetime.now(UTC))
    fresh = await redeem(api, "c", "mug", key="k-1")
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh.headers
    assert await balance(api, "c") == 10
    await loyalty.check_invariants()


async def test_pruning_goes_a_batch_at_a_time_until_none_is_left(loyalty: Loyalty) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "customer_id": f"c-{i % 7}",
            "idempotency_key": f"k-{i}",
            "request_hash": "h",
            "created_at": now - timedelta(days=8 if i < PRUNE_BATCH + 5 else 1),
        }
        for i in range(PRUNE_BATCH + 12)
    ]
    async with loyalty.db.unit_of_work() as session:
        await session.execute(insert(RedemptionRequest), rows)
    assert await prune_keys(loyalty.db, SETTINGS, now=now) == PRUNE_BATCH + 5
    assert len(await requests_held(loyalty)) == 7


@pytest.fixture
async def pruning_app(db: Database) -> AsyncIterator[None]:
    settings = LoyaltySettings(
        database_url=db.url,
        auth_secret=TEST_SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        redemption_key_sweep_seconds=0.05,
        log_json=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield


async def test_the_service_prunes_on_its_own(loyalty: Loyalty, pruning_app: None) -> None:
    async with loyalty.db.unit_of_work() as session:
        await session.execute(
            insert(RedemptionRequest),
            [
                {
                    "customer_id": "c",
                    "idempotency_key": key,
                    "request_hash": "h",
                    "created_at": datetime.now(UTC) - timedelta(days=days),
                }
                for key, days in (("stale", 9), ("fresh", 1))
            ],
        )
    for _ in range(200):
        if await requests_held(loyalty) == [("c", "fresh")]:
            break
        await asyncio.sleep(0.05)
    assert await requests_held(loyalty) == [("c", "fresh")]
