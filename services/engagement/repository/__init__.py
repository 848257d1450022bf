"""Every query engagement runs: here the outreach life cycle; the sweeps, statistics,
configuration and identity queries in the modules beside it (re-exported where shared)."""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.engagement.models import (
    PENDING,
    SENDING,
    SENT,
    Consent,
    Contact,
    CountedPurchase,
    ItemPair,
    ItemSequence,
    LastBasket,
    Outreach,
)
from services.engagement.repository.addresses import address as _address
from services.engagement.repository.stats import JourneyStats as JourneyStats
from services.engagement.repository.stats import attribute_purchase as attribute_purchase
from services.engagement.repository.stats import list_journey_stats as list_journey_stats
from services.engagement.repository.stats import record_conversion as record_conversion
from services.engagement.repository.sweeps import (
    move_channel as move_channel,
)
from services.engagement.repository.sweeps import (
    pending_on_channels as pending_on_channels,
)
from services.engagement.repository.sweeps import (
    reroute_opted_out as reroute_opted_out,
)
from services.engagement.repository.sweeps import (
    suppress_on_channel as suppress_on_channel,
)
from services.engagement.repository.sweeps import (
    suppress_opted_out as suppress_opted_out,
)
from services.engagement.repository.sweeps import (
    suppress_pending as suppress_pending,
)
from services.engagement.repository.sweeps import (
    suppress_pending_keys as suppress_pending_keys,
)
from services.engagement.repository.sweeps import (
    suppress_stale as suppress_stale,
)
from services.engagement.repository.sweeps import (
    suppress_unreachable as suppress_unreachable,
)
from shared.claims import KeyClaims
from shared.db import per_dialect
from shared.key_lists import KeyList

CONTACT_COLUMNS = (
    "name",
    "email",
    "phone",
    "language",
    "timezone",
    "quiet_start",
    "quiet_end",
    "updated_at",
)


@per_dialect
def _statements(insert: Any) -> dict[str, Any]:
    """The upserts engagement's consumer writes, built once per dialect and run with
    parameters (one row, or many in one ``executemany``), so each is compiled once."""
    contacts, consents = Contact.__table__.c, Consent.__table__.c
    pairs, sequences = ItemPair.__table__.c, ItemSequence.__table__.c
    contact = insert(Contact.__table__)
    consent = insert(Consent.__table__)
    pair = insert(ItemPair.__table__)
    sequence = insert(ItemSequence.__table__)
    basket = insert(LastBasket.__table__)
    return {
        "contact": contact.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={k: contact.excluded[k] for k in CONTACT_COLUMNS},
            where=contacts.updated_at <= contact.excluded.updated_at,
        ),
        "consent": consent.on_conflict_do_update(
            index_elements=["customer_id", "channel"],
            set_={"status": consent.excluded.status, "changed_at": consent.excluded.changed_at},
            where=consents.changed_at <= consent.excluded.changed_at,
        ),
        "outreach": insert(Outreach.__table__).on_conflict_do_nothing(
            index_elements=["dedupe_key"]
        ),
        "pair": pair.on_conflict_do_update(
            index_elements=["sku", "other_sku"],
            set_={
                "count": pairs["count"] + pair.excluded["count"],
                "other_name": pair.excluded.other_name,
            },
        ),
        "sequence": sequence.on_conflict_do_update(
            index_elements=["sku", "next_sku"],
            set_={
                "count": sequences["count"] + sequence.excluded["count"],
                "next_name": sequence.excluded.next_name,
            },
        ),
        "basket": basket.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={c: basket.excluded[c] for c in ("purchase_key", "skus", "purchased_at")},
        ),
    }


def statement(session: AsyncSession | Session, name: str) -> Any:
    """One of ``_statements`` for the session's database."""
    return _statements(session)[name]


