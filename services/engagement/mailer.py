"""E-mail over SMTP: hand a composed message (``composing``) to the server, classify failures."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from typing import cast

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    normalize_message_line_endings,
)
from aiosmtplib.response import SMTPResponse

from services.engagement.composing import Mail
from services.engagement.config import EngagementSettings

# Errors about one recipient or one message: the server's code says whether it will pass.
_PER_MESSAGE = (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)

_COMPLETED, _WILL_FORWARD, _START_INPUT = 250, 251, 354
_MAX_REPLY = 64 * 1024  # bytes of replies buffered without a complete one: not SMTP


class DeliveryFailed(Exception):
    """The message was not accepted; ``permanent`` means trying again will not help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class HandedInDoubt(Exception):
    """The whole message was handed over (see ``SmtpConnection.send``'s ``on_handed``),
    then the session ended before the server's reply to it was read: a timeout, a lost
    connection or a garbled reply. The server has every byte, or will have once the
    kernel delivers them, so it has most likely accepted the message; sending it again
    would most likely deliver a second copy."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def classify(exc: aiosmtplib.SMTPException | OSError) -> DeliveryFailed:
    """Transient unless the server refused this recipient or message with a 5xx code.

    Failures of the session itself (connection, greeting, TLS, authentication, a
    refused sender) say nothing about this message: they are an outage or a
    configuration error, so they are retried (up to the attempt limit) rather than
    condemning every message sent while they last.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals)
        permanent = all(r.code >= 500 for r in refusals)
        return DeliveryFailed(f"recipient refused: {detail}", permanent=permanent)
    if isinstance(exc, _PER_MESSAGE):
        reason = f"{type(exc).__name__}: {exc.code} {exc.message}"
        return DeliveryFailed(reason, permanent=exc.code >= 500)
    return DeliveryFailed(f"{type(exc).__name__}: {exc}", permanent=False)


class SmtpMailer:
    def __init__(self, settings: EngagementSettings) -> None:
        self._settings = settings
        self._sender = parseaddr(settings.mail_from)[1]

    def connection(self) -> SmtpConnection:
        """A connection to reuse for a run of messages (one batch worker's)."""
        return SmtpConnection(self._settings, self._sender)


