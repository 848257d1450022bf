"""The Gamma-Gamma model of monetary value, and discounted CLV on top of BG/NBD.

Implemented from Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013 note) and
Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", Journal of Marketing Research 42(4):

* a customer's transaction values are i.i.d. ``Gamma(p, nu)`` (shape ``p``, rate ``nu``);
* ``nu ~ Gamma(q, gamma)`` across customers;
* for a customer with ``x`` repeat transactions of mean value ``z`` (``m_x`` in the note),
  ``x z | nu ~ Gamma(p x, nu)``, which integrates to the likelihood below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

from .bgnbd import BgNbdParams, expected_purchases

FloatArray = npt.NDArray[np.float64]

_LOG_BOUND = 15.0


@dataclass(frozen=True)
class GammaGammaParams:
    """``transaction value ~ Gamma(p, nu)``, ``nu ~ Gamma(q, gamma)``."""

    p: float
    q: float
    gamma: float

    def __post_init__(self) -> None:
        for name in ("p", "q", "gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Gamma-Gamma parameter {name} must be positive, got {value!r}")

    @property
    def population_mean_spend(self) -> float:
        """``E[Z] = p gamma / (q - 1)``; infinite when ``q <= 1``."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else math.inf


@dataclass(frozen=True)
class GammaGammaFit:
    params: GammaGammaParams
    log_likelihood: float
    n_customers: int
    iterations: int
    converged: bool


def _repeat_buyers(
    frequency: npt.ArrayLike, monetary_value: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    x, z = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64), np.asarray(monetary_value, dtype=np.float64)
    )
    if np.any(x <= 0) or np.any(x != np.round(x)):
        raise ValueError("Gamma-Gamma needs repeat buyers only: frequency must be 1, 2, ...")
    if np.any(z <= 0) or np.any(~np.isfinite(z)):
        raise ValueError("monetary_value must be positive and finite")
    return x, z


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, frequency: npt.ArrayLike, monetary_value: npt.ArrayLike
) -> FloatArray:
    """Per-customer log-density of the mean repeat spend ``z`` given ``x``.

    ``f(z | x) = Gamma(px+q)/(Gamma(px) Gamma(q)) gamma^q z^(px-1) x^(px) / (gamma+xz)^(px+q)``
    """
    x, z = _repeat_buyers(frequency, monetary_value)
    return _log_density(np.array([params.p, params.q, params.gamma]), x, z)


def _log_density(params: FloatArray, x: FloatArray, z: FloatArray) -> FloatArray:
    p, q, g = params
    px = p * x
    return np.asarray(
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1) * np.log(z)
        + px * np.log(x)
        - (px + q) * np.log(g + x * z),
        dtype=np.float64,
    )


def _objective(theta: FloatArray, x: FloatArray, z: FloatArray) -> tuple[float, FloatArray]:
    """Negative mean log-likelihood and gradient in log-parameter space."""
    params = np.exp(theta)
    p, q, g = params
    value = -float(np.mean(_log_density(params, x, z)))
    log_gxz = np.log(g + x * z)
    common = digamma(p * x + q)
    d_p = x * (common - digamma(p * x) + np.log(z) + np.log(x) - log_gxz)
    d_q = common - digamma(q) + np.log(g) - log_gxz
    d_g = q / g - (p * x + q) / (g + x * z)
    grad = -np.array([d_p.mean(), d_q.mean(), d_g.mean()]) * params
    if not math.isfinite(value):
        return 1e300, np.zeros(3)
    return value, grad


