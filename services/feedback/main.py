"""Feedback service: surveys, responses, complaints and NPS."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.feedback import consumers, endpoints
from services.feedback.config import FeedbackSettings
from services.feedback.models import AccessLog
from shared.access_log import access_log_router
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    return create_service_app(
        settings=settings,
        title="Keepwell feedback",
        description="Surveys (NPS, CSAT), responses from any channel, complaints with an SLA.",
        routers=[*endpoints.routers, access_log_router(AccessLog)],
        handlers=consumers.handlers,
        input_topics=consumers.INPUT_TOPICS,
        migrations_dir=MIGRATIONS,
        timer_handlers=consumers.timer_handlers,
    )
