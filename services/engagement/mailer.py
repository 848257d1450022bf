"""E-mail over SMTP: hand a composed message (``composing``) to the server, classify failures."""

from __future__ import annotations

import asyncio
from email.utils import parseaddr

import aiosmtplib

from services.engagement.composing import Mail
from services.engagement.config import EngagementSettings

# Errors about one recipient or one message: the server's code says whether it will pass.
_PER_MESSAGE = (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)


class DeliveryFailed(Exception):
    """The message was not accepted; ``permanent`` means trying again will not help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


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

    async def send(self, mail: Mail, *, recipient: str) -> str:
        """Hand the message to the server; returns its reply (often naming its queue id).

        As aiosmtplib's ``send_message`` would: SMTPUTF8 if an address is not ASCII,
        8-bit parts as they are if the server offers 8BITMIME, else in base64.
        """
        try:
            async with asyncio.timeout(self._settings.smtp_timeout_seconds):
                client = await self._connected()
                eight_bit = client.supports_extension("8bitmime")
                options = ["SMTPUTF8"] if mail.utf8 else []
                if eight_bit:
                    options.append("BODY=8BITMIME")
                _refused, reply = await client.sendmail(
                    self._sender,
                    [recipient],
                    mail.as_bytes(eight_bit=eight_bit),
                    mail_options=options,
                )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
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
