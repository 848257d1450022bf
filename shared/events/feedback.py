"""Events owned by the feedback service: surveys, responses and complaints."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from shared.events.base import Event, Payload

FEEDBACK_TOPIC = "feedback.events"

Severity = Literal["low", "medium", "high", "critical"]


class SurveyInvitationCreatedData(Payload):
    invitation_id: str
    survey_id: str
    url: str = Field(description="Signed, single-use link to answer")
    expires_at: datetime
    reason: str = Field(description="e.g. after_purchase, follow_up, periodic")
    trigger_event_id: str | None = None
    purchase_id: str | None = Field(default=None, description="The purchase asked about")
    case_id: str | None = Field(default=None, description="The complaint a follow-up is about")


class SurveyInvitationCreated(Event):
    """Feedback wants this customer asked; engagement delivers the link."""

    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["survey.invitation_created"] = "survey.invitation_created"
    data: SurveyInvitationCreatedData


class ResponseRecordedData(Payload):
    response_id: str
    survey_id: str
    kind: Literal["nps", "csat", "custom"]
    score: int | None = None
    category: (
        Literal["promoter", "passive", "detractor", "satisfied", "neutral", "dissatisfied"] | None
    ) = None
    channel: str
    store_id: str | None = None
    comment: str | None = Field(default=None, max_length=2000)
    case_id: str | None = Field(
        default=None, description="The complaint a follow-up survey answer is about"
    )


class ResponseRecorded(Event):
    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["response.recorded"] = "response.recorded"
    data: ResponseRecordedData


class ComplaintOpenedData(Payload):
    case_id: str
    category: str
    severity: Severity
    channel: str
    summary: str | None = Field(default=None, max_length=500)
    first_response_due: datetime
    resolution_due: datetime
    response_id: str | None = Field(
        default=None, description="The detractor response that opened the case, if any"
    )
    interaction_id: str | None = Field(
        default=None, description="The support-channel interaction that opened the case, if any"
    )


class ComplaintOpened(Event):
    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["complaint.opened"] = "complaint.opened"
    data: ComplaintOpenedData


class ComplaintSlaBreachedData(Payload):
    case_id: str
    deadline: Literal["first_response", "resolution"]
    due_at: datetime
    severity: Severity


class ComplaintSlaBreached(Event):
    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["complaint.sla_breached"] = "complaint.sla_breached"
    data: ComplaintSlaBreachedData


class ComplaintResolvedData(Payload):
    case_id: str
    resolution: str | None = Field(default=None, max_length=1000)
    response_id: str | None = Field(
        default=None,
        description="The detractor response that opened the case, if any (as in complaint.opened)",
    )


class ComplaintResolved(Event):
    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["complaint.resolved"] = "complaint.resolved"
    data: ComplaintResolvedData


class ComplaintAcknowledgedData(Payload):
    case_id: str
    first_response_due: datetime
    within_sla: bool = Field(description="Acknowledged by the first-response deadline")
    note: str | None = Field(default=None, max_length=1000)


class ComplaintAcknowledged(Event):
    """Staff answered the customer for the first time (or again, after a reopening)."""

    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["complaint.acknowledged"] = "complaint.acknowledged"
    data: ComplaintAcknowledgedData


class ComplaintReopenedData(Payload):
    case_id: str
    reopen_count: int = Field(ge=1, description="How many times the case has been reopened")
    resolution_due: datetime = Field(description="The new resolution deadline")
    note: str | None = Field(default=None, max_length=1000)


class ComplaintReopened(Event):
    """A resolved case is open again; the resolution clock restarts."""

    TOPIC: ClassVar[str] = FEEDBACK_TOPIC
    type: Literal["complaint.reopened"] = "complaint.reopened"
    data: ComplaintReopenedData


EVENTS: tuple[type[Event], ...] = (
    SurveyInvitationCreated,
    ResponseRecorded,
    ComplaintOpened,
    ComplaintSlaBreached,
    ComplaintResolved,
    ComplaintAcknowledged,
    ComplaintReopened,
)
