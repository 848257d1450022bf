"""Request and response bodies of the journey, template, preview and statistics routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.engagement.schemas import UtcDatetime

Channel = Literal["email", "sms", "push", "chat"]


def _no_explicit_null(model: BaseModel, fields: tuple[str, ...]) -> None:
    """A PATCH leaves out what it does not change; ``null`` is not a value for these."""
    nulled = [f for f in fields if f in model.model_fields_set and getattr(model, f) is None]
    if nulled:
        raise ValueError(f"{', '.join(nulled)} may be left out but not null")


class JourneyRead(BaseModel):
    name: str
    trigger: str
    description: str
    marketing: bool
    enabled: bool
    delay_seconds: float
    channels: list[Channel]
    template: str
    max_lateness_seconds: float | None = Field(
        description="Overrides the service's max_lateness_seconds for this journey when set"
    )
    version: int = Field(description="0: the defaults, never changed")
    updated_at: UtcDatetime | None
    updated_by: str | None


class JourneyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    delay_seconds: float | None = Field(default=None, ge=0, le=366 * 24 * 3600)
    channels: list[Channel] | None = Field(default=None, min_length=1, max_length=4)
    template: str | None = Field(default=None, min_length=1, max_length=64)
    max_lateness_seconds: float | None = Field(default=None, gt=0, le=366 * 24 * 3600)
    expected_version: int | None = Field(
        default=None, ge=0, description="Refuse (409) if someone changed it meanwhile"
    )

    @model_validator(mode="after")
    def _required_when_given(self) -> JourneyUpdate:
        # max_lateness_seconds: null puts the service-wide default back.
        _no_explicit_null(self, ("enabled", "delay_seconds", "channels", "template"))
        return self


class TemplateBody(BaseModel):
    subject: str = Field(min_length=1, max_length=500)
    body: str = Field(min_length=1, max_length=20_000)
    html: str | None = Field(default=None, max_length=100_000)


class TemplateCreate(TemplateBody):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$", description="e.g. win_back"
    )
    language: str = Field(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$")
    channel: Channel = "email"


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, min_length=1, max_length=500)
    body: str | None = Field(default=None, min_length=1, max_length=20_000)
    html: str | None = Field(default=None, max_length=100_000)
    expected_version: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _required_when_given(self) -> TemplateUpdate:
        # html: null removes the HTML part.
        _no_explicit_null(self, ("subject", "body"))
        return self


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    language: str
    channel: str
    subject: str
    body: str
    html: str | None
    version: int
    updated_at: UtcDatetime
    updated_by: str


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, min_length=1, max_length=64)
    context: dict[str, Any] = Field(default_factory=dict, description="Variables to override")


class JourneyPreviewRequest(PreviewRequest):
    language: str | None = Field(default=None, max_length=16)
    channel: Channel | None = None


class PreviewRead(BaseModel):
    subject: str
    text: str
    html: str | None
    language: str | None
    data: Literal["customer", "sample"]


class ChangeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    target: str
    action: str
    version: int
    changed_by: str
    changed_at: UtcDatetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class JourneyStatsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    journey: str
    channel: str
    sent: int
    suppressed: int
    failed: int
    conversions: int
