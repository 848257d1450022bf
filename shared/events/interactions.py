"""Events written by apps, web, stores and support tools: everything short of buying."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload
from shared.events.common import Channel

INTERACTIONS_TOPIC = "customer.interactions"

InteractionKind = Literal[
    "page_view",
    "app_open",
    "store_visit",
    "support_call",
    "support_chat",
    "email_opened",
    "email_clicked",
    "social_message",
    "review",
    "referral",
    "other",
]


class InteractionRecordedData(Payload):
    channel: Channel
    kind: InteractionKind
    summary: str | None = Field(default=None, max_length=500)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=50)


class InteractionRecorded(Event):
    """A customer touched the business somewhere (viewed, opened, visited, called…)."""

    TOPIC: ClassVar[str] = INTERACTIONS_TOPIC
    type: Literal["interaction.recorded"] = "interaction.recorded"
    data: InteractionRecordedData


class FeedbackSubmittedData(Payload):
    """An answer captured outside Keepwell's forms (call centre, kiosk, partner)."""

    survey_id: str
    channel: Channel
    answers: dict[str, int | str | list[str]] = Field(
        description="Question id → answer (0-10 for NPS, 1-5 for CSAT, text or choices)"
    )
    store_id: str | None = Field(default=None, max_length=64)
    submitted_by: str | None = Field(default=None, max_length=100, description="Agent id")


class FeedbackSubmitted(Event):
    TOPIC: ClassVar[str] = INTERACTIONS_TOPIC
    type: Literal["feedback.submitted"] = "feedback.submitted"
    data: FeedbackSubmittedData


EVENTS: tuple[type[Event], ...] = (InteractionRecorded, FeedbackSubmitted)
