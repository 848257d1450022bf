"""Queries for the operators' configuration: journey settings, templates, the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.models import ConfigChange, JourneyConfig, MessageTemplate, Outreach


async def journey_configs(session: AsyncSession) -> dict[str, JourneyConfig]:
    rows = (await session.execute(select(JourneyConfig))).scalars()
    return {row.journey: row for row in rows}


async def get_journey_config(
    session: AsyncSession, journey: str, *, for_update: bool = False
) -> JourneyConfig | None:
    stmt = select(JourneyConfig).where(JourneyConfig.journey == journey)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_template(
    session: AsyncSession, template_id: str, *, for_update: bool = False
) -> MessageTemplate | None:
    stmt = select(MessageTemplate).where(MessageTemplate.id == template_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_template(
    session: AsyncSession, *, name: str, language: str, channel: str
) -> MessageTemplate | None:
    stmt = select(MessageTemplate).where(
        MessageTemplate.name == name,
        MessageTemplate.language == language,
        MessageTemplate.channel == channel,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_templates(
    session: AsyncSession, *, names: Sequence[str] | None = None
) -> Sequence[MessageTemplate]:
    stmt = select(MessageTemplate).order_by(
        MessageTemplate.name, MessageTemplate.language, MessageTemplate.channel
    )
    if names is not None:
        stmt = stmt.where(MessageTemplate.name.in_(names))
    return (await session.execute(stmt)).scalars().all()


async def template_names(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(MessageTemplate.name).distinct())).scalars())


async def record_change(session: AsyncSession, **values: Any) -> None:
    session.add(ConfigChange(**values))
    await session.flush()


async def list_changes(
    session: AsyncSession, *, kind: str | None, target: str | None, limit: int
) -> Sequence[ConfigChange]:
    stmt = select(ConfigChange).order_by(ConfigChange.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(ConfigChange.kind == kind)
    if target is not None:
        stmt = stmt.where(ConfigChange.target == target)
    return (await session.execute(stmt)).scalars().all()


async def latest_context(session: AsyncSession, customer_id: str, journey: str) -> dict[str, Any]:
    """The context of the customer's latest message of a journey (empty if none)."""
    stmt = (
        select(Outreach.context)
        .where(Outreach.customer_id == customer_id, Outreach.journey == journey)
        .order_by(Outreach.created_at.desc(), Outreach.id.desc())
        .limit(1)
    )
    found = (await session.execute(stmt)).scalar_one_or_none()
    return dict(found) if found else {}
