"""Engagement service: journeys and personalised outreach (thank-you e-mail so far)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.engagement import config_endpoints, consumers, endpoints
from services.engagement.churn import endpoints as churn_endpoints
from services.engagement.churn import timers as churn_timers
from services.engagement.config import EngagementSettings
from services.engagement.dashboard import endpoints as dashboard_endpoints
from services.engagement.models import AccessLog
from services.engagement.reports import endpoints as report_endpoints
from services.engagement.sender import outreach_sender
from shared.access_log import access_log_router
from shared.app import create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: EngagementSettings | None = None) -> FastAPI:
    settings = settings or EngagementSettings()
    return create_service_app(
        settings=settings,
        title="Keepwell engagement",
        description="Journeys and personalised outreach: e-mail and SMS under one contact policy.",
        routers=[
            endpoints.router,
            churn_endpoints.router,
            report_endpoints.router,
            dashboard_endpoints.router,
            config_endpoints.router,
            access_log_router(AccessLog),
        ],
        handlers=consumers.handlers,
        input_topics=consumers.INPUT_TOPICS,
        migrations_dir=MIGRATIONS,
        timer_handlers=churn_timers.timer_handlers,
        extra_tasks=[outreach_sender],
    )
