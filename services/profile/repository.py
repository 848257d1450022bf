"""Every query profile runs."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Numeric,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    inspect,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from services.profile import rollup
from services.profile.models import (
    Consent,
    Customer,
    CustomerChannel,
    Identity,
    Merge,
    SaleKey,
    Segment,
    SegmentMember,
    TimelineEntry,
)
from shared.claims import KeyClaims
from shared.db import dialect_insert, per_dialect
from shared.events import Event
from shared.key_lists import ManyRows, one_of

CHANNEL_KINDS = or_(
    TimelineEntry.kind == "purchase.completed", ~TimelineEntry.kind.contains(".")
)  # purchases and interactions: where the customer showed up (outreach is not)


# --- customers ---------------------------------------------------------------------


# Built once: constructing a statement costs more CPU than running it (SQLAlchemy
# caches the compiled form, not the construction), and these run on every 360° view.
_CUSTOMER = select(Customer).where(Customer.customer_id == bindparam("customer_id"))


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    """The customer row (the session's own instance if it holds one; pending changes are
    flushed first, as by any query)."""
    result = await session.execute(_CUSTOMER, {"customer_id": customer_id})
    return result.scalar_one_or_none()


async def lock_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    stmt = select(Customer).where(Customer.customer_id == customer_id).with_for_update()
    result = await session.execute(stmt.execution_options(populate_existing=True))
    return result.scalar_one_or_none()


async def get_customer_for_update(session: AsyncSession, customer_id: str) -> tuple[Customer, bool]:
    """The customer row, created if new, locked until the transaction ends.

    Returns the row and whether this transaction created it: when two transactions
    race to create the same customer, exactly one of them gets True.
    """
    created = await session.execute(
        dialect_insert(session)(Customer)
        .values(customer_id=customer_id)
        .on_conflict_do_nothing(index_elements=["customer_id"])
        .returning(Customer.customer_id)
    )
    is_new = created.first() is not None
    customer = await lock_customer(session, customer_id)
    assert customer is not None
    return customer, is_new


CHUNK = 1000  # ids per IN list / rows per statement in batch reads and writes


_CREATE_CUSTOMERS = ManyRows(
    Customer.__table__,
    ("customer_id",),
    returning=(Customer.__table__.c.customer_id,),
    conflict=("customer_id",),
)


async def create_customers(session: AsyncSession, customer_ids: Sequence[str]) -> set[str]:
    """Create the customers that do not exist yet; returns the ids this call created."""
    created: set[str] = set()
    for start in range(0, len(customer_ids), CHUNK):
        chunk = [{"customer_id": c} for c in customer_ids[start : start + CHUNK]]
        created.update(c for (c,) in await _CREATE_CUSTOMERS.execute(session, chunk))
    return created


_LOCK_CUSTOMERS = (
    select(Customer)
    .where(one_of(Customer.customer_id, param="ids"))
    .order_by(Customer.customer_id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_customers(session: AsyncSession, customer_ids: Sequence[str]) -> list[Customer]:
    """These customers (those that exist), locked in customer id order."""
    found: list[Customer] = []
    ordered = sorted(customer_ids)
    for start in range(0, len(ordered), CHUNK):
        result = await session.execute(_LOCK_CUSTOMERS, {"ids": ordered[start : start + CHUNK]})
        found += result.scalars().all()
    return found


# The columns a handler may change. A batch writes its changed customers with one
# statement over all of them (``update_customers_sync``).
_WRITTEN = frozenset(
    c.key
    for c in Customer.__table__.columns
    if c.key not in ("customer_id", "created_at", "updated_at")
)
_CUSTOMERS: Any = Customer.__table__
_UPDATE_CUSTOMER = update(_CUSTOMERS).where(
    _CUSTOMERS.c.customer_id == bindparam("b_customer_id")
)  # ``updated_at`` takes its ``onupdate``, as in the ORM's UPDATE


def update_customers_sync(session: Session, customers: Iterable[Customer]) -> None:
    """Write the changes of these loaded customers in one executemany of one statement,
    instead of the ORM's UPDATE per set of changed columns (one per event kind in a
    mixed batch). The statement sets every column any of them changed (SQLAlchemy caches
    one compiled form per set), each row from its object, which holds the row as locked
    plus this transaction's changes. The customers are then marked written as the ORM's
    flush marks its own (attributes committed, ``updated_at`` expired: the database set
    it). A customer without a net change is left as it is, and so is one with a column
    not loaded or a change outside ``_WRITTEN`` (the ORM's flush writes those)."""
    states, columns = [], set()
    for customer in customers:
        state = inspect(customer)
        if not state.modified:
            continue
        values = state.dict
        changed = [k for k, old in state.committed_state.items() if values.get(k, old) != old]
        if changed and _WRITTEN.issuperset(changed):
            states.append(state)
            columns.update(changed)
    written = [s for s in states if columns <= s.dict.keys()]
    if not written:
        return
    ordered = sorted(columns)
    rows = []
    for state in written:
        values = state.dict
        row = {k: values[k] for k in ordered}
        row["b_customer_id"] = values["customer_id"]
        rows.append(row)
    session.execute(_UPDATE_CUSTOMER, rows)
    for state in written:
        state._commit_all(state.dict, session.identity_map)  # what a flush does after it
        session.expire(state.obj(), ["updated_at"])


async def redirect_merged(session: AsyncSession, absorbed_id: str, survivor_id: str) -> None:
    """Customers merged into ``absorbed_id`` earlier now point at its survivor."""
    await session.execute(
        update(Customer).where(Customer.merged_into == absorbed_id).values(merged_into=survivor_id)
    )


async def search_customers(
    session: AsyncSession, *, name_prefix: str | None, segment: str | None, limit: int
) -> Sequence[Customer]:
    stmt = select(Customer).where(Customer.merged_into.is_(None))
    if name_prefix is not None:
        folded = name_prefix.casefold().replace("\\", "\\\\").replace("%", "\\%")
        folded = folded.replace("_", "\\_")
        stmt = stmt.where(Customer.name_folded.like(folded + "%", escape="\\"))
    if segment is not None:
        stmt = stmt.join(SegmentMember, SegmentMember.customer_id == Customer.customer_id).where(
            SegmentMember.segment == segment
        )
    return (await session.execute(stmt.order_by(Customer.customer_id).limit(limit))).scalars().all()


# --- channels --------------------------------------------------------------------------


async def touch_channel(
    session: AsyncSession,
    customer_id: str,
    channel: str,
    seen_at: datetime,
    last: datetime | None = None,
) -> None:
    """Record that the customer used ``channel`` at ``seen_at`` (widening first/last seen)."""
    stmt = dialect_insert(session)(CustomerChannel).values(
        customer_id=customer_id,
        channel=channel,
        first_seen_at=seen_at,
        last_seen_at=last or seen_at,
    )
    await session.execute(_widening(stmt))


def _widening(stmt: Any) -> Any:
    """The channel insert, which on a (customer, channel) already recorded keeps the
    earlier first-seen and the later last-seen of the two."""
    new, row = stmt.excluded, CustomerChannel.__table__.c
    return stmt.on_conflict_do_update(
        index_elements=["customer_id", "channel"],
        set_={
            "first_seen_at": case(
                (new.first_seen_at < row.first_seen_at, new.first_seen_at),
                else_=row.first_seen_at,
            ),
            "last_seen_at": case(
                (new.last_seen_at > row.last_seen_at, new.last_seen_at),
                else_=row.last_seen_at,
            ),
        },
    )


async def list_channels(session: AsyncSession, customer_id: str) -> Sequence[CustomerChannel]:
    stmt = (
        select(CustomerChannel)
        .where(CustomerChannel.customer_id == customer_id)
        .order_by(CustomerChannel.first_seen_at, CustomerChannel.channel)
    )
    return (await session.execute(stmt)).scalars().all()


async def rebuild_channels(session: AsyncSession, customer_id: str) -> None:
    await session.execute(delete(CustomerChannel).where(CustomerChannel.customer_id == customer_id))
    t = TimelineEntry
    rows = await session.execute(
        select(t.channel, func.min(t.occurred_at), func.max(t.occurred_at))
        .where(t.customer_id == customer_id, t.channel.is_not(None), CHANNEL_KINDS)
        .group_by(t.channel)
    )
    for channel, first, last in rows.all():
        await touch_channel(session, customer_id, str(channel), first, last)


# --- consent and segments -----------------------------------------------------------------


async def list_consents(session: AsyncSession, customer_id: str) -> list[Consent]:
    stmt = select(Consent).where(Consent.customer_id == customer_id).order_by(Consent.channel)
    return list((await session.execute(stmt)).scalars().all())


async def set_consent(
    session: AsyncSession, customer_id: str, channel: str, status: str, source: str, at: datetime
) -> None:
    values = {"status": status, "source": source, "changed_at": at}
    stmt = dialect_insert(session)(Consent).values(
        customer_id=customer_id, channel=channel, **values
    )
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["customer_id", "channel"], set_=values)
    )


