"""The sender's throughput shape: pooled SMTP sessions, bounded concurrency, wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from services.engagement.sender import Sender
from shared.db import Database
from tests.engagement.conftest import SlowHandler
from tests.engagement.support import (
    customer,
    handle,
    outreach_rows,
    published,
    purchase,
    settings,
)
from tools import broker as tansu
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db


class CountingHandler:
    """Accepts every message and remembers which client connection (peer) brought it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.peers: list[object] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle_DATA(self, _server: object, session: Session, _envelope: Envelope) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        self.peers.append(session.peer)
        return "250 accepted"


@pytest.fixture
def counting_smtp() -> Iterator[tuple[int, CountingHandler]]:
    port = tansu.free_port()
    handler = CountingHandler(delay=0.05)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


async def test_a_batch_reuses_one_session_per_worker_and_bounds_concurrency(
    db: Database, counting_smtp: tuple[int, CountingHandler]
) -> None:
    port, server = counting_smtp
    for n in range(12):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    sender = Sender(db=db, settings=settings(smtp_port=port, sender_concurrency=3))
    assert await sender.run_once() == 12
    assert len(server.peers) == 12
    assert len(set(server.peers)) == 3  # three sessions, four messages each
    assert server.most_in_flight == 3
    assert {r.status for r in await outreach_rows(db)} == {"sent"}


async def test_the_sender_wakes_when_a_message_is_planned_not_on_a_timer(
    db: Database, smtp: tuple[int, SinkHandler]
) -> None:
    port, sink = smtp
    sender = Sender(db=db, settings=settings(smtp_port=port, sender_poll_interval_ms=60_000))
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.sleep(0.3)  # the first (empty) round is done; it now waits a minute
        await handle(db, customer("c-1"))  # a contact alone plans nothing to send
        await handle(db, purchase("c-1"))
        [mail] = await asyncio.to_thread(sink.wait_for, 1, 5)
        assert mail.rcpt_tos == ("lan@example.com",)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_claims_still_queued_near_the_sending_timeout_are_handed_back(
    db: Database, slow_smtp: tuple[int, SlowHandler]
) -> None:
    port, server = slow_smtp  # 0.5 s per message
    for n in range(3):
        await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
    config = settings(
        smtp_port=port, sender_concurrency=1, smtp_timeout_seconds=0.7, sending_timeout_seconds=1.1
    )
    assert await Sender(db=db, settings=config).run_once() == 3
    assert len(server.accepted) == 1  # past the deadline the rest were not started
    outcomes = sorted((r.status, r.attempts) for r in await outreach_rows(db))
    assert outcomes == [("pending", 0), ("pending", 0), ("sent", 1)]


class DroppingHandler:
    """Accepts every message, except that the first DATA for ``victim`` drops the
    connection before any reply (the message is not kept)."""

    def __init__(self, victim: str) -> None:
        self.victim = victim
        self.dropped = 0
        self.accepted: list[str] = []

    async def handle_DATA(self, server: Any, _session: Session, envelope: Envelope) -> str:
        [recipient] = envelope.rcpt_tos
        if recipient == self.victim and not self.dropped:
            self.dropped += 1
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        self.accepted.append(recipient)
        return "250 accepted"


async def test_a_connection_dropped_mid_batch_is_retried_and_nothing_is_sent_twice(
    db: Database,
) -> None:
    port = tansu.free_port()
    server = DroppingHandler(victim="c3@example.com")
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        for n in range(8):
            await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
        sender = Sender(db=db, settings=settings(smtp_port=port, sender_concurrency=2))
        assert await sender.run_once() == 8
        assert server.dropped == 1
        assert sorted(server.accepted) == sorted(f"c{n}@example.com" for n in range(8) if n != 3)
        retried = [r for r in await outreach_rows(db) if r.status != "sent"]
        assert [(r.customer_id, r.status, r.attempts) for r in retried] == [("c-3", "pending", 1)]
        await asyncio.sleep(0.1)  # the retry's backoff (send_retry_initial_seconds) passes
        assert await sender.run_once() == 1
    finally:
        controller.stop()
    assert sorted(server.accepted) == sorted(f"c{n}@example.com" for n in range(8))
    rows = await outreach_rows(db)
    assert {r.status for r in rows} == {"sent"}
    sent = [e for e in await published(db) if e.type == "outreach.sent"]
    assert sorted(e.data.outreach_id for e in sent) == sorted(r.id for r in rows)


class QueueIdHandler:
    """Accepts every message after ``delay`` s, replying with a queue id named after it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def handle_DATA(self, _server: Any, _session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return f"250 queued as q-{envelope.rcpt_tos[0]}"


async def test_outcomes_that_arrive_together_are_committed_together(db: Database) -> None:
    port = tansu.free_port()
    controller = Controller(QueueIdHandler(delay=0.05), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        for n in range(12):
            await handle(db, customer(f"c-{n}", email=f"c{n}@example.com"), purchase(f"c-{n}"))
        sender = Sender(db=db, settings=settings(smtp_port=port, sender_concurrency=4))
        assert await sender.run_once() == 12
    finally:
        controller.stop()
    groups = sender._settler.groups
    assert sum(groups) == 12
    assert max(groups) > 1  # the workers' sends end together (same delay): one commit
    rows = await outreach_rows(db)
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 12
    # each row keeps its own message's reply
    assert all(r.provider_message_id == f"queued as q-{r.recipient}" for r in rows)
    sent = [e for e in await published(db) if e.type == "outreach.sent"]
    assert sorted(e.data.outreach_id for e in sent) == sorted(r.id for r in rows)
