"""Transactional outbox: events are rows written in the service's own transaction,
then relayed to Kafka by a background task and deleted once the broker has them.

A crash between commit and publish loses nothing (the row is still there); a crash
after publish but before the relay's commit re-publishes, and consumers de-duplicate by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    Boolean,
    Executable,
    delete,
    event,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared import metrics, tracing
from shared.db import Database, mark
from shared.events import Event
from shared.key_lists import one_of
from shared.plumbing import outbox
from shared.spacing import Spacing

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

    On PostgreSQL one batch is one transaction of one statement: ``DELETE … RETURNING``
    the oldest rows (only if this relay takes the advisory lock, tested once in the same
    statement), send them, wait for the broker's acknowledgements, commit. A failed send
    or a crash before the commit rolls the delete back: the rows stay and go out again,
    in order.

    On SQLite, whose one write lock is the whole database's, the relay does not hold it
    while the broker acknowledges. Under an exclusive lock on a file next to the database
    (``RelayLock``: one relay at a time across processes, released by the kernel if the
    process dies) it reads the oldest rows on the read-only engine, sends them, waits for
    the acknowledgements, and only then deletes them in a short write transaction. A
    failed send, or a crash between the send and the delete, leaves the rows, which go
    out again, in order; consumers drop the copies by event id.
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
        batch_spacing: float = 0.0,
    ) -> None:
        self._db = db
        self._producer = producer
        self._service = service
        self._prefix = topic_prefix
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._spacing = Spacing(batch_spacing)  # between batches that found rows
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._take = _take_statement(batch_size)  # PostgreSQL's batch
        self._oldest = _oldest_statement(batch_size)  # SQLite's
        self._lock = RelayLock.beside(db.url) if db.sqlite else None
        self._unforgotten: list[int] = []  # SQLite: sent, acknowledged, not yet deleted
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
                    await self._space_out()
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
        try:
            await self.publish_batch()  # drain what the last requests committed
        finally:
            if self._lock is not None:
                self._lock.release()  # as the process's exit would

    async def _space_out(self) -> None:
        """While batches come in a steady stream, wait until ``batch_spacing`` has passed
        since the last batch that found rows began (``shared.spacing.Spacing``): the
        commits of that time join this batch (its statement clears the wake-up they
        set), so a steady stream of small commits costs one transaction and one produce
        request per spacing instead of one per commit. Commits after a quiet spell go
        out at once."""
        wait = self._spacing.wait()
        if wait > 0 and not self._stopping:
            await asyncio.sleep(wait)

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
        """Publish up to one batch; returns how many rows went out (0 also when another
        relay of the same database is publishing)."""
        started = time.perf_counter()
        began = time.monotonic()
        if self._lock is None:
            count = await self._take_and_send()
        elif not self._lock.take():
            count = 0
        else:
            try:
                count = await self._send_then_delete()
            finally:
                if not self._unforgotten:
                    self._lock.release()
        if count:
            self._spacing.started(began)
            metrics.OUTBOX_PUBLISHED.labels(self._service).inc(count)
            elapsed = time.perf_counter() - started
            metrics.RELAY_BATCH_SECONDS.labels(self._service).observe(elapsed)
        return count

    async def _take_and_send(self) -> int:
        """PostgreSQL: delete the batch, send it, commit once the broker has it."""
        async with self._db.unit_of_work(notify=False) as session:
            # A commit whose wake-up comes after this point may not be in the statement's
            # snapshot and makes the loop go round again; one before it is in it, so its
            # wake-up costs no second, empty, batch.
            self._wakeup.clear()
            rows = sorted((await session.execute(self._take)).all(), key=lambda r: r.id)
            if rows:
                await self._send(rows)
        return len(rows)

    async def _send_then_delete(self) -> int:
        """SQLite, holding the relay lock: read the batch (no write lock), send it, and
        once the broker has it, delete it in a transaction of one statement.

        If that delete fails (the database is locked or read-only for a while), the
        relay keeps the lock and the sent rows' ids, and its next batch starts by
        deleting them again instead of reading and sending them a second time: an
        outage of the database does not re-publish the batch every retry, and no other
        replica takes them over meanwhile. Only the process's death (the kernel drops
        the lock) leaves them for another relay to send again."""
        if self._unforgotten:
            await self._forget(self._unforgotten)
            self._unforgotten = []
        self._wakeup.clear()  # as in _take_and_send: the read below starts the snapshot
        async with self._db.read_engine.connect() as conn:
            rows = (await conn.execute(self._oldest)).all()
        if not rows:
            return 0
        await self._send(rows)
        self._unforgotten = [r.id for r in rows]
        await self._forget(self._unforgotten)
        self._unforgotten = []
        return len(rows)

    async def _forget(self, ids: list[int]) -> None:
        """Delete rows the broker has acknowledged (SQLite)."""
        async with self._db.unit_of_work(notify=False) as session:
            await session.execute(_FORGET, {"ids": ids})

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
_FORGET = delete(outbox).where(one_of(outbox.c.id, param="ids"))


class RelayLock:
    """SQLite's stand-in for PostgreSQL's advisory lock: an exclusive ``flock`` on a file
    next to the database, tried without waiting and held for one batch (read, send,
    delete), or until a failed delete of a sent batch succeeds. One relay at a time per
    database file, across processes and within one (each take opens the file anew, and
    ``flock`` locks belong to the open file). The kernel drops it when its holder dies, so
    a crashed relay blocks nobody. It needs every relay of the file to take it: all
    replicas must run this code (``docs/architecture.md``).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def beside(cls, url: str) -> RelayLock:
        database = make_url(url).database
        in_memory = not database or database == ":memory:"
        return cls(None if in_memory else f"{database}-relay.lock")

    @property
    def held(self) -> bool:
        return self.path is None or self._fd is not None

    def take(self) -> bool:
        """Whether this relay holds the lock now, taking it if it can without waiting (an
        in-memory database has no other process to share it with: always)."""
        if self.held:
            return True
        assert self.path is not None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the file releases the lock


def _oldest_statement(batch_size: int) -> Executable:
    """The ``batch_size`` oldest rows, in id order (SQLite: read, then deleted once sent)."""
    o = outbox.c
    return select(o.id, o.topic, o.key, o.value, o.headers).order_by(o.id).limit(batch_size)


def _take_statement(batch_size: int) -> Executable:
    """PostgreSQL: ``DELETE`` the ``batch_size`` oldest rows ``RETURNING`` them (in no set
    order), and nothing unless this transaction takes the relay's advisory lock, which
    it then holds until it commits or rolls back: one relay at a time per database,
    preserving order. The lock is an uncorrelated scalar subquery, evaluated once before
    any row is read (the plan's one-time filter).
    """
    took = func.pg_try_advisory_xact_lock(literal(RELAY_LOCK_ID), type_=Boolean)
    oldest = outbox.alias("oldest")
    stmt = (
        delete(outbox)
        .where(select(took).scalar_subquery())
        .where(outbox.c.id.in_(select(oldest.c.id).order_by(oldest.c.id).limit(batch_size)))
    )
    o = outbox.c
    return stmt.returning(o.id, o.topic, o.key, o.value, o.headers)
