"""Product recommendations from the purchase stream: items bought together, and after.

Every purchase adds one to the count of each pair of distinct items in it (both
directions): "often bought together". It also adds one to each (item of the
customer's previous purchase, item of this one) pair: "often bought next". A
customer's recommendations are drawn from the purchases seen before theirs.
Nothing is hard-coded: an empty history recommends nothing.

A sale counts once, by ``source:purchase_id`` (``counted_purchases``), not by event id: a
till re-sending it under a new event id, or a replay after the inbox forgot the event
(``INBOX_RETENTION_DAYS``), counts nothing again, whichever journeys are enabled and
however many purchases the customer made since.

A recommendation reads the counts of the purchase's items (one query) and ranks
them here: the names most often bought with (after) any of them, not among them,
ties by the other item's SKU (code point order). In a consumer batch the purchase's
run (``prefetch``) has read the counts of all its purchases' items ahead and keeps
them up to date as each purchase counts in, while the writes are held and written
at commit (``held``): each purchase sees the counts of the purchases before it, as
one by one.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from itertools import permutations
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import held, prefetch, repository
from services.engagement.models import ItemPair, ItemSequence, LastBasket
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.key_lists import one_of

MAX_ITEMS = 20  # pairs grow with the square of a basket's size; large baskets are capped
SKUS_PER_QUERY = 1000

# Counts by item: sku -> other sku -> (count, the other item's name).
Counts = dict[str, dict[str, tuple[int, str | None]]]


def items(data: PurchaseCompletedData) -> dict[str, str | None]:
    """The purchase's distinct items (SKU -> name, the first line's), at most MAX_ITEMS."""
    found: dict[str, str | None] = {}
    for line in data.lines:
        found.setdefault(line.sku, line.name)
    return dict(list(found.items())[:MAX_ITEMS])


async def record_basket(
    session: AsyncSession, data: PurchaseCompletedData, event: Event | None = None
) -> None:
    bought = items(data)
    pairs = [(a, b, bought[b]) for a, b in permutations(bought, 2)]
    if not pairs:
        return
    run = prefetch.run_of(session, event) if event is not None else None
    holding = held.of(session) if run is not None else None
    if run is None or holding is None:
        await count_pairs(
            session, [{"sku": a, "other_sku": b, "other_name": n, "count": 1} for a, b, n in pairs]
        )
        return
    _count(holding.pairs, run.pairs, pairs)


async def count_pairs(session: AsyncSession, pairs: Sequence[dict[str, Any]]) -> None:
    """Add each pair's ``count`` to its stored one, creating the pairs not seen yet."""
    await session.execute(repository.statement(session, "pair"), list(pairs))


def _count(
    held_counts: dict[tuple[str, str], tuple[int, str | None]],
    known: Counts,
    pairs: Iterable[tuple[str, str, str | None]],
) -> None:
    """Add one to each (sku, other, name) held, and to the run's copy where it has the sku."""
    for sku, other, name in pairs:
        count, _ = held_counts.get((sku, other), (0, None))
        held_counts[sku, other] = (count + 1, name)
        row = known.get(sku)
        if row is not None:
            row[other] = (row.get(other, (0, None))[0] + 1, name)


async def recommend(
    session: AsyncSession,
    data: PurchaseCompletedData,
    *,
    limit: int = 3,
    event: Event | None = None,
) -> list[str]:
    """Names of up to ``limit`` items often bought with this purchase's, not in it."""
    return await _ranked(session, data, limit, event, after=False)


async def recommend_after(
    session: AsyncSession,
    data: PurchaseCompletedData,
    *,
    limit: int = 3,
    event: Event | None = None,
) -> list[str]:
    """Names of up to ``limit`` items customers most often bought next after these."""
    return await _ranked(session, data, limit, event, after=True)


async def _ranked(
    session: AsyncSession,
    data: PurchaseCompletedData,
    limit: int,
    event: Event | None,
    *,
    after: bool,
) -> list[str]:
    """``top`` over the pair (or sequence) counts of the purchase's items: the run's copy
    inside a consumer batch, else read now."""
    skus = list(items(data))
    if not skus:
        return []
    run = prefetch.run_of(session, event) if event is not None else None
    if run is not None:
        counts = run.sequences if after else run.pairs
    else:
        counts = await (sequence_counts if after else pair_counts)(session, skus)
    return top(counts, skus, limit=limit)


