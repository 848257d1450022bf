"""Tiers on points earned over a rolling window, up at once, down by policy."""

from __future__ import annotations

from typing import Any

import pytest

from shared.timers import Scheduler
from tests.loyalty.support import FakeClock, Loyalty, at, merged, purchase, unmerged

pytestmark = pytest.mark.db

TIERS = [
    {"name": "Member", "threshold": 0},
    {"name": "Silver", "threshold": 100, "multiplier": "1.5", "perks": ["free delivery"]},
    {"name": "Gold", "threshold": 300, "multiplier": "2"},
]


async def run_until(scheduler: Scheduler, clock: FakeClock, day: float) -> None:
    clock.now = at(day)
    while await scheduler.fire_due():
        pass


async def changes(loyalty: Loyalty) -> list[tuple[Any, ...]]:
    return [
        (e["data"]["old_tier"], e["data"]["new_tier"], e["data"]["direction"], e["time"][:10])
        for e in await loyalty.published("tier.changed")
    ]


async def test_up_inside_the_window_and_down_at_its_end(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(
        tiers=TIERS, tier_policy={"window_days": 30, "downgrade": "window_end"}
    )
    clock = FakeClock()
    scheduler = loyalty.scheduler(clock)
    await loyalty.handle(purchase("c", "60", when=at(0)), purchase("c", "50", when=at(10)))
    member = await loyalty.member("c")
    assert member is not None
    assert member.tier == "Silver"
    await loyalty.handle(purchase("c", "100", when=at(20)))
    assert await loyalty.balance("c") == 60 + 50 + 150  # Silver earns x1.5
    await run_until(scheduler, clock, 40)  # review: 150 earned in (day 10, day 40]: kept
    assert (await loyalty.member("c")).tier == "Silver"  # type: ignore[union-attr]
    await run_until(scheduler, clock, 70)  # review: nothing earned in (40, 70]: down
    assert (await loyalty.member("c")).tier == "Member"  # type: ignore[union-attr]
    assert await changes(loyalty) == [
        ("Member", "Silver", "up", at(10).isoformat()[:10]),
        ("Silver", "Member", "down", at(70).isoformat()[:10]),
    ]
    up = (await loyalty.published("tier.changed"))[0]
    assert up["data"]["benefits"] == ["free delivery"]
    assert "110 earned" in up["data"]["reason"]


async def test_points_that_left_the_window_do_not_count(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(tiers=TIERS, tier_policy={"window_days": 30})
    await loyalty.handle(purchase("c", "60", when=at(0)), purchase("c", "50", when=at(30.5)))
    assert (await loyalty.member("c")).tier is None  # type: ignore[union-attr]
    await loyalty.handle(purchase("c", "50", when=at(31)))
    assert (await loyalty.member("c")).tier == "Silver"  # type: ignore[union-attr]


@pytest.mark.parametrize(("policy", "down_on"), [("none", None), ("grace", 45)])
async def test_downgrade_policies(loyalty: Loyalty, policy: str, down_on: int | None) -> None:
    await loyalty.publish_rules(
        tiers=TIERS, tier_policy={"window_days": 30, "downgrade": policy, "grace_days": 15}
    )
    clock = FakeClock()
    scheduler = loyalty.scheduler(clock)
    await loyalty.handle(purchase("c", "120", when=at(0)))
    await run_until(scheduler, clock, 44)
    assert (await loyalty.member("c")).tier == "Silver"  # type: ignore[union-attr]
    await run_until(scheduler, clock, 400)
    tier = (await loyalty.member("c")).tier  # type: ignore[union-attr]
    assert tier == ("Silver" if down_on is None else "Member")
    downs = [c for c in await changes(loyalty) if c[2] == "down"]
    assert [d[3] for d in downs] == ([] if down_on is None else [at(down_on).isoformat()[:10]])


async def test_a_restored_member_keeps_its_tier_until_its_review_says_otherwise(
    loyalty: Loyalty,
) -> None:
    """Merged away, its review was cancelled; restored, it is reviewed where its policy
    says, on its own earnings (what the merge moved stays with the survivor)."""
    await loyalty.publish_rules(
        tiers=TIERS, tier_policy={"window_days": 30, "downgrade": "window_end"}
    )
    clock = FakeClock()
    scheduler = loyalty.scheduler(clock)
    await loyalty.handle(purchase("gone", "120", when=at(0)), purchase("keep", "5", when=at(0)))
    await loyalty.handle(merged("keep", "gone", when=at(5)))
    gone = await loyalty.member("gone")
    assert gone is not None
    assert (gone.tier, gone.next_review_at) == ("Silver", None)
    await loyalty.handle(unmerged("keep", "gone", when=at(6)))
    gone = await loyalty.member("gone")
    assert gone is not None
    assert gone.tier == "Silver"
    assert gone.next_review_at is not None
    assert gone.next_review_at.replace(tzinfo=at(30).tzinfo) == at(30)
    await loyalty.handle(purchase("gone", "100", when=at(20)))
    await run_until(scheduler, clock, 31)  # 150 earned in (day 0, day 30]: kept
    assert (await loyalty.member("gone")).tier == "Silver"  # type: ignore[union-attr]
    await run_until(scheduler, clock, 61)  # nothing in (30, 60]: down
    assert (await loyalty.member("gone")).tier == "Member"  # type: ignore[union-attr]
