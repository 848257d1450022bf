"""Points expire in event time through durable timers; a restart loses nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Lot
from shared.db import Database
from tests.loyalty.support import FakeClock, Loyalty, at, purchase

pytestmark = pytest.mark.db

EXPIRING = LoyaltySettings(expiry_days=30, expiring_notice_days=7)


@pytest.fixture
def loyalty(db: Database) -> Loyalty:
    return Loyalty(db, EXPIRING)


async def test_points_expire_after_the_period_even_across_a_restart(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "40", when=at(0)), purchase("c", "10", when=at(20)))
    clock = FakeClock(at(29))
    assert await loyalty.scheduler(clock).fire_due() == 1  # the notice, 7 days before
    assert await loyalty.balance("c") == 50
    clock.now = at(45)  # the service was down from day 29 to day 45: a new scheduler
    restarted = Loyalty(loyalty.db, EXPIRING).scheduler(clock)
    while await restarted.fire_due():
        pass
    assert await loyalty.balance("c") == 10
    expired = await loyalty.published("points.expired")
    assert [(e["data"]["points"], e["time"][:10]) for e in expired] == [
        (40, at(30).isoformat()[:10])
    ]
    clock.now = at(50)
    while await restarted.fire_due():
        pass
    assert await loyalty.balance("c") == 0
    assert [e.kind for e in await loyalty.entries("c")] == ["earn", "earn", "expire", "expire"]
    await loyalty.check_invariants()


async def test_a_partly_redeemed_lot_expires_only_what_is_left(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "100", when=at(0)), purchase("c", "50", when=at(10)))
    await loyalty.add_reward("mug", 70)
    await loyalty.redeem("c", "mug", now=at(5))  # oldest lot first: 30 of 100 left
    clock = FakeClock(at(31))
    while await loyalty.scheduler(clock).fire_due():
        pass
    assert await loyalty.balance("c") == 50
    expire = [e for e in await loyalty.entries("c") if e.kind == "expire"]
    assert [e.points for e in expire] == [-30]
    async with loyalty.db.unit_of_work() as session:
        remaining = (await session.execute(select(Lot.remaining).order_by(Lot.id))).scalars()
        assert list(remaining) == [0, 50]
    await loyalty.check_invariants()


async def test_one_expiring_notice_covers_every_lot_expiring_by_the_notice_horizon(
    loyalty: Loyalty,
) -> None:
    await loyalty.handle(
        purchase("c", "10", when=at(0)),
        purchase("c", "20", when=at(0)),
        purchase("c", "30", when=at(15)),
    )
    clock = FakeClock(at(23))
    while await loyalty.scheduler(clock).fire_due():
        pass
    [notice] = await loyalty.published("points.expiring")
    assert notice["data"]["points"] == 30
    assert notice["data"]["expires_at"][:10] == (at(0) + timedelta(days=30)).isoformat()[:10]
    clock.now = at(38)
    while await loyalty.scheduler(clock).fire_due():
        pass
    assert [n["data"]["points"] for n in await loyalty.published("points.expiring")] == [30, 30]
    assert await loyalty.balance("c") == 30


async def test_history_imported_long_after_the_fact_expires_at_once(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "10", when=at(0)), purchase("c", "20", when=at(100)))
    clock = FakeClock(at(120))
    while await loyalty.scheduler(clock).fire_due():
        pass
    assert await loyalty.balance("c") == 20
    await loyalty.check_invariants()
