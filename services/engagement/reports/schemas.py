"""Response bodies of engagement's reports (docs/churn.md, "Reports")."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class ReportHead(BaseModel):
    report: str
    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    generated_at: datetime

    model_config = {"populate_by_name": True}


class MonthRead(BaseModel):
    month: str = Field(description="YYYY-MM, UTC")
    active: int
    new: int
    returning: int
    churned: int
    churn_rate: float | None
    retention_rate: float | None


class CohortRead(BaseModel):
    cohort: str
    size: int
    retention: list[float | None] = Field(
        description="retention[k]: share of the cohort buying in month cohort + k"
    )


class RetentionRead(ReportHead):
    months: list[MonthRead]
    cohorts: list[CohortRead]
    repeat_purchase_rate: float | None


class BucketRead(BaseModel):
    lower: str
    upper: str
    customers: int


class ClvRead(BaseModel):
    currency: str | None
    horizon_days: int
    buckets: list[BucketRead]
    median: str | None
    mean: str | None
    total: str
    customers: int = Field(description="Customers with a CLV")


class MoneyRead(BaseModel):
    amount: str | None
    currency: str | None


class ValueRead(ReportHead):
    clv: ClvRead
    aov: MoneyRead | None
    purchase_frequency: float | None = Field(description="Purchases per buying customer")
    customers: int = Field(description="Customers with a purchase in the range")


class JourneyRead(BaseModel):
    journey: str
    channel: str
    sent: int
    suppressed: int
    failed: int
    conversions: int


class AtRiskRead(BaseModel):
    high_now: int
    entered_high: int
    won_back: int


class AtRiskCustomerRead(BaseModel):
    customer_id: str
    risk: float | None
    band: str | None
    reasons: list[str]
    clv: str | None
    currency: str | None
    last_purchase_at: datetime | None


class EngagementRead(ReportHead):
    journeys: list[JourneyRead]
    at_risk: AtRiskRead
    at_risk_customers: list[AtRiskCustomerRead]
