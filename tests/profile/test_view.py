"""The 360° view's fields from loyalty, engagement and feedback, and the timeline."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiosqlite
import pytest

from shared.db import Database
from shared.events import Event
from shared.events.engagement import ChurnRiskChanged
from shared.events.feedback import ComplaintOpened, ComplaintResolved, ResponseRecorded
from shared.events.loyalty import PointsRedeemed, PointsReleased, TierChanged
from tests.conftest import TEST_DB
from tests.profile.builders import at, interaction, outreach, points, purchase
from tests.profile.support import app_client, handle, view

pytestmark = pytest.mark.db

DUE = datetime(2026, 4, 1, tzinfo=UTC)


def tier(cid: str, new: str, hours: float) -> TierChanged:
    data = {"old_tier": "Bronze", "new_tier": new, "direction": "up", "reason": "spend"}
    return TierChanged.create(subject=cid, source="keepwell/loyalty", time=at(hours), data=data)


def churn(cid: str, risk: float, band: str, hours: float) -> ChurnRiskChanged:
    data = {"risk": risk, "band": band, "previous_band": "medium", "clv": Decimal("80.5"),
            "currency": "EUR"}  # fmt: skip
    return ChurnRiskChanged.create(
        subject=cid, source="keepwell/engagement", time=at(hours), data=data
    )


def nps(cid: str, score: int, hours: float, kind: str = "nps") -> ResponseRecorded:
    data = {"response_id": f"r{hours}", "survey_id": "s", "kind": kind, "score": score,
            "channel": "email"}  # fmt: skip
    return ResponseRecorded.create(
        subject=cid, source="keepwell/feedback", time=at(hours), data=data
    )


def complaint(cid: str, case: str, hours: float, *, resolved: bool = False) -> Event:
    source = "keepwell/feedback"
    if resolved:
        return ComplaintResolved.create(
            subject=cid, source=source, time=at(hours), data={"case_id": case}
        )
    data = {"case_id": case, "category": "delivery", "severity": "high", "channel": "phone",
            "first_response_due": DUE, "resolution_due": DUE}  # fmt: skip
    return ComplaintOpened.create(subject=cid, source=source, time=at(hours), data=data)


def redeemed(cid: str, balance: int, hours: float) -> PointsRedeemed:
    data = {"points": 50, "balance": balance, "redemption_id": "x", "reward_id": "coffee"}
    return PointsRedeemed.create(subject=cid, source="keepwell/loyalty", time=at(hours), data=data)


async def test_the_view_carries_every_services_latest_word(
    profile_url: str, profile_db: Database
) -> None:
    await handle(
        profile_db,
        tier("c-1", "Gold", 2),
        tier("c-1", "Silver", 1),  # late and older: ignored
        churn("c-1", 0.7, "high", 1),
        nps("c-1", 9, 1),
        nps("c-1", 3, 2),
        nps("c-1", 5, 3, kind="csat"),
        complaint("c-1", "k1", 1),
        complaint("c-1", "k2", 2),
        complaint("c-1", "k2", 1.5, resolved=True),  # resolution seen before the opening
        points("c-1", 100, when=at(1)),
        redeemed("c-1", 50, 0.5),  # ledger order wins over event time
    )
    async with app_client(profile_url) as client:
        seen = await view(client, "c-1")
    assert seen["tier"] == "Gold"
    assert seen["churn"] == {
        "risk": 0.7,
        "band": "high",
        "clv": {"amount": "80.5000", "currency": "EUR"},
        "updated_at": "2026-03-01T11:00:00Z",
    }
    assert seen["feedback"] == {
        "last_nps": 3,
        "last_nps_at": "2026-03-01T12:00:00Z",
        "open_complaints": 1,
    }
    assert seen["loyalty"]["points_balance"] == 50


async def test_released_points_update_the_spendable_balance(
    profile_url: str, profile_db: Database
) -> None:
    # Points earned under a lock period leave the spendable balance unchanged
    # until loyalty releases them.
    released = PointsReleased.create(
        subject="c-9",
        source="keepwell/loyalty",
        time=at(48),
        data={"points": 40, "balance": 140, "pending": 0},
    )
    await handle(profile_db, points("c-9", 100, when=at(1)), released)
    async with app_client(profile_url) as client:
        seen = await view(client, "c-9")
        timeline = (await client.get("/v1/customers/c-9/timeline")).json()
    assert seen["loyalty"]["points_balance"] == 140
    assert [e["kind"] for e in timeline["entries"]] == ["points.released", "points.earned"]


async def test_the_timeline_filters_and_pages_newest_first(
    profile_url: str, profile_db: Database
) -> None:
    await handle(
        profile_db,
        purchase("c-2", when=at(1)),
        interaction("c-2", "web", when=at(2)),
        interaction("c-2", "app", when=at(3)),
        interaction("c-2", "app", when=at(3)),
        outreach("c-2", "thank_you", when=at(4)),
    )
    async with app_client(profile_url) as client:
        url = "/v1/customers/c-2/timeline"
        first = (await client.get(url, params={"limit": 2})).json()
        second = (await client.get(url, params={"limit": 2, "before": first["next_before"]})).json()
        third = (await client.get(url, params={"limit": 2, "before": second["next_before"]})).json()
        apps = (await client.get(url, params={"channel": "app"})).json()
        bought = (await client.get(url, params={"kind": "purchase.completed"})).json()
        bad = await client.get(url, params={"before": "yesterday"})
        missing = await client.get("/v1/customers/nobody/timeline")
    pages = [e["kind"] for page in (first, second, third) for e in page["entries"]]
    assert pages == [
        "outreach.sent",
        "app_open",
        "app_open",
        "app_open",
        "purchase.completed",
    ]
    assert len(pages) == 5
    assert third["next_before"] is None
    assert [e["channel"] for e in apps["entries"]] == ["app", "app"]
    assert [e["details"]["amount"] for e in bought["entries"]] == ["100.00"]
    assert bad.status_code == 422
    assert missing.status_code == 404


async def test_the_view_lists_channels_by_first_use_consents_and_segments_by_name(
    profile_url: str, profile_db: Database
) -> None:
    """Channels, consents and segments come from one statement now; their order and
    the consents' source and time are what the view always showed."""
    await handle(
        profile_db,
        purchase("v-1", "50.00", when=at(5), channel="web"),
        interaction("v-1", "store", when=at(1)),
        interaction("v-1", "app", when=at(3)),
    )
    async with app_client(profile_url) as client:
        for name, expression in (("zeta", "order_count >= 1"), ("alpha", "total_spend > 10")):
            body = {"name": name, "expression": expression}
            assert (await client.post("/v1/segments", json=body)).status_code == 201
        consents = {"sms": "opt_out", "email": "opt_in"}
        changed = {"source": "pos", "consents": consents}
        assert (await client.put("/v1/customers/v-1/preferences", json=changed)).status_code == 200
        seen = await view(client, "v-1")
    assert seen["channels"] == ["store", "app", "web"]
    consents = seen["preferences"]["consents"]
    assert list(consents) == ["email", "sms"]
    assert consents["sms"]["status"] == "opt_out"
    assert consents["sms"]["source"] == "pos"
    assert consents["sms"]["changed_at"] is not None
    assert seen["segments"] == ["alpha", "zeta"]


