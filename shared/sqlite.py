"""aiosqlite with one hand-off to its thread per statement (``create_engine(module=DBAPI)``).

SQLAlchemy's aiosqlite adapter runs each statement as three or four hand-offs to the
connection's worker thread: open a cursor, execute, fetch all rows, close the cursor
(``_async_soft_close`` after an async ``execute``). Each is a queue put, a thread
wake-up and a ``call_soon_threadsafe`` back to the event loop; on a busy machine each
waits to be scheduled, and on SQLite a writer holds the one write lock meanwhile.

``DBAPI`` is SQLAlchemy's aiosqlite DBAPI adapter whose connections give cursors that
do all of it in one function on the worker thread (``_run``): the rows, description,
row count and last row id come back together and the cursor serves them from memory.
The errors are sqlite3's own, as before, so SQLAlchemy wraps them the same way
(``OperationalError`` for "database is locked", ``IntegrityError`` for a constraint).
Server-side cursors (``stream()``, ``yield_per``) keep SQLAlchemy's own cursor.

It relies on aiosqlite's ``Connection._execute(fn, *args)`` (run ``fn`` on the
connection's thread), which aiosqlite's own cursor uses for every call, and on the
adapter's ``_connection`` / ``_execute_mutex``, as SQLAlchemy's dialect does.

``InlineDBAPI`` goes one step further for short reads: its connections run every call on
the calling thread, the event loop's, with no hand-off at all (see ``InlineCursor``).
"""

from __future__ import annotations

import collections
import functools
import sqlite3
from collections.abc import Callable
from typing import Any, Final

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

_Outcome = tuple[Any, int, int | None, list[Any] | None]
"""What a statement left: description, rowcount, lastrowid, and its rows if it has a result."""

SQLITE_BUSY: Final = 5
WRITER_TURN_TIMEOUT: Final = 30.0
"""Seconds a SQLite writer waits for the lock, in or out of process (``shared.db``)."""
BUSY_WAIT_MS: Final = int(WRITER_TURN_TIMEOUT * 1000)
"""How long an inline statement that met a lock waits for it, on aiosqlite's thread."""


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: the whole statement, from opening a cursor to closing it."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        # rowcount after the fetch: with RETURNING, sqlite3 counts rows as they are stepped.
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_waiting(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool) -> _Outcome:
    """On aiosqlite's thread: ``_run`` with the busy handler waiting up to ``BUSY_WAIT_MS``
    (an inline connection's is off, so the event loop's thread never sleeps in it)."""
    connection.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
    try:
        return _run(connection, sql, parameters, many)
    finally:
        connection.execute("PRAGMA busy_timeout=0")


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_BUSY


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor: ``execute`` is one hand-off; everything else reads memory."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # No aiosqlite cursor: SQLAlchemy's __init__ would open one (a hand-off).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]  # None until an insert, as sqlite3's

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing to close on the thread: ``_run`` closed the sqlite3 cursor."""

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        return await self._one_hop(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._one_hop(operation, seq_of_parameters, many=True)

    async def _one_hop(self, operation: Any, parameters: Any, *, many: bool) -> OneHopCursor:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            # _execute raises ValueError on a closed connection, which the adapter's
            # _handle_exception turns into sqlite3.OperationalError, as before.
            run = driver._execute  # untyped in aiosqlite
            outcome: _Outcome = await run(_run, driver._conn, operation, parameters, many)  # type: ignore[no-untyped-call]
        return self._keep(outcome)

    def _keep(self, outcome: _Outcome) -> OneHopCursor:
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows) if rows is not None else collections.deque()
        return self

    def nextset(self) -> None:
        raise NotImplementedError("sqlite3 has one result set per statement")

    def setinputsizes(self, *inputsizes: Any) -> None:
        """sqlite3 ignores input sizes, as SQLAlchemy's own cursor would."""


class InlineCursor(OneHopCursor):
    """Runs each statement on the calling thread, the event loop's: no hand-off at all.

    A hand-off costs more CPU than a short read itself (a queue put, a thread wake-up, a
    ``call_soon_threadsafe`` and the loop waking for it): one customer's 360° view on
    SQLite took about 0.5 ms less CPU with its four hand-offs gone. The price is that the
    loop waits while SQLite works, so it is for statements known to be short (reads by
    key, a bounded page), never for reports. Its connections' busy handler is off, so a
    statement that meets a lock (in WAL mode a reader rarely does: while another
    connection recovers the WAL or holds the database in exclusive mode) fails at once,
    and is run again on aiosqlite's thread, which waits for the lock as any other
    connection would.
    """

    __slots__ = ()

    async def _one_hop(self, operation: Any, parameters: Any, *, many: bool) -> OneHopCursor:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            connection = driver._conn  # ValueError on a closed connection, as a hand-off
            try:
                outcome = _run(connection, operation, parameters, many)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                run = driver._execute  # untyped in aiosqlite
                outcome = await run(_run_waiting, connection, operation, parameters, many)  # type: ignore[no-untyped-call]
        return self._keep(outcome)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    _cursor_cls = OneHopCursor

    def begin_deferred(self) -> None:
        """A deferred ``BEGIN`` (it takes no lock, so it never waits): one hand-off."""
        self.run_async(lambda driver: driver.execute("BEGIN"))


class InlineConnection(OneHopConnection):
    """``InlineCursor``'s connection: its ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` run on the
    calling thread too (a read-only transaction's end takes no lock)."""

    __slots__ = ()

    _cursor_cls = InlineCursor

    def begin_deferred(self) -> None:
        self._connection._conn.execute("BEGIN")

    def commit(self) -> None:
        self._end(sqlite3.Connection.commit)

    def rollback(self) -> None:
        self._end(sqlite3.Connection.rollback)

    def _end(self, end: Callable[[sqlite3.Connection], None]) -> None:
        driver = self._connection._connection  # None once closed: nothing to end
        if driver is None:
            return
        try:
            end(driver)
        except sqlite3.Error as error:  # as the adapter's own commit: wrapped for SQLAlchemy
            self._handle_exception(error)


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DBAPI adapter, whose connections are ``OneHopConnection``."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)  # opens aiosqlite's connection and thread
        return self.connection_class(self, adapted._connection)

    connection_class: type[OneHopConnection] = OneHopConnection


class InlineDBAPI(OneHopDBAPI):
    """The DBAPI adapter whose connections run every call on the calling thread
    (``InlineConnection``): for an engine of short reads only. Connect with
    ``check_same_thread=False`` (aiosqlite opens the connection on its own thread)."""

    connection_class = InlineConnection


@functools.cache
def dbapi(*, inline: bool = False) -> OneHopDBAPI:
    """The DBAPI to give ``create_async_engine(..., module=dbapi())`` for sqlite+aiosqlite;
    ``inline`` for ``InlineDBAPI``."""
    return (InlineDBAPI if inline else OneHopDBAPI)(aiosqlite, sqlite3)
