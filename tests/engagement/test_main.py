"""The whole service in-process: real broker, real database, real SMTP."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from services.engagement.config import EngagementSettings
from services.engagement.main import create_app
from shared.events import decode
from shared.events.engagement import OutreachSent
from tests.engagement.support import customer, purchase
from tests.helpers import TEST_SECRET, auth_headers, produce, read_topic, wait_until
from tools.smtp_sink import ReceivedMail, SinkHandler

pytestmark = [pytest.mark.db, pytest.mark.kafka]


async def test_a_purchase_becomes_a_thank_you_mail_and_an_event(
    broker: str, topics: str, engagement_url: str, smtp: tuple[int, SinkHandler]
) -> None:
    port, sink = smtp
    settings = EngagementSettings(
        database_url=engagement_url,
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_ms=50,
        smtp_port=port,
        log_json=False,
        auth_secret=TEST_SECRET,
    )
    app = create_app(settings)
    registered = customer("c-42", name="Lan", email="lan@example.com", language="vi")
    bought = purchase("c-42", purchase_id="p-42", amount="250000", currency="VND")
    async with app.router.lifespan_context(app):
        await produce(broker, f"{topics}profile.events", (b"c-42", registered.to_json()))
        await produce(broker, f"{topics}commerce.purchases", (b"c-42", bought.to_json()))
        mails = await wait_until(lambda: _mails(sink, 1), timeout=30)
        records = await read_topic(broker, f"{topics}engagement.events", expect=1)
        history = await _history(app, "c-42")
    assert [m.rcpt_tos for m in mails] == [("lan@example.com",)]
    assert "Chào Lan," in mails[0].text()
    assert "250.000 VND" in mails[0].text()
    assert len(records) == 1
    event = decode(records[0].value)
    assert isinstance(event, OutreachSent)
    assert records[0].key == b"c-42"
    assert (event.subject, event.data.journey, event.data.trigger_event_id) == (
        "c-42",
        "thank_you",
        bought.id,
    )
    [item] = history["items"]
    assert (item["id"], item["status"], item["journey"]) == (
        event.data.outreach_id,
        "sent",
        "thank_you",
    )


async def _mails(sink: SinkHandler, count: int) -> list[ReceivedMail] | None:
    mails = sink.wait_for(count, timeout=0)
    return list(mails) if len(mails) >= count else None


async def _history(app: FastAPI, customer_id: str) -> dict[str, list[dict[str, str]]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engagement", headers=auth_headers("engagement:read")
    ) as client:
        response = await client.get(f"/v1/customers/{customer_id}/outreach")
    assert response.status_code == 200
    result: dict[str, list[dict[str, str]]] = response.json()
    return result
