"""Doing something once per key: record the key, and only a transaction that recorded it
first goes on.

A table whose primary key is the key (profile's ``sale_keys``, engagement's
``counted_purchases``) is claimed with one ``INSERT … ON CONFLICT (key) DO NOTHING
RETURNING key`` per chunk of rows: the keys it returns were not there before, and the
caller now owns them; the others were recorded earlier. On PostgreSQL a transaction
claiming a key another open transaction has inserted waits for that one's outcome (it
gets the key if the other rolls back); on SQLite one writer at a time gives the same.
Rows go in key order, so two transactions claiming overlapping sets lock them alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import FromClause
from sqlalchemy.ext.asyncio import AsyncSession

from shared.key_lists import ManyRows

K = TypeVar("K", bound=tuple[Any, ...])

CHUNK = 1000  # rows per statement


class KeyClaims(Generic[K]):
    """Claims of ``table``'s primary key; ``K`` is the tuple of its key columns' values."""

    def __init__(self, table: FromClause) -> None:
        self.table = table
        self.columns = tuple(table.primary_key)
        keys = [c.name for c in self.columns]
        self._insert = ManyRows(
            table, [c.name for c in table.columns], returning=self.columns, conflict=keys
        )

    def key_of(self, row: Mapping[str, Any]) -> K:
        return cast(K, tuple(row[c.name] for c in self.columns))

    async def claim(self, session: AsyncSession, rows: Iterable[Mapping[str, Any]]) -> set[K]:
        """Insert the rows whose key is not recorded yet; returns those rows' keys.

        Every row names every column of the table (``shared.key_lists.ManyRows`` binds one
        array per column). A key named by several rows is inserted with the first of them."""
        by_key: dict[K, Mapping[str, Any]] = {}
        for row in rows:
            by_key.setdefault(self.key_of(row), row)
        ordered = [by_key[key] for key in sorted(by_key)]
        claimed: set[K] = set()
        for start in range(0, len(ordered), CHUNK):
            result = await self._insert.execute(session, ordered[start : start + CHUNK])
            claimed.update(cast(K, tuple(row)) for row in result)
        return claimed
