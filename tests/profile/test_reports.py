"""GET /v1/reports/segments on a fixed history: members, orders and revenue per segment."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import case, func, select

from services.profile.models import SegmentMember, TimelineEntry
from services.profile.service.reports import BadRange, period
from shared.db import Database
from tests.profile import history as generated
from tests.profile.builders import purchase, refund
from tests.profile.support import app_client, handle

pytestmark = pytest.mark.db

SEGMENTS = {
    "regulars": "order_count >= 3",
    "buyers": "order_count >= 1",
    "vips": "order_count >= 99",
}
JAN = datetime(2026, 1, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
HANOI = timezone(timedelta(hours=7))


def history() -> list[Any]:
    """Ann buys 100 (on the range's first instant) and 50, returns 20, and bought 30
    the second before the range; Binh buys 10 in range and 999 at its (exclusive) end;
    Chi pays 200 USD, and 5 USD at 06:00 in Hanoi on 1 January (still 2025 in UTC)."""
    return [
        purchase("ann", "100.00", when=JAN),
        purchase("ann", "50.00", when=JAN + timedelta(days=35)),
        refund("ann", "20.00", when=JAN + timedelta(days=36)),
        purchase("ann", "30.00", when=JAN - timedelta(seconds=1)),
        purchase("binh", "10.00", when=JAN + timedelta(days=14)),
        purchase("binh", "999.00", when=MAR),
        purchase("chi", "200.00", currency="USD", when=JAN + timedelta(days=19)),
        purchase("chi", "5.00", currency="USD", when=datetime(2026, 1, 1, 6, tzinfo=HANOI)),
    ]


async def report(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get("/v1/reports/segments", params=params)


async def test_each_segment_gets_its_members_orders_and_net_revenue(
    profile_url: str, profile_db: Database
) -> None:
    async with app_client(profile_url) as client:
        for name, expression in SEGMENTS.items():
            created = await client.post(
                "/v1/segments", json={"name": name, "expression": expression}
            )
            assert created.status_code == 201, created.text
        await handle(profile_db, *history())
        response = await report(client, **{"from": "2026-01-01", "to": "2026-03-01"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["report"], body["from"], body["to"]) == ("segments", "2026-01-01", "2026-03-01")
    assert datetime.fromisoformat(body["generated_at"]) <= datetime.now(UTC)
    rows = {(r["segment"], r["currency"]): r for r in body["segments"]}
    figures = {k: (r["customers"], r["orders"], r["revenue"], r["aov"]) for k, r in rows.items()}
    assert figures == {
        ("buyers", "EUR"): (3, 3, "140.00", "46.67"),
        ("buyers", "USD"): (3, 1, "200.00", "200.00"),
        ("regulars", "EUR"): (1, 2, "130.00", "65.00"),
        ("vips", "EUR"): (0, 0, "0.00", None),
    }
    assert rows["buyers", "USD"]["orders_per_customer"] == pytest.approx(1 / 3)
    assert rows["regulars", "EUR"]["orders_per_customer"] == 2.0
    assert rows["vips", "EUR"]["orders_per_customer"] is None
    assert rows["vips", "EUR"]["name"] == "vips"


async def test_the_range_moves_with_event_time(profile_url: str, profile_db: Database) -> None:
    async with app_client(profile_url) as client:
        await client.post("/v1/segments", json={"name": "buyers", "expression": "order_count >= 1"})
        await handle(profile_db, *history())
        march = (await report(client, **{"from": "2026-03-01", "to": "2026-04-01"})).json()
        december = (await report(client, **{"from": "2025-12-31", "to": "2026-01-01"})).json()
    assert [(r["currency"], r["orders"], r["revenue"]) for r in march["segments"]] == [
        ("EUR", 1, "999.00")
    ]
    assert sorted((r["currency"], r["orders"], r["revenue"]) for r in december["segments"]) == [
        ("EUR", 1, "30.00"),
        ("USD", 1, "5.00"),
    ]


async def test_bad_ranges_are_422_and_the_default_is_the_last_twelve_months(
    profile_url: str,
) -> None:
    async with app_client(profile_url) as client:
        backwards = await report(client, **{"from": "2026-03-01", "to": "2026-03-01"})
        too_long = await report(client, **{"from": "2010-01-01", "to": "2026-01-01"})
        not_a_date = await report(client, **{"from": "March"})
        default = await report(client)
    assert backwards.status_code == 422
    assert "earlier than" in backwards.json()["error"]["message"]
    assert too_long.status_code == 422
    assert "10 years" in too_long.json()["error"]["message"]
    assert not_a_date.status_code == 422
    assert default.status_code == 200
    today = date.today()
    assert default.json()["to"] == period(None, None, today=today).end.isoformat()
    assert default.json()["segments"] == []


def test_the_default_period_is_twelve_whole_months_and_this_one() -> None:
    whole = period(None, None, today=date(2026, 11, 25))
    assert (whole.start, whole.end) == (date(2025, 11, 1), date(2026, 12, 1))
    january = period(None, None, today=date(2026, 1, 1))
    assert (january.start, january.end) == (date(2025, 1, 1), date(2026, 2, 1))
    assert period(date(2016, 1, 1), date(2026, 1, 1), today=date(2026, 1, 1)).end.year == 2026
    with pytest.raises(BadRange):
        period(date(2026, 2, 1), None, today=date(2025, 1, 1))


async def scanned(db: Database, start: datetime, end: datetime) -> dict[tuple[str, str], Any]:
    """The report's figures computed the slow way: members joined to their timelines."""
    t, m = TimelineEntry, SegmentMember
    bought = t.kind == "purchase.completed"
    stmt = (
        select(
            m.segment,
            t.currency,
            func.count().filter(bought),
            func.sum(case((bought, t.amount), else_=-t.amount)),
        )
        .join(t, t.customer_id == m.customer_id)
        .where(t.kind.in_(("purchase.completed", "purchase.refunded")), t.currency.is_not(None))
        .where(t.occurred_at >= start, t.occurred_at < end)
        .group_by(m.segment, t.currency)
    )
    async with db.unit_of_work() as session:
        rows = (await session.execute(stmt)).all()
    return {(s, c): (int(n), str(Decimal(str(r)).quantize(Decimal("0.01")))) for s, c, n, r in rows}


async def test_the_rollup_stays_equal_to_a_full_scan_through_merges_undo_and_erasure(
    profile_url: str, profile_db: Database
) -> None:
    ids = generated.customer_ids(16, prefix="r")
    first, later = generated.history(ids), generated.history(ids, wave=1)
    window = {"from": "2026-01-01", "to": "2026-03-01"}
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)

    async def agree() -> None:
        body = (await report(client, **window)).json()
        shown = {
            (r["segment"], r["currency"]): (r["orders"], r["revenue"])
            for r in body["segments"]
            if r["orders"] or r["revenue"] != "0.00"
        }
        assert shown == await scanned(profile_db, start, end)

    async with app_client(profile_url) as client:
        await client.post("/v1/segments", json={"name": "buyers", "expression": "order_count >= 1"})
        await handle(profile_db, *first)
        await client.post(
            "/v1/segments", json={"name": "regulars", "expression": "order_count >= 3"}
        )
        await agree()
        emails = sorted(
            {f"{e.subject}@example.com" for e in first if getattr(e.data, "customer", None)}
        )
        pair = [{"kind": "email", "value": e} for e in emails[:2]]
        merged = await client.post("/v1/customers/resolve", json={"identities": pair})
        merge_id = merged.json()["merge_ids"][0]
        await handle(profile_db, *later)
        await agree()
        assert (await client.post(f"/v1/merges/{merge_id}/undo")).status_code == 200
        await agree()
        assert (await client.delete(f"/v1/customers/{ids[5]}")).status_code == 204
        await agree()
    assert await scanned(profile_db, start, end)  # the comparison was not of two empty sets
