from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _as_utc(value: datetime) -> datetime:
    """SQLite returns stored UTC times without an offset; say so in the response."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class OutreachRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    journey: str
    channel: str
    template: str
    status: str
    attempts: int
    last_error: str | None
    trigger_event_id: str | None
    created_at: UtcDatetime
    due_at: UtcDatetime
    sent_at: UtcDatetime | None


class OutreachPage(BaseModel):
    items: list[OutreachRead]
    next_before_id: str | None
