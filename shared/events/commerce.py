"""Events written by tills, apps and storefronts: what customers buy and return."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Money, Payload
from shared.events.common import Channel, ContactHint

PURCHASES_TOPIC = "commerce.purchases"


class PurchaseLine(Payload):
    sku: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=100)
    quantity: int = Field(ge=1, le=100_000)
    unit_price: Decimal = Field(ge=0, max_digits=18, decimal_places=4)


# A refund names its sale by ``purchase_id`` alone (it may come from another till, or the
# web shop), so the id must be unique across the business, not only per till.
SALE_ID = (
    "Unique across the business, not only per till: a refund names the sale by this id "
    "alone, and loyalty awards a purchase_id once. A till that numbers its receipts "
    "from 1 prefixes its store and till, e.g. S12-T3-0001."
)


class PurchaseCompletedData(Payload):
    purchase_id: str = Field(min_length=1, max_length=128, description=SALE_ID)
    channel: Channel
    store_id: str | None = Field(default=None, max_length=64)
    total: Money = Field(description="What the customer paid, after discounts")
    lines: tuple[PurchaseLine, ...] = ()
    customer: ContactHint | None = None


class PurchaseCompleted(Event):
    """A customer paid for an order (at a till, in an app, on the web)."""

    TOPIC: ClassVar[str] = PURCHASES_TOPIC
    type: Literal["purchase.completed"] = "purchase.completed"
    data: PurchaseCompletedData


class RefundedLine(Payload):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=100_000)


class PurchaseRefundedData(Payload):
    refund_id: str = Field(
        min_length=1, max_length=128, description="Unique across the business, as a sale's"
    )
    purchase_id: str = Field(
        min_length=1, max_length=128, description="The refunded sale's purchase_id"
    )
    amount: Money = Field(description="The amount given back in this refund")
    lines: tuple[RefundedLine, ...] = ()
    reason: str | None = Field(default=None, max_length=500)


class PurchaseRefunded(Event):
    """Part or all of a purchase was returned and money given back."""

    TOPIC: ClassVar[str] = PURCHASES_TOPIC
    type: Literal["purchase.refunded"] = "purchase.refunded"
    data: PurchaseRefundedData


EVENTS: tuple[type[Event], ...] = (PurchaseCompleted, PurchaseRefunded)
