"""Tables of the churn/CLV part of engagement (registered on engagement's Base).

* ``churn_purchases`` -- every purchase seen, keyed by its purchase id, with its local day
  and the amount refunded so far; statistics are recomputed from these rows, so events that
  arrive late or out of order converge to the same result;
* ``churn_refunds`` -- refunds by id (a refund may arrive before its purchase);
* ``churn_customers`` -- per-customer statistics and the latest scores;
* ``churn_complaints`` -- complaint cases and whether they are still open;
* ``churn_models`` -- every fitted model; the newest is the current one.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, Index, Integer, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from services.engagement.models import Base
from shared.db import UtcDateTime

MONEY = Numeric(18, 4)
# Purchases, refunds and complaints remember whose they were, so an undone merge gives
# them back (``service.unmerge``).
ORIGIN_COMMENT = (
    "The customer id the event named, when the row is kept under another one "
    "(a merge moved it, or it named an id merged away); NULL: customer_id's own"
)


class ChurnPurchase(Base):
    __tablename__ = "churn_purchases"
    # The reports' scans: one customer's purchases in time order, and a time range; both
    # covering (PostgreSQL) so the monthly aggregates read the index only.
    __table_args__ = (
        Index(
            "ix_churn_purchases_customer_id_occurred_at",
            "customer_id",
            "occurred_at",
            postgresql_include=["amount", "refunded"],
        ),
        Index(
            "ix_churn_purchases_occurred_at",
            "occurred_at",
            postgresql_include=["customer_id", "amount", "refunded", "currency"],
        ),
    )

    purchase_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    day: Mapped[date] = mapped_column(Date, comment="Local calendar day of the event time")
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    refunded: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    origin_id: Mapped[str | None] = mapped_column(String(64), comment=ORIGIN_COMMENT)


class ChurnRefund(Base):
    __tablename__ = "churn_refunds"

    refund_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(String(128), index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    origin_id: Mapped[str | None] = mapped_column(String(64), comment=ORIGIN_COMMENT)


class ChurnCustomer(Base):
    """Purchase statistics (event time) and the latest scores of one customer."""

    __tablename__ = "churn_customers"
    __table_args__ = (
        Index("ix_churn_customers_band", "band"),
        Index("ix_churn_customers_clv", "clv"),
    )

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str | None] = mapped_column(String(3))
    first_day: Mapped[date | None] = mapped_column(Date)
    last_day: Mapped[date | None] = mapped_column(Date)
    purchase_days: Mapped[int] = mapped_column(Integer, default=0)
    repeat_purchases: Mapped[int] = mapped_column(Integer, default=0)
    total_spend: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    average_order_value: Mapped[Decimal | None] = mapped_column(MONEY)
    repeat_average_value: Mapped[float] = mapped_column(Float, default=0.0)
    gap_count: Mapped[int] = mapped_column(Integer, default=0)
    gap_median_days: Mapped[float | None] = mapped_column(Float)
    gap_p90_days: Mapped[float | None] = mapped_column(Float)
    detractor_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    detractor_score: Mapped[int | None] = mapped_column(Integer)
    open_complaints: Mapped[int] = mapped_column(Integer, default=0)
    risk: Mapped[float | None] = mapped_column(Float)
    band: Mapped[str | None] = mapped_column(String(8))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    p_alive: Mapped[float | None] = mapped_column(Float)
    expected_purchases: Mapped[float | None] = mapped_column(Float)
    clv: Mapped[Decimal | None] = mapped_column(MONEY)
    model_id: Mapped[int | None] = mapped_column(Integer)
    scored_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ChurnBandChange(Base):
    """Every change of a customer's risk band, as scored (for the at-risk and won-back report)."""

    __tablename__ = "churn_band_changes"
    __table_args__ = (Index("ix_churn_band_changes_band_changed_at", "band", "changed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    band: Mapped[str] = mapped_column(String(8))
    previous_band: Mapped[str] = mapped_column(String(8))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChurnCustomerMonth(Base):
    """The UTC months in which a customer bought (purchases not refunded in full).

    Kept by ``churn.months`` from the customer's purchases on every change; ``cohort`` is the
    customer's first such month and ``prev_active`` says the customer also bought the month
    before. The reports read it, never ``churn_purchases``, for their monthly figures.
    """

    __tablename__ = "churn_customer_months"
    __table_args__ = (
        Index(
            "ix_churn_customer_months_month",
            "month",
            postgresql_include=["customer_id", "purchases", "revenue", "currency"],
        ),
    )

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[int] = mapped_column(Integer, primary_key=True, comment="year * 12 + month - 1")
    purchases: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(
        MONEY, comment="Net of refunds, purchases in the customer's currency only"
    )
    currency: Mapped[str] = mapped_column(String(3), comment="The customer's (earliest purchase)")
    cohort: Mapped[int] = mapped_column(Integer)
    prev_active: Mapped[bool] = mapped_column(Boolean)


class ChurnCustomerCohort(Base):
    """A buying customer's first month and the month of their second purchase (if any)."""

    __tablename__ = "churn_customer_cohorts"
    __table_args__ = (
        Index("ix_churn_customer_cohorts_cohort", "cohort", postgresql_include=["second"]),
    )

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cohort: Mapped[int] = mapped_column(Integer)
    second: Mapped[int | None] = mapped_column(Integer, comment="Month of the second purchase")


class ChurnCohortMonth(Base):
    """Customers of a cohort (first month) buying in a month, and how many of them also bought
    the month before; summed over ``shard`` (spread so that writers rarely wait on a row)."""

    __tablename__ = "churn_cohort_months"

    cohort: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[int] = mapped_column(Integer, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    active: Mapped[int] = mapped_column(Integer)
    retained: Mapped[int] = mapped_column(Integer)


class ChurnMonthBuyers(Base):
    """Customers buying in a month by the month they last bought before (``since``, 0 for
    their first purchase), with their purchases and net revenue, per currency; summed over
    ``shard``. Customers buying in a range of months are those rows' customers with ``since``
    before the range: each counted once, without reading a row per customer."""

    __tablename__ = "churn_month_buyers"

    month: Mapped[int] = mapped_column(Integer, primary_key=True)
    since: Mapped[int] = mapped_column(Integer, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    customers: Mapped[int] = mapped_column(Integer)
    purchases: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(MONEY)


class ChurnComplaint(Base):
    __tablename__ = "churn_complaints"

    case_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    opened: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    origin_id: Mapped[str | None] = mapped_column(String(64), comment=ORIGIN_COMMENT)


class ChurnModel(Base):
    """One population fit: BG/NBD always, Gamma-Gamma when there were repeat buyers."""

    __tablename__ = "churn_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fitted_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now())
    calibration_end: Mapped[date] = mapped_column(Date)
    r: Mapped[float] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)
    a: Mapped[float] = mapped_column(Float)
    b: Mapped[float] = mapped_column(Float)
    log_likelihood: Mapped[float] = mapped_column(Float)
    n_customers: Mapped[int] = mapped_column(Integer)
    converged: Mapped[bool] = mapped_column(Boolean)
    fit_seconds: Mapped[float] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(3))
    spend: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="Gamma-Gamma p, q, gamma, log_likelihood, n_customers (or null)"
    )
    combiner: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="Risk weights learned in a backtest (calibration.Combiner), or null"
    )
