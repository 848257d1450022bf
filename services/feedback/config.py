from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class FeedbackSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_")

    service_name: str = "feedback"
