"""Pure-maths churn and customer-lifetime-value models for the engagement service.

* :mod:`.summary` -- raw transactions to per-customer ``(x, t_x, T, monetary value)``;
* :mod:`.bgnbd` -- the BG/NBD model (fit, P(alive), expected purchases, churn risk);
* :mod:`.gamma_gamma` -- the Gamma-Gamma spend model and discounted CLV.

Everything here is a pure function of numpy arrays: no I/O and no service dependencies.
"""

from .bgnbd import (
    BgNbdFit,
    BgNbdParams,
    bgnbd_log_likelihood,
    expected_purchases,
    expected_purchases_new,
    fit_bgnbd,
    p_alive,
    p_no_purchase_within,
    p_zero_purchases,
)
from .gamma_gamma import (
    GammaGammaFit,
    GammaGammaParams,
    clv,
    conditional_expected_spend,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)
from .summary import CustomerSummary, summarise

__all__ = [
    "BgNbdFit",
    "BgNbdParams",
    "CustomerSummary",
    "GammaGammaFit",
    "GammaGammaParams",
    "bgnbd_log_likelihood",
    "clv",
    "conditional_expected_spend",
    "expected_purchases",
    "expected_purchases_new",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "p_alive",
    "p_no_purchase_within",
    "p_zero_purchases",
    "summarise",
]
