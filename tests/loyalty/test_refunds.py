"""Refunds reverse points in proportion, once, whatever order the events arrive in."""

from __future__ import annotations

import pytest

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