async def list_member_segments(session: AsyncSession, customer_id: str) -> Sequence[str]:
    stmt = (
        select(SegmentMember.segment)
        .where(SegmentMember.customer_id == customer_id)
        .order_by(SegmentMember.segment)
    )
    return (await session.execute(stmt)).scalars().all()


_MEMBERSHIPS = select(SegmentMember.segment, SegmentMember.customer_id).where(
    one_of(SegmentMember.customer_id, param="ids")
)


async def list_memberships(
    session: AsyncSession, customer_ids: Iterable[str]
) -> list[tuple[str, str]]:
    """(segment, customer id) of every membership of these customers."""
    ids, found = sorted(customer_ids), []
    for start in range(0, len(ids), CHUNK):
        rows = await session.execute(_MEMBERSHIPS, {"ids": ids[start : start + CHUNK]})
        found += [(s, c) for s, c in rows.all()]
    return found


@dataclass(frozen=True, slots=True)
class ViewRows:
    channels: list[str]
    consents: list[Consent]
    segments: list[str]


def _view_rows_statement() -> Any:
    ch, co, sm = CustomerChannel, Consent, SegmentMember
    none, customer_id = null(), bindparam("customer_id", type_=String)
    return union_all(
        select(literal_column("'channel'"), ch.channel, none, none, ch.first_seen_at).where(
            ch.customer_id == customer_id
        ),
        select(literal_column("'consent'"), co.channel, co.status, co.source, co.changed_at).where(
            co.customer_id == customer_id
        ),
        select(literal_column("'segment'"), sm.segment, none, none, none).where(
            sm.customer_id == customer_id
        ),
    )


