"""Loyalty's base earning against a real, migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.loyalty import service
from services.loyalty.main import MIGRATIONS
from services.loyalty.models import LedgerEntry, Member
from shared.db import Database
from shared.events import decode
from shared.events.loyalty import PointsEarned
from shared.migrations import upgrade_async
from shared.plumbing import outbox
from tests.conftest import DatabaseFactory
from tests.helpers import purchase


@pytest.mark.parametrize(
    ("amount", "rate", "points"),
    [
        ("100.00", "1", 100),
        ("99.99", "1", 99),  # always rounded down to a whole point
        ("0.99", "1", 0),
        ("125000", "0.001", 125),  # 1 point per 1,000 VND
        ("10.50", "2.5", 26),
        ("0", "1", 0),
    ],
)
def test_base_points_round_down(amount: str, rate: str, points: int) -> None:
    assert service.base_points(Decimal(amount), Decimal(rate)) == points


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    url = await database_url("loyalty")
    await upgrade_async(MIGRATIONS, url)
    database = Database(url)
    yield database
    await database.dispose()


@pytest.mark.db
async def test_a_purchase_earns_points_with_a_ledger_entry_and_an_event(db: Database) -> None:
    event = purchase("c-1", "42.70", purchase_id="R-1")
    async with db.unit_of_work() as session:
        assert await service.award_purchase_points(session, event=event, rate=Decimal(1)) == 42
    async with db.unit_of_work() as session:
        member = await session.get(Member, "c-1")
        entries = (await session.execute(select(LedgerEntry))).scalars().all()
        published = (await session.execute(select(outbox.c.topic, outbox.c.value))).all()
    assert member is not None
    assert (member.balance, member.lifetime_earned) == (42, 42)
    assert [(e.kind, e.points, e.source_event_id, e.purchase_id) for e in entries] == [
        ("earn", 42, event.id, "R-1")
    ]
    assert len(published) == 1
    earned = decode(published[0].value)
    assert isinstance(earned, PointsEarned)
    assert (earned.subject, earned.data.points, earned.data.balance) == ("c-1", 42, 42)
    assert earned.time == event.time


@pytest.mark.db
async def test_balance_is_the_sum_of_the_ledger(db: Database) -> None:
    for amount in ("10", "20.5", "0.4", "7"):
        async with db.unit_of_work() as session:
            await service.award_purchase_points(
                session, event=purchase("c-2", amount), rate=Decimal(1)
            )
    async with db.unit_of_work() as session:
        member = await service.get_member(session, customer_id="c-2")
        total = (await session.execute(select(func.sum(LedgerEntry.points)))).scalar_one()
        last = (
            await session.execute(
                select(LedgerEntry.balance_after).order_by(LedgerEntry.id.desc()).limit(1)
            )
        ).scalar_one()
    assert member.balance == total == last == 37


@pytest.mark.db
async def test_an_unknown_member_is_a_clear_404(db: Database) -> None:
    async with db.unit_of_work() as session:
        with pytest.raises(service.MemberNotFound) as caught:
            await service.get_member(session, customer_id="nobody")
    assert caught.value.status_code == 404
    assert "nobody" in caught.value.message
