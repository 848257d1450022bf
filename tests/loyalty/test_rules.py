"""Earning-rule arithmetic: tables of inputs and the points they must give."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.loyalty.service.rules import (
    Rules,
    RuleSetBody,
    floor,
    quote_purchase,
    unit_points,
)
from shared.events.commerce import PurchaseLine
from tests.loyalty.support import T0, Loyalty, at, purchase

CAMPAIGN = {
    "id": "double",
    "name": "Double points week",
    "starts_at": at(0).isoformat(),
    "ends_at": at(7).isoformat(),
    "multiplier": "1",
}


def rules(**body: object) -> Rules:
    return Rules(version=1, body=RuleSetBody.model_validate(body))


def line(sku: str, qty: int, price: str, category: str | None = None) -> PurchaseLine:
    return PurchaseLine(sku=sku, category=category, quantity=qty, unit_price=Decimal(price))


@pytest.mark.parametrize(
    ("amount", "rate", "points"),
    [
        ("100.00", "1", 100),
        ("99.99", "1", 99),  # rounded down to a whole point
        ("0.99", "1", 0),
        ("125000", "0.001", 125),  # 1 point per 1,000 VND
        ("10.50", "2.5", 26),  # 26.25
        ("0", "1", 0),
    ],
)
def test_base_points_are_rounded_down(amount: str, rate: str, points: int) -> None:
    quote = quote_purchase(
        rules(points_per_unit=rate),
        amount=Decimal(amount),
        currency="EUR",
        lines=(),
        when=T0,
        tier=None,
    )
    assert quote.base == points


@pytest.mark.parametrize(
    ("lines", "total", "points"),
    [
        # shoes x2 by category: 50 paid → 100
        ((line("s1", 1, "50", "shoes"),), "50", 100),
        # SKU beats category: 3 x 10 at x3 = 90, plus 20 at x1
        ((line("s2", 3, "10", "shoes"), line("x", 1, "20")), "50", 110),
        # a discount scales every line to what was paid: 40 of 50 listed
        ((line("s1", 1, "25", "shoes"), line("x", 1, "25")), "40", 60),
        # no lines: the total at the base rate
        ((), "33.30", 33),
    ],
)
def test_category_and_sku_multipliers(
    lines: tuple[PurchaseLine, ...], total: str, points: int
) -> None:
    table = rules(category_multipliers={"shoes": "2"}, sku_multipliers={"s2": "3"})
    quote = quote_purchase(
        table, amount=Decimal(total), currency="EUR", lines=lines, when=T0, tier=None
    )
    assert quote.base == points


@pytest.mark.parametrize(
    ("tier", "points"), [(None, 101), ("Member", 101), ("Silver", 151), ("Gold", 202)]
)
def test_tier_multipliers_apply_to_the_exact_base(tier: str | None, points: int) -> None:
    table = rules(
        tiers=[
            {"name": "Member", "threshold": 0},
            {"name": "Silver", "threshold": 500, "multiplier": "1.5"},
            {"name": "Gold", "threshold": 2000, "multiplier": "2"},
        ]
    )
    quote = quote_purchase(
        table, amount=Decimal("101.10"), currency="EUR", lines=(), when=T0, tier=tier
    )
    assert quote.base == points


@pytest.mark.parametrize(
    ("when", "bonus"),
    [(at(-0.001), None), (at(0), 100), (at(6.99), 100), (at(7), None)],
)
def test_campaigns_apply_inside_their_window_only(when: object, bonus: int | None) -> None:
    quote = quote_purchase(
        rules(campaigns=[CAMPAIGN]),
        amount=Decimal("100.5"),
        currency="EUR",
        lines=(),
        when=when,  # type: ignore[arg-type]
        tier=None,
    )
    assert [b for _, b in quote.campaigns] == ([] if bonus is None else [bonus])


def test_currency_rates_and_unit_points_split_exactly() -> None:
    table = rules(points_per_unit_by_currency={"VND": "0.001"})
    assert table.rate("VND") == Decimal("0.001")
    assert table.rate("EUR") == Decimal(1)
    lines = (line("a", 2, "10"), line("b", 1, "10"))
    per_unit = unit_points(10, {"a": Decimal(20), "b": Decimal(10)}, lines)
    assert sum(Decimal(per_unit[s]) * q for s, q in (("a", 2), ("b", 1))) == 10
    assert floor(Decimal("-0.5")) == -1


@pytest.mark.parametrize(
    "body",
    [
        {"tiers": [{"name": "A", "threshold": 10}]},  # no base tier
        {"tiers": [{"name": "A", "threshold": 0}, {"name": "A", "threshold": 5}]},
        {"campaigns": [{**CAMPAIGN, "ends_at": CAMPAIGN["starts_at"]}]},
        {"points_per_unit": "-1"},
        {"unknown_rule": 1},
    ],
)
def test_inconsistent_rule_sets_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RuleSetBody.model_validate(body)


@pytest.mark.db
async def test_campaign_budgets_cap_per_member_and_in_total(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(
        campaigns=[{**CAMPAIGN, "member_budget": 150, "global_budget": 250}]
    )
    await loyalty.handle(
        purchase("a", "100", when=at(1)),  # +100 bonus (a: 100 used, total 100)
        purchase("a", "100", when=at(2)),  # +50: a's budget is spent
        purchase("b", "100", when=at(3)),  # +100 (total 250)
        purchase("c", "100", when=at(4)),  # +0: the global budget is spent
        purchase("c", "100", when=at(8)),  # after the window
    )
    assert [await loyalty.balance(c) for c in "abc"] == [350, 200, 200]
    campaign = [
        e for c in "abc" for e in await loyalty.entries(c) if e.rule_id == "campaign:double"
    ]
    assert [e.points for e in campaign] == [100, 50, 100]
    await loyalty.check_invariants()


@pytest.mark.db
async def test_milestones_fire_exactly_once(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(
        milestones=[
            {"id": "first", "nth_purchase": 1, "points": 25},
            {"id": "tenth", "nth_purchase": 10, "reward_name": "A free coffee"},
        ]
    )
    events = [purchase("c-1", "1", when=at(i)) for i in range(12)]
    await loyalty.handle(*events, events[0], events[9])  # redelivered copies change nothing
    entries = await loyalty.entries("c-1")
    assert [e.points for e in entries if e.rule_id == "milestone:first"] == [25]
    unlocked = await loyalty.published("reward.unlocked")
    assert [u["data"]["reward_name"] for u in unlocked] == ["A free coffee"]
    assert unlocked[0]["time"].startswith(at(9).isoformat()[:19])
    assert await loyalty.balance("c-1") == 12 + 25
