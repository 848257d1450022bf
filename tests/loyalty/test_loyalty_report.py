"""GET /v1/reports/loyalty against a fixed generated history.

The history is generated from a seed and driven in event-time order (timers fired
up to each event's time, as a running service would). The expected figures are
computed here from what the test generated and from the published events and the
ledger rows read back in Python, never by the report's SQL.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.loyalty.service import members, redemption
from services.loyalty.service.errors import InsufficientPoints
from tests.helpers import auth_headers
from tests.loyalty.support import FakeClock, Loyalty, purchase, refund

pytestmark = pytest.mark.db

REPORTS = auth_headers("reports:read")
START = datetime(2025, 1, 1, tzinfo=UTC)
TIERS = [
    {"name": "Member", "threshold": 0},
    {"name": "Silver", "threshold": 300},
    {"name": "Gold", "threshold": 900},
]
COST = 50


def month(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m")


@dataclass
class History:
    """What the test did, kept to compute the expected report independently."""

    purchases: list[tuple[datetime, str, int]] = field(default_factory=list)
    issued: list[tuple[datetime, int]] = field(default_factory=list)
    reversed: list[tuple[datetime, int]] = field(default_factory=list)
    redeemed: list[tuple[datetime, int]] = field(default_factory=list)
    adjusted: list[tuple[datetime, int]] = field(default_factory=list)


def by_month(items: list[tuple[datetime, int]], start: datetime, end: datetime) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for when, points in items:
        if start <= when < end:
            sums[month(when)] += points
    return sums


def plan(rng: random.Random) -> list[tuple[datetime, str, dict[str, Any]]]:
    """A seeded mix of purchases, refunds, redemptions, cancellations and adjustments."""
    people = [f"m{i:02d}" for i in range(10)]
    steps: list[tuple[datetime, str, dict[str, Any]]] = []
    for n in range(120):
        when = START + timedelta(days=rng.uniform(0, 440), seconds=n)
        amount = rng.randint(5, 120)
        steps.append((when, "purchase", {"c": rng.choice(people), "amount": amount, "id": n}))
        if n % 5 == 0:
            later = when + timedelta(days=rng.uniform(1, 20))
            steps.append((later, "refund", {"purchase": n, "amount": rng.randint(1, amount)}))
    for n in range(25):
        when = START + timedelta(days=rng.uniform(30, 440), seconds=n)
        steps.append((when, "redeem", {"c": rng.choice(people), "cancel": n % 6 == 0}))
    for n in range(6):
        when = START + timedelta(days=rng.uniform(0, 440), seconds=n)
        steps.append((when, "adjust", {"c": rng.choice(people), "points": rng.randint(1, 40)}))
    # the last evening of March in New York is already April in UTC
    evening = datetime(2025, 3, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    steps.append((evening, "purchase", {"c": "m00", "amount": 77, "id": 999}))
    return sorted(steps, key=lambda s: s[0])


async def drive(loyalty: Loyalty, steps: list[tuple[datetime, str, dict[str, Any]]]) -> History:
    history = History()
    bought: dict[int, tuple[str, str, int]] = {}
    clock = FakeClock(START)
    scheduler = loyalty.scheduler(clock)
    for when, kind, data in steps:
        clock.now = when
        while await scheduler.fire_due():
            pass
        if kind == "purchase":
            pid = f"p-{data['id']}"
            bought[data["id"]] = (data["c"], pid, data["amount"])
            await loyalty.handle(
                purchase(data["c"], str(data["amount"]), purchase_id=pid, when=when)
            )
            history.purchases.append((when, data["c"], data["amount"]))
            history.issued.append((when, data["amount"]))
        elif kind == "refund":
            customer, pid, _ = bought[data["purchase"]]
            await loyalty.handle(refund(customer, pid, str(data["amount"]), when=when))
            history.reversed.append((when, data["amount"]))  # 1 point per unit, whole units
        elif kind == "redeem":
            await _redeem(loyalty, history, data, when)
        else:
            async with loyalty.db.unit_of_work() as session:
                await members.adjust(
                    session,
                    customer_id=data["c"],
                    points=data["points"],
                    reason="goodwill",
                    reference=uuid.uuid4().hex,
                    operator="ops",
                    now=when,
                    settings=loyalty.settings,
                )
            history.adjusted.append((when, data["points"]))
    return history


async def _redeem(loyalty: Loyalty, history: History, data: dict[str, Any], when: datetime) -> None:
    try:
        made = await loyalty.redeem(data["c"], "voucher", now=when)
    except InsufficientPoints:
        return
    history.redeemed.append((when, COST))
    if data["cancel"]:
        later = when + timedelta(hours=2)
        async with loyalty.db.unit_of_work() as session:
            await redemption.cancel(
                session,
                customer_id=data["c"],
                redemption_id=made.id,
                operator="ops",
                now=later,
                settings=loyalty.settings,
            )
        history.redeemed.append((later, -COST))


async def tiers_over_time(loyalty: Loyalty) -> dict[str, list[tuple[datetime, str, str]]]:
    changes: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for event in await loyalty.published("tier.changed"):
        at = datetime.fromisoformat(event["time"])
        changes[event["subject"]].append(
            (at, event["data"]["new_tier"], event["data"]["direction"])
        )
    return changes


def tier_before(changes: list[tuple[datetime, str, str]], when: datetime) -> str:
    held = [tier for at, tier, _ in changes if at < when]
    return held[-1] if held else "Member"


@pytest.fixture
async def generated(loyalty: Loyalty) -> tuple[Loyalty, History]:
    await loyalty.publish_rules(
        tiers=TIERS,
        tier_policy={"basis": "earned", "window_days": 120, "downgrade": "window_end"},
        expiry_days=150,
    )
    await loyalty.add_reward("voucher", COST)
    history = await drive(loyalty, plan(random.Random(20251)))
    scheduler = loyalty.scheduler(FakeClock(datetime.now(UTC) + timedelta(minutes=5)))
    while await scheduler.fire_due():  # up to today, so the app's own scheduler finds nothing
        pass
    return loyalty, history


@pytest.fixture
async def reporting(
    generated: tuple[Loyalty, History], api: httpx.AsyncClient
) -> tuple[Loyalty, History, httpx.AsyncClient]:
    """The app starts (with its wall-clock scheduler) only once the history is written."""
    return (*generated, api)


async def test_the_report_adds_up_to_the_generated_history(
    reporting: tuple[Loyalty, History, httpx.AsyncClient],
) -> None:
    loyalty, history, api = reporting
    response = await api.get("/v1/reports/loyalty?from=2025-03-01&to=2026-03-15", headers=REPORTS)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["report"], report["from"], report["to"]) == (
        "loyalty",
        "2025-03-01",
        "2026-03-15",
    )
    months = [
        f"{y}-{m:02d}"
        for y, m in [(2025, m) for m in range(3, 13)] + [(2026, 1), (2026, 2), (2026, 3)]
    ]
    assert [row["month"] for row in report["months"]] == months
    ends = datetime(2026, 3, 15, tzinfo=UTC)
    expired: dict[str, int] = defaultdict(int)
    for customer in {c for _, c, _ in history.purchases}:
        for entry in await loyalty.entries(customer):
            if entry.kind == "expire" and entry.occurred_at < ends:
                expired[month(entry.occurred_at)] -= entry.points
    starts = datetime(2025, 3, 1, tzinfo=UTC)
    columns = {
        name: by_month(getattr(history, name), starts, ends)
        for name in ("issued", "reversed", "redeemed", "adjusted")
    }
    for row in report["months"]:
        m = row["month"]
        for name, sums in columns.items():
            assert row[name] == sums.get(m, 0), (m, name)
        assert row["expired"] == expired.get(m, 0), m
    april = [p for w, c, p in history.purchases if month(w) == "2025-04"]
    assert 77 in april  # the New York evening counts in April
    assert report["months"][1]["issued"] == sum(april)
    assert sum(r["expired"] for r in report["months"]) > 0
    assert sum(r["redeemed"] for r in report["months"]) > 0

    changes = await tiers_over_time(loyalty)
    moves: dict[tuple[str, str], int] = defaultdict(int)
    for customer_changes in changes.values():
        for at, _, direction in customer_changes:
            if starts <= at < ends:
                moves[(month(at), direction)] += 1
    assert [(r["upgrades"], r["downgrades"]) for r in report["tier_movements"]] == [
        (moves[(m, "up")], moves[(m, "down")]) for m in months
    ]
    assert sum(moves.values()) > 0
    assert any(d == "down" for _, d in moves)

    revenue: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for when, customer, amount in history.purchases:
        if starts <= when < ends:
            tier = tier_before(changes.get(customer, []), when)
            revenue[tier][0] += 1
            revenue[tier][1] += amount
    expected = [
        {"tier": t, "orders": revenue[t][0], "revenue": f"{revenue[t][1]}.00", "currency": "EUR"}
        for t in ("Member", "Silver", "Gold")
        if t in revenue
    ]
    assert report["revenue_by_tier"] == expected

    now = {c: tier_before(ch, datetime.max.replace(tzinfo=UTC)) for c, ch in changes.items()}
    people = {c for _, c, _ in history.purchases}
    counts = {
        t: sum(1 for c in people if now.get(c, "Member") == t) for t in ("Member", "Silver", "Gold")
    }
    assert report["tiers"] == [{"tier": t, "members": n} for t, n in counts.items()]

    balances = [sum(e.points for e in await loyalty.entries(c)) for c in people]
    owed = sum(b for b in balances if b > 0)
    assert report["liability"]["points"] == owed
    assert report["liability"]["value"] == str(
        (Decimal(owed) * Decimal("0.01")).quantize(Decimal("0.01"))
    )
    assert report["liability"]["currency"] == "EUR"

    everything = await api.get("/v1/reports/loyalty?from=2024-01-01&to=2027-01-01", headers=REPORTS)
    all_time = everything.json()
    assert len(all_time["months"]) == 36
    net = sum(
        r["issued"] - r["redeemed"] - r["expired"] - r["reversed"] + r["adjusted"]
        for r in all_time["months"]
    )
    assert net == sum(balances)  # every point issued is still held or accounted for
    assert sum(r["orders"] for r in all_time["revenue_by_tier"]) == len(history.purchases)


async def test_an_empty_range_has_every_month_with_zeros(api: httpx.AsyncClient) -> None:
    report = (
        await api.get("/v1/reports/loyalty?from=2020-11-15&to=2021-02-01", headers=REPORTS)
    ).json()
    assert report["months"] == [
        {"month": m, "issued": 0, "redeemed": 0, "expired": 0, "reversed": 0, "adjusted": 0}
        for m in ("2020-11", "2020-12", "2021-01")
    ]
    assert [r["month"] for r in report["tier_movements"]] == ["2020-11", "2020-12", "2021-01"]
    assert report["revenue_by_tier"] == []
    assert report["tiers"] == []
    assert report["liability"]["points"] == 0
    assert report["liability"]["value"] == "0.00"


async def test_the_default_range_is_the_last_twelve_months_and_this_one(
    api: httpx.AsyncClient,
) -> None:
    report = (await api.get("/v1/reports/loyalty", headers=REPORTS)).json()
    today = datetime.now(UTC).date()
    assert len(report["months"]) == 13
    assert report["months"][-1]["month"] == today.strftime("%Y-%m")
    assert report["from"].endswith("-01")
    assert report["to"].endswith("-01")
    generated = datetime.fromisoformat(report["generated_at"])
    assert abs(generated - datetime.now(UTC)) < timedelta(minutes=1)
    assert report["liability"]["as_of"] == report["generated_at"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2025-03-01&to=2025-03-01", "must be before"),
        ("from=2025-03-02&to=2025-03-01", "must be before"),
        ("from=2010-01-01&to=2025-01-01", "at most 10 years"),
    ],
)
async def test_a_bad_range_is_a_clear_422(api: httpx.AsyncClient, query: str, message: str) -> None:
    response = await api.get(f"/v1/reports/loyalty?{query}", headers=REPORTS)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


async def test_the_report_needs_the_reports_scope(api: httpx.AsyncClient) -> None:
    assert (
        await api.get("/v1/reports/loyalty", headers=auth_headers("loyalty:read"))
    ).status_code == 403
    assert (await api.get("/v1/reports/loyalty?from=junk", headers=REPORTS)).status_code == 422
