"""After-purchase journeys: the care reminder for some categories, and the survey link.

* ``after_sales``: a purchase holding a line of a configured category
  (``after_sales_categories``) gets a care reminder after the journey's delay
  (14 days by default). A refund of that purchase before then cancels it.
* ``survey_invitation``: feedback issues the signed, single-use link
  (``survey.invitation_created``, after a purchase or as a complaint's
  follow-up); engagement delivers it. A link that has expired by the time the
  message is due is not sent (``valid_until`` in the context, checked when claiming).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.catalog import AFTER_SALES, SURVEY_INVITATION
from services.engagement.config import EngagementSettings
from services.engagement.journeys import exit_keys, plan
from services.engagement.recommendations import purchase_key
from services.engagement.service import utc
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from shared.events.feedback import SurveyInvitationCreated

EXIT_REFUNDED = "exit: the purchase was refunded"


def _after_sales_key(source: str, purchase_id: str) -> str:
    return f"{AFTER_SALES}:{source}:{purchase_id}"


async def plan_after_sales(
    session: AsyncSession, event: PurchaseCompleted, *, now: datetime, settings: EngagementSettings
) -> bool:
    wanted = {c.casefold() for c in settings.after_sales_categories}
    lines = [line for line in event.data.lines if (line.category or "").casefold() in wanted]
    if not lines:
        return False
    context = {
        "purchase_id": event.data.purchase_id,
        "categories": sorted({line.category for line in lines if line.category}),
        "items": [line.name for line in lines if line.name],
    }
    key = purchase_key(event)
    return await plan(
        session, event, journey=AFTER_SALES, key=key, context=context, now=now, settings=settings
    )


async def exit_after_sales(session: AsyncSession, event: PurchaseRefunded, *, now: datetime) -> int:
    """A refunded purchase needs no care reminder (the till's source scopes the purchase)."""
    key = _after_sales_key(event.source, event.data.purchase_id)
    return await exit_keys(session, keys=(key,), reason=EXIT_REFUNDED, now=now)


async def plan_survey_invitation(
    session: AsyncSession,
    event: SurveyInvitationCreated,
    *,
    now: datetime,
    settings: EngagementSettings,
) -> bool:
    data = event.data
    expires = utc(data.expires_at)
    context = {
        "url": data.url,
        "expires_on": expires.date().isoformat(),
        "valid_until": expires.isoformat(),
        "reason": data.reason,
        "purchase_id": data.purchase_id,
        "case_id": data.case_id,
    }
    return await plan(
        session,
        event,
        journey=SURVEY_INVITATION,
        key=data.invitation_id,
        context=context,
        now=now,
        settings=settings,
    )
