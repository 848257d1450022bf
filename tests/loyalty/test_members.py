"""Merging two members into one, erasure, adjustments and the liability report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from services.loyalty.models import LedgerEntry, Member, RuleSet
from tests.helpers import LONGEST_SUBJECT, auth_headers
from tests.loyalty.support import Loyalty, at, erased, merged, purchase, refund, unmerged

pytestmark = pytest.mark.db

ADMIN = auth_headers("loyalty:admin", subject="ops-ana")
READ = auth_headers("loyalty:read")


async def test_a_merge_combines_balance_lots_history_and_counts_once(loyalty: Loyalty) -> None:
    await loyalty.handle(
        purchase("keep", "30", when=at(0)),
        purchase("gone", "50", purchase_id="G", when=at(1)),
        purchase("gone", "5", when=at(2)),
    )
    merge = merged("keep", "gone", when=at(3))
    await loyalty.handle(merge, merge, merged("keep", "gone", when=at(4)))
    survivor = await loyalty.member("keep")
    assert survivor is not None
    assert (survivor.balance, survivor.lifetime_earned, survivor.purchase_count) == (85, 85, 3)
    assert (await loyalty.member("gone")).merged_into == "keep"  # type: ignore[union-attr]
    assert await loyalty.balance("gone") == 0
    # later events under the old id land on the survivor, refunds included
    await loyalty.handle(purchase("gone", "10", when=at(5)), refund("gone", "G", "50"))
    assert await loyalty.balance("keep") == 45
    await loyalty.check_invariants()


async def test_merged_history_is_listed_under_the_survivor(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await loyalty.handle(purchase("keep", "3"), purchase("gone", "4"), merged("keep", "gone"))
    page = (await api.get("/v1/members/keep/ledger", headers=READ)).json()
    assert sorted((e["kind"], e["points"]) for e in page["items"]) == [
        ("earn", 3),
        ("earn", 4),
        ("merge", -4),
        ("merge", 4),
    ]


async def test_a_debt_on_one_side_is_paid_by_the_other_on_merge(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("gone", "100", purchase_id="G"), purchase("gone", "1"))
    await loyalty.add_reward("tv", 100)
    await loyalty.redeem("gone", "tv")
    await loyalty.handle(refund("gone", "G", "100"), purchase("keep", "150"))
    assert await loyalty.balance("gone") == -99
    await loyalty.handle(merged("keep", "gone"))
    assert await loyalty.balance("keep") == 51
    await loyalty.check_invariants()


async def test_an_undone_merge_gives_the_restored_id_its_later_events_back(
    loyalty: Loyalty,
) -> None:
    """What the merge moved stays with the survivor; what comes after is the restored
    member's own. A replayed undo changes nothing."""
    await loyalty.handle(purchase("keep", "30", when=at(0)), purchase("gone", "50", when=at(1)))
    await loyalty.handle(merged("keep", "gone", when=at(2)), purchase("gone", "10", when=at(3)))
    assert (await loyalty.balance("keep"), await loyalty.balance("gone")) == (90, 0)
    undo = unmerged("keep", "gone", when=at(4))
    await loyalty.handle(undo, purchase("gone", "20", when=at(5)), purchase("keep", "1"))
    await loyalty.handle(undo.model_copy(update={"id": "replayed"}))
    restored, survivor = await loyalty.member("gone"), await loyalty.member("keep")
    assert restored is not None
    assert survivor is not None
    assert restored.merged_into is None
    assert (survivor.balance, restored.balance) == (91, 20)
    assert (survivor.purchase_count, restored.purchase_count) == (4, 1)
    await loyalty.check_invariants()


async def test_an_undone_merge_leaves_unrelated_members_alone(loyalty: Loyalty) -> None:
    """An undo for an id that never was a member, or was never merged, does nothing."""
    await loyalty.handle(
        purchase("solo", "5"), unmerged("keep", "solo"), unmerged("keep", "nobody")
    )
    solo = await loyalty.member("solo")
    assert solo is not None
    assert (solo.balance, solo.merged_into) == (5, None)
    assert await loyalty.member("nobody") is None


async def test_erasure_anonymises_the_member_and_keeps_the_amounts(loyalty: Loyalty) -> None:
    await loyalty.handle(purchase("c-9", "40"), purchase("c-9", "2"), erased("c-9"))
    assert await loyalty.member("c-9") is None
    async with loyalty.db.unit_of_work() as session:
        owners = set((await session.execute(select(LedgerEntry.customer_id))).scalars())
        total = (await session.execute(select(func.sum(LedgerEntry.points)))).scalar_one()
        anonymous = (await session.execute(select(Member))).scalars().one()
    assert len(owners) == 1
    assert owners.pop().startswith("erased-")
    assert total == 0  # earned 42, forfeited 42
    assert anonymous.erased_at is not None
    await loyalty.handle(purchase("c-9", "5"))  # the id may come back as a new member
    assert await loyalty.balance("c-9") == 5
    await loyalty.check_invariants()


