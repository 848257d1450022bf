"""Push and chat-app webhooks, and each journey's own channel order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.engagement import journey_config
from services.engagement.sender import Sender
from services.engagement.webhooks import sign
from shared.db import Database
from tests.engagement.conftest import Receiver
from tests.engagement.support import customer, handle, only_outreach, purchase, settings
from tests.engagement.test_webhooks import StartReceiver
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db
PHONE = "+84901234567"


async def _order(db: Database, journey: str, *channels: str) -> None:
    async with db.unit_of_work() as session:
        await journey_config.update(
            session,
            journey,
            {"channels": channels},
            actor="test",
            now=datetime.now(UTC),
            settings=settings(),
        )


def _sender(db: Database, port: int, **providers: Any) -> Sender:
    return Sender(db=db, settings=settings(smtp_port=port, **providers))


async def test_a_push_first_journey_goes_by_signed_push(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    push: Receiver = await receiver([])
    await _order(db, "thank_you", "push", "email")
    await handle(db, customer("c-1"), purchase("c-1"))
    sender = _sender(db, smtp[0], push_webhook_url=push.url, push_webhook_secret="p-secret")
    assert await sender.run_once() == 1
    [(headers, body)] = push.requests
    assert headers["x-keepwell-signature"] == sign(body, "p-secret")
    assert json.loads(body)["to"] == "c-1"  # the provider knows the customer's devices
    row = await only_outreach(db, "c-1")
    assert (row.channel, row.status) == ("push", "sent")
    assert smtp[1].messages == []


async def test_with_no_push_provider_the_next_channel_in_the_order_is_used(
    db: Database, smtp: tuple[int, SinkHandler]
) -> None:
    await _order(db, "thank_you", "push", "email")
    await handle(db, customer("c-1"), purchase("c-1"))
    assert await _sender(db, smtp[0]).run_once() == 1
    [mail] = smtp[1].wait_for(1, timeout=5)
    assert mail.rcpt_tos == ("lan@example.com",)
    assert (await only_outreach(db, "c-1")).channel == "email"


async def test_chat_reaches_the_phone_after_an_email_opt_out(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    chat: Receiver = await receiver([])
    await _order(db, "thank_you", "email", "chat")
    await handle(db, customer("c-1", phone=PHONE, consents={"email": "opt_out"}), purchase("c-1"))
    sender = _sender(db, smtp[0], chat_webhook_url=chat.url)
    assert await sender.run_once() == 1
    [(_, body)] = chat.requests
    assert json.loads(body)["to"] == PHONE
    assert (await only_outreach(db, "c-1")).channel == "chat"


async def test_no_channel_left_in_the_order_suppresses(
    db: Database, smtp: tuple[int, SinkHandler], receiver: StartReceiver
) -> None:
    chat: Receiver = await receiver([])
    await _order(db, "thank_you", "chat")
    await handle(db, customer("c-1", phone=PHONE, consents={"chat": "opt_out"}), purchase("c-1"))
    assert await _sender(db, smtp[0], chat_webhook_url=chat.url).run_once() == 0
    row = await only_outreach(db, "c-1")
    assert row.status == "suppressed"
    assert row.last_error is not None
    assert row.last_error.startswith("no usable channel")
    assert chat.requests == []