class SmtpConnection:
    """One SMTP session kept open across messages, reopened after any failure.

    Opening a session (TCP, greeting, EHLO, perhaps TLS and AUTH) costs several
    round trips; a batch pays it once per worker instead of once per message. Any
    error closes the session, so the next message starts from a clean one. Each
    message (including a reconnect) must finish within ``smtp_timeout_seconds``.
    """

    def __init__(self, settings: EngagementSettings, sender: str) -> None:
        self._settings = settings
        self._sender = sender
        self._client: aiosmtplib.SMTP | None = None
        self._replies: _Replies | None = None  # standing in for aiosmtplib's protocol
        self._primed: _Primed | None = None  # the next message's envelope, already written

    async def send(
        self,
        mail: Mail,
        *,
        recipient: str,
        on_handed: Callable[[], None] | None = None,
        then: tuple[Mail, str] | None = None,
    ) -> str:
        """Hand the message to the server; returns its reply (often naming its queue id).

        As aiosmtplib's ``send_message`` would: SMTPUTF8 if an address is not ASCII,
        8-bit parts as they are if the server offers 8BITMIME, else in base64.
        ``on_handed`` (which must not raise) is called once the whole message, final dot
        included, is in the kernel's socket buffer, before the reply is read; only on a
        pipelined session (``_pipelined``). If the session then ends without a reply
        from the server (``HandedInDoubt``), this raises that rather than a failure.

        ``then`` (a message and its recipient) is the message this session sends next:
        on a pipelined session its MAIL, RCPT and DATA follow this message's content in
        the same write, so the next ``send`` of that message starts with their replies
        already on the way, one round trip per message instead of two (RFC 2920 lets
        the content open a group). If the next ``send`` is of another message, or the
        session is closed first, the session is dropped without a final dot, so the
        server never has that message.
        """
        handed = False

        def handed_over() -> None:
            nonlocal handed
            handed = True
            if on_handed is not None:
                on_handed()

        try:
            async with asyncio.timeout(self._settings.smtp_timeout_seconds):
                if self._primed is not None and (
                    self._primed.mail is not mail
                    or self._client is None
                    or not self._client.is_connected
                ):
                    await self.close()  # its envelope waits for content it will not get
                client = await self._connected()
                try:
                    reply = await self._transaction(client, mail, recipient, handed_over, then)
                except _PrimedSessionLost:
                    # Nothing of this message went out: the same on a fresh session.
                    await self.close()
                    client = await self._connected()
                    reply = await self._transaction(client, mail, recipient, handed_over, then)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            if handed and not (isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0):
                raise HandedInDoubt(f"{type(exc).__name__}: {exc}") from exc
            raise classify(exc) from exc
        return reply

    async def _transaction(
        self,
        client: aiosmtplib.SMTP,
        mail: Mail,
        recipient: str,
        on_handed: Callable[[], None],
        then: tuple[Mail, str] | None,
    ) -> str:
        if not client.supports_extension("pipelining"):
            eight_bit, options = _mail_options(client, mail)
            _refused, reply = await client.sendmail(
                self._sender, [recipient], mail.as_bytes(eight_bit=eight_bit), mail_options=options
            )
            return reply
        primed, self._primed = self._primed, None
        if primed is None:
            envelope = _envelope(client, self._sender, recipient, mail)
            replies = self._replies = _Replies(client)
            replies.install()
            replies.write(envelope.commands)
        else:
            replies, envelope = primed.replies, primed.envelope
        return await _pipelined(
            replies,
            self._sender,
            recipient,
            envelope,
            on_handed,
            primed=primed is not None,
            then=self._prime(client, replies, then),
        )

    def _prime(
        self, client: aiosmtplib.SMTP, replies: _Replies, then: tuple[Mail, str] | None
    ) -> Callable[[], bytes] | None:
        """What ``_pipelined`` calls once this message's content is going out: the next
        message's commands to write after it (noted as primed), or None to end here."""
        if then is None:
            return None
        mail, recipient = then
        try:
            envelope = _envelope(client, self._sender, recipient, mail)
        except (aiosmtplib.SMTPException, ValueError):
            # Not primed: that message's own ``send`` builds it again and reports why.
            return None

        def primed() -> bytes:
            self._primed = _Primed(mail, envelope, replies)
            return envelope.commands

        return primed

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        s = self._settings
        self._client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_use_tls,
            start_tls=s.smtp_starttls,
            # Every call runs under ``asyncio.timeout(smtp_timeout_seconds)`` (``send``,
            # ``close``), which started first and so always ends first: a second timer
            # per command (a ``wait_for`` on every reply) would only cost CPU.
            timeout=None,
        )
        await self._client.connect()
        # The greeting's extensions decide how the message is written (8BITMIME).
        if self._client.is_ehlo_or_helo_needed:
            try:
                await self._client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not self._client.is_connected:
                    raise
                await self._client.helo()
        return self._client

    async def close(self) -> None:
        """QUIT politely if the session is healthy; drop it either way. A session with a
        primed envelope is dropped without QUIT: after DATA's 354 the server would take
        QUIT for content."""
        client, self._client = self._client, None
        primed, self._primed = self._primed, None
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.uninstall()
        if client is None or not client.is_connected:
            return
        if primed is not None:
            client.close()
            return
        try:
            async with asyncio.timeout(self._settings.smtp_timeout_seconds):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


@dataclass(frozen=True, slots=True)
class _Envelope:
    commands: bytes  # MAIL, RCPT and DATA, each ending in CRLF
    content: bytes  # as written after the 354: dot-stuffed, ending in the final dot


@dataclass(frozen=True, slots=True)
class _Primed:
    """A message whose MAIL, RCPT and DATA went out behind the previous content."""

    mail: Mail
    envelope: _Envelope
    replies: _Replies  # still standing in for aiosmtplib's protocol


