"""The migration that adds the daily roll-up counts the responses already stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from services.feedback.main import MIGRATIONS
from services.feedback.models import Response, ResponseDay
from shared.db import Database
from shared.migrations import upgrade
from tests.conftest import DatabaseFactory

pytestmark = pytest.mark.db

BEFORE_ROLLUP = "358c74446e70"


def stored(i: int, at: datetime, nps: int | None, csat: int | None) -> Response:
    return Response(
        id=f"r-{i}",
        dedupe_key=f"k-{i}",
        survey_id="s-1",
        survey_version=1,
        customer_id=f"c-{i}",
        source="event",
        channel="web",
        nps_score=nps,
        csat_score=csat,
        submitted_at=at,
        updated_at=at,
    )


async def test_existing_responses_are_counted_by_utc_day(database_url: DatabaseFactory) -> None:
    url = await database_url("feedback")
    await asyncio.to_thread(upgrade, MIGRATIONS, url, BEFORE_ROLLUP)
    day = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
    plus_seven = timezone(timedelta(hours=7))
    db = Database(url)
    try:
        async with db.unit_of_work() as session:
            session.add_all(
                [
                    stored(1, day, 10, None),
                    stored(2, day, 3, 5),
                    stored(3, day, None, 2),
                    # 06:00 at UTC+7 on 2 April is still 1 April in UTC
                    stored(4, datetime(2026, 4, 2, 6, 0, tzinfo=plus_seven), 7, None),
                    stored(5, day + timedelta(days=1), 9, 4),
                ]
            )
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(
                    select(
                        ResponseDay.day,
                        func.sum(ResponseDay.nps_responses),
                        func.sum(ResponseDay.promoters),
                        func.sum(ResponseDay.detractors),
                        func.sum(ResponseDay.csat_responses),
                        func.sum(ResponseDay.satisfied),
                    )
                    .group_by(ResponseDay.day)
                    .order_by(ResponseDay.day)
                )
            ).all()
    finally:
        await db.dispose()
    assert [(str(r[0]), *map(int, r[1:])) for r in rows] == [
        ("2026-04-01", 3, 1, 1, 2, 1),
        ("2026-04-02", 1, 1, 0, 1, 1),
    ]
