"""The SMTP session: pipelined transactions (RFC 2920) against servers that offer it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from services.engagement.composing import Composer, Mail
from services.engagement.mailer import DeliveryFailed, SmtpConnection
from services.engagement.rendering import RenderedMessage
from tests.engagement.support import settings
from tools.smtp_sink import SinkHandler

SENDER = "Keepwell <hello@keepwell.local>"


def mail(text: str) -> Mail:
    return Composer(SENDER).compose(
        RenderedMessage(subject="Thanks", text=text),
        to_email="lan@example.com",
        to_name="Lan",
        message_id="<m-1@keepwell.local>",
        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def connection(port: int) -> SmtpConnection:
    return SmtpConnection(settings(smtp_port=port, smtp_timeout_seconds=2), "hello@keepwell.local")


class Scripted:
    """A raw SMTP server offering PIPELINING that answers a transaction's commands only
    once it has read its DATA, all replies in one write: a client that waits for each
    reply before the next command waits in vain. ``replies`` answer MAIL, RCPT and
    DATA (a reply may span lines); after a 354 it reads the content and answers
    ``accepted``. It records every line the client wrote."""

    def __init__(self, replies: tuple[str, str, str], accepted: str = "250 queued as Q1") -> None:
        self.replies = replies
        self.accepted = accepted
        self.lines: list[bytes] = []
        self.contents: list[bytes] = []
        self.sessions = 0

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
                    content = b""
                    while (body := await reader.readline()) != b".\r\n":
                        content += body
                    self.lines.append(b".\r\n")
                    self.contents.append(content)
                    writer.write(self.accepted.encode() + b"\r\n")
            elif verb == b"RSET":
                writer.write(b"250 reset\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
        writer.close()


@pytest.fixture
async def scripted(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Scripted]]:
    script = Scripted(request.param)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, script
    server.close()
    await server.wait_closed()


ACCEPTING = (("250 sender ok", "250-recipient ok\r\n250 will deliver", "354 go ahead"),)


@pytest.mark.parametrize("scripted", ACCEPTING, indirect=True)
async def test_mail_rcpt_and_data_go_out_together_to_a_server_offering_pipelining(
    scripted: tuple[int, Scripted],
) -> None:
    port, script = scripted
    session = connection(port)
    message = mail("Thank you for your purchase.")
    try:
        first = await session.send(message, recipient="lan@example.com")
        second = await session.send(message, recipient="lan@example.com")
    finally:
        await session.close()
    assert (first, second) == ("queued as Q1", "queued as Q1")
    assert script.sessions == 1  # the session outlives a transaction
    assert script.contents == [message.as_bytes(eight_bit=True)] * 2
    commands = [line.split(b":")[0] for line in script.lines[1:5]]
    assert commands == [b"MAIL FROM", b"RCPT TO", b"DATA\r\n", b".\r\n"]


@pytest.mark.parametrize("scripted", ACCEPTING, indirect=True)
async def test_the_hand_over_is_reported_before_the_reply_is_read(
    scripted: tuple[int, Scripted],
) -> None:
    port, script = scripted
    session = connection(port)
    answered_then: list[int] = []
    try:
        reply = await session.send(
            mail("Thank you."),
            recipient="lan@example.com",
            on_handed=lambda: answered_then.append(len(script.contents)),
        )
    finally:
        await session.close()
    assert reply == "queued as Q1"
    assert answered_then == [0]  # once, before the server had read the content


REFUSED_BUT_DATA = (("250 sender ok", "550 5.1.1 no such mailbox", "354 go ahead anyway"),)


@pytest.mark.parametrize("scripted", REFUSED_BUT_DATA, indirect=True)
async def test_data_accepted_after_the_recipient_was_refused_is_ended_empty(
    scripted: tuple[int, Scripted],
) -> None:
    port, script = scripted
    session = connection(port)
    handed: list[None] = []
    with pytest.raises(DeliveryFailed) as failure:
        await session.send(
            mail("Thank you."), recipient="lan@example.com", on_handed=lambda: handed.append(None)
        )
    await session.close()
    assert handed == []  # the message never went out
    assert failure.value.permanent
    assert "550 5.1.1 no such mailbox" in failure.value.reason
    assert script.contents == [b""]  # nothing of the message went out
    after_data = script.lines[script.lines.index(b"DATA\r\n") + 1 :]
    assert after_data[:2] == [b".\r\n", b"RSET\r\n"]


@pytest.mark.parametrize(
    "scripted",
    [("451 4.3.0 sender later", "503 5.5.1 need MAIL", "503 5.5.1 need RCPT")],
    indirect=True,
)
async def test_a_refused_sender_is_reported_not_the_replies_after_it(
    scripted: tuple[int, Scripted],
) -> None:
    port, script = scripted
    session = connection(port)
    with pytest.raises(DeliveryFailed) as failure:
        await session.send(mail("Thank you."), recipient="lan@example.com")
    await session.close()
    assert not failure.value.permanent
    assert "SMTPSenderRefused: (451, '4.3.0 sender later'" in failure.value.reason
    assert script.contents == []
    assert b"RSET\r\n" in script.lines


async def test_lines_starting_with_a_dot_arrive_as_written(
    smtp: tuple[int, SinkHandler],
) -> None:
    port, sink = smtp
    text = ".hidden\n.\n..two\nend"
    session = connection(port)
    try:
        await session.send(mail(text), recipient="lan@example.com")
    finally:
        await session.close()
    (received,) = sink.wait_for(1, timeout=5)
    assert received.text().splitlines() == text.splitlines()