async def upsert_contact(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert or replace a contact, unless the stored one comes from a newer event."""
    await session.execute(statement(session, "contact"), values)


async def upsert_consent(session: AsyncSession, values: dict[str, Any]) -> None:
    """Record one channel's consent, unless the stored one was stated later."""
    await session.execute(statement(session, "consent"), values)


def write_held_sync(session: Session, rows: Mapping[str, Sequence[dict[str, Any]]]) -> None:
    """A consumer batch's held writes (``services.engagement.held``), one ``executemany``
    per kind: ``rows`` maps a name of ``_statements`` to its rows."""
    for name, values in rows.items():
        if values:
            session.execute(statement(session, name), list(values))


_COUNTED: KeyClaims[tuple[str]] = KeyClaims(CountedPurchase.__table__)


async def count_purchase(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Record a sale as counted (``counted_purchases``); False if it was counted before."""
    return bool(await claim_purchases(session, [values]))


async def claim_purchases(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Record these sales as counted (rows of ``counted_purchases``); returns the keys of
    those not recorded before. One statement (per ``shared.claims.CHUNK`` rows), in key
    order; a key another open transaction recorded waits for its outcome."""
    return {key for (key,) in await _COUNTED.claim(session, rows)}


async def consents(session: AsyncSession, customer_id: str) -> dict[str, str]:
    stmt = select(Consent.channel, Consent.status).where(Consent.customer_id == customer_id)
    return {channel: status for channel, status in (await session.execute(stmt)).all()}


async def get_contact(session: AsyncSession, customer_id: str) -> Contact | None:
    return await session.get(Contact, customer_id, populate_existing=True)


async def insert_outreach(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a planned message; False if one with the same dedupe key exists."""
    result = await session.execute(statement(session, "outreach"), values)
    return bool(cast(CursorResult[Any], result).rowcount)


async def get_outreach(session: AsyncSession, outreach_id: str) -> Outreach | None:
    return await session.get(Outreach, outreach_id, populate_existing=True)


async def list_outreach(
    session: AsyncSession, customer_id: str, *, limit: int, before: Outreach | None
) -> Sequence[Outreach]:
    stmt = select(Outreach).where(Outreach.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(
            or_(
                Outreach.created_at < before.created_at,
                and_(Outreach.created_at == before.created_at, Outreach.id < before.id),
            )
        )
    stmt = stmt.order_by(Outreach.created_at.desc(), Outreach.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def lock_due_with_contact(
    session: AsyncSession,
    *,
    channel: str,
    now: datetime,
    limit: int,
    where: Sequence[Any] = (),
) -> Sequence[Row[Outreach, Contact]]:
    """Due pending messages on a channel whose customer has an address for it, locked;
    ``where``: further conditions on them.

    On PostgreSQL ``SKIP LOCKED`` lets replicas claim disjoint rows; SQLite has a
    single writer (``BEGIN IMMEDIATE``), so its claims are serialised anyway.
    """
    stmt = (
        select(Outreach, Contact)
        .join(Contact, Contact.customer_id == Outreach.customer_id)
        .where(
            Outreach.status == PENDING,
            Outreach.channel == channel,
            Outreach.due_at <= now,
            Outreach.to_address.is_(None),
            _address(channel).is_not(None),
            *where,
        )
        .order_by(Outreach.due_at)
        .limit(limit)
        .with_for_update(of=Outreach, skip_locked=True)
    )
    return (await session.execute(stmt)).all()


async def lock_due_fixed(
    session: AsyncSession, *, now: datetime, limit: int, where: Sequence[Any] = ()
) -> Sequence[Row[Outreach, Contact | None]]:
    """Due pending messages to a fixed recipient (staff alerts), with the customer's contact
    if known (for their name), locked like ``lock_due_with_contact``."""
    stmt = (
        select(Outreach, Contact)
        .outerjoin(Contact, Contact.customer_id == Outreach.customer_id)
        .where(
            Outreach.status == PENDING,
            Outreach.due_at <= now,
            Outreach.to_address.is_not(None),
            *where,
        )
        .order_by(Outreach.due_at)
        .limit(limit)
        .with_for_update(of=Outreach, skip_locked=True)
    )
    return (await session.execute(stmt)).all()


async def next_due(session: AsyncSession, *, after: datetime) -> datetime | None:
    """When the earliest pending message due after ``after`` comes due (None: none is)."""
    stmt = select(func.min(Outreach.due_at)).where(
        Outreach.status == PENDING, Outreach.due_at > after
    )
    return (await session.execute(stmt)).scalar()


async def settle_claim(
    session: AsyncSession, *, outreach_id: str, attempt: int, values: dict[str, Any]
) -> bool:
    """Record a claim's outcome, only if no later claim of the same row exists.

    A row put back to pending because its claim looked stalled keeps its
    ``attempts``, so the original sender can still settle it until someone else
    claims it again.
    """
    result = await session.execute(
        update(Outreach)
        .where(
            Outreach.id == outreach_id,
            Outreach.attempts == attempt,
            Outreach.status.in_((SENDING, PENDING)),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(cast(CursorResult[Any], result).rowcount)


async def settle_sent(
    session: AsyncSession, *, replies: dict[tuple[str, int], str], sent_at: datetime
) -> set[str]:
    """Record several claims as sent in one statement: ``replies`` maps (outreach id,
    attempt) to the provider's reply. Fenced like ``settle_claim``, row by row; returns
    the ids it settled.

    The rows come as one parameter, so it is one statement, built and compiled once,
    whatever the group's size (building a condition per row cost more CPU than running
    the statement): three arrays joined with ``unnest`` on PostgreSQL, a JSON array of
    ``[id, attempt, reply]`` rows read with ``json_each`` on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        params: dict[str, Any] = {
            "id_list": [i for i, _ in replies],
            "attempt_list": [attempt for _, attempt in replies],
            "reply_list": list(replies.values()),
            "sent_time": sent_at,
        }
        result = await session.execute(_settle_sent_by_arrays(), params)
    else:
        rows = json.dumps([[i, attempt, reply] for (i, attempt), reply in replies.items()])
        params = {"settled_rows": rows, "sent_time": sent_at}
        result = await session.execute(_settle_sent_by_json(), params)
    return set(result.scalars().all())


@functools.cache
def _settle_sent_by_json() -> Any:
    """``settle_sent``'s statement on SQLite (parameters ``settled_rows``, a JSON array of
    ``[id, attempt, reply]`` arrays, and ``sent_time``): ``UPDATE … FROM`` the rows, each
    outreach row found by its primary key."""
    each = func.json_each(bindparam("settled_rows", type_=String())).table_valued("value")
    rows = select(
        func.json_extract(each.c.value, "$[0]").label("id"),
        func.json_extract(each.c.value, "$[1]").label("attempt"),
        func.json_extract(each.c.value, "$[2]").label("reply"),
    ).subquery("settled")
    # Nearly every row given is still claimed: said so (``likelihood``), the planner looks
    # each one up by its key; left to guess, it scanned every claimed row by status and
    # read the JSON again for each (the status index put first).
    claimed = text(f"likelihood(outreach.status IN ('{SENDING}', '{PENDING}'), 0.99)")
    return _settle_from(rows, claimed)


@functools.cache
def _settle_sent_by_arrays() -> Any:
    """``settle_sent``'s statement on PostgreSQL (parameters ``id_list``, ``attempt_list``,
    ``reply_list``: equal-length arrays, and ``sent_time``)."""
    rows = (
        func.unnest(
            bindparam("id_list", type_=KeyList(String())),
            bindparam("attempt_list", type_=KeyList(Integer())),
            bindparam("reply_list", type_=KeyList(String())),
        )
        .table_valued("id", "attempt", "reply")
        .render_derived(name="settled")
    )
    # The claimed condition as an expression no index has: with it on the status index
    # the planner, told by statistics that few rows are claimed (true when it last
    # analysed), scanned every claimed row and matched each against every settled one (a
    # backlog of 675 claimed: 3 to 29 ms a group, 2026-12-07); this way it looks each
    # settled row up by its key, whatever the backlog.
    claimed = text(f"(outreach.status || '') IN ('{SENDING}', '{PENDING}')")
    return _settle_from(rows, claimed)


def _settle_from(rows: Any, claimed: Any) -> Any:
    """Both dialects' ``settle_sent`` update, given the rows (columns ``id``, ``attempt``,
    ``reply``) and the condition that the row is still claimed."""
    return (
        update(Outreach)
        .where(Outreach.id == rows.c.id, Outreach.attempts == rows.c.attempt, claimed)
        .values(status=SENT, sent_at=bindparam("sent_time"), provider_message_id=rows.c.reply)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )


async def update_stalled(
    session: AsyncSession,
    *,
    claimed_before: datetime,
    max_attempts: int,
    exhausted: bool,
    values: dict[str, Any],
) -> Sequence[str]:
    """Move on messages stuck in ``sending``: those with attempts left, or (``exhausted``)
    those without."""
    out_of_attempts = Outreach.attempts >= max_attempts
    stmt = (
        update(Outreach)
        .where(
            Outreach.status == SENDING,
            Outreach.claimed_at < claimed_before,
            out_of_attempts if exhausted else ~out_of_attempts,
        )
        .values(**values)
        .returning(Outreach.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalars().all()


# Advisory lock space of the frequency cap's per-customer locks (``lock_cap_counts``).
CAP_LOCK_SPACE = 0x6B77_6663  # "kwfc"


async def lock_cap_counts(session: AsyncSession, customer_ids: Iterable[str]) -> None:
    """Hold each customer's frequency cap count until this transaction ends (PostgreSQL).

    Replicas claim disjoint messages (``SKIP LOCKED``), so two of them could each count
    a customer's marketing messages before either's claim commits, and each let one
    through at the cap's edge. A transaction-level advisory lock per customer, taken
    before counting, makes the second wait for the first's commit and then count its
    claim (each statement sees what committed before it). The locks are taken in one
    statement in ascending key order, so two claim rounds cannot deadlock on them. Only
    claim rounds take them. SQLite needs none: its writers already take turns.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({_cap_key(c) for c in customer_ids})
    if keys:
        await session.execute(_LOCK_CAP_COUNTS, {"space": CAP_LOCK_SPACE, "keys": keys})


def _cap_key(customer_id: str) -> int:
    """A customer's lock key: a signed 32-bit hash (two customers may share one, which
    only makes one wait for the other)."""
    crc = zlib.crc32(customer_id.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


# Functions run in the array's order here (no sort, no join): ascending.
_LOCK_CAP_COUNTS = text(
    "SELECT count(pg_advisory_xact_lock(:space, k)) FROM unnest(CAST(:keys AS integer[])) AS k"
).bindparams(bindparam("space", type_=Integer), bindparam("keys", type_=KeyList(Integer())))


async def marketing_sent_since(
    session: AsyncSession, *, customer_id: str, journeys: Sequence[str], since: datetime
) -> int:
    """Marketing messages sent (or being sent) to a customer since ``since``."""
    stmt = select(func.count()).where(
        Outreach.customer_id == customer_id,
        Outreach.journey.in_(journeys),
        or_(
            and_(Outreach.status == SENT, Outreach.sent_at >= since),
            and_(Outreach.status == SENDING, Outreach.claimed_at >= since),
        ),
    )
    return int((await session.execute(stmt)).scalar_one())
