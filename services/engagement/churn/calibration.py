"""The combined risk, calibrated on the business's own recent past (pure, vectorised).

BG/NBD ranks customers within a purchase count well, but across counts it is only as
right as its assumptions: on CDNOW it rates a repeat buyer who has been quiet for months
as more likely to stay silent than a one-time buyer, and the data say the opposite. So
at every refit the signals drawn from purchases are weighed against what actually
happened here, in a backtest that looks at nothing after the calibration end:

1. go back ``days`` from the calibration end (the horizon, or half the history if that
   is shorter) and fit BG/NBD on the purchases up to that day;
2. describe every customer who had bought by then with three features: the model's
   log-odds of no purchase within ``days``, ``log(1 + repeat purchases)`` and the own-
   cadence overdue signal (0 to 1, see ``risk``);
3. label them by whether they bought in the ``days`` that followed, and fit a logistic
   regression (a little L2 on the slopes) of "no purchase" on the features, with the
   weights of the model and of the cadence held at zero or above: being overdue never
   lowers a customer's risk.

Scoring then feeds today's features (the current model's P(no purchase within the
horizon)) through the learned weights; feedback signals are added on top (noisy-or),
since purchase history says nothing about them. When the backtest has too few
customers, or only one outcome, no combiner is learned and the fixed noisy-or is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata

from services.engagement.scoring import fit_bgnbd, p_no_purchase_within, summarise

FloatArray = npt.NDArray[np.float64]
WEEK = 7.0
MIN_BACKTEST_DAYS = 14
MIN_EACH_OUTCOME = 10
L2 = 1.0
_EDGE = 1e-9
# Intercept and repeat weight free; the model and an overdue cadence may only raise risk,
# so a regular buyer who stopped is never reassured by being overdue.
BOUNDS = [(None, None), (0.0, None), (None, None), (0.0, None)]


@dataclass(frozen=True)
class Combiner:
    """Learned weights of the combined risk and what they were learned on."""

    intercept: float
    model: float  # on the log-odds of the model's P(no purchase within the horizon)
    repeat: float  # on log(1 + repeat purchase days)
    cadence: float  # on the own-cadence overdue signal, 0..1
    as_of: date  # the backtest's scoring day
    days: int  # its horizon: outcomes are purchases in the days after ``as_of``
    customers: int
    silent_share: float  # share of those customers who bought nothing in that window
    auc: float  # of the combined risk on the backtest ...
    model_auc: float  # ... and of the model alone, for comparison

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "as_of": self.as_of.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Combiner:
        return cls(**{**data, "as_of": date.fromisoformat(data["as_of"])})

    def risk(self, silent: FloatArray, repeat: FloatArray, overdue: FloatArray) -> FloatArray:
        z = self.intercept + np.c_[features(silent, repeat, overdue)] @ np.array(
            [self.model, self.repeat, self.cadence]
        )
        return np.asarray(expit(z), dtype=np.float64)


def features(silent: FloatArray, repeat: FloatArray, overdue: FloatArray) -> FloatArray:
    s = np.clip(np.asarray(silent, dtype=np.float64), _EDGE, 1.0 - _EDGE)
    return np.column_stack([np.log(s) - np.log1p(-s), np.log1p(repeat), overdue])


def overdue(
    since: FloatArray, gap_count: FloatArray, gap_p90: FloatArray, min_gaps: int
) -> FloatArray:
    """0 until the gap since the last purchase passes the customer's own percentile gap,
    then rising to 1 at twice that gap; 0 without ``min_gaps`` gaps of history."""
    p90 = np.where(np.isnan(gap_p90), np.inf, gap_p90)
    ratio = since / np.maximum(p90, 1.0) - 1.0
    known = (gap_count >= min_gaps) & np.isfinite(p90) & (since > p90)
    return np.where(known, np.clip(ratio, 0.0, 1.0), 0.0)


def backtest_days(first_day: int, end: int, horizon_days: int) -> int:
    """The horizon, or half the history when the history is shorter than twice that."""
    return int(min(horizon_days, (end - first_day) // 2))


def learn(
    customer_ids: npt.NDArray[Any],
    days: FloatArray,
    end: date,
    *,
    horizon_days: int,
    percentile: float,
    min_gaps: int,
    min_customers: int,
) -> Combiner | None:
    """Learn the combiner from purchase days (one entry per purchase) up to ``end``."""
    if days.size == 0:
        return None
    end_day = end.toordinal()
    window = backtest_days(int(days.min()), end_day, horizon_days)
    if window < MIN_BACKTEST_DAYS:
        return None
    as_of = end_day - window
    _, codes = np.unique(customer_ids, return_inverse=True)  # integers from here on
    before = days <= as_of
    summary = summarise(codes[before], days[before], np.zeros(int(before.sum())), as_of)
    if summary.n_customers < min_customers:
        return None
    returned = np.zeros(int(codes.max()) + 1, dtype=bool)
    returned[codes[(days > as_of) & (days <= end_day)]] = True
    label = (~returned[summary.customer_ids]).astype(np.float64)
    n_silent = int(label.sum())
    if min(n_silent, label.size - n_silent) < MIN_EACH_OUTCOME:
        return None
    params = fit_bgnbd(summary.x, summary.t_x, summary.T).params
    silent = p_no_purchase_within(params, window / WEEK, summary.x, summary.t_x, summary.T)
    since = (summary.T - summary.t_x) * WEEK
    count, p90 = _gaps(summary.customer_ids, codes[before], days[before], percentile)
    late = overdue(since, count, p90, min_gaps)
    weights = _logistic(features(silent, summary.x, late), label)
    combiner = Combiner(
        intercept=float(weights[0]),
        model=float(weights[1]),
        repeat=float(weights[2]),
        cadence=float(weights[3]),
        as_of=date.fromordinal(as_of),
        days=window,
        customers=summary.n_customers,
        silent_share=n_silent / label.size,
        auc=0.0,
        model_auc=auc(silent, label),
    )
    fitted = combiner.risk(silent, summary.x, late)
    return Combiner(**{**asdict(combiner), "auc": auc(fitted, label)})


def _gaps(
    ids: npt.NDArray[np.int64], codes: npt.NDArray[np.int64], days: FloatArray, percentile: float
) -> tuple[FloatArray, FloatArray]:
    """Per customer of ``ids`` (sorted codes): how many gaps lie between their purchase
    days, and the ``percentile`` of those gaps (linear interpolation, as numpy's default;
    NaN without a gap)."""
    where = np.searchsorted(ids, codes)
    pairs = np.unique(np.column_stack([where, np.floor(days)]), axis=0)  # by customer, day
    same = pairs[1:, 0] == pairs[:-1, 0]
    owner = pairs[1:, 0][same].astype(np.int64)
    gaps = np.diff(pairs[:, 1])[same]
    count = np.bincount(owner, minlength=ids.size).astype(np.float64)
    order = np.lexsort((gaps, owner))  # each customer's gaps, ascending
    owner, gaps = owner[order], gaps[order]
    start = np.searchsorted(owner, np.arange(ids.size))
    size = count.astype(np.int64)
    has = size > 0
    position = percentile / 100.0 * (size[has] - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, size[has] - 1)
    base = start[has]
    below, above = gaps[base + low], gaps[base + high]
    p90 = np.full(ids.size, np.nan)
    p90[has] = below + (above - below) * (position - low)
    return count, p90


def _logistic(x: FloatArray, y: FloatArray) -> FloatArray:
    design = np.column_stack([np.ones(len(x)), x])
    penalty = np.r_[0.0, np.full(x.shape[1], L2)]

    def objective(w: FloatArray) -> tuple[float, FloatArray]:
        z = design @ w
        value = float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * w * w))
        grad = design.T @ (expit(z) - y) + penalty * w
        return value, grad

    result = minimize(
        objective, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B", bounds=BOUNDS
    )
    return np.asarray(result.x, dtype=np.float64)


def auc(scores: FloatArray, labels: FloatArray) -> float:
    """Rank (Mann-Whitney) ROC AUC of ``scores`` for ``labels`` == 1; ties share ranks."""
    positive = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    rank_sum = float(rankdata(scores)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
