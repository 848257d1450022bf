"""Which rule set is in force, and publishing a new version."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import RuleSet
from services.loyalty.service.rules import Rules, RuleSetBody

_CACHE_KEY = "loyalty.rules"


def default_rules(settings: LoyaltySettings) -> Rules:
    """Version 0: what the settings say, until an operator publishes a rule set."""
    body = RuleSetBody(
        points_per_unit=settings.points_per_unit,
        points_per_unit_by_currency=settings.points_per_unit_by_currency,
        expiry_days=settings.expiry_days,
        expiring_notice_days=settings.expiring_notice_days,
        pending_days=settings.pending_days,
        redemption_code_days=settings.redemption_code_days,
    )
    return Rules(version=0, body=body)


async def current(session: AsyncSession, settings: LoyaltySettings) -> Rules:
    """The rules in force, read once per transaction (a consumer batch shares them)."""
    cached = session.info.get(_CACHE_KEY)
    if isinstance(cached, Rules):
        return cached
    row = await repository.latest_rule_set(session)
    if row is None:
        rules = default_rules(settings)
    else:
        rules = Rules(version=row.version, body=RuleSetBody.model_validate(row.rules))
    session.info[_CACHE_KEY] = rules
    return rules


async def publish(
    session: AsyncSession, *, body: RuleSetBody, operator: str, settings: LoyaltySettings
) -> Rules:
    latest = await current(session, settings)
    row = RuleSet(
        version=latest.version + 1, rules=body.model_dump(mode="json"), created_by=operator
    )
    session.add(row)
    await session.flush()
    rules = Rules(version=row.version, body=body)
    session.info[_CACHE_KEY] = rules
    return rules
