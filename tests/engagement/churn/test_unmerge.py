"""An undone merge gives the restored customer its churn history back (``service.unmerge``):
the purchases, refunds and complaints it brought to the survivor, and those that named it
while it was merged; both customers end as if the merge had never happened."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Table, select

from services.engagement.churn import fitting
from services.engagement.churn.models import (
    ChurnComplaint,
    ChurnCustomer,
    ChurnCustomerMonth,
    ChurnPurchase,
    ChurnRefund,
)
from shared.db import Database
from shared.events import Event
from shared.events.profile import CustomerUnmerged, CustomerUnmergedData
from tests.engagement.churn.support import (
    CONFIG,
    Clock,
    at,
    bought,
    customers,
    fields,
    on_fixed_clock,
    population_events,
    refunded,
)
from tests.engagement.churn.support import handle as handle_churn
from tests.engagement.churn.test_scores import complaint
from tests.engagement.churn.test_statistics import D0
from tests.engagement.churn.test_statistics import STATS as PURCHASE_STATS
from tests.engagement.support import handle, settings
from tests.engagement.test_identity import erased, merged
from tests.engagement.test_prefetch import _in_one_batch

pytestmark = pytest.mark.db

# the statistics the purchase tests check, and what else a customer's history decides
STATS = (*PURCHASE_STATS, "currency", "gap_p90_days", "open_complaints")
ORIGIN_TABLES = (ChurnPurchase, ChurnRefund, ChurnComplaint)


def unmerged(survivor: str, restored: str) -> CustomerUnmerged:
    data = CustomerUnmergedData(merge_id="m-1", restored_id=restored)
    return CustomerUnmerged.create(subject=survivor, source="keepwell/profile", data=data)


def keeps(c: str) -> list[Event]:
    """The survivor's own history (ids prefixed by ``c`` so a reference can repeat it)."""
    return [
        bought(c, D0, "10.00", purchase_id=f"{c}:p1"),
        bought(c, D0 + timedelta(days=20), "30.00", purchase_id=f"{c}:p2"),
        complaint(c, D0 + timedelta(days=21), resolved=False, case_id=f"{c}:k"),
    ]


def before_merge(c: str) -> list[Event]:
    """The absorbed customer's history before the merge: a refund, an open complaint."""
    return [
        bought(c, D0 + timedelta(days=4), "20.00", purchase_id=f"{c}:p1"),
        bought(c, D0 + timedelta(days=12), "25.00", purchase_id=f"{c}:p2"),
        refunded(c, f"{c}:p2", "5.00", D0 + timedelta(days=13)),
        complaint(c, D0 + timedelta(days=13), resolved=False, case_id=f"{c}:k"),
    ]


def naming_it_after(c: str) -> list[Event]:
    """Events that still name the absorbed id after the merge (a till that knows it): a
    purchase, a refund of one of its purchases, a refund arriving before its purchase,
    and its complaint resolved."""
    return [
        bought(c, D0 + timedelta(days=40), "15.00", purchase_id=f"{c}:p3"),
        refunded(c, f"{c}:p1", "3.00", D0 + timedelta(days=41)),
        refunded(c, f"{c}:p4", "2.00", D0 + timedelta(days=42)),
        complaint(c, D0 + timedelta(days=43), resolved=True, case_id=f"{c}:k"),
    ]


def later_of_survivor(c: str) -> list[Event]:
    return [bought(c, D0 + timedelta(days=45), "12.00", purchase_id=f"{c}:p3")]


async def _rows(db: Database, model: type[Any], customer_id: str) -> list[tuple[Any, ...]]:
    table: Table = model.__table__
    async with db.unit_of_work() as session:
        found = await session.execute(select(table).where(table.c.customer_id == customer_id))
        return sorted(tuple(r) for r in found)


async def _months(db: Database, customer_id: str) -> list[tuple[Any, ...]]:
    return [r[1:] for r in await _rows(db, ChurnCustomerMonth, customer_id)]


