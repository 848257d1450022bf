"""Profile service: the customer of record and the 360° view."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from services.profile import consumers, endpoints
from services.profile.config import ProfileSettings
from services.profile.models import AccessLog
from services.profile.service import segments
from shared.access_log import access_log_router
from shared.app import Runtime, create_service_app

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    settings = settings or ProfileSettings()
    return create_service_app(
        settings=settings,
        title="Keepwell profile",
        description="The customer of record, the 360° view and the REST event ingest.",
        routers=[
            endpoints.customers_router,
            endpoints.segments_router,
            endpoints.merges_router,
            endpoints.events_router,
            endpoints.reports_router,
            access_log_router(AccessLog),
        ],
        handlers=consumers.handlers,
        input_topics=consumers.INPUT_TOPICS,
        migrations_dir=MIGRATIONS,
        extra_tasks=[sweep_segments],
    )


async def sweep_segments(runtime: Runtime) -> None:
    """Re-evaluate time-based segments every ``segment_sweep_seconds``."""
    settings = runtime.settings
    assert isinstance(settings, ProfileSettings)
    while True:
        await asyncio.sleep(settings.segment_sweep_seconds)
        try:
            await segments.sweep(runtime.db)
        except Exception:
            log.exception("segment sweep failed; retrying at the next interval")
