"""HTTP request and response models only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.feedback.fields import Instant, Text
from shared.events.common import Channel
from shared.events.feedback import Severity

Language = Literal["vi", "en"]
AnswerValue = int | Text | list[Text]
Answers = dict[Text, AnswerValue]
ComplaintStatus = Literal["open", "acknowledged", "resolved", "reopened"]


class Question(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    kind: Literal["nps", "csat", "text", "single_choice", "multiple_choice"]
    text: dict[Language, Text] = Field(
        min_length=1, description='Question text per language, e.g. {"en": "...", "vi": "..."}'
    )
    choices: list[Text] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _choices_fit_the_kind(self) -> Self:
        needs_choices = self.kind in ("single_choice", "multiple_choice")
        if needs_choices != bool(self.choices):
            raise ValueError("choice questions need choices; other questions take none")
        return self


class SurveyContent(BaseModel):
    questions: list[Question] = Field(min_length=1, max_length=50)
    languages: list[Language] = Field(default=["vi", "en"], min_length=1)

    @model_validator(mode="after")
    def _every_question_in_every_language(self) -> Self:
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        for question in self.questions:
            missing = set(self.languages) - set(question.text)
            if missing:
                raise ValueError(f"question {question.id!r} has no text in {sorted(missing)}")
        return self


class SurveyCreate(SurveyContent):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    name: Text = Field(min_length=1, max_length=200)
    kind: Literal["nps", "csat", "custom"]
    audience: Literal["after_purchase", "follow_up", "periodic", "manual"] = "manual"
    segment: Text | None = Field(
        default=None, min_length=1, max_length=100, description="Periodic surveys: who is asked"
    )
    period_days: int | None = Field(
        default=None, ge=1, le=3650, description="Periodic surveys: how often"
    )
    active_from: Instant | None = None
    active_until: Instant | None = None

    @model_validator(mode="after")
    def _periodic_needs_segment_and_period(self) -> Self:
        periodic = self.audience == "periodic"
        if periodic != (self.segment is not None and self.period_days is not None):
            raise ValueError("segment and period_days are required for, and only for, periodic")
        return self

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.active_from and self.active_until and self.active_until <= self.active_from:
            raise ValueError("active_until must be after active_from")
        return self


class SurveyUpdate(SurveyContent):
    """New questions make a new version; answers keep the version they answered."""


class SurveyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    kind: str
    version: int
    questions: list[Question]
    languages: list[str]
    audience: str
    segment: str | None
    period_days: int | None
    active_from: datetime | None
    active_until: datetime | None
    created_at: datetime


class ResponseSubmit(BaseModel):
    """An answer from the web or app form; the signed token is the credential."""

    token: Text = Field(min_length=10, max_length=2000)
    answers: Answers = Field(min_length=1, max_length=50)
    customer_id: Text | None = Field(
        default=None, max_length=64, description="If sent, must be the customer the token names"
    )
    language: Language | None = None
    channel: Channel = "web"


class StaffResponseCreate(BaseModel):
    """An answer taken by staff (call centre, store) on the customer's behalf."""

    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    survey_id: Text = Field(min_length=1, max_length=64)
    answers: Answers = Field(min_length=1, max_length=50)
    channel: Channel = "phone"
    store_id: Text | None = Field(default=None, max_length=64)
    language: Language | None = None
    idempotency_key: Text | None = Field(
        default=None, max_length=128, description="Repeat it to update the same answer"
    )


class ResponseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    survey_id: str
    survey_version: int
    customer_id: str | None
    source: str
    channel: str
    nps_score: int | None
    csat_score: int | None
    category: str | None
    submitted_at: datetime
    updated_at: datetime


class ComplaintCreate(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    category: Text = Field(min_length=1, max_length=64)
    severity: Severity
    channel: Channel
    summary: Text | None = Field(default=None, max_length=500)


class ComplaintTransition(BaseModel):
    status: Literal["acknowledged", "resolved", "reopened"]
    note: Text | None = Field(default=None, max_length=1000)


class ComplaintRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    customer_id: str | None
    response_id: str | None
    interaction_id: str | None
    category: str
    severity: str
    channel: str
    summary: str | None
    status: ComplaintStatus
    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    resolution: str | None
    first_response_breached: bool
    resolution_breached: bool
    reopen_count: int


class ScoreRow(BaseModel):
    group: str | None
    responses: int
    score: float | None = Field(description="NPS (-100..100) or CSAT (% satisfied)")
    ci_low: float | None
    ci_high: float | None
    ci_half_width: float | None


class ComplaintStatsRow(BaseModel):
    group: str | None
    complaints: int
    first_response_sla_met_pct: float | None
    resolution_sla_met_pct: float | None
    median_first_response_seconds: float | None
    median_resolution_seconds: float | None


class FollowUpRow(BaseModel):
    group: str | None
    invited: int = Field(description="Follow-up invitations sent after a resolution")
    answered: int
    won_back: int = Field(description="Answers with NPS 7-10 (or, without NPS, CSAT 4-5)")
    won_back_pct: float | None = Field(description="won_back over answered, in %")


class VerbatimRead(BaseModel):
    response_id: str
    survey_id: str
    channel: str
    store_id: str | None
    nps_score: int | None
    csat_score: int | None
    category: str | None
    comment: str
    submitted_at: datetime


class FeedbackFigures(BaseModel):
    """NPS, CSAT and complaint figures over one month or the whole range."""

    nps: float | None = Field(description="Net promoter score, -100..100; null without answers")
    nps_low: float | None = Field(description="95 % interval, lower end")
    nps_high: float | None = Field(description="95 % interval, upper end")
    nps_responses: int
    csat: float | None = Field(description="Share of CSAT answers that are 4 or 5, 0..1")
    csat_low: float | None = Field(description="95 % Wilson interval, lower end")
    csat_high: float | None = Field(description="95 % Wilson interval, upper end")
    csat_responses: int
    complaints: int = Field(description="Cases opened (event time)")
    sla_met: int = Field(description="Of those, cases resolved with every deadline met")
    sla_attainment: float | None = Field(
        description="sla_met over the cases whose SLA outcome is known, 0..1"
    )


class _MonthKey(BaseModel):
    month: str = Field(pattern=r"^\d{4}-\d{2}$", description="UTC month, YYYY-MM")


class FeedbackMonth(FeedbackFigures, _MonthKey):
    """One month of the range (``month`` comes first in the JSON)."""


class FeedbackReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    report: Literal["feedback"] = "feedback"
    from_: date = Field(alias="from", description="First day, inclusive")
    to: date = Field(description="Last day, exclusive")
    generated_at: datetime
    months: list[FeedbackMonth]
    overall: FeedbackFigures
