"""The learned risk combiner (pure): the backtest, its guards and how scoring uses it."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pytest

from services.engagement.churn import calibration
from services.engagement.churn.calibration import Combiner
from services.engagement.churn.risk import History, Population, score
from services.engagement.churn.settings import ChurnSettings
from services.engagement.churn.stats import PurchaseRow, compute_stats
from services.engagement.scoring import BgNbdParams, p_no_purchase_within

END = date(2025, 6, 30)
START = date(2025, 1, 1)


def purchases(histories: dict[str, list[date]]) -> tuple[np.ndarray, np.ndarray]:
    ids = [c for c, days in histories.items() for _ in days]
    days = [d.toordinal() for c_days in histories.values() for d in c_days]
    return np.array(ids, dtype=object), np.array(days, dtype=np.float64)


def learn(histories: dict[str, list[date]], end: date = END, **overrides: int) -> Combiner | None:
    ids, days = purchases(histories)
    options = {"horizon_days": 60, "min_gaps": 3, "min_customers": 20} | overrides
    return calibration.learn(ids, days, end, percentile=90.0, **options)


def simulated(n: int, seed: int, *, loyal_return: bool) -> dict[str, list[date]]:
    """Customers whose first purchase falls in the first 90 days. With ``loyal_return``
    every repeat buyer buys again every 20 days and one-time buyers never return; without
    it, purchases follow a BG/NBD-like process (gamma rates, beta dropout)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[date]] = {}
    for i in range(n):
        day = START + timedelta(days=int(rng.integers(0, 90)))
        days = [day]
        if loyal_return:
            if i % 2:
                while (day := day + timedelta(days=20)) <= END:
                    days.append(day)
        else:
            rate, dropout = rng.gamma(0.8, 1 / 20.0), rng.beta(1.0, 3.0)
            while rng.random() >= dropout:
                day += timedelta(days=1 + int(rng.exponential(1 / rate)))
                if day > END:
                    break
                days.append(day)
        out[f"c{i}"] = days
    return out


def test_backtest_window_is_the_horizon_or_half_the_history() -> None:
    first = START.toordinal()
    assert calibration.backtest_days(first, first + 400, 90) == 90
    assert calibration.backtest_days(first, first + 100, 90) == 50
    assert calibration.backtest_days(first, first + 101, 90) == 50


def test_learns_what_actually_happened() -> None:
    """One-time buyers never come back, repeat buyers always do: whatever the model says,
    the weight on repeat purchases must turn strongly towards "not silent"."""
    combiner = learn(simulated(200, 1, loyal_return=True))
    assert combiner is not None
    assert combiner.repeat < -1.0
    assert combiner.auc > 0.95
    assert combiner.auc >= combiner.model_auc
    assert combiner.as_of == END - timedelta(days=60)
    assert combiner.days == 60
    assert combiner.customers == 200
    assert 0.0 < combiner.silent_share < 1.0


def test_on_a_model_world_the_model_keeps_its_weight() -> None:
    combiner = learn(simulated(600, 2, loyal_return=False))
    assert combiner is not None
    assert combiner.model > 0.3
    assert combiner.auc >= combiner.model_auc - 0.01


def test_nothing_after_the_calibration_end_is_used() -> None:
    histories = simulated(200, 3, loyal_return=False)
    later = {c: [*days, END + timedelta(days=5)] for c, days in histories.items()}
    assert learn(histories) == learn(later)


def test_no_combiner_without_enough_history_or_outcomes() -> None:
    histories = simulated(200, 4, loyal_return=True)
    assert learn(histories, min_customers=201) is None
    short = {c: [START] for c in histories}  # a single day of history
    assert learn(short, end=START + timedelta(days=20)) is None
    everyone_silent = {c: days[:1] for c, days in histories.items()}
    assert learn(everyone_silent) is None
    ids, days = purchases({})
    assert (
        calibration.learn(
            ids, days, END, horizon_days=60, percentile=90.0, min_gaps=3, min_customers=1
        )
        is None
    )


