"""Fixtures for engagement's tests: a migrated database and SMTP servers that misbehave."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from services.engagement.main import MIGRATIONS
from shared.db import Database
from shared.migrations import upgrade_async
from tests.conftest import DatabaseFactory
from tools import broker as tansu


@pytest.fixture
async def engagement_url(database_url: DatabaseFactory) -> str:
    url = await database_url("engagement")
    await upgrade_async(MIGRATIONS, url)
    return url


@pytest.fixture
async def db(engagement_url: str) -> AsyncIterator[Database]:
    database = Database(engagement_url)
    yield database
    await database.dispose()


class RefusingHandler:
    """Refuses every message at one stage ("RCPT" or "DATA") with the given SMTP reply."""

    def __init__(self, reply: str, stage: str) -> None:
        self.reply = reply
        self.stage = stage

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.stage == "RCPT":
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Session, _envelope: Envelope) -> str:
        return self.reply if self.stage == "DATA" else "250 accepted"


class SlowHandler:
    """Accepts every message, but only after ``delay`` seconds in DATA."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_data = threading.Event()
        self.accepted: list[tuple[str, ...]] = []

    async def handle_DATA(self, _server: object, _session: Session, envelope: Envelope) -> str:
        self.in_data.set()
        await asyncio.sleep(self.delay)
        self.accepted.append(tuple(envelope.rcpt_tos))
        return "250 accepted after a while"


@pytest.fixture
def slow_smtp() -> Iterator[tuple[int, SlowHandler]]:
    port = tansu.free_port()
    handler = SlowHandler(delay=0.5)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


@pytest.fixture
def refusing_smtp() -> Iterator[Callable[[str, str], int]]:
    """Factory: a server refusing every message with ``reply`` at ``stage``; returns its port."""
    controllers: list[Controller] = []

    def start(reply: str, stage: str) -> int:
        port = tansu.free_port()
        controller = Controller(RefusingHandler(reply, stage), hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()
