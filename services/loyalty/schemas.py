from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class MemberRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    balance: int
    lifetime_earned: int
    updated_at: datetime


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    points: int
    balance_after: int
    reason: str
    source_event_id: str | None
    purchase_id: str | None
    occurred_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerEntryRead]
    next_before_id: int | None
