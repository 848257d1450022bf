"""A read-ahead run's purchases (``prefetch``), recorded together: read once, write once.

One purchase at a time, ``service.record_purchase`` asks per purchase whether it is new
(and what was refunded of it already), reads the customer's purchases, buying months and
statistics row back, and writes the purchase, the months, the cohort, both rollups and the
statistics row: about eight statements. For a run of purchases (the runner's batch, see
``prefetch``) the first purchase reads, for the whole run, in four statements:

1. the run's customers' purchases, and which of the run's purchase ids are recorded
   already (under whichever customer);
2. the refunds waiting for the run's new purchase ids;
3. the customers' buying months (``months.read_months``);
4. their statistics rows.

Each purchase then changes that copy as ``record_purchase`` would change the tables: a
purchase id seen before counts once; a new one joins its customer's purchases, whose
statistics and months are recomputed (``compute_stats``, ``buying_months``) and whose
re-score is noted with the purchase's ``now``. The run's last purchase writes it all,
one statement per table (``write``): the new purchases (checked: one recorded meanwhile by
another transaction makes the batch try again), the statistics rows with the scores
(``scores.rescore``, which makes the noted re-scores in order, so every band change is
published and kept as one purchase at a time would), the months and their rollups
(``months.Changes``).

Exactness: inside a run only purchase handlers run, and no handler but this one reads or
writes the churn tables, so the copy is what the tables would hold, and the run's last
purchase writes it before any other event's handler runs. Refunds, merges, erasures and
feedback (other kinds of event) end a run and find everything written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import NamedTuple, cast

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from services.engagement import prefetch
from services.engagement.churn import months, scores
from services.engagement.churn.models import ChurnCustomer, ChurnPurchase, ChurnRefund
from services.engagement.churn.service import NEW_CUSTOMER, apply_stats, origin_of
from services.engagement.churn.settings import ChurnSettings
from services.engagement.churn.stats import Stats, compute_stats
from shared.consumer import TransientError, batch
from shared.events.commerce import PurchaseCompleted
from shared.key_lists import ManyRows, one_of

_KEY = "engagement.churn_ahead"
PURCHASES = cast(Table, ChurnPurchase.__table__)
CUSTOMERS = cast(Table, ChurnCustomer.__table__)
# What a purchase changes of its customer's row: the statistics and the scores.
WRITTEN = (
    *Stats.__dataclass_fields__,
    *("risk", "band", "reasons", "p_alive", "expected_purchases", "clv", "model_id"),
    "scored_at",
)


class Bought(NamedTuple):
    """A purchase as ``churn_purchases`` holds it."""

    purchase_id: str
    customer_id: str
    day: date
    occurred_at: datetime
    amount: Decimal
    currency: str
    refunded: Decimal
    origin_id: str | None


@dataclass
class Ahead:
    """The run's churn state: what the tables hold for its customers, as changed so far."""

    run: prefetch.Run
    known: set[str]  # purchase ids recorded (before the run or in it)
    refunds: dict[str, Decimal]  # refunded so far, by purchase id not recorded yet
    purchases: dict[str, list[Bought]]  # by customer
    rows: dict[str, SimpleNamespace]  # statistics rows, by customer
    new: set[str]  # customers without a row before the run
    months: months.Changes
    added: list[Bought] = field(default_factory=list)
    steps: list[scores.Step] = field(default_factory=list)
    handled: int = 0

    def record(
        self,
        event: PurchaseCompleted,
        *,
        origin_id: str | None,
        config: ChurnSettings,
        now: datetime,
    ) -> None:
        """One purchase, as ``service.record_purchase`` would make it."""
        self.handled += 1
        purchase_id = event.data.purchase_id
        if purchase_id in self.known:
            return  # the same purchase again (another event id): nothing new
        self.known.add(purchase_id)
        customer_id = event.subject
        bought = Bought(
            purchase_id,
            customer_id,
            event.time.date(),
            event.time,
            event.data.total.amount,
            event.data.total.currency,
            self.refunds.get(purchase_id, Decimal(0)),  # a refund may have come first
            origin_id,
        )
        self.added.append(bought)
        mine = self.purchases[customer_id]
        mine.append(bought)
        stats = compute_stats(mine, config.cadence_percentile)
        self.months.set(customer_id, months.buying_months(mine))
        row = self.rows[customer_id]
        apply_stats(row, stats)
        self.steps.append((row, scores.history(row) if stats.first_day else None, now))

    async def write(self, session: AsyncSession, *, config: ChurnSettings) -> None:
        """Write what the run changed: a few statements, whatever its size."""
        if self.added:
            await _insert_purchases(session, self.added)
        if self.steps:
            await scores.rescore(session, self.steps, config=config)
            await self._write_rows(session)
        await self.months.write(session)
        self.added, self.steps = [], []

    async def _write_rows(self, session: AsyncSession) -> None:
        changed = sorted({row.customer_id for row, _, _ in self.steps})
        created = [vars(self.rows[c]) for c in changed if c in self.new]
        updated = [
            {"customer_id": c, **{name: getattr(self.rows[c], name) for name in WRITTEN}}
            for c in changed
            if c not in self.new
        ]
        if created:
            await session.execute(insert(CUSTOMERS), created)
            self.new.difference_update(changed)
        if updated:
            await session.execute(update(ChurnCustomer), updated)
        for customer_id in changed:  # an earlier handler's copy would now be out of date
            cached = session.sync_session.identity_map.get(identity_key(ChurnCustomer, customer_id))
            if cached is not None:
                session.expire(cached)


