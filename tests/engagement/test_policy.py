"""The contact policy: consent (never an opted-out channel) and quiet hours (deferred)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.engagement import delivery, policy, sweeps
from services.engagement.sender import Sender
from shared.db import Database
from shared.events import derived_id
from shared.events.engagement import OutreachDeferred, OutreachSuppressed
from shared.events.profile import ConsentChanged, ConsentChangedData, QuietHours
from tests.engagement.support import (
    customer,
    handle,
    now,
    only_outreach,
    published,
    purchase,
    set_outreach,
    settings,
)
from tools.smtp_sink import SinkHandler

OPTED_OUT = "no usable channel: opted out of e-mail, and of SMS or no phone"
NIGHT = QuietHours(start="21:00", end="08:00")


def consent(customer_id: str, status: str, *, at: datetime) -> ConsentChanged:
    data = ConsentChangedData.model_validate(
        {"channel": "email", "status": status, "source": "web-preferences", "changed_at": at}
    )
    return ConsentChanged.create(subject=customer_id, source="keepwell/profile", data=data)


@pytest.mark.parametrize(
    ("utc_time", "expected"),
    [
        ("2026-11-25T15:30", "2026-11-26T01:00"),  # 22:30 in Ho Chi Minh: until 08:00 next day
        ("2026-11-25T23:00", "2026-11-26T01:00"),  # 06:00 local, after midnight
        ("2026-11-25T01:00", None),  # 08:00 local: the window is over
        ("2026-11-25T05:00", None),  # midday
    ],
)
def test_quiet_hours_end_in_the_customers_zone(utc_time: str, expected: str | None) -> None:
    moment = datetime.fromisoformat(utc_time).replace(tzinfo=UTC)
    until = policy.quiet_until(moment, zone="Asia/Ho_Chi_Minh", start="21:00", end="08:00")
    assert until == (datetime.fromisoformat(expected).replace(tzinfo=UTC) if expected else None)


def test_an_unknown_zone_is_not_kept() -> None:
    assert policy.known_zone("Mars/Olympus_Mons") is None
    assert policy.known_zone("Asia/Ho_Chi_Minh") == "Asia/Ho_Chi_Minh"


@pytest.mark.db
async def test_an_email_opt_out_is_never_mailed(
    db: Database, smtp: tuple[int, SinkHandler]
) -> None:
    port, sink = smtp
    await handle(db, customer("c-1", consents={"email": "opt_out"}), purchase("c-1"))
    assert await Sender(db=db, settings=settings(smtp_port=port)).run_once() == 0
    row = await only_outreach(db, "c-1")
    assert (row.status, row.last_error) == ("suppressed", OPTED_OUT)
    [event] = await published(db)
    assert isinstance(event, OutreachSuppressed)
    assert (event.id, event.data.reason) == (derived_id("outreach.suppressed", row.id), OPTED_OUT)
    await asyncio.sleep(0.2)
    assert sink.messages == []


@pytest.mark.db
async def test_the_newest_consent_statement_wins(db: Database) -> None:
    registered = now() - timedelta(hours=2)
    await handle(db, customer("c-1", consents={"email": "opt_in"}, when=registered))
    await handle(db, consent("c-1", "opt_out", at=now() - timedelta(hours=1)))
    await handle(db, consent("c-1", "opt_in", at=now() - timedelta(hours=3)))  # late and stale
    await handle(db, purchase("c-1"))
    async with db.unit_of_work() as session:
        assert await sweeps.suppress_opted_out(session, now=now()) != []
        assert await delivery.claim_due(session, now=now(), limit=10) == []
    assert (await only_outreach(db, "c-1")).status == "suppressed"


@pytest.mark.db
async def test_opting_in_again_allows_mail(db: Database) -> None:
    await handle(
        db, customer("c-1", consents={"email": "opt_out"}, when=now() - timedelta(hours=1))
    )
    await handle(db, consent("c-1", "opt_in", at=now()), purchase("c-1"))
    async with db.unit_of_work() as session:
        assert await sweeps.suppress_opted_out(session, now=now()) == []
        [claim] = await delivery.claim_due(session, now=now(), limit=10)
    assert claim.customer_id == "c-1"


@pytest.mark.db
async def test_quiet_hours_defer_to_the_morning_in_the_customers_zone(db: Database) -> None:
    night = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # 22:30 in Ho Chi Minh City
    morning = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 08:00 there
    await handle(db, customer("c-1", timezone="Asia/Ho_Chi_Minh", quiet_hours=NIGHT))
    await handle(db, purchase("c-1"))
    await set_outreach(db, "c-1", due_at=night)
    async with db.unit_of_work() as session:
        assert await delivery.claim_due(session, now=night, limit=10) == []
    row = await only_outreach(db, "c-1")
    assert (row.status, row.due_at.replace(tzinfo=UTC)) == ("pending", morning)
    [event] = await published(db)
    assert isinstance(event, OutreachDeferred)
    assert (event.data.outreach_id, event.data.reason, event.data.until) == (
        row.id,
        "quiet hours",
        morning,
    )
    async with db.unit_of_work() as session:
        assert await delivery.claim_due(session, now=morning - timedelta(minutes=1), limit=10) == []
        [claim] = await delivery.claim_due(session, now=morning, limit=10)
    assert claim.outreach_id == row.id
