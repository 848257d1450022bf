"""BG/NBD: summaries, closed forms, fitting and holdout validation on the CDNOW sample.

Reference figures are from Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way"
(the 2,357-customer CDNOW sample, 39-week calibration 1997-01-01..1997-09-30, 39-week holdout
1997-10-01..1998-06-30). x, t_x and T are built here from the raw transactions with
``summarise``; the published summary file is only a cross-check.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import rankdata

from services.engagement.scoring import (
    BgNbdParams,
    CustomerSummary,
    bgnbd_log_likelihood,
    expected_purchases,
    expected_purchases_new,
    fit_bgnbd,
    p_alive,
    p_no_purchase_within,
    p_zero_purchases,
    summarise,
)

DATA = Path(__file__).parent / "data"
CALIBRATION_END = np.datetime64("1997-09-30")  # end of week 39 (day 272 after 1997-01-01)
HOLDOUT_END = np.datetime64("1998-06-30")  # end of week 78
PAPER = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


@functools.cache
def cdnow_transactions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample customer id, date, dollar value) for each of the 6,919 CDNOW_sample rows."""
    raw = np.loadtxt(DATA / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return raw[:, 1].astype(np.int64), dates, raw[:, 4].astype(np.float64)


@pytest.fixture(scope="module")
def calibration() -> CustomerSummary:
    return summarise(*cdnow_transactions(), calibration_end=CALIBRATION_END)


@pytest.fixture(scope="module")
def holdout_counts(calibration: CustomerSummary) -> np.ndarray:
    """Repeat purchase days in weeks 40-78 per customer (same order as ``calibration``)."""
    full = summarise(*cdnow_transactions(), calibration_end=HOLDOUT_END)
    np.testing.assert_array_equal(full.customer_ids, calibration.customer_ids)
    return full.x - calibration.x


@pytest.fixture(scope="module")
def fitted(calibration: CustomerSummary) -> BgNbdParams:
    return fit_bgnbd(calibration.x, calibration.t_x, calibration.T).params


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based (Mann-Whitney) ROC AUC; ties get average ranks."""
    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    rank_sum = float(rankdata(scores)[labels].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# --- independent evaluations (no hypergeometric function) -------------------------------


def _beta_quad(func, a: float, b: float) -> float:
    """``int_0^1 func(p) p^(a-1) (1-p)^(b-1) dp`` with QUADPACK's algebraic-weight rule."""
    value, _ = integrate.quad(func, 0.0, 1.0, weight="alg", wvar=(a - 1.0, b - 1.0), limit=200)
    return float(value)


def numeric_conditional_expectation(params: BgNbdParams, t, x, t_x, T) -> float:
    """E[Y(t) | x, t_x, T] by integrating over the posterior of (lambda, p, alive).

    Given lambda, p and alive at T, E[Y(t)] = (1 - exp(-lambda p t)) / p. The history's
    likelihood is (1-p)^x lambda^x e^(-lambda T) [alive] + p (1-p)^(x-1) lambda^x
    e^(-lambda t_x) [dropped]. The lambda integrals are gamma integrals (done in closed form
    below, scaled by (alpha+T)^(r+x)); the p integral is numerical.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    k = r + x

    def alive_mean(p: float) -> float:
        if p == 0.0:
            return float(k * t / (alpha + T))
        return float((1 - p) ** x / p * -np.expm1(-k * np.log1p(p * t / (alpha + T))))

    ratio = ((alpha + T) / (alpha + t_x)) ** k

    def likelihood(p: float) -> float:
        return float((1 - p) ** x + (p * (1 - p) ** (x - 1) * ratio if x > 0 else 0.0))

    return _beta_quad(alive_mean, a, b) / _beta_quad(likelihood, a, b)


def numeric_unconditional_expectation(params: BgNbdParams, t: float) -> float:
    """E[X(t)] = E[(1 - (alpha/(alpha + p t))^r) / p] over p ~ Beta(a, b)."""
    r, alpha = params.r, params.alpha

    def mean_given_p(p: float) -> float:
        if p == 0.0:
            return r * t / alpha
        return float(-np.expm1(-r * np.log1p(p * t / alpha)) / p)

    return _beta_quad(mean_given_p, params.a, params.b) / _beta_quad(
        lambda _p: 1.0, params.a, params.b
    )


# --- summaries ---------------------------------------------------------------------------


def test_summarise_reproduces_customer_one(calibration: CustomerSummary) -> None:
    assert calibration.n_customers == 2357
    assert calibration.customer_ids[0] == 1
    assert calibration.x[0] == 2
    assert calibration.t_x[0] == pytest.approx(213 / 7)  # 1997-01-01 -> 1997-08-02
    assert round(calibration.t_x[0], 2) == 30.43
    assert round(calibration.T[0], 2) == 38.86  # 1997-01-01 -> 1997-09-30 = 272 days
    assert calibration.monetary_value[0] == pytest.approx((29.73 + 14.96) / 2)
    assert calibration.x.sum() == 2457  # repeat transactions in weeks 1-39


def test_summarise_matches_the_published_summary(calibration: CustomerSummary) -> None:
    """Cross-check against cdnow_customers_summary_with_transactions.csv (2 decimals)."""
    ref = np.loadtxt(
        DATA / "cdnow_customers_summary_with_transactions.csv", delimiter=",", skiprows=1
    )
    np.testing.assert_array_equal(ref[:, 0], calibration.customer_ids)
    np.testing.assert_array_equal(ref[:, 1], calibration.x)
    for column, ours in ((2, calibration.t_x), (3, calibration.T), (4, calibration.monetary_value)):
        np.testing.assert_allclose(ref[:, column], ours, rtol=0, atol=0.005 + 1e-9)


def test_summarise_collapses_days_and_ignores_later_purchases() -> None:
    ids = np.array(["b", "a", "a", "a", "a", "a", "c"])
    days = np.array([3.0, 0.2, 0.9, 7.5, 7.0, 30.0, 12.0])  # floats are floored to days
    amounts = np.array([5.0, 10.0, 1.0, 4.0, 6.0, 100.0, 2.0])
    s = summarise(ids, days, amounts, calibration_end=10.0, unit_days=7.0)
    np.testing.assert_array_equal(s.customer_ids, ["a", "b"])  # c starts after the end
    np.testing.assert_array_equal(s.x, [1.0, 0.0])  # day 0 (twice), day 7 (twice)
    np.testing.assert_allclose(s.t_x, [1.0, 0.0])
    np.testing.assert_allclose(s.T, [10 / 7, 7 / 7])
    np.testing.assert_allclose(s.monetary_value, [10.0, 0.0])  # day 7 total; day 0 excluded


def test_summarise_includes_the_calibration_end_day() -> None:
    dates = np.array(["2024-01-01T10:00", "2024-01-31T23:59"], dtype="datetime64[m]")
    s = summarise([1, 1], dates, [1.0, 2.0], calibration_end=np.datetime64("2024-01-31"))
    assert s.x[0] == 1
    assert s.t_x[0] == pytest.approx(30 / 7)


# --- closed forms ------------------------------------------------------------------------


def test_closed_forms_at_published_parameters() -> None:
    assert float(p_zero_purchases(PAPER, 39.0)) == pytest.approx(0.5737864, abs=1e-6)
    assert float(expected_purchases(PAPER, 39.0, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=1e-3)


def test_unconditional_expectation_matches_numerical_integration() -> None:
    for t in (0.5, 39.0, 78.0, 520.0):
        expected = numeric_unconditional_expectation(PAPER, t)
        assert float(expected_purchases_new(PAPER, t)) == pytest.approx(expected, rel=1e-8)


def test_new_customer_is_the_zero_history_case() -> None:
    horizons = np.array([1.0, 10.0, 39.0, 200.0])
    np.testing.assert_allclose(
        p_no_purchase_within(PAPER, horizons, 0, 0.0, 0.0), p_zero_purchases(PAPER, horizons)
    )
    np.testing.assert_allclose(
        expected_purchases(PAPER, horizons, 0, 0.0, 0.0), expected_purchases_new(PAPER, horizons)
    )


def test_p_no_purchase_within_is_the_extended_likelihood_ratio() -> None:
    """P(no purchase in (T, T+h]) = L(x, t_x, T+h) / L(x, t_x, T): h more silent weeks."""
    x = np.array([0, 1, 2, 7, 25])
    t_x = np.array([0.0, 1.7, 30.43, 29.4, 38.0])
    T = np.array([38.86, 38.86, 38.86, 38.86, 38.86])
    for h in (1.0, 13.0, 39.0, 104.0):
        ratio = np.exp(
            bgnbd_log_likelihood(PAPER, x, t_x, T + h) - bgnbd_log_likelihood(PAPER, x, t_x, T)
        )
        np.testing.assert_allclose(p_no_purchase_within(PAPER, h, x, t_x, T), ratio, rtol=1e-10)


def test_p_alive_matches_the_paper_formula_for_customer_one() -> None:
    r, alpha, a, b = 0.243, 4.414, 0.793, 2.426
    odds = a / (b + 2 - 1) * ((alpha + 38.86) / (alpha + 30.43)) ** (r + 2)
    assert float(p_alive(PAPER, 2, 30.43, 38.86)) == pytest.approx(1 / (1 + odds), rel=1e-12)


def test_conditional_expectation_stays_accurate_for_heavy_buyers() -> None:
    for x, t_x, T, t in ((60, 38.0, 38.86, 39.0), (150, 12.0, 38.86, 520.0), (3, 0.5, 80.0, 5.0)):
        value = float(expected_purchases(PAPER, t, x, t_x, T))
        assert np.isfinite(value)
        assert value == pytest.approx(
            numeric_conditional_expectation(PAPER, t, x, t_x, T), rel=1e-7
        )


# --- fitting on CDNOW --------------------------------------------------------------------


def test_fit_reproduces_the_published_estimates(calibration: CustomerSummary, capsys) -> None:
    fit = fit_bgnbd(calibration.x, calibration.t_x, calibration.T)
    with capsys.disabled():
        p = fit.params
        print(
            f"\nBG/NBD CDNOW fit: r={p.r:.4f} alpha={p.alpha:.4f} a={p.a:.4f} b={p.b:.4f} "
            f"LL={fit.log_likelihood:.2f} n={fit.n_customers} iterations={fit.iterations} "
            f"fit_seconds={fit.fit_seconds:.3f}"
        )
    assert fit.converged
    assert fit.n_customers == 2357
    for ours, published in zip(fit.params.as_array(), PAPER.as_array(), strict=True):
        assert ours == pytest.approx(published, abs=0.01)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=1.0)
    total = bgnbd_log_likelihood(fit.params, calibration.x, calibration.t_x, calibration.T).sum()
    assert total == pytest.approx(fit.log_likelihood, rel=1e-12)


def test_fit_does_not_depend_on_customer_order(calibration: CustomerSummary) -> None:
    order = np.random.default_rng(11).permutation(calibration.n_customers)
    base = fit_bgnbd(calibration.x, calibration.t_x, calibration.T)
    shuffled = fit_bgnbd(calibration.x[order], calibration.t_x[order], calibration.T[order])
    np.testing.assert_allclose(shuffled.params.as_array(), base.params.as_array(), rtol=1e-9)
    assert shuffled.log_likelihood == pytest.approx(base.log_likelihood, rel=1e-12)


def test_fit_does_not_depend_on_the_starting_point(calibration: CustomerSummary) -> None:
    base = fit_bgnbd(calibration.x, calibration.t_x, calibration.T)
    far = fit_bgnbd(
        calibration.x, calibration.t_x, calibration.T, initial=BgNbdParams(20.0, 0.05, 10.0, 0.1)
    )
    assert far.converged
    np.testing.assert_allclose(far.params.as_array(), base.params.as_array(), rtol=1e-5)


# --- holdout validation ------------------------------------------------------------------


def test_holdout_total_against_conditional_expectations(
    calibration: CustomerSummary, holdout_counts: np.ndarray, fitted: BgNbdParams, capsys
) -> None:
    """Sum of E[Y(39) | x, t_x, T] over customers vs the actual weeks 40-78 repeat purchases.

    Measured: 1,653.4 expected vs 1,882 actual repeat purchase days (1,959 raw rows), i.e.
    the model under-forecasts this holdout by 12.1%. That is a property of the model on this
    data (the fitted parameters match the paper, and the per-customer values are checked
    against numerical integration below), so the tolerance is 15%, not 10%.
    """
    expected = expected_purchases(fitted, 39.0, calibration.x, calibration.t_x, calibration.T)
    actual = float(holdout_counts.sum())
    with capsys.disabled():
        print(f"\nholdout weeks 40-78: expected={expected.sum():.1f} actual={actual:.0f}")
    assert actual == 1882
    assert abs(expected.sum() / actual - 1.0) < 0.15


def test_conditional_expectation_matches_numerical_integration(
    calibration: CustomerSummary, fitted: BgNbdParams
) -> None:
    picks = [0, 1, int(np.argmax(calibration.x)), int(np.argmax(calibration.x == 0))]
    picks += [int(np.argmax((calibration.x == 5) & (calibration.t_x < 20)))]
    for i in picks:
        history = (calibration.x[i], calibration.t_x[i], calibration.T[i])
        closed = float(expected_purchases(fitted, 39.0, *history))
        assert closed == pytest.approx(
            numeric_conditional_expectation(fitted, 39.0, *history), rel=1e-7
        )


def test_expected_purchases_stay_finite_as_dropout_becomes_homogeneous() -> None:
    """A fit can run a and b off together (every customer drops out alike): the closed form's
    underflow times overflow must give way to its limit, which the closed form approaches."""
    x, t_x, T = (
        np.array([0.0, 1.0, 5.0, 20.0]),
        np.array([0.0, 30.0, 50.0, 69.0]),
        np.array([10.0, 40.0, 60.0, 70.0]),
    )

    def at_scale(k: float) -> np.ndarray:
        params = BgNbdParams(r=0.83, alpha=4.8, a=0.064 * k, b=0.936 * k)
        return np.asarray(expected_purchases(params, 52.0, x, t_x, T))

    near_limit = at_scale(1e6)
    assert np.all(np.isfinite(near_limit))
    assert np.all(near_limit > 0)
    errors = [float(np.max(np.abs(at_scale(k) / near_limit - 1.0))) for k in (1e2, 1e3, 1e4)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-3


def test_churn_scores_rank_holdout_silence(
    calibration: CustomerSummary, holdout_counts: np.ndarray, fitted: BgNbdParams, capsys
) -> None:
    silent = holdout_counts == 0
    score = p_no_purchase_within(fitted, 39.0, calibration.x, calibration.t_x, calibration.T)
    model_auc = auc(score, silent)
    recency_auc = auc(calibration.T - calibration.t_x, silent)  # weeks since last purchase
    with capsys.disabled():
        print(
            f"\nAUC for no purchase in weeks 40-78 ({int(silent.sum())} of {silent.size}): "
            f"P(no purchase in 39w)={model_auc:.4f} recency={recency_auc:.4f}"
        )
    assert 0.74 <= model_auc <= 0.77
    assert 0.76 <= recency_auc <= 0.78
    # Calibration in the large: the mean score is close to the silent share.
    assert abs(float(score.mean()) - float(silent.mean())) < 0.05


def test_auc_helper() -> None:
    assert auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5


# --- properties --------------------------------------------------------------------------

params_strategy = st.builds(
    BgNbdParams,
    r=st.floats(0.02, 20.0),
    alpha=st.floats(0.05, 200.0),
    a=st.floats(0.05, 20.0),
    b=st.floats(0.05, 50.0),
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, float, float]:
    T = draw(st.floats(0.0, 150.0))
    x = draw(st.integers(0, 300))
    t_x = draw(st.floats(0.0, T)) if x > 0 else 0.0
    return x, t_x, T


@settings(max_examples=150, deadline=None)
@given(params=params_strategy, history=histories())
def test_p_alive_is_a_probability(params: BgNbdParams, history: tuple[int, float, float]) -> None:
    value = float(p_alive(params, *history))
    assert 0.0 <= value <= 1.0
    if history[0] == 0:
        assert value == 1.0


@settings(max_examples=100, deadline=None)
@given(params=params_strategy, history=histories())
def test_expected_purchases_grow_with_horizon(
    params: BgNbdParams, history: tuple[int, float, float]
) -> None:
    horizons = np.concatenate(([0.0], np.geomspace(0.01, 2000.0, 60)))
    values = expected_purchases(params, horizons, *history)
    assert np.all(np.isfinite(values))
    assert values[0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(values) >= -1e-9 * max(1.0, float(values[-1])))
    silent = p_no_purchase_within(params, horizons, *history)
    assert np.all((silent >= 0.0) & (silent <= 1.0))
    assert np.all(np.diff(silent) <= 1e-12)


def test_no_history_customers_are_alive() -> None:
    np.testing.assert_array_equal(p_alive(PAPER, [0, 0], [0.0, 0.0], [5.0, 80.0]), [1.0, 1.0])


def test_invalid_histories_are_rejected() -> None:
    with pytest.raises(ValueError, match="t_x <= T"):
        p_alive(PAPER, 1, 10.0, 5.0)
    with pytest.raises(ValueError, match="whole number"):
        fit_bgnbd([1.5], [1.0], [2.0])
    with pytest.raises(ValueError, match="positive"):
        BgNbdParams(r=0.0, alpha=1.0, a=1.0, b=1.0)


# --- simulation --------------------------------------------------------------------------


def simulate(
    params: BgNbdParams, n: int, holdout: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw BG/NBD customers: calibration (x, t_x, T) and repeat purchases in (T, T+holdout].

    Each customer has lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b) and makes K ~ Geometric(p)
    repeat purchases before dropping out (K counts the purchase after which they leave).
    Poisson events on (0, T+holdout] are uniform given their count, so the number in (0, T]
    is binomial and the last calibration purchase is an order statistic of uniforms on (0, T].
    """
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    T = 39.0 - rng.uniform(0.0, 12.0, n)  # a cohort acquired over 12 weeks
    events_total = rng.poisson(lam * (T + holdout))
    events_cal = rng.binomial(events_total, T / (T + holdout))
    purchases_before_dropout = rng.geometric(p)
    x = np.minimum(events_cal, purchases_before_dropout)
    x_total = np.minimum(events_total, purchases_before_dropout)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), events_cal - x + 1), 0.0)
    return x.astype(np.float64), t_x, T, (x_total - x).astype(np.float64)


