"""Complaints raised through support channels as ``interaction.recorded`` events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.consumers import handlers
from services.feedback.models import Complaint
from services.feedback.service.support import InvalidComplaintInteraction
from shared.db import Database
from shared.events.feedback import ComplaintOpened
from shared.events.interactions import InteractionRecorded, InteractionRecordedData
from tests.feedback.conftest import T0
from tests.feedback.support import complaints, count, published

pytestmark = pytest.mark.db


def interaction(
    kind: str = "support_call",
    channel: str = "phone",
    *,
    event_id: str = "i-1",
    customer: str = "c-9",
    **attributes: str,
) -> InteractionRecorded:
    return InteractionRecorded.create(
        id=event_id,
        subject=customer,
        source="/support/desk",
        time=T0 + timedelta(minutes=5),
        data=InteractionRecordedData.model_validate(
            {
                "kind": kind,
                "channel": channel,
                "summary": "parcel arrived broken",
                "attributes": attributes,
            }
        ),
    )


async def deliver(db: Database, settings: FeedbackSettings, event: InteractionRecorded) -> None:
    handle = handlers(settings)[InteractionRecorded]
    async with db.unit_of_work() as session:
        await handle(session, event)


async def test_a_complaint_call_opens_one_case_on_the_event_clock(
    db: Database, settings: FeedbackSettings
) -> None:
    event = interaction(complaint="true", category="delivery", severity="High")
    await deliver(db, settings, event)
    await deliver(db, settings, event)  # replayed: the same case, nothing new
    [case] = await complaints(db)
    assert (case.customer_id, case.category, case.severity, case.channel) == (
        "c-9",
        "delivery",
        "high",
        "phone",
    )
    assert (case.summary, case.interaction_id, case.status) == (
        "parcel arrived broken",
        "i-1",
        "open",
    )
    opened_at = T0 + timedelta(minutes=5)
    assert case.first_response_due - opened_at == timedelta(hours=4)  # high: 4 h
    [opened] = await published(db, ComplaintOpened)
    assert (opened.subject, opened.time, opened.data.case_id) == ("c-9", opened_at, case.id)
    assert (opened.data.interaction_id, opened.data.response_id) == ("i-1", None)


@pytest.mark.parametrize(
    ("kind", "channel", "attributes"),
    [
        ("support_chat", "chat", {"complaint": "yes"}),
        ("social_message", "social", {"complaint": "1"}),
        ("other", "email", {"complaint": "TRUE"}),  # an e-mail to the support inbox
    ],
)
async def test_every_support_channel_can_raise_a_complaint(
    db: Database, settings: FeedbackSettings, kind: str, channel: str, attributes: dict[str, Any]
) -> None:
    await deliver(db, settings, interaction(kind, channel, **attributes))
    [case] = await complaints(db)
    assert (case.channel, case.category, case.severity) == (
        channel,
        "support",
        settings.support_complaint_severity,
    )


@pytest.mark.parametrize(
    ("kind", "channel", "attributes"),
    [
        ("support_call", "phone", {}),  # a support call that is no complaint
        ("support_chat", "chat", {"complaint": "false"}),
        ("email_clicked", "email", {"complaint": "true"}),  # marketing e-mail, not support
        ("review", "web", {"complaint": "true"}),
        ("other", "store", {"complaint": "true"}),
    ],
)
async def test_other_interactions_open_nothing(
    db: Database, settings: FeedbackSettings, kind: str, channel: str, attributes: dict[str, Any]
) -> None:
    await deliver(db, settings, interaction(kind, channel, **attributes))
    assert await count(db, Complaint) == 0
    assert await published(db, ComplaintOpened) == []


async def test_two_complaints_from_two_events_are_two_cases(
    db: Database, settings: FeedbackSettings
) -> None:
    await deliver(db, settings, interaction(event_id="i-1", complaint="true"))
    await deliver(db, settings, interaction(event_id="i-2", complaint="true"))
    assert sorted(c.interaction_id or "" for c in await complaints(db)) == ["i-1", "i-2"]


async def test_an_unknown_severity_is_refused_with_the_reason(
    db: Database, settings: FeedbackSettings
) -> None:
    with pytest.raises(InvalidComplaintInteraction, match="unknown complaint severity 'urgent'"):
        await deliver(db, settings, interaction(complaint="true", severity="urgent"))
    assert await count(db, Complaint) == 0
