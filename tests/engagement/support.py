"""Helpers engagement's tests share: feeding events in, reading rows and the outbox out."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from services.engagement.config import EngagementSettings
from services.engagement.consumers import handlers
from services.engagement.models import Outreach
from shared.db import Database
from shared.events import Event, Money, decode
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData, PurchaseLine
from shared.events.profile import CustomerDetails, CustomerRegistered, CustomerUpdated
from shared.plumbing import outbox


def settings(**overrides: Any) -> EngagementSettings:
    defaults: dict[str, Any] = {
        "smtp_timeout_seconds": 5,
        "send_retry_initial_seconds": 0.05,
        "send_retry_max_seconds": 0.2,
    }
    return EngagementSettings(**(defaults | overrides))


def purchase(
    customer_id: str,
    *,
    purchase_id: str | None = None,
    amount: str = "42.50",
    currency: str = "EUR",
    items: tuple[str, ...] = ("Green tea", "Lotus cake"),
    when: datetime | None = None,
) -> PurchaseCompleted:
    lines = tuple(
        PurchaseLine(sku=_sku(name), name=name, quantity=i + 1, unit_price=Decimal("1.00"))
        for i, name in enumerate(items)
    )
    return PurchaseCompleted.create(
        subject=customer_id,
        source="/pos/store-7",
        time=when,
        data=PurchaseCompletedData(
            purchase_id=purchase_id or f"p-{uuid.uuid4().hex[:8]}",
            channel="store",
            total=Money(amount=Decimal(amount), currency=currency),
            lines=lines,
        ),
    )


def customer(
    customer_id: str,
    *,
    name: str | None = "Lan",
    email: str | None = "lan@example.com",
    language: str | None = "en",
    when: datetime | None = None,
    update: bool = False,
    **preferences: Any,
) -> CustomerRegistered | CustomerUpdated:
    """``preferences``: any other CustomerDetails field (consents, timezone, quiet_hours)."""
    kind = CustomerUpdated if update else CustomerRegistered
    details = CustomerDetails(name=name, email=email, language=language, **preferences)
    return kind.create(subject=customer_id, source="keepwell/profile", data=details, time=when)


async def handle(db: Database, *events: Event, config: EngagementSettings | None = None) -> None:
    """Run events through engagement's handlers, one transaction each (as the runner would)."""
    table = handlers(config or settings())
    for event in events:
        async with db.unit_of_work() as session:
            await table[type(event)](session, event)


async def outreach_rows(db: Database, customer_id: str | None = None) -> list[Outreach]:
    stmt = select(Outreach).order_by(Outreach.created_at)
    if customer_id is not None:
        stmt = stmt.where(Outreach.customer_id == customer_id)
    async with db.unit_of_work() as session:
        return list((await session.execute(stmt)).scalars())


async def only_outreach(db: Database, customer_id: str) -> Outreach:
    rows = await outreach_rows(db, customer_id)
    assert len(rows) == 1, rows
    return rows[0]


async def set_outreach(db: Database, customer_id: str, **values: Any) -> None:
    """Put a customer's outreach rows in a given state (as a crashed sender would leave them)."""
    async with db.unit_of_work() as session:
        await session.execute(
            update(Outreach).where(Outreach.customer_id == customer_id).values(**values)
        )


async def published(db: Database) -> list[Event]:
    """Events waiting in the outbox (no relay runs in these tests)."""
    async with db.unit_of_work() as session:
        values = (await session.execute(select(outbox.c.value).order_by(outbox.c.id))).scalars()
        return [decode(v) for v in values]


def now() -> datetime:
    return datetime.now(UTC)


def _sku(name: str) -> str:
    """The same item has the same SKU in every purchase (recommendations count on it)."""
    return "sku-" + name.lower().replace(" ", "-")


