"""Deferred outbox rows: held in memory, written in one statement at commit, in order."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, select

from shared import outbox
from shared.db import Database
from shared.plumbing import outbox as outbox_table
from tests.helpers import purchase

pytestmark = pytest.mark.db


async def rows(db: Database) -> list[tuple[str, str | None]]:
    async with db.unit_of_work() as session:
        result = await session.execute(
            select(outbox_table.c.value, outbox_table.c.event_type).order_by(outbox_table.c.id)
        )
        return [(json.loads(v)["id"] if t else v.decode(), t) for v, t in result]


async def test_deferred_rows_are_written_at_commit_in_one_statement_in_order(
    db: Database,
) -> None:
    events = [purchase("c-1", purchase_id=f"p-{i}") for i in range(5)]
    inserts: list[str] = []

    def seen(*args: object) -> None:
        if "INSERT INTO outbox" in str(args[2]):
            inserts.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    async with db.unit_of_work() as session:
        await outbox.enqueue(session, events[0])  # before deferring: written at once
        outbox.defer(session)
        outbox.defer(session)  # twice is once
        await outbox.enqueue(session, events[1], events[2])
        await outbox.enqueue_raw(
            session, topic="svc.deadletter", key=None, value=b"raw", headers=[("a", "b")]
        )
        await outbox.enqueue(session, events[3])
        await outbox.enqueue(session, events[4])
        assert len(inserts) == 1
        assert session.info.get(outbox.OUTBOX_FLAG)  # the relay is still woken at commit
    event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert len(inserts) == 2
    ids = [e.id for e in events]
    assert await rows(db) == [
        (ids[0], "purchase.completed"),
        (ids[1], "purchase.completed"),
        (ids[2], "purchase.completed"),
        ("raw", None),
        (ids[3], "purchase.completed"),
        (ids[4], "purchase.completed"),
    ]


async def test_a_rolled_back_transaction_writes_no_deferred_row(db: Database) -> None:
    async def fail_after_enqueueing() -> None:
        async with db.unit_of_work() as session:
            outbox.defer(session)
            await outbox.enqueue(session, purchase("c-1"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_after_enqueueing()
    assert await rows(db) == []


async def test_no_savepoint_while_rows_are_held(db: Database) -> None:
    async with db.unit_of_work() as session:
        outbox.defer(session)
        async with session.begin_nested():  # nothing held yet: fine
            await outbox.enqueue(session, purchase("c-1", purchase_id="inside"))
        nested = await session.begin_nested()
        await outbox.enqueue(session, purchase("c-1", purchase_id="rolled back"))
        await nested.rollback()  # drops what it held, and only that
        # releasing the savepoint wrote what it held; now hold one more
        await outbox.enqueue(session, purchase("c-1", purchase_id="after"))
        with pytest.raises(RuntimeError, match="deferred"):
            await session.begin_nested()
    assert [t for _, t in await rows(db)] == ["purchase.completed"] * 2
