"""Gamma-Gamma spend model and discounted CLV.

Reference figures: Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013), fitted
to the 946 customers of the 2,357-customer CDNOW sample who made at least one repeat purchase
in the 39-week calibration period: p = 6.25, q = 3.74, gamma = 15.44. The data definition
that reproduces them (checked here) is the calibration period only (1997-01-01..1997-09-30),
purchases on the same day merged into one transaction whose value is the day's total, the
first (trial) day excluded, and z = the mean value of the remaining repeat transactions. It
is also the zbar column of the published cdnow_customers_summary_with_transactions.csv.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from services.engagement.scoring import (
    BgNbdParams,
    CustomerSummary,
    GammaGammaParams,
    clv,
    conditional_expected_spend,
    expected_purchases,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    summarise,
)

DATA = Path(__file__).parent / "data"
CALIBRATION_END = np.datetime64("1997-09-30")
NOTE = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
BGNBD = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


@functools.cache
def cdnow_calibration() -> CustomerSummary:
    raw = np.loadtxt(DATA / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    ids, amounts = raw[:, 1].astype(np.int64), raw[:, 4].astype(np.float64)
    return summarise(ids, dates, amounts, calibration_end=CALIBRATION_END)


def repeat_buyers() -> tuple[np.ndarray, np.ndarray]:
    s = cdnow_calibration()
    keep = s.x > 0
    return s.x[keep], s.monetary_value[keep]


# --- fitting -----------------------------------------------------------------------------


def test_fit_reproduces_the_spend_note(capsys) -> None:
    x, z = repeat_buyers()
    fit = fit_gamma_gamma(x, z)
    with capsys.disabled():
        p = fit.params
        print(
            f"\nGamma-Gamma CDNOW fit: p={p.p:.4f} q={p.q:.4f} gamma={p.gamma:.4f} "
            f"LL={fit.log_likelihood:.2f} n={fit.n_customers} "
            f"E[Z]={p.population_mean_spend:.2f} mean z={z.mean():.2f}"
        )
    assert fit.converged
    assert fit.n_customers == 946
    assert fit.params.p == pytest.approx(NOTE.p, abs=0.02)
    assert fit.params.q == pytest.approx(NOTE.q, abs=0.02)
    assert fit.params.gamma == pytest.approx(NOTE.gamma, abs=0.02)
    total = gamma_gamma_log_likelihood(fit.params, x, z).sum()
    assert total == pytest.approx(fit.log_likelihood, rel=1e-12)


def test_fit_does_not_depend_on_order_or_start() -> None:
    x, z = repeat_buyers()
    order = np.random.default_rng(3).permutation(x.size)
    base = fit_gamma_gamma(x, z)
    shuffled = fit_gamma_gamma(x[order], z[order])
    far = fit_gamma_gamma(x, z, initial=GammaGammaParams(p=0.5, q=40.0, gamma=500.0))
    for other in (shuffled, far):
        np.testing.assert_allclose(
            [other.params.p, other.params.q, other.params.gamma],
            [base.params.p, base.params.q, base.params.gamma],
            rtol=1e-5,
        )


def simulate_spend(
    params: GammaGammaParams, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """x ~ 1 + Poisson(1); nu ~ Gamma(q, rate gamma); x z ~ Gamma(p x, rate nu)."""
    x = 1 + rng.poisson(1.0, n)
    nu = rng.gamma(params.q, 1.0 / params.gamma, n)
    z = rng.gamma(params.p * x, 1.0 / nu) / x
    return x.astype(np.float64), z


def test_fit_recovers_simulated_parameters() -> None:
    """20,000 simulated repeat buyers at the note's parameters.

    p and gamma are strongly correlated and identified mainly by the spread of single
    transactions, so the design keeps x small. Over 30 replications of this design the
    estimates' standard deviations were p 0.21, q 0.05, gamma 0.68; tolerances are ~4 of them.
    """
    x, z = simulate_spend(NOTE, 20_000, np.random.default_rng(42))
    fit = fit_gamma_gamma(x, z)
    assert fit.converged
    assert fit.params.p == pytest.approx(NOTE.p, abs=0.85)
    assert fit.params.q == pytest.approx(NOTE.q, abs=0.2)
    assert fit.params.gamma == pytest.approx(NOTE.gamma, abs=2.8)


def test_density_of_mean_spend_integrates_to_one() -> None:
    for x in (1.0, 3.0, 12.0):

        def density(z: float, x: float = x) -> float:
            return float(np.exp(gamma_gamma_log_likelihood(NOTE, x, z)))

        total, _ = integrate.quad(density, 0.0, np.inf, limit=200)
        assert total == pytest.approx(1.0, rel=1e-8)


def test_rejects_customers_without_repeat_purchases() -> None:
    with pytest.raises(ValueError, match="repeat buyers"):
        fit_gamma_gamma([0.0, 1.0, 2.0, 3.0], [0.0, 10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match="positive"):
        fit_gamma_gamma([1.0, 1.0, 2.0], [10.0, -1.0, 20.0])


# --- conditional expected spend ----------------------------------------------------------


def numeric_expected_spend(params: GammaGammaParams, x: float, z: float) -> float:
    """E[p/nu | x, z] with the posterior of nu integrated numerically.

    Prior nu ~ Gamma(q, rate gamma); likelihood of the total spend x z ~ Gamma(p x, rate nu).
    """

    def weight(nu: float) -> float:
        prior = stats.gamma.pdf(nu, params.q, scale=1.0 / params.gamma)
        return float(prior * stats.gamma.pdf(x * z, params.p * x, scale=1.0 / nu))

    def mean_times_weight(nu: float) -> float:
        return params.p / nu * weight(nu)

    num, _ = integrate.quad(mean_times_weight, 0.0, np.inf, limit=200)
    den, _ = integrate.quad(weight, 0.0, np.inf, limit=200)
    return float(num / den)


def test_conditional_expected_spend_matches_posterior_integration() -> None:
    for x, z in ((1.0, 11.77), (2.0, 22.35), (7.0, 73.74), (20.0, 15.0)):
        closed = float(conditional_expected_spend(NOTE, x, z))
        assert closed == pytest.approx(numeric_expected_spend(NOTE, x, z), rel=1e-7)


def test_conditional_expected_spend_shrinks_towards_the_population_mean() -> None:
    population = NOTE.population_mean_spend
    assert float(conditional_expected_spend(NOTE, 0.0, 0.0)) == pytest.approx(population)
    assert float(conditional_expected_spend(NOTE, 0.0, 999.0)) == pytest.approx(population)
    z = 100.0
    spends = conditional_expected_spend(NOTE, np.array([1.0, 5.0, 50.0, 5000.0]), z)
    assert np.all(np.diff(spends) > 0)  # more evidence, closer to the customer's own mean
    assert population < spends[0]
    assert spends[-1] == pytest.approx(z, rel=1e-3)


# --- CLV ---------------------------------------------------------------------------------

HISTORY = (np.array([0.0, 2.0, 7.0]), np.array([0.0, 30.43, 29.43]), np.array([38.86] * 3))
SPEND = np.array([0.0, 22.35, 73.74])


def test_clv_without_discounting_is_purchases_times_spend() -> None:
    x, t_x, T = HISTORY
    spend = conditional_expected_spend(NOTE, x, SPEND)
    purchases = expected_purchases(BGNBD, 52.0, x, t_x, T)
    for step in (1.0, 4.0, 52.0, 7.5):
        value = clv(BGNBD, NOTE, x, t_x, T, SPEND, 52.0, 0.0, step=step)
        np.testing.assert_allclose(value, purchases * spend, rtol=1e-12)


def test_clv_discounts_each_step_at_its_end() -> None:
    x, t_x, T = HISTORY
    rate = 0.01
    edges = np.array([0.0, 10.0, 20.0, 25.0])  # horizon 25, step 10: last step is short
    cumulative = np.stack([expected_purchases(BGNBD, e, x, t_x, T) for e in edges])
    manual = sum((cumulative[k] - cumulative[k - 1]) * (1 + rate) ** -edges[k] for k in range(1, 4))
    expected = manual * conditional_expected_spend(NOTE, x, SPEND)
    value = clv(BGNBD, NOTE, x, t_x, T, SPEND, 25.0, rate, step=10.0)
    np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_clv_orders_sensibly() -> None:
    x, t_x, T = HISTORY
    np.testing.assert_array_equal(clv(BGNBD, NOTE, x, t_x, T, SPEND, 0.0, 0.01), 0.0)
    short = clv(BGNBD, NOTE, x, t_x, T, SPEND, 26.0, 0.01)
    long = clv(BGNBD, NOTE, x, t_x, T, SPEND, 104.0, 0.01)
    steep = clv(BGNBD, NOTE, x, t_x, T, SPEND, 104.0, 0.05)
    assert np.all(long > short)
    assert np.all(steep < long)
    assert np.all(steep > 0)
    with pytest.raises(ValueError, match="step"):
        clv(BGNBD, NOTE, x, t_x, T, SPEND, 52.0, 0.01, step=0.0)


def test_clv_on_cdnow(capsys) -> None:
    s = cdnow_calibration()
    x, z = repeat_buyers()
    gg = fit_gamma_gamma(x, z).params
    weekly = 1.15 ** (1 / 52) - 1  # 15% a year
    value = clv(BGNBD, gg, s.x, s.t_x, s.T, s.monetary_value, 52.0, weekly)
    with capsys.disabled():
        print(f"\nCDNOW 52-week CLV at 15%/yr: total ${value.sum():,.0f}, top ${value.max():,.2f}")
    assert np.all(np.isfinite(value))
    assert np.all(value >= 0)
    # Customer 1 (x=2, z=22.35): 52-week purchases times shrunk spend, discounted a little.
    undiscounted = float(expected_purchases(BGNBD, 52.0, 2, s.t_x[0], s.T[0])) * float(
        conditional_expected_spend(gg, 2, s.monetary_value[0])
    )
    assert 0.9 * undiscounted < value[0] < undiscounted
