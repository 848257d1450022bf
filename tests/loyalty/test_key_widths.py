"""Ledger keys built from event fields fit their column whole, on PostgreSQL too (which
enforces VARCHAR lengths; SQLite does not), and a key that would not fit is refused
rather than cut (two cut keys could become one, and the second entry would never be
posted)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.loyalty.models import ENTRY_KEY_LENGTH
from services.loyalty.service.ledger import Why
from shared.events import Money
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseLine,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.interactions import InteractionRecorded, InteractionRecordedData
from tests.helpers import LONGEST_SOURCE, dead_letter_topics, longest, run_poll
from tests.loyalty.support import T0, Loyalty, at

pytestmark = pytest.mark.db

CUSTOMER = longest("c-", 64)
PURCHASE_ID = longest("p-")
CAMPAIGN = longest("campaign-", 64)  # rule ids and tier names: up to 64 (service/rules.py)
MILESTONE = longest("milestone-", 64)
TIER = longest("Tier ", 64)


async def test_ledger_keys_from_the_longest_ids_are_kept_whole(loyalty: Loyalty) -> None:
    await loyalty.publish_rules(
        interaction_points={"review": 7},
        campaigns=[
            {
                "id": CAMPAIGN,
                "name": "Week",
                "starts_at": at(-1).isoformat(),
                "ends_at": at(9).isoformat(),
                "bonus_points": 5,
            }
        ],
        milestones=[{"id": MILESTONE, "nth_purchase": 1, "points": 30}],
        tiers=[{"name": "Member", "threshold": 0}, {"name": TIER, "threshold": 50}],
    )
    sale = PurchaseCompleted.create(
        id=longest("e-sale-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=T0,
        data=PurchaseCompletedData(
            purchase_id=PURCHASE_ID,
            channel="store",
            total=Money(amount=Decimal(100), currency="EUR"),
            lines=(
                PurchaseLine(
                    sku=longest("sku-", 64),
                    category=longest("cat-", 100),
                    quantity=1,
                    unit_price=Decimal(100),
                ),
            ),
        ),
    )
    refund = PurchaseRefunded.create(
        id=longest("e-refund-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=at(1),
        data=PurchaseRefundedData(
            refund_id=longest("rf-"),
            purchase_id=PURCHASE_ID,
            amount=Money(amount=Decimal(10), currency="EUR"),
        ),
    )
    review = InteractionRecorded.create(
        id=longest("e-review-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=at(1),
        data=InteractionRecordedData(kind="review", channel="web"),
    )

    await run_poll(loyalty.db, loyalty.handlers, [sale, refund, review])

    assert await dead_letter_topics(loyalty.db) == []
    keys = {e.entry_key for e in await loyalty.entries(CUSTOMER)}
    assert keys == {
        f"earn:{PURCHASE_ID}:base",
        f"earn:{PURCHASE_ID}:campaign:{CAMPAIGN}",
        f"earn:{PURCHASE_ID}:milestone:{MILESTONE}",
        f"reverse:{refund.data.refund_id}",
        f"earn:interaction:{review.id}",
    }
    member = await loyalty.member(CUSTOMER)
    assert member is not None
    assert member.tier == TIER
    await loyalty.check_invariants()


def test_a_ledger_key_longer_than_its_column_is_refused_not_cut() -> None:
    assert Why(reason="r", key="k" * ENTRY_KEY_LENGTH).key == "k" * ENTRY_KEY_LENGTH
    with pytest.raises(ValueError, match="longer than 300"):
        Why(reason="r", key="k" * (ENTRY_KEY_LENGTH + 1))
