"""Profile's tables: the customer of record with its 360° view, identities, consent,
the omnichannel timeline, merges and segments.

The view columns are a projection of other services' events. Events can arrive
late or out of order, so every "latest" column is paired with the event time it
came from and only moves forward (max), every "earliest" only moves back (min),
and spend is kept as two sums (gross and refunded) that converge in any order.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.access_log import access_log_table
from shared.db import UtcDateTime, new_metadata

Amount = Numeric(18, 4)


class Base(DeclarativeBase):
    metadata = new_metadata()


class Customer(Base):
    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    name_folded: Mapped[str | None] = mapped_column(
        String(600), index=True, comment="casefolded name, for prefix search"
    )
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    birthday: Mapped[date | None] = mapped_column(Date)
    contact_seen_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="Event time of the newest contact details applied"
    )
    preferred_channel: Mapped[str | None] = mapped_column(String(8))
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    # The 360° view: lifetime purchases (spend in one currency, see spend_currency).
    order_count: Mapped[int] = mapped_column(Integer, default=0)
    gross_spend: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    refunded_spend: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    spend_currency: Mapped[str | None] = mapped_column(
        String(3), comment="Currency of the first money event; others are not summed"
    )
    first_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # From loyalty.events, engagement.events and feedback.events.
    points_balance: Mapped[int | None] = mapped_column(BigInteger)
    points_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    tier: Mapped[str | None] = mapped_column(String(64))
    tier_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    churn_risk: Mapped[float | None] = mapped_column(Float)
    churn_band: Mapped[str | None] = mapped_column(String(8))
    clv: Mapped[Decimal | None] = mapped_column(Amount)
    clv_currency: Mapped[str | None] = mapped_column(String(3))
    churn_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_nps: Mapped[int | None] = mapped_column(Integer)
    last_nps_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    open_complaints: Mapped[int] = mapped_column(Integer, default=0)
    last_outreach_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_outreach_journey: Mapped[str | None] = mapped_column(String(64))
    # Lifecycle: absorbed by a merge (events for this id go to the survivor), or erased.
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)
    erased_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, server_default=func.now(), onupdate=func.now()
    )


class CustomerChannel(Base):
    """A channel (store, web, app…) a customer has used, with when."""

    __tablename__ = "customer_channels"

    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("customers.customer_id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Identity(Base):
    """One way to recognise a customer: a normalised (kind, value) owned by one customer.

    ``origin_id`` is the customer that first claimed it, so a merge can be undone.
    """

    __tablename__ = "identities"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(254), primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("customers.customer_id", ondelete="CASCADE"), index=True
    )
    origin_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Consent(Base):
    """Per-channel consent with where and when it was last changed."""

    __tablename__ = "consents"

    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("customers.customer_id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    status: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TimelineEntry(Base):
    """One thing that happened to or with a customer, from any channel or service.

    ``origin_id`` is the customer id the event named, so an undone merge can move
    entries back. ``seq`` breaks ties of ``occurred_at`` for keyset pagination.
    """

    __tablename__ = "timeline"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("customers.customer_id", ondelete="CASCADE")
    )
    origin_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(16))
    summary: Mapped[str | None] = mapped_column(String(500))
    ref: Mapped[str | None] = mapped_column(
        String(128), comment="The purchase, case or outreach the entry is about"
    )
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    amount: Mapped[Decimal | None] = mapped_column(
        Amount, comment="The money of a purchase or refund entry (reports sum it in SQL)"
    )
    currency: Mapped[str | None] = mapped_column(String(3))
    event_source: Mapped[str] = mapped_column(String(256))
    event_id: Mapped[str] = mapped_column(String(128))

    __table_args__ = (
        UniqueConstraint("event_source", "event_id", "kind"),
        Index("ix_timeline_customer_time", "customer_id", "occurred_at", "seq"),
        Index("ix_timeline_origin", "origin_id"),
        Index("ix_timeline_ref", "customer_id", "ref"),
    )


class SaleKey(Base):
    """A purchase or refund already counted, by its producer's own id.

    A till that retries a sale under a new event id (or a replay after the inbox
    was pruned) names the same ``purchase_id`` / ``refund_id``: the view counts
    the sale once per (event source, kind, that id). Not tied to a customer, so a
    merge, an undo or an erasure leaves it where it is.
    """

    __tablename__ = "sale_keys"

    event_source: Mapped[str] = mapped_column(String(256), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    business_id: Mapped[str] = mapped_column(
        String(128), primary_key=True, comment="purchase_id of a purchase, refund_id of a refund"
    )
    event_id: Mapped[str] = mapped_column(String(128), comment="The event that counted it")


class Merge(Base):
    """A merge of ``absorbed_id`` into ``survivor_id``, with what undoing it needs."""

    __tablename__ = "merges"

    merge_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(64), index=True)
    absorbed_id: Mapped[str] = mapped_column(String(64), index=True)
    absorbed_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime)
    undone_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Segment(Base):
    __tablename__ = "segments"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    expression: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment: Mapped[str] = mapped_column(
        String(64), ForeignKey("segments.name", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("customers.customer_id", ondelete="CASCADE"), primary_key=True
    )
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_segment_members_customer", "customer_id"),)


class SegmentSales(Base):
    """Orders and net revenue per segment, UTC day and currency, of the segment's
    *current* members (their whole history, by event time).

    A rollup for the segments report: every membership change and every money
    entry added to, moved between or removed from a timeline adjusts it in the
    same transaction (``services/profile/rollup.py``), so it always equals the sum
    over today's members without scanning their purchases.
    """

    __tablename__ = "segment_sales"

    segment: Mapped[str] = mapped_column(
        String(64), ForeignKey("segments.name", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    revenue: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))


# Staff reads of customers (shared.access_log): who looked at whom, when, through which route.
AccessLog = access_log_table(Base.metadata)
