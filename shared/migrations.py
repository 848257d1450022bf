"""Alembic helpers: one migration history per service, same environment code for all."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
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


def widen_strings(table: str, widths: Mapping[str, tuple[int, int]]) -> None:
    """Widen VARCHAR columns of ``table`` in place: ``{column: (old length, new length)}``.

    PostgreSQL alters the column type (widening a VARCHAR rewrites neither the table nor
    its indexes). SQLite enforces no length and keeps the declared type only in the
    table's CREATE statement, so that text is edited (SQLite's own procedure for schema
    changes that leave the stored rows as they are: writable_schema, then a new
    schema_version). A batch copy is no option there: it drops the old table, and with
    foreign keys on, dropping a table that others reference ON DELETE CASCADE deletes
    their rows too (profile's customers). The downgrade (new, old) fails on PostgreSQL
    if a stored value is longer than the old length, rather than cut it.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        for column, (old, new) in widths.items():
            op.alter_column(table, column, existing_type=sa.String(old), type_=sa.String(new))
        return
    find = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"
    sql = bind.execute(sa.text(find), {"table": table}).scalar_one()
    for column, (old, new) in widths.items():
        declared = re.compile(rf'((?<![\w"])"?{re.escape(column)}"?\s+VARCHAR)\({old}\)', re.I)
        sql, found = declared.subn(rf"\g<1>({new})", sql)
        if found != 1:
            raise RuntimeError(f"{table}.{column} is not declared VARCHAR({old}) once")
    version = bind.execute(sa.text("PRAGMA schema_version")).scalar_one()
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    update = "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :table"
    bind.execute(sa.text(update), {"sql": sql, "table": table})
    bind.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    bind.execute(sa.text("PRAGMA writable_schema = OFF"))