def fit_gamma_gamma(
    frequency: npt.ArrayLike,
    monetary_value: npt.ArrayLike,
    initial: GammaGammaParams | None = None,
) -> GammaGammaFit:
    """Maximum-likelihood fit on repeat buyers (``x > 0``) and their mean repeat spend."""
    x, z = (v.ravel() for v in _repeat_buyers(frequency, monetary_value))
    if x.shape[0] < 3:
        raise ValueError("need at least three repeat buyers to fit three parameters")
    theta0 = (
        np.log([initial.p, initial.q, initial.gamma]) if initial is not None else _starting_point(z)
    )
    result = minimize(
        _objective,
        theta0,
        args=(x, z),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 3,
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
    )
    theta = np.asarray(result.x, dtype=np.float64)
    value, grad = _objective(theta, x, z)
    p, q, g = (float(v) for v in np.exp(theta))
    return GammaGammaFit(
        params=GammaGammaParams(p=p, q=q, gamma=g),
        log_likelihood=-value * x.shape[0],
        n_customers=int(x.shape[0]),
        iterations=int(result.nit),
        converged=bool(np.max(np.abs(grad)) < 1e-6 and np.all(np.abs(theta) < _LOG_BOUND)),
    )


def _starting_point(z: FloatArray) -> FloatArray:
    """``q = 3`` and ``p`` from the spread of ``z``; ``gamma`` then matches the mean spend."""
    mean, var = float(np.mean(z)), float(np.var(z)) + 1e-12
    p = min(max(mean * mean / var, 0.5), 50.0)
    q = 3.0
    return np.log(np.array([p, q, mean * (q - 1.0) / p], dtype=np.float64))


def conditional_expected_spend(
    params: GammaGammaParams, frequency: npt.ArrayLike, monetary_value: npt.ArrayLike
) -> FloatArray:
    """``E[Z | x, z] = p (gamma + x z) / (p x + q - 1)``.

    A weighted average of the population mean ``p gamma/(q-1)`` and the customer's own mean
    ``z``; for ``x == 0`` it is the population mean (``z`` is ignored).
    """
    x, z = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64), np.asarray(monetary_value, dtype=np.float64)
    )
    if np.any(x < 0):
        raise ValueError("frequency must be non-negative")
    own = np.where(x > 0, x * z, 0.0)
    denominator = params.p * x + params.q - 1.0
    if np.any(denominator <= 0):
        raise ValueError("expected spend is infinite: need p x + q > 1 (q > 1 when x = 0)")
    return np.asarray(params.p * (params.gamma + own) / denominator, dtype=np.float64)


def clv(
    bgnbd_params: BgNbdParams,
    gg_params: GammaGammaParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    monetary_value: npt.ArrayLike,
    horizon_units: float,
    discount_rate_per_unit: float,
    step: float = 1.0,
) -> FloatArray:
    """Expected discounted value of each customer's purchases in ``(T, T + horizon_units]``.

    The horizon is cut into intervals of ``step`` units (the last one may be shorter). The
    expected purchases in interval ``(s, e]`` are ``E[Y(e)|.] - E[Y(s)|.]`` from BG/NBD; each
    is valued at the Gamma-Gamma expected spend and discounted from the interval's end ``e``
    by ``(1 + discount_rate_per_unit) ** -e``.
    """
    if horizon_units < 0 or step <= 0 or discount_rate_per_unit <= -1:
        raise ValueError("need horizon_units >= 0, step > 0 and discount rate > -1")
    n_steps = math.ceil(horizon_units / step - 1e-9)
    edges = np.minimum(np.arange(n_steps + 1) * step, horizon_units)
    xs = np.asarray(x, dtype=np.float64)[..., np.newaxis]
    cumulative = expected_purchases(
        bgnbd_params,
        edges,
        xs,
        np.asarray(t_x, dtype=np.float64)[..., np.newaxis],
        np.asarray(T, dtype=np.float64)[..., np.newaxis],
    )
    discount = (1.0 + discount_rate_per_unit) ** -edges[1:]
    discounted_purchases = np.diff(cumulative, axis=-1) @ discount
    spend = conditional_expected_spend(gg_params, np.asarray(x), monetary_value)
    return np.asarray(discounted_purchases * spend, dtype=np.float64)
