"""Transactional outbox: events are rows written in the service's own transaction,
then relayed to Kafka by a background task and deleted once the broker has them.

A crash between commit and publish loses nothing (the row is still there); a crash
after publish but before the relay's commit re-publishes, and consumers de-duplicate by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import Boolean, Executable, delete, event, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared import metrics, tracing
from shared.db import Database, mark
from shared.events import Event
from shared.plumbing import outbox

log = logging.getLogger(__name__)

OUTBOX_FLAG = "keepwell.outbox"
RELAY_LOCK_ID = 0x6B77_6F62  # "kwob": one relay at a time per database, preserving order


async def enqueue(session: AsyncSession, *events: Event) -> None:
    """Add events to the outbox inside the caller's transaction."""
    if not events:
        return
    headers = [["content-type", "application/cloudevents+json"], *tracing.outgoing_headers()]
    await _add(
        session,
        [
            {
                "topic": e.TOPIC,
                "key": e.key,
                "value": e.to_json(),
                "headers": headers,
                "event_type": e.type,
            }
            for e in events
        ],
    )


async def enqueue_raw(
    session: AsyncSession,
    *,
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, str]],
    event_type: str | None = None,
) -> None:
    """Add an arbitrary message (a dead letter, a redrive) to the outbox."""
    row = {
        "topic": topic,
        "key": key,
        "value": value,
        "headers": [list(h) for h in headers],
        "event_type": event_type,
    }
    await _add(session, [row])


_DEFERRED = "keepwell.outbox_deferred"


def defer(session: AsyncSession) -> None:
    """From now on, hold this session's outbox rows and insert them at commit.

    A consumer batch that enqueues an event or two per message then writes them
    all in one multi-row statement instead of one each. Rows keep the order they
    were enqueued in (ids, hence publishing order, are assigned at the insert), a
    rolled-back transaction writes none, and every row is built (headers, trace
    context) when it is enqueued. Nothing may read the outbox back before commit.
    A savepoint cannot start while rows are held (its rollback could not tell
    them apart).
    """
    sync = session.sync_session
    if _DEFERRED in sync.info:
        return
    sync.info[_DEFERRED] = []
    event.listen(sync, "before_commit", _write_deferred)
    event.listen(sync, "after_rollback", _drop_deferred)
    event.listen(sync, "after_transaction_create", _no_savepoint_while_held)


async def _add(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    mark(session, OUTBOX_FLAG)
    held = session.sync_session.info.get(_DEFERRED)
    if held is not None:
        held.extend(rows)
    else:
        await session.execute(insert(outbox), rows)


def _write_deferred(session: Session) -> None:
    held = session.info.get(_DEFERRED)
    if held:
        session.info[_DEFERRED] = []
        session.execute(insert(outbox), held)


def _drop_deferred(session: Session) -> None:
    if session.info.get(_DEFERRED):
        session.info[_DEFERRED] = []


def _no_savepoint_while_held(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and session.info.get(_DEFERRED):
        raise RuntimeError("outbox rows are deferred: write them before starting a savepoint")


async def backlog(session: AsyncSession) -> tuple[int, float]:
    """Number of unpublished rows and the age in seconds of the oldest."""
    query = select(func.count(), func.min(outbox.c.created_at), func.now())
    count, oldest, now = (await session.execute(query)).one()
    if not count or oldest is None:
        return 0, 0.0
    if oldest.tzinfo is None and now.tzinfo is not None:
        now = now.replace(tzinfo=None)
    return int(count), max(0.0, (now - oldest).total_seconds())


class Relay:
    """Publishes outbox rows in id order, then deletes them.

    One batch is one transaction of one statement: ``DELETE … RETURNING`` the oldest
    rows (on PostgreSQL only if this relay takes the advisory lock, tested once in the
    same statement), send them, wait for the broker's acknowledgements, commit. A
    failed send or a crash before the commit rolls the delete back: the rows stay and
    go out again, in order.
    """

    def __init__(
        self,
        *,
        db: Database,
        producer: AIOKafkaProducer,
        service: str,
        topic_prefix: str,
        poll_interval: float,
        batch_size: int,
        max_backoff: float = 10.0,
    ) -> None:
        self._db = db
        self._producer = producer
        self._service = service
        self._prefix = topic_prefix
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._take = _take_statement(batch_size, lock=not db.sqlite)
        db.on_commit(self._wakeup.set, when=OUTBOX_FLAG)

    def notify(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        backoff = 0.0
        woken = True  # at start: rows may be waiting
        while not self._stopping:
            try:
                if woken or await self._anything_waiting():
                    while await self.publish_batch() == self._batch_size:
                        pass
                backoff = 0.0
            except Exception:
                backoff = min(self._max_backoff, max(0.2, backoff * 2))
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                metrics.RELAY_ERRORS.labels(self._service).inc()
                await asyncio.sleep(backoff)
                continue
            woken = await self._wait()
        await self.publish_batch()  # drain what the last requests committed

    async def _wait(self) -> bool:
        """Wait for a local commit (True), or for the periodic sweep (False) that picks
        up rows committed by another replica or before this process started."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
        woken = self._wakeup.is_set()
        self._wakeup.clear()
        return woken

    async def _anything_waiting(self) -> bool:
        """The sweep's question, in one statement on a connection of the read-only engine
        (no transaction to begin and commit on PostgreSQL, no ORM session): is there a
        row at all?"""
        async with self._db.read_engine.connect() as conn:
            return (await conn.execute(_ANY_ROW)).first() is not None

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows went out."""
        async with self._db.unit_of_work(notify=False) as session:
            # A commit whose wake-up comes after this point may not be in the statement's
            # snapshot and makes the loop go round again; one before it is in it, so its
            # wake-up costs no second, empty, batch.
            self._wakeup.clear()
            rows = sorted((await session.execute(self._take)).all(), key=lambda r: r.id)
            if not rows:
                return 0
            started = time.perf_counter()
            await self._send(rows)
        metrics.OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        metrics.RELAY_BATCH_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        return len(rows)

    async def _send(self, rows: Sequence[Any]) -> None:
        futures = []
        for row in rows:
            headers = [(k, v.encode()) for k, v in (row.headers or [])]
            futures.append(
                await self._producer.send(
                    self._prefix + row.topic, value=row.value, key=row.key, headers=headers
                )
            )
        await asyncio.gather(*futures)


_ANY_ROW = select(outbox.c.id).limit(1)


def _take_statement(batch_size: int, *, lock: bool) -> Executable:
    """``DELETE`` the ``batch_size`` oldest rows ``RETURNING`` them (in no set order).

    With ``lock`` (PostgreSQL) the statement deletes nothing unless this transaction
    takes the relay's advisory lock, which it then holds until it commits or rolls
    back: one relay at a time per database, preserving order. The lock is an
    uncorrelated scalar subquery, evaluated once before any row is read (the plan's
    one-time filter).
    """
    stmt = delete(outbox)
    if lock:
        took = func.pg_try_advisory_xact_lock(literal(RELAY_LOCK_ID), type_=Boolean)
        stmt = stmt.where(select(took).scalar_subquery())
    oldest = outbox.alias("oldest")
    stmt = stmt.where(outbox.c.id.in_(select(oldest.c.id).order_by(oldest.c.id).limit(batch_size)))
    o = outbox.c
    return stmt.returning(o.id, o.topic, o.key, o.value, o.headers)
