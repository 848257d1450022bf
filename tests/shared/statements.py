"""Counting what a piece of plumbing asks the database, for the statements-per-poll tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from shared.db import Database


@dataclass
class Statements:
    """SQL statements sent on either engine (BEGIN and COMMIT not included), and the
    transactions committed or rolled back on the writing engine (each a BEGIN and a
    COMMIT or ROLLBACK round trip)."""

    sql: list[str] = field(default_factory=list)
    transactions: int = 0

    def on(self, table: str) -> list[str]:
        return [s for s in self.sql if table in s]


@contextmanager
def counting(db: Database) -> Iterator[Statements]:
    seen = Statements()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not sql.lstrip().upper().startswith("BEGIN"):
            seen.sql.append(sql)

    def ended(_conn: Any) -> None:
        seen.transactions += 1

    engines = {db.engine, db.read_engine, db.quick_read_engine}
    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        *((e.sync_engine, "before_cursor_execute", statement) for e in engines),
        (db.engine.sync_engine, "commit", ended),
        (db.engine.sync_engine, "rollback", ended),
    ]
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        yield seen
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)