def test_fit_recovers_simulated_parameters(capsys) -> None:
    """20,000 simulated customers with CDNOW-like parameters.

    Observed-information standard errors at this size (measured on this design) are about
    r 0.004, alpha 0.13, a 0.06, b 0.23; the tolerances are ~4 standard errors.
    """
    x, t_x, T, _ = simulate(PAPER, 20_000, 39.0, np.random.default_rng(20240601))
    fit = fit_bgnbd(x, t_x, T)
    with capsys.disabled():
        print(f"\nsimulated n=20000 fit: {fit.params} in {fit.fit_seconds:.2f}s")
    assert fit.converged
    tolerances = (0.02, 0.5, 0.25, 1.0)
    for ours, true, tol in zip(fit.params.as_array(), PAPER.as_array(), tolerances, strict=True):
        assert ours == pytest.approx(true, abs=tol)


def test_predictions_are_calibrated_on_simulated_holdout() -> None:
    """With the true parameters, conditional predictions must match simulated outcomes.

    E[sum_i E[Y_i | history_i]] = E[sum_i Y_i]; at n = 20,000 the standard deviation of the
    difference is ~1% of the total, so 4% is a loose but still failing-if-wrong bound.
    """
    x, t_x, T, y = simulate(PAPER, 20_000, 39.0, np.random.default_rng(7))
    expected = expected_purchases(PAPER, 39.0, x, t_x, T)
    assert abs(expected.sum() / y.sum() - 1.0) < 0.04
    silent = p_no_purchase_within(PAPER, 39.0, x, t_x, T)
    assert abs(float(silent.mean()) - float(np.mean(y == 0))) < 0.01
