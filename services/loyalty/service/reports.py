"""The points liability: what the programme owes its members, and when it falls due."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.config import LoyaltySettings
from services.loyalty.repository import reports as queries


@dataclass(frozen=True)
class Line:
    key: str
    members: int | None
    points: int
    value: dict[str, Decimal]


@dataclass(frozen=True)
class Liability:
    points: int
    value: dict[str, Decimal]
    point_value: dict[str, Decimal]
    by_tier: list[Line]
    by_expiry_month: list[Line]


def _value(points: int, settings: LoyaltySettings) -> dict[str, Decimal]:
    return {cur: Decimal(points) * per for cur, per in settings.point_value_by_currency.items()}


async def liability(session: AsyncSession, *, settings: LoyaltySettings) -> Liability:
    tiers = await queries.liability_by_tier(session)
    months = await queries.liability_by_expiry_month(session)
    total = sum(points for _, _, points in tiers)
    return Liability(
        points=total,
        value=_value(total, settings),
        point_value=dict(settings.point_value_by_currency),
        by_tier=[
            Line(tier or "(none)", members, points, _value(points, settings))
            for tier, members, points in tiers
        ],
        by_expiry_month=[
            Line(month or "never", None, points, _value(points, settings))
            for month, points in months
        ],
    )
