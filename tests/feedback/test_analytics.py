"""NPS, CSAT and complaint figures on fixed tables, computed by the database."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.feedback.config import FeedbackSettings
from services.feedback.models import Complaint, Response
from services.feedback.repository.analytics import ResponseFilter
from services.feedback.service import analytics
from shared.db import Database
from tests.feedback.conftest import T0, running
from tests.helpers import auth_headers

pytestmark = pytest.mark.db

STORE_1 = [10, 10, 9, 9, 8, 7, 6, 3, 0, 10]  # 5 promoters, 2 passives, 3 detractors
STORE_2 = [9, 9, 9, 9]


def answer(i: int, store: str, at: datetime, **scores: Any) -> Response:
    return Response(
        id=f"r-{i}",
        dedupe_key=f"k-{i}",
        survey_id="s-1" if store == "store-1" else "s-2",
        survey_version=1,
        customer_id=f"c-{i}",
        source="event",
        channel="store",
        store_id=store,
        product_category="shoes",
        comment=f"comment {i}" if i % 2 else None,
        category="detractor" if scores.get("nps_score", 10) <= 6 else None,
        submitted_at=at,
        updated_at=at,
        **scores,
    )


async def fill(db: Database) -> None:
    rows = [answer(i, "store-1", T0, nps_score=s) for i, s in enumerate(STORE_1)]
    later = T0 + timedelta(days=40)
    rows += [answer(100 + i, "store-2", later, nps_score=s) for i, s in enumerate(STORE_2)]
    rows += [answer(200 + i, "store-1", T0, csat_score=s) for i, s in enumerate([5, 4, 4, 2, 1])]
    async with db.unit_of_work() as session:
        session.add_all(rows)


async def test_nps_by_store_with_its_confidence_interval(db: Database) -> None:
    await fill(db)
    async with db.unit_of_work() as session:
        rows = await analytics.nps_report(
            session, by="store", period="month", where=ResponseFilter()
        )
    by_store = {r.group: r for r in rows}
    one, two = by_store["store-1"], by_store["store-2"]
    # store-1: 50 % promoters - 30 % detractors = 20; variance 0.5 + 0.3 - 0.2² = 0.76,
    # half width 1.96 * sqrt(0.76 / 10) = 54.03 points.
    assert (one.responses, one.score, one.ci_half_width) == (10, 20.0, 54.03)
    assert (one.ci_low, one.ci_high) == (-34.03, 74.03)
    # store-2: everyone a promoter, no spread at all.
    assert (two.responses, two.score, two.ci_half_width) == (4, 100.0, 0.0)


async def test_nps_by_month_and_filtered_by_store(db: Database) -> None:
    await fill(db)
    async with db.unit_of_work() as session:
        months = await analytics.nps_report(
            session, by="period", period="month", where=ResponseFilter()
        )
        weeks = await analytics.nps_report(
            session, by="period", period="week", where=ResponseFilter(store_id="store-2")
        )
        overall = await analytics.nps_report(
            session, by="none", period="month", where=ResponseFilter()
        )
    assert [(r.group, r.responses, r.score) for r in months] == [
        ("2026-03-01", 10, 20.0),
        ("2026-04-01", 4, 100.0),
    ]
    assert [(r.group, r.responses) for r in weeks] == [("2026-04-06", 4)]  # Monday of Apr 11
    # all 14: 9 promoters, 3 detractors → 6/14 = 42.86
    assert [(r.group, r.responses, r.score) for r in overall] == [("all", 14, 42.86)]


async def test_csat_is_the_share_of_fours_and_fives(db: Database) -> None:
    await fill(db)
    async with db.unit_of_work() as session:
        [row] = await analytics.csat_report(
            session, by="survey", period="month", where=ResponseFilter()
        )
    # 3 of 5 satisfied: 60 %, half width 1.96 * sqrt(0.6 * 0.4 / 5) = 42.94
    assert (row.group, row.responses, row.score, row.ci_half_width) == ("s-1", 5, 60.0, 42.94)


async def test_verbatims_filtered_by_category_and_text(db: Database) -> None:
    await fill(db)
    async with db.unit_of_work() as session:
        found = await analytics.verbatim_report(
            session,
            where=ResponseFilter(store_id="store-1"),
            category="detractor",
            contains="COMMENT 7",
            limit=10,
        )
    assert [(v.response_id, v.nps_score, v.comment) for v in found] == [("r-7", 3, "comment 7")]


def case(i: int, acked_h: float | None, resolved_h: float | None, **kw: Any) -> Complaint:
    return Complaint(
        id=f"case-{i}",
        customer_id=f"c-{i}",
        category="delivery",
        severity="high",
        channel="chat",
        status="resolved" if resolved_h is not None else "open",
        opened_at=T0,
        first_response_due=T0 + timedelta(hours=4),
        resolution_due=T0 + timedelta(hours=24),
        acknowledged_at=None if acked_h is None else T0 + timedelta(hours=acked_h),
        resolved_at=None if resolved_h is None else T0 + timedelta(hours=resolved_h),
        reopen_count=0,
        **kw,
    )


async def test_complaint_volume_sla_attainment_and_median_times(db: Database) -> None:
    cases = [
        case(1, 1, 10),
        case(2, 2, 30, resolution_breached=True),
        case(3, 5, None, first_response_breached=True),
        case(4, None, None),  # still open, nothing due yet: not counted for attainment
    ]
    async with db.unit_of_work() as session:
        session.add_all(cases)
    async with db.unit_of_work() as session:
        [row] = await analytics.complaint_report(
            session, by="category", period="month", since=None, until=None
        )
    assert (row.group, row.complaints) == ("delivery", 4)
    assert row.first_response_sla_met_pct == 66.67  # 2 of 3 answered within 4 h
    assert row.resolution_sla_met_pct == 50.0  # 1 of 2 resolved within 24 h
    assert row.median_first_response_seconds == 7200.0  # 1 h, 2 h, 5 h
    assert row.median_resolution_seconds == 72000.0  # (10 h + 30 h) / 2


async def test_complaint_volume_by_month_counts_each_month(db: Database) -> None:
    later = case(2, None, None)
    later.opened_at = T0 + timedelta(days=31)
    async with db.unit_of_work() as session:
        session.add_all([case(1, 1, 2), later])
    async with db.unit_of_work() as session:
        rows = await analytics.complaint_report(
            session, by="period", period="month", since=None, until=None
        )
    assert [(r.group, r.complaints, r.median_resolution_seconds) for r in rows] == [
        ("2026-03-01", 1, 7200.0),
        ("2026-04-01", 1, None),
    ]


async def test_reports_need_a_reading_scope_and_valid_parameters(
    db: Database, settings: FeedbackSettings
) -> None:
    await fill(db)
    async with running(settings) as client:
        denied = await client.get("/v1/analytics/nps", headers=auth_headers("loyalty:read"))
        anonymous = await client.get("/v1/analytics/csat")
        reports = auth_headers("reports:read")
        by_channel = await client.get("/v1/analytics/nps?by=channel", headers=reports)
        bad_dimension = await client.get("/v1/analytics/nps?by=colour", headers=reports)
        naive = await client.get("/v1/analytics/nps?since=2026-03-01T00:00:00", headers=reports)
        verbatims = await client.get(
            "/v1/analytics/verbatims?category=detractor", headers=auth_headers("feedback:read")
        )
    assert (denied.status_code, anonymous.status_code) == (403, 401)
    assert [(r["group"], r["responses"]) for r in by_channel.json()] == [("store", 14)]
    assert (bad_dimension.status_code, naive.status_code) == (422, 422)
    assert [v["response_id"] for v in verbatims.json()] == ["r-7"]
