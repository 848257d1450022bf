"""Churn domain logic driven by events: purchase statistics and feedback signals.

Every function takes the session and never commits (the entrypoint owns the transaction).
Statistics are recomputed from the customer's stored purchases, so redelivered, late or
out-of-order events converge to the same state.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from services.engagement.churn import months, scores
from services.engagement.churn.models import (
    ChurnBandChange,
    ChurnComplaint,
    ChurnCustomer,
    ChurnPurchase,
    ChurnRefund,
)
from services.engagement.churn.settings import ChurnSettings
from services.engagement.churn.stats import Stats, compute_stats
from shared.db import dialect_insert
from shared.events import Event
from shared.merges import Merges

CUSTOMER_TABLES = (ChurnPurchase, ChurnRefund, ChurnComplaint, ChurnCustomer, ChurnBandChange)
ORIGIN_TABLES = (ChurnPurchase, ChurnRefund, ChurnComplaint)  # they keep ``origin_id``


def origin_of(session: AsyncSession, event: Event) -> str | None:
    """The id ``event`` named if it now acts for another customer (its survivor), kept on
    the row it makes so an undone merge gives the row back; None if it named its own."""
    named = Merges.named(session, event)
    return None if named == event.subject else named


async def record_purchase(
    session: AsyncSession,
    *,
    customer_id: str,
    purchase_id: str,
    occurred_at: datetime,
    amount: Decimal,
    currency: str,
    config: ChurnSettings,
    now: datetime,
    origin_id: str | None = None,
) -> None:
    values = {
        "purchase_id": purchase_id,
        "customer_id": customer_id,
        "origin_id": origin_id,
        "day": occurred_at.date(),
        "occurred_at": occurred_at,
        "amount": amount,
        "currency": currency,
        "refunded": _refunded_so_far(purchase_id),  # a refund may have come first
    }
    insert = dialect_insert(session)
    added = await session.execute(insert(ChurnPurchase).values(values).on_conflict_do_nothing())
    if not cast(CursorResult[Any], added).rowcount:
        return  # the same purchase again (another event id): nothing new
    await refresh(session, customer_id, config=config, now=now)


async def record_refund(
    session: AsyncSession,
    *,
    customer_id: str,
    refund_id: str,
    purchase_id: str,
    amount: Decimal,
    config: ChurnSettings,
    now: datetime,
    origin_id: str | None = None,
) -> None:
    if await session.get(ChurnRefund, refund_id) is not None:
        return
    session.add(
        ChurnRefund(
            refund_id=refund_id,
            purchase_id=purchase_id,
            customer_id=customer_id,
            amount=amount,
            origin_id=origin_id,
        )
    )
    await session.flush()
    purchase = await session.get(ChurnPurchase, purchase_id)
    if purchase is None:
        return  # applied when the purchase arrives
    purchase.refunded = await _refunded(session, purchase_id)
    await session.flush()
    await refresh(session, purchase.customer_id, config=config, now=now)


def _refunded_so_far(purchase_id: str) -> ScalarSelect[Any]:
    return (
        select(func.coalesce(func.sum(ChurnRefund.amount), 0))
        .where(ChurnRefund.purchase_id == purchase_id)
        .scalar_subquery()
    )


async def _refunded(session: AsyncSession, purchase_id: str) -> Decimal:
    total = await session.scalar(
        select(func.coalesce(func.sum(ChurnRefund.amount), 0)).where(
            ChurnRefund.purchase_id == purchase_id
        )
    )
    return Decimal(total or 0)


async def refresh(
    session: AsyncSession, customer_id: str, *, config: ChurnSettings, now: datetime
) -> None:
    """Recompute a customer's statistics from their purchases, then re-score them."""
    rows = (
        await session.scalars(select(ChurnPurchase).where(ChurnPurchase.customer_id == customer_id))
    ).all()
    stats = compute_stats(rows, config.cadence_percentile)
    await months.refresh_months(session, customer_id, rows)
    customer = await customer_row(session, customer_id)
    apply_stats(customer, stats)
    await session.flush()
    await scores.rescore_customer(session, customer, config=config, now=now)


NEW_CUSTOMER: dict[str, Any] = {
    "purchase_days": 0,
    "repeat_purchases": 0,
    "total_spend": Decimal(0),
    "repeat_average_value": 0.0,
    "gap_count": 0,
    "open_complaints": 0,
}


async def customer_row(session: AsyncSession, customer_id: str) -> ChurnCustomer:
    """The customer's statistics row, created if new."""
    customer = await session.get(ChurnCustomer, customer_id)
    if customer is None:
        customer = ChurnCustomer(customer_id=customer_id, reasons=[], **NEW_CUSTOMER)
        session.add(customer)
    return customer


def apply_stats(customer: Any, stats: Stats) -> None:
    """Set the statistics on a customer row (an ORM object or a held copy)."""
    for name in Stats.__dataclass_fields__:
        setattr(customer, name, getattr(stats, name))


