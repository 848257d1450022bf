"""Product recommendations from the purchase stream: items often bought together.

Every purchase adds one to the count of each pair of distinct items in it (both
directions). A customer's recommendations are the items most often bought with
what they just bought, drawn from the purchases seen before theirs. Nothing is
hard-coded: an empty history recommends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import ItemPair
from shared.db import upsertable_insert
from shared.events.commerce import PurchaseCompletedData

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
