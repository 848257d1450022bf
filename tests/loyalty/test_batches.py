"""A consumer batch (many events, one transaction) ends exactly where one-by-one does.

Purchases leave their rows pending until the batch commits (a few multi-row
statements instead of several per event); these tests pin that the shortcut never
changes an outcome, including for events that read what an earlier one wrote.
"""

from __future__ import annotations

import pytest

from shared.events import Event
from tests.loyalty.support import Loyalty, at, interaction, merged, purchase, refund

pytestmark = pytest.mark.db

RULES = {
    "interaction_points": {"review": 7},
    "campaigns": [
        {
            "id": "wk",
            "name": "Week",
            "starts_at": at(0).isoformat(),
            "ends_at": at(9).isoformat(),
            "bonus_points": 5,
            "member_budget": 12,
        }
    ],
    "milestones": [{"id": "third", "nth_purchase": 3, "points": 30}],
    "tiers": [{"name": "Member", "threshold": 0}, {"name": "Gold", "threshold": 150}],
}


def story(tag: str) -> list[Event]:
    a, b = f"{tag}-a", f"{tag}-b"
    first = purchase(a, "40", purchase_id=f"{tag}-P1", when=at(1))
    return [
        first,
        purchase(a, "40", purchase_id=f"{tag}-P1", when=at(1)),  # same purchase, new event id
        refund(a, f"{tag}-P2", "10", when=at(2)),  # before its purchase, same batch
        purchase(a, "60", purchase_id=f"{tag}-P2", when=at(2)),
        refund(a, f"{tag}-P1", "20", when=at(3)),
        interaction(a, "review", when=at(3)),
        purchase(b, "90", purchase_id=f"{tag}-P3", when=at(4)),
        purchase(a, "70", purchase_id=f"{tag}-P4", when=at(5)),  # a's third: milestone
        merged(a, b, when=at(6)),
        purchase(b, "15", purchase_id=f"{tag}-P5", when=at(7)),  # lands on the survivor
        refund(b, f"{tag}-P3", "90", when=at(8)),
    ]


async def outcome(loyalty: Loyalty, tag: str) -> tuple[object, ...]:
    a = await loyalty.member(f"{tag}-a")
    assert a is not None
    entries = await loyalty.entries(f"{tag}-a") + await loyalty.entries(f"{tag}-b")
    return (
        a.balance,
        a.lifetime_earned,
        a.purchase_count,
        a.tier,
        sorted((e.kind, e.points, e.rule_id or "") for e in entries),
    )


async def published(loyalty: Loyalty, tag: str) -> list[tuple[str, str, object]]:
    """What went to the outbox for this story, in order (ids differ between stories)."""
    return [
        (e["type"], e["subject"].removeprefix(tag), e["data"].get("points"))
        for e in await loyalty.published()
        if e["subject"].startswith(tag)
    ]


async def test_a_batch_ends_where_one_event_at_a_time_does(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(**RULES)
    await loyalty.handle(*story("single"))
    await loyalty.handle_batch(*story("batch"))
    single, batch = await outcome(loyalty, "single"), await outcome(loyalty, "batch")
    assert batch == single
    assert await published(loyalty, "batch") == await published(loyalty, "single")
    assert [t for t, _, _ in await published(loyalty, "batch")] == [
        "points.earned",
        "points.earned",
        "points.reversed",
        "points.reversed",
        "points.earned",
        "points.earned",
        "points.earned",
        "tier.changed",
        "points.earned",
        "points.reversed",
    ]
    # a: P1 40+5, P2 60+5 less 11 (10/60 of 65, half-up), P1 refund half of 45 -> 23,
    # review 7, P4 70 + 2 (budget left) + 30 (third purchase); b: P3 90+5 merged in;
    # P5 15 (a's budget spent); P3 refunded in full: -95.
    balance = 45 + 65 - 11 - 23 + 7 + 102 + 95 + 15 - 95
    assert single[:4] == (balance, 45 + 65 + 7 + 102 + 95 + 15, 5, "Gold")
    await loyalty.check_invariants()
