"""Durable timers: delayed work that survives restarts and catches up after downtime.

A timer is a row in the service's own database, written in the same transaction
as whatever scheduled it. The ``Scheduler`` background task fires due timers:
each in its own transaction that runs the handler and deletes the timer, so a
timer's effect happens once. A handler that fails is retried with backoff;
after ``max_attempts`` the timer is marked failed and kept for an operator.

Keys are idempotency keys: scheduling the same key twice keeps the first timer
(or moves it, with ``replace=True``); ``cancel`` removes a timer whose reason is gone.

The scheduler reads the database when a timer it knows of is due (its last read told
it the earliest pending one; a local commit tells it the earliest it scheduled), and
at least every ``poll_interval`` for what it cannot know: timers scheduled by another
replica, or moved by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, false, select, true, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared import metrics
from shared.consumer import is_transient
from shared.db import Database, dialect_insert, mark, per_dialect
from shared.plumbing import timers

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
TIMERS_FLAG = "keepwell.timers"
TIMERS_DUE = "keepwell.timers_due"  # the earliest due time a transaction scheduled


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Timer:
    id: int
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int


TimerHandler = Callable[[AsyncSession, Timer], Awaitable[None]]


async def schedule(
    session: AsyncSession,
    *,
    kind: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any],
    replace: bool = False,
) -> None:
    """Schedule ``kind`` at ``due_at`` unless a timer with ``key`` exists (or move it)."""
    mark(session, TIMERS_FLAG)
    _note_due(session, due_at)
    values = {"kind": kind, "key": key, "due_at": due_at, "payload": payload}
    held = session.sync_session.info.get(_DEFERRED)
    if held is not None and not replace:
        held.setdefault(key, values)  # the first one stays, as ON CONFLICT DO NOTHING
        return
    await write_held(session)
    stmt = dialect_insert(session)(timers).values(**values)
    if replace:
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"due_at": due_at, "payload": payload, "attempts": 0, "failed": 0},
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
    await session.execute(stmt)


def _note_due(session: AsyncSession, due_at: datetime) -> None:
    """Keep the earliest due time of the transaction, for the scheduler at commit."""
    if due_at.tzinfo is None:
        return  # refused by the insert (UtcDateTime); nothing to wake for
    earliest: datetime | None = session.info.get(TIMERS_DUE)
    if earliest is None or due_at < earliest:
        session.info[TIMERS_DUE] = due_at


async def cancel(session: AsyncSession, *, key: str) -> bool:
    """Remove a pending timer; True if there was one."""
    await write_held(session)
    result = await session.execute(delete(timers).where(timers.c.key == key))
    return bool(getattr(result, "rowcount", 0))


async def pending(session: AsyncSession, *, key: str) -> Timer | None:
    await write_held(session)
    row = (await session.execute(select(timers).where(timers.c.key == key))).first()
    return _timer(row) if row else None


_DEFERRED = "keepwell.timers_deferred"


def defer(session: AsyncSession) -> None:
    """From now on, hold this session's new timers and insert them in one statement.

    For a consumer batch that schedules a timer or two per message. Held are the
    ``schedule`` calls without ``replace``; they are inserted (ON CONFLICT DO
    NOTHING, in key order) at commit, or as soon as this module is asked anything
    else about timers in the session (``cancel``, ``pending``, a replacing
    ``schedule``), so every statement it runs sees them as if written at once.
    Nothing else may read the session's timers table before commit. A rolled-back
    transaction writes none; a savepoint cannot start while timers are held.
    """
    sync = session.sync_session
    if _DEFERRED in sync.info:
        return
    sync.info[_DEFERRED] = {}
    event.listen(sync, "before_commit", _write_held_at_commit)
    event.listen(sync, "after_rollback", _drop_held)
    event.listen(sync, "after_transaction_create", _no_savepoint_while_held)


async def write_held(session: AsyncSession) -> None:
    """Insert the timers ``defer`` is holding now (nothing if none)."""
    if rows := _take_held(session.sync_session):
        await session.execute(_held_insert(session.sync_session), rows)


def _take_held(session: Session) -> list[dict[str, Any]]:
    held: dict[str, dict[str, Any]] | None = session.info.get(_DEFERRED)
    if not held:
        return []
    session.info[_DEFERRED] = {}
    return [held[k] for k in sorted(held)]


@per_dialect
def _held_insert(insert: Any) -> Any:
    """One single-row insert, executed for all the held rows at once: its compiled form
    is cached, where a multi-row VALUES would be compiled again for each row count."""
    return insert(timers).on_conflict_do_nothing(index_elements=["key"])


def _write_held_at_commit(session: Session) -> None:
    if rows := _take_held(session):
        session.execute(_held_insert(session), rows)


def _drop_held(session: Session) -> None:
    if session.info.get(_DEFERRED):
        session.info[_DEFERRED] = {}


def _no_savepoint_while_held(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested and session.info.get(_DEFERRED):
        raise RuntimeError("timers are deferred: write them (write_held) before a savepoint")


def _timer(row: Any) -> Timer:
    return Timer(row.id, row.kind, row.key, row.due_at, dict(row.payload), row.attempts)


def _sweep_statement(batch_size: int) -> Any:
    """Up to ``batch_size`` timers due at ``:now`` and the first one after them, each row
    telling which it is (``is_due``); built once, so its compiled form is reused."""
    t = timers
    now = bindparam("now", type_=t.c.due_at.type)
    columns = (t.c.id, t.c.kind, t.c.key, t.c.due_at, t.c.payload, t.c.attempts)
    order = (t.c.due_at, t.c.id)
    due = (
        select(*columns, true().label("is_due"))
        .where(t.c.due_at <= now, t.c.failed == 0)
        .order_by(*order)
        .limit(batch_size)
    )
    upcoming = (
        select(*columns, false().label("is_due"))
        .where(t.c.due_at > now, t.c.failed == 0)
        .order_by(*order)
        .limit(1)
    )
    return union_all(due.subquery().select(), upcoming.subquery().select())


class Scheduler:
    """Fires due timers through their kind's handler, oldest first.

    It reads the timers table when the earliest timer it knows of is due, when a local
    commit scheduled one due before that, on ``notify``, and at the latest
    ``poll_interval`` after its last read (another replica's timers). One read is one
    read-only statement: the due timers (up to ``batch_size``) and the next one after
    them.
    """

    def __init__(
        self,
        *,
        db: Database,
        handlers: Mapping[str, TimerHandler],
        service: str,
        clock: Clock = wall_clock,
        poll_interval: float = 1.0,
        batch_size: int = 200,
        max_attempts: int = 10,
        max_backoff: float = 600.0,
    ) -> None:
        self._db = db
        self._handlers = dict(handlers)
        self._service = service
        self._clock = clock
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._poked = False
        # The earliest due time of a timer not fired yet, as far as this process knows
        # (None: none known). Reset before each read, which then sets it.
        self._next_due: datetime | None = None
        self._sweep = _sweep_statement(batch_size)
        db.on_commit_with(self._scheduled, when=TIMERS_DUE)

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    def notify(self) -> None:
        self._poked = True
        self._wakeup.set()

    def _scheduled(self, due_at: datetime) -> None:
        """A local commit scheduled a timer due at ``due_at`` (its earliest)."""
        if self._later(due_at):
            self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                while not self._stopping and await self.fire_due() == self._batch_size:
                    pass
            except Exception:
                log.exception("timer sweep failed; retrying")
                self._next_due = None  # not known: read again after the poll interval
            await self._sleep()

    async def _sleep(self) -> None:
        """Until the earliest known timer is due, ``notify``, or ``poll_interval``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._poll_interval
        while not self._stopping and not self._poked:
            wait = deadline - loop.time()
            if self._next_due is not None:
                wait = min(wait, (self._next_due - self._clock()).total_seconds())
            if wait <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
            self._wakeup.clear()
        self._poked = False

    async def fire_due(self) -> int:
        """Fire every timer due now (one batch); returns how many were attempted."""
        now = self._clock()
        self._next_due = None  # from here on a local commit's wake-up is kept
        due, upcoming = await self._claim(now)
        if len(due) == self._batch_size:
            upcoming = now  # there may be more due
        self._later(upcoming)
        oldest = due[0].due_at if due else now
        metrics.SCHEDULER_LAG.labels(self._service).set(max(0.0, (now - oldest).total_seconds()))
        for timer in due:
            if self._stopping:
                break
            await self._fire(timer)
        return len(due)

    def _later(self, due_at: datetime | None) -> bool:
        """Note a timer due at ``due_at``; True if it is now the earliest known."""
        if due_at is None or (self._next_due is not None and due_at >= self._next_due):
            return False
        self._next_due = due_at
        return True

    async def _claim(self, now: datetime) -> tuple[list[Timer], datetime | None]:
        """The timers due at ``now`` (oldest first, up to a batch) and when the next one
        after them is due (None if there is none), in one statement on a connection of
        the read-only engine."""
        async with self._db.read_engine.connect() as conn:
            rows = (await conn.execute(self._sweep, {"now": now})).all()
        fire = sorted((r for r in rows if r.is_due), key=lambda r: (r.due_at, r.id))
        after = [r.due_at for r in rows if not r.is_due]
        return [_timer(r) for r in fire], (after[0] if after else None)

    async def _fire(self, timer: Timer) -> None:
        handler = self._handlers.get(timer.kind)
        try:
            async with self._db.unit_of_work() as session:
                if not await self._still_due(session, timer):
                    return  # another replica fired or cancelled it meanwhile
                if handler is None:
                    raise LookupError(f"no handler for timer kind {timer.kind!r}")
                await handler(session, timer)
                await session.execute(delete(timers).where(timers.c.id == timer.id))
        except Exception as exc:  # noqa: BLE001 - recorded on the timer and retried
            await self._record_failure(timer, exc)

    async def _still_due(self, session: AsyncSession, timer: Timer) -> bool:
        stmt = select(timers.c.id).where(
            timers.c.id == timer.id, timers.c.attempts == timer.attempts
        )
        if not self._db.sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        return (await session.execute(stmt)).first() is not None

    async def _record_failure(self, timer: Timer, exc: Exception) -> None:
        attempts = timer.attempts + (0 if is_transient(exc) else 1)
        failed = attempts >= self._max_attempts
        delay = min(self._max_backoff, 2 ** min(timer.attempts + 1, 20))
        log.warning(
            "timer %s (%s) failed: %s: %s",
            timer.key,
            timer.kind,
            type(exc).__name__,
            exc,
            extra={"attempts": attempts, "gave_up": failed},
        )
        retry_at = self._clock() + timedelta(seconds=delay)
        values = {
            "attempts": attempts,
            "failed": 1 if failed else 0,
            "last_error": f"{type(exc).__name__}: {exc}"[:1000],
            "due_at": retry_at,
        }
        try:
            async with self._db.unit_of_work(notify=False) as session:
                await session.execute(
                    update(timers).where(timers.c.id == timer.id).values(**values)
                )
        except Exception:
            # The database itself may be what failed: the timer stays due, unchanged,
            # and the next sweep tries it again.
            log.exception("could not record the failure of timer %s", timer.key)
            return
        if not failed:
            self._later(retry_at)
