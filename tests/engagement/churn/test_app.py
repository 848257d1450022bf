"""End to end on the real broker: a CSV history imported with tools.import_history, consumed
by the running engagement app, refitted over HTTP, and band changes published to Kafka."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.engagement.config import EngagementSettings
from services.engagement.main import create_app
from shared.db import Database
from shared.events import decode
from shared.events.engagement import ChurnRiskChanged
from shared.plumbing import processed_events
from tests.helpers import TEST_SECRET, auth_headers, read_topic, wait_until
from tools import import_history

pytestmark = [pytest.mark.db, pytest.mark.kafka]

CUSTOMERS = 24


def write_history(path: Path) -> int:
    """Customers who bought every 15-40 days; every third one stopped 120 days ago."""
    rng = random.Random(3)
    today = datetime.now(UTC).date()
    lines = ["customer,date,amount,currency"]
    for i in range(CUSTOMERS):
        gap, stop = rng.randint(15, 40), 120 if i % 3 == 0 else 12
        day = today - timedelta(days=240 - rng.randint(0, 30))
        while day < today - timedelta(days=stop):
            lines.append(f"hist-{i},{day.isoformat()},{rng.randint(10, 90)}.50,EUR")
            day += timedelta(days=gap)
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


async def test_imported_history_is_scored_and_band_changes_reach_kafka(
    broker: str, topics: str, engagement_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGAGEMENT_CHURN_MIN_CUSTOMERS_TO_FIT", "10")
    csv_file = tmp_path / "history.csv"
    rows = write_history(csv_file)
    argv = [str(csv_file), "--bootstrap", broker, "--topic-prefix", topics]
    for _ in range(2):  # importing twice is harmless: same ids, de-duplicated
        assert await asyncio.to_thread(import_history.main, argv) == 0
    settings = EngagementSettings(
        database_url=engagement_url,
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_ms=50,
        scheduler_poll_interval_ms=50,
        log_json=False,
        auth_secret=TEST_SECRET,
    )
    app = create_app(settings)
    db = Database(engagement_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            await wait_until(lambda: _handled(db, rows), timeout=180)
            refit = await api.post("/v1/models/refit", headers=auth_headers("engagement:admin"))
            assert refit.status_code == 201, refit.text
            scores = await wait_until(lambda: _scores(api), timeout=60)
            expected = sum(s["band"] != "low" for s in scores.values())
            topic = f"{topics}engagement.events"
            events = await wait_until(lambda: _band_changes(broker, topic, expected), timeout=60)
    await db.dispose()
    assert refit.json()["n_customers"] == CUSTOMERS
    assert events
    by_customer = {e.subject: e for e in events}
    assert len(by_customer) == len(events)  # one change each, no repeats
    for customer, event in by_customer.items():
        assert event.data.band == scores[customer]["band"] != "low"
        assert event.data.previous_band == "low"
    stopped = [f"hist-{i}" for i in range(0, CUSTOMERS, 3)]
    assert all(scores[c]["band"] == "high" for c in stopped)
    assert all(scores[c]["risk"] > scores["hist-1"]["risk"] for c in stopped)


async def _handled(db: Database, rows: int) -> bool:
    async with db.unit_of_work() as session:
        count = await session.scalar(select(func.count()).select_from(processed_events))
    return count == rows


async def _band_changes(broker: str, topic: str, count: int) -> list[ChurnRiskChanged] | None:
    """The churn.risk_changed events on the topic, once there are ``count`` (other journeys
    may publish there too)."""
    records = await read_topic(broker, topic, expect=count, timeout=2)
    events = [e for e in (decode(r.value) for r in records) if isinstance(e, ChurnRiskChanged)]
    return events if len(events) >= count else None


async def _scores(api: httpx.AsyncClient) -> dict[str, dict[str, Any]] | None:
    """Every customer's scores, once all of them are scored."""
    found = {}
    for i in range(CUSTOMERS):
        response = await api.get(
            f"/v1/customers/hist-{i}/scores", headers=auth_headers("engagement:read")
        )
        assert response.status_code == 200
        found[f"hist-{i}"] = response.json()
    return found if all(s["band"] for s in found.values()) else None
