"""Every query loyalty runs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import LedgerEntry, Member


async def get_member(session: AsyncSession, customer_id: str) -> Member | None:
    return await session.get(Member, customer_id)


async def get_member_for_update(session: AsyncSession, customer_id: str) -> Member:
    """The member row, created if new, locked until the transaction ends."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(Member)
        .values(customer_id=customer_id, balance=0, lifetime_earned=0)
        .on_conflict_do_nothing(index_elements=["customer_id"])
    )
    stmt = select(Member).where(Member.customer_id == customer_id).with_for_update()
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def list_ledger(
    session: AsyncSession, customer_id: str, *, limit: int, before_id: int | None
) -> Sequence[LedgerEntry]:
    stmt = select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
    if before_id is not None:
        stmt = stmt.where(LedgerEntry.id < before_id)
    stmt = stmt.order_by(LedgerEntry.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()
