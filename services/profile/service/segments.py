"""Named segments, evaluated incrementally as a customer's view changes.

After every change to a customer (an event, preferences, a merge) the customer
is re-evaluated against every segment; joining publishes ``segment.entered``,
leaving ``segment.exited``. Segments with a time predicate
(``last_purchase_before``/``_within``) can change with no event at all, so a
periodic sweep (``PROFILE_SEGMENT_SWEEP_SECONDS``, default hourly) re-evaluates
every customer against them; a new segment is filled when it is created.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Customer, Segment
from services.profile.service import batching
from services.profile.service.customers import SOURCE, net_spend
from services.profile.service.segment_language import (
    Compiled,
    SegmentSyntaxError,
    compile_expression,
)
from shared import outbox
from shared.db import Database
from shared.events.profile import SegmentChangeData, SegmentEntered, SegmentExited
from shared.http import AppError, Conflict, NotFound

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
SWEEP_BATCH = 500


class SegmentRejected(AppError):
    status_code = 422
    code = "invalid_segment"


class SegmentExists(Conflict):
    code = "segment_exists"


class SegmentNotFound(NotFound):
    code = "segment_not_found"


def facts(customer: Customer) -> dict[str, Any]:
    """The view fields the filter language can test."""
    spend = net_spend(customer)
    return {
        "tier": customer.tier,
        "churn_band": customer.churn_band,
        "language": customer.language,
        "preferred_channel": customer.preferred_channel,
        "churn_risk": customer.churn_risk,
        "order_count": customer.order_count,
        "total_spend": spend.amount if spend else None,
        "points_balance": customer.points_balance,
        "last_nps": customer.last_nps,
        "open_complaints": customer.open_complaints,
        "last_purchase_at": customer.last_purchase_at,
    }


async def create_segment(
    session: AsyncSession, *, name: str, expression: str, now: datetime
) -> Segment:
    if not NAME.match(name):
        raise SegmentRejected("name: lower-case letters, digits, _ and -, at most 64")
    try:
        compile_expression(expression)
    except SegmentSyntaxError as exc:
        raise SegmentRejected(f"expression: {exc}") from exc
    if await repository.get_segment(session, name) is not None:
        raise SegmentExists(f"a segment named {name!r} exists")
    segment = Segment(name=name, expression=expression, created_at=now)
    session.add(segment)
    await session.flush()
    await evaluate_all(session, [segment], now=now)
    return segment


async def get_segment(session: AsyncSession, name: str) -> Segment:
    segment = await repository.get_segment(session, name)
    if segment is None:
        raise SegmentNotFound(f"no segment named {name!r}")
    return segment


async def reevaluate(
    session: AsyncSession, customer: Customer, *, now: datetime | None = None
) -> None:
    """Bring the customer's memberships in line with its view."""
    ahead = batching.current(session)
    segments = ahead.segments if ahead is not None else await repository.list_segments(session)
    if segments:
        await _evaluate(session, customer, segments, now or datetime.now(UTC))


async def _evaluate(
    session: AsyncSession, customer: Customer, segments: Sequence[Segment], now: datetime
) -> None:
    known = customer.merged_into is None and customer.erased_at is None
    view = facts(customer)
    cid = customer.customer_id
    held = await _memberships(session, cid)
    for segment in segments:
        wanted = known and compiled(segment.expression).predicate(view, now)
        if wanted == (segment.name in held):
            continue
        await batching.write_timeline(session)  # joining or leaving reads the money history
        if wanted:
            await repository.add_member(session, segment.name, cid, now)
            batching.joined(session, cid, segment.name)
            await _publish(session, SegmentEntered, segment.name, cid, now)
        else:
            await repository.remove_member(session, segment.name, cid)
            batching.left(session, cid, segment.name)
            await _publish(session, SegmentExited, segment.name, cid, now)


async def _memberships(session: AsyncSession, customer_id: str) -> set[str]:
    ahead = batching.current(session)
    if ahead is not None and customer_id in ahead.members:
        return set(ahead.members[customer_id])
    return set(await repository.list_member_segments(session, customer_id))


@functools.lru_cache(maxsize=1024)
def compiled(expression: str) -> Compiled:
    """A segment expression compiled once (segments are re-evaluated on every event)."""
    return compile_expression(expression)


async def leave_all(session: AsyncSession, customer_id: str, *, now: datetime) -> None:
    for name in await repository.list_member_segments(session, customer_id):
        await repository.remove_member(session, name, customer_id)
        await _publish(session, SegmentExited, name, customer_id, now)


async def _publish(
    session: AsyncSession,
    kind: type[SegmentEntered | SegmentExited],
    segment: str,
    customer_id: str,
    now: datetime,
) -> None:
    event = kind.create(
        id=str(uuid.uuid4()),
        subject=customer_id,
        source=SOURCE,
        time=now,
        data=SegmentChangeData(segment=segment),
    )
    await outbox.enqueue(session, event)


async def evaluate_all(
    session: AsyncSession, segments: Sequence[Segment], *, now: datetime
) -> None:
    after: str | None = None
    while batch := await repository.list_customers_after(session, after, SWEEP_BATCH):
        for customer in batch:
            await _evaluate(session, customer, segments, now)
        after = batch[-1].customer_id


async def sweep(db: Database, *, now: datetime | None = None) -> None:
    """Re-evaluate every customer against the time-based segments (one transaction)."""
    async with db.unit_of_work() as session:
        segments = [
            s for s in await repository.list_segments(session) if compiled(s.expression).time_based
        ]
        if segments:
            await evaluate_all(session, segments, now=now or datetime.now(UTC))
