"""A planned message's life once it is due: claimed, then sent, retried, failed or suppressed.

Takes the caller's session; flushes, never commits. The sender owns the
transactions and keeps them short: one to claim, none while talking to the
provider, one to settle each outcome (or each group of outcomes ready together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import repository
from services.engagement.catalog import CHAT, DEFAULT_ORDER, MARKETING, PUSH
from services.engagement.catalog import EMAIL as EMAIL
from services.engagement.catalog import SMS as SMS
from services.engagement.config import EngagementSettings
from services.engagement.models import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SUPPRESSED,
    Contact,
    Outreach,
)
from services.engagement.notices import (
    SOURCE,
    deferred_event,
    publish_failed,
    suppressed_event,
)
from services.engagement.notices import (
    channel_of as _channel,
)
from services.engagement.policy import QUIET_HOURS, quiet_until
from services.engagement.repository.sweeps import claimable
from services.engagement.service import utc
from shared import outbox
from shared.events import derived_id
from shared.events.engagement import (
    OutreachSent,
    OutreachSentData,
)

MAX_ERROR_LENGTH = 1000
EXPIRED: Final = "expired: what it links to is no longer valid"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    initial: timedelta
    maximum: timedelta
    sending_timeout: timedelta
    contact_wait: timedelta
    max_lateness: timedelta = timedelta(days=1)

    @classmethod
    def from_settings(cls, settings: EngagementSettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_send_attempts,
            initial=timedelta(seconds=settings.send_retry_initial_seconds),
            maximum=timedelta(seconds=settings.send_retry_max_seconds),
            sending_timeout=timedelta(seconds=settings.sending_timeout_seconds),
            contact_wait=timedelta(seconds=settings.contact_wait_seconds),
            max_lateness=timedelta(seconds=settings.max_lateness_seconds),
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
    address: str  # e-mail address or phone number, by channel
    name: str | None
    language: str | None


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``limit`` marketing messages per customer per ``window``, all channels."""

    limit: int = 3
    window: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: EngagementSettings) -> FrequencyCap:
        return cls(limit=settings.frequency_cap)

    def reason(self) -> str:
        return f"frequency cap: {self.limit} marketing messages per {self.window.days} days"


@dataclass(frozen=True, slots=True)
class Guard:
    """What the sweeps (``sweeps``, ``release_stalled``) would decide about a due message,
    checked in the claim itself, so that a claim made between two sweeps takes none they
    would have suppressed or moved: not stale (``max_lateness``, or its journey's own
    ``lateness``), not on a channel its journey's order lacks (``unusable``: channel ->
    those journeys), not to a customer who opted out of the channel. Such a message is
    left pending for the next sweep to suppress or move."""

    max_lateness: timedelta
    lateness: Mapping[str, timedelta] = field(default_factory=dict)
    unusable: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def conditions(self, channel: str | None, now: datetime) -> list[Any]:
        """On ``channel`` (None: messages to a fixed recipient, exempt from consent)."""
        return claimable(
            channel,
            due_since=utc(now - self.max_lateness),
            due_since_by_journey={j: utc(now - late) for j, late in self.lateness.items()},
            not_journeys=self.unusable.get(channel, ()) if channel else (),
        )


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    cap: FrequencyCap | None = None,
    channels: Sequence[str] = DEFAULT_ORDER,
    guard: Guard | None = None,
) -> list[Claim]:
    """``claim_batch``'s claims."""
    claims, _ = await claim_batch(
        session, now=now, limit=limit, cap=cap, channels=channels, guard=guard
    )
    return claims


