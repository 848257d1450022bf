"""Every query profile runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile.models import Customer, CustomerChannel


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def get_customer_for_update(session: AsyncSession, customer_id: str) -> tuple[Customer, bool]:
    """The customer row, created if new, locked until the transaction ends.

    Returns the row and whether this transaction created it: when two transactions
    race to create the same customer, exactly one of them gets True.
    """
    created = await session.execute(
        _insert(session)(Customer)
        .values(customer_id=customer_id)
        .on_conflict_do_nothing(index_elements=["customer_id"])
        .returning(Customer.customer_id)
    )
    is_new = created.first() is not None
    stmt = select(Customer).where(Customer.customer_id == customer_id).with_for_update()
    customer = (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()
    return customer, is_new


async def touch_channel(
    session: AsyncSession, customer_id: str, channel: str, seen_at: datetime
) -> None:
    """Record that the customer used ``channel`` at ``seen_at`` (widening first/last seen)."""
    stmt = _insert(session)(CustomerChannel).values(
        customer_id=customer_id, channel=channel, first_seen_at=seen_at, last_seen_at=seen_at
    )
    new, row = stmt.excluded, CustomerChannel
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["customer_id", "channel"],
            set_={
                "first_seen_at": case(
                    (new.first_seen_at < row.first_seen_at, new.first_seen_at),
                    else_=row.first_seen_at,
                ),
                "last_seen_at": case(
                    (new.last_seen_at > row.last_seen_at, new.last_seen_at),
                    else_=row.last_seen_at,
                ),
            },
        )
    )


async def list_channels(session: AsyncSession, customer_id: str) -> Sequence[CustomerChannel]:
    stmt = (
        select(CustomerChannel)
        .where(CustomerChannel.customer_id == customer_id)
        .order_by(CustomerChannel.first_seen_at, CustomerChannel.channel)
    )
    return (await session.execute(stmt)).scalars().all()
