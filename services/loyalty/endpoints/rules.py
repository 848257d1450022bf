from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.exc import IntegrityError

from services.loyalty.endpoints.deps import SettingsDep
from services.loyalty.schemas import ComponentRead, RuleSetRead, SimulationRead, SimulationRequest
from services.loyalty.service import rulebook, simulation
from services.loyalty.service.errors import RuleSetConflict
from services.loyalty.service.rules import RuleSetBody
from shared.app import ReadSessionDep, SessionDep
from shared.auth import Principal, require

router = APIRouter(prefix="/v1/rules", tags=["rules"])


@router.get("", response_model=RuleSetRead, dependencies=[Depends(require("loyalty:read"))])
async def get_rules(session: ReadSessionDep, settings: SettingsDep) -> RuleSetRead:
    rules = await rulebook.current(session, settings)
    return RuleSetRead(version=rules.version, rules=rules.body)


@router.put("", response_model=RuleSetRead)
async def publish_rules(
    principal: Annotated[Principal, Depends(require("loyalty:admin"))],
    body: RuleSetBody,
    session: SessionDep,
    settings: SettingsDep,
) -> RuleSetRead:
    try:
        rules = await rulebook.publish(
            session, body=body, operator=principal.subject, settings=settings
        )
    except IntegrityError as exc:
        raise RuleSetConflict("another rule set was published at the same time; retry") from exc
    return RuleSetRead(version=rules.version, rules=rules.body)


@router.post(
    "/simulate", response_model=SimulationRead, dependencies=[Depends(require("loyalty:read"))]
)
async def simulate_purchase(
    body: SimulationRequest, session: SessionDep, settings: SettingsDep
) -> SimulationRead:
    result = await simulation.simulate(
        session,
        amount=body.total.amount,
        currency=body.total.currency,
        lines=body.lines,
        when=body.time or datetime.now(UTC),
        customer_id=body.customer_id,
        tier=body.tier,
        settings=settings,
    )
    return SimulationRead(
        rule_version=result.rule_version,
        tier=result.tier,
        points=result.points,
        components=[ComponentRead(**vars(c)) for c in result.components],
        rewards_unlocked=result.rewards_unlocked,
    )
