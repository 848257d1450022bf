"""GET /v1/reports/feedback on a fixed generated history, checked against sums done here."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.feedback import repository
from services.feedback.config import FeedbackSettings
from services.feedback.main import create_app
from services.feedback.models import Complaint, Response, ResponseDay
from services.feedback.repository import reports
from services.feedback.schemas import StaffResponseCreate
from services.feedback.service import responses
from shared.db import Database
from shared.timers import wall_clock
from tests.conftest import TEST_DB
from tests.feedback.support import create_survey
from tests.helpers import auth_headers

pytestmark = pytest.mark.db

NOW = datetime(2026, 5, 31, 20, 0, tzinfo=UTC)  # late-May deadlines still ahead
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
READER = auth_headers("reports:read")
Z = 1.959964


@asynccontextmanager
async def reporting(settings: FeedbackSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    app.dependency_overrides[wall_clock] = lambda: NOW
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


def history() -> tuple[list[Response], list[Complaint]]:
    """Answers and cases spread over Jan-May 2026, none in March, some on the edges."""
    rng = random.Random(20261125)
    answers, cases = [], []
    for i in range(400):
        at = START + timedelta(seconds=rng.randrange(int((END - START).total_seconds())))
        if at.month == 3:
            continue
        nps = rng.choice([None, *range(11), 9, 10, 10]) if i % 5 else None
        csat = rng.choice([None, 1, 2, 3, 4, 5, 5]) if i % 3 else None
        answers.append(response(i, at, nps, csat))
    answers += [
        response(900, datetime(2026, 1, 1, tzinfo=UTC), 10, 5),  # first instant: in
        response(901, datetime(2026, 6, 1, tzinfo=UTC), 0, 1),  # 'to' is exclusive: out
        response(902, datetime(2025, 12, 31, 23, 59, tzinfo=UTC), 0, 1),  # before: out
        # 2026-04-30 23:30 at UTC-1 is 2026-05-01 00:30 UTC: a May answer
        response(903, datetime(2026, 4, 30, 23, 30, tzinfo=timezone(timedelta(hours=-1))), 3, 2),
    ]
    for i in range(120):
        opened = START + timedelta(hours=rng.randrange(24 * 160))
        if opened.month != 3:
            cases.append(complaint(i, opened, rng))
    return answers, cases


def response(i: int, at: datetime, nps: int | None, csat: int | None) -> Response:
    return Response(
        id=f"r-{i}",
        dedupe_key=f"k-{i}",
        survey_id="s-1",
        survey_version=1,
        customer_id=f"c-{i % 37}",
        source="event",
        channel="web",
        nps_score=nps,
        csat_score=csat,
        submitted_at=at,
        updated_at=at,
    )


def complaint(i: int, opened: datetime, rng: random.Random) -> Complaint:
    first_due, resolution_due = opened + timedelta(hours=4), opened + timedelta(hours=24)
    acked = opened + timedelta(hours=rng.choice([1, 3, 5])) if rng.random() < 0.85 else None
    resolved = None
    if acked is not None and rng.random() < 0.8:
        resolved = acked + timedelta(hours=rng.choice([2, 10, 30]))
    if resolved is not None and resolved > NOW:
        resolved = None
    # a breach flag is set when the timer fired; some past deadlines have not fired yet
    timer_fired = rng.random() < 0.5
    late_resolution = resolved is None and resolution_due <= NOW and timer_fired
    late_first = acked is None and first_due <= NOW and timer_fired
    return Complaint(
        id=f"case-{i}",
        customer_id=f"c-{i}",
        category="delivery",
        severity="high",
        channel="chat",
        status="resolved" if resolved else ("acknowledged" if acked else "open"),
        opened_at=opened,
        first_response_due=first_due,
        resolution_due=resolution_due,
        acknowledged_at=acked,
        resolved_at=resolved,
        first_response_breached=late_first or bool(acked and acked > first_due),
        resolution_breached=late_resolution or bool(resolved and resolved > resolution_due),
        reopen_count=0,
    )


async def fill(db: Database) -> tuple[list[Response], list[Complaint]]:
    """The history written as an import would: rows first, then one recount of the days."""
    answers, cases = history()
    async with db.unit_of_work() as session:
        session.add_all([*answers, *cases])
    async with db.unit_of_work() as session:
        await reports.rebuild_response_days(session)
    return answers, cases


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def expected_nps(scores: list[int]) -> tuple[float | None, float | None, float | None]:
    if not scores:
        return None, None, None
    values = [1 if s >= 9 else -1 if s <= 6 else 0 for s in scores]
    nps = 100 * statistics.fmean(values)
    half = 100 * Z * math.sqrt(statistics.pvariance(values) / len(values))
    return nps, max(-100.0, nps - half), min(100.0, nps + half)


def expected_csat(scores: list[int]) -> tuple[float | None, float | None, float | None]:
    """Wilson: the p where (p̂ - p)² = z² p (1 - p) / n, solved as a quadratic."""
    if not scores:
        return None, None, None
    n, share = len(scores), sum(s >= 4 for s in scores) / len(scores)
    a, b, c = 1 + Z * Z / n, -(2 * share + Z * Z / n), share * share
    root = math.sqrt(b * b - 4 * a * c)
    return share, (-b - root) / (2 * a), (-b + root) / (2 * a)


def sla_outcome(case: Complaint) -> bool | None:
    """True met, False missed, None not known yet."""
    first_ok = case.acknowledged_at is not None and case.acknowledged_at <= case.first_response_due
    if case.acknowledged_at is None and case.first_response_due > NOW:
        first_ok = True  # still time
    if case.first_response_breached or case.resolution_breached or not first_ok:
        return False
    if case.resolved_at is None:
        return False if case.resolution_due <= NOW else None
    return case.resolved_at <= case.resolution_due


def expected_figures(answers: list[Response], cases: list[Complaint]) -> dict[str, Any]:
    nps = expected_nps([a.nps_score for a in answers if a.nps_score is not None])
    csat = expected_csat([a.csat_score for a in answers if a.csat_score is not None])
    outcomes = [sla_outcome(c) for c in cases]
    known = [o for o in outcomes if o is not None]
    return {
        "nps": nps,
        "nps_responses": sum(a.nps_score is not None for a in answers),
        "csat": csat,
        "csat_responses": sum(a.csat_score is not None for a in answers),
        "complaints": len(cases),
        "sla_met": sum(o is True for o in outcomes),
        "sla_attainment": sum(known) / len(known) if known else None,
    }


def actual(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "nps": (row["nps"], row["nps_low"], row["nps_high"]),
        "nps_responses": row["nps_responses"],
        "csat": (row["csat"], row["csat_low"], row["csat_high"]),
        "csat_responses": row["csat_responses"],
        "complaints": row["complaints"],
        "sla_met": row["sla_met"],
        "sla_attainment": row["sla_attainment"],
    }


def approx(expected: dict[str, Any]) -> dict[str, Any]:
    def near(value: Any, places: float) -> Any:
        if isinstance(value, tuple):
            return tuple(near(v, places) for v in value)
        return value if value is None else pytest.approx(value, abs=places)

    return {
        **expected,
        "nps": near(expected["nps"], 0.006),
        "csat": near(expected["csat"], 0.00006),
        "sla_attainment": near(expected["sla_attainment"], 0.00006),
    }


async def test_the_monthly_figures_match_an_independent_count(
    db: Database, settings: FeedbackSettings
) -> None:
    answers, cases = await fill(db)
    async with reporting(settings) as client:
        got = await client.get("/v1/reports/feedback?from=2026-01-01&to=2026-06-01", headers=READER)
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["report"], body["from"], body["to"]) == ("feedback", "2026-01-01", "2026-06-01")
    assert datetime.fromisoformat(body["generated_at"]) == NOW
    assert list(body)[:4] == ["report", "from", "to", "generated_at"]
    months = ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"]
    assert [m["month"] for m in body["months"]] == months
    inside = [a for a in answers if START <= a.submitted_at < END]
    for row in body["months"]:
        mine = [a for a in inside if month_of(a.submitted_at) == row["month"]]
        its_cases = [c for c in cases if month_of(c.opened_at) == row["month"]]
        assert actual(row) == approx(expected_figures(mine, its_cases)), row["month"]
    opened = [c for c in cases if START <= c.opened_at < END]
    assert len(opened) < len(cases)  # some June cases stay out
    assert actual(body["overall"]) == approx(expected_figures(inside, opened))
    march = body["months"][2]
    assert (march["nps"], march["csat"], march["sla_attainment"]) == (None, None, None)
    assert (march["nps_responses"], march["complaints"], march["sla_met"]) == (0, 0, 0)
    may = [a for a in inside if a.id == "r-903"]
    assert may
    assert month_of(may[0].submitted_at) == "2026-05"


async def test_a_range_inside_months_counts_only_its_days(
    db: Database, settings: FeedbackSettings
) -> None:
    answers, cases = await fill(db)
    start, end = datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 4, 20, tzinfo=UTC)
    async with reporting(settings) as client:
        got = await client.get("/v1/reports/feedback?from=2026-02-10&to=2026-04-20", headers=READER)
    body = got.json()
    assert [m["month"] for m in body["months"]] == ["2026-02", "2026-03", "2026-04"]
    inside = [a for a in answers if start <= a.submitted_at < end]
    opened = [c for c in cases if start <= c.opened_at < end]
    assert actual(body["overall"]) == approx(expected_figures(inside, opened))


async def test_the_default_range_is_the_last_twelve_months_and_this_one(
    settings: FeedbackSettings,
) -> None:
    async with reporting(settings) as client:
        got = await client.get("/v1/reports/feedback", headers=READER)
    body = got.json()
    assert (body["from"], body["to"]) == ("2025-05-01", "2026-06-01")
    assert len(body["months"]) == 13
    assert body["months"][-1]["month"] == "2026-05"
    assert body["overall"]["nps_responses"] == 0
    assert body["overall"]["nps"] is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-03-01&to=2026-03-01", "'from' (2026-03-01) must be before 'to' (2026-03-01)"),
        ("from=2026-03-01&to=2026-02-01", "must be before"),
        ("from=2010-01-01&to=2020-01-02", "at most 10 years"),
        ("from=2026-13-01", ""),
    ],
)
async def test_a_bad_range_is_422(settings: FeedbackSettings, query: str, message: str) -> None:
    async with reporting(settings) as client:
        got = await client.get(f"/v1/reports/feedback?{query}", headers=READER)
    assert got.status_code == 422
    assert message in got.text


async def test_ten_years_exactly_is_allowed_and_other_scopes_are_refused(
    settings: FeedbackSettings,
) -> None:
    async with reporting(settings) as client:
        ten = await client.get("/v1/reports/feedback?from=2016-02-29&to=2026-02-28", headers=READER)
        staff = await client.get(
            "/v1/reports/feedback", headers=auth_headers("feedback:read", "feedback:write")
        )
    assert ten.status_code == 200
    assert len(ten.json()["months"]) == 121
    assert staff.status_code == 403


async def day_totals(db: Database) -> dict[str, tuple[int, ...]]:
    """response_days summed over shards, per day."""
    async with db.unit_of_work() as session:
        rows = (await session.execute(select(ResponseDay))).scalars().all()
    totals: dict[str, list[int]] = {}
    for r in rows:
        counts = (r.nps_responses, r.promoters, r.detractors, r.csat_responses, r.satisfied)
        found = totals.setdefault(str(r.day), [0] * 5)
        totals[str(r.day)] = [a + b for a, b in zip(found, counts, strict=True)]
    return {day: tuple(v) for day, v in totals.items() if any(v)}


async def test_every_answer_moves_its_day_in_the_roll_up(
    db: Database, settings: FeedbackSettings
) -> None:
    await create_survey(db, "s-nps")
    day_one, day_two = (
        datetime(2026, 3, 2, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 3, 1, 0, tzinfo=UTC),
    )

    async def staff(key: str, score: int, at: datetime) -> None:
        body = StaffResponseCreate.model_validate(
            {
                "customer_id": f"c-{key}",
                "survey_id": "s-nps",
                "answers": {"recommend": score},
                "idempotency_key": key,
            }
        )
        async with db.unit_of_work() as session:
            await responses.submit_by_staff(
                session, body=body, staff="a-1", settings=settings, now=at
            )

    await staff("a", 10, day_one)
    await staff("b", 3, day_one)
    await staff("b", 3, day_one + timedelta(minutes=5))  # the same answer again: nothing
    await staff("b", 8, day_two)  # changed: b moves from detractor to passive, on day one
    await staff("c", 9, day_two)
    # (nps answers, promoters, detractors, csat answers, satisfied)
    expected = {"2026-03-02": (2, 1, 0, 0, 0), "2026-03-03": (1, 1, 0, 0, 0)}
    assert await day_totals(db) == expected
    async with db.unit_of_work() as session:
        await reports.rebuild_response_days(session)
    assert await day_totals(db) == expected
    async with reporting(settings) as client:
        got = await client.get("/v1/reports/feedback?from=2026-03-01&to=2026-04-01", headers=READER)
    [march] = got.json()["months"]
    assert (march["nps_responses"], march["nps"]) == (3, pytest.approx(100 * 2 / 3, abs=0.01))


@pytest.mark.skipif(TEST_DB != "postgres", reason="row locks need PostgreSQL")
async def test_the_same_answer_stored_concurrently_counts_once(
    db: Database, settings: FeedbackSettings
) -> None:
    """Six deliveries of one answer at once, over several answers: each counts once.

    The concurrent inserts may meet on the primary key (derived from the dedupe key)
    before the dedupe key itself; either way the answer is stored once, no error.
    """
    await create_survey(db, "s-nps")
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    rounds = 50

    async def deliver(key: str) -> None:
        body = StaffResponseCreate.model_validate(
            {
                "customer_id": "c-1",
                "survey_id": "s-nps",
                "answers": {"recommend": 2},
                "idempotency_key": key,
            }
        )
        async with db.unit_of_work() as session:
            await responses.submit_by_staff(
                session, body=body, staff="a", settings=settings, now=at
            )

    for n in range(rounds):
        await asyncio.gather(*(deliver(f"call-{n}") for _ in range(6)))
    assert await day_totals(db) == {"2026-03-02": (rounds, 0, rounds, 0, 0)}


async def test_an_insert_meeting_the_primary_key_reads_as_already_stored(db: Database) -> None:
    """What concurrent deliveries race into: the id is taken before the dedupe key is.

    PostgreSQL raises on a conflict outside ON CONFLICT's target, so the insert names
    none; a clash on either unique key means the answer is already there.
    """
    await create_survey(db, "s-nps")
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    row: dict[str, Any] = {
        "id": "r-1",
        "dedupe_key": "staff:one",
        "survey_id": "s-nps",
        "survey_version": 1,
        "customer_id": "c-1",
        "source": "staff",
        "channel": "phone",
        "nps_score": 9,
        "category": "promoter",
        "answers": {"recommend": 9},
        "submitted_at": at,
        "updated_at": at,
    }
    async with db.unit_of_work() as session:
        assert await repository.insert_response(session, row) is True
    async with db.unit_of_work() as session:
        assert (
            await repository.insert_response(session, {**row, "dedupe_key": "staff:two"}) is False
        )
        assert await repository.insert_response(session, {**row, "id": "r-2"}) is False
    async with db.unit_of_work() as session:
        stored = (await session.execute(select(Response))).scalars().all()
    assert [(r.id, r.dedupe_key) for r in stored] == [("r-1", "staff:one")]
