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
from tools.smtp_sink import OffersPipelining


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


class RefusingHandler(OffersPipelining):
    """Refuses every message at one stage ("RCPT" or "DATA") with the given SMTP reply."""

    def __init__(self, reply: str, stage: str, *, pipelining: bool = False) -> None:
        self.reply = reply
        self.stage = stage
        self.pipelining = pipelining

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
def refusing_smtp() -> Iterator[Callable[..., int]]:
    """Factory: a server refusing every message with ``reply`` at ``stage`` (offering
    PIPELINING if ``pipelining``); returns its port."""
    controllers: list[Controller] = []

    def start(reply: str, stage: str, *, pipelining: bool = False) -> int:
        port = tansu.free_port()
        handler = RefusingHandler(reply, stage, pipelining=pipelining)
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


class Receiver:
    """A tiny HTTP/1.1 server standing in for a webhook provider.

    ``replies`` is consumed one per request (an int status, or "hang" to never
    answer); when it runs out every request gets 200. ``requests`` records
    (headers, body) of each request received.
    """

    def __init__(self, replies: list[int | str]) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        reply = self.replies.pop(0) if self.replies else 200
        if reply == "hang":
            await asyncio.sleep(3600)
        writer.write(
            f"HTTP/1.1 {reply} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[list[int | str]], Any]]:
    """Factory: a started webhook receiver with scripted replies."""
    started: list[Receiver] = []

    async def start(replies: list[int | str]) -> Receiver:
        server = Receiver(replies)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()
