"""SQLite writers of one process take turns in order, instead of racing in the busy
handler, and a turn that never comes is a transient failure like a busy database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert

from shared import db as db_module
from shared.consumer import is_transient
from shared.db import Database
from shared.plumbing import processed_events

pytestmark = pytest.mark.db


def sqlite_only(db: Database) -> None:
    if not db.sqlite:
        pytest.skip("PostgreSQL has row locks; only SQLite writers take turns")


async def write(db: Database, event_id: str) -> None:
    async with db.unit_of_work() as session:
        await session.execute(
            insert(processed_events).values(source="t", event_id=event_id, event_type="x")
        )


async def test_a_writer_gets_its_turn_behind_a_busy_one(db: Database) -> None:
    """A loop that commits and begins again at once (a busy consumer) used to win the
    lock over and over while the other writer slept in SQLite's busy handler."""
    sqlite_only(db)
    done: list[int] = []
    started = asyncio.Event()

    async def busy() -> None:
        for i in range(100):
            await write(db, f"busy-{i}")
            done.append(i)
            started.set()

    loop = asyncio.create_task(busy())
    await started.wait()
    seen = len(done)
    await write(db, "other")
    overtaken = len(done) - seen
    await loop
    assert overtaken <= 1, f"the busy writer committed {overtaken} times before the other's turn"


async def test_no_turn_within_the_timeout_is_a_transient_failure(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_only(db)
    monkeypatch.setattr(db_module, "WRITER_TURN_TIMEOUT", 0.05)
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.unit_of_work():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    with pytest.raises(sa_exc.TimeoutError) as refused:
        await write(db, "late")
    assert is_transient(refused.value)
    release.set()
    await holder
    await write(db, "after")  # the turn is free again
