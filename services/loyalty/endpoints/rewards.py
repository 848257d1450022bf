from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from services.loyalty import repository
from services.loyalty.models import Reward
from services.loyalty.schemas import RewardRead, RewardWrite
from shared.app import ReadSessionDep, SessionDep
from shared.auth import require

router = APIRouter(prefix="/v1/rewards", tags=["rewards"])

RewardId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]


@router.get("", response_model=list[RewardRead], dependencies=[Depends(require("loyalty:read"))])
async def list_rewards(session: ReadSessionDep) -> list[RewardRead]:
    return [RewardRead.model_validate(r) for r in await repository.list_rewards(session)]


@router.put(
    "/{reward_id}", response_model=RewardRead, dependencies=[Depends(require("loyalty:admin"))]
)
async def put_reward(reward_id: RewardId, body: RewardWrite, session: SessionDep) -> RewardRead:
    reward = await repository.lock_reward(session, reward_id)
    if reward is None:
        reward = Reward(id=reward_id)
        session.add(reward)
    for field, value in body.model_dump().items():
        setattr(reward, field, value)
    await session.flush()
    return RewardRead.model_validate(reward)
