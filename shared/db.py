"""Engine, sessions and the unit of work. Built in a service's lifespan, never at import."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from shared.sqlite import WRITER_TURN_TIMEOUT
from shared.sqlite import dbapi as sqlite_dbapi

# Shared naming convention so Alembic migrations name constraints the same on every DB.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def as_utc(value: datetime) -> datetime:
    """The same moment, aware and in UTC; a naive value is taken to be UTC already (SQLite
    keeps no offset: every time stored through ``UtcDateTime`` is UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored and read back as UTC on every backend.

    SQLite keeps no offset: without this, times from "+07:00" and "Z" events would
    compare as wall-clock strings and come back naive. Migrations render it as
    ``sa.DateTime(timezone=True)`` (see shared.migrations).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return as_utc(value)


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    read_only: bool = False,
    inline: bool = False,
) -> AsyncEngine:
    """The engine for ``url``; ``read_only`` gives one whose connections cannot write: on
    SQLite its transactions take no lock until they read, on PostgreSQL each statement is
    its own read-only transaction (see ``Database.read_only``). ``inline`` (SQLite with
    aiosqlite, read-only only) runs its statements on the event loop's thread
    (``shared.sqlite.InlineCursor``): for short reads."""
    if inline and not read_only:
        raise ValueError("only a read-only engine runs inline")
    if not is_sqlite(url):
        options: dict[str, Any] = {"max_overflow": pool_size}
        if read_only:  # no overflow: a replica's connections stay within 3 x pool_size
            options = {
                "max_overflow": 0,
                "isolation_level": "AUTOCOMMIT",
                "connect_args": {"server_settings": {"default_transaction_read_only": "on"}},
            }
        engine = create_async_engine(url, pool_size=pool_size, echo=echo, **options)
        event.listen(engine.sync_engine, "checkout", _replace_closed)
        return engine
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    aiosqlite = make_url(url).get_driver_name() == "aiosqlite"
    inline = inline and aiosqlite
    engine = create_async_engine(
        url,
        echo=echo,
        # Inline: the loop's thread uses the connection aiosqlite opened on its own, and
        # never waits in the busy handler (InlineCursor waits on aiosqlite's thread).
        connect_args={
            "timeout": 0 if inline else WRITER_TURN_TIMEOUT,
            "check_same_thread": not inline,
        },
        pool_reset_on_return=None,
        # One hand-off to aiosqlite's thread per statement instead of three or four.
        module=sqlite_dbapi(inline=inline) if aiosqlite else None,
    )
    _configure_sqlite(engine, read_only=read_only, inline=inline)
    return engine