def top(counts: Mapping[str, Mapping[str, tuple[int, str | None]]], skus: Sequence[str], *,
        limit: int) -> list[str]:  # fmt: skip
    """The names most often counted with any of ``skus`` (summed per other item and
    name), not among them and named; ties by the other item's SKU, then name."""
    among = set(skus)
    totals: dict[tuple[str, str], int] = {}
    for sku in among:
        for other, (count, name) in counts.get(sku, {}).items():
            if name is not None and other not in among:
                totals[other, name] = totals.get((other, name), 0) + count
    best = heapq.nsmallest(limit, totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for (_, name), _ in best]


async def pair_counts(session: AsyncSession, skus: Sequence[str]) -> Counts:
    """The stored "bought together" counts of ``skus`` (every one of them a key)."""
    t = ItemPair.__table__.c
    return await _counts(session, skus, select(t.sku, t.other_sku, t["count"], t.other_name))


async def sequence_counts(session: AsyncSession, skus: Sequence[str]) -> Counts:
    """The stored "bought after" counts of ``skus`` (every one of them a key)."""
    t = ItemSequence.__table__.c
    return await _counts(session, skus, select(t.sku, t.next_sku, t["count"], t.next_name))


async def _counts(session: AsyncSession, skus: Sequence[str], stmt: Any) -> Counts:
    found: Counts = {sku: {} for sku in skus}
    sku_column = stmt.selected_columns[0]
    for start in range(0, len(skus), SKUS_PER_QUERY):
        chunk = skus[start : start + SKUS_PER_QUERY]
        for sku, other, count, name in await session.execute(stmt.where(one_of(sku_column, chunk))):
            found[sku][other] = (count, name)
    return found


def purchase_key(event: PurchaseCompleted) -> str:
    """The sale, scoped by its source: the same for a re-send under a new event id."""
    return f"{event.source}:{event.data.purchase_id}"


async def record_purchase(session: AsyncSession, event: PurchaseCompleted) -> None:
    """Count the purchase into both statistics (after the thank-you drew from them), once
    per sale: a sale counted already (``first_count``) changes nothing."""
    if not await first_count(session, event):
        return
    await record_basket(session, event.data, event)
    await record_sequence(session, event)


async def first_count(session: AsyncSession, event: PurchaseCompleted) -> bool:
    """Remember the sale as counted; False if it was counted before (another event id).

    In a run the run claimed its sales' keys when it read ahead (``prefetch``): the
    first purchase naming a key it got counts the sale. Else the key is claimed now.
    Either way the claim decides (``repository.claim_purchases``, ``shared.claims``): a
    key another open transaction claimed waits for its outcome.
    """
    key = purchase_key(event)
    run = prefetch.run_of(session, event)
    if run is None:
        return await repository.count_purchase(
            session, {"purchase_key": key, "purchased_at": event.time}
        )
    if key not in run.uncounted:
        return False
    run.uncounted.discard(key)
    return True


async def record_sequence(session: AsyncSession, event: PurchaseCompleted) -> None:
    """Link the customer's previous purchase to this one, and remember this one as theirs.

    Only a purchase newer (event time) than the stored one counts and replaces it; a
    late-delivered older purchase changes nothing.
    """
    bought = items(event.data)
    key = purchase_key(event)
    run = prefetch.run_of(session, event)
    if run is not None:
        previous = run.baskets[event.subject]
    else:
        row = await session.get(LastBasket, event.subject, with_for_update=True)
        previous = (row.purchase_key, row.skus, row.purchased_at) if row else None
    if previous is not None and (previous[2] >= event.time or previous[0] == key):
        return
    holding = held.of(session) if run is not None else None
    if previous is not None:
        pairs = [
            (before, sku, name) for before in previous[1] for sku, name in bought.items()
            if sku != before
        ]  # fmt: skip
        if holding is not None and run is not None:
            _count(holding.sequences, run.sequences, pairs)
        elif pairs:
            await session.execute(
                repository.statement(session, "sequence"),
                [{"sku": a, "next_sku": b, "next_name": n, "count": 1} for a, b, n in pairs],
            )
    basket = {
        "customer_id": event.subject,
        "purchase_key": key,
        "skus": list(bought),
        "purchased_at": event.time,
    }
    if holding is not None:
        holding.baskets[event.subject] = basket
    else:
        await session.execute(repository.statement(session, "basket"), basket)
    if run is not None:
        run.baskets[event.subject] = (key, list(bought), event.time)
