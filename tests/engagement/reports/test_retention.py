"""The retention report's arithmetic against the same figures computed here from the rows."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date

import httpx
import pytest

from shared.db import Database
from tests.engagement.reports.support import Bought, history, months, shift, store
from tests.helpers import auth_headers

pytestmark = pytest.mark.db

READ = auth_headers("reports:read")
START, END = date(2025, 3, 1), date(2026, 1, 1)


def expected(rows: list[Bought]) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Who bought in each UTC month (refunded-in-full purchases left out), and when first."""
    active: dict[str, set[str]] = defaultdict(set)
    first: dict[str, str] = {}
    for r in rows:
        if r.kept:
            active[r.month].add(r.customer_id)
            first[r.customer_id] = min(first.get(r.customer_id, r.month), r.month)
    return active, first


async def test_monthly_figures_and_cohorts_match_an_independent_count(
    db: Database, client: httpx.AsyncClient
) -> None:
    rows = history()
    await store(db, rows)
    response = await client.get(f"/v1/reports/retention?from={START}&to={END}", headers=READ)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["report"], body["from"], body["to"]) == ("retention", str(START), str(END))
    active, first = expected(rows)
    labels = months(START, END)
    assert [m["month"] for m in body["months"]] == labels
    for got in body["months"]:
        m = got["month"]
        now, before = active[m], active[shift(m, -1)]
        new = {c for c in now if first[c] == m}
        assert got["active"] == len(now), m
        assert got["new"] == len(new), m
        assert got["returning"] == len(now - new), m
        assert got["churned"] == len(before - now), m
        assert got["churn_rate"] == pytest.approx(len(before - now) / len(before)), m
        assert got["retention_rate"] == pytest.approx(len(before & now) / len(before)), m
    assert any(m["churned"] > 0 for m in body["months"])
    for cohort in body["cohorts"]:
        members = {c for c, f in first.items() if f == cohort["cohort"]}
        assert cohort["size"] == len(members)
        span = labels[labels.index(cohort["cohort"]) :]
        want = [
            len(members & active[shift(cohort["cohort"], k)]) / len(members)
            for k in range(len(span))
        ]
        assert (
            cohort["retention"] == pytest.approx(want)
            if members
            else all(v is None for v in cohort["retention"])
        )
    assert body["cohorts"][0]["retention"][0] == 1.0


async def test_repeat_purchase_rate_is_of_new_customers_buying_again_before_the_end(
    db: Database, client: httpx.AsyncClient
) -> None:
    rows = history()
    await store(db, rows)
    body = (await client.get(f"/v1/reports/retention?from={START}&to={END}", headers=READ)).json()
    _, first = expected(rows)
    new = {c for c, m in first.items() if START.isoformat()[:7] <= m < END.isoformat()[:7]}
    per_customer = Counter(r.customer_id for r in rows if r.kept and r.at.date() < END)
    repeaters = sum(1 for c in new if per_customer[c] >= 2)
    assert body["repeat_purchase_rate"] == pytest.approx(repeaters / len(new))
    assert 0 < body["repeat_purchase_rate"] < 1


async def test_empty_months_are_zeros_and_undefined_rates_null(
    db: Database, client: httpx.AsyncClient
) -> None:
    body = (
        await client.get("/v1/reports/retention?from=2020-01-01&to=2020-04-01", headers=READ)
    ).json()
    assert [m["month"] for m in body["months"]] == ["2020-01", "2020-02", "2020-03"]
    assert all(m["active"] == 0 and m["churn_rate"] is None for m in body["months"])
    assert body["repeat_purchase_rate"] is None
    assert body["cohorts"][0] == {"cohort": "2020-01", "size": 0, "retention": [None, None, None]}


async def test_default_range_is_the_last_twelve_whole_months_and_this_one(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/v1/reports/retention", headers=READ)).json()
    assert len(body["months"]) == 13
    today = date.today()
    assert body["months"][-1]["month"] == f"{today.year:04d}-{today.month:02d}"
    assert body["to"] > str(today) >= body["from"]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("from=2025-05-01&to=2025-05-01", "must be before"),
        ("from=2001-01-01&to=2025-01-01", "ten years"),
    ],
)
async def test_bad_ranges_are_422(client: httpx.AsyncClient, query: str, fragment: str) -> None:
    response = await client.get(f"/v1/reports/retention?{query}", headers=READ)
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


async def test_reports_need_the_reports_read_scope(client: httpx.AsyncClient) -> None:
    for name in ("retention", "value", "engagement"):
        response = await client.get(f"/v1/reports/{name}", headers=auth_headers("engagement:read"))
        assert response.status_code == 403
