"""REST ingest: storefronts post the events POS terminals put on Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared import outbox
from shared.events import Event, InvalidEvent, validate_python
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from shared.events.interactions import InteractionRecorded
from shared.http import AppError

INGESTIBLE: tuple[type[Event], ...] = (PurchaseCompleted, PurchaseRefunded, InteractionRecorded)
MAX_INGEST_BATCH = 500


class EventRejected(AppError):
    """A posted event that is not valid, or not one the ingest endpoint accepts."""

    status_code = 422
    code = "invalid_event"


class MalformedBody(AppError):
    status_code = 422
    code = "invalid_json"


async def ingest(session: AsyncSession, *, body: Any) -> Sequence[Event]:
    """Validate posted events (all or nothing) and queue them for their topics.

    Re-posting an event (same source and id) is safe: consumers de-duplicate by them.
    """
    events = parse_ingest(body)
    await outbox.enqueue(session, *events)
    return events


def parse_ingest(body: Any) -> list[Event]:
    if isinstance(body, dict):
        return [_ingestible(body)]
    if not isinstance(body, list):
        raise EventRejected("the body must be a CloudEvent JSON object or an array of them")
    if not body:
        raise EventRejected("the array holds no events")
    if len(body) > MAX_INGEST_BATCH:
        raise EventRejected(f"{len(body)} events in one request; at most {MAX_INGEST_BATCH}")
    return [_ingestible(item, index) for index, item in enumerate(body)]


def _ingestible(obj: Any, index: int | None = None) -> Event:
    where = "" if index is None else f"event {index}: "
    try:
        event = validate_python(obj)
    except InvalidEvent as exc:
        raise EventRejected(where + exc.reason) from exc
    if not isinstance(event, INGESTIBLE):
        accepted = ", ".join(cls.model_fields["type"].default for cls in INGESTIBLE)
        raise EventRejected(
            f"{where}event type {event.type!r} cannot be ingested here (accepted: {accepted})"
        )
    return event