async def _origins(
    db: Database, models: tuple[type[Any], ...] = ORIGIN_TABLES
) -> dict[str, tuple[str, str | None]]:
    """Row key -> (customer_id, origin_id), over tables that keep an origin."""
    found: dict[str, tuple[str, str | None]] = {}
    async with db.unit_of_work() as session:
        for model in models:
            table: Table = model.__table__
            key = table.primary_key.columns.values()[0]
            for row in await session.execute(select(key, table.c.customer_id, table.c.origin_id)):
                found[row[0]] = (row[1], row[2])
    return found


async def _purchase_origins(db: Database) -> dict[str, tuple[str, str | None]]:
    """Of the purchases of "keep" and "gone" (the references' are under other ids)."""
    found = await _origins(db, (ChurnPurchase,))
    return {k: v for k, v in found.items() if v[0] in ("keep", "gone")}


async def _snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    async with db.unit_of_work() as session:
        return {
            model.__tablename__: sorted(
                (tuple(r) for r in await session.execute(select(model.__table__))), key=repr
            )
            for model in (*ORIGIN_TABLES, ChurnCustomer, ChurnCustomerMonth)
        }


async def _assert_as_never_merged(db: Database, pairs: dict[str, str]) -> None:
    """Each customer's statistics and buying months equal its reference's, which lived the
    same history under its own id, never merged."""
    rows = await customers(db)
    for mine, reference in pairs.items():
        assert fields(rows[mine], *STATS) == fields(rows[reference], *STATS), mine
        assert await _months(db, mine) == await _months(db, reference), mine


async def test_an_undone_merge_gives_the_restored_customer_its_history_back(
    db: Database,
) -> None:
    config = settings()
    reference = [*keeps("ref-keep"), *before_merge("ref-gone"), *naming_it_after("ref-gone")]
    await handle(db, *reference, *later_of_survivor("ref-keep"), config=config)

    await handle(db, *keeps("keep"), *before_merge("gone"), config=config)
    await handle(db, merged("keep", "gone"), *naming_it_after("gone"), config=config)
    await handle(db, *later_of_survivor("keep"), config=config)
    rows = await customers(db)
    assert "gone" not in rows
    assert rows["keep"].purchase_days == 6  # two, two moved, one naming "gone", one more
    assert rows["keep"].open_complaints == 1  # "gone"'s was resolved under its old id
    origins = await _origins(db)
    named_gone = [v for v in origins.values() if v == ("keep", "gone")]
    # gone's 3 purchases and its complaint, its refund before the merge and the two after
    assert len(named_gone) == 3 + 1 + 3
    assert all(v == ("keep", None) for k, v in origins.items() if k.startswith("keep:"))

    await handle(db, unmerged("keep", "gone"), config=config)
    await _assert_as_never_merged(db, {"keep": "ref-keep", "gone": "ref-gone"})
    origins = await _origins(db)
    assert all(origin is None for _, origin in origins.values())
    assert {c for k, (c, _) in origins.items() if k.startswith("gone:")} == {"gone"}
    assert len(await _rows(db, ChurnRefund, "gone")) == 3
    assert await _rows(db, ChurnRefund, "keep") == []

    before = await _snapshot(db)
    await handle(db, unmerged("keep", "gone"), config=config)  # delivered again
    assert await _snapshot(db) == before


