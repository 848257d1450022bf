"""The consumer runner: decode → validate → de-duplicate → handle → commit → offset.

* Offsets are committed to Kafka only after the database transaction that holds the
  effects has committed, so a crash re-delivers rather than loses. They are committed
  lazily: at most every ``commit_interval`` seconds while polls bring messages, and at
  once when a poll comes back empty, when the group takes partitions away (a
  rebalance) and on stop. A crash re-delivers what was handled since the last commit.
* Each event's (source, id) is recorded in ``processed_events`` in that same
  transaction, so a re-delivered event is recognised and skipped. The poll's ids are
  inserted first, in one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` statement: the
  ids it returns are the new events, the others were recorded before (or are a second
  copy in the poll).
* A poll's messages (every partition it returned, each in order) are handled in one
  transaction. If that fails for a reason that is not transient, the batch is
  replayed one message at a time so only the culprit is dead-lettered.
* Undecodable or invalid messages, and messages whose handler keeps failing, are
  written to the service's dead-letter topic (through the outbox, in the same
  transaction as the offset's progress) with the reason and the original bytes.
* Transient failures (database or broker unavailable) are retried with backoff
  without giving up the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from shared import logs, metrics, tracing
from shared.db import Database, dialect_insert
from shared.events import Event, InvalidEvent, dead_letter_topic, decode
from shared.key_lists import ManyRows
from shared.outbox import enqueue_raw
from shared.plumbing import processed_events
from shared.spacing import Spacing

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Any], Awaitable[None]]
Handlers = Mapping[type[Event], Handler]

MAX_HANDLER_ATTEMPTS = 3

E = TypeVar("E", bound=Event)


BATCH = "keepwell.batch"


def batch(session: AsyncSession) -> Sequence[Event]:
    """The events this transaction's handlers are given, in order (empty outside the runner).

    Lets a handler read ahead: e.g. load what the next events of its kind need in
    one query. A handler must still work without it (tests, one-by-one replays).
    """
    events: Sequence[Event] = session.info.get(BATCH, ())
    return events


_POSITIONS = "keepwell.batch_positions"


def batch_from(session: AsyncSession, event: Event) -> Sequence[Event] | None:
    """The batch from ``event`` (this very object) on; None if it is not in the batch.

    For a handler reading ahead over the events that follow it. The index of the
    batch's events is built once per batch, not once per call.
    """
    events = batch(session)
    positions = session.info.get(_POSITIONS)
    if not isinstance(positions, tuple) or positions[0] is not events:
        positions = (events, {id(e): i for i, e in enumerate(events)})
        session.info[_POSITIONS] = positions
    start: int | None = positions[1].get(id(event))
    return None if start is None else events[start:]


def run_from(session: AsyncSession, event: E) -> list[E] | None:
    """``event`` and the events of its type right after it in the batch: its *run*, up to
    the first event of another type. None if ``event`` is not in the batch.

    What a handler reads ahead for: the events before another type's handler runs
    (which may change what was read).
    """
    following = batch_from(session, event)
    if following is None:
        return None
    run: list[E] = []
    for e in following:
        if not isinstance(e, type(event)):
            break
        run.append(e)
    return run


class TransientError(Exception):
    """Raised by a handler for a failure that will pass (a dependency is down)."""


# PostgreSQL SQLSTATE classes and codes that pass: connection exceptions (08), too many
# connections / out of resources (53), operator intervention such as shutdown or
# (57), an object in use or a lock not available (55006, 55P03), and serialisation
# failures / deadlocks (40001, 40P01) which a retry resolves. A database closed to
# connections (ALTER DATABASE ... ALLOW_CONNECTIONS false, as during maintenance)
# answers 55000, a code PostgreSQL also uses for programming errors, so only that
# message counts.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57")
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55006", "55P03"})
_CLOSED_DATABASE = ("55000", "not currently accepting connections")


def is_transient(exc: BaseException) -> bool:
    """True for failures that pass by themselves: retry, never dead-letter."""
    if isinstance(exc, TransientError | OSError | TimeoutError | KafkaError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if code and (code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code in _TRANSIENT_SQLSTATES):
            return True
        if code == _CLOSED_DATABASE[0] and _CLOSED_DATABASE[1] in str(exc.orig):
            return True
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Failed:
    exc: Exception


@dataclass(frozen=True, slots=True)
class Item:
    record: ConsumerRecord[bytes, bytes]
    event: Event | None
    error: str | None


class ConsumerRunner:
    def __init__(
        self,
        *,
        db: Database,
        consumer: AIOKafkaConsumer,
        service: str,
        topic_prefix: str,
        handlers: Handlers,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        commit_interval: float = 1.0,
        batch_spacing: float = 0.0,
        max_batch: int = 500,
    ) -> None:
        self._db = db
        self._consumer = consumer
        self._service = service
        self._prefix = topic_prefix
        self._handlers = dict(handlers)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._commit_interval = commit_interval
        self._spacing = Spacing(batch_spacing)
        self._max_batch = max_batch
        # Offsets handled durably (their transaction committed) but not yet committed
        # to Kafka; the lock keeps a commit on revocation from racing one in the loop.
        self._handled: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._commit_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        # Built once: the inbox insert that answers which of a poll's events are new.
        insert_into = dialect_insert(db.engine.dialect.name)
        t = processed_events
        self._record_new = ManyRows(
            t, ("source", "event_id", "event_type"), returning=(t.c.source, t.c.event_id)
        )
        self._mark_parked = insert_into(t).on_conflict_do_nothing().returning(t.c.event_id)
        self._consumed: dict[tuple[str, str, str], Counter] = {}

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        self._listen_for_revocations()
        await self._start_consumer()
        try:
            while not self.stopping:
                try:
                    await self._poll_once()
                except KafkaError as exc:
                    metrics.CONSUMER_ERRORS.labels(self._service).inc()
                    log.warning("broker error while polling (%s); retrying", exc)
                    await self._pause(self._backoff_initial)
        finally:
            try:
                await self._commit_handled(final=True)
            finally:
                self.finished.set()
                await self._consumer.stop()

    async def _poll_once(self) -> None:
        """Handle everything a poll returned in one transaction; commit offsets lazily.

        Each partition's messages keep their order (partitions follow one another), so
        handlers see the same sequence per partition as one batch each, with one BEGIN,
        inbox check, inbox insert and COMMIT for the poll instead of one per partition.
        If the poll fails as a whole, its messages are replayed one at a time. Once its
        transaction has committed, the poll's offsets join those waiting to be committed
        to Kafka, which happens when ``commit_interval`` has passed since the last
        commit, or on the next empty poll. Nothing of the poll is committed when
        stopping mid-way: it is re-delivered to whoever owns its partitions next, and
        the inbox skips what was already handled.
        """
        batches = await self._consumer.getmany(timeout_ms=250)
        if self.stopping:
            return
        if not batches:
            await self._commit_handled()  # idle: nothing to gain by waiting
            return
        batches = await self._gather(batches)
        if self.stopping:
            return
        self._spacing.started()
        records = [r for partition in batches.values() for r in partition]
        if not await self._process(records):
            return
        assigned = self._consumer.assignment()  # a rebalance may have moved some
        for tp, rs in batches.items():
            self._handled[tp] = rs[-1].offset + 1
            if tp in assigned:
                self._record_lag(tp, rs[-1].offset)
        if time.monotonic() - self._last_commit >= self._commit_interval:
            await self._commit_handled()

    async def _gather(
        self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Space batches out: while polls come in a steady stream, one that comes less
        than ``batch_spacing`` after the last batch began waits out the rest, then takes
        what arrived meanwhile (up to ``max_batch`` records in all) into the same batch
        (``shared.spacing.Spacing``).

        Under a steady load that polls a few messages at a time, this trades up to
        ``batch_spacing`` of latency per hop for far fewer transactions (each with its
        BEGIN, inbox insert, handler statements and COMMIT) and fewer relay batches
        after them. Messages after a quiet spell, or a poll that is already full, do
        not wait. Each partition's records stay in order: a later poll of a partition
        follows its earlier one.
        """
        count = sum(len(rs) for rs in batches.values())
        wait = self._spacing.wait()
        if wait <= 0 or count >= self._max_batch:
            return batches
        await self._pause(wait)
        if self.stopping:
            return batches
        more = await self._consumer.getmany(timeout_ms=0, max_records=self._max_batch - count)
        if not more:
            return batches
        merged = {tp: list(rs) for tp, rs in batches.items()}
        for tp, rs in more.items():
            # A partition taken away and given back meanwhile is fetched again from its
            # committed offset: records already in hand are not taken twice.
            held = merged.setdefault(tp, [])
            last = held[-1].offset if held else -1
            held.extend(r for r in rs if r.offset > last)
        return {tp: rs for tp, rs in merged.items() if rs}

    async def _commit_handled(self, *, final: bool = False) -> None:
        """Commit the offsets handled so far, of the partitions still assigned, in one
        request; losing a partition meanwhile is normal, not an error.

        Every offset handled is safe to commit: the messages before it were handled,
        by this runner since it was assigned the partition, or before that by whoever
        committed where it started. The new owner of a partition re-delivers from the
        last committed offset and skips what was already recorded in processed_events.
        A broker error in the loop keeps the offsets for the next commit and is raised
        (the loop backs off); on stop or revocation it is logged: the next owner
        re-reads a little more.
        """
        async with self._commit_lock:
            handled, self._handled = self._handled, {}
            assigned = self._consumer.assignment()
            offsets = {tp: o for tp, o in handled.items() if tp in assigned}
            if not offsets:
                return
            self._last_commit = time.monotonic()
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                log.info("offsets %s not committed (%s); the new owner resumes", offsets, exc)
            except KafkaError as exc:
                if final:
                    log.warning("offsets %s not committed (%s); they are re-read", offsets, exc)
                    return
                for tp, offset in offsets.items():
                    self._handled.setdefault(tp, offset)  # unless a later poll moved it on
                raise

    def _listen_for_revocations(self) -> None:
        """Subscribe again to the same topics, with a listener that commits what was
        handled before the group hands the partitions to another member."""
        topics = self._consumer.subscription()
        if topics:
            self._consumer.subscribe(topics=sorted(topics), listener=_CommitOnRevoke(self))

    async def _partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Called by aiokafka before the group rebalances (fetching has stopped).

        A poll still being handled is not waited for (its handler may take long, and
        the group would wait with it): its offsets are committed later if its
        partitions are still this runner's, and re-read by their next owner if not.
        """
        if revoked:  # empty on the first join
            await self._commit_handled(final=True)

    async def _pause(self, seconds: float) -> None:
        waiter = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait([waiter], timeout=seconds)
        waiter.cancel()

    async def _start_consumer(self) -> None:
        delay = self._backoff_initial
        while True:
            try:
                await self._consumer.start()
                self.started.set()
                return
            except KafkaError:
                if self.stopping:
                    raise
                log.warning("broker unreachable; retrying consumer start in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(self._backoff_max, delay * 2)

    def _record_lag(self, tp: TopicPartition, offset: int) -> None:
        high = self._consumer.highwater(tp)
        if high is not None:
            metrics.CONSUMER_LAG.labels(self._service, tp.topic, tp.partition).set(
                max(0, high - offset - 1)
            )

    async def _process(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> bool:
        """Handle a poll's messages durably. False only when stopping mid-retry."""
        items = [self._decode(r) for r in records]
        started = time.perf_counter()
        outcome = await self._with_retry(lambda: self._apply_batch(items))
        if outcome is None:
            return False
        if isinstance(outcome, Failed):
            for item in items:
                if not await self._process_one(item):
                    return False
        metrics.CONSUMER_BATCH_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        return True

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Item:
        try:
            return Item(record, decode(record.value), None)
        except InvalidEvent as exc:
            return Item(record, None, exc.reason)

    async def _with_retry(self, attempt: Callable[[], Awaitable[bool]]) -> bool | Failed | None:
        """Run ``attempt`` until it succeeds (True), fails for good (Failed) or we stop (None).

        Transient failures are retried with exponential backoff for as long as it takes.
        """
        delay = self._backoff_initial
        while not self.stopping:
            try:
                return await attempt()
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                if not is_transient(exc):
                    return Failed(exc)
                metrics.CONSUMER_ERRORS.labels(self._service).inc()
                log.warning(
                    "transient failure (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await self._pause(delay)
                delay = min(self._backoff_max, delay * 2)
        return None

    async def _apply_batch(self, items: Sequence[Item]) -> bool:
        if all(i.event is not None and type(i.event) not in self._handlers for i in items):
            # Only events this service has no handler for: no transaction to open.
            for item in items:
                assert item.event is not None
                self._count(item.record, item.event, "ignored")
            return True
        async with self._db.unit_of_work() as session:
            verdicts = await self._verdicts(session, items)
            session.info[BATCH] = tuple(
                item.event for item, v in zip(items, verdicts, strict=True) if v == "handled"
            )
            for item, verdict in zip(items, verdicts, strict=True):
                await self._apply(session, item, verdict)
        return True

    async def _process_one(self, item: Item) -> bool:
        """Handle one message alone; after repeated failures, dead-letter it."""
        outcome: bool | Failed | None = None
        for attempt in range(1, MAX_HANDLER_ATTEMPTS + 1):
            outcome = await self._with_retry(lambda: self._apply_batch([item]))
            if not isinstance(outcome, Failed):
                return outcome is True
            log.warning(
                "event failed (attempt %d of %d): %r", attempt, MAX_HANDLER_ATTEMPTS, outcome.exc
            )
        assert isinstance(outcome, Failed)
        reason = f"handler failed: {type(outcome.exc).__name__}: {outcome.exc}"[:1000]
        while True:
            parked = await self._with_retry(lambda: self._park(item.record, reason))
            if not isinstance(parked, Failed):
                return parked is True
            # Cannot even write the dead letter: keep the offset where it is and retry,
            # rather than lose the message or stop consuming.
            log.error("could not dead-letter a message: %r; retrying", parked.exc)
            await self._pause(self._backoff_max)

    async def _park(self, record: ConsumerRecord[bytes, bytes], reason: str) -> bool:
        async with self._db.unit_of_work() as session:
            await self._dead_letter(session, record, reason)
        return True

    async def _verdicts(self, session: AsyncSession, items: Sequence[Item]) -> list[str]:
        """What becomes of each message: dead-letter, ignored, duplicate or handled.

        The (source, id) of every event the service handles is inserted into
        ``processed_events`` in one statement (``ON CONFLICT DO NOTHING``, in key order
        so two replicas re-reading a partition lock the same rows in the same order); it
        returns the keys that were new. The first copy of a new event is handled; a key
        recorded before, or a second copy in the poll, is a duplicate. The rows belong
        to this transaction: if it rolls back, so do they.
        """
        types: dict[tuple[str, str], str] = {}
        for item in items:
            event = item.event
            if event is not None and type(event) in self._handlers:
                types.setdefault((event.source, event.id), event.type)
        new: set[tuple[str, str]] = set()
        if types:
            rows = [
                {"source": source, "event_id": event_id, "event_type": types[source, event_id]}
                for source, event_id in sorted(types)
            ]
            new = {(r.source, r.event_id) for r in await self._record_new.execute(session, rows)}
        verdicts: list[str] = []
        for item in items:
            event = item.event
            if event is None:
                verdicts.append("dead-letter")
            elif type(event) not in self._handlers:
                verdicts.append("ignored")
            elif (event.source, event.id) in new:
                new.discard((event.source, event.id))
                verdicts.append("handled")
            else:
                verdicts.append("duplicate")
        return verdicts

    async def _apply(self, session: AsyncSession, item: Item, verdict: str) -> None:
        record, event = item.record, item.event
        if event is None:
            await self._dead_letter(session, record, item.error or "invalid event")
            return
        if verdict != "handled":
            self._count(record, event, verdict)
            return
        handler = self._handlers[type(event)]
        token = logs.event_id.set(event.id)
        span = {"messaging.message.id": event.id, "cloudevents.event_type": event.type}
        try:
            with tracing.consuming(record.topic, record.headers, span):
                await handler(session, event)
        finally:
            logs.event_id.reset(token)
        self._count(record, event, "handled")

    def _count(self, record: ConsumerRecord[bytes, bytes], event: Event, verdict: str) -> None:
        # The labelled counter is looked up once per (topic, type, verdict): ``labels``
        # takes a lock and builds a key, about half of what the runner spent per event.
        key = (record.topic, event.type, verdict)
        counter = self._consumed.get(key)
        if counter is None:
            counter = self._consumed[key] = metrics.EVENTS_CONSUMED.labels(self._service, *key)
        counter.inc()

    async def _first_dead_letter(
        self, session: AsyncSession, record: ConsumerRecord[bytes, bytes]
    ) -> bool:
        """Mark (topic, partition, offset) as parked; False if it already was.

        A message without a usable event id is still parked once: the marker is
        written in the same transaction as the dead letter, so a replay after a crash
        or a rebalance (another replica re-reading an uncommitted offset) finds it."""
        source, position = f"deadletter:{record.topic}"[:256], f"{record.partition}:{record.offset}"
        marker = {"source": source, "event_id": position, "event_type": "dead-letter"}
        if (await session.execute(self._mark_parked, marker)).first() is None:
            log.info("message already dead-lettered", extra={"topic": record.topic})
            return False
        return True

    async def _dead_letter(
        self, session: AsyncSession, record: ConsumerRecord[bytes, bytes], reason: str
    ) -> None:
        if not await self._first_dead_letter(session, record):
            return
        headers = [(k, v.decode("utf-8", "replace")) for k, v in (record.headers or ())]
        headers += [
            ("x-dead-letter-reason", reason),
            ("x-dead-letter-service", self._service),
            ("x-original-topic", record.topic),
            ("x-original-partition", str(record.partition)),
            ("x-original-offset", str(record.offset)),
            ("x-failed-at", datetime.now(UTC).isoformat()),
        ]
        await enqueue_raw(
            session,
            topic=dead_letter_topic(self._service),
            key=record.key,
            value=record.value or b"",
            headers=headers,
        )
        short = reason.split(":", 1)[0][:60]
        metrics.EVENTS_DEAD_LETTERED.labels(self._service, record.topic, short).inc()
        log.warning(
            "dead-lettered message",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
