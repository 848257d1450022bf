"""Refunds reverse points in proportion, once, whatever order the events arrive in."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from services.loyalty.service import refunds
from tests.conftest import TEST_DB
from tests.loyalty.support import Loyalty, at, purchase, refund

pytestmark = pytest.mark.db


async def test_a_full_refund_reverses_the_purchase(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "80", purchase_id="P"), refund("c", "P", "80"))
    assert await loyalty.balance("c") == 0
    [reversed_] = await loyalty.published("points.reversed")
    assert (reversed_["data"]["points"], reversed_["data"]["purchase_id"]) == (80, "P")
    await loyalty.check_invariants()


async def test_a_refund_before_its_purchase_converges(loyalty: Loyalty) -> None:
    await loyalty.handle(refund("c", "P", "25", when=at(1)))
    assert (await loyalty.member("c")) is not None
    assert await loyalty.balance("c") == 0
    await loyalty.handle(purchase("c", "100", purchase_id="P", when=at(0)))
    assert await loyalty.balance("c") == 75
    kinds = [(e.kind, e.points) for e in await loyalty.entries("c")]
    assert kinds == [("earn", 100), ("reverse", -25)]
    await loyalty.check_invariants()


async def test_a_duplicate_refund_is_reversed_once(loyalty: Loyalty) -> None:
    first = refund("c", "P", "30", refund_id="R-1")
    again = refund("c", "P", "30", refund_id="R-1")  # same refund, new event id
    await loyalty.handle(purchase("c", "100", purchase_id="P"), first, first, again)
    assert await loyalty.balance("c") == 70


@pytest.mark.parametrize(
    ("total", "parts", "earned"),
    [
        ("100", ["33.33", "33.33", "33.34"], 100),
        ("10", ["3", "3", "4"], 10),
        ("99.99", ["0.01"] * 3 + ["99.96"], 99),
        ("7", ["1"] * 7, 7),
    ],
)
async def test_partial_refunds_adding_up_to_the_total_reverse_everything(
    loyalty: Loyalty, total: str, parts: list[str], earned: int
) -> None:
    await loyalty.handle(purchase("c", total, purchase_id="P"))
    assert await loyalty.balance("c") == earned
    for amount in parts:
        await loyalty.handle(refund("c", "P", amount))
    assert await loyalty.balance("c") == 0
    reversals = [e.points for e in await loyalty.entries("c") if e.kind == "reverse"]
    assert sum(reversals) == -earned
    await loyalty.check_invariants()


async def test_a_per_line_refund_takes_back_that_line_with_its_multiplier(
    loyalty: Loyalty,
) -> None:
    await loyalty.publish_rules(category_multipliers={"shoes": "3"})
    lines = (("boot", "shoes", 1, "50"), ("sock", None, 2, "5"))
    await loyalty.handle(purchase("c", "60", purchase_id="P", lines=lines))
    assert await loyalty.balance("c") == 160
    await loyalty.handle(refund("c", "P", "5", lines=(("sock", 1),)))
    assert await loyalty.balance("c") == 155
    await loyalty.handle(refund("c", "P", "50", lines=(("boot", 1),)))
    assert await loyalty.balance("c") == 5


async def test_refunding_spent_points_leaves_a_debt_the_next_earnings_pay(
    loyalty: Loyalty,
) -> None:
    await loyalty.handle(purchase("c", "100", purchase_id="P"))
    await loyalty.handle(purchase("c", "20", purchase_id="Q"))
    await loyalty.add_reward("bike", 110)
    await loyalty.redeem("c", "bike")
    await loyalty.handle(refund("c", "P", "100"))
    assert await loyalty.balance("c") == -90  # documented: a refund may leave a debt
    await loyalty.check_invariants()
    await loyalty.handle(purchase("c", "100"))
    assert await loyalty.balance("c") == 10
    await loyalty.check_invariants()


async def _waiting_for_a_lock(loyalty: Loyalty) -> None:
    """Until some other transaction of this database waits for a row lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(500):
        async with loyalty.db.engine.connect() as conn:
            if (await conn.execute(query)).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the purchase never waited for the member lock")


@pytest.mark.skipif(TEST_DB != "postgres", reason="SQLite runs one writer at a time")
@pytest.mark.parametrize("batched", [False, True])
async def test_a_refund_committing_while_its_purchase_waits_is_applied(
    loyalty: Loyalty, batched: bool
) -> None:
    """Another consumer holds the member while it records a refund before its purchase;
    the purchase's transaction has already looked for waiting refunds and found none.
    Once it has the lock it must look again, or the refund waits forever."""
    await loyalty.handle(purchase("c", "10", purchase_id="P-0"))  # the member exists
    late = purchase("c", "100", purchase_id="P")
    handle = loyalty.handle_batch if batched else loyalty.handle
    async with loyalty.db.unit_of_work() as session:
        await refunds.record_refund(session, event=refund("c", "P", "40"))
        earning = asyncio.create_task(handle(late))
        await _waiting_for_a_lock(loyalty)
    await earning
    assert await loyalty.balance("c") == 10 + 60
    await loyalty.check_invariants()
