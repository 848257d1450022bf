"""The event contract: every event type Keepwell publishes or accepts.

``decode`` turns the bytes of a Kafka message into a typed event in one pass
(the ``type`` attribute is the discriminator); anything else raises
``InvalidEvent`` with a reason a human can act on.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from shared.events import commerce, engagement, feedback, interactions, loyalty, profile
from shared.events.base import Event, Money, Payload, derived_id

ALL_EVENTS: tuple[type[Event], ...] = (
    *commerce.EVENTS,
    *interactions.EVENTS,
    *profile.EVENTS,
    *loyalty.EVENTS,
    *engagement.EVENTS,
    *feedback.EVENTS,
)
EVENT_TYPES: dict[str, type[Event]] = {cls.model_fields["type"].default: cls for cls in ALL_EVENTS}

OWNER_TOPICS: tuple[str, ...] = (
    commerce.PURCHASES_TOPIC,
    interactions.INTERACTIONS_TOPIC,
    profile.PROFILE_TOPIC,
    loyalty.LOYALTY_TOPIC,
    engagement.ENGAGEMENT_TOPIC,
    feedback.FEEDBACK_TOPIC,
)
SERVICES: tuple[str, ...] = ("profile", "loyalty", "engagement", "feedback")


def dead_letter_topic(service: str) -> str:
    return f"{service}.deadletter"


def all_topics(prefix: str = "") -> list[str]:
    names = [*OWNER_TOPICS, *(dead_letter_topic(s) for s in SERVICES)]
    return [prefix + name for name in names]


AnyEvent: Any = Annotated[Union[*ALL_EVENTS], Field(discriminator="type")]
_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)


class InvalidEvent(ValueError):
    """A message that is not a valid Keepwell event; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(raw: bytes | str | None) -> Event:
    if raw is None or len(raw) == 0:
        raise InvalidEvent("empty message (no value)")
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from exc


def validate_python(obj: Any) -> Event:
    """Validate an already-parsed JSON object (e.g. a REST body) as an event."""
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        if err["type"] == "union_tag_invalid":
            parts.append(f"unknown event type: {err.get('input', {}).get('type')!r}")
        elif err["type"] == "union_tag_not_found":
            parts.append("missing 'type' attribute")
        else:
            parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


__all__ = [
    "ALL_EVENTS",
    "EVENT_TYPES",
    "Event",
    "InvalidEvent",
    "Money",
    "Payload",
    "all_topics",
    "dead_letter_topic",
    "decode",
    "derived_id",
    "validate_python",
]
