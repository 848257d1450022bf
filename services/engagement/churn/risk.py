"""Churn risk, band, reasons and CLV for many customers at once (pure, vectorised).

Risk combines the signals drawn from purchases with those drawn from feedback:

* the population model: P(no purchase within the horizon | x, t_x, T) from BG/NBD;
* the customer's own cadence: with at least ``cadence_min_gaps`` gaps between purchase days,
  a gap since the last purchase beyond their ``cadence_percentile`` gap is "overdue", from
  0 at that gap to 1 at twice it;
* how often the customer has come back (repeat purchase days).

With a combiner learned at the last refit (``calibration``), those go through its weights;
without one, the model and the cadence combine as a noisy-or, ``1 - (1 - m)(1 - w c)`` with
``w = cadence_weight``. Feedback then adds to either, noisy-or: a detractor NPS answer in
the last ``detractor_memory_days`` adds ``detractor_weight``; any open complaint adds
``complaint_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from services.engagement.churn.calibration import Combiner, overdue
from services.engagement.churn.settings import ChurnSettings
from services.engagement.scoring import (
    BgNbdParams,
    GammaGammaParams,
    clv,
    expected_purchases,
    p_alive,
    p_no_purchase_within,
)

FloatArray = npt.NDArray[np.float64]
WEEK = 7.0


@dataclass(frozen=True)
class Population:
    """What scoring needs of the current fitted model."""

    model_id: int
    bgnbd: BgNbdParams
    spend: GammaGammaParams | None
    currency: str | None
    combiner: Combiner | None = None


@dataclass(frozen=True)
class History:
    """Inputs of one customer, as of the scoring day."""

    first_day: date
    last_day: date
    repeat_purchases: int
    repeat_average_value: float
    currency: str | None
    gap_count: int
    gap_median_days: float | None
    gap_p90_days: float | None
    detractor_day: date | None
    detractor_score: int | None
    open_complaints: int


@dataclass(frozen=True)
class Score:
    risk: float
    band: str
    reasons: list[str]
    p_alive: float
    expected_purchases: float
    clv: Decimal | None


def score(
    population: Population, histories: list[History], as_of: date, config: ChurnSettings
) -> list[Score]:
    if not histories:
        return []
    today = as_of.toordinal()
    first = np.array([h.first_day.toordinal() for h in histories], dtype=np.float64)
    last = np.array([h.last_day.toordinal() for h in histories], dtype=np.float64)
    end = np.maximum(today, last)
    x = np.array([h.repeat_purchases for h in histories], dtype=np.float64)
    t_x, T = (last - first) / WEEK, (end - first) / WEEK
    horizon = config.horizon_days / WEEK
    silent = p_no_purchase_within(population.bgnbd, horizon, x, t_x, T)
    alive = p_alive(population.bgnbd, x, t_x, T)
    expected = expected_purchases(population.bgnbd, horizon, x, t_x, T)
    values = _clv(population, histories, x, t_x, T, config)
    since = end - last
    late = overdue(
        since,
        np.array([h.gap_count for h in histories], dtype=np.float64),
        np.array([np.nan if h.gap_p90_days is None else h.gap_p90_days for h in histories]),
        config.cadence_min_gaps,
    )
    combiner = population.combiner if config.calibrate else None
    if combiner is not None:
        base = combiner.risk(silent, x, late)
    else:
        base = 1.0 - (1.0 - silent) * (1.0 - config.cadence_weight * late)
    return [
        _one(h, float(r), float(s), float(a), float(e), v, float(c), int(d), today, config)
        for h, r, s, a, e, v, c, d in zip(
            histories, base, silent, alive, expected, values, late, since, strict=True
        )
    ]


def _clv(
    population: Population,
    histories: list[History],
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    config: ChurnSettings,
) -> list[Decimal | None]:
    spend = population.spend
    if spend is None or spend.q <= 1.0:
        return [None] * len(histories)
    z = np.array([h.repeat_average_value for h in histories], dtype=np.float64)
    weekly = (1.0 + config.annual_discount_rate) ** (WEEK / 365.25) - 1.0
    values = clv(population.bgnbd, spend, x, t_x, T, z, config.clv_horizon_days / WEEK, weekly)
    return [
        Decimal(f"{v:.2f}") if h.currency == population.currency and np.isfinite(v) else None
        for h, v in zip(histories, values, strict=True)
    ]


def _one(
    h: History,
    base: float,
    silent: float,
    alive: float,
    expected: float,
    value: Decimal | None,
    late: float,
    since: int,
    today: int,
    config: ChurnSettings,
) -> Score:
    reasons = [
        f"{silent:.0%} chance of no purchase in the next {config.horizon_days} days "
        f"(buy-till-you-die model; P(alive) {alive:.0%})"
    ]
    if late > 0.0:
        usual = h.gap_median_days or h.gap_p90_days
        reasons.append(f"usually buys every {usual:g} days; {since} days since the last purchase")
    keep = 1.0 - base
    for signal, reason in _feedback_signals(h, today, config):
        keep *= 1.0 - signal
        reasons.append(reason)
    risk = min(1.0, max(0.0, 1.0 - keep))
    return Score(risk, band_of(risk, config), reasons, alive, expected, value)


def _feedback_signals(h: History, today: int, config: ChurnSettings) -> list[tuple[float, str]]:
    found = []
    memory = config.detractor_memory_days
    if h.detractor_day is not None and today - h.detractor_day.toordinal() <= memory:
        said = f"score ({h.detractor_score})" if h.detractor_score is not None else "answer"
        found.append((config.detractor_weight, f"gave a detractor NPS {said}"))
    if h.open_complaints > 0:
        plural = "s" if h.open_complaints > 1 else ""
        found.append((config.complaint_weight, f"{h.open_complaints} open complaint{plural}"))
    return found


def band_of(risk: float, config: ChurnSettings) -> str:
    if risk >= config.high_threshold:
        return "high"
    return "medium" if risk >= config.medium_threshold else "low"
