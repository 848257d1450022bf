"""Routes of the churn/CLV part: customer scores and the fitted model."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Path, status

from services.engagement.churn import fitting, schedule, scores
from services.engagement.churn.models import ChurnCustomer, ChurnModel
from services.engagement.churn.schemas import ModelRead, RefitCreate, ScoresRead
from services.engagement.churn.settings import churn_settings
from services.engagement.models import AccessLog
from shared.access_log import staff_reads
from shared.app import SessionDep
from shared.auth import require
from shared.http import NotFound

router = APIRouter(tags=["scores"])
CustomerPath = Path(min_length=1, max_length=64)


class CustomerNotScored(NotFound):
    code = "customer_not_found"


class NoModel(NotFound):
    code = "no_model"


@router.get(
    "/v1/customers/{customer_id}/scores",
    dependencies=[Depends(require("engagement:read")), Depends(staff_reads(AccessLog))],
)
async def get_customer_scores(session: SessionDep, customer_id: str = CustomerPath) -> ScoresRead:
    customer = await session.get(ChurnCustomer, customer_id)
    if customer is None:
        raise CustomerNotScored(f"no purchases or signals recorded for customer {customer_id!r}")
    return _scores(customer)


def _scores(c: ChurnCustomer) -> ScoresRead:
    return ScoresRead(
        customer_id=c.customer_id,
        risk=c.risk,
        band=c.band,
        reasons=c.reasons or [],
        p_alive=c.p_alive,
        expected_purchases=c.expected_purchases,
        horizon_days=churn_settings().horizon_days,
        clv=c.clv,
        currency=c.currency,
        first_purchase=c.first_day,
        last_purchase=c.last_day,
        purchase_days=c.purchase_days,
        repeat_purchases=c.repeat_purchases,
        average_order_value=c.average_order_value,
        usual_gap_days=c.gap_median_days,
        open_complaints=c.open_complaints,
        scored_at=c.scored_at,
    )


@router.get("/v1/models/current", dependencies=[Depends(require("engagement:read"))])
async def get_current_model(session: SessionDep) -> ModelRead:
    model = await scores.current_model(session)
    if model is None:
        raise NoModel("no model fitted yet: POST /v1/models/refit")
    return _model(model)


@router.post(
    "/v1/models/refit",
    dependencies=[Depends(require("engagement:admin"))],
    status_code=status.HTTP_201_CREATED,
)
async def create_refit(session: SessionDep, body: RefitCreate | None = None) -> ModelRead:
    now = datetime.now(UTC)
    end = body.calibration_end if body and body.calibration_end else now.date()
    config = churn_settings()
    model = await fitting.refit(session, calibration_end=end, config=config)
    await schedule.rescore_soon(session, reason=f"model-{model.id}", now=now)
    return _model(model)


def _model(model: ChurnModel) -> ModelRead:
    return ModelRead.model_validate(model)