async def test_adjustments_record_the_operator_and_are_idempotent(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    body = {"points": 25, "reason": "late delivery", "reference": "TICKET-1"}
    first = await api.post("/v1/members/c/adjustments", json=body, headers=ADMIN)
    again = await api.post("/v1/members/c/adjustments", json=body, headers=ADMIN)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["entry"] == again.json()["entry"]
    assert first.json()["entry"]["operator"] == "ops-ana"
    assert first.json()["balance"] == 25
    reused = await api.post("/v1/members/c/adjustments", json={**body, "points": 99}, headers=ADMIN)
    assert reused.status_code == 409
    overdraw = {"points": -26, "reason": "fix", "reference": "TICKET-2"}
    assert (
        await api.post("/v1/members/c/adjustments", json=overdraw, headers=ADMIN)
    ).status_code == 409
    zero = {"points": 0, "reason": "fix", "reference": "TICKET-3"}
    assert (
        await api.post("/v1/members/c/adjustments", json=zero, headers=ADMIN)
    ).status_code == 400
    huge = {"points": 10**19, "reason": "fix", "reference": "TICKET-4"}
    assert (
        await api.post("/v1/members/c/adjustments", json=huge, headers=ADMIN)
    ).status_code == 422
    long_id = "x" * 65
    assert (
        await api.post(f"/v1/members/{long_id}/adjustments", json=body, headers=ADMIN)
    ).status_code == 422
    [entry] = await loyalty.entries("c")
    assert (entry.kind, entry.reference, entry.reason) == ("adjust", "TICKET-1", "late delivery")


async def test_an_operator_with_the_longest_subject_is_recorded_whole(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    """On PostgreSQL too, which refuses a value longer than its column."""
    headers = auth_headers("loyalty:admin", subject=LONGEST_SUBJECT)
    body = {"points": 5, "reason": "goodwill", "reference": "TICKET-9"}
    adjusted = await api.post("/v1/members/c/adjustments", json=body, headers=headers)
    assert adjusted.status_code == 201, adjusted.text
    assert adjusted.json()["entry"]["operator"] == LONGEST_SUBJECT
    published = await api.put("/v1/rules", json={"points_per_unit": "2"}, headers=headers)
    assert published.status_code == 200, published.text
    async with loyalty.db.unit_of_work() as session:
        [rules] = (await session.execute(select(RuleSet))).scalars()
    assert rules.created_by == LONGEST_SUBJECT


async def test_rules_are_versioned_and_simulated_without_writing(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    rules = {
        "points_per_unit": "2",
        "category_multipliers": {"shoes": "3"},
        "milestones": [{"id": "first", "nth_purchase": 1, "points": 10}],
    }
    published = await api.put("/v1/rules", json=rules, headers=ADMIN)
    assert published.json()["version"] == 1
    assert (await api.get("/v1/rules", headers=READ)).json()["version"] == 1
    bad = await api.put("/v1/rules", json={"points_per_unit": "-2"}, headers=ADMIN)
    assert bad.status_code == 422
    simulated = await api.post(
        "/v1/rules/simulate",
        json={
            "total": {"amount": "30", "currency": "EUR"},
            "lines": [{"sku": "b", "category": "shoes", "quantity": 1, "unit_price": "30"}],
            "customer_id": "new",
        },
        headers=READ,
    )
    assert simulated.status_code == 200, simulated.text
    result = simulated.json()
    assert (result["points"], result["rule_version"]) == (190, 1)
    assert [c["rule_id"] for c in result["components"]] == ["base", "milestone:first"]
    assert await loyalty.member("new") is None
    assert await loyalty.published() == []


async def test_the_liability_report_by_tier_and_expiry_month(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    # Recent purchases, so the app's own (wall-clock) scheduler expires nothing meanwhile.
    now = datetime.now(UTC)
    times = {"a": now - timedelta(days=2), "b": now - timedelta(days=1), "c": now}
    await loyalty.publish_rules(
        tiers=[{"name": "Member", "threshold": 0}, {"name": "Gold", "threshold": 100}],
        expiry_days=40,
    )
    await loyalty.handle(
        purchase("a", "150", when=times["a"]),  # Gold
        purchase("b", "20", when=times["b"]),
        purchase("c", "7", when=times["c"]),
    )
    report = (await api.get("/v1/reports/liability", headers=ADMIN)).json()
    assert report["points"] == 177
    assert Decimal(report["value"]["EUR"]) == Decimal("1.77")
    by_tier = {line["key"]: (line["members"], line["points"]) for line in report["by_tier"]}
    assert by_tier == {"Gold": (1, 150), "(none)": (2, 27)}
    expected: dict[str, int] = {}
    for who, points in (("a", 150), ("b", 20), ("c", 7)):
        month = (times[who] + timedelta(days=40)).strftime("%Y-%m")
        expected[month] = expected.get(month, 0) + points
    by_month = {line["key"]: line["points"] for line in report["by_expiry_month"]}
    assert by_month == expected
    reporter = auth_headers("reports:read")
    assert (await api.get("/v1/reports/liability", headers=reporter)).status_code == 200


async def test_a_merged_member_cannot_exceed_a_campaign_budget_per_member(
    loyalty: Loyalty,
) -> None:
    await loyalty.publish_rules(
        campaigns=[
            {
                "id": "double",
                "name": "Double points",
                "starts_at": at(0).isoformat(),
                "ends_at": at(30).isoformat(),
                "multiplier": "1",
                "member_budget": 150,
            }
        ]
    )
    merge = merged("keep", "gone", when=at(3))
    await loyalty.handle(
        purchase("keep", "100", when=at(1)),  # keep: 100 of 150 used
        purchase("gone", "100", when=at(2)),  # gone: 100 of 150 used
        merge,
        merge,  # re-delivered: budgets are not added twice
        purchase("keep", "100", when=at(4)),  # together 200 used: nothing left
        purchase("gone", "100", when=at(5)),  # lands on keep too
    )
    bonuses = [e.points for e in await loyalty.entries("keep") if e.rule_id == "campaign:double"]
    assert bonuses == [100]  # keep's own; gone's 100 is in gone's history
    assert await loyalty.balance("keep") == 100 + 100 + 200 + 100 + 100
    await loyalty.check_invariants()
