"""The events a complaint case publishes, each with an id derived from what caused it."""

from __future__ import annotations

from datetime import datetime

from services.feedback.models import Complaint
from services.feedback.service import SOURCE, as_utc
from shared.events import derived_id
from shared.events.feedback import (
    ComplaintAcknowledged,
    ComplaintAcknowledgedData,
    ComplaintOpened,
    ComplaintOpenedData,
    ComplaintReopened,
    ComplaintReopenedData,
    ComplaintResolved,
    ComplaintResolvedData,
    ComplaintSlaBreached,
    ComplaintSlaBreachedData,
)
from shared.timers import Timer

ERASED = "erased"  # subject of events about a case whose customer was erased


def opened(case: Complaint, customer_id: str) -> ComplaintOpened:
    return ComplaintOpened.create(
        id=derived_id("complaint.opened", case.id),
        subject=customer_id,
        source=SOURCE,
        time=case.opened_at,
        data=ComplaintOpenedData(
            case_id=case.id,
            category=case.category,
            severity=case.severity,
            channel=case.channel,
            summary=case.summary,
            first_response_due=case.first_response_due,
            resolution_due=case.resolution_due,
            response_id=case.response_id,
            interaction_id=case.interaction_id,
        ),
    )


def acknowledged(case: Complaint, at: datetime, note: str | None) -> ComplaintAcknowledged:
    due = as_utc(case.first_response_due)
    first = as_utc(case.acknowledged_at or at)
    return ComplaintAcknowledged.create(
        id=derived_id("complaint.acknowledged", case.id, str(case.reopen_count)),
        subject=case.customer_id or ERASED,
        source=SOURCE,
        time=at,
        data=ComplaintAcknowledgedData(
            case_id=case.id,
            first_response_due=due,
            within_sla=first <= due and not case.first_response_breached,
            note=note,
        ),
    )


def reopened(case: Complaint, at: datetime, note: str | None) -> ComplaintReopened:
    return ComplaintReopened.create(
        id=derived_id("complaint.reopened", case.id, str(case.reopen_count)),
        subject=case.customer_id or ERASED,
        source=SOURCE,
        time=at,
        data=ComplaintReopenedData(
            case_id=case.id,
            reopen_count=case.reopen_count,
            resolution_due=as_utc(case.resolution_due),
            note=note,
        ),
    )


def resolved(case: Complaint, at: datetime) -> ComplaintResolved:
    return ComplaintResolved.create(
        id=derived_id("complaint.resolved", case.id, str(case.reopen_count)),
        subject=case.customer_id or ERASED,
        source=SOURCE,
        time=at,
        data=ComplaintResolvedData(
            case_id=case.id, resolution=case.resolution, response_id=case.response_id
        ),
    )


def breached(case: Complaint, deadline: str, timer: Timer) -> ComplaintSlaBreached:
    due = case.first_response_due if deadline == "first_response" else case.resolution_due
    return ComplaintSlaBreached.create(
        id=derived_id("complaint.sla_breached", timer.key),
        subject=case.customer_id or ERASED,
        source=SOURCE,
        time=timer.due_at,
        data=ComplaintSlaBreachedData(
            case_id=case.id, deadline=deadline, due_at=as_utc(due), severity=case.severity
        ),
    )
