"""Values from events fit their columns, on PostgreSQL too (which enforces VARCHAR
lengths; SQLite does not): a sale, its refund and an interaction from the longest
source with the longest ids, the longest name a till may send (whose case-folded
search form is longer still) and the longest tier name loyalty may announce."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from services.profile import repository, service
from services.profile.models import SaleKey, TimelineEntry
from shared.db import Database
from shared.events import Money
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.common import ContactHint
from shared.events.interactions import InteractionRecorded, InteractionRecordedData
from shared.events.loyalty import TierChanged, TierChangedData
from tests.helpers import LONGEST_SOURCE, dead_letter_topics, longest, run_poll
from tests.profile.builders import T0
from tests.profile.support import HANDLERS

pytestmark = pytest.mark.db

# 200 characters (ContactHint.name's limit) whose case-folded form is three times as
# long: the ligature U+FB03 folds to "ffi".
NAME = "\ufb03" * 200
CUSTOMER = longest("c-", 64)


def _sale() -> PurchaseCompleted:
    return PurchaseCompleted.create(
        id=longest("e-sale-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=T0,
        data=PurchaseCompletedData(
            purchase_id=longest("p-"),
            channel="store",
            store_id=longest("store-", 64),
            total=Money(amount=Decimal(80), currency="EUR"),
            customer=ContactHint(name=NAME, email=longest("a", 242) + "@example.com"),
        ),
    )


def _refund() -> PurchaseRefunded:
    return PurchaseRefunded.create(
        id=longest("e-refund-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=T0,
        data=PurchaseRefundedData(
            refund_id=longest("rf-"),
            purchase_id=longest("p-"),
            amount=Money(amount=Decimal(30), currency="EUR"),
            reason="r" * 500,
        ),
    )


def _visit() -> InteractionRecorded:
    return InteractionRecorded.create(
        id=longest("e-visit-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=T0,
        data=InteractionRecordedData(kind="store_visit", channel="store", summary="s" * 500),
    )


def _tier() -> TierChanged:
    """Loyalty names tiers with up to 64 characters (services/loyalty/service/rules.py)."""
    return TierChanged.create(
        id=longest("e-tier-"),
        subject=CUSTOMER,
        source=LONGEST_SOURCE,
        time=T0,
        data=TierChangedData(new_tier=longest("Tier ", 64), direction="up", reason="spend"),
    )


async def test_events_at_every_limit_reach_the_view(profile_db: Database) -> None:
    db = profile_db
    assert len(NAME.casefold()) == 600

    await run_poll(db, HANDLERS, [_sale(), _refund(), _visit(), _tier()])

    assert await dead_letter_topics(db) == []
    async with db.unit_of_work() as session:
        view = await service.get_customer_view(session, customer_id=CUSTOMER)
        found = await repository.search_customers(
            session, name_prefix="FFI" * 150, segment=None, limit=5
        )
        kinds = (await session.execute(select(TimelineEntry.kind))).scalars().all()
        sales = (await session.execute(select(SaleKey.business_id))).scalars().all()
    customer = view.customer
    assert (customer.name, customer.tier) == (NAME, longest("Tier ", 64))
    assert (customer.order_count, view.total_spend) == (1, Money(amount=50, currency="EUR"))
    assert [c.customer_id for c in found] == [CUSTOMER]
    assert sorted(kinds) == [
        "purchase.completed",
        "purchase.refunded",
        "store_visit",
        "tier.changed",
    ]
    assert sorted(sales) == [longest("p-"), longest("rf-")]