_VIEW_ROWS = _view_rows_statement()


async def view_rows(session: AsyncSession, customer_id: str) -> ViewRows:
    """The customer's channels (first used first), consents and segments (by name) in
    one statement (``list_channels``, ``list_consents`` and ``list_member_segments``
    were three round trips on every 360° view). The consents are detached rows."""
    rows: Sequence[Any] = (await session.execute(_VIEW_ROWS, {"customer_id": customer_id})).all()
    channels: list[tuple[datetime, str]] = []
    consents: list[Consent] = []
    segments: list[str] = []
    for what, name, status, source, at in rows:
        if what == "channel":
            channels.append((at, name))
        elif what == "consent":
            consents.append(
                Consent(
                    customer_id=customer_id, channel=name, status=status, source=source,
                    changed_at=at,
                )
            )  # fmt: skip
        else:
            segments.append(name)
    return ViewRows(
        [name for _, name in sorted(channels)],
        sorted(consents, key=lambda c: c.channel),
        sorted(segments),
    )


# --- identities -------------------------------------------------------------------------------


async def live_owners(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> list[Customer]:
    """The customers owning any of these identities, oldest first, locked."""
    match = or_(*(and_(Identity.kind == k, Identity.value == v) for k, v in pairs))
    stmt = (
        select(Customer)
        .where(Customer.customer_id.in_(select(Identity.customer_id).where(match)))
        .order_by(Customer.created_at, Customer.customer_id)
        .with_for_update()
    )
    result = await session.execute(stmt.execution_options(populate_existing=True))
    return list(result.scalars().all())


async def claim_identity(
    session: AsyncSession, customer_id: str, kind: str, value: str, at: datetime
) -> None:
    """Give the customer this identity unless someone owns it already."""
    stmt = dialect_insert(session)(Identity).values(
        kind=kind, value=value, customer_id=customer_id, origin_id=customer_id, created_at=at
    )
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["kind", "value"]))


async def find_by_identity(session: AsyncSession, kind: str, value: str) -> Customer | None:
    stmt = select(Customer).join(Identity).where(Identity.kind == kind, Identity.value == value)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_identities(session: AsyncSession, customer_id: str) -> Sequence[Identity]:
    stmt = (
        select(Identity)
        .where(Identity.customer_id == customer_id)
        .order_by(Identity.kind, Identity.value)
    )
    return (await session.execute(stmt)).scalars().all()


def write_held_sync(
    session: Session,
    channels: list[dict[str, Any]],
    identities: list[dict[str, Any]],
    timeline: list[TimelineRow],
    member_of: Mapping[str, Collection[str]] | None,
) -> None:
    """A consumer batch's held writes, one statement each (see ``service.batching``):
    channel touches (one row per customer and channel, first/last widened as in
    ``touch_channel``), hint identities (``claim_identity``: first owner wins) and
    timeline entries (``insert_timeline_sync``)."""
    statements = _statements(session)
    if channels:
        session.execute(statements.touch_channels, channels)
    if identities:
        session.execute(statements.claim_identities, identities)
    insert_timeline_sync(session, timeline, member_of)


