"""The sender against a real SMTP server and a real database."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from services.engagement.rendering import Renderer
from services.engagement.sender import Sender
from shared.db import Database
from shared.events import derived_id
from shared.events.engagement import OutreachFailed, OutreachSent, OutreachSuppressed
from tests.engagement.conftest import SlowHandler
from tests.engagement.support import (
    customer,
    handle,
    now,
    only_outreach,
    outreach_rows,
    published,
    purchase,
    set_outreach,
    settings,
)
from tests.engagement.test_composing import read_back, reference_bytes
from tests.helpers import wait_until
from tools import broker as tansu
from tools import smtp_sink
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db

Smtp = tuple[int, SinkHandler]


def sender(db: Database, port: int, **overrides: Any) -> Sender:
    return Sender(db=db, settings=settings(smtp_port=port, **overrides))


async def test_a_known_customer_gets_one_thank_you(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-1", name="Lan", email="lan@example.com"), purchase("c-1"))
    assert await sender(db, port).run_once() == 1
    mails = sink.wait_for(1, timeout=5)
    assert len(mails) == 1
    mail = mails[0]
    assert mail.rcpt_tos == ("lan@example.com",)
    assert mail.subject == "Thank you for your purchase, Lan"
    assert "Hi Lan," in mail.text()
    assert "Green tea" in mail.text()
    assert "EUR 42.50" in mail.text()
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts, row.recipient) == ("sent", 1, "lan@example.com")
    assert row.sent_at is not None
    assert row.provider_message_id
    assert mail.message["Message-ID"] == f"<{row.id}@keepwell.local>"
    events = await published(db)
    assert len(events) == 1
    sent = events[0]
    assert isinstance(sent, OutreachSent)
    assert sent.id == derived_id("outreach.sent", row.id)
    assert (sent.subject, sent.source) == ("c-1", "keepwell/engagement")
    assert (sent.data.outreach_id, sent.data.journey) == (row.id, "thank_you")
    assert sent.data.trigger_event_id == row.trigger_event_id


async def test_nothing_is_sent_twice(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-1"), purchase("c-1"))
    running = sender(db, port)
    assert await running.run_once() == 1
    assert await running.run_once() == 0
    await asyncio.sleep(0.2)
    assert len(sink.messages) == 1


async def test_a_vietnamese_customer_is_written_to_in_vietnamese(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(
        db,
        customer("c-1", name="Lan", email="lan@example.vn", language="vi"),
        purchase("c-1", amount="1250000", currency="VND"),
    )
    await sender(db, port).run_once()
    mail = sink.wait_for(1, timeout=5)[0]
    assert mail.subject == "Cảm ơn Lan đã mua sắm cùng chúng tôi"
    assert "Chào Lan," in mail.text()
    assert "1.250.000 VND" in mail.text()


async def test_the_mail_on_the_wire_reads_as_the_email_package_wrote_it(
    db: Database, smtp: Smtp
) -> None:
    port, sink = smtp
    name = "Nguyễn Thị Lan"
    await handle(
        db,
        customer("c-1", name=name, email="lan@example.vn", language="vi"),
        purchase("c-1", amount="1250000", currency="VND", items=("Trà xanh", "Bánh pía")),
    )
    await sender(db, port).run_once()
    mail = sink.wait_for(1, timeout=5)[0]
    row = await only_outreach(db, "c-1")
    rendered = Renderer().render("thank_you", language="vi", context={**row.context, "name": name})
    assert rendered.html is not None
    before = reference_bytes(
        rendered,
        to_email="lan@example.vn",
        to_name=name,
        eight_bit=True,  # the sink offers 8BITMIME
        now=mail.message["Date"].datetime,
        message_id=f"<{row.id}@keepwell.local>",
    )
    assert read_back(mail.message.as_bytes()) == read_back(before)
    assert mail.message["To"].addresses[0].display_name == name


async def test_the_mail_goes_out_once_the_contact_arrives(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, purchase("c-1"))
    running = sender(db, port)
    assert await running.run_once() == 0
    assert (await only_outreach(db, "c-1")).status == "pending"
    await handle(db, customer("c-1", email="late@example.com"))
    assert await running.run_once() == 1
    assert [m.rcpt_tos for m in sink.wait_for(1, timeout=5)] == [("late@example.com",)]
    assert (await only_outreach(db, "c-1")).status == "sent"


async def test_a_customer_without_email_is_suppressed_after_the_wait(db: Database) -> None:
    await handle(db, purchase("c-1"), customer("c-2", email=None), purchase("c-2"))
    closed = tansu.free_port()
    assert await sender(db, closed).run_once() == 0
    assert {r.status for r in await outreach_rows(db)} == {"pending"}  # still within the wait
    assert await sender(db, closed, contact_wait_seconds=0).run_once() == 0
    rows = await outreach_rows(db)
    assert [(r.status, r.last_error) for r in rows] == [
        ("suppressed", "no e-mail address known")
    ] * 2
    events = await published(db)
    assert all(isinstance(e, OutreachSuppressed) for e in events)
    assert sorted((e.id, e.data.reason) for e in events if isinstance(e, OutreachSuppressed)) == (
        sorted((derived_id("outreach.suppressed", r.id), "no e-mail address known") for r in rows)
    )


async def test_smtp_down_then_up_sends_once(db: Database) -> None:
    port = tansu.free_port()  # nothing listens here yet
    await handle(db, customer("c-1"), purchase("c-1"))
    running = sender(db, port)
    assert await running.run_once() == 1
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error is not None
    assert "SMTPConnectError" in row.last_error
    assert await published(db) == []
    controller, sink = smtp_sink.start(port)
    try:
        await wait_until(lambda: _sent_after_round(running, db, "c-1"), timeout=5)
        await asyncio.sleep(0.2)
        assert len(sink.messages) == 1
    finally:
        controller.stop()
    assert (await only_outreach(db, "c-1")).attempts == 2
    assert [e.type for e in await published(db)] == ["outreach.sent"]


async def _sent_after_round(running: Sender, db: Database, customer_id: str) -> bool:
    await running.run_once()
    return (await only_outreach(db, customer_id)).status == "sent"


async def test_transient_failures_give_up_after_max_attempts(db: Database) -> None:
    await handle(db, customer("c-1"), purchase("c-1"))
    running = sender(db, tansu.free_port(), max_send_attempts=3)

    async def failed() -> bool:
        await running.run_once()
        return (await only_outreach(db, "c-1")).status == "failed"

    await wait_until(failed, timeout=5)
    row = await only_outreach(db, "c-1")
    assert row.attempts == 3
    assert row.last_error is not None
    assert row.last_error.startswith("gave up after 3 attempts: SMTPConnectError")
    [event] = await published(db)
    assert isinstance(event, OutreachFailed)
    assert (event.id, event.subject) == (derived_id("outreach.failed", row.id), "c-1")
    assert (event.data.outreach_id, event.data.attempts) == (row.id, 3)
    assert (event.data.journey, event.data.channel) == ("thank_you", "email")
    assert event.data.error == row.last_error


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize(
    ("stage", "reply", "status"),
    [
        ("RCPT", "550 5.1.1 no such mailbox", "failed"),
        ("RCPT", "451 4.3.0 try again later", "pending"),
        ("DATA", "554 5.7.1 rejected as spam", "failed"),
        ("DATA", "452 4.3.1 out of storage", "pending"),
    ],
)
async def test_a_refusal_fails_or_retries_by_reply_code(
    db: Database,
    refusing_smtp: Callable[..., int],
    stage: str,
    reply: str,
    status: str,
    pipelining: bool,
) -> None:
    port = refusing_smtp(reply, stage, pipelining=pipelining)
    await handle(db, customer("c-1"), purchase("c-1"))
    await sender(db, port).run_once()
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == (status, 1)
    assert row.last_error is not None
    assert reply.split()[0] in row.last_error
    expected = ["outreach.failed"] if status == "failed" else []
    assert [e.type for e in await published(db)] == expected


async def test_an_unusable_address_fails_without_calling_the_server(
    db: Database, smtp: Smtp
) -> None:
    port, sink = smtp
    await handle(db, customer("c-1", email="lan at example dot com"), purchase("c-1"))
    await sender(db, port).run_once()
    row = await only_outreach(db, "c-1")
    assert row.status == "failed"
    assert row.last_error is not None
    assert "not an e-mail address" in row.last_error
    await asyncio.sleep(0.2)
    assert sink.messages == []


@pytest.mark.parametrize(
    "context",
    [
        {"purchase_id": "p-1", "items": []},  # no total: undefined in the template
        {"purchase_id": "p-1", "items": [], "total": {"amount": "1"}},  # no currency
        {"purchase_id": "p-1", "items": [], "total": {"amount": "x", "currency": "EUR"}},
    ],
)
async def test_a_message_that_cannot_be_rendered_fails_at_once(
    db: Database, smtp: Smtp, context: dict[str, Any]
) -> None:
    port, sink = smtp
    await handle(db, customer("c-1"), purchase("c-1"))
    await set_outreach(db, "c-1", context=context)
    await sender(db, port).run_once()
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None
    assert row.last_error.startswith("cannot compose the message")
    assert sink.messages == []


async def test_a_send_stalled_past_the_timeout_is_sent_again_once(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-stale", email="stale@example.com"), purchase("c-stale"))
    await handle(db, customer("c-busy", email="busy@example.com"), purchase("c-busy"))
    # Both were claimed by a sender that then died (or is still talking to the server).
    await set_outreach(
        db, "c-stale", status="sending", attempts=1, claimed_at=now() - timedelta(minutes=10)
    )
    await set_outreach(
        db, "c-busy", status="sending", attempts=1, claimed_at=now() - timedelta(seconds=5)
    )
    running = sender(db, port, sending_timeout_seconds=60)
    assert await running.run_once() == 1
    assert await running.run_once() == 0
    await asyncio.sleep(0.2)
    assert [m.rcpt_tos for m in sink.messages] == [("stale@example.com",)]
    stale = await only_outreach(db, "c-stale")
    assert (stale.status, stale.attempts) == ("sent", 2)
    assert (await only_outreach(db, "c-busy")).status == "sending"


async def test_a_stalled_send_out_of_attempts_fails(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-1"), purchase("c-1"))
    await set_outreach(
        db, "c-1", status="sending", attempts=2, claimed_at=now() - timedelta(minutes=10)
    )
    await sender(db, port, max_send_attempts=2, sending_timeout_seconds=60).run_once()
    row = await only_outreach(db, "c-1")
    assert row.status == "failed"
    assert row.last_error is not None
    assert "may have been sent" in row.last_error
    assert sink.messages == []


async def test_stopping_mid_batch_finishes_the_mail_in_hand_and_hands_back_the_rest(
    db: Database, slow_smtp: tuple[int, SlowHandler]
) -> None:
    port, server = slow_smtp
    for n in range(3):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    task = asyncio.create_task(sender(db, port, sender_concurrency=1).run())
    await wait_until(_is_set(server.in_data), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(server.accepted) == 1
    rows = await outreach_rows(db)
    outcomes = sorted((r.status, r.attempts) for r in rows)
    assert outcomes == [("pending", 0), ("pending", 0), ("sent", 1)]
    assert [e.type for e in await published(db)] == ["outreach.sent"]


def _is_set(flag: threading.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return flag.is_set()

    return check


async def test_a_stray_cancellation_does_not_end_the_sender(
    db: Database, smtp: Smtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CancelledError raised from within a claim (not a cancel of the sender's task)
    is a failed claim: the sender carries on and sends."""
    port, sink = smtp
    await handle(db, customer("c-1", email="lan@example.com"), purchase("c-1"))
    the_sender = sender(db, port, sender_poll_interval_ms=10)
    real_claim = the_sender._claim
    claims = 0

    async def flaky_claim(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        if claims == 1:
            raise asyncio.CancelledError  # e.g. a library's timeout racing its own cancel
        return await real_claim(*args, **kwargs)

    monkeypatch.setattr(the_sender, "_claim", flaky_claim)
    task = asyncio.create_task(the_sender.run())
    try:
        mails = await asyncio.to_thread(sink.wait_for, 1, 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(mails) == 1
    assert claims >= 2
    assert task.cancelled()  # a real cancel still stops it
