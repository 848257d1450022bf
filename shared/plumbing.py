"""Tables every service database holds for messaging: the outbox and the inbox.

They live in their own MetaData, which each service's Alembic environment
includes next to its own tables.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    func,
)

from shared.db import UtcDateTime, new_metadata

plumbing_metadata = new_metadata()

BigId = BigInteger().with_variant(Integer(), "sqlite")

outbox = Table(
    "outbox",
    plumbing_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("topic", String(255), nullable=False, comment="Topic name without the prefix"),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=True),
    Column("event_type", String(100), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

processed_events = Table(
    "processed_events",
    plumbing_metadata,
    Column("source", String(256), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column(
        "processed_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        index=True,  # shared.retention deletes the oldest rows
    ),
)

timers = Table(
    "timers",
    plumbing_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("key", String(255), nullable=False, unique=True, comment="Idempotency key"),
    Column("due_at", UtcDateTime, nullable=False, index=True),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(1000), nullable=True),
    Column("failed", Integer, nullable=False, server_default="0", comment="1 = gave up"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
