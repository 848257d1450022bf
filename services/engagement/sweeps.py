"""The sender's sweeps over pending messages: those it must not send at all.

Each suppression is recorded on the row with its reason and published as
``outreach.suppressed``. Takes the caller's session; flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import repository
from services.engagement.delivery import EMAIL, SMS, RetryPolicy
from services.engagement.notices import publish_suppressed
from services.engagement.service import utc

NO_EMAIL = "no e-mail address known"
STALE = "stale"
OPTED_OUT = "no usable channel: opted out of e-mail, and of SMS or no phone"


async def suppress_opted_out(
    session: AsyncSession, *, now: datetime, sms: bool = False
) -> Sequence[str]:
    """Apply consent to due messages: never an opted-out channel.

    The journeys' channel order is e-mail, then SMS (when an SMS provider is
    configured). A message whose customer opted out of e-mail moves to SMS if they
    have a phone and did not opt out of it; otherwise, like a message on a channel
    they opted out of with nothing after it, it is suppressed and published.
    """
    if sms:
        await repository.reroute_opted_out(
            session, from_channel=EMAIL, to_channel=SMS, now=utc(now)
        )
    suppressed: list[str] = []
    for channel in (EMAIL, SMS):
        suppressed += await repository.suppress_opted_out(
            session, channel=channel, now=utc(now), reason=OPTED_OUT
        )
    for outreach_id in suppressed:
        await publish_suppressed(session, outreach_id, now=now)
    return suppressed


async def suppress_stale(
    session: AsyncSession, *, now: datetime, policy: RetryPolicy
) -> Sequence[str]:
    """Messages that came due more than ``max_lateness`` ago (the service was down):
    suppressed as stale rather than sent late."""
    suppressed = await repository.suppress_stale(
        session, due_before=utc(now - policy.max_lateness), reason=STALE
    )
    for outreach_id in suppressed:
        await publish_suppressed(session, outreach_id, now=now)
    return suppressed


async def suppress_unreachable(
    session: AsyncSession, *, now: datetime, policy: RetryPolicy
) -> Sequence[str]:
    """Give up on due messages whose customer has had no e-mail for ``contact_wait``;
    each publishes ``outreach.suppressed``."""
    cutoff = utc(now - policy.contact_wait)
    suppressed = await repository.suppress_unreachable(
        session, channel=EMAIL, due_before=cutoff, reason=NO_EMAIL
    )
    for outreach_id in suppressed:
        await publish_suppressed(session, outreach_id, now=now)
    return suppressed
