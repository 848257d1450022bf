"""Pending points: locked for a while after the purchase, released by a durable timer."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Member
from services.loyalty.service.errors import InsufficientPoints
from services.loyalty.service.rules import RuleSetBody
from shared.db import Database
from tests.loyalty.support import FakeClock, Loyalty, at, interaction, merged, purchase, refund

pytestmark = pytest.mark.db

LOCKED = LoyaltySettings(expiry_days=None, pending_days=14)


@pytest.fixture
def loyalty(db: Database) -> Loyalty:
    return Loyalty(db, LOCKED)


async def fire_all(loyalty: Loyalty, clock: FakeClock) -> None:
    scheduler = loyalty.scheduler(clock)
    while await scheduler.fire_due():
        pass


def split(member: Member | None) -> tuple[int, int, int]:
    assert member is not None
    return member.balance, member.spendable, member.pending


async def test_purchase_points_are_pending_until_the_lock_period_ends(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "100", when=at(0)), purchase("c", "30", when=at(5)))
    assert split(await loyalty.member("c")) == (130, 0, 130)
    [first, _] = await loyalty.published("points.earned")
    assert first["data"]["pending_until"][:10] == at(14).isoformat()[:10]
    assert first["data"]["balance"] == 0  # the spendable balance
    await loyalty.add_reward("mug", 50)
    with pytest.raises(InsufficientPoints, match=r"balance 0 \(130 more pending\)"):
        await loyalty.redeem("c", "mug", now=at(1))
    clock = FakeClock(at(14))
    await fire_all(loyalty, clock)
    assert split(await loyalty.member("c")) == (130, 100, 30)
    await loyalty.redeem("c", "mug", now=at(15))
    clock.now = at(19)
    await fire_all(loyalty, clock)
    assert split(await loyalty.member("c")) == (80, 80, 0)
    released = await loyalty.published("points.released")
    assert [(e["data"]["points"], e["data"]["pending"], e["time"][:10]) for e in released] == [
        (100, 30, at(14).isoformat()[:10]),
        (30, 0, at(19).isoformat()[:10]),
    ]
    await loyalty.check_invariants()


async def test_a_refund_inside_the_window_reverses_pending_points_only(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "40", when=at(0)))
    await fire_all(loyalty, FakeClock(at(20)))  # 40 spendable now
    await loyalty.add_reward("mug", 40)
    await loyalty.handle(purchase("c", "100", purchase_id="p-2", when=at(21)))
    await loyalty.redeem("c", "mug", now=at(22))  # spends the released 40, not the pending
    await loyalty.handle(refund("c", "p-2", "100", when=at(23)))
    assert split(await loyalty.member("c")) == (0, 0, 0)  # nothing owed
    await fire_all(loyalty, FakeClock(at(40)))
    assert split(await loyalty.member("c")) == (0, 0, 0)
    released = await loyalty.published("points.released")
    assert [e["data"]["points"] for e in released] == [40]  # the refunded lot never unlocks
    await loyalty.check_invariants()


async def test_a_partial_refund_leaves_the_rest_pending_then_released(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "100", purchase_id="p", when=at(0)))
    await loyalty.handle(refund("c", "p", "25", when=at(2)))
    assert split(await loyalty.member("c")) == (75, 0, 75)
    await fire_all(loyalty, FakeClock(at(14)))
    assert split(await loyalty.member("c")) == (75, 75, 0)
    await loyalty.check_invariants()


async def test_release_survives_a_restart_and_catches_up(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "10", when=at(0)), purchase("c", "20", when=at(3)))
    clock = FakeClock(at(10))
    assert await loyalty.scheduler(clock).fire_due() == 0  # nothing due yet
    clock.now = at(60)  # down from day 10 to day 60: a fresh process
    await fire_all(Loyalty(loyalty.db, LOCKED), clock)
    assert split(await loyalty.member("c")) == (30, 30, 0)
    released = await loyalty.published("points.released")
    assert [e["time"][:10] for e in released] == [at(14).isoformat()[:10], at(17).isoformat()[:10]]


async def test_interactions_and_adjustments_are_spendable_at_once(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(pending_days=14, interaction_points={"review": 15})
    await loyalty.handle(interaction("c", "review"), purchase("c", "10"))
    assert split(await loyalty.member("c")) == (25, 15, 10)


async def test_a_debt_is_paid_before_anything_becomes_pending(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c", "50", purchase_id="p", when=at(0)))
    await fire_all(loyalty, FakeClock(at(14)))
    await loyalty.add_reward("lamp", 50)
    await loyalty.redeem("c", "lamp", now=at(15))
    await loyalty.handle(refund("c", "p", "50", when=at(16)))  # points already spent
    assert split(await loyalty.member("c")) == (-50, -50, 0)
    await loyalty.handle(purchase("c", "80", when=at(17)))
    assert split(await loyalty.member("c")) == (30, 0, 30)
    await fire_all(loyalty, FakeClock(at(31)))
    assert split(await loyalty.member("c")) == (30, 30, 0)
    await loyalty.check_invariants()


async def test_a_merge_keeps_pending_points_pending_and_releases_them(loyalty: Loyalty) -> None:
    await loyalty.handle(
        purchase("keep", "10", when=at(0)),
        purchase("gone", "20", when=at(5)),
        merged("keep", "gone", when=at(6)),
    )
    assert split(await loyalty.member("keep")) == (30, 0, 30)
    await fire_all(loyalty, FakeClock(at(19)))
    assert split(await loyalty.member("keep")) == (30, 30, 0)
    assert split(await loyalty.member("gone")) == (0, 0, 0)
    await loyalty.check_invariants()


@pytest.mark.parametrize("make", [LoyaltySettings, RuleSetBody])
def test_the_lock_must_end_before_the_points_expire(make: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match="pending_days must be shorter"):
        make.model_validate({"expiry_days": 10, "pending_days": 10})
