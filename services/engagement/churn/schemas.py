"""HTTP request / response models of the churn/CLV part."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class RefitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calibration_end: date | None = Field(
        default=None, description="Fit on purchases up to this day (inclusive); default today"
    )


class SpendModelRead(BaseModel):
    p: float
    q: float
    gamma: float
    log_likelihood: float
    n_customers: int
    converged: bool


class CombinerRead(BaseModel):
    """How the combined risk weighs its signals, learned in a backtest at the refit."""

    intercept: float
    model: float = Field(description="Weight on the log-odds of the model's P(no purchase)")
    repeat: float = Field(description="Weight on log(1 + repeat purchase days)")
    cadence: float = Field(description="Weight on the own-cadence overdue signal (0-1)")
    as_of: date = Field(description="The backtest scored customers as of this day ...")
    days: int = Field(description="... and looked for purchases in this many days after it")
    customers: int
    silent_share: float = Field(description="Share of them who bought nothing in that window")
    auc: float = Field(description="AUC of the combined risk in the backtest")
    model_auc: float = Field(description="AUC of the model alone in the backtest")


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    fitted_at: datetime | None
    calibration_end: date
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    converged: bool
    fit_seconds: float
    currency: str | None
    spend: SpendModelRead | None
    combiner: CombinerRead | None = Field(
        description="Null when the backtest had too little history or calibration is off"
    )


class ScoresRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str
    risk: float | None = Field(description="0-1; null until a model is fitted")
    band: str | None
    reasons: list[str]
    p_alive: float | None
    expected_purchases: float | None = Field(description="In the next horizon_days")
    horizon_days: int
    clv: Decimal | None
    currency: str | None
    first_purchase: date | None
    last_purchase: date | None
    purchase_days: int
    repeat_purchases: int
    average_order_value: Decimal | None
    usual_gap_days: float | None
    open_complaints: int
    scored_at: datetime | None
