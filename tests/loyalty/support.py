"""Builders and checks the loyalty tests share."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from services.loyalty import consumers
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import (
    DailyPoints,
    DailyRevenue,
    LedgerEntry,
    Lot,
    Member,
    Purchase,
    Redemption,
    Reward,
)
from services.loyalty.service import redemption, rulebook
from services.loyalty.service.rules import RuleSetBody
from shared.db import Database
from shared.events import Event
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseLine,
    PurchaseRefunded,
    PurchaseRefundedData,
    RefundedLine,
)
from shared.events.interactions import InteractionRecorded, InteractionRecordedData
from shared.events.profile import (
    CustomerDetails,
    CustomerErased,
    CustomerErasedData,
    CustomerMerged,
    CustomerMergedData,
    CustomerRegistered,
    CustomerUnmerged,
    CustomerUnmergedData,
    CustomerUpdated,
)
from shared.plumbing import outbox
from shared.timers import Clock, Scheduler
from tests.helpers import batch_items, batch_runner

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = LoyaltySettings(expiry_days=None)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def purchase(
    customer_id: str,
    amount: str = "100.00",
    *,
    purchase_id: str | None = None,
    when: datetime = T0,
    lines: tuple[tuple[str, str | None, int, str], ...] = (),
    currency: str = "EUR",
) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer_id,
        source="/pos/test",
        time=when,
        data=PurchaseCompletedData(
            purchase_id=purchase_id or f"p-{uuid.uuid4().hex[:10]}",
            channel="store",
            total={"amount": Decimal(amount), "currency": currency},
            lines=tuple(
                PurchaseLine(sku=s, category=c, quantity=q, unit_price=Decimal(p))
                for s, c, q, p in lines
            ),
        ),
    )


def refund(
    customer_id: str,
    purchase_id: str,
    amount: str,
    *,
    refund_id: str | None = None,
    when: datetime = T0,
    lines: tuple[tuple[str, int], ...] = (),
) -> PurchaseRefunded:
    return PurchaseRefunded.create(
        subject=customer_id,
        source="/pos/test",
        time=when,
        data=PurchaseRefundedData(
            refund_id=refund_id or f"r-{uuid.uuid4().hex[:10]}",
            purchase_id=purchase_id,
            amount={"amount": Decimal(amount), "currency": "EUR"},
            lines=tuple(RefundedLine(sku=s, quantity=q) for s, q in lines),
        ),
    )


def interaction(customer_id: str, kind: str, *, when: datetime = T0) -> InteractionRecorded:
    return InteractionRecorded.create(
        subject=customer_id,
        source="/app",
        time=when,
        data=InteractionRecordedData(channel="app", kind=kind),
    )


def merged(survivor: str, gone: str, *, when: datetime = T0) -> CustomerMerged:
    return CustomerMerged.create(
        subject=survivor,
        source="keepwell/profile",
        time=when,
        data=CustomerMergedData(merge_id=f"m-{uuid.uuid4().hex[:8]}", merged_id=gone),
    )


def unmerged(
    survivor: str, restored: str, *, when: datetime = T0, birthday: date | None = None
) -> CustomerUnmerged:
    """``birthday``: the restored customer's, as profile sends it with the undo."""
    details = CustomerDetails(birthday=birthday) if birthday is not None else None
    return CustomerUnmerged.create(
        subject=survivor,
        source="keepwell/profile",
        time=when,
        data=CustomerUnmergedData(merge_id="m-undone", restored_id=restored, restored=details),
    )


def registered(
    customer_id: str, birthday: date | None = None, *, when: datetime = T0
) -> CustomerRegistered:
    return CustomerRegistered.create(
        subject=customer_id,
        source="keepwell/profile",
        time=when,
        data=CustomerDetails(name="Lan", email="lan@example.com", birthday=birthday),
    )


def updated(customer_id: str, birthday: date | None, *, when: datetime = T0) -> CustomerUpdated:
    return CustomerUpdated.create(
        subject=customer_id,
        source="keepwell/profile",
        time=when,
        data=CustomerDetails(birthday=birthday),
    )


def erased(customer_id: str, *, when: datetime = T0) -> CustomerErased:
    return CustomerErased.create(
        subject=customer_id, source="keepwell/profile", time=when, data=CustomerErasedData()
    )


