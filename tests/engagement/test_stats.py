"""Journey statistics with attribution, and "bought after" recommendations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.engagement import repository
from services.engagement.repository import JourneyStats
from shared.db import Database
from tests.engagement.support import (
    customer,
    handle,
    now,
    outreach_rows,
    purchase,
    set_outreach,
    settings,
)

pytestmark = pytest.mark.db


async def _stats(db: Database, hours: float = 1) -> list[JourneyStats]:
    async with db.unit_of_work() as session:
        return await repository.list_journey_stats(
            session, start=now() - timedelta(hours=hours), end=now() + timedelta(minutes=1)
        )


async def test_stats_count_outcomes_and_attribute_a_purchase_within_the_window(
    db: Database,
) -> None:
    config = settings(attribution_window_seconds=3600)
    await handle(db, customer("c-1"), customer("c-2"), customer("c-3"), config=config)
    await handle(db, purchase("c-1", purchase_id="a"), purchase("c-2", purchase_id="b"))
    await handle(db, purchase("c-3", purchase_id="c"))
    sent_at = now() - timedelta(minutes=30)
    await set_outreach(db, "c-1", status="sent", sent_at=sent_at)
    await set_outreach(db, "c-2", status="failed")
    await set_outreach(db, "c-3", status="sent", sent_at=now() - timedelta(hours=2))
    # c-1 comes back within the hour: a conversion; c-3 came back too late to count.
    await handle(db, purchase("c-1", purchase_id="a2"), config=config)
    await handle(db, purchase("c-3", purchase_id="c2"), config=config)
    [row] = await _stats(db, hours=3)
    assert row == JourneyStats(
        journey="thank_you", channel="email", sent=2, suppressed=0, failed=1, conversions=1
    )


async def test_stats_use_the_triggers_event_time(db: Database) -> None:
    old = now() - timedelta(days=3)
    await handle(db, customer("c-1"), purchase("c-1", when=old))
    assert await _stats(db) == []
    assert [(s.journey, s.suppressed) for s in await _stats(db, hours=24 * 4)] == [("thank_you", 0)]


async def test_a_purchase_is_attributed_once(db: Database) -> None:
    await handle(db, customer("c-1"), purchase("c-1", purchase_id="a"))
    await set_outreach(db, "c-1", status="sent", sent_at=now() - timedelta(minutes=5))
    again = purchase("c-1", purchase_id="a2")
    await handle(db, again, again)
    by_journey = {s.journey: s.conversions for s in await _stats(db)}
    assert by_journey == {"thank_you": 1}


async def test_bought_after_recommends_what_others_bought_next(db: Database) -> None:
    t0 = now() - timedelta(days=10)
    for n in range(2):
        who = f"earlier-{n}"
        await handle(db, purchase(who, items=("Rice cooker",), when=t0))
        await handle(db, purchase(who, items=("Rice",), when=t0 + timedelta(days=2)))
    await handle(db, customer("c-1"), purchase("c-1", items=("Rice cooker",)))
    [row] = [r for r in await outreach_rows(db, "c-1")]
    assert row.context["bought_after"] == ["Rice"]
    assert row.context["recommendations"] == []  # nobody bought them together
