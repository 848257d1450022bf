"""The value and engagement reports against figures computed here from the stored rows."""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest

from services.engagement.churn.models import ChurnBandChange, ChurnCustomer, ChurnModel
from services.engagement.models import SENT, SUPPRESSED, Conversion, Outreach
from shared.db import Database
from tests.engagement.reports.support import Bought, history, store
from tests.helpers import auth_headers

pytestmark = pytest.mark.db

READ = auth_headers("reports:read")
RANGE = "from=2025-03-01&to=2026-01-01"


async def scored(db: Database, clvs: dict[str, tuple[float, str, Decimal | None]]) -> None:
    """Customers with (risk, band, clv) and a model in EUR."""
    async with db.unit_of_work() as session:
        session.add(
            ChurnModel(
                calibration_end=date(2025, 12, 31),
                r=1,
                alpha=1,
                a=1,
                b=1,
                log_likelihood=0,
                n_customers=len(clvs),
                converged=True,
                fit_seconds=0.1,
                currency="EUR",
            )
        )
        for customer_id, (risk, band, clv) in clvs.items():
            session.add(
                ChurnCustomer(
                    customer_id=customer_id,
                    currency="EUR",
                    risk=risk,
                    band=band,
                    clv=clv,
                    reasons=[f"reason of {customer_id}"],
                )
            )


async def test_clv_distribution_and_order_figures(db: Database, client: httpx.AsyncClient) -> None:
    rows = history()
    await store(db, rows)
    clvs: dict[str, tuple[float, str, Decimal | None]] = {
        f"c{i}": (0.1, "low", Decimal(i * 7 % 300) + Decimal("0.5")) for i in range(41)
    }
    clvs["unscored"] = (0.2, "low", None)
    await scored(db, clvs)
    response = await client.get(f"/v1/reports/value?{RANGE}", headers=READ)
    assert response.status_code == 200, response.text
    body = response.json()
    values = [v for _, _, v in clvs.values() if v is not None]
    clv = body["clv"]
    assert (clv["currency"], clv["customers"]) == ("EUR", 41)
    assert Decimal(clv["total"]) == sum(values, Decimal(0))
    assert Decimal(clv["median"]) == Decimal(statistics.median(values)).quantize(Decimal("0.01"))
    mean = sum(values, Decimal(0)) / len(values)
    assert Decimal(clv["mean"]) == mean.quantize(Decimal("0.01"))
    buckets = clv["buckets"]
    assert sum(b["customers"] for b in buckets) == 41
    for b in buckets:
        inside = [v for v in values if Decimal(b["lower"]) <= v < Decimal(b["upper"])]
        assert b["customers"] == len(inside), b
    assert Decimal(buckets[-1]["upper"]) > max(values)
    kept = [r for r in rows if r.kept and date(2025, 3, 1) <= r.at.date() < date(2026, 1, 1)]
    revenue = sum((r.amount - r.refunded for r in kept), Decimal(0))
    assert Decimal(body["aov"]["amount"]) == (revenue / len(kept)).quantize(Decimal("0.01"))
    assert body["customers"] == len({r.customer_id for r in kept})
    assert body["purchase_frequency"] == pytest.approx(len(kept) / body["customers"])


def message(customer_id: str, journey: str, status: str, at: datetime) -> Outreach:
    return Outreach(
        id=str(uuid.uuid4()),
        customer_id=customer_id,
        journey=journey,
        channel="email",
        template=journey,
        dedupe_key=str(uuid.uuid4()),
        status=status,
        context={},
        due_at=at,
        sent_at=at if status == SENT else None,
    )


async def test_at_risk_counts_won_back_and_the_top_customers(
    db: Database, client: httpx.AsyncClient
) -> None:
    rows = [
        Bought("won", "won-1", datetime(2025, 3, 5, tzinfo=UTC), Decimal(30), Decimal(0)),
        Bought("won", "won-2", datetime(2025, 7, 2, tzinfo=UTC), Decimal(30), Decimal(0)),
        Bought("lost", "lost-1", datetime(2025, 3, 5, tzinfo=UTC), Decimal(30), Decimal(0)),
        Bought("refunder", "ref-1", datetime(2025, 7, 3, tzinfo=UTC), Decimal(9), Decimal(9)),
    ]
    await store(db, rows)
    await scored(
        db,
        {
            "won": (0.3, "low", Decimal(100)),
            "lost": (0.9, "high", Decimal(50)),
            "refunder": (0.8, "high", Decimal(400)),
            "cheap": (0.99, "high", None),
        },
    )
    entered = datetime(2025, 6, 1, tzinfo=UTC)
    async with db.unit_of_work() as session:
        for customer_id in ("won", "lost", "refunder"):
            session.add(
                ChurnBandChange(
                    customer_id=customer_id, band="high", previous_band="low", changed_at=entered
                )
            )
        session.add(
            ChurnBandChange(
                customer_id="cheap",
                band="high",
                previous_band="low",
                changed_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
        )
        sent = message("won", "win_back", SENT, datetime(2025, 6, 2, tzinfo=UTC))
        session.add_all(
            [sent, message("lost", "win_back", SUPPRESSED, datetime(2025, 6, 2, tzinfo=UTC))]
        )
        session.add(
            Conversion(
                purchase_key="won-2",
                outreach_id=sent.id,
                customer_id="won",
                purchased_at=rows[1].at,
            )
        )
    body = (await client.get(f"/v1/reports/engagement?{RANGE}", headers=READ)).json()
    assert body["at_risk"] == {"high_now": 3, "entered_high": 3, "won_back": 1}
    assert [c["customer_id"] for c in body["at_risk_customers"]] == ["refunder", "lost", "cheap"]
    top = body["at_risk_customers"][0]
    assert (top["clv"], top["band"], top["reasons"]) == ("400.00", "high", ["reason of refunder"])
    assert top["last_purchase_at"].startswith("2025-07-03T00:00:00")
    assert body["journeys"] == [
        {
            "journey": "win_back",
            "channel": "email",
            "sent": 1,
            "suppressed": 1,
            "failed": 0,
            "conversions": 1,
        }
    ]
