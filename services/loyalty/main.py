"""Loyalty service: points ledger, earning rules, tiers and rewards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from services.loyalty import consumers
from services.loyalty.config import LoyaltySettings
from services.loyalty.endpoints import ROUTERS
from services.loyalty.models import AccessLog
from services.loyalty.service.redemption import prune_keys
from shared import retention
from shared.access_log import access_log_router
from shared.app import Runtime, create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: LoyaltySettings | None = None) -> FastAPI:
    settings = settings or LoyaltySettings()
    return create_service_app(
        settings=settings,
        title="Keepwell loyalty",
        description="Points ledger, earning rules, tiers and rewards.",
        routers=[*ROUTERS, access_log_router(AccessLog)],
        handlers=consumers.handlers,
        input_topics=consumers.INPUT_TOPICS,
        migrations_dir=MIGRATIONS,
        timer_handlers=consumers.timer_handlers,
        extra_tasks=[prune_redemption_keys],
    )


async def prune_redemption_keys(runtime: Runtime) -> None:
    """Every ``redemption_key_sweep_seconds``, from start-up on, forget Idempotency-Keys
    past their retention (``redemption_requests`` would otherwise only grow)."""
    settings = runtime.settings
    assert isinstance(settings, LoyaltySettings)

    async def once() -> None:
        await prune_keys(runtime.db, settings, now=datetime.now(UTC))

    await retention.every(
        settings.redemption_key_sweep_seconds, once, what="pruning Idempotency-Keys"
    )
