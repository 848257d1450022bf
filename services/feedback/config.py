from __future__ import annotations

from typing import Self, get_args

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings
from shared.events.feedback import Severity


def _default_first_response() -> dict[Severity, int]:
    return {"critical": 1, "high": 4, "medium": 24, "low": 48}


def _default_resolution() -> dict[Severity, int]:
    return {"critical": 8, "high": 24, "medium": 72, "low": 168}


class FeedbackSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_")

    service_name: str = "feedback"

    survey_base_url: str = Field(
        default="https://survey.keepwell.example/answer",
        description="Where the answer form lives; the signed token is appended as ?token=",
    )
    survey_token_secret: SecretStr = Field(
        default=SecretStr("change-me-feedback-survey-secret"),
        description="HMAC-SHA256 key of invitation tokens (set it in production)",
    )
    invitation_ttl_days: int = Field(default=14, ge=1, le=365)
    fatigue_days: int = Field(
        default=30, ge=0, le=3650, description="No new invitation within this period, any survey"
    )
    follow_up_delay_hours: int = Field(
        default=72, ge=0, description="Follow-up survey this long after a complaint is resolved"
    )
    detractor_severity: Severity = "medium"
    support_complaint_severity: Severity = Field(
        default="medium",
        description="Severity of a case opened from a support interaction that names none",
    )
    sla_first_response_hours: dict[Severity, int] = Field(default_factory=_default_first_response)
    sla_resolution_hours: dict[Severity, int] = Field(default_factory=_default_resolution)

    @model_validator(mode="after")
    def _every_severity_has_deadlines(self) -> Self:
        for name in ("sla_first_response_hours", "sla_resolution_hours"):
            hours: dict[str, int] = getattr(self, name)
            missing = set(get_args(Severity)) - set(hours)
            if missing or any(h <= 0 for h in hours.values()):
                raise ValueError(f"{name} needs positive hours for {sorted(get_args(Severity))}")
        return self
