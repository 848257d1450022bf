"""A SIGKILL of engagement after the thank-you went out and before its outcome committed.

Two moments:
- after the 250 ("reply read"): the SMTP sink takes engagement's database write lock
  before it accepts the thank-you, so the sender reads its 250 but cannot commit;
- before the 250 ("reply unread"): the sink stores the thank-you and holds its 250, so
  the sender waits for a reply with the whole message in the server's hands.

The test then kills the process, lets the sink go on and starts engagement again. With
the sender's journal (services/engagement/journal.py) the restarted sender records the
message as sent; without it, the claim is put back after ``sending_timeout_seconds``
and the customer gets the thank-you twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DB, new_topic_prefix
from tests.e2e.conftest import FAST_GROUP, launch
from tests.helpers import produce, purchase, wait_until
from tools import broker as tansu
from tools import smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import ServiceProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(TEST_DB != "sqlite", reason="holds SQLite's write lock"),
]

SENDING_TIMEOUT = 6.0


class HoldingSink(smtp_sink.SinkHandler):
    """Holds the sender up at one moment of the first message (``moment``): with the
    reply read, by taking engagement's write lock before accepting it; with the reply
    unread, by storing it and holding the 250 until ``release``."""

    def __init__(self, database: Path, moment: str) -> None:
        super().__init__()
        self._database = database
        self._moment = moment
        self._holder: sqlite3.Connection | None = None
        self._go = threading.Event()
        self.holding = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        first = not self.holding.is_set()
        if first and self._moment == REPLY_READ:
            holder = sqlite3.connect(
                self._database, isolation_level=None, check_same_thread=False, timeout=30
            )
            holder.execute("BEGIN IMMEDIATE")
            self._holder = holder
            self.holding.set()
        reply: str = await super().handle_DATA(server, session, envelope)
        if first and self._moment == REPLY_UNREAD:
            self.holding.set()
            await asyncio.to_thread(self._go.wait, 60)
        return reply

    def release(self) -> None:
        self._go.set()
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()


REPLY_READ, REPLY_UNREAD = "reply-read", "reply-unread"


@dataclass
class CrashStack:
    bootstrap: str
    prefix: str
    profile: ServiceProcess
    engagement: ServiceProcess
    sink: HoldingSink
    database: Path


@pytest.fixture(
    params=[
        (REPLY_READ, True),
        (REPLY_READ, False),
        (REPLY_UNREAD, True),
        (REPLY_UNREAD, False),
    ],
    ids=lambda p: f"{p[0]}-{'journal' if p[1] else 'no-journal'}",
)
async def crash_stack(
    request: pytest.FixtureRequest, broker: str, tmp_path: Path
) -> AsyncIterator[CrashStack]:
    moment, journal = request.param
    prefix = await new_topic_prefix(broker)
    databases = DatabaseMaker(tmp_path, backend="sqlite")
    smtp_port = tansu.free_port()
    urls = {name: await databases(name) for name in ("profile", "engagement")}
    database = Path(make_url(urls["engagement"]).database or "")
    sink = HoldingSink(database, moment)
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    tuning = {
        "SENDING_TIMEOUT_SECONDS": str(SENDING_TIMEOUT),
        "SMTP_TIMEOUT_SECONDS": "2",
        "SENDER_IDLE_POLL_MS": "500",
        "SENDER_JOURNAL_ENABLED": str(journal).lower(),
        **FAST_GROUP,
    }
    services: dict[str, ServiceProcess] = {}
    try:
        for name, url in urls.items():
            extra = {f"{name.upper()}_{k}": v for k, v in tuning.items()}
            services[name] = await launch(
                name, url, broker=broker, prefix=prefix, smtp_port=smtp_port, extra=extra
            )
        for service in services.values():
            await asyncio.to_thread(service.wait_ready)
        yield CrashStack(
            broker, prefix, services["profile"], services["engagement"], sink, database
        )
    finally:
        sink.release()
        for service in services.values():
            service.stop()
        controller.stop()
        await databases.drop_all()


def outreach_row(database: Path, customer_id: str) -> tuple[str, int] | None:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        row = conn.execute(
            "SELECT status, attempts FROM outreach WHERE customer_id = ?", (customer_id,)
        ).fetchone()
    return None if row is None else (row[0], row[1])


async def test_a_thank_you_handed_over_before_a_sigkill_is_sent_once_with_the_journal(
    crash_stack: CrashStack, request: pytest.FixtureRequest
) -> None:
    stack = crash_stack
    _, journal = request.node.callspec.params["crash_stack"]
    customer_id = f"cus-{uuid.uuid4().hex[:10]}"
    email = f"{customer_id}@example.com"
    event = purchase(customer_id, "42.00", name="Lan", email=email)
    topic = stack.prefix + "commerce.purchases"
    await produce(stack.bootstrap, topic, (customer_id.encode(), event.to_json()))

    assert await asyncio.to_thread(stack.sink.holding.wait, 60), "no thank-you reached the sink"
    await asyncio.sleep(1.0)  # the sender waits for the 250, or its commit for the lock
    assert await asyncio.to_thread(outreach_row, stack.database, customer_id) == ("sending", 1)
    stack.engagement.kill()
    killed = time.monotonic()
    stack.sink.release()
    stack.engagement.start()
    await asyncio.to_thread(stack.engagement.wait_ready)

    if journal:
        row = await wait_until(lambda: _if_sent(stack.database, customer_id), timeout=30)
        assert row == ("sent", 1)
        # Past the moment a claim left "sending" would have been put back and sent again.
        await asyncio.sleep(max(0.0, killed + 2 * SENDING_TIMEOUT + 1 - time.monotonic()))
        assert len(stack.sink.messages) == 1
        assert await asyncio.to_thread(outreach_row, stack.database, customer_id) == ("sent", 1)
    else:
        mails = await asyncio.to_thread(stack.sink.wait_for, 2, 30)
        assert [m.rcpt_tos for m in mails] == [(email,), (email,)]
        row = await wait_until(lambda: _if_sent(stack.database, customer_id), timeout=30)
        assert row == ("sent", 2)


async def _if_sent(database: Path, customer_id: str) -> tuple[str, int] | None:
    row = await asyncio.to_thread(outreach_row, database, customer_id)
    return row if row is not None and row[0] == "sent" else None