async def record_nps(
    session: AsyncSession,
    *,
    customer_id: str,
    at: datetime,
    score: int | None,
    detractor: bool,
    config: ChurnSettings,
    now: datetime,
) -> None:
    """The latest NPS answer (by event time) decides whether the detractor signal is on."""
    customer = await customer_row(session, customer_id)
    if customer.detractor_at is not None and customer.detractor_at > at:
        return
    customer.detractor_at = at if detractor else None
    customer.detractor_score = score if detractor else None
    await session.flush()
    await scores.rescore_customer(session, customer, config=config, now=now)


async def record_complaint(
    session: AsyncSession,
    *,
    customer_id: str,
    case_id: str,
    resolved: bool,
    config: ChurnSettings,
    now: datetime,
    origin_id: str | None = None,
) -> None:
    """Opened and resolved may arrive in either order; a resolved case stays resolved."""
    case = await session.get(ChurnComplaint, case_id)
    if case is None:
        case = ChurnComplaint(
            case_id=case_id,
            customer_id=customer_id,
            opened=False,
            resolved=False,
            origin_id=origin_id,
        )
        session.add(case)
    case.resolved = case.resolved or resolved
    case.opened = case.opened or not resolved
    await session.flush()
    customer = await customer_row(session, case.customer_id)
    customer.open_complaints = await _open_complaints(session, case.customer_id)
    await session.flush()
    await scores.rescore_customer(session, customer, config=config, now=now)


async def _open_complaints(session: AsyncSession, customer_id: str) -> int:
    count = await session.scalar(
        select(func.count()).where(
            ChurnComplaint.customer_id == customer_id,
            ChurnComplaint.opened.is_(True),
            ChurnComplaint.resolved.is_(False),
        )
    )
    return int(count or 0)


async def merge(
    session: AsyncSession,
    *,
    survivor: str,
    merged: str,
    config: ChurnSettings,
    now: datetime,
) -> None:
    """Fold the merged customer's purchases, refunds and complaints into the survivor; each
    keeps the id it came from (``origin_id``, unless it has one already), so ``unmerge``
    can give it back."""
    if survivor == merged:
        return
    for table in ORIGIN_TABLES:
        await session.execute(
            update(table)
            .where(table.customer_id == merged)
            .values(customer_id=survivor, origin_id=func.coalesce(table.origin_id, merged))
        )
    await session.execute(
        update(ChurnBandChange)
        .where(ChurnBandChange.customer_id == merged)
        .values(customer_id=survivor)
    )
    await months.refresh_months(session, merged, [])  # its months now count for the survivor
    old = await session.get(ChurnCustomer, merged)
    customer = await customer_row(session, survivor)
    if old is not None:
        _fold_feedback(customer, old)
        await session.delete(old)
    customer.open_complaints = await _open_complaints(session, survivor)
    await session.flush()
    await refresh(session, survivor, config=config, now=now)


def _fold_feedback(customer: ChurnCustomer, old: ChurnCustomer) -> None:
    if old.detractor_at is not None and (
        customer.detractor_at is None or old.detractor_at > customer.detractor_at
    ):
        customer.detractor_at, customer.detractor_score = old.detractor_at, old.detractor_score


async def unmerge(
    session: AsyncSession,
    *,
    survivor: str,
    restored: str,
    config: ChurnSettings,
    now: datetime,
) -> None:
    """An undone merge: the purchases, refunds and complaints that came to ``survivor`` from
    ``restored`` (moved by the merge, or naming ``restored`` since) go back to it, with the
    refunds of the purchases that go back, and both customers' statistics, months and
    scores are recomputed. Band changes and NPS signals stay with the survivor (they cannot
    be told apart). Applying it again moves nothing and changes nothing."""
    if survivor == restored:
        return
    moved = 0
    for table in (ChurnPurchase, ChurnComplaint):
        done = await session.execute(
            update(table)
            .where(table.customer_id == survivor, table.origin_id == restored)
            .values(customer_id=restored, origin_id=None)
        )
        moved += cast(CursorResult[Any], done).rowcount
    restored_purchases = select(ChurnPurchase.purchase_id).where(
        ChurnPurchase.customer_id == restored
    )
    done = await session.execute(
        update(ChurnRefund)
        .where(
            ChurnRefund.customer_id == survivor,
            or_(ChurnRefund.origin_id == restored, ChurnRefund.purchase_id.in_(restored_purchases)),
        )
        .values(customer_id=restored, origin_id=None)
    )
    if not moved and not cast(CursorResult[Any], done).rowcount:
        return
    for customer_id in sorted((survivor, restored)):  # rows locked in key order, as elsewhere
        customer = await customer_row(session, customer_id)
        customer.open_complaints = await _open_complaints(session, customer_id)
        await session.flush()
        await refresh(session, customer_id, config=config, now=now)


async def erase(session: AsyncSession, *, customer_id: str) -> None:
    await months.refresh_months(session, customer_id, [])
    for table in CUSTOMER_TABLES:
        await session.execute(delete(table).where(table.customer_id == customer_id))
    for table in ORIGIN_TABLES:  # rows kept under a survivor no longer name the person
        await session.execute(
            update(table).where(table.origin_id == customer_id).values(origin_id=None)
        )
