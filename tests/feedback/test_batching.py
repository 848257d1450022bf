"""A consumer batch of purchases reads the surveys and last invitations once, holds its
invitations until commit (``service.batching``), and ends where one-by-one handling
ends: the same invitations, responses and published events."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, update

from services.feedback.config import FeedbackSettings
from services.feedback.consumers import handlers
from services.feedback.main import MIGRATIONS
from services.feedback.models import Complaint, Invitation, Response, Survey
from services.feedback.repository import MERGES
from services.feedback.service import surveys
from shared.db import Database
from shared.events import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.interactions import (
    FeedbackSubmitted,
    FeedbackSubmittedData,
    InteractionRecorded,
    InteractionRecordedData,
)
from shared.migrations import upgrade_async
from shared.plumbing import outbox
from tests.conftest import DatabaseFactory
from tests.feedback.conftest import T0, nps_survey, settings_for
from tests.helpers import (
    batch_items,
    batch_runner,
    erased_event,
    merged_event,
    purchase,
    unmerged_event,
)

pytestmark = pytest.mark.db

DAY = timedelta(days=1)


@pytest.fixture
async def twin(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    """A second feedback database, for the one-by-one reference run."""
    url = await database_url("feedback_twin")
    await upgrade_async(MIGRATIONS, url)
    database = Database(url)
    yield database
    await database.dispose()


async def _one_by_one(db: Database, events: list[Event], config: FeedbackSettings) -> None:
    """Each event in its own transaction, outside the runner: no batch, no read-ahead."""
    found = handlers(config)
    for e in events:
        async with db.unit_of_work() as session:
            await found[type(e)](session, e)


# (id, created_at, active_from, active_until): "spring" is newer than "after-buy" and
# wins inside its window; "a-tie" is as new as "after-buy" and wins inside its window
# on the id; "gone" ended before any purchase; "old" is older than "after-buy".
SURVEYS = [
    ("after-buy", T0 - 100 * DAY, None, None),
    ("spring", T0 - 50 * DAY, T0 + 10 * DAY, T0 + 20 * DAY),
    ("a-tie", T0 - 100 * DAY, T0 + 60 * DAY, T0 + 70 * DAY),
    ("gone", T0 - 10 * DAY, None, T0 - DAY),
    ("old", T0 - 200 * DAY, T0 + 30 * DAY, None),
]


async def _setup(db: Database) -> None:
    async with db.unit_of_work() as session:
        for survey_id, created, starts, ends in SURVEYS:
            await surveys.create_survey(
                session,
                survey=nps_survey(survey_id, active_from=starts, active_until=ends),
                now=T0 - 300 * DAY,
            )
            await session.execute(
                update(Survey).where(Survey.id == survey_id).values(created_at=created)
            )
        await surveys.create_survey(
            session, survey=nps_survey("check", "follow_up"), now=T0 - 300 * DAY
        )


def _complaint_call(customer_id: str, when: datetime) -> InteractionRecorded:
    return InteractionRecorded.create(
        subject=customer_id,
        source="/call-centre",
        time=when,
        data=InteractionRecordedData(
            kind="support_call", channel="phone", attributes={"complaint": "yes"}
        ),
    )


def _answer(customer_id: str, when: datetime) -> FeedbackSubmitted:
    return FeedbackSubmitted.create(
        subject=customer_id,
        source="/call-centre",
        time=when,
        data=FeedbackSubmittedData(
            survey_id="after-buy", channel="phone", answers={"recommend": 9}
        ),
    )


def _history() -> tuple[list[Event], dict[str, PurchaseCompleted]]:
    """Purchases of several customers over surveys with windows, a merge, an erasure,
    an answer to an invitation issued in the batch; and the events asserted on."""
    named = {
        "a0": purchase("c-a", purchase_id="a0", when=T0),
        "a1": purchase("c-a", purchase_id="a1", when=T0 + DAY),  # fatigued by a0
        "a12": purchase("c-a", purchase_id="a12", when=T0 + 12 * DAY),  # still fatigued
        "a31": purchase("c-a", purchase_id="a31", when=T0 + 31 * DAY),  # rested
        "a62": purchase("c-a", purchase_id="a62", when=T0 + 62 * DAY),  # "a-tie"'s window
        "b11": purchase("c-b", purchase_id="b11", when=T0 + 11 * DAY),  # "spring"
        "old5": purchase("c-old", purchase_id="old5", when=T0 + 5 * DAY),
        "b25": purchase("c-b", purchase_id="b25", when=T0 + 25 * DAY),
        "old50": purchase("c-old", purchase_id="old50", when=T0 + 50 * DAY),
        "c2": purchase("c-c", purchase_id="c2", when=T0 + 2 * DAY),
        "c3": purchase("c-c", purchase_id="c3", when=T0 + 3 * DAY),
        "d40": purchase("c-d", purchase_id="d40", when=T0 + 40 * DAY),
        "d20": purchase("c-d", purchase_id="d20", when=T0 + 20 * DAY),  # late, older
    }
    # the till re-sends b11 under a new event id: fatigued by the first
    resent = purchase("c-b", purchase_id="b11", when=T0 + 11 * DAY)
    events: list[Event] = [
        named["a0"],
        named["a1"],
        _answer("c-a", T0 + DAY),  # answers a0's invitation, held until now
        named["b11"],
        resent,
        named["old5"],
        named["c2"],
        named["d40"],
        named["d20"],
        named["a12"],
        merged_event("c-b", "c-old"),
        named["b25"],  # c-old's invitation at T0+5 moved to c-b: fatigued either way
        named["old50"],
        erased_event("c-c"),
        named["c3"],  # c2's invitation is gone: invited again
        named["a31"],
        named["a62"],
    ]
    return events, named


async def _state(db: Database) -> dict[str, Any]:
    async with db.unit_of_work() as session:
        invitations = (await session.execute(select(Invitation))).scalars().all()
        answers = (await session.execute(select(Response))).scalars().all()
        published = (await session.execute(select(outbox.c.value).order_by(outbox.c.id))).all()
    columns = [c.key for c in Invitation.__table__.columns]
    return {
        "invitations": sorted(tuple(getattr(i, c) for c in columns) for i in invitations),
        "responses": sorted(
            (r.id, r.dedupe_key, r.customer_id, r.survey_id, r.nps_score) for r in answers
        ),
        "published": [bytes(v) for (v,) in published],
    }


async def _invited(db: Database) -> dict[str, tuple[str, str]]:
    """purchase id → (customer, survey) of each after-purchase invitation."""
    async with db.unit_of_work() as session:
        rows = (await session.execute(select(Invitation))).scalars().all()
    return {i.purchase_id or "": (i.customer_id, i.survey_id) for i in rows}


async def test_a_batch_invites_as_one_by_one_handling_does(db: Database, twin: Database) -> None:
    config = settings_for(db.url)
    await _setup(db)
    await _setup(twin)
    events, named = _history()
    # the same event delivered twice: the runner handles it once
    await batch_runner(db, handlers(config))._apply_batch(batch_items([*events, named["a0"]]))
    await _one_by_one(twin, events, config)
    batched, alone = await _state(db), await _state(twin)
    assert batched == alone
    # and what both say, spelled out: fatigue applied within the batch, surveys by window
    assert await _invited(db) == {
        "a0": ("c-a", "after-buy"),
        "b11": ("c-b", "spring"),
        "old5": ("c-b", "after-buy"),  # merged into c-b
        "old50": ("c-b", "after-buy"),  # after the merge: c-b's, last invited at b11
        "c3": ("c-c", "after-buy"),
        "d40": ("c-d", "after-buy"),
        "a31": ("c-a", "after-buy"),
        "a62": ("c-a", "a-tie"),
    }
    [answer] = batched["responses"]
    assert answer[2:] == ("c-a", "after-buy", 9)
    assert answer[1].startswith("invitation:")  # it found a0's invitation


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_shuffled_batch_ends_as_one_by_one(db: Database, twin: Database, seed: int) -> None:
    config = settings_for(db.url)
    await _setup(db)
    await _setup(twin)
    events, named = _history()
    random.Random(seed).shuffle(events)
    await batch_runner(db, handlers(config))._apply_batch(
        batch_items([*events, named["b11"], named["d20"]])
    )
    await _one_by_one(twin, events, config)
    assert await _state(db) == await _state(twin)
    # every purchase again: all redeliveries, nothing changes
    before = await _state(db)
    await batch_runner(db, handlers(config))._apply_batch(batch_items(list(named.values())))
    assert await _state(db) == before


async def test_a_merged_away_id_acts_for_its_survivor_until_the_merge_is_undone(
    db: Database, twin: Database
) -> None:
    """After the merge a purchase and an answer naming the old id are the survivor's
    (its fatigue, its NPS); after the undo the old id's purchases are its own again.
    In a batch as one by one."""
    config = settings_for(db.url)
    await _setup(db)
    await _setup(twin)
    events: list[Event] = [
        purchase("c-b", purchase_id="b0", when=T0),
        merged_event("c-b", "c-old"),
        purchase("c-old", purchase_id="old1", when=T0 + DAY),  # c-b was invited at T0
        purchase("c-old", purchase_id="old40", when=T0 + 40 * DAY),
        _answer("c-old", T0 + 41 * DAY),
        _complaint_call("c-old", T0 + 41 * DAY),
        unmerged_event("c-b", "c-old"),
        unmerged_event("c-b", "c-old"),  # a second undo (another event id): nothing changes
        purchase("c-old", purchase_id="old42", when=T0 + 42 * DAY),
    ]
    await batch_runner(db, handlers(config))._apply_batch(batch_items(events))
    await _one_by_one(twin, events, config)
    assert await _state(db) == await _state(twin)
    assert await _invited(db) == {
        "b0": ("c-b", "after-buy"),
        "old40": ("c-b", "after-buy"),
        "old42": ("c-old", "after-buy"),
    }
    [answer] = (await _state(db))["responses"]
    assert answer[2:] == ("c-b", "after-buy", 9)
    async with db.unit_of_work() as session:
        cases = (await session.execute(select(Complaint.customer_id))).scalars().all()
    assert cases == ["c-b"]


async def test_an_erasure_forgets_the_merges_that_name_the_customer(db: Database) -> None:
    config = settings_for(db.url)
    await _setup(db)
    merges = [
        merged_event("c-b", "c-old"),
        merged_event("c-b", "c-older"),
        merged_event("c-x", "c-y"),
    ]
    await _one_by_one(db, [*merges, erased_event("c-b"), erased_event("c-y")], config)
    async with db.unit_of_work() as session:
        assert await MERGES.survivors(session, ["c-old", "c-older", "c-y"]) == {}
    await _one_by_one(db, [merged_event("c-x", "c-z")], config)
    async with db.unit_of_work() as session:
        assert await MERGES.survivors(session, ["c-z", "c-y"]) == {"c-z": "c-x"}


async def test_a_run_reads_ahead_once_and_writes_once(db: Database) -> None:
    """One statement reads which of the run's ids were merged away, one the surveys and
    the customers' last invitations (it was one each), one writes the invitations and
    one their outbox rows."""
    config = settings_for(db.url)
    await _setup(db)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(" ".join(args[2].split()).upper())

    events: list[Event] = [purchase(f"c-{n % 10}", when=T0 + n * DAY) for n in range(40)]
    sa_event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        await batch_runner(db, handlers(config))._apply_batch(batch_items(events))
    finally:
        sa_event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    reads = [s for s in statements if s.startswith("SELECT") and "PROCESSED_EVENTS" not in s]
    assert len(reads) == 2
    assert "FROM MERGED_CUSTOMERS" in reads[0]
    assert "FROM SURVEYS" in reads[1]
    assert "FROM INVITATIONS" in reads[1]
    for table in ("INVITATIONS", "OUTBOX"):
        assert sum(s.startswith(f"INSERT INTO {table} ") for s in statements) == 1, table
    # each customer every 10 days (fatigue 30 days): invited on its first day and 30
    # days later, not in between
    days = {e.data.purchase_id: n for n, e in enumerate(events) if isinstance(e, PurchaseCompleted)}
    invited = sorted(days[p] for p in await _invited(db))
    assert invited == [*range(10), *range(30, 40)]


async def test_a_failed_batch_replayed_one_at_a_time_invites_as_one_by_one(
    db: Database, twin: Database
) -> None:
    """An answer out of range fails the batch after its purchases held invitations: the
    batch rolls back (nothing held is written) and the runner replays it one message
    at a time, reading ahead over runs of one."""
    config = settings_for(db.url)
    await _setup(db)
    await _setup(twin)
    bad = FeedbackSubmitted.create(
        subject="c-x",
        source="/call-centre",
        time=T0 + DAY,
        data=FeedbackSubmittedData(
            survey_id="after-buy", channel="phone", answers={"recommend": 42}
        ),
    )
    good: list[Event] = [
        purchase("c-x", purchase_id="x0", when=T0),
        purchase("c-x", purchase_id="x1", when=T0 + DAY),  # fatigued by x0
        purchase("c-y", purchase_id="y11", when=T0 + 11 * DAY),
    ]
    items = batch_items([good[0], good[1], bad, good[2]])
    runner = batch_runner(db, handlers(config))
    assert await runner._process([i.record for i in items])
    await _one_by_one(twin, good, config)
    batched, alone = await _state(db), await _state(twin)
    assert batched["invitations"] == alone["invitations"]
    assert await _invited(db) == {"x0": ("c-x", "after-buy"), "y11": ("c-y", "spring")}
    async with db.unit_of_work() as session:
        topics = (await session.execute(select(outbox.c.topic).order_by(outbox.c.id))).scalars()
        assert [t for t in topics if t.endswith("deadletter")] == ["test.deadletter"]
