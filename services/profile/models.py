"""Profile's tables: the customer of record with its 360° view, and channels seen.

The view columns are a projection of other services' events. Events can arrive
late or out of order, so every "latest" column is paired with the event time it
came from and only moves forward (max), every "earliest" only moves back (min),
and spend is kept as two sums (gross and refunded) that converge in any order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Integer, Numeric, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UtcDateTime, new_metadata

Amount = Numeric(18, 4)


class Base(DeclarativeBase):
    metadata = new_metadata()


class Customer(Base):
    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    contact_seen_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="Event time of the newest contact details applied"
    )
    # The 360° view: lifetime purchases (spend in one currency, see spend_currency).
    order_count: Mapped[int] = mapped_column(Integer, default=0)
    gross_spend: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    refunded_spend: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    spend_currency: Mapped[str | None] = mapped_column(
        String(3), comment="Currency of the first money event; others are not summed"
    )
    first_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # From loyalty.events and engagement.events.
    points_balance: Mapped[int | None] = mapped_column(BigInteger)
    points_updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_outreach_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_outreach_journey: Mapped[str | None] = mapped_column(String(64))
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
