"""Complaints raised through support channels, as ``interaction.recorded`` events.

An interaction opens a case when it is a support contact and flags itself as a
complaint:

* support contact: ``kind`` ``support_call``, ``support_chat`` or ``social_message``,
  or ``kind`` ``other`` on channel ``email``, ``phone``, ``chat`` or ``social`` (an
  e-mail to the support inbox, say). Page views, app opens, marketing e-mail
  opens and clicks, store visits, reviews and referrals never open a case.
* complaint flag: ``attributes["complaint"]`` is ``true`` / ``yes`` / ``1``.
* optional ``attributes["category"]`` (default ``support``) and
  ``attributes["severity"]`` (``low`` … ``critical``; default
  ``FEEDBACK_SUPPORT_COMPLAINT_SEVERITY``). Any other severity is refused, so the
  event is dead-lettered with the reason rather than opened at a guessed urgency.

The case id is derived from the event's (source, id): a re-delivered or replayed
event finds its case and opens nothing. The SLA clock starts at the event's time.
"""

from __future__ import annotations

import logging
from typing import get_args

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint
from services.feedback.schemas import ComplaintCreate
from services.feedback.service import complaints
from shared.events import derived_id
from shared.events.feedback import Severity
from shared.events.interactions import InteractionRecorded

log = logging.getLogger(__name__)

SUPPORT_KINDS = frozenset({"support_call", "support_chat", "social_message"})
SUPPORT_CHANNELS_FOR_OTHER = frozenset({"email", "phone", "chat", "social"})
YES = frozenset({"true", "yes", "1"})
DEFAULT_CATEGORY = "support"


class InvalidComplaintInteraction(ValueError):
    """A complaint interaction the service cannot open a case from (dead-lettered)."""


def is_support_contact(event: InteractionRecorded) -> bool:
    data = event.data
    if data.kind in SUPPORT_KINDS:
        return True
    return data.kind == "other" and data.channel in SUPPORT_CHANNELS_FOR_OTHER


def is_complaint(event: InteractionRecorded) -> bool:
    flag = event.data.attributes.get("complaint", "")
    return flag.strip().lower() in YES and is_support_contact(event)


async def open_from_interaction(
    session: AsyncSession, *, event: InteractionRecorded, settings: FeedbackSettings
) -> Complaint | None:
    """Open the case a complaint interaction asks for (for the survivor, if the event
    names a merged-away id); None for anything else or a repeat."""
    if not is_complaint(event):
        if event.data.attributes.get("complaint") is not None:
            log.info("interaction %s flags a complaint but is no support contact", event.id)
        return None
    case_id = derived_id("complaint.interaction", event.source, event.id)
    if await repository.get_complaint(session, case_id) is not None:
        return None
    customer = await repository.MERGES.survivor_of(session, event.subject) or event.subject
    body = _complaint(event, customer, settings)
    return await complaints.open_complaint(
        session,
        complaint=body,
        at=event.time,
        settings=settings,
        opened_by=event.source[:100],
        interaction_id=event.id[:128],
        case_id=case_id,
    )


def _complaint(
    event: InteractionRecorded, customer_id: str, settings: FeedbackSettings
) -> ComplaintCreate:
    attributes = event.data.attributes
    category = attributes.get("category", "").strip()[:64] or DEFAULT_CATEGORY
    return ComplaintCreate(
        customer_id=customer_id,
        category=category,
        severity=_severity(attributes.get("severity"), settings),
        channel=event.data.channel,
        summary=event.data.summary,
    )


def _severity(value: str | None, settings: FeedbackSettings) -> Severity:
    if value is None or not value.strip():
        return settings.support_complaint_severity
    wanted = value.strip().lower()
    for severity in get_args(Severity):
        if severity == wanted:
            found: Severity = severity
            return found
    allowed = ", ".join(get_args(Severity))
    raise InvalidComplaintInteraction(
        f"unknown complaint severity {value[:40]!r} (allowed: {allowed})"
    )
