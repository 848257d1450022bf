"""Loyalty service: points ledger, earning rules, tiers and rewards."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.loyalty import consumers
from services.loyalty.config import LoyaltySettings
from services.loyalty.endpoints import ROUTERS
from services.loyalty.models import AccessLog
from shared.access_log import access_log_router
from shared.app import create_service_app

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
    )
