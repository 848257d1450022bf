"""Settings of the churn/CLV part, read from the environment (prefix ``ENGAGEMENT_CHURN_``)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import ServiceSettings


class ChurnSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGAGEMENT_CHURN_", extra="ignore", frozen=True)

    horizon_days: int = Field(
        default=90, ge=1, le=3650, description="Churn = no purchase within this many days"
    )
    clv_horizon_days: int = Field(default=365, ge=1, le=3650)
    annual_discount_rate: float = Field(default=0.10, ge=0, le=1)
    medium_threshold: float = Field(default=0.5, gt=0, lt=1)
    high_threshold: float = Field(default=0.75, gt=0, lt=1)
    cadence_min_gaps: int = Field(
        default=3, ge=1, description="Own cadence is used only with at least this many gaps"
    )
    cadence_percentile: float = Field(default=90.0, gt=0, le=100)
    cadence_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Without a learned combiner: risk added (noisy-or) at twice the usual gap",
    )
    calibrate: bool = Field(
        default=True,
        description="Learn how to combine model, cadence and repeat count from a backtest "
        "at each refit (off: fixed noisy-or with cadence_weight)",
    )
    detractor_weight: float = Field(default=0.3, ge=0, le=1)
    detractor_memory_days: int = Field(default=180, ge=1)
    complaint_weight: float = Field(default=0.2, ge=0, le=1)
    rescore_interval_seconds: int = Field(default=3600, ge=1)
    rescore_chunk: int = Field(
        default=500,
        ge=1,
        description="Customers a scheduled re-score scores per transaction (their rows are "
        "locked meanwhile on PostgreSQL, and SQLite's writer is held)",
    )
    refit_interval_seconds: int = Field(default=86400, ge=60)
    min_customers_to_fit: int = Field(default=20, ge=5)

    @model_validator(mode="after")
    def _bands_in_order(self) -> Self:
        if self.medium_threshold >= self.high_threshold:
            raise ValueError("medium_threshold must be below high_threshold")
        return self


def churn_settings(_settings: ServiceSettings | None = None) -> ChurnSettings:
    """The churn settings from the environment (the service settings carry none of them)."""
    return ChurnSettings()
