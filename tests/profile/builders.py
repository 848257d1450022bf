"""Events as other services and tills would send them, at chosen times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from shared.events import Event
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.common import Channel, ContactHint
from shared.events.engagement import ChurnRiskChanged, OutreachSent, OutreachSentData
from shared.events.interactions import InteractionRecorded, InteractionRecordedData
from shared.events.loyalty import PointsEarned, PointsEarnedData, TierChanged

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
E = TypeVar("E", bound=Event)


def at(hours: float) -> datetime:
    """T0 plus some hours: lets a test say which event happened first."""
    return T0 + timedelta(hours=hours)


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def purchase(
    customer_id: str,
    amount: str = "100.00",
    *,
    currency: str = "EUR",
    when: datetime = T0,
    hint: ContactHint | None = None,
    channel: Channel = "store",
) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=customer_id,
        source="/pos/store-1",
        time=when,
        data=PurchaseCompletedData(
            purchase_id=f"p-{_uid()}",
            channel=channel,
            total={"amount": Decimal(amount), "currency": currency},
            customer=hint,
        ),
    )


def refund(
    customer_id: str, amount: str, *, currency: str = "EUR", when: datetime = T0
) -> PurchaseRefunded:
    return PurchaseRefunded.create(
        subject=customer_id,
        source="/pos/store-1",
        time=when,
        data=PurchaseRefundedData(
            refund_id=f"r-{_uid()}",
            purchase_id=f"p-{_uid()}",
            amount={"amount": Decimal(amount), "currency": currency},
        ),
    )


def interaction(
    customer_id: str, channel: Channel = "app", *, when: datetime = T0
) -> InteractionRecorded:
    return InteractionRecorded.create(
        subject=customer_id,
        source="/app/ios",
        time=when,
        data=InteractionRecordedData(channel=channel, kind="app_open"),
    )


def points(customer_id: str, balance: int, *, when: datetime = T0) -> PointsEarned:
    return PointsEarned.create(
        subject=customer_id,
        source="keepwell/loyalty",
        time=when,
        data=PointsEarnedData(points=10, balance=balance, reason="base", source_event_id=_uid()),
    )


def outreach(customer_id: str, journey: str, *, when: datetime = T0) -> OutreachSent:
    return OutreachSent.create(
        subject=customer_id,
        source="keepwell/engagement",
        time=when,
        data=OutreachSentData(
            outreach_id=_uid(), journey=journey, channel="email", template=journey
        ),
    )


def tier(customer_id: str, new_tier: str, *, when: datetime = T0) -> TierChanged:
    return TierChanged.create(
        subject=customer_id,
        source="keepwell/loyalty",
        time=when,
        data={"old_tier": "Bronze", "new_tier": new_tier, "direction": "up", "reason": "spend"},
    )


def churn(customer_id: str, risk: float = 0.7, *, when: datetime = T0) -> ChurnRiskChanged:
    band = "high" if risk >= 0.6 else "low"
    return ChurnRiskChanged.create(
        subject=customer_id,
        source="keepwell/engagement",
        time=when,
        data={"risk": risk, "band": band, "previous_band": "medium", "clv": Decimal("12.5"),
              "currency": "EUR"},
    )  # fmt: skip


def resent(event: E, *, subject: str | None = None, when: datetime | None = None) -> E:
    """The same sale sent again under a new event id (a till's retry), optionally naming
    another customer id (e.g. one merged since) or stamped later."""
    update: dict[str, object] = {"id": uuid.uuid4().hex}
    if subject is not None:
        update["subject"] = subject
    if when is not None:
        update["time"] = when
    return event.model_copy(update=update)
