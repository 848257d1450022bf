"""Earning from purchases and interactions, on a real migrated database."""

from __future__ import annotations

import pytest

from shared.events import derived_id
from tests.loyalty.support import Loyalty, interaction, purchase

pytestmark = pytest.mark.db


async def test_a_purchase_earns_points_with_a_ledger_entry_and_an_event(loyalty: Loyalty) -> None:
    event = purchase("c-1", "42.70", purchase_id="R-1")
    await loyalty.handle(event)
    member = await loyalty.member("c-1")
    assert member is not None
    assert (member.balance, member.lifetime_earned, member.purchase_count) == (42, 42, 1)
    [entry] = await loyalty.entries("c-1")
    assert (entry.kind, entry.points, entry.source_event_id, entry.purchase_id) == (
        "earn",
        42,
        event.id,
        "R-1",
    )
    assert (entry.rule_id, entry.rule_version) == ("base", 0)
    [earned] = await loyalty.published("points.earned")
    assert earned["id"] == derived_id("points.earned", event.source, event.id)
    assert (earned["subject"], earned["data"]["points"], earned["data"]["balance"]) == (
        "c-1",
        42,
        42,
    )
    await loyalty.check_invariants()


async def test_the_same_purchase_under_a_new_event_id_counts_once(loyalty: Loyalty) -> None:
    await loyalty.handle(
        purchase("c-1", "10", purchase_id="P"), purchase("c-1", "10", purchase_id="P")
    )
    assert await loyalty.balance("c-1") == 10
    assert len(await loyalty.published("points.earned")) == 1


async def test_entries_record_the_rule_version_that_produced_them(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c-1", "10"))
    version = await loyalty.publish_rules(points_per_unit="3")
    await loyalty.handle(purchase("c-1", "10"))
    entries = await loyalty.entries("c-1")
    assert [(e.points, e.rule_version) for e in entries] == [(10, 0), (30, version)]
    assert version == 1


async def test_reviews_and_referrals_earn_interaction_points(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(interaction_points={"review": 15, "referral": 50})
    await loyalty.handle(
        interaction("c-1", "review"), interaction("c-1", "referral"), interaction("c-1", "app_open")
    )
    entries = await loyalty.entries("c-1")
    assert [(e.points, e.rule_id) for e in entries] == [
        (15, "interaction:review"),
        (50, "interaction:referral"),
    ]
    await loyalty.check_invariants()