# --- merges -----------------------------------------------------------------------------------


async def move_customer_rows(session: AsyncSession, absorbed_id: str, survivor_id: str) -> None:
    """Identities, timeline and channels of ``absorbed_id`` move to ``survivor_id``."""
    await rollup.moving(session, absorbed_id, survivor_id)
    for table in (Identity, TimelineEntry):
        await session.execute(
            update(table).where(table.customer_id == absorbed_id).values(customer_id=survivor_id)
        )
    for channel in await list_channels(session, absorbed_id):
        await touch_channel(
            session, survivor_id, channel.channel, channel.first_seen_at, channel.last_seen_at
        )
    await redirect_merged(session, absorbed_id, survivor_id)


async def move_back(session: AsyncSession, absorbed_id: str, survivor_id: str) -> None:
    await rollup.moving(session, survivor_id, absorbed_id, origin_id=absorbed_id)
    for table in (Identity, TimelineEntry):
        await session.execute(
            update(table)
            .where(table.customer_id == survivor_id, table.origin_id == absorbed_id)
            .values(customer_id=absorbed_id)
        )


async def get_merge_for_update(session: AsyncSession, merge_id: str) -> Merge | None:
    stmt = select(Merge).where(Merge.merge_id == merge_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_merges(session: AsyncSession, customer_id: str) -> Sequence[Merge]:
    stmt = select(Merge).where(
        or_(Merge.survivor_id == customer_id, Merge.absorbed_id == customer_id)
    )
    return (await session.execute(stmt.order_by(Merge.merged_at))).scalars().all()


# --- sale keys ------------------------------------------------------------------------------

SaleKeyRow = tuple[str, str, str]  # (event source, kind, purchase_id or refund_id)


async def claim_sale_keys(session: AsyncSession, keys: Mapping[SaleKeyRow, str]) -> set[SaleKeyRow]:
    """Record these sales as counted (each with the id of the event counting it); returns
    those not recorded before (``shared.claims``: one statement, in key order)."""
    rows = [
        {"event_source": s, "kind": k, "business_id": b, "event_id": event_id}
        for (s, k, b), event_id in keys.items()
    ]
    return await _SALE_KEYS.claim(session, rows)


_SALE_KEYS: KeyClaims[SaleKeyRow] = KeyClaims(SaleKey.__table__)


# --- timeline -------------------------------------------------------------------------------


TimelineRow = dict[str, Any]


def timeline_row(
    *,
    customer: Customer,
    event: Event,
    kind: str,
    channel: str | None = None,
    summary: str | None = None,
    ref: str | None = None,
    details: dict[str, Any] | None = None,
) -> TimelineRow | None:
    """The event's timeline entry (None for an erased customer's tombstone: it gets none)."""
    if customer.erased_at is not None:
        return None
    amount, currency = _money(kind, details or {})
    return {
        "amount": amount,
        "currency": currency,
        "customer_id": customer.customer_id,
        "origin_id": event.subject,
        "occurred_at": event.time,
        "kind": kind,
        "channel": channel,
        "summary": summary,
        "ref": ref,
        "details": {k: v for k, v in (details or {}).items() if v is not None},
        "event_source": event.source,
        "event_id": event.id,
    }


def insert_timeline_sync(
    session: Session,
    rows: Sequence[TimelineRow],
    member_of: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Insert entries, in order, skipping any already there (same event and kind); the
    money of those added goes to their customer's segments (``member_of``, or asked)."""
    if not rows:
        return
    stmt = _statements(session).add_timeline
    added = session.execute(stmt, list(rows)).all()
    changes: list[tuple[str, rollup.Money, int]] = []
    for customer_id, kind, at, amount, currency in added:
        if amount is None or currency is None:
            continue
        money = rollup.entry(kind, at, amount, currency)
        known = member_of.get(customer_id) if member_of is not None else None
        segments = known if known is not None else rollup.segments_of_sync(session, customer_id)
        changes += [(s, money, 1) for s in segments]
    rollup.add_rows(session, changes)


@dataclass(frozen=True, slots=True)
class _Statements:
    """A consumer batch's multi-row statements, built once per dialect: constructing one
    cost more CPU than SQLAlchemy's cached compile and the run together."""

    touch_channels: Any
    claim_identities: Any
    add_timeline: Any


@per_dialect
def _statements(insert: Any) -> _Statements:
    t = TimelineEntry.__table__
    return _Statements(
        touch_channels=_widening(insert(CustomerChannel.__table__)),
        claim_identities=insert(Identity.__table__).on_conflict_do_nothing(
            index_elements=["kind", "value"]
        ),
        add_timeline=insert(t)
        .on_conflict_do_nothing()
        .returning(t.c.customer_id, t.c.kind, t.c.occurred_at, t.c.amount, t.c.currency),
    )


MONEY_KINDS = ("purchase.completed", "purchase.refunded")


def _money(kind: str, details: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """A purchase's or refund's amount and currency, as typed columns for reports."""
    if kind not in MONEY_KINDS or details.get("amount") is None or not details.get("currency"):
        return None, None
    return Decimal(str(details["amount"])), str(details["currency"])


async def list_timeline(
    session: AsyncSession,
    customer_id: str,
    *,
    channel: str | None,
    kind: str | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[TimelineEntry]:
    """Newest first; ``before`` is the (occurred_at, seq) keyset of the last entry seen."""
    t = TimelineEntry
    stmt = select(t).where(t.customer_id == customer_id)
    if channel is not None:
        stmt = stmt.where(t.channel == channel)
    if kind is not None:
        stmt = stmt.where(t.kind == kind)
    if before is not None:
        at, seq = before
        stmt = stmt.where(or_(t.occurred_at < at, and_(t.occurred_at == at, t.seq < seq)))
    stmt = stmt.order_by(t.occurred_at.desc(), t.seq.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def count_open_complaints(session: AsyncSession, customer_id: str) -> int:
    opened, resolved = TimelineEntry, aliased(TimelineEntry)
    is_resolved = exists().where(
        resolved.customer_id == customer_id,
        resolved.kind == "complaint.resolved",
        resolved.ref == opened.ref,
    )
    stmt = select(func.count(func.distinct(opened.ref))).where(
        opened.customer_id == customer_id, opened.kind == "complaint.opened", ~is_resolved
    )
    return int((await session.execute(stmt)).scalar_one())


@dataclass(frozen=True, slots=True)
class PurchaseFigures:
    orders: int
    gross: Decimal | None
    refunded: Decimal | None
    first: datetime | None
    last: datetime | None


async def purchase_figures(
    session: AsyncSession, customer_id: str, currency: str | None
) -> PurchaseFigures:
    """Lifetime purchase figures recomputed from the timeline (used by merge undo)."""
    t = TimelineEntry
    bought = t.kind == "purchase.completed"
    amount = cast(t.details["amount"].as_string(), Numeric(18, 4))
    in_currency = t.details["currency"].as_string() == currency
    stmt = select(
        func.count().filter(bought),
        func.sum(case((and_(bought, in_currency), amount))),
        func.sum(case((and_(t.kind == "purchase.refunded", in_currency), amount))),
        func.min(t.occurred_at).filter(bought),
        func.max(t.occurred_at).filter(bought),
    ).where(t.customer_id == customer_id)
    row = (await session.execute(stmt)).one()
    return PurchaseFigures(int(row[0]), row[1], row[2], row[3], row[4])


# --- segments ----------------------------------------------------------------------------------


async def get_segment(session: AsyncSession, name: str) -> Segment | None:
    return await session.get(Segment, name)


_SEGMENTS = select(Segment).order_by(Segment.name)


async def list_segments(session: AsyncSession) -> Sequence[Segment]:
    return (await session.execute(_SEGMENTS)).scalars().all()


async def add_member(session: AsyncSession, segment: str, customer_id: str, at: datetime) -> None:
    session.add(SegmentMember(segment=segment, customer_id=customer_id, entered_at=at))
    await session.flush()
    await rollup.joined(session, segment, customer_id)


async def remove_member(session: AsyncSession, segment: str, customer_id: str) -> None:
    await rollup.left(session, segment, customer_id)
    await session.execute(
        delete(SegmentMember).where(
            SegmentMember.segment == segment, SegmentMember.customer_id == customer_id
        )
    )


async def list_members(
    session: AsyncSession, segment: str, *, after: str | None, limit: int
) -> Sequence[str]:
    stmt = select(SegmentMember.customer_id).where(SegmentMember.segment == segment)
    if after is not None:
        stmt = stmt.where(SegmentMember.customer_id > after)
    stmt = stmt.order_by(SegmentMember.customer_id).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def list_customers_after(
    session: AsyncSession, after: str | None, limit: int
) -> Sequence[Customer]:
    stmt = select(Customer).where(Customer.merged_into.is_(None), Customer.erased_at.is_(None))
    if after is not None:
        stmt = stmt.where(Customer.customer_id > after)
    stmt = stmt.order_by(Customer.customer_id).limit(limit)
    return (await session.execute(stmt)).scalars().all()
