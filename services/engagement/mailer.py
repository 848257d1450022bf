"""E-mail over SMTP: build the MIME message, hand it to the server, classify failures."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from services.engagement.config import EngagementSettings
from services.engagement.rendering import RenderedMessage

_PLAUSIBLE_ADDRESS = re.compile(r"[^@\s\"<>,;]+@[^@\s\"<>,;]+\.[^@\s\"<>,;]+")
# Errors about one recipient or one message: the server's code says whether it will pass.
_PER_MESSAGE = (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)


class DeliveryFailed(Exception):
    """The message was not accepted; ``permanent`` means trying again will not help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def message_id(outreach_id: str, mail_from: str) -> str:
    """A Message-ID stable across retries, so mail systems can drop a re-sent copy."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "keepwell.local"
    return f"<{outreach_id}@{domain}>"


def build_email(
    rendered: RenderedMessage,
    *,
    mail_from: str,
    to_email: str,
    to_name: str | None,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    """Raises ``ValueError`` for an address or header that cannot be written."""
    if not _PLAUSIBLE_ADDRESS.fullmatch(to_email):
        raise ValueError(f"not an e-mail address: {to_email!r}")
    username, _, domain = to_email.rpartition("@")
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = Address(display_name=to_name or "", username=username, domain=domain)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message.set_content(rendered.text)
    if rendered.html is not None:
        message.add_alternative(rendered.html, subtype="html")
    return message


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

    async def send(self, message: EmailMessage, *, recipient: str) -> str:
        """Hand the message to the server; returns its reply (often naming its queue id)."""
        s = self._settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        try:
            async with asyncio.timeout(s.smtp_timeout_seconds):
                _refused, reply = await aiosmtplib.send(
                    message,
                    sender=self._sender,
                    recipients=[recipient],
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_username,
                    password=password,
                    use_tls=s.smtp_use_tls,
                    start_tls=s.smtp_starttls,
                    timeout=s.smtp_timeout_seconds,
                )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise classify(exc) from exc
        return reply

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

    async def send(self, message: EmailMessage, *, recipient: str) -> str:
        try:
            async with asyncio.timeout(self._settings.smtp_timeout_seconds):
                client = await self._connected()
                _refused, reply = await client.send_message(
                    message, sender=self._sender, recipients=[recipient]
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
            timeout=s.smtp_timeout_seconds,
        )
        await self._client.connect()
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
