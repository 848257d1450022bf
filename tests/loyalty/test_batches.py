"""A consumer batch (many events, one transaction) ends exactly where one-by-one does.

Purchases leave their rows pending until the batch commits (a few multi-row
statements instead of several per event); these tests pin that the shortcut never
changes an outcome, including for events that read what an earlier one wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import event, select, update

from services.loyalty.models import CampaignUsage, LedgerEntry, Member
from services.loyalty.service import schedule
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.plumbing import timers
from tests.loyalty.support import (
    FakeClock,
    Loyalty,
    at,
    erased,
    interaction,
    merged,
    purchase,
    refund,
    registered,
    updated,
)

pytestmark = pytest.mark.db

WEEK = {  # a campaign over the stories' days: 5 points a purchase, 12 a member at most
    "id": "wk",
    "name": "Week",
    "starts_at": at(0).isoformat(),
    "ends_at": at(9).isoformat(),
    "bonus_points": 5,
    "member_budget": 12,
}
RULES = {
    "interaction_points": {"review": 7},
    "campaigns": [WEEK],
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
    await loyalty.handle_together(*story("together"))  # no runner: nothing read ahead
    single, batch = await outcome(loyalty, "single"), await outcome(loyalty, "batch")
    assert batch == single
    assert await outcome(loyalty, "together") == single
    assert await published(loyalty, "batch") == await published(loyalty, "single")
    assert await published(loyalty, "together") == await published(loyalty, "single")
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


# Read-ahead: a run of purchases in a runner batch reads purchase state and locks
# members once for the run. Each story below is a list of batches, built fresh for a
# tag; handled one event per transaction, then one runner batch per list, the books
# and the published events must be the same.

Story = Callable[[str], list[list[Event]]]


def _same_purchase_twice(t: str) -> list[list[Event]]:
    p1 = purchase(f"{t}-a", "40", purchase_id=f"{t}-P1", when=at(1))
    return [
        [
            p1,
            purchase(f"{t}-a", "40", purchase_id=f"{t}-P1", when=at(1)),  # new event id
            purchase(f"{t}-b", "40", purchase_id=f"{t}-P1", when=at(1)),  # another member even
            purchase(f"{t}-a", "10", purchase_id=f"{t}-P2", when=at(2)),
            p1,  # the very same event again: the runner's inbox skips it
        ],
        [purchase(f"{t}-a", "40", purchase_id=f"{t}-P1", when=at(3)), p1],  # a later batch
    ]


def _refund_and_purchase_together(t: str) -> list[list[Event]]:
    a = f"{t}-a"
    return [
        [refund(a, f"{t}-P9", "15", when=at(0))],  # waits in an earlier batch
        [
            refund(a, f"{t}-P1", "10", when=at(1)),  # before its purchase, same batch
            purchase(a, "40", purchase_id=f"{t}-P1", when=at(1)),
            purchase(f"{t}-b", "30", purchase_id=f"{t}-P2", when=at(2)),
            purchase(a, "60", purchase_id=f"{t}-P9", when=at(2)),  # the refund from before
            purchase(a, "20", purchase_id=f"{t}-P3", when=at(3)),
            refund(a, f"{t}-P3", "20", when=at(3)),  # after its purchase, same batch
            purchase(a, "20", purchase_id=f"{t}-P3", when=at(3)),  # and the purchase again
        ],
    ]


def _milestone_between_two_purchases(t: str) -> list[list[Event]]:
    a, b = f"{t}-a", f"{t}-b"
    return [
        [purchase(a, "10", when=at(1))],
        [
            purchase(a, "10", when=at(2)),  # a's second: the milestone
            purchase(b, "10", when=at(2)),
            purchase(a, "10", when=at(3)),  # a's third: nothing more
            purchase(b, "10", when=at(3)),  # b's second: b's milestone
        ],
    ]


def _merge_and_erasure_inside_runs(t: str) -> list[list[Event]]:
    a, b, c = f"{t}-a", f"{t}-b", f"{t}-c"
    return [
        [purchase(c, "50", purchase_id=f"{t}-C1", when=at(0))],
        [
            purchase(b, "25", purchase_id=f"{t}-P1", when=at(1)),
            purchase(a, "10", purchase_id=f"{t}-P2", when=at(1)),
            merged(a, b, when=at(2)),
            purchase(b, "15", purchase_id=f"{t}-P3", when=at(3)),  # lands on a
            purchase(a, "5", purchase_id=f"{t}-P4", when=at(3)),
            erased(c, when=at(4)),
            purchase(c, "50", purchase_id=f"{t}-C1", when=at(4)),  # known: no member again
            purchase(a, "5", purchase_id=f"{t}-P5", when=at(5)),
        ],
        [purchase(c, "50", purchase_id=f"{t}-C1", when=at(6))],  # and not in a run of its own
    ]


def _out_of_order_times(t: str) -> list[list[Event]]:
    """Expiry timers move earlier when an older purchase arrives after a newer one."""
    a, b = f"{t}-a", f"{t}-b"
    return [
        [purchase(a, "10", when=at(5))],
        [
            purchase(a, "10", when=at(3)),  # earlier: a's expiry and notice timers move
            purchase(b, "10", when=at(4)),
            purchase(b, "10", when=at(2)),  # within one run, new member: held then moved
            purchase(a, "10", when=at(1)),
            purchase(b, "10", when=at(6)),
        ],
    ]


def _tier_thresholds(t: str) -> list[list[Event]]:
    """Upgrades inside a run, and points that left the window (the full query path)."""
    a, b = f"{t}-a", f"{t}-b"
    return [
        [purchase(a, "40", when=at(-400)), purchase(b, "30", when=at(0))],
        [
            purchase(a, "20", when=at(1)),  # a: 80 ever, 40 in the window (milestone): Member
            purchase(b, "15", when=at(1)),  # b: 30 + 15 + 20 (milestone) = 65: Silver
            purchase(a, "40", when=at(2)),  # a: 80 in the window: Silver
            purchase(b, "55", when=at(3)),  # b: exactly 120 ever and in the window: Gold
            purchase(a, "5", when=at(3)),
        ],
    ]


STORY_RULES: dict[str, Any] = {
    "milestones": [{"id": "second", "nth_purchase": 2, "points": 20}],
    "expiry_days": 500,
    "tiers": [
        {"name": "Member", "threshold": 0},
        {"name": "Silver", "threshold": 50},
        {"name": "Gold", "threshold": 120},
    ],
    "tier_policy": {"window_days": 365, "downgrade": "none"},
}


async def books(loyalty: Loyalty, tag: str) -> tuple[object, ...]:
    async with loyalty.db.unit_of_work() as session:
        members = (
            await session.execute(
                select(Member).where(Member.customer_id.like(f"{tag}-%")).order_by("customer_id")
            )
        ).scalars()
        entries = (
            await session.execute(
                select(LedgerEntry).where(LedgerEntry.purchase_id.like(f"{tag}-%"))
            )
        ).scalars()
        armed = await session.execute(
            select(timers.c.key, timers.c.due_at).where(timers.c.key.like(f"%:{tag}-%"))
        )
        return (
            sorted((key.replace(f":{tag}-", ":"), due) for key, due in armed),
            [
                (
                    m.customer_id.removeprefix(tag),
                    m.balance,
                    m.lifetime_earned,
                    m.purchase_count,
                    m.tier,
                    m.merged_into and m.merged_into.removeprefix(tag),
                    m.next_expiry_at,
                )
                for m in members
            ],
            sorted(
                (e.purchase_id.removeprefix(tag), e.kind, e.points, e.rule_id or "")
                for e in entries
                if e.purchase_id
            ),
        )


@pytest.mark.parametrize(
    "story",
    [
        _same_purchase_twice,
        _refund_and_purchase_together,
        _milestone_between_two_purchases,
        _merge_and_erasure_inside_runs,
        _out_of_order_times,
        _tier_thresholds,
    ],
)
async def test_a_run_read_ahead_ends_where_one_event_at_a_time_does(
    loyalty: Loyalty, story: Story
) -> None:
    await loyalty.publish_rules(**STORY_RULES)
    for events in story("single"):
        await loyalty.handle(*events)
    for events in story("batch"):
        await loyalty.handle_batch(*events)
    assert await books(loyalty, "batch") == await books(loyalty, "single")
    assert await published(loyalty, "batch") == await published(loyalty, "single")
    await loyalty.check_invariants()


async def test_a_purchase_counts_once_under_two_event_ids_and_on_redelivery(
    loyalty: Loyalty,
) -> None:
    for events in _same_purchase_twice("t"):
        await loyalty.handle_batch(*events)
    assert await loyalty.member("t-b") is None  # its copy of P1 was skipped: no member made
    a = await loyalty.member("t-a")
    assert a is not None
    assert (a.balance, a.purchase_count) == (50, 2)
    assert [p for _, _, p in await published(loyalty, "t")] == [40, 10]


async def test_refunds_in_or_before_the_batch_meet_their_purchase(loyalty: Loyalty) -> None:
    for events in _refund_and_purchase_together("t"):
        await loyalty.handle_batch(*events)
    assert await loyalty.balance("t-a") == (40 - 10) + (60 - 15) + (20 - 20)
    assert [(t, p) for t, _, p in await published(loyalty, "t-a")] == [
        ("points.earned", 40),  # P1, then its refund that came first
        ("points.reversed", 10),
        ("points.earned", 60),  # P9, then its refund from the earlier batch
        ("points.reversed", 15),
        ("points.earned", 20),  # P3, then its refund; its second copy earns nothing
        ("points.reversed", 20),
    ]


async def test_a_milestone_between_two_purchases_of_one_batch_fires_once(
    loyalty: Loyalty,
) -> None:
    await loyalty.publish_rules(**STORY_RULES)
    for events in _milestone_between_two_purchases("t"):
        await loyalty.handle_batch(*events)
    for who in ("a", "b"):
        entries = await loyalty.entries(f"t-{who}")
        assert [e.points for e in entries if e.rule_id == "milestone:second"] == [20]
    assert await loyalty.balance("t-a") == 30 + 20
    assert await loyalty.balance("t-b") == 20 + 20


async def test_a_run_after_a_merge_and_an_erasure_sees_them(loyalty: Loyalty) -> None:
    for events in _merge_and_erasure_inside_runs("t"):
        await loyalty.handle_batch(*events)
    assert await loyalty.member("t-c") is None  # erased, and its replayed purchase made no one
    a = await loyalty.member("t-a")
    assert a is not None
    assert (a.balance, a.purchase_count) == (25 + 10 + 15 + 5 + 5, 5)
    earned = await loyalty.published("points.earned")
    p3 = next(e for e in earned if e["data"]["purchase_id"] == "t-P3")
    assert p3["subject"] == "t-a"


async def _statements(loyalty: Loyalty, events: Sequence[Event]) -> int:
    count = 0

    def tally(*_: object) -> None:
        nonlocal count
        count += 1

    event.listen(loyalty.db.engine.sync_engine, "before_cursor_execute", tally)
    try:
        await loyalty.handle_batch(*events)
    finally:
        event.remove(loyalty.db.engine.sync_engine, "before_cursor_execute", tally)
    return count


async def test_tiers_change_in_a_batch_as_one_event_at_a_time(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(**STORY_RULES)
    for events in _tier_thresholds("t"):
        await loyalty.handle_batch(*events)
    a, b = await loyalty.member("t-a"), await loyalty.member("t-b")
    assert a is not None
    assert b is not None
    assert (a.tier, b.tier) == ("Silver", "Gold")
    changes = [(s, d["new_tier"]) for s, d in await _tier_changes(loyalty)]
    assert changes == [("t-b", "Silver"), ("t-a", "Silver"), ("t-b", "Gold")]


BUDGET_RULES: dict[str, Any] = {"campaigns": [{**WEEK, "global_budget": 30}]}


def _budgets(t: str) -> list[list[Event]]:
    a, b, c = f"{t}-a", f"{t}-b", f"{t}-c"
    return [
        [purchase(a, "10", when=at(1))],
        [
            purchase(a, "10", when=at(1)),  # a: 5 + 5
            purchase(b, "10", when=at(1)),  # b: 5
            purchase(a, "10", when=at(2)),  # a: 2, its budget spent
            purchase(a, "10", when=at(2)),  # a: 0
            merged(c, b, when=at(3)),  # c takes b's 5 against its own budget
            purchase(c, "10", when=at(4)),  # c: 5 (10 of 12)
            purchase(b, "10", when=at(4)),  # lands on c: 2 (12 of 12)
            purchase(c, "10", when=at(5)),  # c: 0
        ],
        [
            purchase(f"{t}-d", "10", when=at(5)),  # d: 5, then the global budget...
            purchase(f"{t}-e", "10", when=at(5)),  # ...has 1 left: e gets 1
            purchase(f"{t}-d", "10", when=at(6)),  # and nothing more for anyone
        ],
    ]


async def test_campaign_budgets_hold_across_a_batch(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(**BUDGET_RULES)
    for events in _budgets("single"):
        await loyalty.handle(*events)
    async with loyalty.db.unit_of_work() as session:  # a fresh global budget for the batch
        await session.execute(update(CampaignUsage).values(points=0))
    for events in _budgets("batch"):
        await loyalty.handle_batch(*events)
    assert await books(loyalty, "batch") == await books(loyalty, "single")

    def bonuses(entries: list[LedgerEntry]) -> list[int]:
        return [e.points for e in entries if e.rule_id == "campaign:wk"]

    assert bonuses(await loyalty.entries("batch-a")) == [5, 5, 2]
    assert bonuses(await loyalty.entries("batch-b")) == [5]
    assert bonuses(await loyalty.entries("batch-c")) == [5, 2]
    assert bonuses(await loyalty.entries("batch-d")) == [5]
    assert bonuses(await loyalty.entries("batch-e")) == [1]
    async with loyalty.db.unit_of_work() as session:
        used = dict(
            (await session.execute(select(CampaignUsage.customer_id, CampaignUsage.points))).all()
        )
    assert used["*"] == 30
    assert (used["batch-a"], used["batch-c"]) == (12, 12)
    await loyalty.check_invariants()


async def _tier_changes(loyalty: Loyalty) -> list[tuple[str, dict[str, Any]]]:
    return [(e["subject"], e["data"]) for e in await loyalty.published("tier.changed")]


@pytest.mark.parametrize("members", [3, 30])
@pytest.mark.parametrize("tiers", [False, True])
async def test_a_run_of_purchases_costs_the_same_statements_however_long(
    loyalty: Loyalty, members: int, tiers: bool
) -> None:
    """The read-ahead, the lock of every member and the outbox are one statement each.

    With tiers too, while no member's lifetime earnings reach the next tier up.
    """
    if tiers:
        await loyalty.publish_rules(
            tiers=[{"name": "Member", "threshold": 0}, {"name": "Gold", "threshold": 1000}]
        )

    def run(n: int, first: int) -> list[Event]:
        return [purchase(f"m-{i % members}", "10", when=at(1)) for i in range(first, first + n)]

    await loyalty.handle_batch(*run(members, 0))  # the members exist from here on
    short = await _statements(loyalty, run(members, members))
    long = await _statements(loyalty, run(members * 5, 2 * members))
    assert short == long, (short, long)
    assert long <= 14
    assert await loyalty.balance("m-0") == 10 * (1 + 1 + 5)
    ids = [e["id"] for e in await loyalty.published("points.earned")]
    assert len(set(ids)) == len(ids) == members * 7


# Details runs: customer.registered / customer.updated back to back read their members'
# birthdays once and skip the events that change nothing. Each story is handled one
# event per transaction and as runner batches; birthdays, birthday timers, the books and
# what is published must be the same, and so must the bonuses the timers then pay.


def _details_and_purchases_of_one_customer(t: str) -> list[list[Event]]:
    a, b, c = f"{t}-a", f"{t}-b", f"{t}-c"
    return [
        [
            purchase(a, "10", when=at(1)),  # a is locked by the purchase run...
            registered(a, date(1990, 3, 10), when=at(1)),  # ...and read from memory here
            registered(b, None, when=at(1)),  # no member, no birthday: nothing
            registered(c, None, when=at(1)),
            registered(c, date(1985, 1, 1), when=at(2)),  # made mid-run, after a no-op
            updated(c, date(1985, 1, 1), when=at(2)),  # the same again: nothing
            purchase(c, "20", when=at(2)),
            purchase(b, "30", when=at(2)),
            updated(b, date(1970, 6, 1), when=at(3)),  # b made by the purchase just before
            updated(a, date(1990, 3, 10), when=at(3)),
            updated(a, date(1990, 4, 11), when=at(3)),  # a change after a no-op
            updated(a, None, when=at(4)),  # and removed
            updated(a, date(1990, 4, 11), when=at(5)),  # and back: the timer from at(5)
            purchase(a, "10", when=at(5)),
        ],
    ]


def _details_around_a_merge(t: str) -> list[list[Event]]:
    a, b, d = f"{t}-a", f"{t}-b", f"{t}-d"
    return [
        [registered(a, date(1990, 3, 10), when=at(0)), purchase(b, "10", when=at(0))],
        [
            updated(a, date(1990, 3, 10), when=at(1)),  # nothing
            registered(d, date(2000, 2, 29), when=at(1)),
            merged(b, a, when=at(2)),  # b adopts a's birthday
            updated(a, date(1991, 5, 5), when=at(3)),  # lands on b
            updated(b, date(1991, 5, 5), when=at(3)),  # nothing now
            updated(a, date(1991, 5, 5), when=at(3)),  # nor this
            merged(b, d, when=at(4)),  # b keeps its own
            updated(d, None, when=at(5)),  # lands on b: removed
            updated(b, date(1991, 5, 6), when=at(5)),
        ],
    ]


def _replayed_details(t: str) -> list[list[Event]]:
    a, b = f"{t}-a", f"{t}-b"
    first = registered(a, date(1990, 3, 10), when=at(1))
    again = updated(b, date(1980, 8, 8), when=at(1))
    return [
        [first, again, first],  # the same event twice in a poll: the inbox skips it
        [
            first,  # a redelivery
            registered(a, date(1990, 3, 10), when=at(2)),  # the same under a new id
            again,
            updated(b, date(1980, 8, 8), when=at(2)),
            updated(b, date(1980, 8, 9), when=at(2)),
        ],
        [
            updated(b, date(1980, 8, 8), when=at(3)),
            first,
            again,
            updated(b, date(1980, 8, 9), when=at(3)),  # back to what b had before the run
        ],
    ]


async def birthday_books(
    loyalty: Loyalty, tag: str
) -> tuple[list[tuple[object, ...]], tuple[object, ...]]:
    async with loyalty.db.unit_of_work() as session:
        members = (
            await session.execute(
                select(Member).where(Member.customer_id.like(f"{tag}-%")).order_by("customer_id")
            )
        ).scalars()
        birthdays: list[tuple[object, ...]] = [
            (
                m.customer_id.removeprefix(tag),
                m.birthday,
                m.next_birthday_at,
                m.birthday_bonus_year,
                m.merged_into and m.merged_into.removeprefix(tag),
                m.balance,
                m.purchase_count,
            )
            for m in members
        ]
    return birthdays, await books(loyalty, tag)


DETAILS_STORIES = [
    _details_and_purchases_of_one_customer,
    _details_around_a_merge,
    _replayed_details,
]


@pytest.mark.parametrize("story", DETAILS_STORIES)
async def test_a_run_of_details_ends_where_one_event_at_a_time_does(
    loyalty: Loyalty, story: Story
) -> None:
    await loyalty.publish_rules(birthday_bonus=100, **STORY_RULES)
    for events in story("single"):
        await loyalty.handle(*events)
    for events in story("batch"):
        await loyalty.handle_batch(*events)
    single = await birthday_books(loyalty, "single")
    assert await birthday_books(loyalty, "batch") == single
    assert [b for _, b, _, _, merged_into, _, _ in single[0] if not merged_into] != []
    assert await published(loyalty, "batch") == await published(loyalty, "single")
    scheduler = loyalty.scheduler(FakeClock(at(800)))  # every birthday timer, twice over
    while await scheduler.fire_due():
        pass
    assert await birthday_books(loyalty, "batch") == await birthday_books(loyalty, "single")
    # timers due at the same moment fire in id order, which the two stories interleave
    fired = sorted(map(str, await published(loyalty, "batch")))
    assert fired == sorted(map(str, await published(loyalty, "single")))
    await loyalty.check_invariants()


async def test_details_in_a_batch_store_the_birthdays_one_at_a_time_would(
    loyalty: Loyalty,
) -> None:
    for events in _details_and_purchases_of_one_customer("t"):
        await loyalty.handle_batch(*events)
    for events in _details_around_a_merge("m"):
        await loyalty.handle_batch(*events)
    async with loyalty.db.unit_of_work() as session:
        rows = await session.execute(
            select(Member.customer_id, Member.birthday, Member.merged_into).order_by(
                Member.customer_id
            )
        )
        stored = {c: (b, m) for c, b, m in rows}
    assert stored == {  # merged members keep their own birthday (unused unless restored)
        "m-a": (date(1990, 3, 10), "m-b"),
        "m-b": (date(1991, 5, 6), None),
        "m-d": (date(2000, 2, 29), "m-b"),
        "t-a": (date(1990, 4, 11), None),
        "t-b": (date(1970, 6, 1), None),
        "t-c": (date(1985, 1, 1), None),
    }
    timers_due = {key.split(":")[1]: due async for key, due in _birthday_timers(loyalty)}
    assert timers_due == {
        "m-b": datetime(2026, 5, 6, tzinfo=UTC),
        "t-a": datetime(2026, 4, 11, tzinfo=UTC),
        "t-b": datetime(2026, 6, 1, tzinfo=UTC),
        "t-c": datetime(2027, 1, 1, tzinfo=UTC),
    }


async def _birthday_timers(loyalty: Loyalty) -> AsyncIterator[tuple[str, datetime]]:
    async with loyalty.db.unit_of_work() as session:
        rows = (
            await session.execute(
                select(timers.c.key, timers.c.due_at).where(timers.c.kind == schedule.BIRTHDAY)
            )
        ).all()
    for key, due in rows:
        yield key, due.replace(tzinfo=UTC)


@pytest.mark.parametrize("members", [3, 30])
async def test_a_run_of_details_reads_its_members_once(loyalty: Loyalty, members: int) -> None:
    """Details that change nothing cost one statement for the run, however long it is.

    Members locked by the poll's purchases are read from memory: none at all for them.
    """
    await loyalty.handle_batch(*[purchase(f"m-{i}", "10", when=at(1)) for i in range(members)])
    await loyalty.handle_batch(*[registered(f"m-{i}", date(1990, 1, 2)) for i in range(members)])
    short = await _statements(loyalty, [updated(f"m-{i}", date(1990, 1, 2)) for i in range(3)])
    long = await _statements(
        loyalty,
        [updated(f"m-{i % members}", date(1990, 1, 2)) for i in range(members * 3)]
        + [registered(f"new-{i}") for i in range(members)],
    )
    # BEGIN (counted on SQLite), the inbox's read and insert, and the run's read
    assert short == long <= 4, (short, long)
    buying = [purchase(f"m-{i}", "10", when=at(2)) for i in range(members)]
    alone = await _statements(loyalty, buying)
    buying = [purchase(f"m-{i}", "10", when=at(3)) for i in range(members)]
    with_details = buying + [updated(f"m-{i}", date(1990, 1, 2)) for i in range(members)]
    assert await _statements(loyalty, with_details) == alone
    changed = [updated(f"m-{i}", date(1990, 1, 3)) for i in range(members)]
    # + the lock, each member's old timer cancelled (after the timers held so far are
    # written), the last held timers, and the members' updates in one statement
    assert await _statements(loyalty, changed) <= 4 + 1 + 2 * members + 1
    assert (await loyalty.member(f"m-{members - 1}")).birthday == date(1990, 1, 3)  # type: ignore[union-attr]


async def test_held_rows_are_written_before_any_flush_reads_them(loyalty: Loyalty) -> None:
    """A purchase's rows are held (``service.held``); an autoflush writes them first, and a
    rolled-back transaction writes none."""
    kept, dropped = purchase("h-a", "10", when=at(1)), purchase("h-b", "10", when=at(1))

    async def award(event: Event) -> list[LedgerEntry]:
        async with loyalty.db.unit_of_work() as session:
            await loyalty.handlers[type(event)](session, event)
            session.sync_session.autoflush = True  # as the next handler of another kind
            stmt = select(LedgerEntry).where(LedgerEntry.customer_id == event.subject)
            return list((await session.execute(stmt)).scalars())

    async def award_then_fail() -> None:
        async with loyalty.db.unit_of_work() as session:
            await loyalty.handlers[PurchaseCompleted](session, dropped)
            raise RuntimeError("rolled back")

    assert [e.points for e in await award(kept)] == [10]
    with pytest.raises(RuntimeError):
        await award_then_fail()
    async with loyalty.db.unit_of_work() as session:  # a fresh transaction holds nothing
        await session.execute(select(Member))
    assert [e.points for e in await loyalty.entries("h-a")] == [10]
    assert await loyalty.entries("h-b") == []
    assert await loyalty.member("h-b") is None
    await loyalty.check_invariants()


async def test_ledger_ids_keep_the_order_of_the_events_in_a_batch(loyalty: Loyalty) -> None:
    """Rows other handlers added go to the database before a purchase's held rows."""
    await loyalty.publish_rules(interaction_points={"review": 7})

    def story(t: str) -> list[Event]:
        return [
            interaction(f"{t}-a", "review", when=at(1)),
            purchase(f"{t}-a", "10", when=at(2)),
            interaction(f"{t}-a", "review", when=at(3)),
            refund(f"{t}-a", f"{t}-P", "5", when=at(3)),
            purchase(f"{t}-a", "20", purchase_id=f"{t}-P", when=at(4)),
            purchase(f"{t}-a", "30", when=at(5)),
        ]

    await loyalty.handle(*story("single"))
    await loyalty.handle_batch(*story("batch"))

    async def in_id_order(t: str) -> list[tuple[object, ...]]:
        return [(e.kind, e.rule_id, e.points, e.balance_after) for e in await loyalty.entries(t)]

    single = await in_id_order("single-a")
    assert await in_id_order("batch-a") == single
    assert [p for _, _, p, _ in single] == [7, 10, 7, 20, -5, 30]
    await loyalty.check_invariants()
