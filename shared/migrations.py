"""Alembic helpers: one migration history per service, same environment code for all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import UtcDateTime, create_engine, is_sqlite
from shared.plumbing import plumbing_metadata


def alembic_config(migrations_dir: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(migrations_dir: Path, url: str, revision: str = "head") -> None:
    """Bring a database up to ``revision`` (blocking; call from a thread in async code)."""
    command.upgrade(alembic_config(migrations_dir, url), revision)


async def upgrade_async(migrations_dir: Path, url: str) -> None:
    await asyncio.to_thread(upgrade, migrations_dir, url)


def run_env(service_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    targets = [service_metadata, plumbing_metadata]
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=targets, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, targets))


async def _run_online(url: str, targets: list[MetaData]) -> None:
    if is_sqlite(url):
        engine = create_engine(url)
    else:
        engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_migrate, targets, is_sqlite(url))
    await engine.dispose()


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Write project column types as their plain SQLAlchemy equivalents in migrations."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _migrate(conn: Connection, targets: list[MetaData], sqlite: bool) -> None:
    context.configure(
        connection=conn,
        target_metadata=targets,
        render_as_batch=sqlite,
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


INBOX_AGE_INDEX = "ix_processed_events_processed_at"


def index_inbox_by_age() -> None:
    """The migration every service runs to index ``processed_events.processed_at`` (the
    inbox's pruning finds its oldest rows by it), from inside its ``upgrade()``."""
    if op.get_bind().dialect.name == "postgresql":
        # The inbox is every service's largest table: build the index without blocking the
        # consumers' inserts meanwhile. CONCURRENTLY cannot run inside a transaction; if it
        # fails it leaves an INVALID index behind: DROP INDEX it and migrate again.
        with op.get_context().autocommit_block():
            op.create_index(
                INBOX_AGE_INDEX, "processed_events", ["processed_at"], postgresql_concurrently=True
            )
        return
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index(INBOX_AGE_INDEX, ["processed_at"], unique=False)


def unindex_inbox_by_age() -> None:
    """``index_inbox_by_age``'s downgrade."""
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index(INBOX_AGE_INDEX)
