"""Property: whatever the sequence of earn / redeem / refund / expire / merge, the books hold.

Balance == the ledger's sum for every member; the lots hold exactly the positive
balance; locked lots hold exactly ``pending``; a balance is negative only where a
refund took back spent points (the documented policy); every entry says why. Runs
with and without a lock period on purchase points.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.loyalty.config import LoyaltySettings
from services.loyalty.models import LedgerEntry, Member
from services.loyalty.service.errors import InsufficientPoints, MemberNotFound
from shared.db import Database
from shared.events import Event
from tests.loyalty.support import T0, FakeClock, Loyalty, merged, purchase, refund

pytestmark = pytest.mark.db

COSTS = (5, 20, 50, 120)
who = st.sampled_from("abc")
operation = st.one_of(
    st.tuples(st.just("earn"), who, st.integers(1, 150)),
    st.tuples(st.just("redeem"), who, st.sampled_from(COSTS)),
    st.tuples(st.just("refund"), st.integers(0, 30), st.sampled_from(["0.3", "0.5", "1"])),
    st.tuples(st.just("early_refund"), who, st.integers(1, 100)),
    st.tuples(st.just("expire"), st.integers(1, 45)),
    st.tuples(st.just("merge"), who, who),
)


@dataclass
class Run:
    loyalty: Loyalty
    tag: str
    batched: bool = False
    queue: list[Event] = field(default_factory=list)
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    purchases: list[tuple[str, str, int]] = field(default_factory=list)
    early: list[tuple[str, str]] = field(default_factory=list)

    def cid(self, name: str) -> str:
        return f"{self.tag}-{name}"

    async def emit(self, event: Event) -> None:
        """Handle now, or queue for one batch transaction as the runner would."""
        if self.batched:
            self.queue.append(event)
        else:
            await self.loyalty.handle(event)

    async def drain(self) -> None:
        if self.queue:
            await self.loyalty.handle_batch(*self.queue)
            self.queue.clear()

    def tick(self, days: float = 1) -> None:
        self.clock.now += timedelta(days=days)

    async def earn(self, name: str, amount: int) -> None:
        customer, pid = self.cid(name), f"{self.tag}-p{len(self.purchases)}"
        if self.early:
            pid, customer = self.early.pop(0)
        await self.emit(purchase(customer, str(amount), purchase_id=pid, when=self.clock.now))
        self.purchases.append((customer, pid, amount))

    async def redeem(self, name: str, cost: int) -> None:
        await self.drain()
        member = await self.loyalty.member(self.cid(name))
        try:
            await self.loyalty.redeem(self.cid(name), f"{self.tag}-r{cost}", now=self.clock.now)
        except InsufficientPoints:
            assert member is not None
            assert member.spendable < cost  # refused only when it really does not cover it
        except MemberNotFound:
            assert member is None

    async def refund(self, index: int, fraction: str) -> None:
        if self.purchases:
            customer, pid, amount = self.purchases[index % len(self.purchases)]
            part = f"{amount * float(fraction):.2f}"
            await self.emit(refund(customer, pid, part, when=self.clock.now))

    async def early_refund(self, name: str, amount: int) -> None:
        pid = f"{self.tag}-e{len(self.early)}-{uuid.uuid4().hex[:4]}"
        await self.emit(refund(self.cid(name), pid, str(amount), when=self.clock.now))
        self.early.append((pid, self.cid(name)))

    async def expire(self, days: int) -> None:
        await self.drain()
        self.tick(days)
        scheduler = self.loyalty.scheduler(self.clock)
        while await scheduler.fire_due():
            pass

    async def merge(self, keep: str, gone: str) -> None:
        if keep != gone:
            await self.emit(merged(self.cid(keep), self.cid(gone), when=self.clock.now))


async def check_books(loyalty: Loyalty, tag: str) -> None:
    await loyalty.check_invariants()
    async with loyalty.db.unit_of_work() as session:
        members = (
            (await session.execute(select(Member).where(Member.customer_id.like(f"{tag}-%"))))
            .scalars()
            .all()
        )
        entries = (
            (
                await session.execute(
                    select(LedgerEntry).where(LedgerEntry.customer_id.like(f"{tag}-%"))
                )
            )
            .scalars()
            .all()
        )
    for entry in entries:
        assert entry.reason
        assert entry.entry_key
        assert entry.source_event_id or entry.rule_id or entry.reference
    if any(m.balance < 0 for m in members):
        assert any(e.kind == "reverse" for e in entries), "negative only after a refund"


def property_settings(pending_days: int | None) -> LoyaltySettings:
    return LoyaltySettings(expiry_days=30, expiring_notice_days=5, pending_days=pending_days)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(operation, max_size=15),
    batched=st.booleans(),
    pending_days=st.sampled_from([None, 3]),
)
async def test_the_books_always_balance(
    db: Database,
    operations: list[tuple[Any, ...]],
    batched: bool,
    pending_days: int | None,
) -> None:
    """With and without a lock period on purchase points."""
    run = Run(Loyalty(db, property_settings(pending_days)), uuid.uuid4().hex[:8], batched)
    for cost in COSTS:
        await run.loyalty.add_reward(f"{run.tag}-r{cost}", cost)
    for name, *args in operations:
        run.tick()
        await getattr(run, name)(*args)
    await run.drain()
    await check_books(run.loyalty, run.tag)
