"""After a merge undo: the "latest" view fields each customer's own timeline implies.

While two customers are merged, events for either id update the survivor's
latest tier, churn score, NPS, outreach (and the absorbed id's events only reach
the timeline). Undo moves the absorbed id's entries back, so these fields are
recomputed for both customers from the entries they now hold, exactly as
applying those events to each customer alone would have set them — which is also
what a rebuild from the topics does.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.models import Customer, TimelineEntry

POINTS_KINDS = (
    "points.earned",
    "points.released",
    "points.redeemed",
    "points.reversed",
    "points.expired",
    "redemption.cancelled",
)
KINDS = ("tier.changed", "churn.risk_changed", "response.recorded", "outreach.sent", *POINTS_KINDS)


async def restore_latest(session: AsyncSession, customer: Customer) -> None:
    t = TimelineEntry
    rows = (
        await session.execute(
            select(t)
            .where(t.customer_id == customer.customer_id, t.kind.in_(KINDS))
            .order_by(t.occurred_at, t.seq)
        )
    ).scalars()
    latest: dict[str, TimelineEntry] = {}
    points: list[TimelineEntry] = []
    for row in rows:
        if row.kind in POINTS_KINDS:
            points.append(row)
        elif row.kind != "response.recorded" or _is_nps(row.details):
            latest[row.kind] = row  # ordered by time: the last one wins
    _tier(customer, latest.get("tier.changed"))
    _churn(customer, latest.get("churn.risk_changed"))
    _nps(customer, latest.get("response.recorded"))
    _outreach(customer, latest.get("outreach.sent"))
    _points(customer, points)


def _is_nps(details: dict[str, Any]) -> bool:
    return details.get("survey_kind") == "nps" and details.get("score") is not None


def _tier(customer: Customer, entry: TimelineEntry | None) -> None:
    customer.tier = entry.details.get("tier") if entry else None
    customer.tier_updated_at = entry.occurred_at if entry else None


def _churn(customer: Customer, entry: TimelineEntry | None) -> None:
    if entry is not None and "risk" not in entry.details:
        return  # written before entries kept the score: nothing better to go on
    d = entry.details if entry else {}
    customer.churn_risk, customer.churn_band = d.get("risk"), d.get("band")
    customer.clv = Decimal(str(d["clv"])) if d.get("clv") is not None else None
    customer.clv_currency = d.get("clv_currency")
    customer.churn_updated_at = entry.occurred_at if entry else None


def _nps(customer: Customer, entry: TimelineEntry | None) -> None:
    customer.last_nps = int(entry.details["score"]) if entry else None
    customer.last_nps_at = entry.occurred_at if entry else None


def _outreach(customer: Customer, entry: TimelineEntry | None) -> None:
    customer.last_outreach_at = entry.occurred_at if entry else None
    customer.last_outreach_journey = entry.details.get("journey") if entry else None


def _points(customer: Customer, entries: list[TimelineEntry]) -> None:
    """Loyalty's balances addressed to this very id: the last one processed wins."""
    own = [e for e in entries if e.origin_id == customer.customer_id]
    with_balance = [e for e in own if "balance" in e.details]
    if own and len(with_balance) < len(own):
        return  # entries from before balances were kept: leave the figure as it is
    if not own:
        customer.points_balance = customer.points_updated_at = None
        return
    customer.points_balance = int(max(with_balance, key=lambda e: e.seq).details["balance"])
    customer.points_updated_at = max(e.occurred_at for e in own)
