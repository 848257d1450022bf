"""Keys built from event fields fit their columns, on PostgreSQL too (which enforces
VARCHAR lengths; SQLite does not): a sale from the longest source with the longest
purchase id the event contract allows is thanked, remembered, counted, attributed and
its after-sales reminder cancelled by its refund, like any other."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from services.engagement.consumers import handlers
from services.engagement.models import Conversion, CountedPurchase, LastBasket, Outreach
from shared.db import Database
from shared.events import Money
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseLine,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.engagement import ChurnRiskChanged, ChurnRiskChangedData
from shared.events.loyalty import RewardUnlocked, RewardUnlockedData, TierChanged, TierChangedData
from tests.engagement.support import customer, handle, now, outreach_rows, purchase, settings
from tests.helpers import LONGEST_SOURCE, dead_letter_topics, longest, run_poll

pytestmark = pytest.mark.db

PURCHASE_ID = longest("p-")


def _longest_sale(customer_id: str) -> PurchaseCompleted:
    line = PurchaseLine(
        sku=longest("sku-", 64),
        name="Rice cooker",
        category="Appliances",
        quantity=1,
        unit_price=Decimal("80"),
    )
    return PurchaseCompleted.create(
        id=longest("e-"),
        subject=customer_id,
        source=LONGEST_SOURCE,
        data=PurchaseCompletedData(
            purchase_id=PURCHASE_ID,
            channel="store",
            store_id=longest("store-", 64),
            total=Money(amount=Decimal(80), currency="EUR"),
            lines=(line,),
        ),
    )


def _its_refund(customer_id: str) -> PurchaseRefunded:
    return PurchaseRefunded.create(
        id=longest("e-refund-"),
        subject=customer_id,
        source=LONGEST_SOURCE,
        data=PurchaseRefundedData(
            refund_id=longest("rf-"),
            purchase_id=PURCHASE_ID,
            amount=Money(amount=Decimal(80), currency="EUR"),
        ),
    )


async def test_a_sale_with_the_longest_source_and_purchase_id_is_handled(db: Database) -> None:
    config = settings(after_sales_categories=["appliances"], attribution_window_seconds=3600)
    await handle(db, customer("c-1"), purchase("c-1", purchase_id="earlier"), config=config)
    async with db.unit_of_work() as session:  # the earlier thank-you went out 5 minutes ago
        await session.execute(
            update(Outreach).values(status="sent", sent_at=now() - timedelta(minutes=5))
        )
    sale_key = f"{LONGEST_SOURCE}:{PURCHASE_ID}"
    assert len(sale_key) == 385

    await run_poll(db, handlers(config), [_longest_sale("c-1")])

    assert await dead_letter_topics(db) == []
    journeys = {r.journey: r for r in await outreach_rows(db, "c-1")}
    assert journeys["thank_you"].dedupe_key == f"thank_you:{sale_key}"
    assert journeys["after_sales"].dedupe_key == f"after_sales:{sale_key}"
    async with db.unit_of_work() as session:
        assert (await session.execute(select(LastBasket.purchase_key))).scalars().all() == [
            sale_key
        ]
        counted = (await session.execute(select(CountedPurchase.purchase_key))).scalars().all()
        assert sale_key in counted
        assert (await session.execute(select(Conversion.purchase_key))).scalars().all() == [
            sale_key
        ]

    await run_poll(db, handlers(config), [_its_refund("c-1")])

    assert await dead_letter_topics(db) == []
    [care] = [r for r in await outreach_rows(db, "c-1") if r.journey == "after_sales"]
    assert (care.status, care.last_error) == ("suppressed", "exit: the purchase was refunded")


async def test_every_other_journeys_key_fits_with_the_longest_ids(db: Database) -> None:
    """Tier-up, milestone gift and win-back key on the customer, the tier or reward and
    the event id: each at its limit (customer id 64, tier and reward id 64, id 128)."""
    config = settings()
    who = longest("c-", 64)
    tier = TierChanged.create(
        id=longest("e-tier-"),
        subject=who,
        source=LONGEST_SOURCE,
        data=TierChangedData(new_tier=longest("Tier ", 64), direction="up", reason="spend"),
    )
    gift = RewardUnlocked.create(
        id=longest("e-gift-"),
        subject=who,
        source=LONGEST_SOURCE,
        data=RewardUnlockedData(
            reward_id=longest("reward-", 64), reward_name="Tea set", reason="10th purchase"
        ),
    )
    risk = ChurnRiskChanged.create(
        id=longest("e-risk-"),
        subject=who,
        source=LONGEST_SOURCE,
        data=ChurnRiskChangedData(risk=0.9, band="high", previous_band="medium"),
    )
    await handle(db, customer(who), config=config)

    await run_poll(db, handlers(config), [tier, gift, risk])

    assert await dead_letter_topics(db) == []
    keys = {r.journey: r.dedupe_key for r in await outreach_rows(db, who)}
    assert keys == {
        "tier_up": f"tier_up:{who}:{tier.data.new_tier}:{tier.id}",
        "milestone_gift": f"milestone_gift:{who}:{gift.data.reward_id}:{gift.id}",
        "win_back": f"win_back:{risk.id}",
    }