@pytest.mark.skipif(TEST_DB != "sqlite", reason="aiosqlite's thread: SQLite only")
async def test_the_view_and_a_timeline_page_hand_nothing_to_aiosqlites_thread(
    profile_url: str, profile_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quick reads (Database.read_only(quick=True)) run on the event loop's thread: a hand-off
    costs more CPU than such a read (docs/architecture.md)."""
    await handle(profile_db, purchase("c-9", when=at(1)), interaction("c-9", "web", when=at(2)))
    hand_offs = 0
    original = aiosqlite.Connection._execute
    # Only the requests' own hand-offs: the app's background tasks (the segment sweep)
    # were started before, in a context where this is unset.
    in_requests: ContextVar[bool] = ContextVar("in_requests", default=False)

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hand_offs
        hand_offs += in_requests.get()
        return await original(self, fn, *args, **kwargs)

    async with app_client(profile_url) as client:
        await view(client, "c-9")  # the first of each opens its pool's connection
        await client.get("/v1/segments")
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
        in_requests.set(True)  # ASGITransport runs the app in this task
        found = await view(client, "c-9")
        page = await client.get("/v1/customers/c-9/timeline", params={"limit": 1})
        listed = await client.get("/v1/segments")  # not a quick route: hands off
        counted = hand_offs  # before the shutdown closes the pools' connections
    assert found["lifetime"]["order_count"] == 1
    assert page.status_code == 200
    assert len(page.json()["entries"]) == 1
    assert listed.status_code == 200
    assert counted == 3  # the segment list's BEGIN, SELECT and COMMIT only
