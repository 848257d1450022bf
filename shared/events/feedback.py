"""Events owned by the feedback service: surveys, responses and complaints."""

from __future__ import annotations

from shared.events.base import Event

FEEDBACK_TOPIC = "feedback.events"

EVENTS: tuple[type[Event], ...] = ()
