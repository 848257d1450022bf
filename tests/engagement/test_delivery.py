"""The claim / settle protocol: fencing, take-over after a stall, disjoint concurrent claims."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.engagement import delivery
from services.engagement.delivery import Claim, RetryPolicy
from shared.db import Database
from shared.events import derived_id
from shared.events.engagement import OutreachFailed, OutreachSent
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

pytestmark = pytest.mark.db

POLICY = RetryPolicy.from_settings(settings(sending_timeout_seconds=60))


async def _claim(db: Database, limit: int = 10) -> list[Claim]:
    async with db.unit_of_work() as session:
        return await delivery.claim_due(session, now=now(), limit=limit)


async def _release_stalled(db: Database) -> None:
    async with db.unit_of_work() as session:
        await delivery.release_stalled(session, now=now(), policy=POLICY)


async def _sent(db: Database, claim: Claim) -> bool:
    async with db.unit_of_work() as session:
        return await delivery.record_sent(
            session, claim=claim, provider_message_id="250 ok", now=now()
        )


async def test_a_superseded_claim_cannot_settle(db: Database) -> None:
    await handle(db, customer("c-1"), purchase("c-1"))
    [first] = await _claim(db)
    await set_outreach(db, "c-1", claimed_at=now() - timedelta(minutes=10))
    await _release_stalled(db)
    [second] = await _claim(db)  # another replica takes over
    assert (first.attempt, second.attempt) == (1, 2)
    async with db.unit_of_work() as session:
        late = await delivery.record_failure(
            session, claim=first, error="timed out", permanent=True, now=now(), policy=POLICY
        )
    assert late is None
    assert await _sent(db, second)
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts, row.last_error) == (
        "sent",
        2,
        "no outcome within 0:01:00 of claiming; may have been sent",
    )


async def test_a_slow_sender_still_settles_if_nobody_took_over(db: Database) -> None:
    await handle(db, customer("c-1"), purchase("c-1"))
    [claim] = await _claim(db)
    await set_outreach(db, "c-1", claimed_at=now() - timedelta(minutes=10))
    await _release_stalled(db)  # back to pending, not yet claimed again
    assert await _sent(db, claim)
    assert (await only_outreach(db, "c-1")).status == "sent"
    assert await _claim(db) == []


async def test_a_group_of_sends_settles_the_claims_still_held_each_with_its_reply(
    db: Database,
) -> None:
    for n in range(3):
        await handle(db, customer(f"c-{n}"), purchase(f"c-{n}"))
    claims = {c.customer_id: c for c in await _claim(db)}
    await set_outreach(db, "c-1", claimed_at=now() - timedelta(minutes=10))
    await _release_stalled(db)
    [taken_over] = await _claim(db)
    assert (taken_over.customer_id, taken_over.attempt) == ("c-1", 2)
    sent = [(claims[c], f"250 queued as Q{c[-1]}") for c in ("c-0", "c-1", "c-2")]
    async with db.unit_of_work() as session:
        settled = await delivery.record_sent_many(session, sent=sent, now=now())
    assert settled == {claims["c-0"].outreach_id, claims["c-2"].outreach_id}
    rows = {r.customer_id: r for r in await outreach_rows(db)}
    assert [(r.status, r.attempts, r.provider_message_id) for _, r in sorted(rows.items())] == [
        ("sent", 1, "250 queued as Q0"),
        ("sending", 2, None),
        ("sent", 1, "250 queued as Q2"),
    ]
    events = await published(db)
    assert sorted(e.data.outreach_id for e in events if isinstance(e, OutreachSent)) == sorted(
        settled
    )


async def test_concurrent_claims_take_disjoint_rows(db: Database) -> None:
    for n in range(3):
        await handle(db, customer(f"c-{n}"), purchase(f"c-{n}"))
    async with db.unit_of_work() as session:
        first = await delivery.claim_due(session, now=now(), limit=2)
        other = asyncio.create_task(_claim(db, limit=2))
        await asyncio.sleep(0.3)
        if not db.sqlite:  # SKIP LOCKED: the other replica is not held up by our locks
            assert other.done()
    second = await other
    ids = [c.outreach_id for c in first + second]
    assert len(ids) == len(set(ids)) == 3
    assert {r.status for r in await outreach_rows(db)} == {"sending"}


async def test_a_stalled_claim_out_of_attempts_fails_and_is_published(db: Database) -> None:
    await handle(db, customer("c-1"), purchase("c-1"))
    await _claim(db)
    await set_outreach(db, "c-1", claimed_at=now() - timedelta(minutes=10), attempts=5)
    await _release_stalled(db)
    row = await only_outreach(db, "c-1")
    assert row.status == "failed"
    [event] = await published(db)
    assert isinstance(event, OutreachFailed)
    assert (event.id, event.data.attempts) == (derived_id("outreach.failed", row.id), 5)
    assert event.data.error == row.last_error


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy.from_settings(
        settings(send_retry_initial_seconds=60, send_retry_max_seconds=300)
    )
    assert [policy.backoff(n).total_seconds() for n in (1, 2, 3, 4, 9)] == [60, 120, 240, 300, 300]
