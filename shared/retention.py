"""Retention: rows kept only for a while, pruned a batch per transaction.

The inbox (``processed_events``) remembers every consumed event so a re-delivery is
skipped. A re-delivery can only come while Kafka still holds a copy of the event, so a
row older than that window protects nothing: ``keep_inbox``, a background task in every
service, deletes rows older than ``inbox_retention_days`` every
``inbox_prune_interval_seconds`` (docs/operations.md, "Inbox retention", says how the
window is bounded and why the default is what it is).

``prune`` is the loop every such task shares (loyalty prunes its Idempotency-Keys with
it too): one short transaction per batch, so on SQLite the other writers get their turn
between batches and on PostgreSQL no lock is held for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Integer, bindparam, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from shared import metrics
from shared.db import Database
from shared.plumbing import processed_events

log = logging.getLogger(__name__)

PRUNE_BATCH = 1000
"""Rows deleted per statement (and transaction)."""

DeleteBatch = Callable[[AsyncSession, int], Awaitable[int]]
"""Deletes up to ``limit`` rows in the session given; returns how many went."""


async def prune(
    db: Database, delete_batch: DeleteBatch, *, service: str, table: str, batch: int = PRUNE_BATCH
) -> int:
    """Call ``delete_batch`` in a transaction of its own, again and again, until it
    deletes fewer than ``batch`` rows; returns how many went in all, and counts them in
    ``keepwell_pruned_rows_total{service, table}`` as each transaction commits."""
    pruned = 0
    while True:
        async with db.unit_of_work(notify=False) as session:
            gone = await delete_batch(session, batch)
        metrics.PRUNED_ROWS.labels(service, table).inc(gone)
        pruned += gone
        if gone < batch:
            return pruned


async def every(seconds: float, work: Callable[[], Awaitable[object]], *, what: str) -> None:
    """Run ``work`` now and then every ``seconds``, for as long as the service runs. A
    failure (the database unreachable, say) is logged and tried again next time."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s failed; retrying at the next interval", what)
        await asyncio.sleep(seconds)


def _inbox_delete() -> Delete:
    """The oldest inbox rows recorded before ``:before``, up to ``:limit`` of them, in one
    statement (a range of the ``processed_at`` index, then the rows by primary key)."""
    t = processed_events
    oldest = (
        select(t.c.source, t.c.event_id)
        .where(t.c.processed_at < bindparam("before", type_=t.c.processed_at.type))
        .order_by(t.c.processed_at)
        .limit(bindparam("limit", type_=Integer()))
    )
    return delete(t).where(tuple_(t.c.source, t.c.event_id).in_(oldest))


_INBOX_DELETE = _inbox_delete()


async def prune_inbox(
    db: Database, *, before: datetime, service: str, batch: int = PRUNE_BATCH
) -> int:
    """Forget the events recorded in the inbox before ``before``; returns how many."""
    cutoff = before.astimezone(UTC)

    async def delete_batch(session: AsyncSession, limit: int) -> int:
        result = await session.execute(_INBOX_DELETE, {"before": cutoff, "limit": limit})
        return int(cast(CursorResult[Any], result).rowcount)

    pruned = await prune(db, delete_batch, service=service, table="processed_events", batch=batch)
    if pruned:
        log.info("pruned %d inbox rows recorded before %s", pruned, cutoff.isoformat())
    return pruned


async def keep_inbox(
    db: Database,
    *,
    service: str,
    retention_days: float,
    interval: float,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """The background task: every ``interval`` seconds from start-up on, prune the inbox
    rows recorded more than ``retention_days`` ago."""
    now = clock or (lambda: datetime.now(UTC))

    async def once() -> None:
        await prune_inbox(db, before=now() - timedelta(days=retention_days), service=service)

    await every(interval, once, what="pruning the inbox")
