"""Journeys beyond the thank-you: planning, exit conditions, the frequency cap, staleness."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from services.engagement import delivery
from services.engagement.delivery import Claim, FrequencyCap
from services.engagement.sender import Sender
from shared.db import Database
from shared.events.engagement import ChurnRiskChanged, ChurnRiskChangedData, OutreachSuppressed
from shared.events.loyalty import (
    PointsExpiring,
    PointsExpiringData,
    RewardUnlocked,
    RewardUnlockedData,
    TierChanged,
    TierChangedData,
)
from tests.engagement.support import (
    customer,
    handle,
    now,
    only_outreach,
    outreach_rows,
    published,
    purchase,
    settings,
)
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db

Smtp = tuple[int, SinkHandler]
LOYALTY = "keepwell/loyalty"


def tier_changed(customer_id: str, direction: str = "up") -> TierChanged:
    data = TierChangedData.model_validate(
        {
            "old_tier": "Silver",
            "new_tier": "Gold" if direction == "up" else "Bronze",
            "direction": direction,
            "reason": "spend over 12 months",
            "benefits": ["Free delivery", "Double points on Fridays"],
        }
    )
    return TierChanged.create(subject=customer_id, source=LOYALTY, data=data)


def reward(customer_id: str, n: int) -> RewardUnlocked:
    data = RewardUnlockedData(reward_id=f"r-{n}", reward_name="Free coffee", reason=f"visit {n}")
    return RewardUnlocked.create(subject=customer_id, source=LOYALTY, data=data)


def expiring(customer_id: str, *, when: datetime | None = None) -> PointsExpiring:
    data = PointsExpiringData(points=120, balance=500, expires_at=datetime(2026, 12, 31, 17))
    return PointsExpiring.create(subject=customer_id, source=LOYALTY, data=data, time=when)


def risk(customer_id: str, band: str, previous: str | None = "medium") -> ChurnRiskChanged:
    data = ChurnRiskChangedData.model_validate(
        {"risk": 0.81, "band": band, "previous_band": previous, "reasons": ["no visit in 90 days"]}
    )
    return ChurnRiskChanged.create(subject=customer_id, source="keepwell/engagement", data=data)


def sender(db: Database, port: int, **overrides: object) -> Sender:
    return Sender(db=db, settings=settings(smtp_port=port, **overrides))


async def test_tier_up_congratulates_in_vietnamese_with_the_benefits(
    db: Database, smtp: Smtp
) -> None:
    port, sink = smtp
    await handle(db, customer("c-1", name="Lan", language="vi"), tier_changed("c-1"))
    await handle(db, tier_changed("c-1", direction="down"))
    assert await sender(db, port).run_once() == 1
    [mail] = sink.wait_for(1, timeout=5)
    assert mail.subject == "Chào mừng bạn đến hạng Gold, Lan!"
    assert "Free delivery" in mail.text()
    assert "Double points on Fridays" in mail.text()
    row = await only_outreach(db, "c-1")
    assert (row.journey, row.status) == ("tier_up", "sent")


async def test_points_expiring_is_planned_once_per_expiry(db: Database) -> None:
    await handle(db, customer("c-1"), expiring("c-1"), expiring("c-1"))
    row = await only_outreach(db, "c-1")
    assert row.journey == "points_expiring"
    assert row.context == {"points": 120, "balance": 500, "expires_on": "2026-12-31"}


async def test_win_back_waits_its_delay_from_the_event_time(db: Database) -> None:
    event = risk("c-1", "high")
    await handle(db, customer("c-1"), event, config=settings(win_back_delay_seconds=3600))
    await handle(db, risk("c-2", "medium", previous="low"), risk("c-3", "high", previous="high"))
    [row] = await outreach_rows(db)
    assert (row.customer_id, row.journey, row.status) == ("c-1", "win_back", "pending")
    assert row.due_at.timestamp() == (event.time + timedelta(hours=1)).timestamp()


async def test_win_back_is_cancelled_when_the_customer_buys_first(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    config = settings(win_back_delay_seconds=0.5)
    await handle(db, customer("c-1"), risk("c-1", "high"), config=config)
    await handle(db, purchase("c-1"), config=config)
    await asyncio.sleep(0.6)  # the win-back's due time has passed
    assert await sender(db, port).run_once() == 1  # the thank-you only
    rows = {r.journey: r for r in await outreach_rows(db, "c-1")}
    assert rows["win_back"].status == "suppressed"
    assert rows["win_back"].last_error == "exit: the customer purchased before it was due"
    assert rows["thank_you"].status == "sent"
    suppressed = [e for e in await published(db) if isinstance(e, OutreachSuppressed)]
    assert [e.data.outreach_id for e in suppressed] == [rows["win_back"].id]
    await asyncio.sleep(0.2)
    assert [m.subject for m in sink.messages] == ["Thank you for your purchase, Lan"]


async def test_the_frequency_cap_holds_under_a_burst(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-1"), *(reward("c-1", n) for n in range(6)), purchase("c-1"))
    running = sender(db, port, frequency_cap=2)
    await running.run_once()
    await running.run_once()
    rows = await outreach_rows(db, "c-1")
    gifts = [r for r in rows if r.journey == "milestone_gift"]
    assert sorted(r.status for r in gifts) == ["sent"] * 2 + ["suppressed"] * 4
    reasons = {r.last_error for r in gifts if r.status == "suppressed"}
    assert reasons == {"frequency cap: 2 marketing messages per 7 days"}
    thanks = [r for r in rows if r.journey == "thank_you"]
    assert [r.status for r in thanks] == ["sent"]  # transactional: exempt
    await asyncio.sleep(0.2)
    assert len(sink.messages) == 3


async def test_the_frequency_cap_holds_when_replicas_claim_at_once(db: Database) -> None:
    """Two claim rounds at once (two replicas) take one gift each for a customer with
    room for one more: the second waits for the first to commit, counts its claim and
    suppresses. Without the wait each would count none and both would go."""
    await handle(db, customer("c-1"), reward("c-1", 1), reward("c-1", 2))
    cap = FrequencyCap(limit=1)

    async def claim() -> list[Claim]:
        async with db.unit_of_work() as session:
            return await delivery.claim_due(session, now=now(), limit=1, cap=cap)

    async with db.unit_of_work() as session:
        first = await delivery.claim_due(session, now=now(), limit=1, cap=cap)
        other = asyncio.create_task(claim())
        await asyncio.sleep(0.3)
        # PostgreSQL: the other round has its own gift (SKIP LOCKED) and waits for this
        # customer's count; SQLite: it waits for the write lock.
        assert not other.done()
    assert [c.journey for c in first] == ["milestone_gift"]
    assert await other == []
    rows = await outreach_rows(db, "c-1")
    assert sorted((r.status, r.last_error) for r in rows) == [
        ("sending", None),
        ("suppressed", "frequency cap: 1 marketing messages per 7 days"),
    ]


async def test_a_message_due_long_ago_is_suppressed_as_stale(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    old = now() - timedelta(days=3)
    await handle(db, customer("c-1"), expiring("c-1", when=old))
    assert await sender(db, port, max_lateness_seconds=86400).run_once() == 0
    row = await only_outreach(db, "c-1")
    assert (row.status, row.last_error) == ("suppressed", "stale")
    [event] = await published(db)
    assert isinstance(event, OutreachSuppressed)
    assert event.data.reason == "stale"
    await asyncio.sleep(0.2)
    assert sink.messages == []


async def test_thank_you_in_vietnamese_recommends_what_others_bought_with_it(
    db: Database, smtp: Smtp
) -> None:
    port, sink = smtp
    await handle(db, purchase("other-1", items=("Green tea", "Lotus cake")))
    await handle(db, purchase("other-2", items=("Green tea", "Lotus cake", "Tea cup")))
    await handle(db, purchase("other-3", items=("Coffee", "Tea cup")))
    await handle(
        db, customer("c-1", name="Lan", language="vi"), purchase("c-1", items=("Green tea",))
    )
    row = await only_outreach(db, "c-1")
    assert row.context["recommendations"] == ["Lotus cake", "Tea cup"]
    await sender(db, port).run_once()
    mails = [m for m in sink.wait_for(1, timeout=5) if m.rcpt_tos == ("lan@example.com",)]
    [mail] = mails
    assert mail.subject == "Cảm ơn Lan đã mua sắm cùng chúng tôi"
    assert "Chào Lan," in mail.text()
    assert "Có thể bạn cũng thích" in mail.text()
    assert "  - Lotus cake" in mail.text()


async def test_a_restart_between_scheduling_and_sending_sends_once(
    engagement_url: str, smtp: Smtp
) -> None:
    port, sink = smtp
    config = settings(win_back_delay_seconds=3)  # ample, so a loaded machine is not late
    before = Database(engagement_url)
    await handle(before, customer("c-1"), risk("c-1", "high"), config=config)
    assert await sender(before, port).run_once() == 0  # not due yet
    await before.dispose()  # the process stops
    await asyncio.sleep(3.1)
    after = Database(engagement_url)  # and a new one starts
    try:
        restarted = sender(after, port)
        assert await restarted.run_once() == 1
        assert await restarted.run_once() == 0
        row = await only_outreach(after, "c-1")
        assert (row.journey, row.status, row.attempts) == ("win_back", "sent", 1)
    finally:
        await after.dispose()
    await asyncio.sleep(0.2)
    assert [m.subject for m in sink.messages] == ["We miss you, Lan"]
