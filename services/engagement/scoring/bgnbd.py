"""The BG/NBD ("beta-geometric / negative binomial distribution") model of repeat buying.

Implemented from Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An
Alternative to the Pareto/NBD Model", Marketing Science 24(2). Notation follows the paper:

* while active, a customer buys as a Poisson process with rate ``lambda``;
  ``lambda ~ Gamma(shape=r, rate=alpha)`` across customers;
* after each *repeat* purchase the customer drops out for good with probability ``p``;
  ``p ~ Beta(a, b)`` across customers;
* a customer's history is ``x`` repeat purchases, the last at ``t_x``, observed over ``(0, T]``
  where time 0 is their first purchase.

All functions are pure and vectorised over numpy arrays; ``x``, ``t_x``, ``T`` and horizons
broadcast against each other.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

FloatArray = npt.NDArray[np.float64]

_LOG_BOUND = 15.0  # log-parameters are kept in [-15, 15]: 3e-7 .. 3e6
_GRAD_TOL = 1e-7  # on the gradient of the mean log-likelihood w.r.t. the log-parameters
_NUDGE = 1e-7  # distance kept from removable singularities of the closed forms
_INTEGER_GAP = 1e-4  # see _hyp2f1_near_one
_NODES = (-2.0, -1.0, 1.0, 2.0)


@dataclass(frozen=True)
class BgNbdParams:
    """Population parameters: ``lambda ~ Gamma(r, alpha)``, ``p ~ Beta(a, b)``."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"BG/NBD parameter {name} must be positive, got {value!r}")

    def as_array(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.a, self.b], dtype=np.float64)


@dataclass(frozen=True)
class BgNbdFit:
    """Result of :func:`fit_bgnbd`: the maximum-likelihood parameters and fit diagnostics."""

    params: BgNbdParams
    log_likelihood: float
    n_customers: int
    iterations: int
    converged: bool
    fit_seconds: float


@dataclass(frozen=True)
class _Data:
    """Distinct ``(x, t_x, T)`` rows with their multiplicities (CDNOW has many duplicates)."""

    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    weight: FloatArray


