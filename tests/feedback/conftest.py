"""Fixtures for feedback: a migrated database, settings, survey builders, the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.main import MIGRATIONS, create_app
from services.feedback.schemas import SurveyCreate
from shared.db import Database
from shared.migrations import upgrade_async
from tests.conftest import DatabaseFactory
from tests.helpers import TEST_SECRET

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def feedback_url(database_url: DatabaseFactory) -> str:
    url = await database_url("feedback")
    await upgrade_async(MIGRATIONS, url)
    return url


@pytest.fixture
async def db(feedback_url: str) -> AsyncIterator[Database]:
    database = Database(feedback_url)
    yield database
    await database.dispose()


def settings_for(url: str, **overrides: Any) -> FeedbackSettings:
    values: dict[str, Any] = {
        "database_url": url,
        "auth_secret": TEST_SECRET,
        "survey_token_secret": "test-survey-secret",
        "survey_base_url": "https://answer.test/s",
        "log_json": False,
        "consumer_enabled": False,
        "relay_enabled": False,
        **overrides,
    }
    return FeedbackSettings(**values)


@pytest.fixture
def settings(feedback_url: str) -> FeedbackSettings:
    return settings_for(feedback_url)


def nps_survey(
    survey_id: str = "after-buy", audience: str = "after_purchase", **extra: Any
) -> SurveyCreate:
    return SurveyCreate.model_validate(
        {
            **extra,
            "id": survey_id,
            "name": "How did we do?",
            "kind": "nps",
            "audience": audience,
            "languages": ["vi", "en"],
            "questions": [
                {
                    "id": "recommend",
                    "kind": "nps",
                    "text": {"en": "Would you recommend us?", "vi": "Bạn có giới thiệu không?"},
                },
                {"id": "why", "kind": "text", "text": {"en": "Why?", "vi": "Tại sao?"}},
                {
                    "id": "liked",
                    "kind": "multiple_choice",
                    "text": {"en": "What did you like?", "vi": "Bạn thích gì?"},
                    "choices": ["staff", "price", "speed"],
                },
            ],
        }
    )


@asynccontextmanager
async def running(settings: FeedbackSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (relay, consumer, scheduler as configured)."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client