class Loyalty:
    """A migrated loyalty database driven the way the runner and scheduler drive it."""

    def __init__(self, db: Database, settings: LoyaltySettings = SETTINGS) -> None:
        self.db = db
        self.settings = settings
        self.handlers = consumers.handlers(settings)

    async def handle(self, *events: Event) -> None:
        """Each event in its own transaction, as the runner would commit them."""
        for event in events:
            async with self.db.unit_of_work() as session:
                await self.handlers[type(event)](session, event)

    async def handle_batch(self, *events: Event) -> None:
        """All events in one transaction through the runner's own batch transaction.

        As the runner commits a partition's batch: de-duplicated by event id against
        ``processed_events``, the handlers told the batch (``shared.consumer.batch``)
        so purchases read ahead, and the inbox rows written. No broker involved.
        """
        runner = batch_runner(self.db, self.handlers, service="loyalty")
        await runner._apply_batch(batch_items(events))

    async def handle_together(self, *events: Event) -> None:
        """All events in one transaction without the runner (no batch to read ahead in)."""
        async with self.db.unit_of_work() as session:
            for event in events:
                await self.handlers[type(event)](session, event)

    async def publish_rules(self, **rules: Any) -> int:
        async with self.db.unit_of_work() as session:
            published = await rulebook.publish(
                session,
                body=RuleSetBody.model_validate(rules),
                operator="test",
                settings=self.settings,
            )
        return published.version

    async def add_reward(
        self, reward_id: str, cost: int, *, stock: int | None = None, tiers: list[str] | None = None
    ) -> None:
        async with self.db.unit_of_work() as session:
            session.add(
                Reward(
                    id=reward_id,
                    name=reward_id.title(),
                    points_cost=cost,
                    stock=stock,
                    active=True,
                    tiers=tiers or [],
                )
            )

    async def redeem(
        self, customer_id: str, reward_id: str, *, key: str | None = None, now: datetime = T0
    ) -> Redemption:
        async with self.db.unit_of_work() as session:
            outcome = await redemption.redeem(
                session,
                customer_id=customer_id,
                reward_id=reward_id,
                idempotency_key=key or uuid.uuid4().hex,
                operator="till-1",
                now=now,
                settings=self.settings,
            )
        return outcome.result()

    def scheduler(self, clock: Clock) -> Scheduler:
        return Scheduler(
            db=self.db,
            handlers=consumers.timer_handlers(self.settings, clock),
            service="loyalty",
            clock=clock,
        )

    async def member(self, customer_id: str) -> Member | None:
        async with self.db.unit_of_work() as session:
            return await session.get(Member, customer_id)

    async def balance(self, customer_id: str) -> int:
        member = await self.member(customer_id)
        assert member is not None
        return member.balance

    async def entries(self, customer_id: str) -> list[LedgerEntry]:
        async with self.db.unit_of_work() as session:
            stmt = (
                select(LedgerEntry)
                .where(LedgerEntry.customer_id == customer_id)
                .order_by(LedgerEntry.id)
            )
            return list((await session.execute(stmt)).scalars())

    async def published(self, event_type: str | None = None) -> list[dict[str, Any]]:
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(select(outbox).order_by(outbox.c.id))).all()
        events = [json.loads(r.value) for r in rows]
        return [e for e in events if event_type is None or e["type"] == event_type]

    async def check_invariants(self) -> None:
        """Balance == ledger sum for every member; lots hold exactly the positive balance."""
        async with self.db.unit_of_work() as session:
            members = (await session.execute(select(Member))).scalars().all()
            sums = dict(
                (
                    await session.execute(
                        select(LedgerEntry.customer_id, func.sum(LedgerEntry.points)).group_by(
                            LedgerEntry.customer_id
                        )
                    )
                ).all()
            )
            lots = dict(
                (
                    await session.execute(
                        select(Lot.customer_id, func.sum(Lot.remaining)).group_by(Lot.customer_id)
                    )
                ).all()
            )
            locked = dict(
                (
                    await session.execute(
                        select(Lot.customer_id, func.sum(Lot.remaining))
                        .where(Lot.pending_until.is_not(None))
                        .group_by(Lot.customer_id)
                    )
                ).all()
            )
            blank = (
                await session.execute(select(func.count()).where(LedgerEntry.reason == ""))
            ).scalar_one()
        assert blank == 0
        await self.check_rollups()
        for m in members:
            assert m.balance == int(sums.get(m.customer_id) or 0), m.customer_id
            assert int(lots.get(m.customer_id) or 0) == max(0, m.balance), m.customer_id
            assert int(locked.get(m.customer_id) or 0) == m.pending, m.customer_id
            assert m.spendable >= 0 or m.pending == 0, m.customer_id

    async def check_rollups(self) -> None:
        """The report's daily rollups equal the ledger and the purchases, grouped."""
        async with self.db.unit_of_work() as session:
            entries = (await session.execute(select(LedgerEntry))).scalars().all()
            daily = (await session.execute(select(DailyPoints))).scalars().all()
            bought = (await session.execute(select(Purchase))).scalars().all()
            revenue = (await session.execute(select(DailyRevenue))).scalars().all()
        points: dict[tuple[str, str], int] = defaultdict(int)
        for entry in entries:
            day = entry.occurred_at.astimezone(UTC).date().isoformat()
            points[(day, entry.kind)] += entry.points
        rolled: dict[tuple[str, str], int] = defaultdict(int)
        for row in daily:
            rolled[(row.day.isoformat(), row.kind)] += row.points
        assert {k: v for k, v in rolled.items() if v} == {k: v for k, v in points.items() if v}
        orders: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for p in bought:
            key = (p.occurred_at.astimezone(UTC).date().isoformat(), p.tier or "")
            orders[key][0] += 1
            orders[key][1] += Decimal(p.total)
        summed: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for r in revenue:
            summed[(r.day.isoformat(), r.tier)][0] += r.orders
            summed[(r.day.isoformat(), r.tier)][1] += Decimal(r.revenue)
        assert summed == orders


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
