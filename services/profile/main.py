"""Profile service: the customer of record and the 360° view."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.profile import consumers, endpoints
from services.profile.config import ProfileSettings
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    settings = settings or ProfileSettings()
    return create_service_app(
        settings=settings,
        title="Keepwell profile",
        description="The customer of record, the 360° view and the REST event ingest.",
        routers=[endpoints.customers_router, endpoints.events_router],
        handlers=consumers.handlers,
        input_topics=consumers.INPUT_TOPICS,
        migrations_dir=MIGRATIONS,
    )
