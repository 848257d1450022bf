from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class ProfileSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROFILE_")

    service_name: str = "profile"
    default_phone_region: str = Field(
        default="VN", description="Region of phone numbers written without a country code"
    )
    segment_sweep_seconds: float = Field(
        default=3600.0, gt=0, description="How often time-based segments are re-evaluated"
    )
    report_currency: str = Field(
        default="EUR",
        pattern=r"^[A-Z]{3}$",
        description="Currency shown for a segment with no purchases in a report's range",
    )
