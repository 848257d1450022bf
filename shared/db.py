"""Engine, sessions and the unit of work. Built in a service's lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Shared naming convention so Alembic migrations name constraints the same on every DB.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    if not is_sqlite(url):
        return create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, echo=echo
        )
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so writers queue instead of deadlocking.

    pysqlite's own transaction handling is switched off so SQLAlchemy's BEGIN is the
    one that runs (this also makes SAVEPOINT work).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upsertable_insert(session: AsyncSession) -> Any:
    """The dialect's ``insert`` construct, which has ON CONFLICT on both PostgreSQL and SQLite."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


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
        self._after_commit: list[tuple[str | None, Callable[[], None]]] = []

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.url)

    def on_commit(self, callback: Callable[[], None], *, when: str | None = None) -> None:
        """Call ``callback`` after a unit of work commits.

        With ``when``, only after one whose session was marked with ``mark(session, when)``
        (e.g. the outbox relay wakes only when events were enqueued).
        """
        self._after_commit.append((when, callback))

    @asynccontextmanager
    async def unit_of_work(self, *, notify: bool = True) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            async with session.begin():
                yield session
            if notify:
                for when, callback in self._after_commit:
                    if when is None or session.info.get(when):
                        callback()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