def _replace_closed(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """PostgreSQL: a pooled connection the server has closed (a restart, an administrator's
    ``pg_terminate_backend``) is replaced at checkout, without a round trip.

    This was ``pool_pre_ping``, which costs three round trips on every checkout with
    asyncpg (BEGIN, an empty statement, ROLLBACK): three of a 360° view's seven. asyncpg
    notices the server closing the socket while the connection sits in the pool (its
    protocol reads all the time), so asking it is enough for that case. A connection
    dropped without the server closing it (a network path that silently forgets it)
    now fails its first statement instead, which the services answer as a transient
    error (503 with Retry-After, a batch retried); SQLAlchemy then replaces every
    connection the pool held before that failure.
    """
    if dbapi_conn.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def _begin_deferred(conn: Any) -> None:
    """A deferred BEGIN straight on the driver: one hand-off to aiosqlite's thread (it
    was three before ``shared.sqlite``; now it saves SQLAlchemy's execution machinery),
    none on an inline connection.

    It takes no lock, so it does not wait; should it fail all the same, the error is
    wrapped as SQLAlchemy would have (a ``DBAPIError``: a 503 to retry, not a 500).
    """
    try:
        conn.connection.dbapi_connection.begin_deferred()
    except sqlite3.Error as exc:
        raise DBAPIError.instance("BEGIN", None, exc, sqlite3.Error, dialect=conn.dialect) from exc


def _configure_sqlite(
    engine: AsyncEngine, *, read_only: bool = False, inline: bool = False
) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so writers queue instead of deadlocking.

    pysqlite's own transaction handling is switched off so SQLAlchemy's BEGIN is the
    one that runs (this also makes SAVEPOINT work). A ``read_only`` engine's
    connections have ``PRAGMA query_only`` on (any write fails with SQLITE_READONLY) and
    begin deferred: in WAL mode such a transaction reads the last committed state while
    the one writer holds the write lock, instead of queueing for it. An ``inline``
    engine's connections have no busy timeout: the event loop's thread must not sleep in
    the busy handler (``shared.sqlite.InlineCursor`` waits on aiosqlite's thread instead).
    """
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
    busy_timeout = 0 if inline else int(WRITER_TURN_TIMEOUT * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if read_only:
            _begin_deferred(conn)
        else:
            conn.exec_driver_sql(begin)

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_conn: Any, _record: Any, state: Any) -> None:
        """Roll back on return to the pool only a transaction still open.

        The pool's default rolls back every connection returned, also after a COMMIT:
        with aiosqlite one more hand-off to the connection's thread per unit of work for
        nothing (``pool_reset_on_return=None`` turns the default off; this replaces it).
        SQLite says whether a transaction is open without a statement.
        """
        if state.transaction_was_reset or not state.asyncio_safe:
            return
        if dbapi_conn.driver_connection.in_transaction:
            dbapi_conn.rollback()


class ReadOnlyViolation(RuntimeError):
    """A read-only unit of work tried to write."""


def _refused_write(exc: DBAPIError) -> bool:
    """The database refused a write because the transaction is read-only.

    Told apart so it surfaces as the bug it is (a 500), not as a "busy, retry" 503
    (an SQLite OperationalError is otherwise taken for a transient failure).
    """
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code == "25006":  # PostgreSQL: read_only_sql_transaction
        return True
    return getattr(exc.orig, "sqlite_errorcode", None) == _SQLITE_READONLY


_SQLITE_READONLY = 8


class _ReadOnlySession(Session):
    """The sync session behind ``Database.read_only``: an ORM flush of changes is refused."""


@event.listens_for(_ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlyViolation("a read-only unit of work tried to write (ORM flush)")


Bind: TypeAlias = str | AsyncSession | Session | Connection
"""Where a statement runs: a dialect name, or a session or connection of that database."""


def dialect_insert(bind: Bind) -> Any:
    """The dialect's ``insert`` construct, which has ON CONFLICT on both PostgreSQL and SQLite."""
    return pg_insert if _dialect_name(bind) == "postgresql" else sqlite_insert


def _dialect_name(bind: Bind) -> str:
    if isinstance(bind, str):
        return bind
    if isinstance(bind, Connection):
        return bind.dialect.name
    return bind.get_bind().dialect.name


T = TypeVar("T")


def per_dialect(build: Callable[[Any], T]) -> Callable[[Bind], T]:
    """Statements built once per dialect: ``build(insert)`` is given the dialect's insert
    construct (``dialect_insert``) the first time a database of that dialect asks.

    Constructing a statement costs more CPU than SQLAlchemy's cached compile and its run
    together, and a statement object built once keeps its cache key.
    """
    built: dict[str, T] = {}

    @functools.wraps(build)
    def statements(bind: Bind) -> T:
        name = _dialect_name(bind)
        found = built.get(name)
        if found is None:
            found = built[name] = build(dialect_insert(name))
        return found

    return statements


def mark(session: AsyncSession, flag: str) -> None:
    """Note on the session that its transaction did something listeners care about."""
    session.info[flag] = True


class Database:
    """One service's database: engine, session factory and a unit of work.

    ``unit_of_work`` is how entrypoints (HTTP requests, consumer batches, timers)
    own the transaction: commit on success, roll back on error, then tell the
    outbox relay there may be something to publish.
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, echo=echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Read-only units of work get their own engine (pool) whose connections cannot write.
        self.read_engine = create_engine(url, pool_size=pool_size, echo=echo, read_only=True)
        self.read_sessions = async_sessionmaker(
            self.read_engine, expire_on_commit=False, sync_session_class=_ReadOnlySession
        )
        # Short reads (``read_only(quick=True)``): on SQLite an engine of its own whose
        # statements run on the event loop's thread; elsewhere the read engine.
        self.quick_read_engine = (
            create_engine(url, pool_size=pool_size, echo=echo, read_only=True, inline=True)
            if self.sqlite
            else self.read_engine
        )
        self.quick_read_sessions = async_sessionmaker(
            self.quick_read_engine, expire_on_commit=False, sync_session_class=_ReadOnlySession
        )
        self._after_commit: list[tuple[str | None, Callable[[], None]]] = []
        self._after_commit_with: list[tuple[str, Callable[[Any], None]]] = []
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # the busy handler (1 ms growing to 100 ms a try), so a writer that commits and
        # begins again (a busy consumer) could starve the relay or the sender for seconds.
        # This process's writers queue here instead, first come first served, and only
        # other processes meet the busy handler. PostgreSQL needs no turn.
        self._writer_turn: asyncio.Lock | None = asyncio.Lock() if self.sqlite else None

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.url)

    def on_commit(self, callback: Callable[[], None], *, when: str | None = None) -> None:
        """Call ``callback`` after a unit of work commits.

        With ``when``, only after one whose session was marked with ``mark(session, when)``
        (e.g. the outbox relay wakes only when events were enqueued).
        """
        self._after_commit.append((when, callback))

    def on_commit_with(self, callback: Callable[[Any], None], *, when: str) -> None:
        """Call ``callback(value)`` after a unit of work commits whose session holds
        ``session.info[when] = value`` (e.g. the timers give the earliest due time the
        transaction scheduled, so the scheduler need not read it back)."""
        self._after_commit_with.append((when, callback))

    @asynccontextmanager
    async def unit_of_work(self, *, notify: bool = True) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            async with self._turn(), session.begin():
                yield session
            if notify:
                for when, callback in self._after_commit:
                    if when is None or session.info.get(when):
                        callback()
                for key, with_value in self._after_commit_with:
                    if (value := session.info.get(key)) is not None:
                        with_value(value)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        turn = self._writer_turn
        if turn is None:
            yield
            return
        try:
            async with asyncio.timeout(WRITER_TURN_TIMEOUT):
                await turn.acquire()
        except TimeoutError:
            # As SQLite's busy timeout would: a transient failure (503, or a retried batch).
            raise sa_exc.TimeoutError(
                f"no turn to write within {WRITER_TURN_TIMEOUT:.0f} s (SQLite, one writer)"
            ) from None
        try:
            yield
        finally:
            turn.release()

    @asynccontextmanager
    async def read_only(self, *, quick: bool = False) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads: no write lock, and any write in it fails.

        On SQLite it runs on ``read_engine``: a deferred ``BEGIN`` on a connection with
        ``PRAGMA query_only`` on, so it never queues behind the consumer, the relay or
        the timers for the write lock (in WAL mode it reads the last committed state
        while they write, and all its statements read the same state). On PostgreSQL it
        runs on ``read_engine`` too: connections in autocommit with
        ``default_transaction_read_only`` on, so each statement is a read-only transaction
        of its own. That is what the transaction gave at PostgreSQL's READ COMMITTED, where
        each statement sees what was committed when it began, without the BEGIN and
        COMMIT round trips (two of a 360° view's four). An ORM flush of pending changes
        is refused on every backend; a statement that writes fails with
        ``ReadOnlyViolation``. No ``on_commit`` callback runs.

        ``quick`` is for a few short statements (reads by key, a bounded page): on SQLite
        they run on the event loop's thread, without the hand-off to aiosqlite's thread
        that costs more CPU than such a read (``shared.sqlite.InlineCursor``). Never for a
        scan or a report: the loop serves nothing else meanwhile.
        """
        sessions = self.quick_read_sessions if quick else self.read_sessions
        async with sessions() as session:
            try:
                async with session.begin():
                    yield session
            except DBAPIError as exc:
                if _refused_write(exc):
                    message = f"a read-only unit of work tried to write: {exc.orig}"
                    raise ReadOnlyViolation(message) from exc
                raise

    async def ping(self) -> None:
        """Readiness: the database answers. On the read engine, so on SQLite it does not
        queue for the write lock behind a busy consumer (it did, and /readyz stalled)."""
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.read_engine.dispose()
        if self.quick_read_engine is not self.read_engine:
            await self.quick_read_engine.dispose()
