"""Proof on real data through Keepwell's own pipeline: CDNOW purchases in, model and scores out.

The 2,357-customer CDNOW sample (tests/engagement/data, see its README for provenance and
licence) goes in as ``purchase.completed`` events through engagement's real churn handlers
into the real database, in batched transactions as the consumer runner would commit them
(the broker path is covered by test_app.py). The model is refitted as of the end of the
39-week calibration period (1997-09-30) and every customer is scored as of that day; the
figures are then checked against Fader, Hardie & Lee (2005) and the 39-week holdout, which
is computed here from the raw file, independently of the pipeline.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pytest

from services.engagement.churn import fitting, scores
from services.engagement.churn.models import ChurnCustomer, ChurnModel
from services.engagement.churn.settings import ChurnSettings
from services.engagement.scoring import BgNbdParams
from shared.db import Database
from shared.events import Money
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from tests.engagement.churn.support import customers, handle
from tests.engagement.test_bgnbd import DATA, auc, numeric_conditional_expectation

pytestmark = pytest.mark.db

CALIBRATION_END = date(1997, 9, 30)
HOLDOUT_END = date(1998, 6, 30)
HORIZON_DAYS = 273  # 39 weeks
PAPER = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
MODEL_ONLY = ChurnSettings(horizon_days=HORIZON_DAYS, cadence_weight=0.0, calibrate=False)
COMBINED = ChurnSettings(horizon_days=HORIZON_DAYS, min_customers_to_fit=20)


def cdnow_rows() -> list[tuple[str, date, str]]:
    rows = []
    for line in (DATA / "CDNOW_sample.txt").read_text().splitlines():
        _, sample_id, day, _, dollars = line.split()
        rows.append(
            (f"cdnow-{sample_id}", date(int(day[:4]), int(day[4:6]), int(day[6:])), dollars)
        )
    return rows


def purchase_events(rows: list[tuple[str, date, str]]) -> list[PurchaseCompleted]:
    return [
        PurchaseCompleted.create(
            subject=customer,
            source="/import/cdnow",
            id=f"cdnow-{i}",
            time=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
            data=PurchaseCompletedData(
                purchase_id=f"cdnow-{i}",
                channel="web",
                total=Money(amount=Decimal(dollars), currency="USD"),
            ),
        )
        for i, (customer, day, dollars) in enumerate(rows)
    ]


def holdout_repeat_days(rows: list[tuple[str, date, str]]) -> dict[str, int]:
    """Distinct purchase days in weeks 40-78 per customer (all first bought in weeks 1-12)."""
    days: dict[str, set[date]] = defaultdict(set)
    for customer, day, _ in rows:
        days[customer]  # every customer appears, with or without holdout purchases
        if CALIBRATION_END < day <= HOLDOUT_END:
            days[customer].add(day)
    return {c: len(d) for c, d in days.items()}


async def score_all(db: Database, config: ChurnSettings) -> dict[str, ChurnCustomer]:
    async with db.unit_of_work() as session:
        await scores.rescore_all(session, config=config, now=datetime(1997, 9, 30, 23, tzinfo=UTC))
    return await customers(db)


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, date, str]]:
    return cdnow_rows()


async def test_cdnow_through_the_pipeline(db: Database, rows, capsys) -> None:
    calibration = [r for r in rows if r[1] <= CALIBRATION_END]
    await handle(db, *purchase_events(calibration), batch=500)
    async with db.unit_of_work() as session:
        model = await fitting.refit(session, calibration_end=CALIBRATION_END, config=COMBINED)
    check_fit(model)

    model_only = await score_all(db, MODEL_ONLY)
    combined = await score_all(db, COMBINED)
    ids = sorted(model_only)
    holdout = holdout_repeat_days(rows)
    silent = np.array([holdout[c] == 0 for c in ids])
    expected = np.array([model_only[c].expected_purchases for c in ids], dtype=float)
    risk_model = np.array([model_only[c].risk for c in ids], dtype=float)
    risk_combined = np.array([combined[c].risk for c in ids], dtype=float)
    recency = np.array(
        [(CALIBRATION_END - _day(model_only[c].last_day)).days for c in ids], dtype=np.float64
    )
    actual = sum(holdout.values())
    aucs = (auc(risk_model, silent), auc(recency, silent), auc(risk_combined, silent))
    with capsys.disabled():
        print(
            f"\nCDNOW via pipeline: r={model.r:.4f} alpha={model.alpha:.4f} a={model.a:.4f} "
            f"b={model.b:.4f} LL={model.log_likelihood:.2f} n={model.n_customers} "
            f"spend={model.spend}\nholdout expected={expected.sum():.1f} actual={actual}\n"
            f"AUC model={aucs[0]:.4f} recency={aucs[1]:.4f} combined={aucs[2]:.4f}\n"
            f"combiner={model.combiner}"
        )
    assert len(ids) == 2357
    assert actual == 1882
    assert abs(expected.sum() / actual - 1.0) < 0.15  # 1,653.4 vs 1,882 (see test_bgnbd)
    check_against_integration(model, model_only, ids)
    assert aucs[0] == pytest.approx(0.757, abs=0.005)
    assert aucs[1] == pytest.approx(0.771, abs=0.005)
    # The combiner learned in a backtest inside the calibration period (nothing after
    # 1997-09-30) beats both: measured 0.7814.
    assert aucs[2] > aucs[1] > aucs[0]
    assert model.combiner is not None
    assert date.fromisoformat(model.combiner["as_of"]) < CALIBRATION_END


def check_fit(model: ChurnModel) -> None:
    assert model.n_customers == 2357
    assert model.converged
    fitted = (model.r, model.alpha, model.a, model.b)
    for ours, published in zip(fitted, PAPER.as_array(), strict=True):
        assert ours == pytest.approx(published, abs=0.01)
    assert model.log_likelihood == pytest.approx(-9582.4, abs=1.0)
    assert model.spend is not None
    assert model.spend["n_customers"] == 946
    for name, published in (("p", 6.25), ("q", 3.74), ("gamma", 15.44)):
        assert model.spend[name] == pytest.approx(published, abs=0.02)


def check_against_integration(
    model: ChurnModel, scored: dict[str, ChurnCustomer], ids: list[str]
) -> None:
    """The stored per-customer expectation equals the paper's integral, evaluated numerically."""
    params = BgNbdParams(r=model.r, alpha=model.alpha, a=model.a, b=model.b)
    by_x = defaultdict(list)
    for c in ids:
        by_x[scored[c].repeat_purchases].append(c)
    picks = [
        ids[0],
        by_x[0][0],
        by_x[1][0],
        by_x[5][0],
        max(ids, key=lambda c: scored[c].repeat_purchases),
    ]
    for c in picks:
        row = scored[c]
        assert row.first_day is not None
        assert row.last_day is not None
        t_x = (row.last_day - row.first_day).days / 7
        T = (CALIBRATION_END - row.first_day).days / 7
        integral = numeric_conditional_expectation(params, 39.0, row.repeat_purchases, t_x, T)
        assert row.expected_purchases == pytest.approx(integral, rel=1e-6)


def _day(value: date | None) -> date:
    assert value is not None, "every CDNOW customer has a last purchase"
    return value
