"""The SMTP session: pipelined transactions (RFC 2920) against servers that offer it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import pytest

from services.engagement.composing import Composer, Mail
from services.engagement.mailer import DeliveryFailed, HandedInDoubt, SmtpConnection
from services.engagement.rendering import RenderedMessage
from tests.engagement.support import Chunked, Scripted, settings
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


@pytest.fixture
async def scripted(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Scripted]]:
    script = Scripted(request.param)
    async with script.listening() as port:
        yield port, script


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


async def test_a_message_the_kernel_cannot_take_at_once_is_handed_when_the_rest_is_written() -> (
    None
):
    """The server reads none of the content until ``hold`` is set, so a message larger
    than the socket buffers waits partly in the transport: the hand-over is reported
    once the transport has written the last of it, not at the write."""
    hold = asyncio.Event()
    script = Scripted(ACCEPTING[0], hold=hold)
    line = "A line of a long message, written again and again to fill the socket.\n"
    text = line * (16 * 1024 * 1024 // len(line))  # 16 MiB: more than loopback buffers
    handed: list[int] = []
    async with script.listening() as port:
        session = connection(port)
        session._settings = settings(smtp_port=port, smtp_timeout_seconds=30)
        try:
            sending = asyncio.create_task(
                session.send(
                    mail(text),
                    recipient="lan@example.com",
                    on_handed=lambda: handed.append(len(script.contents)),
                )
            )
            await asyncio.wait_for(script.data_asked.wait(), 10)
            await asyncio.sleep(0.2)  # the client writes what the kernel takes
            assert handed == []  # some of it still waits in the transport
            assert not sending.done()
            hold.set()
            assert await sending == "queued as Q1"
            client = session._client
            assert client is not None
            assert client.transport is not None
            limits = cast(asyncio.Transport, client.transport).get_write_buffer_limits()
        finally:
            await session.close()
    assert handed == [0]  # once, before the server had read it all
    assert limits[1] > 0  # the transport's limits were put back


@pytest.mark.parametrize("server_then", ["never answers", "closes the session"])
async def test_a_session_ending_after_the_hand_over_leaves_the_message_in_doubt(
    server_then: str,
) -> None:
    script = Scripted(
        ACCEPTING[0], accepted=None if server_then == "never answers" else Scripted.DROP
    )
    async with script.listening() as port:
        session = connection(port)  # a 2 s timeout
        handed: list[str] = []
        with pytest.raises(HandedInDoubt) as doubt:
            await session.send(
                mail("Thank you."),
                recipient="lan@example.com",
                on_handed=lambda: handed.append("x"),
            )
        await session.close()
    assert handed == ["x"]
    assert len(script.contents) == 1
    reason = doubt.value.reason
    assert reason.startswith(
        "TimeoutError" if server_then == "never answers" else "SMTPServerDisconnected"
    )


async def test_a_session_ending_before_the_hand_over_is_a_failure_to_retry() -> None:
    hold = asyncio.Event()  # never set: the server reads none of the content
    script = Scripted(ACCEPTING[0], hold=hold)
    line = "Long enough that the kernel cannot take it all at once.\n"
    async with script.listening() as port:
        session = connection(port)
        handed: list[str] = []
        with pytest.raises(DeliveryFailed) as failure:
            await session.send(
                mail(line * (16 * 1024 * 1024 // len(line))),
                recipient="lan@example.com",
                on_handed=lambda: handed.append("x"),
            )
        await session.close()
    assert handed == []
    assert not failure.value.permanent
    assert script.contents == []


@pytest.mark.parametrize("reply", ["451 4.3.0 try again later", "554 5.7.1 rejected"])
async def test_a_refusal_after_the_hand_over_is_a_failure_not_a_doubt(reply: str) -> None:
    script = Scripted(ACCEPTING[0], accepted=reply)
    async with script.listening() as port:
        session = connection(port)
        with pytest.raises(DeliveryFailed) as failure:
            await session.send(
                mail("Thank you."), recipient="lan@example.com", on_handed=lambda: None
            )
        await session.close()
    assert failure.value.permanent is reply.startswith("5")
    assert reply.split()[0] in failure.value.reason


FIRST, SECOND, THIRD = mail("First."), mail("Second."), mail("Third.")


def wire(*mails: Mail) -> list[bytes]:
    return [m.as_bytes(eight_bit=True) for m in mails]


async def test_the_next_message_is_announced_behind_the_content_before_it() -> None:
    server = Chunked()
    async with server.listening() as port:
        session = connection(port)
        try:
            first = await session.send(FIRST, recipient="lan@example.com", then=(SECOND, "m@x.vn"))
            second = await session.send(SECOND, recipient="m@x.vn")
        finally:
            await session.close()
    assert (first, second) == ("queued", "queued")
    assert server.sessions == 1
    assert server.contents == wire(FIRST, SECOND)
    # the first final dot and the second envelope left in one write, before the 250
    assert server.together(b".", b"MAIL FROM", b"RCPT TO:<m@x.vn>", b"DATA") == 1


async def test_an_announced_message_not_sent_next_is_dropped_with_its_session() -> None:
    server = Chunked()
    async with server.listening() as port:
        session = connection(port)
        try:
            await session.send(FIRST, recipient="lan@example.com", then=(SECOND, "m@x.vn"))
            await session.send(THIRD, recipient="t@x.vn")
        finally:
            await session.close()
    assert server.sessions == 2  # the second session sent the third message
    assert server.contents == wire(FIRST, THIRD)


async def test_closing_with_a_message_announced_drops_the_session_without_a_final_dot() -> None:
    server = Chunked()
    async with server.listening() as port:
        session = connection(port)
        await session.send(FIRST, recipient="lan@example.com", then=(SECOND, "m@x.vn"))
        await session.close()
        await asyncio.sleep(0.1)  # the server reads the end of the session
    assert server.contents == wire(FIRST)
    assert server.together(b"QUIT") == 0  # after DATA's 354 it would be content


async def test_a_refused_content_ends_the_session_without_writing_into_the_announced_one() -> None:
    server = Chunked(accepted=("554 5.7.1 rejected as spam",))
    async with server.listening() as port:
        session = connection(port)
        try:
            with pytest.raises(DeliveryFailed) as failure:
                await session.send(FIRST, recipient="lan@example.com", then=(SECOND, "m@x.vn"))
            second = await session.send(SECOND, recipient="m@x.vn")
        finally:
            await session.close()
    assert failure.value.permanent
    assert second == "queued"
    # Any error ends the session: this one without RSET or QUIT, which the server would
    # take for the announced message's content (the QUIT is the second session's).
    assert server.sessions == 2
    assert (server.together(b"RSET"), server.together(b"QUIT")) == (0, 1)
    assert server.contents == wire(FIRST, SECOND)


async def test_an_announced_message_the_server_will_not_take_goes_on_a_new_session() -> None:
    server = Chunked(messages_per_session=1)  # 421 to the second MAIL of a session
    async with server.listening() as port:
        session = connection(port)
        try:
            await session.send(FIRST, recipient="lan@example.com", then=(SECOND, "m@x.vn"))
            second = await session.send(SECOND, recipient="m@x.vn")
        finally:
            await session.close()
    assert second == "queued"
    assert server.sessions == 2
    assert server.contents == wire(FIRST, SECOND)
