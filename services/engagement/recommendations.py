"""Product recommendations from the purchase stream: items bought together, and after.

Every purchase adds one to the count of each pair of distinct items in it (both
directions): "often bought together". It also adds one to each (item of the
customer's previous purchase, item of this one) pair: "often bought next". A
customer's recommendations are drawn from the purchases seen before theirs.
Nothing is hard-coded: an empty history recommends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import prefetch
from services.engagement.models import ItemPair, ItemSequence, LastBasket
from shared.db import upsertable_insert
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData

MAX_ITEMS = 20  # pairs grow with the square of a basket's size; large baskets are capped


def _items(data: PurchaseCompletedData) -> dict[str, str | None]:
    items: dict[str, str | None] = {}
    for line in data.lines:
        items.setdefault(line.sku, line.name)
    return dict(list(items.items())[:MAX_ITEMS])


async def record_basket(session: AsyncSession, data: PurchaseCompletedData) -> None:
    items = _items(data)
    pairs = [
        {"sku": a, "other_sku": b, "other_name": items[b], "count": 1}
        for a, b in permutations(items, 2)
    ]
    if pairs:
        await count_pairs(session, pairs)


async def recommend(
    session: AsyncSession, data: PurchaseCompletedData, *, limit: int = 3
) -> list[str]:
    """Names of up to ``limit`` items often bought with this purchase's, not in it."""
    skus = list(_items(data))
    return list(await bought_together(session, skus, limit=limit)) if skus else []


async def count_pairs(session: AsyncSession, pairs: Sequence[dict[str, Any]]) -> None:
    """Add one to each (sku, other_sku) pair's count, creating the pairs not seen yet."""
    stmt = upsertable_insert(session)(ItemPair).values(list(pairs))
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["sku", "other_sku"],
            set_={"count": ItemPair.count + 1, "other_name": stmt.excluded.other_name},
        )
    )


async def bought_together(
    session: AsyncSession, skus: Sequence[str], *, limit: int
) -> Sequence[str]:
    """Names of the items most often bought with any of ``skus``, not among them."""
    total = func.sum(ItemPair.count)
    stmt = (
        select(ItemPair.other_name)
        .where(
            ItemPair.sku.in_(skus),
            ItemPair.other_sku.not_in(skus),
            ItemPair.other_name.is_not(None),
        )
        .group_by(ItemPair.other_sku, ItemPair.other_name)
        .order_by(total.desc(), ItemPair.other_sku)
        .limit(limit)
    )
    return [str(name) for name in (await session.execute(stmt)).scalars()]


async def record_purchase(session: AsyncSession, event: PurchaseCompleted) -> None:
    """Count the purchase into both statistics (after the thank-you drew from them)."""
    await record_basket(session, event.data)
    await record_sequence(session, event)


async def record_sequence(session: AsyncSession, event: PurchaseCompleted) -> None:
    """Link the customer's previous purchase to this one, and remember this one as theirs.

    Only a purchase newer (event time) than the stored one counts and replaces it; a
    late-delivered older purchase changes nothing.
    """
    items = _items(event.data)
    key = f"{event.source}:{event.data.purchase_id}"
    run = prefetch.run_of(session, event)
    if run is not None:
        previous = run.baskets[event.subject]
    else:
        row = await session.get(LastBasket, event.subject, with_for_update=True)
        previous = (row.purchase_key, row.skus, row.purchased_at) if row else None
    if previous is not None and (previous[2] >= event.time or previous[0] == key):
        return
    if previous is not None:
        pairs = [
            {"sku": before, "next_sku": sku, "next_name": name, "count": 1}
            for before in previous[1]
            for sku, name in items.items()
            if sku != before
        ]
        if pairs:
            await _count_sequences(session, pairs)
    stmt = upsertable_insert(session)(LastBasket).values(
        customer_id=event.subject, purchase_key=key, skus=list(items), purchased_at=event.time
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={c: stmt.excluded[c] for c in ("purchase_key", "skus", "purchased_at")},
        )
    )
    if run is not None:
        run.baskets[event.subject] = (key, list(items), event.time)


async def _count_sequences(session: AsyncSession, pairs: Sequence[dict[str, Any]]) -> None:
    stmt = upsertable_insert(session)(ItemSequence).values(list(pairs))
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["sku", "next_sku"],
            set_={"count": ItemSequence.count + 1, "next_name": stmt.excluded.next_name},
        )
    )


async def recommend_after(
    session: AsyncSession, data: PurchaseCompletedData, *, limit: int = 3
) -> list[str]:
    """Names of up to ``limit`` items customers most often bought next after these."""
    skus = list(_items(data))
    if not skus:
        return []
    total = func.sum(ItemSequence.count)
    stmt = (
        select(ItemSequence.next_name)
        .where(
            ItemSequence.sku.in_(skus),
            ItemSequence.next_sku.not_in(skus),
            ItemSequence.next_name.is_not(None),
        )
        .group_by(ItemSequence.next_sku, ItemSequence.next_name)
        .order_by(total.desc(), ItemSequence.next_sku)
        .limit(limit)
    )
    return [str(name) for name in (await session.execute(stmt)).scalars()]