def test_gap_percentiles_agree_with_the_statistics_consumer() -> None:
    histories = simulated(60, 5, loyal_return=False)
    ids, days = purchases(histories)
    names = np.array(sorted(histories), dtype=object)
    codes = np.searchsorted(names, ids)
    count, p90 = calibration._gaps(np.arange(names.size), codes, days, 90.0)
    for i, name in enumerate(names):
        rows = [
            PurchaseRow(f"{name}-{k}", d, Decimal(1), "EUR", Decimal(0))
            for k, d in enumerate(histories[name])
        ]
        stats = compute_stats(rows, 90.0)
        assert count[i] == stats.gap_count
        if stats.gap_p90_days is None:
            assert np.isnan(p90[i])
        else:
            assert p90[i] == pytest.approx(stats.gap_p90_days)


def test_json_round_trip() -> None:
    combiner = learn(simulated(200, 6, loyal_return=True))
    assert combiner is not None
    assert Combiner.from_json(combiner.to_json()) == combiner


def history(**overrides: object) -> History:
    values: dict[str, object] = {
        "first_day": date(2025, 1, 1),
        "last_day": date(2025, 3, 1),
        "repeat_purchases": 4,
        "repeat_average_value": 20.0,
        "currency": "EUR",
        "gap_count": 4,
        "gap_median_days": 12.0,
        "gap_p90_days": 15.0,
        "detractor_day": None,
        "detractor_score": None,
        "open_complaints": 0,
    }
    return History(**(values | overrides))  # type: ignore[arg-type]


COMBINER = Combiner(
    intercept=0.5,
    model=1.0,
    repeat=-1.0,
    cadence=0.8,
    as_of=date(2025, 4, 1),
    days=90,
    customers=100,
    silent_share=0.6,
    auc=0.8,
    model_auc=0.75,
)
PARAMS = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


def test_scoring_goes_through_the_combiner_and_feedback_still_adds() -> None:
    population = Population(1, PARAMS, None, None, COMBINER)
    config = ChurnSettings()
    plain, unhappy = score(
        population,
        [history(), history(detractor_day=date(2025, 5, 1), detractor_score=2)],
        date(2025, 6, 1),
        config,
    )
    x = np.array([4.0])
    t_x = np.array([(date(2025, 3, 1) - date(2025, 1, 1)).days / 7])
    T = np.array([(date(2025, 6, 1) - date(2025, 1, 1)).days / 7])
    silent = p_no_purchase_within(PARAMS, config.horizon_days / 7, x, t_x, T)
    expected = COMBINER.risk(silent, x, np.array([1.0]))  # 92 days since, p90 15: overdue
    assert plain.risk == pytest.approx(float(expected[0]))
    assert unhappy.risk == pytest.approx(1 - (1 - plain.risk) * (1 - config.detractor_weight))
    assert plain.reasons[1] == "usually buys every 12 days; 92 days since the last purchase"
    assert unhappy.reasons[-1] == "gave a detractor NPS score (2)"


def test_calibration_off_ignores_a_stored_combiner() -> None:
    with_combiner = Population(1, PARAMS, None, None, COMBINER)
    without = Population(1, PARAMS, None, None, None)
    off = ChurnSettings(calibrate=False)
    [a] = score(with_combiner, [history()], date(2025, 6, 1), off)
    [b] = score(without, [history()], date(2025, 6, 1), off)
    [c] = score(with_combiner, [history()], date(2025, 6, 1), ChurnSettings())
    assert a == b
    assert c.risk != a.risk


def test_being_overdue_never_lowers_risk() -> None:
    """Regular buyers who pause and then come back would teach a negative cadence weight;
    it is held at zero, so an overdue regular is still flagged."""
    histories: dict[str, list[date]] = {}
    for i in range(60):
        start = START + timedelta(days=i % 10)
        if i % 2:
            early = [start + timedelta(days=10 * k) for k in range(8)]  # every 10 days
            histories[f"c{i}"] = early + [END - timedelta(days=k) for k in (30, 20)]
        else:
            histories[f"c{i}"] = [start]
    combiner = learn(histories)
    assert combiner is not None
    assert combiner.cadence == 0.0
    assert combiner.model >= 0.0
