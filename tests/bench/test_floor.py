"""The messaging floor (``bench.floor``): its stand-ins do what the services do on the
wire, and a small run goes end to end on the real broker and SMTP sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from bench import floor
from bench.pipeline import REGISTERED, Burst, Paced, make_purchase
from services.engagement.config import EngagementSettings
from services.engagement.consumers import INPUT_TOPICS as ENGAGEMENT_TOPICS
from services.feedback.config import FeedbackSettings
from services.feedback.consumers import INPUT_TOPICS as FEEDBACK_TOPICS
from services.loyalty.config import LoyaltySettings
from services.loyalty.consumers import INPUT_TOPICS as LOYALTY_TOPICS
from services.profile.config import ProfileSettings
from services.profile.consumers import INPUT_TOPICS as PROFILE_TOPICS
from shared.events import decode
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.loyalty import LOYALTY_TOPIC, PointsEarned
from shared.events.profile import PROFILE_TOPIC, CustomerRegistered


def test_each_stand_in_reads_what_its_service_reads_with_its_settings() -> None:
    assert floor.service_parts("profile") == (ProfileSettings, tuple(PROFILE_TOPICS))
    assert floor.service_parts("loyalty") == (LoyaltySettings, tuple(LOYALTY_TOPICS))
    assert floor.service_parts("engagement") == (EngagementSettings, tuple(ENGAGEMENT_TOPICS))
    assert floor.service_parts("feedback") == (FeedbackSettings, tuple(FEEDBACK_TOPICS))
    with pytest.raises(ValueError, match="no such service"):
        floor.service_parts("billing")


def test_loyalty_and_profile_publish_events_the_watchers_and_the_contract_accept() -> None:
    purchase = make_purchase("c-1", 7, tag="F")
    points = floor.published("loyalty", purchase)
    registered = floor.published("profile", purchase)
    assert isinstance(points, PointsEarned)
    assert points.TOPIC == LOYALTY_TOPIC
    assert isinstance(registered, CustomerRegistered)
    assert registered.TOPIC == PROFILE_TOPIC
    # bench.pipeline.Watch matches points by the purchase event's id, ContactWatch a
    # registration by its type and subject.
    assert points.data.source_event_id == purchase.id
    assert registered.type == REGISTERED
    assert registered.subject == "c-1"
    assert registered.data.email == "c-1@bench.test"
    for event in (points, registered):
        assert decode(event.to_json()) == event
    assert floor.published("engagement", purchase) is None  # its event follows the e-mail
    assert floor.published("feedback", purchase) is None


def test_the_thank_you_is_a_well_formed_message_to_the_purchases_address() -> None:
    purchase = make_purchase("c-2", 3, tag="F")
    mail, recipient = floor.thank_you(purchase, floor.SENDER)
    assert recipient == "c-2@bench.test"
    parsed = email.message_from_bytes(mail.as_bytes(eight_bit=True), policy=email.policy.SMTP)
    assert parsed["To"] == "c-2@bench.test"
    assert parsed["Message-ID"] == f"<{purchase.id}@keepwell.local>"
    assert "F-3 of 25.50 EUR" in parsed.get_content()


def test_a_purchase_without_an_address_is_refused_not_skipped() -> None:
    purchase = PurchaseCompleted.create(
        subject="c-3",
        source="/bench/pos",
        data=PurchaseCompletedData(
            purchase_id="p-3", channel="store", total={"amount": Decimal("1"), "currency": "EUR"}
        ),
    )
    with pytest.raises(ValueError, match="no e-mail address"):
        floor.thank_you(purchase, floor.SENDER)


@dataclass
class _Process:
    name: str
    alive: bool
    log_path: Path = Path("var/x.log")


async def test_a_stand_in_that_exits_is_named() -> None:
    processes = [_Process("profile", True), _Process("loyalty", False)]
    said = await floor._first_exit(processes)  # type: ignore[arg-type]
    assert said == "the loyalty stand-in exited; see var/x.log"


@pytest.mark.kafka
async def test_a_small_floor_run_gets_every_effect_through() -> None:
    # The stand-ins are processes, the broker and the SMTP sink real; no database.
    async with asyncio.timeout(120):  # a burst waits up to 10 minutes for missing effects
        result = await floor.measure(60, [40.0], seconds=2, drain=20)
    assert result.burst.mails == 60
    (run,) = result.runs
    assert run.sent == 80
    assert len(run.points) == 80
    assert len(run.mails) == 80
    assert set(result.burst.cpu_ms) >= {"profile", "loyalty", "engagement", "feedback"}


def test_the_summary_shows_the_burst_and_each_paced_runs_split() -> None:
    burst = Burst(points=2000.0, profile=1500.0, mail=1100.0, mails=3000)
    cpu = {"profile": 0.2, "loyalty": 0.1, "engagement": 0.4, "feedback": 0.05}
    harness = {"broker": 0.5, "SMTP sink": 0.5, "benchmark": 0.25}
    kept = Paced(1000.0, 10, [0.1] * 10, [0.2] * 10, 0.5, cpu_ms=cpu | harness, busy=0.95)
    behind = Paced(1200.0, 1200, [0.1] * 1200, [0.2] * 1199, 2.0, cpu_ms=cpu | harness, busy=1.0)
    rows = floor.summary_rows(floor.FloorResult(burst, [kept, behind], warm_up=0.2), cpus=2)
    assert rows == [
        ("messaging floor, no database: burst end to end, /s", "1,100", ""),
        (
            "messaging floor at 1,000/s: stand-ins + harness ms (busy)",
            "kept up, 0.75 + 1.25 (95%)",
            "the machine: 2.00 ms per purchase",
        ),
        (
            "messaging floor at 1,200/s: stand-ins + harness ms (busy)",
            "fell behind (400/s), 0.75 + 1.25 (100%)",
            "the machine: 1.67 ms per purchase",
        ),
    ]
