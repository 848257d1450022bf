"""Fitting, scoring, reasons and band-change events against the real database."""

from __future__ import annotations

import asyncio
import threading
from datetime import date, timedelta
from typing import Any

import pytest

from services.engagement.churn import fitting, risk, scores
from services.engagement.churn.models import ChurnModel
from shared.db import Database
from shared.events.feedback import (
    ComplaintOpened,
    ComplaintOpenedData,
    ComplaintResolved,
    ComplaintResolvedData,
    ResponseRecorded,
    ResponseRecordedData,
)
from tests.engagement.churn.support import (
    CONFIG,
    Clock,
    at,
    band_changes,
    bought,
    customer,
    customers,
    every,
    handle,
    population_events,
)

pytestmark = pytest.mark.db

START = date(2025, 1, 6)
FIT_DAY = date(2025, 6, 30)
RANK = {"low": 0, "medium": 1, "high": 2}


async def fit(db: Database, end: date = FIT_DAY) -> ChurnModel:
    async with db.unit_of_work() as session:
        return await fitting.refit(session, calibration_end=end, config=CONFIG)


async def rescore(db: Database, day: date) -> int:
    async with db.unit_of_work() as session:
        return await scores.rescore_all(session, config=CONFIG, now=at(day))


async def test_refit_stores_parameters_and_ignores_later_purchases(db: Database) -> None:
    await handle(db, *population_events(), batch=50)
    early = await fit(db, date(2025, 3, 1))
    full = await fit(db)
    assert (early.n_customers, full.n_customers) == (32, 40)  # 32 had bought by 1 March
    for model in (early, full):
        assert min(model.r, model.alpha, model.a, model.b) > 0
        assert model.log_likelihood < 0
        assert model.spend is not None
        assert model.spend["n_customers"] > 0
    assert full.currency == "EUR"
    async with db.unit_of_work() as session:
        assert (await scores.current_model(session)).id == full.id  # type: ignore[union-attr]


async def test_too_few_customers_is_a_clear_conflict(db: Database) -> None:
    await handle(db, bought("only", START))
    with pytest.raises(fitting.NotEnoughData, match="1 customers"):
        await fit(db)


async def test_purchases_only_on_the_calibration_day_fit_nothing(db: Database) -> None:
    """Each customer's likelihood is 1 whatever the parameters: the optimiser's starting
    point would be stored as a converged model and score everyone."""
    await handle(db, *(bought(f"day-one-{n}", FIT_DAY) for n in range(10)))
    with pytest.raises(fitting.NotEnoughData, match="from that day"):
        await fit(db)
    await handle(db, *(bought(f"day-one-{n}", FIT_DAY + timedelta(days=1)) for n in range(10)))
    model = await fit(db, FIT_DAY + timedelta(days=1))  # a day later there is something to fit
    assert model.n_customers == 10
    assert model.log_likelihood != 0.0  # a flat likelihood is 0 (log 1) everywhere


async def test_band_change_is_published_once_and_not_on_every_rescore(db: Database) -> None:
    await handle(db, *population_events(), batch=50)
    await fit(db)
    first_changes = await rescore(db, FIT_DAY)
    rows = await customers(db)
    assert {r.band for r in rows.values()} >= {"low", "high"}
    not_low = sorted(c for c, r in rows.items() if r.band != "low")
    first = await band_changes(db)
    assert first_changes == len(first) == len(not_low)  # unscored counts as "low"
    assert sorted(e.subject for e in first) == not_low
    assert all(e.data.previous_band == "low" for e in first)
    assert await rescore(db, FIT_DAY + timedelta(days=1)) == 0
    assert len(await band_changes(db)) == len(first)
    later = FIT_DAY + timedelta(days=400)
    changed = await rescore(db, later)
    events = (await band_changes(db))[len(first) :]
    assert changed == len(events) > 0
    rows = await customers(db)
    for event in events:
        assert event.data.band == rows[event.subject].band
        assert RANK[event.data.band] > RANK[event.data.previous_band or "low"]  # silence: risk rose
        assert event.time == at(later)
        assert event.data.clv is not None
        assert event.data.currency == "EUR"


async def test_a_regular_buyer_who_stops_is_flagged_in_words(db: Database) -> None:
    await handle(db, *population_events(), batch=50)
    await fit(db)
    regular = every(range(0, 12 * 8, 12), date(2025, 3, 3))  # 8 purchases, every 12 days
    await handle(db, *(bought("reg", d, "25.00") for d in regular))
    last = regular[-1]
    await rescore(db, last + timedelta(days=5))
    on_time = await customer(db, "reg")
    await rescore(db, last + timedelta(days=41))
    late = await customer(db, "reg")
    assert on_time is not None
    assert late is not None
    assert not any("usually buys" in r for r in on_time.reasons)
    assert "usually buys every 12 days; 41 days since the last purchase" in late.reasons
    assert late.risk is not None
    assert on_time.risk is not None
    assert late.risk > on_time.risk
    assert on_time.band == "low"
    model_alone = 1 - (1 - late.risk) / (1 - CONFIG.cadence_weight)  # overdue in full: 41 > 24
    assert model_alone < CONFIG.medium_threshold  # the population model alone says "low"...
    assert late.band == "medium"  # ...the customer's own cadence flags them


