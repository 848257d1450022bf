"""Service recovery, the survey invitation and the after-sales reminder, with their exits."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

import pytest

from services.engagement.delivery import EXPIRED
from services.engagement.recovery import EXIT_RESOLVED
from services.engagement.sender import Sender
from shared.db import Database
from shared.events import Money
from shared.events.commerce import (
    PurchaseCompleted,
    PurchaseLine,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.engagement import OutreachSuppressed
from shared.events.feedback import (
    ComplaintOpened,
    ComplaintOpenedData,
    ComplaintResolved,
    ComplaintResolvedData,
    ResponseRecorded,
    ResponseRecordedData,
    SurveyInvitationCreated,
    SurveyInvitationCreatedData,
)
from tests.engagement.support import (
    customer,
    handle,
    now,
    only_outreach,
    outreach_rows,
    published,
    purchase,
    set_outreach,
    settings,
)
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db

FEEDBACK = "keepwell/feedback"
SUPPORT = "care-team@keepwell.example"
Smtp = tuple[int, SinkHandler]


def detractor(customer_id: str, response_id: str = "r-1") -> ResponseRecorded:
    data = ResponseRecordedData(
        response_id=response_id,
        survey_id="s-1",
        kind="nps",
        score=2,
        category="detractor",
        channel="email",
        comment="Cold food, rude staff",
    )
    return ResponseRecorded.create(subject=customer_id, source=FEEDBACK, data=data)


def complaint(
    customer_id: str, case_id: str = "case-1", response_id: str | None = "r-1"
) -> ComplaintOpened:
    at = now()
    data = ComplaintOpenedData(
        case_id=case_id,
        category="service",
        severity="medium",
        channel="email",
        summary="Cold food",
        first_response_due=at + timedelta(hours=4),
        resolution_due=at + timedelta(days=2),
        response_id=response_id,
    )
    return ComplaintOpened.create(subject=customer_id, source=FEEDBACK, data=data)


def resolved(
    customer_id: str, case_id: str = "case-1", response_id: str | None = None
) -> ComplaintResolved:
    data = ComplaintResolvedData(case_id=case_id, resolution="refunded", response_id=response_id)
    return ComplaintResolved.create(subject=customer_id, source=FEEDBACK, data=data)


def invitation(
    customer_id: str, *, expires_in: timedelta = timedelta(days=14)
) -> SurveyInvitationCreated:
    data = SurveyInvitationCreatedData(
        invitation_id="inv-1",
        survey_id="s-1",
        url="https://survey.example/answer?token=abc.def",
        expires_at=now() + expires_in,
        reason="after_purchase",
        purchase_id="p-1",
    )
    return SurveyInvitationCreated.create(subject=customer_id, source=FEEDBACK, data=data)


def sender(db: Database, port: int, **overrides: object) -> Sender:
    return Sender(db=db, settings=settings(smtp_port=port, support_email=SUPPORT, **overrides))


async def test_a_detractor_gets_an_apology_and_support_an_alert_once(
    db: Database, smtp: Smtp
) -> None:
    port, sink = smtp
    config = settings(support_email=SUPPORT)
    await handle(db, customer("c-1", name="Lan", email="lan@example.com"), config=config)
    # The response and the complaint feedback opens for it are one incident.
    await handle(db, detractor("c-1"), complaint("c-1"), config=config)
    assert await sender(db, port).run_once() == 2
    mails = sink.wait_for(2, timeout=5)
    by_recipient = {m.rcpt_tos: m for m in mails}
    assert set(by_recipient) == {("lan@example.com",), (SUPPORT,)}
    assert by_recipient[("lan@example.com",)].subject == "We are sorry, Lan"
    alert = by_recipient[(SUPPORT,)]
    assert alert.subject == "Service recovery: customer c-1"
    assert "Cold food, rude staff" in alert.message.get_content()


async def test_the_support_alert_ignores_the_customers_opt_out(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    config = settings(support_email=SUPPORT)
    await handle(db, customer("c-1", consents={"email": "opt_out"}), config=config)
    await handle(db, complaint("c-1", response_id=None), config=config)
    await sender(db, port).run_once()
    [mail] = sink.wait_for(1, timeout=5)
    assert mail.rcpt_tos == (SUPPORT,)
    statuses = {r.journey: r.status for r in await outreach_rows(db, "c-1")}
    assert statuses == {"service_recovery": "suppressed", "support_alert": "sent"}


async def test_resolving_the_complaint_cancels_what_is_still_pending(db: Database) -> None:
    config = settings(support_email=SUPPORT)
    await handle(db, customer("c-1"), complaint("c-1", response_id=None), config=config)
    await handle(db, resolved("c-1"), config=config)
    rows = await outreach_rows(db, "c-1")
    assert {(r.journey, r.status, r.last_error) for r in rows} == {
        ("service_recovery", "suppressed", EXIT_RESOLVED),
        ("support_alert", "suppressed", EXIT_RESOLVED),
    }
    events = [e for e in await published(db) if isinstance(e, OutreachSuppressed)]
    assert len(events) == 2


async def test_resolving_one_case_leaves_another_open_cases_steps_pending(
    db: Database,
) -> None:
    """Two incidents of one customer: a complaint on its own and one opened for a detractor
    answer (keyed on the answer). Each resolution cancels its own case's steps only."""
    config = settings(support_email=SUPPORT)
    await handle(db, customer("c-1"), config=config)
    await handle(db, complaint("c-1", case_id="case-1", response_id=None), config=config)
    await handle(db, detractor("c-1"), complaint("c-1", case_id="case-2"), config=config)
    await handle(db, resolved("c-1", "case-1"), config=config)
    rows = await outreach_rows(db, "c-1")
    assert sorted((r.dedupe_key, r.status) for r in rows) == [
        ("service_recovery:case:case-1", "suppressed"),
        ("service_recovery:response:r-1", "pending"),
        ("support_alert:case:case-1", "suppressed"),
        ("support_alert:response:r-1", "pending"),
    ]
    await handle(db, resolved("c-1", "case-2", response_id="r-1"), config=config)
    assert {r.status for r in await outreach_rows(db, "c-1")} == {"suppressed"}
    events = [e for e in await published(db) if isinstance(e, OutreachSuppressed)]
    assert len(events) == 4


