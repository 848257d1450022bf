from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_")

    service_name: str = "loyalty"
    points_per_unit: Decimal = Field(
        default=Decimal(1), ge=0, description="Base points per currency unit spent"
    )
    points_per_unit_by_currency: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Overrides per currency, e.g. {"VND": "0.001"} (1 point per 1,000 VND)',
    )
    expiry_days: int | None = Field(
        default=365, ge=1, description="Default lifetime of earned points (rule set version 0)"
    )
    expiring_notice_days: int = Field(
        default=30, ge=0, description="Default days before expiry to publish points.expiring"
    )
    pending_days: int | None = Field(
        default=None,
        ge=1,
        description="Default lock period of purchase points (rule set version 0); None = none",
    )
    redemption_code_days: int | None = Field(
        default=None, ge=1, description="Default redemption code lifetime; None = never expires"
    )
    redemption_key_retention_days: int = Field(
        default=7,
        ge=1,
        description="How long an Idempotency-Key's answer is kept for retries of it",
    )
    redemption_key_sweep_seconds: float = Field(
        default=3600.0, gt=0, description="How often expired Idempotency-Keys are pruned"
    )
    report_currency: str = Field(
        default="EUR",
        min_length=3,
        max_length=3,
        description="Currency the loyalty report values points in (a point_value_by_currency key)",
    )
    point_value_by_currency: dict[str, Decimal] = Field(
        default_factory=lambda: {"EUR": Decimal("0.01")},
        description="What one point is worth, per currency, for the liability report",
    )

    @model_validator(mode="after")
    def _consistent(self) -> LoyaltySettings:
        if self.report_currency not in self.point_value_by_currency:
            raise ValueError("report_currency needs a point value in point_value_by_currency")
        if self.pending_days and self.expiry_days and self.pending_days >= self.expiry_days:
            raise ValueError("pending_days must be shorter than expiry_days")
        return self