class _PrimedSessionLost(Exception):
    """The session ended (or the server closed it, 421) before the replies to a primed
    envelope came: no content of that message went out."""


def _mail_options(client: aiosmtplib.SMTP, mail: Mail) -> tuple[bool, list[str]]:
    """Whether the server takes 8-bit content, and MAIL's options for ``mail`` (as
    aiosmtplib's ``send_message`` sets them)."""
    eight_bit = client.supports_extension("8bitmime")
    options = ["SMTPUTF8"] if mail.utf8 else []
    if eight_bit:
        options.append("BODY=8BITMIME")
    return eight_bit, options


def _envelope(client: aiosmtplib.SMTP, sender: str, recipient: str, mail: Mail) -> _Envelope:
    """The commands and content of one transaction, as ``sendmail`` would write them."""
    eight_bit, options = _mail_options(client, mail)
    encoding = "utf-8" if mail.utf8 else "ascii"
    if encoding == "utf-8" and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    # As sendmail and the protocol write it: lone CR or LF made CRLF, dot-stuffed.
    content = normalize_message_line_endings(mail.as_bytes(eight_bit=eight_bit))
    if client.supports_extension("size"):
        options = [f"size={len(content)}", *options]
    mail_from = b" ".join((_mail_from(sender, encoding), *_ascii(options)))
    rcpt = b"RCPT TO:" + quote_address(recipient).encode(encoding)
    for line in (mail_from, rcpt):
        if COMMAND_INJECTION_REGEX.search(line):
            raise ValueError("Command arg contains a prohibited control character")
    return _Envelope(
        mail_from + b"\r\n" + rcpt + b"\r\nDATA\r\n",
        PERIOD_REGEX.sub(b"..", content) + b".\r\n",
    )


async def _pipelined(
    replies: _Replies,
    sender: str,
    recipient: str,
    envelope: _Envelope,
    on_handed: Callable[[], None],
    *,
    primed: bool,
    then: Callable[[], bytes] | None,
) -> str:
    """``client.sendmail`` for one recipient, in one or two writes instead of four (RFC
    2920): MAIL, RCPT and DATA went together (here, or behind the previous content if
    ``primed``), then the content once the server said 354, with the next message's
    commands behind it if ``then`` gives them.

    Every reply of the group is read and checked, in order. A refusal raises what
    ``sendmail`` raises (``SMTPSenderRefused``, ``SMTPRecipientsRefused``,
    ``SMTPDataError``) after resetting the envelope as it does; if the server accepted
    DATA despite a refusal before it, an empty content ends the transaction first. A
    primed envelope that meets a closed session raises ``_PrimedSessionLost``.
    """
    try:
        mailed = await replies.next()
    except (aiosmtplib.SMTPServerDisconnected, OSError) as exc:
        if primed:
            raise _PrimedSessionLost() from exc
        raise
    if primed and mailed.code == 421:
        raise _PrimedSessionLost()
    recipients, data = await replies.next(), await replies.next()
    refusal: aiosmtplib.SMTPException | None = None
    if mailed.code != _COMPLETED:
        refusal = aiosmtplib.SMTPSenderRefused(mailed.code, mailed.message, sender)
    elif recipients.code not in (_COMPLETED, _WILL_FORWARD):
        refused = aiosmtplib.SMTPRecipientRefused(recipients.code, recipients.message, recipient)
        refusal = aiosmtplib.SMTPRecipientsRefused([refused])
    elif data.code != _START_INPUT:
        refusal = aiosmtplib.SMTPDataError(data.code, data.message)
    if refusal is None:
        following = then() if then is not None else b""
        replies.write(envelope.content + following, on_flushed=on_handed)
        accepted = await replies.next()
        if not following:
            replies.uninstall()
        if accepted.code == _COMPLETED:
            return accepted.message
        # The final dot ended the transaction whatever the reply; no RSET, which would
        # reset (or, after its 354, become the content of) the next one.
        raise aiosmtplib.SMTPDataError(accepted.code, accepted.message)
    if data.code == _START_INPUT:
        replies.write(b".\r\n")  # end the data the server wrongly asked for
        await replies.next()
    # As sendmail: reset the envelope; a failed reset is not the error to report.
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        replies.write(b"RSET\r\n")
        await replies.next()
    replies.uninstall()
    raise refusal


