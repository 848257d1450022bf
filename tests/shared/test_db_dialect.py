"""shared.db's helpers: the insert with ON CONFLICT and statements built once per dialect,
on a real database; ``as_utc``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.db import Database, as_utc, dialect_insert, per_dialect
from shared.plumbing import processed_events

pytestmark = pytest.mark.db

ROW = {"source": "/test", "event_id": "e-1", "event_type": "test"}


async def test_a_statement_is_built_once_per_dialect_and_runs_there(db: Database) -> None:
    built: list[Any] = []

    @per_dialect
    def record(insert: Any) -> Any:
        built.append(insert)
        t = processed_events
        return insert(t).on_conflict_do_nothing().returning(t.c.event_id)

    async with db.unit_of_work() as session:
        stmt = record(session)
        connection = (await session.connection()).sync_connection
        assert connection is not None
        same = (record(session.sync_session), record(connection), record(db.engine.dialect.name))
        assert all(s is stmt for s in same)
        assert built == [dialect_insert(session)]
        assert (await session.execute(stmt, ROW)).scalars().all() == ["e-1"]
    async with db.unit_of_work() as session:  # the conflict: nothing inserted, nothing raised
        assert (await session.execute(record(session), ROW)).scalars().all() == []

    other = "sqlite" if db.engine.dialect.name == "postgresql" else "postgresql"
    assert record(other) is not stmt
    assert built[1:] == [dialect_insert(other)]


def test_each_dialect_has_its_own_insert() -> None:
    assert dialect_insert("postgresql").__module__ == "sqlalchemy.dialects.postgresql.dml"
    assert dialect_insert("sqlite").__module__ == "sqlalchemy.dialects.sqlite.dml"


def test_as_utc_reads_a_naive_time_as_utc_and_converts_an_aware_one() -> None:
    naive = datetime(2026, 12, 5, 3, 0)
    assert as_utc(naive) == datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    assert as_utc(naive).tzinfo is UTC
    hanoi = datetime(2026, 12, 5, 10, 0, tzinfo=timezone(timedelta(hours=7)))
    assert as_utc(hanoi) == hanoi
    assert as_utc(hanoi).tzinfo is UTC
    assert as_utc(hanoi).hour == 3