async def claim_batch(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    cap: FrequencyCap | None = None,
    channels: Sequence[str] = DEFAULT_ORDER,
    guard: Guard | None = None,
) -> tuple[list[Claim], bool]:
    """Take due messages whose customer has an address on their channel: ``sending`` now.

    A message due inside the customer's quiet hours is deferred to their end
    (``outreach.deferred``); a marketing message over the frequency cap is
    suppressed (``outreach.suppressed``), and so is one whose link expired
    (``valid_until`` in its context). Claims count towards the cap as soon as
    they are made, so a burst in one batch cannot exceed it; nor can replicas
    claiming at once, as the customers' counts are locked first
    (``repository.lock_cap_counts``). Messages to a fixed recipient (staff alerts)
    are claimed first, with no quiet hours or cap. With a ``guard``, messages the
    sweeps would suppress or move are left for them. Also returns whether a batch
    came back full (more may be due, even with no claims: they may all have been
    deferred or suppressed).
    """
    cap = cap or FrequencyCap()
    fixed = await repository.lock_due_fixed(
        session, now=utc(now), limit=limit, where=guard.conditions(None, now) if guard else ()
    )
    claims = [_claim(outreach, contact, now) for outreach, contact in fixed]
    full = len(fixed) >= limit
    rows: list[Row[Outreach, Contact]] = []
    for channel in channels:
        locked = await repository.lock_due_with_contact(
            session,
            channel=channel,
            now=utc(now),
            limit=limit,
            where=guard.conditions(channel, now) if guard else (),
        )
        full = full or len(locked) >= limit
        rows += locked
    await repository.lock_cap_counts(
        session, (outreach.customer_id for outreach, _ in rows if outreach.journey in MARKETING)
    )
    for outreach, contact in rows:
        if _expired(outreach, now):
            await _suppress(session, outreach, reason=EXPIRED, now=now)
            continue
        until = quiet_until(
            now, zone=contact.timezone, start=contact.quiet_start, end=contact.quiet_end
        )
        if until is not None:
            await _defer(session, outreach, until=until, reason=QUIET_HOURS, now=now)
        elif await _over_cap(session, outreach, cap=cap, now=now):
            await _suppress(session, outreach, reason=cap.reason(), now=now)
        else:
            claims.append(_claim(outreach, contact, now))
    return claims, full


async def _over_cap(
    session: AsyncSession, outreach: Outreach, *, cap: FrequencyCap, now: datetime
) -> bool:
    if outreach.journey not in MARKETING:
        return False
    await session.flush()  # this batch's claims count too
    sent = await repository.marketing_sent_since(
        session, customer_id=outreach.customer_id, journeys=MARKETING, since=utc(now - cap.window)
    )
    return sent >= cap.limit


async def _suppress(
    session: AsyncSession, outreach: Outreach, *, reason: str, now: datetime
) -> None:
    outreach.status = SUPPRESSED
    outreach.last_error = reason
    await outbox.enqueue(session, suppressed_event(outreach, now=now))


async def _defer(
    session: AsyncSession, outreach: Outreach, *, until: datetime, reason: str, now: datetime
) -> None:
    outreach.due_at = utc(until)
    outreach.last_error = f"deferred ({reason}) until {until.isoformat()}"
    await outbox.enqueue(session, deferred_event(outreach, until=until, reason=reason, now=now))


def _expired(outreach: Outreach, now: datetime) -> bool:
    valid_until = (outreach.context or {}).get("valid_until")
    return valid_until is not None and datetime.fromisoformat(valid_until) <= now


def _address(outreach: Outreach, contact: Contact | None) -> str | None:
    if outreach.to_address is not None:
        return outreach.to_address
    assert contact is not None
    if outreach.channel in (SMS, CHAT):
        return contact.phone
    return contact.customer_id if outreach.channel == PUSH else contact.email


def _claim(outreach: Outreach, contact: Contact | None, now: datetime) -> Claim:
    address = _address(outreach, contact)
    assert address is not None
    outreach.status = SENDING
    outreach.claimed_at = utc(now)
    outreach.attempts += 1
    outreach.recipient = address
    return Claim(
        outreach_id=outreach.id,
        customer_id=outreach.customer_id,
        journey=outreach.journey,
        channel=outreach.channel,
        template=outreach.template,
        trigger_event_id=outreach.trigger_event_id,
        attempt=outreach.attempts,
        context=dict(outreach.context),
        address=address,
        name=contact.name if contact else None,
        language=None if outreach.to_address or contact is None else contact.language,
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


async def record_sent_many(
    session: AsyncSession, *, sent: Sequence[tuple[Claim, str]], now: datetime
) -> set[str]:
    """``record_sent`` for several claims (with the provider's replies) in two statements:
    one fenced update, one outbox insert. Returns the outreach ids settled (a claim that
    was lost is left out, and gets no event)."""
    if not sent:
        return set()
    replies = {(c.outreach_id, c.attempt): reply[:255] for c, reply in sent}
    settled = await repository.settle_sent(session, replies=replies, sent_at=utc(now))
    events = [_sent_event(c, now) for c, _ in sent if c.outreach_id in settled]
    await outbox.enqueue(session, *events)
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
            channel=_channel(claim.channel),
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

    Giving up publishes ``outreach.failed``; a retry publishes nothing.
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
    if settled and values["status"] == FAILED:
        await publish_failed(session, claim.outreach_id, now=now)
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
    for outreach_id in failed:
        await publish_failed(session, outreach_id, now=now)
    return retried, failed
