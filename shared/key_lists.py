"""``column IN (a list of keys)`` as one bound parameter, whatever the list's length.

SQLAlchemy's ``column.in_(values)`` renders one placeholder per value when the statement
runs, so every list length is a different SQL text: rendered again by SQLAlchemy (with a
type cast per placeholder on PostgreSQL), prepared again by asyncpg and parsed and planned
again by PostgreSQL. ``one_of(column, values)`` binds the whole list as one parameter and
keeps one text per statement:

- PostgreSQL: ``column IN (SELECT unnest($1::VARCHAR[]))``, the list bound as an array;
- SQLite: ``column IN (SELECT value FROM json_each(?))``, the list bound as JSON text.

Both use the column's index to look the keys up. On PostgreSQL the keys are a set to join
with, not ``column = ANY ($1)``: a statement the server has prepared settles on a generic
plan, which takes any array to hold 10 keys, and may then scan the table and test every
row against every key (seen on 2026-12-07: a few thousand customers by 71 keys, 12 ms a
batch in profile; 9 ms in loyalty). Joined, a scan is a hash lookup per row and a long
list at worst one index probe per key. The keys must be JSON scalars (strings
or integers) for SQLite; ``bench/pg_in_lists.py`` measures the two forms on PostgreSQL.

``ManyRows`` does the same for inserting a batch's rows with RETURNING: one array per
column on PostgreSQL, so one SQL text whatever the number of rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Dialect, Row, String, TypeDecorator, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

from shared.db import per_dialect


class KeyList(TypeDecorator[list[Any]]):
    """A list of ``item_type`` values bound as one parameter: an array on PostgreSQL, JSON
    text elsewhere."""

    impl = String
    cache_ok = True

    def __init__(self, item_type: TypeEngine[Any]) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # Strings without their column's length: an explicit cast to VARCHAR(n) would
            # cut a longer key to n characters, and the cut key could match another row.
            item = String() if isinstance(self.item_type, String) else self.item_type
            return dialect.type_descriptor(ARRAY(item))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Iterable[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            raise TypeError("a key list is a list of keys, not NULL")
        keys = list(value)
        return keys if dialect.name == "postgresql" else json.dumps(keys)


class _OneOf(FunctionElement[bool]):
    """``column`` equals one of the keys bound to ``keys`` (a ``KeyList`` parameter)."""

    name = "one_of"
    inherit_cache = True
    type = Boolean()
    # A comparison already: no "= 1" after it where booleans are integers (SQLite).
    _is_implicitly_boolean = True


@compiles(_OneOf)
def _json_each(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, keys = element.clauses
    return (
        f"{compiler.process(column, **kw)} IN "
        f"(SELECT value FROM json_each({compiler.process(keys, **kw)}))"
    )


@compiles(_OneOf, "postgresql")
def _unnest_join(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    column, keys = element.clauses
    return f"{compiler.process(column, **kw)} IN (SELECT unnest({compiler.process(keys, **kw)}))"


def one_of(column: Any, values: Iterable[Any] | None = None, *, param: str | None = None) -> Any:
    """``column IN (values)`` with the values bound as one parameter.

    Either the values themselves, or ``param``: the name of a parameter the statement is
    executed with (``session.execute(stmt, {param: [...]})``), for a statement built once.
    """
    if (values is None) == (param is None):
        raise TypeError("one_of takes the values or the name of their parameter, not both")
    item_type = getattr(column, "type", None)
    if not isinstance(item_type, TypeEngine):
        raise TypeError(f"one_of needs a typed column, not {column!r}")
    key_type = KeyList(item_type)
    if param is not None:
        keys = bindparam(param, type_=key_type)
    else:
        assert values is not None
        keys = bindparam(None, list(values), type_=key_type)
    return _OneOf(column, keys)


class ManyRows:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` for any number of rows, as one SQL text.

    An insert with RETURNING given many rows goes through SQLAlchemy's "insertmanyvalues",
    which renders a ``VALUES (…), (…)`` list as long as the rows, so every batch size is a
    new text that asyncpg prepares again (a round trip, and a parse on the server): at 200
    purchases/s profile prepared about 20 such statements a second, its inbox and claims
    among them. On PostgreSQL this binds each column as one array and inserts
    ``SELECT unnest($1), unnest($2), …`` (the arrays zipped row by row, in order): one
    prepared statement whatever the count. Strings are bound without their column's length
    and cast by the insert itself, so a value too long for its column is an error, as it
    is in a plain insert, not cut short. Elsewhere it is the plain insert, run with the rows.

    Every row names the same ``columns``; RETURNING rows come in no particular order.
    """

    def __init__(
        self,
        table: Any,
        columns: Sequence[str],
        *,
        returning: Sequence[Any],
        conflict: Sequence[str] | None = None,
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.returning = tuple(returning)
        self.conflict = list(conflict) if conflict is not None else None
        self._statement = per_dialect(self._build)

    def _param(self, name: str) -> str:
        return f"rows_{name}"

    def _build(self, insert: Any) -> Any:
        """The statement for the dialect whose ``insert`` construct this is."""
        stmt = insert(self.table)
        if insert is pg_insert:
            arrays = [
                bindparam(self._param(name), type_=KeyList(self.table.c[name].type))
                for name in self.columns
            ]
            rows = select(*(func.unnest(array) for array in arrays))
            stmt = stmt.from_select(list(self.columns), rows)
        return stmt.on_conflict_do_nothing(index_elements=self.conflict).returning(*self.returning)

    async def execute(
        self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]
    ) -> list[Row[Any]]:
        """Insert ``rows``; returns the RETURNING rows of those inserted (none for none)."""
        if not rows:
            return []
        stmt = self._statement(session)
        if session.get_bind().dialect.name != "postgresql":
            return list((await session.execute(stmt, list(rows))).all())
        params = {self._param(c): [row[c] for row in rows] for c in self.columns}
        return list((await session.execute(stmt, params)).all())
