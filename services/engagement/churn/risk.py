"""Churn risk, band, reasons and CLV for many customers at once (pure, vectorised).

Risk combines independent signals as a noisy-or, ``1 - prod(1 - s_i)``:

* the population model: P(no purchase within the horizon | x, t_x, T) from BG/NBD;
* the customer's own cadence: with at least ``cadence_min_gaps`` gaps between purchase days,
  a gap since the last purchase beyond their ``cadence_percentile`` gap adds up to
  ``cadence_weight`` (in full once the gap is twice that percentile);
* feedback: a detractor NPS answer in the last ``detractor_memory_days`` adds
  ``detractor_weight``; any open complaint adds ``complaint_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
import numpy.typing as npt

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
    return [
        _one(h, float(s), float(a), float(e), v, int(d), today, config)
        for h, s, a, e, v, d in zip(histories, silent, alive, expected, values, since, strict=True)
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
    silent: float,
    alive: float,
    expected: float,
    value: Decimal | None,
    since: int,
    today: int,
    config: ChurnSettings,
) -> Score:
    reasons = [
        f"{silent:.0%} chance of no purchase in the next {config.horizon_days} days "
        f"(buy-till-you-die model; P(alive) {alive:.0%})"
    ]
    keep = 1.0 - silent
    for signal, reason in _other_signals(h, since, today, config):
        keep *= 1.0 - signal
        reasons.append(reason)
    risk = min(1.0, max(0.0, 1.0 - keep))
    return Score(risk, band_of(risk, config), reasons, alive, expected, value)


def _other_signals(
    h: History, since: int, today: int, config: ChurnSettings
) -> list[tuple[float, str]]:
    found = []
    p90 = h.gap_p90_days
    if h.gap_count >= config.cadence_min_gaps and p90 is not None and since > p90:
        overdue = min(1.0, since / max(p90, 1.0) - 1.0)
        usual = h.gap_median_days or p90
        found.append(
            (
                config.cadence_weight * overdue,
                f"usually buys every {usual:g} days; {since} days since the last purchase",
            )
        )
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
