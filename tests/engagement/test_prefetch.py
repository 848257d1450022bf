"""A consumer batch of purchases reads ahead (``prefetch``) and holds its writes until
commit (``held``), and ends where one-by-one handling ends: the same messages, exits,
attributions, recommendations and their counts, contacts and consents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

from services.engagement.churn import consumers as churn_consumers
from services.engagement.config import EngagementSettings
from services.engagement.consumers import handlers
from services.engagement.main import MIGRATIONS
from services.engagement.models import (
    Consent,
    Contact,
    Conversion,
    CountedPurchase,
    ItemPair,
    ItemSequence,
    LastBasket,
    Outreach,
)
from services.engagement.service import OUTREACH_FLAG
from shared.db import Database
from shared.events import Event
from shared.events.profile import CustomerUpdated
from shared.migrations import upgrade_async
from shared.plumbing import processed_events
from tests.conftest import DatabaseFactory
from tests.engagement.support import customer, handle, now, published, purchase, settings
from tests.engagement.test_identity import erased, merged
from tests.engagement.test_journeys import risk
from tests.engagement.test_policy import consent
from tests.helpers import batch_items, batch_runner
from tests.shared.statements import counting

pytestmark = pytest.mark.db


@pytest.fixture
async def twin(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    """A second engagement database, for the one-by-one reference run."""
    url = await database_url("engagement_twin")
    await upgrade_async(MIGRATIONS, url)
    database = Database(url)
    yield database
    await database.dispose()


async def _in_one_batch(db: Database, events: list[Event], config: EngagementSettings) -> None:
    assert await batch_runner(db, handlers(config))._apply_batch(batch_items(events))


def _history() -> list[Event]:
    """Customers, a merge, a pending win-back, and a purchase whose thank-you was sent."""
    return [
        customer("c-a", email="a@example.com"),
        customer("c-b", email="b@example.com"),
        customer("c-c", email="c@example.com"),
        merged("c-c", "c-old"),
        risk("c-a", "high"),
        purchase("c-b", purchase_id="setup-b", items=("Green tea",)),
    ]


async def _setup(db: Database, history: list[Event], config: EngagementSettings) -> None:
    await handle(db, *history, config=config)
    async with db.unit_of_work() as session:
        await session.execute(
            update(Outreach)
            .where(Outreach.dedupe_key.like("thank_you:%setup-b"))
            .values(status="sent", sent_at=now() - timedelta(days=2), recipient="b@example.com")
        )


async def _state(db: Database) -> dict[str, Any]:
    async with db.unit_of_work() as session:
        outreach = (await session.execute(select(Outreach))).scalars().all()
        keys = {o.id: o.dedupe_key for o in outreach}
        conversions = (await session.execute(select(Conversion))).scalars().all()
        pairs = (await session.execute(select(ItemPair))).scalars().all()
        sequences = (await session.execute(select(ItemSequence))).scalars().all()
        baskets = (await session.execute(select(LastBasket))).scalars().all()
        contacts = (await session.execute(select(Contact))).scalars().all()
        consents = (await session.execute(select(Consent))).scalars().all()
    return {
        "outreach": sorted(
            (o.dedupe_key, o.customer_id, o.journey, o.status, o.last_error, str(o.context))
            for o in outreach
        ),
        "conversions": sorted((c.purchase_key, keys[c.outreach_id]) for c in conversions),
        "pairs": sorted((p.sku, p.other_sku, p.count) for p in pairs),
        "sequences": sorted((s.sku, s.next_sku, s.count) for s in sequences),
        "baskets": sorted((b.customer_id, b.purchase_key, tuple(b.skus)) for b in baskets),
        "published": sorted(e.type for e in await published(db)),
        "contacts": sorted(
            (c.customer_id, c.name, c.email, c.language, c.updated_at) for c in contacts
        ),
        "consents": sorted((c.customer_id, c.channel, c.status, c.changed_at) for c in consents),
    }


async def test_a_batch_of_purchases_ends_as_one_by_one_handling_does(
    db: Database, twin: Database
) -> None:
    config = settings()
    history = _history()
    await _setup(db, history, config)
    await _setup(twin, history, config)
    t0 = now() - timedelta(hours=1)
    first = purchase("c-a", purchase_id="p-1", items=("Green tea", "Lotus cake"), when=t0)
    events: list[Event] = [
        first,
        purchase("c-b", purchase_id="p-2", items=("Lotus cake", "Jasmine"), when=t0),
        # the same customer again, later, with other items: "bought after" links them
        purchase("c-a", purchase_id="p-3", items=("Jasmine",), when=t0 + timedelta(minutes=5)),
        first,  # the same event delivered twice
        # a till re-sending the same sale under a new event id
        purchase("c-a", purchase_id="p-1", items=("Green tea", "Lotus cake"), when=t0),
        purchase("c-old", purchase_id="p-4", items=("Green tea",), when=t0),  # merged away
        # an older purchase arriving late changes no basket
        purchase("c-b", purchase_id="p-5", items=("Oolong",), when=t0 - timedelta(days=1)),
        customer("c-a", email="a2@example.com", update=True),  # another kind ends the run
        purchase("c-a", purchase_id="p-6", items=("Oolong",), when=t0 + timedelta(minutes=9)),
    ]
    await _in_one_batch(db, events, config)
    # the reference: every event alone, no read-ahead, the duplicate delivery left out
    await handle(twin, *[e for i, e in enumerate(events) if i != 3], config=config)
    batched, alone = await _state(db), await _state(twin)
    assert batched == alone
    # and what both say, spelled out
    thanked = [k for k, *_ in batched["outreach"] if k.startswith("thank_you:")]
    assert sorted(thanked) == sorted(
        f"thank_you:/pos/store-7:{p}" for p in ("setup-b", "p-1", "p-2", "p-3", "p-4", "p-5", "p-6")
    )
    customers = {k: c for k, c, *_ in batched["outreach"]}
    assert customers["thank_you:/pos/store-7:p-4"] == "c-c"
    [win_back] = [o for o in batched["outreach"] if o[2] == "win_back"]
    assert (win_back[3], win_back[4]) == (
        "suppressed",
        "exit: the customer purchased before it was due",
    )
    assert batched["published"].count("outreach.suppressed") == 1
    # both purchases of c-b came within a week after the message it was sent
    assert batched["conversions"] == [
        ("/pos/store-7:p-2", "thank_you:/pos/store-7:setup-b"),
        ("/pos/store-7:p-5", "thank_you:/pos/store-7:setup-b"),
    ]
    assert ("c-a", "/pos/store-7:p-6", ("sku-oolong",)) in batched["baskets"]


async def test_a_run_asks_once_for_what_each_purchase_used_to_ask(db: Database) -> None:
    config = settings()
    people = [customer(f"c-{n}", email=f"c{n}@example.com") for n in range(20)]
    await _in_one_batch(db, list(people), config)
    statements = await _statements_of_a_batch(db, [purchase(f"c-{n}") for n in range(20)], config)
    for table in ("MERGED_CUSTOMERS", "JOURNEY_CONFIGS"):
        assert sum(f"FROM {table}" in s for s in statements) == 1, table
    assert sum(s.startswith("SELECT") and "FROM LAST_BASKETS" in s for s in statements) == 1
    assert not [s for s in statements if s.startswith("UPDATE OUTREACH")]  # no win-back waits
    # the run's writes are held and written once: one statement per table
    for table in ("OUTREACH", "ITEM_PAIRS", "LAST_BASKETS"):
        assert sum(s.startswith(f"INSERT INTO {table} ") for s in statements) == 1, table
    for table in ("ITEM_PAIRS", "ITEM_SEQUENCES"):
        assert sum(s.startswith("SELECT") and f"FROM {table}" in s for s in statements) == 1


async def test_contact_details_in_a_batch_end_as_one_by_one(db: Database, twin: Database) -> None:
    """Held contact and consent upserts: the newest event wins (the later of two equally
    new ones), an older one arriving late changes nothing, and a merge or an erasure in
    the middle of the batch sees what the events before it wrote."""
    config = settings()
    t0 = now() - timedelta(hours=2)
    minutes = [t0 + timedelta(minutes=m) for m in range(10)]
    events: list[Event] = [
        customer("c-a", email="a1@example.com", when=minutes[0],
                 consents={"email": "opt_in", "sms": "opt_in"}),
        customer("c-a", email="a3@example.com", when=minutes[3], update=True,
                 consents={"email": "opt_in"}),
        # older, delivered late: neither the address nor the consent changes
        customer("c-a", email="a2@example.com", when=minutes[2], update=True,
                 consents={"email": "opt_out"}),
        consent("c-a", "opt_out", at=minutes[4]),  # newer than every statement above
        consent("c-a", "opt_in", at=minutes[1]),  # older: ignored
        customer("c-b", name="B1", email="b@example.com", when=minutes[1]),
        customer("c-b", name="B2", email="b@example.com", when=minutes[1], update=True),
        customer("c-c", email="c@example.com", when=minutes[1], consents={"email": "opt_in"}),
        purchase("c-a", purchase_id="p-1", items=("Green tea", "Lotus cake"), when=t0),
        purchase("c-b", purchase_id="p-2", items=("Green tea", "Jasmine"), when=t0),
        merged("c-a", "c-b"),  # reads both contacts and consents back
        erased("c-c"),  # deletes what the batch wrote for c-c before it
        customer("c-b", name="B3", email="b3@example.com", when=minutes[5], update=True,
                 consents={"sms": "opt_out"}),
        consent("c-b", "opt_in", at=minutes[6]),  # c-b is c-a's now
        purchase("c-b", purchase_id="p-3", items=("Jasmine", "Oolong"), when=t0),
        customer("c-d", email="d@example.com", when=minutes[7]),
    ]  # fmt: skip
    await _in_one_batch(db, events, config)
    await handle(twin, *events, config=config)
    batched, alone = await _state(db), await _state(twin)
    assert batched == alone
    contacts = {c: (name, email) for c, name, email, *_ in batched["contacts"]}
    assert contacts == {
        "c-a": ("Lan", "a3@example.com"),
        "c-b": ("B3", "b3@example.com"),  # written again after the merge
        "c-d": ("Lan", "d@example.com"),
    }
    consents = {(c, channel): status for c, channel, status, _ in batched["consents"]}
    assert consents == {
        ("c-a", "email"): "opt_in",  # c-b's statement after the merge, newest of all
        ("c-a", "sms"): "opt_in",
        ("c-b", "sms"): "opt_out",
    }
    assert len(batched["outreach"]) == 3
    # p-3 (now c-a's) saw the pair counts of p-1 and p-2 from the same batch
    [p3] = [context for key, *_, context in batched["outreach"] if key.endswith(":p-3")]
    assert "'recommendations': ['Green tea']" in p3


async def test_thank_yous_in_batches_are_planned_once_and_wake_the_sender(
    db: Database, twin: Database
) -> None:
    config = settings()
    wakes: list[str] = []
    db.on_commit(lambda: wakes.append("woken"), when=OUTREACH_FLAG)
    t0 = now() - timedelta(hours=1)
    first: list[Event] = [
        purchase("c-a", purchase_id="p-1", items=("Green tea", "Lotus cake"), when=t0),
        purchase("c-b", purchase_id="p-2", items=("Lotus cake",), when=t0),
    ]
    again: list[Event] = [
        # the same sales re-sent under new event ids, in a later batch
        purchase("c-a", purchase_id="p-1", items=("Green tea", "Lotus cake"), when=t0),
        purchase("c-b", purchase_id="p-2", items=("Lotus cake",), when=t0),
    ]
    later: list[Event] = [
        purchase("c-a", purchase_id="p-3", items=("Oolong",), when=t0 + timedelta(minutes=1)),
        # a replay of history: recorded as suppressed (and published) rather than thanked
        purchase("c-b", purchase_id="p-4", items=("Oolong",), when=t0 - timedelta(days=30)),
        purchase("c-b", purchase_id="p-4", items=("Oolong",), when=t0 - timedelta(days=30)),
        purchase("c-a", purchase_id="p-3", items=("Oolong",), when=t0 + timedelta(minutes=1)),
    ]
    await _in_one_batch(db, first, config)
    assert wakes == ["woken"]
    await _in_one_batch(db, again, config)
    assert wakes == ["woken"]  # nothing planned, nothing to wake for
    await _in_one_batch(db, later, config)
    assert wakes == ["woken", "woken"]
    await handle(twin, *first, *again, *later, config=config)
    batched, alone = await _state(db), await _state(twin)
    assert batched == alone
    assert [(k, status) for k, _, _, status, *_ in batched["outreach"]] == [
        ("thank_you:/pos/store-7:p-1", "pending"),
        ("thank_you:/pos/store-7:p-2", "pending"),
        ("thank_you:/pos/store-7:p-3", "pending"),
        ("thank_you:/pos/store-7:p-4", "suppressed"),
    ]
    assert batched["published"] == ["outreach.suppressed"]


def _sale(customer_id: str, purchase_id: str, items: tuple[str, ...], when: Any) -> Event:
    """A sale as a till sends it: each call is a new event (a new id) for the same sale."""
    return purchase(customer_id, purchase_id=purchase_id, items=items, when=when)


def _counts(rows: list[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    return {(a, b): count for a, b, count in rows}


@pytest.mark.parametrize("thank_you", [True, False], ids=["thank-you-on", "thank-you-off"])
async def test_a_sale_re_sent_under_a_new_event_id_counts_once(
    db: Database, twin: Database, thank_you: bool
) -> None:
    """In the same poll, in a later poll, and after the customer bought again in between:
    the pairs and sequences count the sale once (by source and purchase id), whether or not
    the thank-you journey (which is keyed by the sale too) is enabled; batched as one by
    one."""
    config = settings(thank_you_enabled=thank_you)
    t0 = now() - timedelta(hours=1)
    tea_cake = ("Green tea", "Lotus cake")
    polls: list[list[Event]] = [
        [
            _sale("c-a", "p-1", tea_cake, t0),
            _sale("c-a", "p-1", tea_cake, t0),  # re-sent within the same poll
            _sale("c-b", "p-2", ("Jasmine", "Oolong"), t0),
        ],
        # re-sent in a later poll; c-b's is no longer the last basket (p-3 is newer)
        [
            _sale("c-a", "p-1", tea_cake, t0),
            _sale("c-b", "p-3", ("Lotus cake",), t0 + timedelta(minutes=5)),
        ],
        [_sale("c-b", "p-2", ("Jasmine", "Oolong"), t0)],
        # the customer bought again, then the old sale comes again in the same poll
        # and again after another kind of event ended the run (the next run reads ahead)
        [
            _sale("c-a", "p-4", ("Jasmine",), t0 + timedelta(minutes=7)),
            _sale("c-a", "p-1", tea_cake, t0),
            customer("c-a", email="a@example.com", update=True),
            _sale("c-a", "p-1", tea_cake, t0),
        ],
    ]
    for poll in polls:
        await _in_one_batch(db, poll, config)
    await handle(twin, *[e for poll in polls for e in poll], config=config)
    batched, alone = await _state(db), await _state(twin)
    assert batched == alone
    pairs = _counts(batched["pairs"])
    assert pairs[("sku-green-tea", "sku-lotus-cake")] == 1
    assert pairs[("sku-lotus-cake", "sku-green-tea")] == 1
    assert pairs[("sku-jasmine", "sku-oolong")] == 1
    assert set(pairs.values()) == {1}
    # c-b: p-2 then p-3; c-a: p-1 then p-4; the re-sends linked nothing
    assert _counts(batched["sequences"]) == {
        ("sku-jasmine", "sku-lotus-cake"): 1,
        ("sku-oolong", "sku-lotus-cake"): 1,
        ("sku-green-tea", "sku-jasmine"): 1,
        ("sku-lotus-cake", "sku-jasmine"): 1,
    }
    assert ("c-a", "/pos/store-7:p-4", ("sku-jasmine",)) in batched["baskets"]
    assert ("c-b", "/pos/store-7:p-3", ("sku-lotus-cake",)) in batched["baskets"]
    async with db.unit_of_work() as session:
        counted = (await session.execute(select(CountedPurchase.purchase_key))).scalars()
        assert sorted(counted) == [f"/pos/store-7:p-{n}" for n in range(1, 5)]


async def test_a_late_replay_after_the_inbox_forgot_its_event_counts_nothing(
    db: Database,
) -> None:
    """The inbox is pruned after INBOX_RETENTION_DAYS; the same event (same id) seen again
    after that is handled again, and its sale counts no pair or sequence twice."""
    config = settings()
    t0 = now() - timedelta(hours=1)
    sale = _sale("c-a", "p-1", ("Green tea", "Lotus cake"), t0)
    await _in_one_batch(db, [sale], config)
    await _in_one_batch(db, [_sale("c-a", "p-2", ("Oolong",), t0 + timedelta(minutes=1))], config)
    async with db.unit_of_work() as session:
        await session.execute(delete(processed_events))
    await _in_one_batch(db, [sale], config)
    await handle(db, sale, config=config)  # and one by one, outside a batch
    state = await _state(db)
    assert set(_counts(state["pairs"]).values()) == {1}
    assert _counts(state["sequences"]) == {
        ("sku-green-tea", "sku-oolong"): 1,
        ("sku-lotus-cake", "sku-oolong"): 1,
    }


async def test_a_run_claims_its_sales_in_one_statement(db: Database) -> None:
    """One ``INSERT … RETURNING`` claims the run's sales; nothing reads them first or
    writes them at commit (it used to be a read-ahead SELECT and a held INSERT)."""
    config = settings()
    statements = await _statements_of_a_batch(db, [purchase(f"c-{n}") for n in range(20)], config)
    counted = [s for s in statements if "COUNTED_PURCHASES" in s]
    assert len(counted) == 1
    assert counted[0].startswith("INSERT INTO COUNTED_PURCHASES ")
    assert "RETURNING" in counted[0]


class _RolledBack(Exception):
    pass


@pytest.mark.parametrize("churn", [True, False], ids=["with-churn", "outreach-only"])
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_a_sale_re_sent_into_two_overlapping_batches_counts_once(
    db: Database, outcome: str, churn: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebalance hands a partition over mid-batch: the new owner's batch starts before
    the old owner's has committed, and both hold the same sale (a re-send, another event
    id). The second batch's claim waits for the first batch's outcome: it counts nothing
    if the first committed, and the sale if the first rolled back. The recommendations
    count once by their own claim, with or without the churn part's handlers (whose own
    check by purchase id used to be what caught this, by failing the batch for a retry)."""
    if db.sqlite:
        pytest.skip("SQLite runs one writer at a time: two batches never overlap")
    if not churn:
        monkeypatch.setattr(churn_consumers, "handlers", lambda _settings: {})
    config = settings()
    t0 = now() - timedelta(hours=1)
    tea_cake = ("Green tea", "Lotus cake")
    reached, release = asyncio.Event(), asyncio.Event()
    base = handlers(config)

    async def pause(session: Any, event: Any) -> None:
        """The first batch, after its purchase run: stays open until released."""
        reached.set()
        await release.wait()
        if outcome == "rollback":
            raise _RolledBack
        await base[CustomerUpdated](session, event)

    first_poll = [
        _sale("c-a", "p-1", tea_cake, t0),
        customer("c-z", email="z@example.com", update=True),  # ends the run, then pauses
    ]
    first = asyncio.create_task(
        batch_runner(db, {**base, CustomerUpdated: pause})._apply_batch(batch_items(first_poll))
    )
    await reached.wait()
    second = asyncio.create_task(_in_one_batch(db, [_sale("c-a", "p-1", tea_cake, t0)], config))
    waiting_on = await _until_waiting_or_done(db, second)
    release.set()
    if outcome == "rollback":
        with pytest.raises(_RolledBack):
            await first
    else:
        assert await first
    await second
    state = await _state(db)
    assert _counts(state["pairs"]) == {
        ("sku-green-tea", "sku-lotus-cake"): 1,
        ("sku-lotus-cake", "sku-green-tea"): 1,
    }
    async with db.unit_of_work() as session:
        counted = (await session.execute(select(CountedPurchase.purchase_key))).scalars()
        assert list(counted) == ["/pos/store-7:p-1"]
    # the second batch really overlapped the first, and waited at its claim
    assert waiting_on is not None
    assert waiting_on.startswith("INSERT INTO counted_purchases")


async def _until_waiting_or_done(db: Database, task: asyncio.Task[None]) -> str | None:
    """The statement of another session in this database waiting for a lock, once there is
    one; None if ``task`` ended first."""
    waiting = text(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    for _ in range(3000):
        if task.done():
            return None
        async with db.read_engine.connect() as conn:
            query = (await conn.execute(waiting)).scalars().first()
        if query is not None:
            return str(query)
        await asyncio.sleep(0.01)
    raise AssertionError("the second batch neither waited nor ended")


async def _statements_of_a_batch(
    db: Database, events: list[Event], config: EngagementSettings
) -> list[str]:
    """The SQL one batch of ``events`` sends, on one line each and in upper case."""
    with counting(db) as seen:
        await _in_one_batch(db, events, config)
    return [" ".join(sql.split()).upper() for sql in seen.sql]
