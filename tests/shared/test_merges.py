"""shared.merges: in a consumer batch the survivors are read once, and a merge, an undo or
an erasure earlier in the same batch is seen by the events after it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from shared.consumer import Handlers
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.profile import (
    CustomerErased,
    CustomerMerged,
    CustomerUnmerged,
)
from shared.merges import Merges, merged_customers_table
from tests.helpers import (
    batch_items,
    batch_runner,
    erased_event,
    merged_event,
    purchase,
    unmerged_event,
)
from tests.shared.statements import counting

pytestmark = pytest.mark.db

metadata = MetaData()
MERGES = Merges(merged_customers_table(metadata))
AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
async def merges_db(db: Database) -> Database:
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db


def _handlers(seen: list[tuple[str, str]]) -> Handlers:
    """Purchases noted as (purchase id, the customer they act for); identity events kept
    in the merges table."""

    async def bought(session: AsyncSession, event: PurchaseCompleted) -> None:
        seen.append((event.data.purchase_id, event.subject))

    async def merged(session: AsyncSession, event: CustomerMerged) -> None:
        await MERGES.record(session, old=event.data.merged_id, new=event.subject, at=AT)

    async def unmerged(session: AsyncSession, event: CustomerUnmerged) -> None:
        await MERGES.forget(session, event.data.restored_id)

    async def erased(session: AsyncSession, event: CustomerErased) -> None:
        await MERGES.forget_everywhere(session, event.subject)

    return {
        PurchaseCompleted: MERGES.for_survivor(bought),
        CustomerMerged: merged,
        CustomerUnmerged: unmerged,
        CustomerErased: erased,
    }


def _history() -> list[Event]:
    return [
        purchase("c-old", purchase_id="p1"),
        merged_event("c-b", "c-old"),
        purchase("c-old", purchase_id="p2"),  # now c-b's
        purchase("c-a", purchase_id="p3"),
        merged_event("c-a", "c-b"),  # c-old follows c-b into c-a
        purchase("c-old", purchase_id="p4"),
        purchase("c-b", purchase_id="p5"),
        unmerged_event("c-a", "c-b"),
        purchase("c-b", purchase_id="p6"),  # c-b again
        purchase("c-old", purchase_id="p7"),  # still c-a's: the chain was kept flat
        erased_event("c-a"),
        purchase("c-old", purchase_id="p8"),  # no merge names c-old any more
    ]


EXPECTED = [
    ("p1", "c-old"),
    ("p2", "c-b"),
    ("p3", "c-a"),
    ("p4", "c-a"),
    ("p5", "c-a"),
    ("p6", "c-b"),
    ("p7", "c-a"),
    ("p8", "c-old"),
]


async def test_a_batch_sees_each_change_to_the_merges_as_one_by_one_does(
    merges_db: Database,
) -> None:
    batched: list[tuple[str, str]] = []
    await batch_runner(merges_db, _handlers(batched))._apply_batch(batch_items(_history()))
    assert batched == EXPECTED


async def test_one_by_one_each_event_asks_for_itself(merges_db: Database) -> None:
    alone: list[tuple[str, str]] = []
    runner = batch_runner(merges_db, _handlers(alone))
    for event in _history():
        await runner._apply_batch(batch_items([event]))
    assert alone == EXPECTED


async def test_a_batch_reads_the_survivors_once_until_the_merges_change(
    merges_db: Database,
) -> None:
    seen: list[tuple[str, str]] = []
    runner = batch_runner(merges_db, _handlers(seen))
    await runner._apply_batch(batch_items([merged_event("c-b", "c-old")]))
    purchases = [purchase(f"c-{i % 7}", purchase_id=f"q{i}") for i in range(30)]
    with counting(merges_db) as statements:
        await runner._apply_batch(batch_items([purchase("c-old", purchase_id="q-old"), *purchases]))
    assert len(statements.on("merged_customers")) == 1
    assert seen[0] == ("q-old", "c-b")
    assert len(seen) == 31

    # a merge in the batch: one read before it, one after
    seen.clear()
    later = [purchase(f"c-{i % 7}", purchase_id=f"r{i}") for i in range(10)]
    with counting(merges_db) as statements:
        await runner._apply_batch(batch_items([*later[:5], merged_event("c-1", "c-2"), *later[5:]]))
    reads = [
        s for s in statements.on("merged_customers") if s.lstrip().upper().startswith("SELECT")
    ]
    assert len(reads) == 2
    assert ("r9", "c-1") in seen  # c-2's purchase after the merge
    assert ("r2", "c-2") in seen  # and before it, its own


async def test_a_read_ahead_over_the_batch_answers_from_the_same_read(
    merges_db: Database,
) -> None:
    """``survivors`` for ids of the batch's subjects (a run's read-ahead) asks nothing more;
    for an id outside the batch it asks the table."""
    answers: list[dict[str, str]] = []

    async def read_ahead(session: AsyncSession, event: PurchaseCompleted) -> None:
        answers.append(await MERGES.survivors(session, [event.subject, "c-old"]))
        answers.append(await MERGES.survivors(session, ["c-elsewhere"]))

    runner = batch_runner(merges_db, _handlers([]))
    await runner._apply_batch(batch_items([merged_event("c-b", "c-old")]))
    purchases = [purchase("c-old", purchase_id="s0"), purchase("c-1", purchase_id="s1")]
    ahead = batch_runner(merges_db, {PurchaseCompleted: read_ahead})
    with counting(merges_db) as statements:
        await ahead._apply_batch(batch_items(purchases))
    assert answers == [{"c-old": "c-b"}, {}, {"c-old": "c-b"}, {}]
    # one read of the batch's subjects, one for each question about c-elsewhere
    assert len(statements.on("merged_customers")) == 3


async def test_named_tells_the_id_an_event_named_before_it_acted_for_its_survivor(
    merges_db: Database,
) -> None:
    """A service that keeps where a row came from (so an undone merge can give it back)
    asks ``named``: the id the till sent, whichever customer the event now acts for."""
    seen: list[tuple[str, str, str]] = []

    async def bought(session: AsyncSession, event: PurchaseCompleted) -> None:
        seen.append((event.data.purchase_id, event.subject, MERGES.named(session, event)))

    handlers: Handlers = {**_handlers([]), PurchaseCompleted: MERGES.for_survivor(bought)}
    history = _history()
    await batch_runner(merges_db, handlers)._apply_batch(batch_items(history))
    sent = [e.subject for e in history if isinstance(e, PurchaseCompleted)]
    assert seen == [(p, c, named) for (p, c), named in zip(EXPECTED, sent, strict=True)]
    assert ("p4", "c-a", "c-old") in seen  # acted for c-a, named c-old