class _RawServer:
    """A test SMTP server written on raw streams: ``serve`` answers one connection."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[int]:
        """Serve on a free local port, which it yields, until the block ends."""
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()


class Scripted(_RawServer):
    """A raw SMTP server offering PIPELINING that answers a transaction's commands only
    once it has read its DATA, all replies in one write: a client that waits for each
    reply before the next command waits in vain. ``replies`` answer MAIL, RCPT and
    DATA (a reply may span lines); after a 354 it reads the content and answers
    ``accepted``, or never if that is None (it holds the session open until the client
    ends it), or drops the connection if that is ``DROP``. With ``hold``, it reads no
    content until that is set. It records every line the client wrote."""

    DROP = "drop the connection"

    def __init__(
        self,
        replies: tuple[str, str, str],
        accepted: str | None = "250 queued as Q1",
        hold: asyncio.Event | None = None,
    ) -> None:
        self.replies = replies
        self.accepted = accepted
        self.hold = hold
        self.lines: list[bytes] = []
        self.contents: list[bytes] = []
        self.sessions = 0
        self.data_asked = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 scripted ESMTP\r\n")
        group: list[bytes] = []
        while line := await reader.readline():
            self.lines.append(line)
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                group.append(line)
            elif verb == b"DATA":
                answers = dict(zip((b"MAIL", b"RCPT", b"DATA"), self.replies, strict=True))
                group.append(line)
                writer.write(b"".join(answers[g[:4]].encode() + b"\r\n" for g in group))
                group = []
                if answers[b"DATA"].startswith("354"):
                    self.data_asked.set()
                    if self.hold is not None:
                        await self.hold.wait()
                    content = bytearray()
                    while (body := await reader.readline()) != b".\r\n":
                        if not body:
                            return  # the client went away mid-message
                        content += body
                    self.lines.append(b".\r\n")
                    self.contents.append(bytes(content))
                    if self.accepted is None:
                        await reader.read()  # until the client closes the session
                        break
                    if self.accepted == Scripted.DROP:
                        writer.transport.abort()
                        return
                    writer.write(self.accepted.encode() + b"\r\n")
            elif verb == b"RSET":
                writer.write(b"250 reset\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
        writer.close()


class Chunked(_RawServer):
    """A raw SMTP server offering PIPELINING that records what arrived in each read,
    so a test can tell which commands the client wrote together: the final dot of a
    message and the next message's MAIL in one read were written before the server
    answered the dot. It accepts every command; ``accepted`` replies to the final dots
    in turn (then 250 for the rest). With ``messages_per_session``, the session's next
    MAIL after that many messages gets a 421 and the connection is closed, as servers
    that limit messages per connection do."""

    def __init__(
        self, accepted: tuple[str, ...] = (), messages_per_session: int | None = None
    ) -> None:
        self.accepted = list(accepted)
        self.messages_per_session = messages_per_session
        self.reads: list[bytes] = []
        self.contents: list[bytes] = []
        self.sessions = 0

    def lines_starting(self, start: bytes) -> int:
        """How many lines the client wrote that start with ``start``."""
        return sum(line.startswith(start) for line in b"".join(self.reads).split(b"\r\n"))

    def together(self, *starts: bytes) -> int:
        """How many reads held lines starting with each of ``starts``."""
        return sum(
            all(any(line.startswith(s) for line in read.split(b"\r\n")) for s in starts)
            for read in self.reads
        )

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 chunked ESMTP\r\n")
        pending, content, in_data, sent = b"", bytearray(), False, 0
        while chunk := await reader.read(1 << 16):
            self.reads.append(chunk)
            pending += chunk
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                if in_data:
                    if line == b".":
                        in_data = False
                        sent += 1
                        self.contents.append(bytes(content))
                        reply = self.accepted.pop(0) if self.accepted else "250 queued"
                        writer.write(reply.encode() + b"\r\n")
                    else:
                        content += line + b"\r\n"
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-chunked\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL" and sent == self.messages_per_session:
                    writer.write(b"421 4.7.0 too many messages, closing\r\n")
                    await writer.drain()
                    writer.close()
                    return
                elif verb == b"DATA":
                    in_data, content = True, bytearray()
                    writer.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    writer.close()
                    return
                else:
                    writer.write(b"250 ok\r\n")
        writer.close()