def nps(customer_id: str, day: date, score: int) -> ResponseRecorded:
    category = "detractor" if score <= 6 else "promoter" if score >= 9 else "passive"
    return ResponseRecorded.create(
        subject=customer_id,
        source="keepwell/feedback",
        time=at(day),
        data=ResponseRecordedData(
            response_id=f"r-{customer_id}-{day}",
            survey_id="nps",
            kind="nps",
            score=score,
            category=category,
            channel="web",
        ),
    )


def complaint(
    customer_id: str, day: date, *, resolved: bool, case_id: str = "k1"
) -> ComplaintOpened | ComplaintResolved:
    if resolved:
        return ComplaintResolved.create(
            subject=customer_id,
            source="keepwell/feedback",
            time=at(day),
            data=ComplaintResolvedData(case_id=case_id),
        )
    return ComplaintOpened.create(
        subject=customer_id,
        source="keepwell/feedback",
        time=at(day),
        data=ComplaintOpenedData(
            case_id=case_id,
            category="delivery",
            severity="high",
            channel="phone",
            first_response_due=at(day + timedelta(days=1)),
            resolution_due=at(day + timedelta(days=3)),
        ),
    )


async def test_detractor_answer_and_open_complaint_raise_risk(db: Database) -> None:
    await handle(db, *population_events(), batch=50)
    await fit(db)
    days = every((0, 20, 45), date(2025, 5, 1))
    clock = Clock(at(date(2025, 6, 20)))
    for who in ("calm", "upset"):
        purchases = [bought(who, d, "30.00", purchase_id=f"{who}-{d}") for d in days]
        await handle(db, *purchases, clock=clock)
    await handle(
        db,
        nps("upset", date(2025, 6, 18), 2),
        complaint("upset", date(2025, 6, 19), resolved=False),
        clock=clock,
    )
    calm, upset = await customer(db, "calm"), await customer(db, "upset")
    assert calm is not None
    assert upset is not None
    assert calm.risk is not None
    assert upset.risk == pytest.approx(1 - (1 - calm.risk) * 0.7 * 0.8, abs=0.02)
    assert "gave a detractor NPS score (2)" in upset.reasons
    assert "1 open complaint" in upset.reasons
    await handle(
        db,
        complaint("upset", date(2025, 6, 21), resolved=True),
        nps("upset", date(2025, 6, 22), 10),
        clock=clock,
    )
    upset = await customer(db, "upset")
    assert upset is not None
    assert upset.open_complaints == 0
    assert upset.risk == pytest.approx(calm.risk)


async def test_a_purchase_during_a_scheduled_rescore_is_not_overwritten(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-score reads, scores (in a thread, for seconds on a large base) and writes. A
    purchase handled meanwhile must not have its fresher score replaced by one computed
    from the history before it, which would leave a customer who just bought marked
    ``high`` and publish the same change again at the next re-score (counted twice)."""
    day = date(2025, 10, 1)
    await handle(db, *population_events(), batch=50)
    await fit(db)
    await rescore(db, day)
    lapsed = sorted(c for c, row in (await customers(db)).items() if row.band == "high")[0]
    changes_before = len(await band_changes(db))

    scoring, release = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()
    real_score = risk.score  # what scores calls score

    def held_score(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():  # the re-score's
            loop.call_soon_threadsafe(scoring.set)
            release.wait(timeout=30)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(scores, "score", held_score)
    rescoring = asyncio.create_task(rescore(db, day))
    await asyncio.wait_for(scoring.wait(), 30)
    buying = asyncio.create_task(handle(db, bought(lapsed, day), clock=Clock(at(day, 13))))
    await asyncio.sleep(0.5)  # the purchase commits now, or waits for the re-score's rows
    release.set()
    await asyncio.gather(rescoring, buying)
    monkeypatch.setattr(scores, "score", real_score)

    row = await customer(db, lapsed)
    assert row is not None
    assert row.last_day == day
    assert row.band != "high"
    mine = [e for e in (await band_changes(db))[changes_before:] if e.subject == lapsed]
    assert [(e.data.previous_band, e.data.band) for e in mine] == [("high", row.band)]
    await rescore(db, day + timedelta(days=1))  # nothing stale left to correct
    again = [e for e in (await band_changes(db))[changes_before:] if e.subject == lapsed]
    assert again == mine