@functools.cache
def _mail_from(sender: str, encoding: str) -> bytes:
    """MAIL's first words for our one sender address (checked once, as aiosmtplib does)."""
    return b"MAIL FROM:" + quote_address(sender).encode(encoding)


def _ascii(options: list[str]) -> list[bytes]:
    return [option.encode("ascii") for option in options]


class _Replies(asyncio.Protocol):
    """Reads the replies to pipelined commands, in order, while it stands in for
    aiosmtplib's protocol on the session's transport (``install`` to ``uninstall``;
    across messages while an envelope is primed).

    aiosmtplib's own reader expects one reply per command it wrote and drops what
    arrives beyond it, so replies to a group cannot be read through it. Losing the
    connection is passed on to it, so the session knows it is closed.
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        protocol = client.protocol
        if protocol is None or protocol.transport is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        self._client = client
        self._inner = protocol
        self._transport = cast(asyncio.Transport, protocol.transport)
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._failure: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_flushed: Callable[[], None] | None = None
        self._limits: tuple[int, int] | None = None  # the transport's, while changed
        self._uninstalled = False

    def install(self) -> None:
        """Stand in for aiosmtplib's protocol on the transport until ``uninstall``."""
        self._transport.set_protocol(self)

    def uninstall(self) -> None:
        """Give the transport back to aiosmtplib's protocol (once; again does nothing)."""
        if self._uninstalled:
            return
        self._uninstalled = True
        self._on_flushed = None
        self._restore_limits()
        if self._transport.get_protocol() is self:
            self._transport.set_protocol(self._inner)
        if self._buffer or self._replies:
            # More than the commands' replies: the session is out of step; start afresh.
            self._client.close()

    def write(self, data: bytes, *, on_flushed: Callable[[], None] | None = None) -> None:
        """Write ``data``; call ``on_flushed`` once none of it waits in the transport,
        i.e. the kernel has all of it: right away if the kernel took it all, else when
        the transport has written the rest (``resume_writing``, with the transport's
        low-water mark at 0 until then)."""
        if self._failure is not None:
            raise self._failure
        if self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)
        if on_flushed is None:
            return
        if self._transport.get_write_buffer_size() == 0:
            on_flushed()
            return
        self._on_flushed = on_flushed
        if self._limits is None:
            self._limits = self._transport.get_write_buffer_limits()
        # Anything still buffered pauses the protocol; resume comes when nothing is.
        self._transport.set_write_buffer_limits(high=0, low=0)

    def _restore_limits(self) -> None:
        if self._limits is not None:
            low, high = self._limits
            self._limits = None
            if not self._transport.is_closing():
                self._transport.set_write_buffer_limits(high=high, low=low)

    async def next(self) -> SMTPResponse:
        while not self._replies:
            if self._failure is not None:
                raise self._failure
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        reply = self._replies.popleft()
        if reply.code == 421:  # as aiosmtplib: the server is closing the session
            self._client.close()
        return reply

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while (reply := self._take_reply()) is not None:
                self._replies.append(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
            return
        if len(self._buffer) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
        elif self._replies:
            self._wake()

    def _take_reply(self) -> SMTPResponse | None:
        """The first complete reply in the buffer (taken out of it), if there is one."""
        lines: list[bytes] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1])
            start = end + 1
            if not line[:3].isdigit():
                text = line.decode("utf-8", errors="ignore")
                raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del self._buffer[:start]
                message = b"\n".join(lines).decode("utf-8", "surrogateescape")
                return SMTPResponse(int(line[:3]), message)
        return None

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
        if self._on_flushed is not None and self._transport.get_write_buffer_size() == 0:
            on_flushed, self._on_flushed = self._on_flushed, None
            self._restore_limits()
            on_flushed()

    def _fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
