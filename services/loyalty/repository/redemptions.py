"""Queries on rewards and redemptions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import Redemption, RedemptionLot, RedemptionRequest, Reward
from shared.db import dialect_insert
from shared.key_lists import one_of


async def lock_reward(session: AsyncSession, reward_id: str) -> Reward | None:
    stmt = select(Reward).where(Reward.id == reward_id).with_for_update()
    result = await session.execute(stmt.execution_options(populate_existing=True))
    return result.scalar_one_or_none()


async def get_reward(
    session: AsyncSession, reward_id: str, *, lock_stock: bool = False
) -> Reward | None:
    """The reward; with ``lock_stock``, locked when (and only when) its stock is counted.

    Rewards with unlimited stock are not locked, so their redemptions run in parallel.
    """
    reward = await session.get(Reward, reward_id)
    if reward is None or reward.stock is None or not lock_stock:
        return reward
    return await lock_reward(session, reward_id)


async def list_rewards(session: AsyncSession) -> Sequence[Reward]:
    return (await session.execute(select(Reward).order_by(Reward.id))).scalars().all()


async def redemption_by_key(session: AsyncSession, customer_id: str, key: str) -> Redemption | None:
    stmt = select(Redemption).where(
        Redemption.customer_id == customer_id, Redemption.idempotency_key == key
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def claim_request(
    session: AsyncSession, customer_id: str, key: str, digest: str, at: datetime
) -> RedemptionRequest:
    """The request row for this key, inserted if new; either way locked, in one statement.

    A concurrent attempt with the same key waits here until this transaction ends, then
    finds the row as it left it (PostgreSQL); SQLite runs one writer at a time anyway.
    """
    insert = dialect_insert(session)
    stmt = (
        insert(RedemptionRequest)
        .values(
            customer_id=customer_id,
            idempotency_key=key,
            request_hash=digest,
            created_at=at,
        )
        .on_conflict_do_update(
            index_elements=["customer_id", "idempotency_key"],
            set_={"customer_id": insert(RedemptionRequest).excluded.customer_id},
        )
        .returning(RedemptionRequest)
    )
    result = await session.execute(stmt, execution_options={"populate_existing": True})
    request: RedemptionRequest = result.scalar_one()
    return request


async def forget_requests(session: AsyncSession, customer_ids: Sequence[str]) -> None:
    """Erasure: the customers' Idempotency-Keys and the answers they got go."""
    await session.execute(
        delete(RedemptionRequest).where(one_of(RedemptionRequest.customer_id, customer_ids))
    )


async def prune_requests(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Forget up to ``limit`` Idempotency-Keys first used before ``before``, oldest
    first; returns how many went. A retry of a pruned key that was granted still finds
    its redemption (``redemption_by_key``); a pruned refusal is decided afresh."""
    old = (
        select(RedemptionRequest.customer_id, RedemptionRequest.idempotency_key)
        .where(RedemptionRequest.created_at < before)
        .order_by(RedemptionRequest.created_at)
        .limit(limit)
    )
    keys = [tuple(row) for row in (await session.execute(old)).all()]
    if not keys:
        return 0
    columns = tuple_(RedemptionRequest.customer_id, RedemptionRequest.idempotency_key)
    # created_at again: a key pruned and used anew meanwhile (another replica) stays.
    gone = await session.execute(
        delete(RedemptionRequest).where(columns.in_(keys), RedemptionRequest.created_at < before)
    )
    return int(gone.rowcount)  # type: ignore[attr-defined]


async def get_redemption(session: AsyncSession, redemption_id: str) -> Redemption | None:
    """The redemption, read afresh (another transaction may have closed it)."""
    stmt = select(Redemption).where(Redemption.id == redemption_id)
    result = await session.execute(stmt.execution_options(populate_existing=True))
    return result.scalar_one_or_none()


async def list_redemptions(
    session: AsyncSession, customer_id: str, *, limit: int, before: Redemption | None
) -> Sequence[Redemption]:
    """Newest first; ``before`` is the last redemption of the previous page."""
    stmt = select(Redemption).where(Redemption.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(
            (Redemption.created_at < before.created_at)
            | ((Redemption.created_at == before.created_at) & (Redemption.id < before.id))
        )
    stmt = stmt.order_by(Redemption.created_at.desc(), Redemption.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def redemption_lots(session: AsyncSession, redemption_id: str) -> Sequence[RedemptionLot]:
    stmt = select(RedemptionLot).where(RedemptionLot.redemption_id == redemption_id)
    return (await session.execute(stmt)).scalars().all()
