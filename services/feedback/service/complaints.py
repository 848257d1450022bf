"""Complaint cases: the SLA clock, status changes, breaches and the follow-up survey.

Status changes: open → acknowledged → resolved; open → resolved (the resolution is
the first response); resolved → reopened → acknowledged / resolved. Anything else
is a 409. Deadlines are durable timers (``shared.timers``): a breach fires once,
on time, even across restarts, and only if the deadline is still unmet. Every
change is announced (``case_events``): opened, acknowledged, resolved, reopened,
sla_breached. Cases also open from detractor answers (here) and from support
interactions (``support``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint, Response
from services.feedback.schemas import ComplaintCreate, ComplaintTransition
from services.feedback.service import case_events, invitations
from services.feedback.service.errors import ComplaintNotFound, InvalidTransition
from shared import outbox, timers
from shared.events import derived_id
from shared.events.feedback import Severity

SLA_TIMER = "complaint_sla"
FOLLOW_UP_TIMER = "complaint_follow_up"
ALLOWED: dict[str, frozenset[str]] = {
    "open": frozenset({"acknowledged", "resolved"}),
    "acknowledged": frozenset({"resolved"}),
    "resolved": frozenset({"reopened"}),
    "reopened": frozenset({"acknowledged", "resolved"}),
}


async def open_complaint(
    session: AsyncSession,
    *,
    complaint: ComplaintCreate,
    at: datetime,
    settings: FeedbackSettings,
    opened_by: str | None = None,
    response_id: str | None = None,
    interaction_id: str | None = None,
    case_id: str | None = None,
) -> Complaint:
    if case_id is None:
        case_id = derived_id("complaint", response_id) if response_id else str(uuid.uuid4())
    severity: Severity = complaint.severity
    case = Complaint(
        id=case_id,
        customer_id=complaint.customer_id,
        response_id=response_id,
        interaction_id=interaction_id,
        category=complaint.category,
        severity=severity,
        channel=complaint.channel,
        summary=complaint.summary,
        status="open",
        opened_at=at,
        first_response_due=at + timedelta(hours=settings.sla_first_response_hours[severity]),
        resolution_due=at + timedelta(hours=settings.sla_resolution_hours[severity]),
        first_response_breached=False,
        resolution_breached=False,
        reopen_count=0,
        opened_by=opened_by,
    )
    session.add(case)
    await session.flush()
    await _schedule_sla(session, case, "first_response", case.first_response_due)
    await _schedule_sla(session, case, "resolution", case.resolution_due)
    await outbox.enqueue(session, case_events.opened(case, complaint.customer_id))
    return case


async def open_for_detractor(
    session: AsyncSession, *, response: Response, at: datetime, settings: FeedbackSettings
) -> Complaint | None:
    """A detractor answer (NPS 0-6) opens one case per response, at the configured severity."""
    if response.customer_id is None:
        return None
    if await repository.get_complaint_by_response(session, response.id) is not None:
        return None
    complaint = ComplaintCreate(
        customer_id=response.customer_id,
        category="detractor",
        severity=settings.detractor_severity,
        channel=response.channel,
        summary=response.comment[:500] if response.comment else None,
    )
    return await open_complaint(
        session, complaint=complaint, at=at, settings=settings, response_id=response.id
    )


async def get_complaint(session: AsyncSession, *, case_id: str) -> Complaint:
    case = await repository.get_complaint(session, case_id)
    if case is None:
        raise ComplaintNotFound(f"no complaint case {case_id!r}")
    return case


async def list_complaints(
    session: AsyncSession, *, status: str | None, customer_id: str | None, limit: int
) -> Sequence[Complaint]:
    return await repository.list_complaints(
        session, status=status, customer_id=customer_id, limit=limit
    )


async def change_status(
    session: AsyncSession,
    *,
    case_id: str,
    change: ComplaintTransition,
    at: datetime,
    settings: FeedbackSettings,
) -> Complaint:
    case = await repository.get_complaint(session, case_id, for_update=True)
    if case is None:
        raise ComplaintNotFound(f"no complaint case {case_id!r}")
    if change.status not in ALLOWED[case.status]:
        allowed = ", ".join(sorted(ALLOWED[case.status]))
        raise InvalidTransition(
            f"the complaint is {case.status} and cannot become {change.status} (allowed: {allowed})"
        )
    if change.status == "acknowledged":
        await _acknowledge(session, case, at)
        await outbox.enqueue(session, case_events.acknowledged(case, at, change.note))
    elif change.status == "resolved":
        await _resolve(session, case, at, change.note, settings)
    else:
        await _reopen(session, case, at, settings)
        await outbox.enqueue(session, case_events.reopened(case, at, change.note))
    case.status = change.status
    await session.flush()
    return case


async def _acknowledge(session: AsyncSession, case: Complaint, at: datetime) -> None:
    if case.acknowledged_at is None:
        case.acknowledged_at = at
    await timers.cancel(session, key=_sla_key(case, "first_response"))


async def _resolve(
    session: AsyncSession,
    case: Complaint,
    at: datetime,
    note: str | None,
    settings: FeedbackSettings,
) -> None:
    await _acknowledge(session, case, at)
    case.resolved_at, case.resolution = at, note
    await timers.cancel(session, key=_sla_key(case, "resolution"))
    await timers.schedule(
        session,
        kind=FOLLOW_UP_TIMER,
        key=_follow_up_key(case),
        due_at=at + timedelta(hours=settings.follow_up_delay_hours),
        payload={"case_id": case.id},
    )
    await outbox.enqueue(session, case_events.resolved(case, at))


async def _reopen(
    session: AsyncSession, case: Complaint, at: datetime, settings: FeedbackSettings
) -> None:
    await timers.cancel(session, key=_follow_up_key(case))
    case.reopen_count += 1
    case.resolved_at = None
    case.resolution_breached = False
    severity: Severity = case.severity  # type: ignore[assignment]
    case.resolution_due = at + timedelta(hours=settings.sla_resolution_hours[severity])
    await _schedule_sla(session, case, "resolution", case.resolution_due)


async def on_sla_due(session: AsyncSession, timer: timers.Timer) -> None:
    """A deadline passed: if it is still unmet, mark the breach and tell everyone, once."""
    case = await repository.get_complaint(session, timer.payload["case_id"], for_update=True)
    deadline = timer.payload["deadline"]
    if case is None or not _unmet(case, deadline):
        return
    if deadline == "first_response":
        case.first_response_breached = True
    else:
        case.resolution_breached = True
    await outbox.enqueue(session, case_events.breached(case, deadline, timer))


async def on_follow_up_due(
    session: AsyncSession, timer: timers.Timer, *, settings: FeedbackSettings
) -> None:
    case = await repository.get_complaint(session, timer.payload["case_id"])
    if case is None or case.status != "resolved" or case.customer_id is None:
        return
    await invitations.invite_follow_up(
        session,
        customer_id=case.customer_id,
        case_id=case.id,
        channel=case.channel,
        at=timer.due_at,
        settings=settings,
    )


def _unmet(case: Complaint, deadline: str) -> bool:
    if deadline == "first_response":
        return case.acknowledged_at is None and not case.first_response_breached
    return case.status != "resolved" and not case.resolution_breached


async def _schedule_sla(
    session: AsyncSession, case: Complaint, deadline: str, due_at: datetime
) -> None:
    await timers.schedule(
        session,
        kind=SLA_TIMER,
        key=_sla_key(case, deadline),
        due_at=due_at,
        payload={"case_id": case.id, "deadline": deadline, "round": case.reopen_count},
    )


def _sla_key(case: Complaint, deadline: str) -> str:
    round_ = case.reopen_count if deadline == "resolution" else 0
    return f"complaint:{case.id}:{deadline}:{round_}"


def _follow_up_key(case: Complaint) -> str:
    return f"complaint:{case.id}:follow_up:{case.reopen_count}"
