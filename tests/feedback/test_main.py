"""The feedback app in-process on the real broker and database: the loop, end to end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import func, select

from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint, Invitation, Response, SegmentMember
from shared.db import Database
from shared.events import Event, decode
from shared.events.feedback import ComplaintOpened, SurveyInvitationCreated
from shared.events.interactions import (
    FeedbackSubmitted,
    FeedbackSubmittedData,
    InteractionRecorded,
    InteractionRecordedData,
)
from shared.events.profile import (
    CustomerErased,
    CustomerErasedData,
    CustomerMerged,
    CustomerMergedData,
    SegmentChangeData,
    SegmentEntered,
)
from shared.plumbing import processed_events
from tests.feedback.conftest import nps_survey, running, settings_for
from tests.feedback.support import complaints, count, responses, token_of
from tests.helpers import auth_headers, produce, purchase, read_topic, wait_until

pytestmark = [pytest.mark.db, pytest.mark.kafka]

STAFF = auth_headers("feedback:admin", "feedback:write", "feedback:read", subject="agent-1")


def live_settings(url: str, broker: str, topics: str) -> FeedbackSettings:
    return settings_for(
        url,
        kafka_bootstrap_servers=broker,
        topic_prefix=topics,
        consumer_enabled=True,
        relay_enabled=True,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_ms=50,
        scheduler_poll_interval_ms=50,
        follow_up_delay_hours=0,
    )


async def setup_surveys(client: httpx.AsyncClient) -> None:
    for survey_id, audience in (("after-buy", "after_purchase"), ("won-back", "follow_up")):
        body = nps_survey(survey_id, audience).model_dump(mode="json")
        created = await client.post("/v1/surveys", json=body, headers=STAFF)
        assert created.status_code == 201, created.text


async def invited(broker: str, topics: str, customer: str) -> SurveyInvitationCreated:
    await produce(
        broker, f"{topics}commerce.purchases", (customer.encode(), purchase(customer).to_json())
    )
    [record] = await read_topic(broker, f"{topics}feedback.events", expect=1)
    invitation = decode(record.value)
    assert isinstance(invitation, SurveyInvitationCreated)
    assert record.key == customer.encode()
    return invitation


def submitted(customer: str, answers: dict[str, Any]) -> FeedbackSubmitted:
    return FeedbackSubmitted.create(
        subject=customer,
        source="/call-centre",
        time=datetime.now(UTC),
        data=FeedbackSubmittedData(survey_id="after-buy", channel="phone", answers=answers),
    )


def types(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[str]:
    return [decode(r.value).type for r in records]


def events(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[Event]:
    return [decode(r.value) for r in records]


async def processed(db: Database) -> int:
    async with db.unit_of_work() as session:
        return int(
            (await session.execute(select(func.count()).select_from(processed_events))).scalar_one()
        )


async def test_the_same_answer_by_rest_and_kafka_twice_is_counted_once(
    broker: str, topics: str, db: Database, feedback_url: str
) -> None:
    answers = {"recommend": 9, "why": "friendly"}
    async with running(live_settings(feedback_url, broker, topics)) as client:
        await setup_surveys(client)
        token = token_of(await invited(broker, topics, "c-1"))
        rest = [
            await client.post("/v1/responses", json={"token": token, "answers": answers})
            for _ in range(2)
        ]
        first, second = submitted("c-1", answers), submitted("c-1", answers)
        invalid = submitted("c-1", {"recommend": 42})
        topic = f"{topics}customer.interactions"
        for event in (first, invalid, second, first):  # the first is redelivered too
            await produce(broker, topic, (b"c-1", event.to_json()))
        parked = await read_topic(broker, f"{topics}feedback.deadletter", expect=1)
        await wait_until(lambda: _at_least(processed(db), 3))
        nps = await client.get("/v1/analytics/nps", headers=auth_headers("reports:read"))
    assert [r.status_code for r in rest] == [201, 201]
    assert await count(db, Response) == 1
    assert [(r["responses"], r["score"]) for r in nps.json()] == [(1, 100.0)]
    records = await read_topic(broker, f"{topics}feedback.events", expect=2)
    assert types(records) == ["survey.invitation_created", "response.recorded"]
    assert [decode(r.value).id for r in parked] == [invalid.id]
    reason = dict(parked[0].headers)["x-dead-letter-reason"].decode()
    assert "'recommend' takes a whole number from 0 to 10" in reason


async def _at_least(value: Any, n: int) -> bool:
    return bool(await value >= n)


async def test_detractor_to_complaint_to_resolution_and_a_follow_up_invitation(
    broker: str, topics: str, db: Database, feedback_url: str
) -> None:
    async with running(live_settings(feedback_url, broker, topics)) as client:
        await setup_surveys(client)
        token = token_of(await invited(broker, topics, "c-7"))
        answered = await client.post(
            "/v1/responses", json={"token": token, "answers": {"recommend": 3, "why": "cold food"}}
        )
        records = await read_topic(broker, f"{topics}feedback.events", expect=3)
        opened = events(records)[2]
        case_id = opened.data.case_id
        resolved = await client.post(
            f"/v1/complaints/{case_id}/status",
            json={"status": "resolved", "note": "voucher sent"},
            headers=STAFF,
        )
        records = await read_topic(broker, f"{topics}feedback.events", expect=5)
    assert (answered.status_code, resolved.status_code) == (201, 200)
    assert types(records) == [
        "survey.invitation_created",
        "response.recorded",
        "complaint.opened",
        "complaint.resolved",
        "survey.invitation_created",
    ]
    recorded, complaint, done, follow_up = events(records)[1:]
    assert (recorded.subject, recorded.data.category, recorded.data.score) == (
        "c-7",
        "detractor",
        3,
    )
    assert (complaint.subject, complaint.data.category, complaint.data.summary) == (
        "c-7",
        "detractor",
        "cold food",
    )
    assert (done.data.case_id, done.data.resolution) == (case_id, "voucher sent")
    assert isinstance(follow_up, SurveyInvitationCreated)
    assert (follow_up.subject, follow_up.data.reason, follow_up.data.survey_id) == (
        "c-7",
        "follow_up",
        "won-back",
    )
    assert follow_up.data.case_id == case_id
    assert await count(db, Complaint) == 1


async def test_merge_and_erasure_arrive_from_profile(
    broker: str, topics: str, db: Database, feedback_url: str
) -> None:
    async with running(live_settings(feedback_url, broker, topics)) as client:
        await setup_surveys(client)
        token = token_of(await invited(broker, topics, "c-old"))
        await client.post(
            "/v1/responses", json={"token": token, "answers": {"recommend": 4, "why": "slow"}}
        )
        merged = CustomerMerged.create(
            subject="c-new",
            source="keepwell/profile",
            data=CustomerMergedData(merge_id="m-1", merged_id="c-old"),
        )
        erased = CustomerErased.create(
            subject="c-new", source="keepwell/profile", data=CustomerErasedData()
        )
        topic = f"{topics}profile.events"
        entered = SegmentEntered.create(
            subject="c-old", source="keepwell/profile", data=SegmentChangeData(segment="vip")
        )
        await produce(broker, topic, (b"c-old", entered.to_json()))
        await wait_until(lambda: _members(db, ["c-old"]))
        await produce(broker, topic, (b"c-new", merged.to_json()))
        await wait_until(lambda: _owners(db, "c-new"))
        assert await _members(db, ["c-new"])
        await produce(broker, topic, (b"c-new", erased.to_json()))
        await wait_until(lambda: _owners(db, None))
        nps = await client.get("/v1/analytics/nps", headers=auth_headers("feedback:read"))
    [response] = await responses(db)
    assert (response.nps_score, response.comment, response.answers) == (4, None, None)
    [case] = await complaints(db)
    assert (case.customer_id, case.summary) == (None, None)
    assert await count(db, Invitation) == 0
    assert await _members(db, [])
    assert [(r["responses"], r["score"]) for r in nps.json()] == [(1, -100.0)]


async def _owners(db: Database, owner: str | None) -> bool:
    """True once the response and its complaint case both belong to ``owner``."""
    found = [r.customer_id for r in await responses(db)] + [
        c.customer_id for c in await complaints(db)
    ]
    return found == [owner, owner]


async def _members(db: Database, expected: list[str]) -> bool:
    async with db.unit_of_work() as session:
        found = (await session.execute(select(SegmentMember.customer_id))).scalars().all()
    return list(found) == expected


async def test_a_complaint_from_the_support_desk_opens_one_case(
    broker: str, topics: str, db: Database, feedback_url: str
) -> None:
    def call(event_id: str, **attributes: str) -> InteractionRecorded:
        return InteractionRecorded.create(
            id=event_id,
            subject="c-3",
            source="/support/desk",
            data=InteractionRecordedData(
                channel="phone", kind="support_call", summary="rude courier", attributes=attributes
            ),
        )

    complaint = call("call-1", complaint="true", category="delivery", severity="high")
    question = call("call-2")  # an ordinary support call
    bad = call("call-3", complaint="true", severity="urgent")
    topic = f"{topics}customer.interactions"
    async with running(live_settings(feedback_url, broker, topics)):
        marker = call("call-4")  # handled after the redelivery
        for event in (complaint, question, bad, complaint, marker):
            await produce(broker, topic, (b"c-3", event.to_json()))
        parked = await read_topic(broker, f"{topics}feedback.deadletter", expect=1)
        await wait_until(lambda: _at_least(processed(db), 3))
        records = await read_topic(broker, f"{topics}feedback.events", expect=1)
    [case] = await complaints(db)
    assert (case.customer_id, case.category, case.severity, case.interaction_id) == (
        "c-3",
        "delivery",
        "high",
        "call-1",
    )
    [opened] = events(records)
    assert isinstance(opened, ComplaintOpened)
    assert (opened.data.case_id, opened.data.channel) == (case.id, "phone")
    assert [decode(r.value).id for r in parked] == ["call-3"]
    reason = dict(parked[0].headers)["x-dead-letter-reason"].decode()
    assert "unknown complaint severity 'urgent'" in reason
