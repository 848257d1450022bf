"""The birthday bonus: the birthday comes from profile's events, a durable timer pays it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from sqlalchemy import select, update

from services.loyalty.models import Member
from services.loyalty.service import schedule
from services.loyalty.service.rules import RuleSetBody
from shared.events.profile import CustomerUpdated
from shared.plumbing import timers
from tests.helpers import auth_headers
from tests.loyalty import support
from tests.loyalty.support import (
    FakeClock,
    Loyalty,
    at,
    erased,
    merged,
    purchase,
    registered,
    unmerged,
)

pytestmark = pytest.mark.db

DAY_1 = at(1)


def updated(customer_id: str, birthday: date | None, *, when: datetime = DAY_1) -> CustomerUpdated:
    return support.updated(customer_id, birthday, when=when)


def day(year: int, month: int, d: int) -> datetime:
    return datetime(year, month, d, tzinfo=UTC)


async def fire(loyalty: Loyalty, when: datetime) -> None:
    scheduler = loyalty.scheduler(FakeClock(when))
    while await scheduler.fire_due():
        pass


async def birthday_timers(loyalty: Loyalty) -> list[tuple[str, datetime]]:
    async with loyalty.db.unit_of_work() as session:
        rows = (
            await session.execute(
                select(timers.c.payload, timers.c.due_at)
                .where(timers.c.kind == schedule.BIRTHDAY)
                .order_by(timers.c.due_at)
            )
        ).all()
    return [(r.payload["customer_id"], r.due_at.replace(tzinfo=UTC)) for r in rows]


async def bonuses(loyalty: Loyalty, customer_id: str) -> list[tuple[int, str, datetime]]:
    return [
        (e.points, e.entry_key, e.occurred_at.replace(tzinfo=UTC))
        for e in await loyalty.entries(customer_id)
        if e.rule_id == "birthday"
    ]


async def test_the_birthday_is_stored_from_profile_and_its_timer_armed(loyalty: Loyalty) -> None:
    await loyalty.handle(registered("c", date(1990, 3, 10)))
    member = await loyalty.member("c")
    assert member is not None
    assert member.birthday == date(1990, 3, 10)
    assert await birthday_timers(loyalty) == [("c", day(2026, 3, 10))]
    await loyalty.handle(updated("c", date(1990, 7, 4)))  # a change moves the timer
    assert await birthday_timers(loyalty) == [("c", day(2026, 7, 4))]
    await loyalty.handle(updated("c", None))  # removed in profile: no timer, no birthday
    member = await loyalty.member("c")
    assert member is not None
    assert member.birthday is None
    assert await birthday_timers(loyalty) == []


async def test_a_customer_without_birthday_does_not_become_a_member(loyalty: Loyalty) -> None:
    await loyalty.handle(registered("c", None))
    assert await loyalty.member("c") is None


async def test_the_bonus_is_paid_once_on_the_birthday_then_next_year(loyalty: Loyalty) -> None:
    version = await loyalty.publish_rules(birthday_bonus=500, expiry_days=None)
    event = registered("c", date(1990, 3, 10))
    await loyalty.handle(event)
    await fire(loyalty, day(2026, 3, 9))
    assert await loyalty.balance("c") == 0  # not before the day
    await fire(loyalty, day(2026, 3, 10))
    assert await bonuses(loyalty, "c") == [(500, "birthday:c:2026", day(2026, 3, 10))]
    [entry] = [e for e in await loyalty.entries("c") if e.rule_id == "birthday"]
    assert (entry.kind, entry.reason, entry.rule_version) == ("earn", "birthday bonus", version)
    [earned] = await loyalty.published("points.earned")
    assert earned["data"]["points"] == 500
    assert earned["data"]["rule_id"] == f"birthday@v{version}"
    assert await birthday_timers(loyalty) == [("c", day(2027, 3, 10))]
    # replays: the profile event again, a change of birthday within the year, firing again
    await loyalty.handle(event, updated("c", date(1990, 11, 5), when=day(2026, 4, 1)))
    await fire(loyalty, day(2026, 12, 31))
    assert await loyalty.balance("c") == 500
    assert len(await loyalty.published("points.earned")) == 1
    assert await birthday_timers(loyalty) == [("c", day(2027, 11, 5))]
    await fire(loyalty, day(2027, 11, 5))
    assert [k for _, k, _ in await bonuses(loyalty, "c")] == ["birthday:c:2026", "birthday:c:2027"]
    assert await loyalty.balance("c") == 1000
    await loyalty.check_invariants()


async def test_no_bonus_while_the_rule_is_off_and_none_retroactively(loyalty: Loyalty) -> None:
    await loyalty.handle(registered("c", date(1990, 3, 10)))
    await fire(loyalty, day(2026, 3, 10))
    assert await bonuses(loyalty, "c") == []
    assert await loyalty.published("points.earned") == []
    assert await birthday_timers(loyalty) == [("c", day(2027, 3, 10))]
    await loyalty.publish_rules(
        birthday_bonus=200, expiry_days=None
    )  # switched on after this year's birthday
    await fire(loyalty, day(2026, 12, 31))
    assert await bonuses(loyalty, "c") == []
    await fire(loyalty, day(2027, 3, 10))
    assert [p for p, _, _ in await bonuses(loyalty, "c")] == [200]


def test_the_bonus_must_be_positive() -> None:
    assert RuleSetBody().birthday_bonus is None
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RuleSetBody.model_validate({"birthday_bonus": 0})


async def test_29_february_is_celebrated_on_28_february_in_other_years(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("c", date(2000, 2, 29)))
    assert await birthday_timers(loyalty) == [("c", day(2026, 2, 28))]
    await fire(loyalty, day(2026, 2, 28))
    assert await bonuses(loyalty, "c") == [(100, "birthday:c:2026", day(2026, 2, 28))]
    assert await birthday_timers(loyalty) == [("c", day(2027, 2, 28))]
    await fire(loyalty, day(2027, 2, 28))
    assert await birthday_timers(loyalty) == [("c", day(2028, 2, 29))]  # a leap year


async def test_a_late_timer_pays_the_current_year_only(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("c", date(1990, 3, 10)))
    await fire(loyalty, day(2026, 6, 1))  # down on the day: still paid, once
    assert [k for _, k, _ in await bonuses(loyalty, "c")] == ["birthday:c:2026"]
    await fire(loyalty, day(2029, 8, 1))  # down for two years: 2027 and 2028 are not paid
    assert [k for _, k, _ in await bonuses(loyalty, "c")] == ["birthday:c:2026", "birthday:c:2029"]
    assert await birthday_timers(loyalty) == [("c", day(2030, 3, 10))]
    await fire(loyalty, day(2031, 1, 5))  # the 2030 timer, after 2030 ended: nothing yet
    assert len(await bonuses(loyalty, "c")) == 2
    assert await birthday_timers(loyalty) == [("c", day(2031, 3, 10))]


async def test_erasure_cancels_the_timer_and_forgets_the_birthday(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("c", date(1990, 3, 10)), erased("c", when=at(2)))
    assert await birthday_timers(loyalty) == []
    async with loyalty.db.unit_of_work() as session:
        birthdays = (await session.execute(select(Member.birthday))).scalars().all()
    assert birthdays == [None]
    await fire(loyalty, day(2026, 3, 10))
    assert await loyalty.published("points.earned") == []


async def test_a_merge_keeps_one_birthday_and_one_bonus_a_year(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("a", date(1990, 3, 10)), registered("b", date(1991, 9, 1)))
    await fire(loyalty, day(2026, 3, 10))  # "a" is paid for 2026
    await loyalty.handle(merged("b", "a", when=day(2026, 4, 1)))  # "a" folds into "b"
    survivor = await loyalty.member("b")
    assert survivor is not None
    assert survivor.birthday == date(1991, 9, 1)
    assert await birthday_timers(loyalty) == [("b", day(2026, 9, 1))]
    await fire(loyalty, day(2026, 9, 1))
    assert await loyalty.balance("b") == 100  # the person already had 2026's bonus
    await fire(loyalty, day(2027, 9, 1))
    assert await loyalty.balance("b") == 200
    await loyalty.handle(updated("a", date(1991, 9, 2), when=day(2027, 10, 1)))
    survivor = await loyalty.member("b")
    assert survivor is not None
    assert survivor.birthday == date(1991, 9, 2)
    await loyalty.check_invariants()


async def test_a_survivor_without_birthday_adopts_the_merged_one(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("a", date(1990, 3, 10)), purchase("b", "10"))
    await loyalty.handle(merged("b", "a", when=day(2026, 2, 1)))
    survivor = await loyalty.member("b")
    assert survivor is not None
    assert survivor.birthday == date(1990, 3, 10)
    assert await birthday_timers(loyalty) == [("b", day(2026, 3, 10))]
    await fire(loyalty, day(2026, 3, 10))
    assert await bonuses(loyalty, "b") == [(100, "birthday:b:2026", day(2026, 3, 10))]


async def test_an_undone_merge_arms_the_restored_members_birthday_again(
    loyalty: Loyalty,
) -> None:
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("a", date(1990, 3, 10)), registered("b", date(1991, 9, 1)))
    await loyalty.handle(merged("b", "a", when=day(2026, 2, 1)))
    assert await birthday_timers(loyalty) == [("b", day(2026, 9, 1))]
    await loyalty.handle(unmerged("b", "a", when=day(2026, 2, 2)))
    assert sorted(await birthday_timers(loyalty)) == [
        ("a", day(2026, 3, 10)),
        ("b", day(2026, 9, 1)),
    ]
    await fire(loyalty, day(2026, 3, 10))
    assert await bonuses(loyalty, "a") == [(100, "birthday:a:2026", day(2026, 3, 10))]
    assert await bonuses(loyalty, "b") == []


async def test_an_undo_takes_the_birthday_profile_sends_with_it(loyalty: Loyalty) -> None:
    """A member merged before merged members kept their birthday has none; the undo
    carries the restored customer's details, birthday included."""
    await loyalty.publish_rules(birthday_bonus=100, expiry_days=None)
    await loyalty.handle(registered("a", date(1990, 3, 10)), registered("b", date(1991, 9, 1)))
    await loyalty.handle(merged("b", "a", when=day(2026, 2, 1)))
    async with loyalty.db.unit_of_work() as session:
        await session.execute(update(Member).where(Member.customer_id == "a").values(birthday=None))
    undo = unmerged("b", "a", when=day(2026, 2, 2), birthday=date(1990, 3, 10))
    await loyalty.handle(undo)
    assert ("a", day(2026, 3, 10)) in await birthday_timers(loyalty)


async def test_the_bonus_is_configured_over_put_rules(api: httpx.AsyncClient) -> None:
    admin = auth_headers("loyalty:admin")
    published = await api.put("/v1/rules", json={"birthday_bonus": 250}, headers=admin)
    assert published.status_code == 200, published.text
    read = await api.get("/v1/rules", headers=auth_headers("loyalty:read"))
    assert read.json()["rules"]["birthday_bonus"] == 250
    bad = await api.put("/v1/rules", json={"birthday_bonus": -5}, headers=admin)
    assert bad.status_code == 422
