"""E-mail over SMTP: hand a composed message (``composing``) to the server, classify failures."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable
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

    async def send(
        self, mail: Mail, *, recipient: str, on_handed: Callable[[], None] | None = None
    ) -> str:
        """Hand the message to the server; returns its reply (often naming its queue id).

        As aiosmtplib's ``send_message`` would: SMTPUTF8 if an address is not ASCII,
        8-bit parts as they are if the server offers 8BITMIME, else in base64.
        ``on_handed`` (which must not raise) is called once the whole message, final dot
        included, is in the kernel's socket buffer, before the reply is read; only on a
        pipelined session (``_pipelined``). If the session then ends without a reply
        from the server (``HandedInDoubt``), this raises that rather than a failure.
        """
        handed = False

        def handed_over() -> None:
            nonlocal handed
            handed = True
            if on_handed is not None:
                on_handed()

        try:
            async with asyncio.timeout(self._settings.smtp_timeout_seconds):
                client = await self._connected()
                eight_bit = client.supports_extension("8bitmime")
                options = ["SMTPUTF8"] if mail.utf8 else []
                if eight_bit:
                    options.append("BODY=8BITMIME")
                message = mail.as_bytes(eight_bit=eight_bit)
                if client.supports_extension("pipelining"):
                    reply = await _pipelined(
                        client, self._sender, recipient, message, options, handed_over
                    )
                else:
                    _refused, reply = await client.sendmail(
                        self._sender, [recipient], message, mail_options=options
                    )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            if handed and not (isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0):
                raise HandedInDoubt(f"{type(exc).__name__}: {exc}") from exc
            raise classify(exc) from exc
        return reply

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
        """QUIT politely if the session is healthy; drop it either way."""
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            async with asyncio.timeout(self._settings.smtp_timeout_seconds):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


async def _pipelined(
    client: aiosmtplib.SMTP,
    sender: str,
    recipient: str,
    message: bytes,
    options: list[str],
    on_handed: Callable[[], None] | None = None,
) -> str:
    """``client.sendmail`` for one recipient, in two writes instead of four (RFC 2920):
    MAIL, RCPT and DATA go together, then the content once the server said 354.

    Every reply of the group is read and checked, in order. A refusal raises what
    ``sendmail`` raises (``SMTPSenderRefused``, ``SMTPRecipientsRefused``,
    ``SMTPDataError``) after resetting the envelope as it does; if the server accepted
    DATA despite a refusal before it, an empty content ends the transaction first.
    """
    encoding = "utf-8" if any(o.lower() == "smtputf8" for o in options) else "ascii"
    if encoding == "utf-8" and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    # As sendmail and the protocol write it: lone CR or LF made CRLF, dot-stuffed.
    content = normalize_message_line_endings(message)
    if client.supports_extension("size"):
        options = [f"size={len(content)}", *options]
    mail = b" ".join((_mail_from(sender, encoding), *_ascii(options)))
    rcpt = b"RCPT TO:" + quote_address(recipient).encode(encoding)
    for line in (mail, rcpt):
        if COMMAND_INJECTION_REGEX.search(line):
            raise ValueError("Command arg contains a prohibited control character")
    content = PERIOD_REGEX.sub(b"..", content) + b".\r\n"
    async with _Replies(client) as replies:
        replies.write(mail + b"\r\n" + rcpt + b"\r\nDATA\r\n")
        mailed, recipients, data = await replies.next(), await replies.next(), await replies.next()
        refusal: aiosmtplib.SMTPException | None = None
        if mailed.code != _COMPLETED:
            refusal = aiosmtplib.SMTPSenderRefused(mailed.code, mailed.message, sender)
        elif recipients.code not in (_COMPLETED, _WILL_FORWARD):
            refused = aiosmtplib.SMTPRecipientRefused(
                recipients.code, recipients.message, recipient
            )
            refusal = aiosmtplib.SMTPRecipientsRefused([refused])
        elif data.code != _START_INPUT:
            refusal = aiosmtplib.SMTPDataError(data.code, data.message)
        if refusal is None:
            replies.write(content, on_flushed=on_handed)
            accepted = await replies.next()
            if accepted.code == _COMPLETED:
                return accepted.message
            refusal = aiosmtplib.SMTPDataError(accepted.code, accepted.message)
        elif data.code == _START_INPUT:
            replies.write(b".\r\n")  # end the data the server wrongly asked for
            await replies.next()
        # As sendmail: reset the envelope; a failed reset is not the error to report.
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            replies.write(b"RSET\r\n")
            await replies.next()
        raise refusal


@functools.cache
def _mail_from(sender: str, encoding: str) -> bytes:
    """MAIL's first words for our one sender address (checked once, as aiosmtplib does)."""
    return b"MAIL FROM:" + quote_address(sender).encode(encoding)


def _ascii(options: list[str]) -> list[bytes]:
    return [option.encode("ascii") for option in options]


class _Replies(asyncio.Protocol):
    """Reads the replies to pipelined commands, in order, while it stands in for
    aiosmtplib's protocol on the session's transport (``async with``).

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

    async def __aenter__(self) -> _Replies:
        self._transport.set_protocol(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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
