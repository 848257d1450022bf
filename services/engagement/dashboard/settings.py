"""Where the dashboard finds the other services (prefix ``ENGAGEMENT_``; defaults: `make run`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGAGEMENT_", extra="ignore", frozen=True)

    profile_url: str = Field(default="http://127.0.0.1:8001", description="Profile's base URL")
    loyalty_url: str = Field(default="http://127.0.0.1:8002", description="Loyalty's base URL")
    feedback_url: str = Field(default="http://127.0.0.1:8004", description="Feedback's base URL")
    upstream_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Deadline of one call to another service's report"
    )


@lru_cache(maxsize=1)
def dashboard_settings() -> DashboardSettings:
    return DashboardSettings()
