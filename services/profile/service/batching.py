"""Reading ahead and writing once per consumer batch.

The runner hands a transaction a whole poll's batch (``shared.consumer.batch``).
Per event, the view needs the customer locked (created if new), the segment
definitions and the customer's memberships, and it writes a channel, maybe a
hint's identities, a timeline entry and the customer row. One statement each is
eight round trips per event. Instead, the first event of the batch that asks:

1. creates the customers of every event in the batch that are new (one
   ``INSERT … ON CONFLICT DO NOTHING RETURNING``) and locks them all, in customer
   id order (one ``SELECT … FOR UPDATE``), then the survivors of any merged ones;
2. records the sale keys (``sale_key``: event source, kind, purchase or refund
   id) of the batch's purchases and refunds as counted (one ``INSERT … ON CONFLICT
   DO NOTHING RETURNING``, in key order): the keys it returns are new, and the
   first event of the batch naming each is the one that counts it
   (``count_once``);
3. reads the segment definitions once and, if there are any, every batch
   customer's memberships (one query each);

and the handlers hold their channel touches, hint identities and timeline
entries, which are written in one statement each when the transaction commits
(or earlier, when something is about to read them back).

Exactness: only this service's consumer handlers run in the transaction, and
none of them merges, erases, creates segments or changes consent (those are
REST requests, each in its own transaction). The customer rows are locked from
the start of the batch until its commit (PostgreSQL row locks; SQLite's write
lock), so no other transaction can merge, erase or change them meanwhile: what
was read ahead stays true for the whole batch. Memberships change only through
``segments._evaluate`` in this transaction, which keeps the cache in step
(``joined`` / ``left``). Held writes keep their order; timeline entries are written
before anything reads the timeline (a segment join or leave reads the money
history, a complaint recount reads the cases) and their rollup goes to the
customer's segments at that moment, which is what adding them one by one and then
changing memberships sums to (the rollup is additive). Every purchase and refund in
the batch is handled in it, in order, so recording all their sale keys up front and
letting the first event naming a new key count it is what recording each in turn
gives; a key another transaction is recording waits for its outcome, as there. A
rolled-back transaction writes none of it. Outside the runner (no batch, or an event
not in it: tests, the rebuild, a one-by-one replay after a failed batch still has
its one-event batch) every call falls back to its own query.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.profile import repository
from services.profile.models import Customer, Segment
from shared.consumer import BATCH, batch
from shared.events import Event
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded

_KEY = "profile.batch"


@dataclass
class BatchState:
    events: Sequence[Event]
    subjects: frozenset[str]
    customers: dict[str, Customer] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    made: frozenset[str] = frozenset()  # every customer this transaction created
    segments: Sequence[Segment] = ()
    members: dict[str, set[str]] = field(default_factory=dict)
    sale_keys: frozenset[repository.SaleKeyRow] = frozenset()  # asked for at the start
    uncounted: set[repository.SaleKeyRow] = field(default_factory=set)  # new, not yet counted


@dataclass
class _Held:
    """Writes held until commit (on the sync session's info, like the outbox's)."""

    channels: dict[tuple[str, str], tuple[datetime, datetime]] = field(default_factory=dict)
    identities: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    timeline: list[repository.TimelineRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.channels or self.identities or self.timeline)


async def state(session: AsyncSession, event: Event) -> BatchState | None:
    """The batch's read-ahead, made on first use; None when ``event`` is not in a batch."""
    events = batch(session)
    if not events:
        return None
    current = session.info.get(_KEY)
    if isinstance(current, BatchState) and current.events is events:
        return current if event.subject in current.subjects else None
    if not any(e is event for e in events):
        return None
    current = await _read_ahead(session, events)
    session.info[_KEY] = current
    return current


async def _read_ahead(session: AsyncSession, events: Sequence[Event]) -> BatchState:
    subjects = sorted({e.subject for e in events})
    ahead = BatchState(events, frozenset(subjects))
    ahead.created = await repository.create_customers(session, subjects)
    ahead.made = frozenset(ahead.created)
    wanted = subjects
    while wanted:  # the subjects, then the survivors of merged ones (and theirs)
        found = await repository.lock_customers(session, wanted)
        ahead.customers.update((c.customer_id, c) for c in found)
        wanted = sorted({c.merged_into for c in found if c.merged_into} - ahead.customers.keys())
    keys: dict[repository.SaleKeyRow, str] = {}
    for e in events:
        if (key := sale_key(e)) is not None:
            keys.setdefault(key, e.id)
    if keys:
        ahead.sale_keys = frozenset(keys)
        ahead.uncounted = await repository.claim_sale_keys(session, keys)
    ahead.segments = await repository.list_segments(session)
    ahead.members = {c: set() for c in ahead.customers}
    if ahead.segments:  # no segment, no memberships
        for segment, customer_id in await repository.list_memberships(session, ahead.customers):
            ahead.members[customer_id].add(segment)
    _hold(session)
    return ahead


def taken(ahead: BatchState, customer_id: str) -> tuple[Customer, bool] | None:
    """The locked customer and whether this transaction created it (True once)."""
    customer = ahead.customers.get(customer_id)
    if customer is None:
        return None
    created = customer_id in ahead.created
    ahead.created.discard(customer_id)
    return customer, created


def sale_key(event: Event) -> repository.SaleKeyRow | None:
    """What makes a purchase or refund the same sale however often it is sent: the
    producer (event source) and its own purchase or refund id."""
    if isinstance(event, PurchaseCompleted):
        return event.source, event.type, event.data.purchase_id
    if isinstance(event, PurchaseRefunded):
        return event.source, event.type, event.data.refund_id
    return None


