"""The benchmark's purchase history and the churn model fitted on it (``bench.history``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench import history
from services.engagement.churn.service import record_purchase
from services.engagement.churn.settings import ChurnSettings
from services.engagement.main import MIGRATIONS
from shared.db import Database
from shared.migrations import upgrade_async
from tests.conftest import DatabaseFactory

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_the_history_is_a_year_old_at_most_and_none_of_it_gets_a_thank_you() -> None:
    made = history.purchases(300, now=NOW, seed=3)
    assert len({e.subject for e in made}) == 300
    assert len({e.data.purchase_id for e in made}) == len(made)
    assert min(e.time for e in made) >= NOW - timedelta(days=history.HISTORY_DAYS)
    # Older than thank_you_max_age_seconds (seven days): replayed history, not thanked.
    assert max(e.time for e in made) <= NOW - timedelta(days=history.NEWEST_DAYS)
    assert all(e.data.customer and e.data.customer.email for e in made)
    repeaters = {e.subject for e in made if not e.data.purchase_id.endswith("-0")}
    assert 0 < len(repeaters) < 300  # some come back, some never do


def test_the_same_seed_and_time_give_the_same_history() -> None:
    first = [(e.subject, e.time, e.data.total.amount) for e in history.purchases(50, now=NOW)]
    again = [(e.subject, e.time, e.data.total.amount) for e in history.purchases(50, now=NOW)]
    other = [(e.subject, e.time) for e in history.purchases(50, now=NOW, seed=2)]
    assert first == again
    assert [(s, t) for s, t, _ in first] != other


@pytest.mark.db
async def test_a_model_fits_and_converges_on_the_history(database_url: DatabaseFactory) -> None:
    url = await database_url("engagement")
    await upgrade_async(MIGRATIONS, url)
    db = Database(url)
    config = ChurnSettings()
    try:
        async with db.unit_of_work() as session:
            for e in history.purchases(200, now=NOW):
                await record_purchase(
                    session,
                    customer_id=e.subject,
                    purchase_id=e.data.purchase_id,
                    occurred_at=e.time,
                    amount=e.data.total.amount,
                    currency=e.data.total.currency,
                    config=config,
                    now=NOW,
                )
    finally:
        await db.dispose()
    said = await history.fit(url, calibration_end=NOW.date())
    assert said == "churn model 1 fitted on 200 customers (converged)"
