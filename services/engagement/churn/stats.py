"""Per-customer purchase statistics from the customer's purchases (pure functions).

Same-day purchases collapse into one purchase day (the models' definition); a purchase
refunded in full is no purchase at all, a partly refunded one counts its net amount.
Amounts are summed in the customer's currency: that of their earliest purchase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

import numpy as np


class Purchased(Protocol):
    """What the statistics need of a purchase (``PurchaseRow``, a ``ChurnPurchase`` row, …)."""

    @property
    def purchase_id(self) -> str: ...
    @property
    def day(self) -> date: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def refunded(self) -> Decimal: ...


@dataclass(frozen=True)
class PurchaseRow:
    purchase_id: str
    day: date
    amount: Decimal
    currency: str
    refunded: Decimal


@dataclass(frozen=True)
class Stats:
    currency: str | None
    first_day: date | None
    last_day: date | None
    purchase_days: int
    repeat_purchases: int
    total_spend: Decimal
    average_order_value: Decimal | None
    repeat_average_value: float
    gap_count: int
    gap_median_days: float | None
    gap_p90_days: float | None


EMPTY = Stats(None, None, None, 0, 0, Decimal(0), None, 0.0, 0, None, None)


def compute_stats(rows: Sequence[Purchased], percentile: float = 90.0) -> Stats:
    kept = sorted((r for r in rows if not _fully_refunded(r)), key=lambda r: (r.day, r.purchase_id))
    if not kept:
        return EMPTY
    currency = kept[0].currency
    by_day: dict[date, Decimal] = {}
    for row in kept:
        net = row.amount - row.refunded if row.currency == currency else Decimal(0)
        by_day[row.day] = by_day.get(row.day, Decimal(0)) + max(net, Decimal(0))
    days = sorted(by_day)
    total = sum(by_day.values(), Decimal(0))
    repeat = len(days) - 1
    gaps = np.diff([d.toordinal() for d in days]).astype(np.float64)
    return Stats(
        currency=currency,
        first_day=days[0],
        last_day=days[-1],
        purchase_days=len(days),
        repeat_purchases=repeat,
        total_spend=total,
        average_order_value=(total / len(days)).quantize(Decimal("0.0001")),
        repeat_average_value=float(total - by_day[days[0]]) / repeat if repeat else 0.0,
        gap_count=int(gaps.size),
        gap_median_days=float(np.median(gaps)) if gaps.size else None,
        gap_p90_days=float(np.percentile(gaps, percentile)) if gaps.size else None,
    )


def _fully_refunded(row: Purchased) -> bool:
    return row.refunded > 0 and row.refunded >= row.amount
