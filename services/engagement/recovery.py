"""Service recovery: a detractor's answer or a complaint gets an apology and a support alert.

A detractor response (``response.recorded``) and the complaint feedback opens
for it (``complaint.opened`` with its ``response_id``) name the same incident,
so both key the steps on the response: the customer gets one apology and the
support team one alert. A complaint with no response behind it keys on the case.
The alert goes to ``support_email`` (a fixed recipient: no consent, quiet hours
or cap apply). ``complaint.resolved`` cancels whichever of that case's two steps is
still pending (by the same keys), and not another open case's of the same customer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.catalog import SERVICE_RECOVERY, SUPPORT_ALERT
from services.engagement.config import EngagementSettings
from services.engagement.journeys import dedupe_key, exit_keys, plan
from shared.events import Event
from shared.events.feedback import ComplaintOpened, ComplaintResolved, ResponseRecorded

ERASED_SUBJECT = "erased"  # feedback's subject for a case whose customer was erased
EXIT_RESOLVED = "exit: the complaint was resolved"


async def on_response(
    session: AsyncSession, event: ResponseRecorded, *, now: datetime, settings: EngagementSettings
) -> int:
    data = event.data
    if data.category != "detractor":
        return 0
    context = {
        "response_id": data.response_id,
        "score": data.score,
        "comment": data.comment,
        "case_id": None,
        "category": None,
        "severity": None,
        "summary": None,
    }
    return await _recover(session, event, f"response:{data.response_id}", context, now, settings)


async def on_complaint(
    session: AsyncSession, event: ComplaintOpened, *, now: datetime, settings: EngagementSettings
) -> int:
    data = event.data
    key = _incident(data.response_id, data.case_id)
    context = {
        "response_id": data.response_id,
        "score": None,
        "comment": None,
        "case_id": data.case_id,
        "category": data.category,
        "severity": data.severity,
        "summary": data.summary,
    }
    return await _recover(session, event, key, context, now, settings)


async def _recover(
    session: AsyncSession,
    event: Event,
    key: str,
    context: dict[str, Any],
    now: datetime,
    settings: EngagementSettings,
) -> int:
    if event.subject == ERASED_SUBJECT:
        return 0
    planned = 0
    for journey, address in ((SERVICE_RECOVERY, None), (SUPPORT_ALERT, settings.support_email)):
        planned += await plan(
            session,
            event,
            journey=journey,
            key=key,
            context=context | {"customer_id": event.subject},
            now=now,
            settings=settings,
            to_address=address,
        )
    return planned


async def on_resolved(session: AsyncSession, event: ComplaintResolved, *, now: datetime) -> int:
    """The case's steps, keyed as ``on_complaint`` keyed them. A ``complaint.resolved``
    from before the event named the response (``response_id`` absent) can only find
    steps keyed on the case."""
    key = _incident(event.data.response_id, event.data.case_id)
    keys = tuple(dedupe_key(journey, key) for journey in (SERVICE_RECOVERY, SUPPORT_ALERT))
    return await exit_keys(session, keys=keys, reason=EXIT_RESOLVED, now=now)


def _incident(response_id: str | None, case_id: str) -> str:
    """What a case's steps are keyed on: its detractor response, if it has one."""
    return f"response:{response_id}" if response_id else f"case:{case_id}"
