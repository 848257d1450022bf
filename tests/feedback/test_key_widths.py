"""Keys built from event fields fit their columns, on PostgreSQL too (which enforces
VARCHAR lengths; SQLite does not): an answer, a purchase and a complaint call from the
longest source with the longest ids the event contract allows are recorded."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.consumers import handlers
from services.feedback.models import Complaint, Invitation
from shared.db import Database
from shared.events import Money
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData, PurchaseLine
from shared.events.interactions import (
    FeedbackSubmitted,
    FeedbackSubmittedData,
    InteractionRecorded,
    InteractionRecordedData,
)
from tests.feedback.conftest import T0
from tests.feedback.support import complaints, count, create_survey, responses
from tests.helpers import LONGEST_SOURCE, dead_letter_topics, longest, run_poll

pytestmark = pytest.mark.db


def _answer(customer_id: str) -> FeedbackSubmitted:
    """A call-centre answer with no invitation behind it: keyed on its (source, id)."""
    return FeedbackSubmitted.create(
        id=longest("e-answer-"),
        subject=customer_id,
        source=LONGEST_SOURCE,
        time=T0 + timedelta(hours=1),
        data=FeedbackSubmittedData(
            survey_id="after-buy",
            channel="phone",
            answers={"recommend": 2},  # a detractor: a case is opened for it too
            store_id=longest("store-", 64),
            submitted_by=longest("agent-", 100),
        ),
    )


def _sale(customer_id: str) -> PurchaseCompleted:
    line = PurchaseLine(
        sku=longest("sku-", 64),
        category=longest("Kitchen ", 100),
        quantity=1,
        unit_price=Decimal("80"),
    )
    return PurchaseCompleted.create(
        id=longest("e-sale-"),
        subject=customer_id,
        source=LONGEST_SOURCE,
        time=T0,
        data=PurchaseCompletedData(
            purchase_id=longest("p-"),
            channel="store",
            store_id=longest("store-", 64),
            total=Money(amount=Decimal(80), currency="EUR"),
            lines=(line,),
        ),
    )


def _complaint_call(customer_id: str) -> InteractionRecorded:
    return InteractionRecorded.create(
        id=longest("e-call-"),
        subject=customer_id,
        source=LONGEST_SOURCE,
        time=T0 + timedelta(minutes=5),
        data=InteractionRecordedData(
            kind="support_call",
            channel="phone",
            summary="s" * 500,
            attributes={"complaint": "yes", "category": "c" * 300},
        ),
    )


async def test_events_with_the_longest_source_and_ids_are_recorded(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db, "after-buy")
    answer = _answer(longest("c-answer-", 64))
    sale = _sale(longest("c-sale-", 64))
    call = _complaint_call(longest("c-call-", 64))

    await run_poll(db, handlers(settings), [answer, sale, call])

    assert await dead_letter_topics(db) == []
    [response] = await responses(db)
    assert response.dedupe_key == f"event:{LONGEST_SOURCE}:{answer.id}"
    assert len(response.dedupe_key) == 391
    assert (response.customer_id, response.nps_score) == (answer.subject, 2)
    assert await count(db, Invitation) == 1
    cases = {c.customer_id: c for c in await complaints(db)}
    assert set(cases) == {answer.subject, call.subject}
    assert cases[answer.subject].response_id == response.id
    assert cases[call.subject].interaction_id == call.id
    assert await count(db, Complaint) == 2
