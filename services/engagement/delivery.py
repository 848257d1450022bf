"""A planned message's life once it is due: claimed, then sent, retried, failed or suppressed.

Takes the caller's session; flushes, never commits. The sender owns the
transactions and keeps them short: one to claim, none while talking to the
provider, one to settle each outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import repository
from services.engagement.config import EngagementSettings
from services.engagement.models import FAILED, PENDING, SENDING, SENT, Contact, Outreach
from services.engagement.service import utc
from shared import outbox
from shared.events import derived_id
from shared.events.engagement import OutreachSent, OutreachSentData

SOURCE = "keepwell/engagement"
EMAIL: Final = "email"
NO_EMAIL = "no e-mail address known"
MAX_ERROR_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    initial: timedelta
    maximum: timedelta
    sending_timeout: timedelta
    contact_wait: timedelta

    @classmethod
    def from_settings(cls, settings: EngagementSettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_send_attempts,
            initial=timedelta(seconds=settings.send_retry_initial_seconds),
            maximum=timedelta(seconds=settings.send_retry_max_seconds),
            sending_timeout=timedelta(seconds=settings.sending_timeout_seconds),
            contact_wait=timedelta(seconds=settings.contact_wait_seconds),
        )

    def backoff(self, attempt: int) -> timedelta:
        """Delay before the next try after ``attempt`` failed: doubling, capped."""
        return min(self.maximum, self.initial * (1 << max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class Claim:
    """A message this sender holds, with what it needs to render and address it."""

    outreach_id: str
    customer_id: str
    journey: str
    channel: str
    template: str
    trigger_event_id: str | None
    attempt: int
    context: dict[str, Any]
    email: str
    name: str | None
    language: str | None


async def claim_due(session: AsyncSession, *, now: datetime, limit: int) -> list[Claim]:
    """Take due e-mails whose customer has an address: ``sending`` from now on."""
    rows = await repository.lock_due_with_contact(session, channel=EMAIL, now=utc(now), limit=limit)
    return [_claim(outreach, contact, now) for outreach, contact in rows]


def _claim(outreach: Outreach, contact: Contact, now: datetime) -> Claim:
    assert contact.email is not None
    outreach.status = SENDING
    outreach.claimed_at = utc(now)
    outreach.attempts += 1
    outreach.recipient = contact.email
    return Claim(
        outreach_id=outreach.id,
        customer_id=outreach.customer_id,
        journey=outreach.journey,
        channel=outreach.channel,
        template=outreach.template,
        trigger_event_id=outreach.trigger_event_id,
        attempt=outreach.attempts,
        context=dict(outreach.context),
        email=contact.email,
        name=contact.name,
        language=contact.language,
    )


async def record_sent(
    session: AsyncSession, *, claim: Claim, provider_message_id: str, now: datetime
) -> bool:
    """Mark the message sent and publish ``outreach.sent``; False if the claim was lost."""
    settled = await repository.settle_claim(
        session,
        outreach_id=claim.outreach_id,
        attempt=claim.attempt,
        values={
            "status": SENT,
            "sent_at": utc(now),
            "provider_message_id": provider_message_id[:255],
        },
    )
    if settled:
        await outbox.enqueue(session, _sent_event(claim, now))
    return settled


def _sent_event(claim: Claim, now: datetime) -> OutreachSent:
    return OutreachSent.create(
        id=derived_id("outreach.sent", claim.outreach_id),
        subject=claim.customer_id,
        source=SOURCE,
        time=now,
        data=OutreachSentData(
            outreach_id=claim.outreach_id,
            journey=claim.journey,
            channel=EMAIL,
            template=claim.template,
            trigger_event_id=claim.trigger_event_id,
        ),
    )


async def record_failure(
    session: AsyncSession,
    *,
    claim: Claim,
    error: str,
    permanent: bool,
    now: datetime,
    policy: RetryPolicy,
) -> str | None:
    """Retry later with backoff, or give up; returns the new status (None: claim lost).

    TODO(outreach.failed): publish the failure once the event type exists in
    ``shared/events/engagement.py``; until then it is recorded on the row only.
    """
    values: dict[str, Any]
    if permanent or claim.attempt >= policy.max_attempts:
        prefix = "" if permanent else f"gave up after {claim.attempt} attempts: "
        values = {"status": FAILED, "last_error": (prefix + error)[:MAX_ERROR_LENGTH]}
    else:
        retry_at = utc(now + policy.backoff(claim.attempt))
        values = {"status": PENDING, "last_error": error[:MAX_ERROR_LENGTH], "due_at": retry_at}
    settled = await repository.settle_claim(
        session, outreach_id=claim.outreach_id, attempt=claim.attempt, values=values
    )
    return str(values["status"]) if settled else None


async def release_unsent(session: AsyncSession, *, claims: Sequence[Claim]) -> None:
    """Hand back claims this sender will not try (it is stopping): not an attempt."""
    for claim in claims:
        await repository.settle_claim(
            session,
            outreach_id=claim.outreach_id,
            attempt=claim.attempt,
            values={"status": PENDING, "attempts": claim.attempt - 1, "claimed_at": None},
        )


async def release_stalled(
    session: AsyncSession, *, now: datetime, policy: RetryPolicy
) -> tuple[Sequence[str], Sequence[str]]:
    """Claims older than ``sending_timeout`` with no outcome: retried now, or failed.

    Their sender crashed or hung somewhere between claiming and settling, so the
    message may or may not have reached the server; see ``sender`` for why we send
    again rather than risk never sending. Returns (retried ids, failed ids).
    """
    cutoff = utc(now - policy.sending_timeout)
    note = f"no outcome within {policy.sending_timeout} of claiming; may have been sent"
    kwargs: dict[str, Any] = {"claimed_before": cutoff, "max_attempts": policy.max_attempts}
    retried = await repository.update_stalled(
        session,
        **kwargs,
        exhausted=False,
        values={"status": PENDING, "due_at": utc(now), "last_error": note},
    )
    failed = await repository.update_stalled(
        session, **kwargs, exhausted=True, values={"status": FAILED, "last_error": note}
    )
    return retried, failed


async def suppress_unreachable(
    session: AsyncSession, *, now: datetime, policy: RetryPolicy
) -> Sequence[str]:
    """Give up on due messages whose customer has had no e-mail for ``contact_wait``.

    TODO(outreach.suppressed): publish once the event type exists in shared.
    """
    cutoff = utc(now - policy.contact_wait)
    return await repository.suppress_unreachable(
        session, channel=EMAIL, due_before=cutoff, reason=NO_EMAIL
    )
