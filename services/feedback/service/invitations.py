"""Survey invitations: whom to ask, when not to (fatigue), and the signed link."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.models import Invitation, Survey
from services.feedback.service import SOURCE, as_utc, batching, tokens
from shared import outbox
from shared.events import derived_id
from shared.events.commerce import PurchaseCompleted
from shared.events.feedback import SurveyInvitationCreated, SurveyInvitationCreatedData

log = logging.getLogger(__name__)


async def invite_after_purchase(
    session: AsyncSession, *, event: PurchaseCompleted, settings: FeedbackSettings
) -> Invitation | None:
    """Invite the buyer (the survivor, if the purchase names a merged-away id) to the
    active after-purchase survey, unless recently invited.

    In a consumer batch the run of purchases reads ahead and holds its invitations
    (``batching``)."""
    at = as_utc(event.time)
    run = await batching.read_ahead(session, event)
    survey: Survey | batching.SurveyRow | None
    if run is None:
        customer = await repository.MERGES.survivor_of(session, event.subject) or event.subject
        survey = await repository.get_active_survey(session, batching.AFTER_PURCHASE, at)
        if survey is None or await _fatigued(session, customer, at, settings):
            return None
    else:
        customer = run.customer(event.subject)
        survey = run.active_survey(at)
        if survey is None or run.fatigued(customer, at, settings.fatigue_days):
            return None
    invitation = Invitation(
        id=derived_id("invitation", event.source, event.id),
        reason="after_purchase",
        purchase_id=event.data.purchase_id,
        channel=event.data.channel,
        store_id=event.data.store_id,
        product_category=main_category(event),
    )
    if run is None:
        return await _issue(session, invitation, survey, customer, at, settings)
    _fill(invitation, survey, customer, at, settings)
    batching.hold(session, invitation)
    run.invited(customer, at)
    await outbox.enqueue(session, _event(invitation, settings))
    return invitation


async def invite_follow_up(
    session: AsyncSession,
    *,
    customer_id: str,
    case_id: str,
    channel: str,
    at: datetime,
    settings: FeedbackSettings,
) -> Invitation | None:
    """Ask whether a resolved complaint won the customer back (fatigue does not apply)."""
    survey = await repository.get_active_survey(session, "follow_up", at)
    if survey is None:
        log.warning("no active follow_up survey; case %s gets no follow-up", case_id)
        return None
    invitation = Invitation(
        id=derived_id("invitation", "follow_up", case_id, at.isoformat()),
        reason="follow_up",
        case_id=case_id,
        channel=channel,
    )
    return await _issue(session, invitation, survey, customer_id, at, settings)


async def invite_periodic(
    session: AsyncSession,
    *,
    survey: Survey,
    customer_id: str,
    at: datetime,
    settings: FeedbackSettings,
) -> Invitation:
    """One member of a periodic survey's segment (the caller checked fatigue)."""
    invitation = Invitation(
        id=derived_id("invitation", "periodic", survey.id, customer_id, at.isoformat()),
        reason="periodic",
    )
    return await _issue(session, invitation, survey, customer_id, at, settings)


def main_category(event: PurchaseCompleted) -> str | None:
    """The product category that took the largest share of the basket."""
    spend: dict[str, Decimal] = {}
    for line in event.data.lines:
        if line.category:
            spend[line.category] = spend.get(line.category, Decimal(0)) + (
                line.unit_price * line.quantity
            )
    return max(sorted(spend), key=lambda c: spend[c]) if spend else None


async def _fatigued(
    session: AsyncSession, customer_id: str, at: datetime, settings: FeedbackSettings
) -> bool:
    last = await repository.get_last_invited_at(session, customer_id)
    return last is not None and as_utc(last) > at - timedelta(days=settings.fatigue_days)


async def _issue(
    session: AsyncSession,
    invitation: Invitation,
    survey: Survey | batching.SurveyRow,
    customer_id: str,
    at: datetime,
    settings: FeedbackSettings,
) -> Invitation:
    _fill(invitation, survey, customer_id, at, settings)
    session.add(invitation)
    await session.flush()
    await outbox.enqueue(session, _event(invitation, settings))
    return invitation


def _fill(
    invitation: Invitation,
    survey: Survey | batching.SurveyRow,
    customer_id: str,
    at: datetime,
    settings: FeedbackSettings,
) -> None:
    expires = (at + timedelta(days=settings.invitation_ttl_days)).replace(microsecond=0)
    invitation.survey_id, invitation.survey_version = survey.id, survey.version
    invitation.customer_id = invitation.signed_customer_id = customer_id
    invitation.created_at, invitation.expires_at = at, expires


def _event(invitation: Invitation, settings: FeedbackSettings) -> SurveyInvitationCreated:
    return SurveyInvitationCreated.create(
        id=derived_id("survey.invitation_created", invitation.id),
        subject=invitation.customer_id,
        source=SOURCE,
        time=invitation.created_at,
        data=SurveyInvitationCreatedData(
            invitation_id=invitation.id,
            survey_id=invitation.survey_id,
            url=invitation_url(invitation, settings),
            expires_at=invitation.expires_at,
            reason=invitation.reason,
            purchase_id=invitation.purchase_id,
            case_id=invitation.case_id,
        ),
    )


def invitation_url(invitation: Invitation, settings: FeedbackSettings) -> str:
    token = tokens.sign(
        tokens.TokenClaims(
            invitation_id=invitation.id,
            customer_id=invitation.signed_customer_id,
            survey_id=invitation.survey_id,
            version=invitation.survey_version,
            expires_at=as_utc(invitation.expires_at),
        ),
        secret=settings.survey_token_secret.get_secret_value().encode(),
    )
    return f"{settings.survey_base_url}?{urlencode({'token': token})}"