async def test_a_batch_keeps_where_its_purchases_came_from(db: Database) -> None:
    """Through the runner's batch (the churn read-ahead records a run of purchases): the
    merge, purchases naming the absorbed id and the undo in batches of their own and in
    one batch end as a history never merged, handled one event at a time, ends."""
    config = settings()
    reference = [*keeps("ref-keep"), *before_merge("ref-gone"), *naming_it_after("ref-gone")]
    await handle(db, *reference, bought("ref-gone", D0 + timedelta(days=50), "9.00"))
    after = [*naming_it_after("gone"), bought("gone", D0 + timedelta(days=50), "9.00")]
    await _in_one_batch(db, [*keeps("keep"), *before_merge("gone")], config)
    await _in_one_batch(db, [merged("keep", "gone"), *after], config)
    assert await _purchase_origins(db) == {
        **{f"keep:p{n}": ("keep", None) for n in (1, 2)},
        **{f"gone:p{n}": ("keep", "gone") for n in (1, 2, 3)},
        after[-1].data.purchase_id: ("keep", "gone"),
    }
    await _in_one_batch(db, [unmerged("keep", "gone")], config)
    assert await _purchase_origins(db) == {
        **{f"keep:p{n}": ("keep", None) for n in (1, 2)},
        **{f"gone:p{n}": ("gone", None) for n in (1, 2, 3)},
        after[-1].data.purchase_id: ("gone", None),
    }

    # all of it in one batch, for other ids: the same end
    mine = [*keeps("b-keep"), *before_merge("b-gone"), merged("b-keep", "b-gone")]
    mine += [*naming_it_after("b-gone"), bought("b-gone", D0 + timedelta(days=50), "9.00")]
    await _in_one_batch(db, [*mine, unmerged("b-keep", "b-gone")], config)
    await _assert_as_never_merged(
        db, {"keep": "ref-keep", "gone": "ref-gone", "b-keep": "ref-keep", "b-gone": "ref-gone"}
    )


async def test_an_undo_in_a_chain_gives_back_only_the_restored_customers_own(
    db: Database,
) -> None:
    """a -> b, then b -> c; undoing b's merge gives b its own history, and a's stays with c
    (chains are not unwound, as in profile)."""
    config = settings()
    await handle(db, *(bought(c, D0 + timedelta(days=i), "10.00") for i, c in enumerate("abc")))
    await handle(db, merged("b", "a"), merged("c", "b"), config=config)
    assert set(await customers(db)) == {"c"}
    await handle(db, unmerged("c", "b"), config=config)
    rows = await customers(db)
    assert (rows["b"].purchase_days, rows["b"].first_day) == (1, D0 + timedelta(days=1))
    assert (rows["c"].purchase_days, rows["c"].first_day) == (2, D0)
    origins = await _origins(db, (ChurnPurchase,))
    assert {origin for customer_id, origin in origins.values() if customer_id == "c"} == {
        None,
        "a",
    }


async def test_an_erasure_of_the_absorbed_id_forgets_where_rows_came_from(
    db: Database,
) -> None:
    config = settings()
    await handle(db, *keeps("keep"), *before_merge("gone"), config=config)
    await handle(db, merged("keep", "gone"), config=config)
    await handle(db, erased("gone"), config=config)
    assert {origin for _, origin in (await _origins(db)).values()} == {None}
    before = await _snapshot(db)
    await handle(db, unmerged("keep", "gone"), config=config)  # nothing names it any more
    assert await _snapshot(db) == before


NOW = at(D0 + timedelta(days=70))


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    on_fixed_clock(monkeypatch, NOW)


@pytest.mark.usefixtures("fixed_clock")
async def test_with_a_model_both_customers_are_scored_as_if_never_merged(db: Database) -> None:
    population = population_events(40, start=D0 - timedelta(days=200))
    await handle_churn(db, *population, clock=Clock(NOW), batch=50)
    async with db.unit_of_work() as session:
        await fitting.refit(session, calibration_end=D0, config=CONFIG)
    config = settings()
    reference = [*keeps("ref-keep"), *before_merge("ref-gone"), *naming_it_after("ref-gone")]
    await handle(db, *reference, *later_of_survivor("ref-keep"), config=config)
    mine = [*keeps("keep"), *before_merge("gone"), merged("keep", "gone")]
    mine += [*naming_it_after("gone"), *later_of_survivor("keep")]
    await handle(db, *mine, config=config)
    merged_clv = (await customers(db))["keep"].clv
    await handle(db, unmerged("keep", "gone"), config=config)
    await _assert_as_never_merged(db, {"keep": "ref-keep", "gone": "ref-gone"})
    rows = await customers(db)
    scored = ("band", "risk", "reasons", "p_alive", "expected_purchases", "clv", "scored_at")
    for mine_id, reference_id in (("keep", "ref-keep"), ("gone", "ref-gone")):
        assert rows[mine_id].band is not None
        assert fields(rows[mine_id], *scored) == fields(rows[reference_id], *scored)
    assert rows["keep"].clv != merged_clv  # the merged history had been valued as one
