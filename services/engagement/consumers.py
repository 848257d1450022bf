"""Thin event handlers: one per event type, mapped in ``handlers``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import (
    care,
    held,
    identity,
    journeys,
    prefetch,
    recommendations,
    recovery,
    service,
)
from services.engagement.churn import consumers as churn_consumers
from services.engagement.config import EngagementSettings
from services.engagement.repository.identity import MERGES
from shared.config import ServiceSettings
from shared.consumer import Handler, Handlers
from shared.events import Event
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseRefunded
from shared.events.engagement import ENGAGEMENT_TOPIC, ChurnRiskChanged
from shared.events.feedback import (
    FEEDBACK_TOPIC,
    ComplaintOpened,
    ComplaintResolved,
    ResponseRecorded,
    SurveyInvitationCreated,
)
from shared.events.loyalty import LOYALTY_TOPIC, PointsExpiring, RewardUnlocked, TierChanged
from shared.events.profile import (
    PROFILE_TOPIC,
    ConsentChanged,
    CustomerErased,
    CustomerMerged,
    CustomerRegistered,
    CustomerUnmerged,
    CustomerUpdated,
)

# Events about one customer: one that names an id merged away acts for its survivor.
ABOUT_A_CUSTOMER: frozenset[type[Event]] = frozenset(
    {
        PurchaseCompleted,
        PurchaseRefunded,
        TierChanged,
        RewardUnlocked,
        PointsExpiring,
        ChurnRiskChanged,
        SurveyInvitationCreated,
        ResponseRecorded,
        ComplaintOpened,
        ComplaintResolved,
        ConsentChanged,
    }
)

# Events whose handlers only hold writes (``held``) or, for purchases, read ahead after
# writing what is held (``prefetch``); every other handler runs after the held writes.
HOLDING: frozenset[type[Event]] = frozenset(
    {PurchaseCompleted, CustomerRegistered, CustomerUpdated, ConsentChanged}
)

OWN_TOPICS = (PURCHASES_TOPIC, PROFILE_TOPIC, LOYALTY_TOPIC, ENGAGEMENT_TOPIC, FEEDBACK_TOPIC)
INPUT_TOPICS = tuple(dict.fromkeys((*OWN_TOPICS, *churn_consumers.INPUT_TOPICS)))


async def on_purchase_completed(
    session: AsyncSession, event: PurchaseCompleted, *, settings: EngagementSettings
) -> None:
    now = datetime.now(UTC)
    await journeys.exit_win_back(session, event, now=now)
    await service.attribute(session, event, window=settings.attribution_window_seconds)
    await service.plan_thank_you(
        session,
        event=event,
        now=now,
        max_age=timedelta(seconds=settings.thank_you_max_age_seconds),
        settings=settings,
    )
    await care.plan_after_sales(session, event, now=now, settings=settings)
    await recommendations.record_purchase(session, event)


async def on_purchase_refunded(session: AsyncSession, event: PurchaseRefunded) -> None:
    await care.exit_after_sales(session, event, now=datetime.now(UTC))


async def on_customer_details(
    session: AsyncSession, event: CustomerRegistered | CustomerUpdated
) -> None:
    await service.record_contact(session, event=event)


async def on_tier_changed(
    session: AsyncSession, event: TierChanged, *, settings: EngagementSettings
) -> None:
    await journeys.plan_tier_up(session, event, now=datetime.now(UTC), settings=settings)


async def on_reward_unlocked(
    session: AsyncSession, event: RewardUnlocked, *, settings: EngagementSettings
) -> None:
    await journeys.plan_milestone_gift(session, event, now=datetime.now(UTC), settings=settings)


async def on_points_expiring(
    session: AsyncSession, event: PointsExpiring, *, settings: EngagementSettings
) -> None:
    await journeys.plan_points_expiring(session, event, now=datetime.now(UTC), settings=settings)


async def on_churn_risk_changed(
    session: AsyncSession, event: ChurnRiskChanged, *, settings: EngagementSettings
) -> None:
    await journeys.plan_win_back(session, event, now=datetime.now(UTC), settings=settings)


async def on_survey_invitation(
    session: AsyncSession, event: SurveyInvitationCreated, *, settings: EngagementSettings
) -> None:
    await care.plan_survey_invitation(session, event, now=datetime.now(UTC), settings=settings)


async def on_response_recorded(
    session: AsyncSession, event: ResponseRecorded, *, settings: EngagementSettings
) -> None:
    await recovery.on_response(session, event, now=datetime.now(UTC), settings=settings)


async def on_complaint_opened(
    session: AsyncSession, event: ComplaintOpened, *, settings: EngagementSettings
) -> None:
    await recovery.on_complaint(session, event, now=datetime.now(UTC), settings=settings)


async def on_complaint_resolved(session: AsyncSession, event: ComplaintResolved) -> None:
    await recovery.on_resolved(session, event, now=datetime.now(UTC))


async def on_customer_merged(session: AsyncSession, event: CustomerMerged) -> None:
    await identity.merge(session, event)


async def on_customer_unmerged(session: AsyncSession, event: CustomerUnmerged) -> None:
    await identity.unmerge(session, event)


async def on_customer_erased(session: AsyncSession, event: CustomerErased) -> None:
    await identity.erase(session, event, now=datetime.now(UTC))


async def on_consent_changed(session: AsyncSession, event: ConsentChanged) -> None:
    await service.record_consent_change(session, event=event)


def handlers(settings: ServiceSettings) -> Handlers:
    """Outreach's handlers and the churn part's, both run for an event both want."""
    assert isinstance(settings, EngagementSettings)
    combined = combine(outreach_handlers(settings), churn_consumers.handlers(settings))
    wrapped: dict[type[Event], Handler] = {
        t: MERGES.for_survivor(h) if t in ABOUT_A_CUSTOMER else h for t, h in combined.items()
    }
    wrapped[PurchaseCompleted] = partial(
        _purchase_as_survivor, combined[PurchaseCompleted], settings=settings
    )
    return {t: h if t in HOLDING else partial(_after_held, h) for t, h in wrapped.items()}


async def _after_held(handler: Handler, session: AsyncSession, event: Event) -> None:
    """Write what the batch holds (``held``) first: this handler may read it back."""
    await held.write(session)
    await handler(session, event)


async def _purchase_as_survivor(
    handler: Handler,
    session: AsyncSession,
    event: PurchaseCompleted,
    *,
    settings: EngagementSettings,
) -> None:
    """As ``MERGES.for_survivor``, with the survivor taken from the run's read-ahead
    (``prefetch``)."""
    run = await prefetch.read_ahead(session, event, settings=settings)
    if run is None:
        await handler(session, await MERGES.as_survivor(session, event))
        return
    survivor = prefetch.survivor(run, event.subject)
    await handler(
        session, event if survivor is None else MERGES.rewritten(session, event, survivor)
    )


def combine(*maps: Handlers) -> Handlers:
    merged: dict[type[Event], list[Handler]] = {}
    for handler_map in maps:
        for event_type, handler in handler_map.items():
            merged.setdefault(event_type, []).append(handler)
    return {t: hs[0] if len(hs) == 1 else partial(_run_all, hs) for t, hs in merged.items()}


async def _run_all(handlers: list[Handler], session: AsyncSession, event: Event) -> None:
    for handler in handlers:
        await handler(session, event)


def outreach_handlers(settings: ServiceSettings) -> Handlers:
    assert isinstance(settings, EngagementSettings)
    configured: dict[type[Event], Callable[..., Awaitable[None]]] = {
        PurchaseCompleted: on_purchase_completed,
        TierChanged: on_tier_changed,
        RewardUnlocked: on_reward_unlocked,
        PointsExpiring: on_points_expiring,
        ChurnRiskChanged: on_churn_risk_changed,
        SurveyInvitationCreated: on_survey_invitation,
        ResponseRecorded: on_response_recorded,
        ComplaintOpened: on_complaint_opened,
    }
    plain: Handlers = {
        PurchaseRefunded: on_purchase_refunded,
        CustomerRegistered: on_customer_details,
        CustomerUpdated: on_customer_details,
        ConsentChanged: on_consent_changed,
        ComplaintResolved: on_complaint_resolved,
        CustomerMerged: on_customer_merged,
        CustomerUnmerged: on_customer_unmerged,
        CustomerErased: on_customer_erased,
    }
    with_settings: Handlers = {t: partial(h, settings=settings) for t, h in configured.items()}
    return {**plain, **with_settings}
