from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel

from services.profile.service import CustomerView
from shared.events import Event


class MoneyRead(BaseModel):
    amount: Decimal
    currency: str


class LifetimeRead(BaseModel):
    order_count: int
    total_spend: MoneyRead | None
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None


class PointsRead(BaseModel):
    points_balance: int
    updated_at: datetime


class OutreachRead(BaseModel):
    at: datetime
    journey: str


class CustomerRead(BaseModel):
    """The 360° view of one customer."""

    customer_id: str
    name: str | None
    email: str | None
    phone: str | None
    language: str | None
    timezone: str | None
    created_at: datetime
    lifetime: LifetimeRead
    channels: list[str]
    loyalty: PointsRead | None
    last_outreach: OutreachRead | None

    @classmethod
    def from_view(cls, view: CustomerView) -> CustomerRead:
        c = view.customer
        spend = view.total_spend
        return cls(
            customer_id=c.customer_id,
            name=c.name,
            email=c.email,
            phone=c.phone,
            language=c.language,
            timezone=c.timezone,
            created_at=c.created_at,
            lifetime=LifetimeRead(
                order_count=c.order_count,
                total_spend=MoneyRead(amount=spend.amount, currency=spend.currency)
                if spend
                else None,
                first_purchase_at=c.first_purchase_at,
                last_purchase_at=c.last_purchase_at,
            ),
            channels=view.channels,
            loyalty=PointsRead(points_balance=c.points_balance, updated_at=c.points_updated_at)
            if c.points_balance is not None and c.points_updated_at is not None
            else None,
            last_outreach=OutreachRead(at=c.last_outreach_at, journey=c.last_outreach_journey)
            if c.last_outreach_at is not None and c.last_outreach_journey is not None
            else None,
        )


class IngestedEventRead(BaseModel):
    """An accepted event: queued for ``topic`` (without the deployment's prefix)."""

    id: str
    type: str
    topic: str

    @classmethod
    def from_event(cls, event: Event) -> IngestedEventRead:
        return cls(id=event.id, type=event.type, topic=event.TOPIC)
