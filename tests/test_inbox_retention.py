"""Every service prunes its inbox (``processed_events``) on its own, and its settings refuse
a retention shorter than Kafka can re-deliver an event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, select

from shared.config import ServiceSettings
from shared.db import Database
from shared.migrations import upgrade_async
from shared.plumbing import processed_events
from tests.conftest import DatabaseFactory
from tests.helpers import TEST_SECRET

SERVICES = ("profile", "loyalty", "engagement", "feedback")


def settings_of(service: str, **values: Any) -> ServiceSettings:
    module = import_module(f"services.{service}.config")
    cls: type[ServiceSettings] = getattr(module, f"{service.capitalize()}Settings")
    return cls(**values)


@pytest.mark.db
@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_prunes_its_inbox(service: str, database_url: DatabaseFactory) -> None:
    main = import_module(f"services.{service}.main")
    url = await database_url(service)
    await upgrade_async(Path(main.MIGRATIONS), url)
    db = Database(url)
    now = datetime.now(UTC)
    rows = [
        {"source": "/pos", "event_id": key, "event_type": "x", "processed_at": now - age}
        for key, age in (("stale", timedelta(days=46)), ("fresh", timedelta(days=44)))
    ]
    async with db.unit_of_work() as session:
        await session.execute(insert(processed_events), rows)
    settings = settings_of(
        service,
        database_url=url,
        auth_secret=TEST_SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        inbox_prune_interval_seconds=0.05,
        log_json=False,
    )
    app = main.create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            assert "inbox-retention" in [t.get_name() for t in app.state.runtime.tasks]
            for _ in range(200):
                if await held(db) == ["fresh"]:
                    break
                await asyncio.sleep(0.05)
            assert await held(db) == ["fresh"]
    finally:
        await db.dispose()


async def held(db: Database) -> list[str]:
    async with db.read_only() as session:
        return list((await session.scalars(select(processed_events.c.event_id))).all())


@pytest.mark.parametrize("service", SERVICES)
def test_the_defaults_keep_the_inbox_past_the_redelivery_window(service: str) -> None:
    settings = settings_of(service)
    assert settings.inbox_retention_days is not None
    assert settings.kafka_redelivery_days is not None
    assert settings.inbox_retention_days >= settings.kafka_redelivery_days + 1


def test_a_retention_shorter_than_the_redelivery_window_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_redelivery_days"):
        ServiceSettings(inbox_retention_days=30)
    with pytest.raises(ValidationError, match="kafka_redelivery_days"):
        ServiceSettings(inbox_retention_days=60, kafka_redelivery_days=59.5)
    assert ServiceSettings(inbox_retention_days=60, kafka_redelivery_days=59).inbox_retention_days


def test_no_retention_is_shorter_than_the_floor_even_if_the_window_is_unknown() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 14"):
        ServiceSettings(inbox_retention_days=13, kafka_redelivery_days=None)
    assert ServiceSettings(inbox_retention_days=14, kafka_redelivery_days=None)
    assert ServiceSettings(inbox_retention_days=None).inbox_retention_days is None


def test_the_settings_come_from_each_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_INBOX_RETENTION_DAYS", "90")
    monkeypatch.setenv("LOYALTY_KAFKA_REDELIVERY_DAYS", "60")
    loyalty = settings_of("loyalty")
    assert (loyalty.inbox_retention_days, loyalty.kafka_redelivery_days) == (90, 60)
    monkeypatch.setenv("FEEDBACK_INBOX_RETENTION_DAYS", "20")
    with pytest.raises(ValidationError, match="kafka_redelivery_days"):
        settings_of("feedback")
    monkeypatch.setenv("PROFILE_INBOX_RETENTION_DAYS", "")
    assert settings_of("profile").inbox_retention_days is None
    monkeypatch.setenv("ENGAGEMENT_INBOX_RETENTION_DAYS", "20")
    monkeypatch.setenv("ENGAGEMENT_KAFKA_REDELIVERY_DAYS", "none")
    assert settings_of("engagement").inbox_retention_days == 20


@pytest.mark.db
async def test_with_retention_off_the_inbox_keeps_every_row(database_url: DatabaseFactory) -> None:
    main = import_module("services.feedback.main")
    url = await database_url("feedback")
    await upgrade_async(Path(main.MIGRATIONS), url)
    settings = settings_of(
        "feedback",
        database_url=url,
        auth_secret=TEST_SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        inbox_retention_days=None,
        log_json=False,
    )
    app = main.create_app(settings)
    async with app.router.lifespan_context(app):
        assert "inbox-retention" not in [t.get_name() for t in app.state.runtime.tasks]
