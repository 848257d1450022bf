"""Reading ahead over a run of purchases in a consumer batch.

For each purchase, the outreach side used to ask the database, one purchase at a
time: whom the customer was merged into, whether a win-back waits to be cancelled,
which message the purchase is attributed to, the thank-you journey's settings, the
customer's previous basket (locked), whether its thank-you was planned already,
whether the sale was counted into the recommendations already and the recommendation
counts of its items. The first purchase of a *run* (the
purchases the runner hands over back to back, up to the next event of another
kind, see ``shared.consumer.batch``) first writes what the batch holds (``held``),
then asks for the whole run in at most nine statements:

1. the survivors of the run's customer ids that were merged away (read once for the
   whole batch, ``shared.merges``: a later run's come from that read);
2. which of the (surviving) customers have a pending win-back;
3. the messages sent to them within the attribution window of the run's purchases,
   newest first, in the order the per-purchase query used (``sent_at``, then id);
4. every journey's settings;
5. their latest baskets, locked (``FOR UPDATE``, in customer order, on PostgreSQL);
6. which of the run's thank-you dedupe keys exist already;
7. the run's sales (``source:purchase_id``) not counted into the recommendation
   statistics before, claimed for this transaction (one ``INSERT … ON CONFLICT DO
   NOTHING RETURNING`` into ``counted_purchases``, ``shared.claims``);
8. and 9. the "bought together" and "bought after" counts of the run's items.

Exactness: inside a run only purchase handlers run, and a purchase changes none of
this for a later one, except the latest basket (each purchase replaces its
customer's; the run keeps its copy up to date as it writes), the pending win-backs
it cancels (the run forgets them once cancelled), the thank-you keys it plans, the
sales it counts (a claimed key counts with the first purchase naming it) and the
counts it adds (the run adds them to its copies as it holds the writes). Merges,
win-back plans and sends come from other kinds of event or other transactions (and so
do counts other replicas' batches add): a run sees what was committed when it began,
as if its purchases had been handled at that moment (under PostgreSQL's read
committed a per-purchase query could see a send committed a moment later; the
message and the purchase were concurrent either way). Counting a sale once does not
rest on that snapshot: the claim takes the key's row lock, so a batch claiming a sale
that another open batch claimed (two batches meet when a rebalance hands a partition
over mid-batch) waits for that one to commit or roll back, and gets the key only if
it rolled back. A run ends at the first event of another kind, so a purchase after it
reads ahead afresh; a failed batch replayed one message at a time reads ahead over
runs of one. Outside the runner (no batch, or an event not in it) every call falls
back to the per-purchase query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import held, journey_config, recommendations, repository
from services.engagement.catalog import THANK_YOU, WIN_BACK
from services.engagement.config import EngagementSettings
from services.engagement.journey_config import JourneySettings
from services.engagement.models import (
    PENDING,
    SENT,
    LastBasket,
    Outreach,
)
from services.engagement.repository import identity
from shared.consumer import run_from
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.key_lists import one_of

_KEY = "engagement.prefetched"

# A customer's latest basket as the run knows it: (purchase key, skus, event time).
Basket = tuple[str, list[str], datetime]


@dataclass
class Run:
    covered: set[str] = field(default_factory=set)  # event ids
    size: int = 0  # purchases in the run (its last one can write what the run held)
    customers: list[str] = field(default_factory=list)  # after merges, sorted
    survivors: dict[str, str] = field(default_factory=dict)
    win_back: set[str] = field(default_factory=set)
    sent: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    window: tuple[datetime, datetime] | None = None
    journeys: dict[str, JourneySettings] = field(default_factory=dict)
    baskets: dict[str, Basket | None] = field(default_factory=dict)
    thanked: set[str] = field(default_factory=set)  # thank-you dedupe keys planned
    uncounted: set[str] = field(default_factory=set)  # sales claimed, not yet counted
    pairs: recommendations.Counts = field(default_factory=dict)
    sequences: recommendations.Counts = field(default_factory=dict)


def run_of(session: AsyncSession, event: Event) -> Run | None:
    """The read-ahead covering ``event`` (same id), if any."""
    run = session.info.get(_KEY)
    return run if isinstance(run, Run) and event.id in run.covered else None


async def read_ahead(
    session: AsyncSession, event: PurchaseCompleted, *, settings: EngagementSettings
) -> Run | None:
    """The run ``event`` belongs to, read ahead now if it was not yet; None outside one."""
    if (run := run_of(session, event)) is not None:
        return run
    purchases = run_from(session, event)
    if purchases is None:
        return None
    await held.write(session)  # what the batch holds so far, before reading it back
    run = Run(covered={p.id for p in purchases}, size=len(purchases))
    run.survivors = await identity.MERGES.survivors(session, (p.subject for p in purchases))
    customers = sorted({run.survivors.get(p.subject, p.subject) for p in purchases})
    run.customers = customers
    run.win_back = await _pending_win_back(session, customers)
    window = timedelta(seconds=settings.attribution_window_seconds)
    times = [p.time for p in purchases]
    run.window = (min(times) - window, max(times))
    run.sent = await _sent(session, customers, *run.window)
    run.journeys = await journey_config.all_effective(session, settings)
    run.baskets = await _baskets(session, customers)
    keys = {f"{THANK_YOU}:{p.source}:{p.data.purchase_id}" for p in purchases}
    run.thanked = await _planned(session, sorted(keys))
    run.uncounted = await _claim_sales(session, purchases)
    skus = sorted({sku for p in purchases for sku in recommendations.items(p.data)})
    run.pairs = await recommendations.pair_counts(session, skus)
    run.sequences = await recommendations.sequence_counts(session, skus)
    session.info[_KEY] = run
    return run


def survivor(run: Run, customer_id: str) -> str | None:
    return run.survivors.get(customer_id)


def covers(run: Run, *, since: datetime, until: datetime) -> bool:
    """Whether the run read the messages sent in [since, until]."""
    return run.window is not None and run.window[0] <= since and until <= run.window[1]


def last_sent(run: Run, customer_id: str, *, since: datetime, until: datetime) -> str | None:
    """The last message sent to the customer in [since, until] (``covers``), as the
    per-purchase query finds it."""
    for sent_at, outreach_id in run.sent.get(customer_id, ()):
        if since <= sent_at <= until:
            return outreach_id
    return None


async def _pending_win_back(session: AsyncSession, customers: list[str]) -> set[str]:
    stmt = select(Outreach.customer_id).where(
        one_of(Outreach.customer_id, customers),
        Outreach.journey == WIN_BACK,
        Outreach.status == PENDING,
    )
    return set((await session.execute(stmt)).scalars())


async def _sent(
    session: AsyncSession, customers: list[str], since: datetime, until: datetime
) -> dict[str, list[tuple[datetime, str]]]:
    stmt = (
        select(Outreach.customer_id, Outreach.sent_at, Outreach.id)
        .where(
            one_of(Outreach.customer_id, customers),
            Outreach.status == SENT,
            Outreach.to_address.is_(None),
            Outreach.sent_at >= since,
            Outreach.sent_at <= until,
        )
        .order_by(Outreach.customer_id, Outreach.sent_at.desc(), Outreach.id.desc())
    )
    found: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for customer_id, sent_at, outreach_id in (await session.execute(stmt)).all():
        assert sent_at is not None  # the query asked for a range of it
        found[customer_id].append((sent_at, outreach_id))
    return dict(found)


async def _planned(session: AsyncSession, keys: list[str]) -> set[str]:
    stmt = select(Outreach.dedupe_key).where(one_of(Outreach.dedupe_key, keys))
    return set((await session.execute(stmt)).scalars())


async def _claim_sales(session: AsyncSession, purchases: list[PurchaseCompleted]) -> set[str]:
    """Record the run's sales as counted; returns those not counted before (each with
    the time of the first purchase naming it, as one by one)."""
    rows = [
        {"purchase_key": recommendations.purchase_key(p), "purchased_at": p.time} for p in purchases
    ]
    return await repository.claim_purchases(session, rows)


async def _baskets(session: AsyncSession, customers: list[str]) -> dict[str, Basket | None]:
    stmt = (
        select(LastBasket.customer_id, LastBasket.purchase_key, LastBasket.skus)
        .add_columns(LastBasket.purchased_at)
        .where(one_of(LastBasket.customer_id, customers))
        .order_by(LastBasket.customer_id)
        .with_for_update()
    )
    baskets: dict[str, Basket | None] = dict.fromkeys(customers)
    for customer_id, key, skus, at in (await session.execute(stmt)).all():
        baskets[customer_id] = (key, list(skus), at)
    return baskets


async def journey(
    session: AsyncSession, event: Event, name: str, settings: EngagementSettings
) -> JourneySettings:
    """A journey's settings: the run's copy for a covered purchase, else read now."""
    run = run_of(session, event)
    if run is not None:
        return run.journeys[name]
    return await journey_config.effective(session, name, settings)