async def record_purchase(
    session: AsyncSession, event: PurchaseCompleted, *, config: ChurnSettings, now: datetime
) -> bool:
    """Record a purchase of a read-ahead run (the last one writes the run); False outside
    one (the caller records it alone)."""
    run = prefetch.run_of(session, event)
    if run is None:
        return False
    ahead = session.info.get(_KEY)
    if not isinstance(ahead, Ahead) or ahead.run is not run:
        ahead = await _read_ahead(session, run)
        session.info[_KEY] = ahead
    ahead.record(event, origin_id=origin_of(session, event), config=config, now=now)
    if ahead.handled == run.size:
        await ahead.write(session, config=config)
    return True


async def _read_ahead(session: AsyncSession, run: prefetch.Run) -> Ahead:
    if _KEY not in session.info:  # first run of the transaction
        sa_event.listen(session.sync_session, "before_commit", _nothing_held)
    await session.flush()  # what earlier handlers left pending (the reads below are Core)
    customers = run.customers
    ids = sorted(
        {
            e.data.purchase_id
            for e in batch(session)
            if isinstance(e, PurchaseCompleted) and e.id in run.covered
        }
    )
    found = await session.execute(
        select(*(PURCHASES.c[name] for name in Bought._fields)).where(
            or_(one_of(PURCHASES.c.customer_id, customers), one_of(PURCHASES.c.purchase_id, ids))
        )
    )
    mine: dict[str, list[Bought]] = {c: [] for c in customers}
    known: set[str] = set()
    for row in found:
        bought = Bought(*row)
        known.add(bought.purchase_id)
        if bought.customer_id in mine:
            mine[bought.customer_id].append(bought)
    rows, new = await _customer_rows(session, customers)
    return Ahead(
        run=run,
        known=known,
        refunds=await _refunds(session, [i for i in ids if i not in known]),
        purchases=mine,
        rows=rows,
        new=new,
        months=months.Changes(await months.read_months(session, customers)),
    )


async def _refunds(session: AsyncSession, purchase_ids: list[str]) -> dict[str, Decimal]:
    if not purchase_ids:
        return {}
    found = await session.execute(
        select(ChurnRefund.purchase_id, func.sum(ChurnRefund.amount))
        .where(one_of(ChurnRefund.purchase_id, purchase_ids))
        .group_by(ChurnRefund.purchase_id)
    )
    return {purchase_id: Decimal(total) for purchase_id, total in found}


async def _customer_rows(
    session: AsyncSession, customers: Sequence[str]
) -> tuple[dict[str, SimpleNamespace], set[str]]:
    """The run's customers' rows. On PostgreSQL they are locked as they are read, in key
    order (as a re-score chunk locks them): the run writes them when it ends, and a
    re-score must not score them in between, from the history the run is about to
    replace (it would publish a band change the run's write then contradicts)."""
    stmt = select(CUSTOMERS).where(one_of(CUSTOMERS.c.customer_id, customers))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.order_by(CUSTOMERS.c.customer_id).with_for_update()
    found = await session.execute(stmt)
    rows = {r.customer_id: SimpleNamespace(**r._mapping) for r in found}
    new = {c for c in customers if c not in rows}
    blank = {c.name: None for c in CUSTOMERS.columns}
    for c in new:
        rows[c] = SimpleNamespace(**{**blank, **NEW_CUSTOMER, "customer_id": c, "reasons": []})
    return rows, new


_INSERT_PURCHASES = ManyRows(PURCHASES, Bought._fields, returning=(PURCHASES.c.purchase_id,))


async def _insert_purchases(session: AsyncSession, added: list[Bought]) -> None:
    """Insert the run's new purchases; if another transaction recorded one meanwhile, the
    batch is tried again (it then reads that purchase as recorded)."""
    rows = [b._asdict() for b in sorted(added, key=lambda b: b.purchase_id)]
    inserted = {purchase_id for (purchase_id,) in await _INSERT_PURCHASES.execute(session, rows)}
    if len(inserted) != len(rows):
        raise TransientError("a purchase of the run was recorded meanwhile by another transaction")


def _nothing_held(session: Session) -> None:
    ahead = session.info.get(_KEY)
    if isinstance(ahead, Ahead) and (ahead.added or ahead.steps):
        raise RuntimeError("churn: a run's purchases were never written")
