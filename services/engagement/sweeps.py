"""The sender's sweeps over pending messages: routing them by consent, or not sending them.

Each suppression is recorded on the row with its reason and published as
``outreach.suppressed``. Takes the caller's session; flushes, never commits.
Messages to a fixed recipient (staff alerts) are exempt from consent routing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import repository
from services.engagement.catalog import CHANNELS, DEFAULT_ORDER, EMAIL, SMS
from services.engagement.delivery import RetryPolicy
from services.engagement.notices import publish_suppressed
from services.engagement.service import utc

NO_EMAIL = "no e-mail address known"
STALE = "stale"
OPTED_OUT = "no usable channel: opted out of e-mail, and of SMS or no phone"

# journey -> its channel order, reduced to channels with a provider
Orders = Mapping[str, tuple[str, ...]]


def opted_out_reason(order: Sequence[str]) -> str:
    if tuple(order) in ((EMAIL, SMS), (EMAIL,)):
        return OPTED_OUT
    return f"no usable channel: opted out of, or no address for, each of {', '.join(order)}"


async def suppress_opted_out(
    session: AsyncSession,
    *,
    now: datetime,
    sms: bool = False,
    orders: Orders | None = None,
    configured: Mapping[str, tuple[str, ...]] | None = None,
) -> Sequence[str]:
    """Apply consent to due messages: never an opted-out channel.

    Each journey has a channel order (by default e-mail, then SMS when an SMS
    provider is configured). A message on a channel the customer opted out of (or
    has no address for, while some later channel has one) moves to the first later
    channel they can be reached on and did not opt out of; with none left it is
    suppressed and published. ``configured`` (journey -> its order before
    dropping channels with no provider) moves messages planned on a channel with
    no provider to the next one first.
    """
    suppressed: list[str] = []
    groups: dict[tuple[str, ...], list[str] | None]
    if orders is None:
        groups = {(EMAIL, SMS) if sms else (EMAIL,): None}
    else:
        grouped: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for journey, order in orders.items():
            grouped[order].append(journey)
        groups = dict(grouped)
        suppressed += await _unprovided(session, now, orders, configured or {})
    for order, journeys in groups.items():
        for index, from_channel in enumerate(order):
            for to_channel in order[index + 1 :]:
                await repository.reroute_opted_out(
                    session,
                    from_channel=from_channel,
                    to_channel=to_channel,
                    now=utc(now),
                    journeys=journeys,
                )
        for channel in order:
            suppressed += await repository.suppress_opted_out(
                session,
                channel=channel,
                now=utc(now),
                reason=opted_out_reason(order),
                journeys=journeys,
            )
    for outreach_id in suppressed:
        await publish_suppressed(session, outreach_id, now=now)
    return suppressed


async def _unprovided(
    session: AsyncSession, now: datetime, orders: Orders, configured: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """Messages on a channel with no provider: to the journey's next usable channel."""
    lacking = [c for c in CHANNELS if any(c not in order for order in orders.values())]
    if not lacking:
        return []
    found = await repository.pending_on_channels(session, channels=lacking, now=utc(now))
    suppressed: list[str] = []
    for journey, channel in sorted(found):
        usable = orders.get(journey, ())
        if channel in usable or journey not in configured:
            continue
        full = configured[journey]
        after = full[full.index(channel) + 1 :] if channel in full else ()
        later = [c for c in after if c in usable]
        target = later[0] if later else (usable[0] if usable else None)
        if target is not None:
            await repository.move_channel(
                session,
                from_channel=channel,
                to_channel=target,
                journeys=[journey],
                now=utc(now),
            )
        else:
            suppressed += await repository.suppress_on_channel(
                session,
                channel=channel,
                journeys=[journey],
                now=utc(now),
                reason=f"no usable channel: no provider for {channel}",
            )
    return suppressed


async def suppress_stale(
    session: AsyncSession,
    *,
    now: datetime,
    policy: RetryPolicy,
    lateness: Mapping[str, timedelta] | None = None,
) -> Sequence[str]:
    """Messages that came due more than the maximum lateness ago (the service was down):
    suppressed as stale rather than sent late. ``lateness`` overrides it per journey."""
    overrides = dict(lateness or {})
    suppressed = list(
        await repository.suppress_stale(
            session,
            due_before=utc(now - policy.max_lateness),
            reason=STALE,
            other_than=list(overrides),
        )
    )
    for journey, limit in overrides.items():
        suppressed += await repository.suppress_stale(
            session, due_before=utc(now - limit), reason=STALE, journeys=[journey]
        )
    for outreach_id in suppressed:
        await publish_suppressed(session, outreach_id, now=now)
    return suppressed


async def suppress_unreachable(
    session: AsyncSession,
    *,
    now: datetime,
    policy: RetryPolicy,
    channels: Sequence[str] = DEFAULT_ORDER,
) -> Sequence[str]:
    """Give up on due messages whose customer has had no address on the message's channel
    for ``contact_wait``; each publishes ``outreach.suppressed``."""
    cutoff = utc(now - policy.contact_wait)
    suppressed: list[str] = []
    for channel in channels:
        reason = NO_EMAIL if channel == EMAIL else f"no address known for {channel}"
        suppressed += await repository.suppress_unreachable(
            session, channel=channel, due_before=cutoff, reason=reason
        )
    for outreach_id in suppressed:
        await publish_suppressed(session, outreach_id, now=now)
    return suppressed
