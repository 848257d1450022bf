"""SMS over a signed webhook: fallback from e-mail on opt-out, retries, the dead-letter state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from services.engagement.sender import Sender
from services.engagement.webhooks import WebhookChannel, sign
from shared.db import Database
from shared.events.engagement import OutreachFailed, OutreachSent
from tests.engagement.conftest import Receiver
from tests.engagement.support import customer, handle, only_outreach, published, settings
from tests.engagement.test_journeys import risk
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db

StartReceiver = Callable[[list[int | str]], Any]
SECRET = "provider-secret"
PHONE = "+84901234567"


def sms_sender(db: Database, receiver: Receiver, smtp_port: int, **overrides: Any) -> Sender:
    config = settings(
        smtp_port=smtp_port,
        sms_webhook_url=receiver.url,
        sms_webhook_secret=SECRET,
        win_back_delay_seconds=0,
        **overrides,
    )
    return Sender(db=db, settings=config)


async def _win_back_for(db: Database, **preferences: Any) -> None:
    config = settings(win_back_delay_seconds=0)
    await handle(db, customer("c-1", phone=PHONE, **preferences), config=config)
    await handle(db, risk("c-1", "high"), config=config)


async def test_an_email_opt_out_sends_the_win_back_by_signed_sms(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    port, sink = smtp
    provider = await receiver([])
    await _win_back_for(db, consents={"email": "opt_out"})
    assert await sms_sender(db, provider, port).run_once() == 1
    [(headers, body)] = provider.requests
    assert headers["x-keepwell-signature"] == sign(body, SECRET)
    payload = json.loads(body)
    row = await only_outreach(db, "c-1")
    assert (payload["to"], payload["message_id"]) == (PHONE, row.id)
    assert "Lan" in payload["text"]
    assert (row.channel, row.status, row.recipient) == ("sms", "sent", PHONE)
    [event] = await published(db)
    assert isinstance(event, OutreachSent)
    assert event.data.channel == "sms"
    await asyncio.sleep(0.2)
    assert sink.messages == []


async def test_opted_out_of_every_channel_is_suppressed(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    provider = await receiver([])
    await _win_back_for(db, consents={"email": "opt_out", "sms": "opt_out"})
    assert await sms_sender(db, provider, smtp[0]).run_once() == 0
    row = await only_outreach(db, "c-1")
    assert row.status == "suppressed"
    assert row.last_error == "no usable channel: opted out of e-mail, and of SMS or no phone"
    assert provider.requests == []


async def test_a_500_then_200_delivers_once(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    provider = await receiver([500])
    await _win_back_for(db, consents={"email": "opt_out"})
    running = sms_sender(db, provider, smtp[0])
    await running.run_once()
    assert (await only_outreach(db, "c-1")).status == "pending"
    await asyncio.sleep(0.1)  # past the 0.05 s backoff
    await running.run_once()
    await running.run_once()
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(provider.requests) == 2
    # the same key on both attempts: a provider can tell the retry from a new message
    assert [h["idempotency-key"] for h, _ in provider.requests] == [row.id, row.id]
    assert [e.type for e in await published(db)] == ["outreach.sent"]


async def test_one_client_serves_a_channels_messages_until_the_sender_stops(
    receiver: StartReceiver,
) -> None:
    provider = await receiver([])
    channel = WebhookChannel(url=provider.url, secret=SECRET, timeout=5)
    await channel.send(message_id="m-1", to=PHONE, text="one")
    client = channel._client
    await channel.send(message_id="m-2", to=PHONE, text="two")
    assert client is not None
    assert channel._client is client
    await channel.aclose()
    assert client.is_closed
    assert channel._client is None
    await channel.send(message_id="m-3", to=PHONE, text="three")  # reopens
    await channel.aclose()
    assert [json.loads(body)["message_id"] for _, body in provider.requests] == [
        "m-1",
        "m-2",
        "m-3",
    ]


async def test_a_provider_that_never_answers_ends_failed_and_published(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    provider = await receiver(["hang"] * 3)
    await _win_back_for(db, consents={"email": "opt_out"})
    running = sms_sender(db, provider, smtp[0], webhook_timeout_seconds=0.2, max_send_attempts=3)
    for _ in range(3):
        await running.run_once()
        await asyncio.sleep(0.25)
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error is not None
    assert "gave up after 3 attempts: ReadTimeout" in row.last_error
    [event] = await published(db)
    assert isinstance(event, OutreachFailed)
    assert (event.data.channel, event.data.attempts) == ("sms", 3)