async def count_once(session: AsyncSession, event: PurchaseCompleted | PurchaseRefunded) -> bool:
    """True if this sale was not counted before (and now is), False for a re-sent one.

    In a batch the read-ahead recorded the keys; the first event naming a new one
    counts it. Otherwise one ``INSERT … ON CONFLICT DO NOTHING`` for this event: a
    concurrent transaction with the same key waits for the other's outcome."""
    key = sale_key(event)
    assert key is not None
    ahead = current(session)
    if ahead is not None and key in ahead.sale_keys:
        if key not in ahead.uncounted:
            return False
        ahead.uncounted.discard(key)
        return True
    return bool(await repository.claim_sale_keys(session, {key: event.id}))


def made_here(session: AsyncSession, customer_id: str) -> bool:
    """This batch's transaction created the customer, so it has no consent: consent is
    only written by REST requests, and no other transaction can see the row yet."""
    ahead = current(session)
    return ahead is not None and customer_id in ahead.made


def locked(session: AsyncSession, customer_id: str) -> Customer | None:
    """A customer this batch already holds locked, if any."""
    ahead = current(session)
    return ahead.customers.get(customer_id) if ahead is not None else None


def current(session: AsyncSession) -> BatchState | None:
    """The batch's read-ahead if one was made for this transaction's batch."""
    ahead = session.info.get(_KEY)
    if isinstance(ahead, BatchState) and ahead.events is batch(session):
        return ahead
    return None


# --- held writes -------------------------------------------------------------------

_HELD = "profile.held"


def _hold(session: AsyncSession) -> None:
    sync = session.sync_session
    if _HELD in sync.info:
        return
    sync.info[_HELD] = _Held()
    sa_event.listen(sync, "before_commit", _write_at_commit)
    sa_event.listen(sync, "before_flush", _write_customers)
    sa_event.listen(sync, "after_rollback", _drop)


def _held(session: AsyncSession) -> _Held | None:
    held = session.sync_session.info.get(_HELD)
    return held if isinstance(held, _Held) and current(session) is not None else None


async def touch_channel(
    session: AsyncSession, customer_id: str, channel: str, seen_at: datetime
) -> None:
    """``repository.touch_channel``, held as one (first, last) per customer and channel."""
    held = _held(session)
    if held is None:
        await repository.touch_channel(session, customer_id, channel, seen_at)
        return
    key = (customer_id, channel)
    first, last = held.channels.get(key, (seen_at, seen_at))
    held.channels[key] = (min(first, seen_at), max(last, seen_at))


async def claim_identity(
    session: AsyncSession, customer_id: str, kind: str, value: str, at: datetime
) -> None:
    """``repository.claim_identity``, held; the first claim in the batch wins, as there."""
    held = _held(session)
    if held is None:
        await repository.claim_identity(session, customer_id, kind, value, at)
        return
    held.identities.setdefault(
        (kind, value),
        {"kind": kind, "value": value, "customer_id": customer_id, "origin_id": customer_id,
         "created_at": at},
    )  # fmt: skip


async def add_timeline(session: AsyncSession, row: repository.TimelineRow) -> None:
    """Add a timeline entry (``repository.insert_timeline_sync``), held in a batch."""
    held = _held(session)
    if held is None:
        await session.run_sync(repository.insert_timeline_sync, [row], None)
        return
    held.timeline.append(row)


async def write_timeline(session: AsyncSession) -> None:
    """Write held timeline entries now: something is about to read the timeline."""
    held = _held(session)
    if held is not None and held.timeline:
        rows, held.timeline = held.timeline, []
        await session.run_sync(repository.insert_timeline_sync, rows, _member_of(session))


def joined(session: AsyncSession, customer_id: str, segment: str) -> None:
    ahead = current(session)
    if ahead is not None and customer_id in ahead.members:
        ahead.members[customer_id].add(segment)


def left(session: AsyncSession, customer_id: str, segment: str) -> None:
    ahead = current(session)
    if ahead is not None and customer_id in ahead.members:
        ahead.members[customer_id].discard(segment)


def _member_of(session: AsyncSession) -> Mapping[str, Collection[str]] | None:
    """The batch customers' memberships as read ahead (None outside a batch)."""
    ahead = current(session)
    return ahead.members if ahead is not None else None


def _write_customers(sync: Session, _context: object, _instances: object) -> None:
    """Before any flush (the runner's inbox insert autoflushes after the handlers): the
    batch's changed customers in one statement (``repository.update_customers_sync``)
    instead of the ORM's UPDATE per set of changed columns (one per event kind in a
    mixed poll); the flush then finds them clean."""
    ahead = sync.info.get(_KEY)
    if not isinstance(ahead, BatchState) or ahead.events is not sync.info.get(BATCH):
        return
    repository.update_customers_sync(sync, [ahead.customers[c] for c in sorted(ahead.customers)])


def _write_at_commit(sync: Session) -> None:
    held = sync.info.get(_HELD)
    if not held:
        return
    sync.info[_HELD] = _Held()
    ahead = sync.info.get(_KEY)
    member_of = ahead.members if isinstance(ahead, BatchState) else None
    repository.write_held_sync(
        sync,
        [
            {"customer_id": c, "channel": ch, "first_seen_at": first, "last_seen_at": last}
            for (c, ch), (first, last) in sorted(held.channels.items())
        ],
        [held.identities[key] for key in sorted(held.identities)],
        held.timeline,
        member_of,
    )


def _drop(sync: Session) -> None:
    if sync.info.get(_HELD):
        sync.info[_HELD] = _Held()