async def test_the_survey_link_from_feedback_is_delivered(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-1", name="Lan"), invitation("c-1"))
    await sender(db, port).run_once()
    [mail] = sink.wait_for(1, timeout=5)
    assert mail.subject == "How did we do, Lan?"
    assert "https://survey.example/answer?token=abc.def" in mail.message.get_content()


async def test_an_expired_survey_link_is_not_sent(db: Database, smtp: Smtp) -> None:
    port, sink = smtp
    await handle(db, customer("c-1"), invitation("c-1"))
    planned = await only_outreach(db, "c-1")
    # The message waited (quiet hours, a retry) until after the link expired.
    expired = (now() - timedelta(minutes=1)).isoformat()
    await set_outreach(db, "c-1", context=planned.context | {"valid_until": expired})
    assert await sender(db, port).run_once() == 0
    row = await only_outreach(db, "c-1")
    assert (row.status, row.last_error) == ("suppressed", EXPIRED)
    assert sink.messages == []


def appliance_purchase(customer_id: str, purchase_id: str = "p-1") -> PurchaseCompleted:
    event = purchase(customer_id, purchase_id=purchase_id)
    line = PurchaseLine(
        sku="sku-rice-cooker",
        name="Rice cooker",
        category="Appliances",
        quantity=1,
        unit_price=Decimal("80"),
    )
    return event.model_copy(update={"data": event.data.model_copy(update={"lines": (line,)})})


async def test_after_sales_reminder_comes_after_the_delay_for_a_configured_category(
    db: Database,
) -> None:
    config = settings(after_sales_categories=["appliances"], after_sales_delay_seconds=86400)
    bought = appliance_purchase("c-1")
    await handle(db, customer("c-1"), bought, purchase("c-2"), config=config)
    rows = [r for r in await outreach_rows(db) if r.journey == "after_sales"]
    [row] = rows
    assert row.customer_id == "c-1"
    assert row.due_at.replace(tzinfo=UTC) == bought.time + timedelta(days=1)
    assert row.context["items"] == ["Rice cooker"]


async def test_a_refund_cancels_the_after_sales_reminder(db: Database) -> None:
    config = settings(after_sales_categories=["appliances"])
    bought = appliance_purchase("c-1")
    refund = PurchaseRefunded.create(
        subject="c-1",
        source=bought.source,
        data=PurchaseRefundedData(
            refund_id="rf-1", purchase_id="p-1", amount=Money(amount=Decimal(80), currency="EUR")
        ),
    )
    await handle(db, bought, refund, config=config)
    [row] = [r for r in await outreach_rows(db, "c-1") if r.journey == "after_sales"]
    assert (row.status, row.last_error) == ("suppressed", "exit: the purchase was refunded")


async def test_no_after_sales_reminder_without_configured_categories(db: Database) -> None:
    await handle(db, appliance_purchase("c-1"))
    assert [r.journey for r in await outreach_rows(db, "c-1")] == ["thank_you"]