def _histories(
    x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Broadcast and validate customer histories."""
    xs, txs, ts = np.broadcast_arrays(
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
    if np.any(xs < 0) or np.any(xs != np.round(xs)):
        raise ValueError("x must be a non-negative whole number of repeat purchases")
    if np.any(txs < 0) or np.any(txs > ts) or np.any(~np.isfinite(ts)):
        raise ValueError("need 0 <= t_x <= T (finite)")
    return xs, txs, ts


def _log_likelihood_terms(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood and ``w``, the posterior weight of "dropped out at t_x".

    ``L = B(a, b+x)/B(a, b) * Gamma(r+x) alpha^r / Gamma(r)
          * [(alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x)]`` ,
    with the bracket evaluated as a log-sum-exp.
    """
    r, alpha, a, b = params
    has_repeat = x > 0
    log_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    log_a2 = betaln(a, b + x) - betaln(a, b)
    log_alive = -(r + x) * np.log(alpha + T)
    safe_denominator = np.where(has_repeat, b + x - 1.0, 1.0)
    log_dead = np.where(
        has_repeat,
        np.log(a) - np.log(safe_denominator) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    log_bracket = np.logaddexp(log_alive, log_dead)
    return log_a1 + log_a2 + log_bracket, np.exp(log_dead - log_bracket)


def _gradient(params: FloatArray, data: _Data, w: FloatArray) -> FloatArray:
    """Gradient of the weighted total log-likelihood w.r.t. ``(r, alpha, a, b)``."""
    r, alpha, a, b = params
    x, t_x, T = data.x, data.t_x, data.T
    log_alive_t, log_dead_t = np.log(alpha + T), np.log(alpha + t_x)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - (1 - w) * log_alive_t - w * log_dead_t
    d_alpha = r / alpha - (r + x) * ((1 - w) / (alpha + T) + w / (alpha + t_x))
    d_ab = digamma(a + b) - digamma(a + b + x)
    d_a = d_ab + w / a
    d_b = d_ab + digamma(b + x) - digamma(b) - w / np.where(x > 0, b + x - 1.0, 1.0)
    per_customer = np.stack([d_r, d_alpha, d_a, d_b])
    return np.asarray(per_customer @ data.weight, dtype=np.float64)


def _objective(theta: FloatArray, data: _Data) -> tuple[float, FloatArray]:
    """Negative mean log-likelihood and its gradient, in log-parameter space."""
    params = np.exp(theta)
    ll, w = _log_likelihood_terms(params, data.x, data.t_x, data.T)
    total = float(data.weight.sum())
    value = -float(ll @ data.weight) / total
    grad = -_gradient(params, data, w) * params / total
    if not math.isfinite(value):
        return 1e300, np.zeros(4)
    return value, grad


def _value(theta: FloatArray, data: _Data) -> float:
    """The objective's value alone (Nelder-Mead needs no gradient: half the work)."""
    ll, _ = _log_likelihood_terms(np.exp(theta), data.x, data.t_x, data.T)
    value = -float(ll @ data.weight) / float(data.weight.sum())
    return value if math.isfinite(value) else 1e300


def bgnbd_log_likelihood(
    params: BgNbdParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """Per-customer log-likelihood ``log L(r, alpha, a, b | x, t_x, T)``; sum it for the total."""
    xs, txs, ts = _histories(x, t_x, T)
    ll, _ = _log_likelihood_terms(params.as_array(), xs, txs, ts)
    return ll


def _compress(x: FloatArray, t_x: FloatArray, T: FloatArray) -> _Data:
    rows, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    return _Data(rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(np.float64))


def _starting_point(data: _Data) -> FloatArray:
    """Crude moment-based start: r=1, mean purchase rate from totals, mean p of 1/4."""
    rate = float(data.weight @ data.x + 1.0) / float(data.weight @ data.T + 1.0)
    return np.log(np.array([1.0, 1.0 / rate, 1.0, 3.0], dtype=np.float64))


def _run_lbfgs(theta: FloatArray, data: _Data) -> tuple[FloatArray, int]:
    result = minimize(
        _objective,
        theta,
        args=(data,),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
        options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10},
    )
    return np.asarray(result.x, dtype=np.float64), int(result.nit)


def _run_nelder_mead(theta: FloatArray, data: _Data) -> tuple[FloatArray, int]:
    result = minimize(
        _value,
        theta,
        args=(data,),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-9, "fatol": 1e-13},
    )
    return np.asarray(result.x, dtype=np.float64), int(result.nit)


def _newton_polish(theta: FloatArray, data: _Data, steps: int = 3) -> tuple[FloatArray, int]:
    """A few Newton steps on a finite-difference Hessian of the analytic gradient."""
    done = 0
    for _ in range(steps):
        value, grad = _objective(theta, data)
        if np.max(np.abs(grad)) < _GRAD_TOL * 1e-2:
            break
        hess = _numerical_hessian(theta, data)
        try:
            step = np.linalg.solve(hess, -grad)
        except np.linalg.LinAlgError:
            break
        candidate = np.clip(theta + step, -_LOG_BOUND, _LOG_BOUND)
        if _objective(candidate, data)[0] > value:
            break
        theta, done = candidate, done + 1
    return theta, done


def _numerical_hessian(theta: FloatArray, data: _Data, h: float = 1e-5) -> FloatArray:
    cols = []
    for i in range(theta.shape[0]):
        e = np.zeros_like(theta)
        e[i] = h
        cols.append((_objective(theta + e, data)[1] - _objective(theta - e, data)[1]) / (2 * h))
    hess = np.column_stack(cols)
    return np.asarray((hess + hess.T) / 2, dtype=np.float64)


def fit_bgnbd(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    initial: BgNbdParams | None = None,
) -> BgNbdFit:
    """Maximum-likelihood fit of the BG/NBD model to customer histories ``(x, t_x, T)``.

    Optimises the mean log-likelihood over log-parameters with L-BFGS-B and the analytic
    gradient, falls back to Nelder-Mead (then L-BFGS-B again) if that stalls, and polishes
    with Newton steps. Identical histories are pooled, so the cost scales with the number of
    distinct ``(x, t_x, T)`` rows.
    """
    started = time.perf_counter()
    xs, txs, ts = _histories(x, t_x, T)
    data = _compress(xs.ravel(), txs.ravel(), ts.ravel())
    if data.x.shape[0] == 0:
        raise ValueError("no customers to fit")
    theta = np.log(initial.as_array()) if initial is not None else _starting_point(data)
    theta, iterations = _run_lbfgs(theta, data)
    if not _is_stationary(theta, data):
        theta, extra_nm = _run_nelder_mead(theta, data)
        theta, extra_lb = _run_lbfgs(theta, data)
        iterations += extra_nm + extra_lb
    theta, polish = _newton_polish(theta, data)
    return _make_fit(theta, data, iterations + polish, started)


def _is_stationary(theta: FloatArray, data: _Data) -> bool:
    value, grad = _objective(theta, data)
    return math.isfinite(value) and float(np.max(np.abs(grad))) < _GRAD_TOL


def _make_fit(theta: FloatArray, data: _Data, iterations: int, started: float) -> BgNbdFit:
    value, _ = _objective(theta, data)
    n = float(data.weight.sum())
    converged = _is_stationary(theta, data) and bool(np.all(np.abs(theta) < _LOG_BOUND))
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BgNbdFit(
        params=BgNbdParams(r=r, alpha=alpha, a=a, b=b),
        log_likelihood=-value * n,
        n_customers=int(n),
        iterations=iterations,
        converged=converged,
        fit_seconds=time.perf_counter() - started,
    )


def _log_dropout_odds(
    params: BgNbdParams, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """``log[ a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x) ]``; ``-inf`` when ``x == 0``."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    has_repeat = x > 0
    safe_denominator = np.where(has_repeat, b + x - 1.0, 1.0)
    odds = np.log(a / safe_denominator) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(has_repeat, odds, -np.inf)


def p_alive(
    params: BgNbdParams, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """``P(alive at T | x, t_x, T)``; exactly 1 for ``x == 0``."""
    xs, txs, ts = _histories(x, t_x, T)
    return np.asarray(expit(-_log_dropout_odds(params, xs, txs, ts)), dtype=np.float64)


def _away_from_zero(value: npt.ArrayLike) -> FloatArray:
    """Replace ``|v| < 1e-7`` by ``+-1e-7``: steps beside a removable 0/0 in the closed form."""
    v = np.asarray(value, dtype=np.float64)
    return np.where(np.abs(v) < _NUDGE, np.where(v < 0, -_NUDGE, _NUDGE), v)


def _hyp2f1_near_one(a: FloatArray, b: float, c: FloatArray, z: FloatArray) -> FloatArray:
    """``2F1(a, b; c; z)`` for ``0 <= z < 1``, also when ``c - a - b`` is (nearly) an integer.

    For ``z > 0.9`` scipy maps the series to ``1 - z``, whose connection coefficients are
    degenerate at integer ``c - a - b``: it returns ``inf`` or loses digits within ~1e-8 of
    one. There the function (entire in ``a``) is interpolated by a cubic through the points
    where ``c - a - b`` is 1e-4 and 2e-4 either side of the integer (error ~1e-13 relative).
    """
    a, c, z = np.broadcast_arrays(a, c, z)
    d = c - a - b
    offset = d - np.round(d)
    near = (np.abs(offset) < _INTEGER_GAP) & (z > 0.9)
    value = np.array(hyp2f1(a, b, c, z), dtype=np.float64)
    if np.any(near):
        a_int, c_near, z_near = a[near] + offset[near], c[near], z[near]
        u = -offset[near] / _INTEGER_GAP  # position of ``a`` in units of the gap
        total = np.zeros_like(u)
        for k in _NODES:
            weight = np.prod([(u - j) / (k - j) for j in _NODES if j != k], axis=0)
            total += weight * hyp2f1(a_int + k * _INTEGER_GAP, b, c_near, z_near)
        value[near] = total
    return value


def _future_purchases_if_alive(
    params: BgNbdParams, t: FloatArray, x: FloatArray, T: FloatArray
) -> FloatArray:
    """``(c/(a-1)) [1 - (1-z)^(r+x) 2F1(r+x, b+x; c; z)]``, ``c = a+b+x-1``, ``z = t/(alpha+T+t)``.

    This is E[Y(t)] for a customer known to be alive at T. The hypergeometric part is
    evaluated via Euler's transformation as ``(1-z)^(a-1) 2F1(c-x-r, a-1; c; z)``: the original
    series grows like ``(1-z)^(a-1-r-x)`` as ``z -> 1`` (large ``x`` or ``t``) while the
    transformed one converges at ``z = 1`` (there ``c - (c-x-r) - (a-1) = r+x+1-a > 0``).
    ``a == 1`` and ``c == 0`` (``x == 0``, ``a+b == 1``) are removable singularities: the value
    is taken at ``a`` or ``b`` moved by 1e-7, a relative change of order 1e-7.
    """
    a_minus_1 = float(_away_from_zero(params.a - 1.0))
    c = _away_from_zero(params.a + params.b + x - 1.0)
    log1m_z = np.log(params.alpha + T) - np.log(params.alpha + T + t)
    z = -np.expm1(log1m_z)
    with np.errstate(invalid="ignore", over="ignore"):
        term = np.exp(a_minus_1 * log1m_z) * _hyp2f1_near_one(c - x - params.r, a_minus_1, c, z)
        value = np.asarray(c / a_minus_1 * (1.0 - term), dtype=np.float64)
    lost = ~np.isfinite(value)
    if np.any(lost):
        limit = _future_purchases_fixed_dropout(params, t, x, T)
        value = np.where(lost, limit, value)
    return value


def _future_purchases_fixed_dropout(
    params: BgNbdParams, t: FloatArray, x: FloatArray, T: FloatArray
) -> FloatArray:
    """``(1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p`` with ``p = a/(a+b)``.

    The limit of E[Y(t)] for a customer alive at T as ``a, b -> inf`` with ``a/(a+b)``
    fixed, i.e. when every customer has the same dropout probability ``p``: alive at ``s``
    with probability ``exp(-lambda p s)``, so ``E[Y | lambda] = (1 - exp(-lambda p t))/p``,
    then averaged over the posterior ``Gamma(r+x, alpha+T)``. A maximum-likelihood fit on
    customers with little spread in dropout runs ``a`` and ``b`` towards that limit, where
    the closed form's ``(1-z)^(a-1)`` underflows against an overflowing ``2F1``; there this
    form is used (relative difference about 1e-3 at ``a+b = 1e4``, shrinking as ``1/(a+b)``).
    """
    p = params.a / (params.a + params.b)
    log_ratio = np.log(params.alpha + T) - np.log(params.alpha + T + p * t)
    return np.asarray(-np.expm1((params.r + x) * log_ratio) / p, dtype=np.float64)


def expected_purchases(
    params: BgNbdParams,
    t: npt.ArrayLike,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
) -> FloatArray:
    """``E[Y(t) | x, t_x, T]``: expected purchases in ``(T, T+t]``.

    Equal to ``P(alive | x, t_x, T)`` times the expectation for a customer alive at ``T``.
    """
    xs, txs, ts = _histories(x, t_x, T)
    horizon = np.asarray(t, dtype=np.float64)
    if np.any(horizon < 0):
        raise ValueError("horizon t must be non-negative")
    alive = expit(-_log_dropout_odds(params, xs, txs, ts))
    return np.asarray(_future_purchases_if_alive(params, horizon, xs, ts) * alive)


def expected_purchases_new(params: BgNbdParams, t: npt.ArrayLike) -> FloatArray:
    """``E[X(t)]`` for a customer just acquired at time 0."""
    zero = np.zeros_like(np.asarray(t, dtype=np.float64))
    return expected_purchases(params, t, zero, zero, zero)


def p_zero_purchases(params: BgNbdParams, t: npt.ArrayLike) -> FloatArray:
    """``P(X(t) = 0) = (alpha/(alpha+t))^r`` for a new customer.

    A new customer is active at time 0 and cannot drop out before a repeat purchase, so no
    purchase in ``(0, t]`` just means no Poisson event: ``E[exp(-lambda t)]``.
    """
    horizon = np.asarray(t, dtype=np.float64)
    return np.asarray(np.exp(params.r * (np.log(params.alpha) - np.log(params.alpha + horizon))))


def p_no_purchase_within(
    params: BgNbdParams,
    horizon: npt.ArrayLike,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
) -> FloatArray:
    """``P(no purchase in (T, T+horizon] | x, t_x, T)`` -- the churn-risk score.

    Derivation. Given ``(lambda, p)`` the individual likelihood of the history splits by
    whether the customer is still alive at ``T``::

        L(lambda, p) = (1-p)^x lambda^x e^(-lambda T)                 [alive at T]
                     + [x>0] p (1-p)^(x-1) lambda^x e^(-lambda t_x)   [dropped at t_x]

    If dropped out, no further purchase happens. If alive, dropout is only possible right
    after a purchase, so "no purchase in the horizon" is exactly "no Poisson event in it",
    with probability ``exp(-lambda h)``. Integrating the "alive" term against the priors
    ``Gamma(r, alpha)`` and ``Beta(a, b)`` shows that, given alive, ``lambda`` has the
    posterior ``Gamma(r+x, alpha+T)`` (independent of ``p``), and
    ``E[exp(-lambda h) | alive] = ((alpha+T)/(alpha+T+h))^(r+x)``. Hence::

        P(no purchase) = P(alive) ((alpha+T)/(alpha+T+h))^(r+x) + (1 - P(alive))
                       = 1 - P(alive) [1 - ((alpha+T)/(alpha+T+h))^(r+x)]

    with ``P(alive)`` from :func:`p_alive`. Equivalently, it is the likelihood ratio
    ``L(x, t_x, T+h) / L(x, t_x, T)``: the history extended by ``h`` silent weeks.
    """
    xs, txs, ts = _histories(x, t_x, T)
    h = np.asarray(horizon, dtype=np.float64)
    if np.any(h < 0):
        raise ValueError("horizon must be non-negative")
    log_silent_if_alive = (params.r + xs) * (
        np.log(params.alpha + ts) - np.log(params.alpha + ts + h)
    )
    alive = expit(-_log_dropout_odds(params, xs, txs, ts))
    return np.asarray(1.0 + alive * np.expm1(log_silent_if_alive), dtype=np.float64)
