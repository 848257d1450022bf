"""Fitting the population models (BG/NBD and Gamma-Gamma) from the stored purchases.

The maths (``services.engagement.scoring``) runs in a worker thread so a large population
does not block the event loop. Time is in weeks; purchase days are local calendar days.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn import calibration, scores
from services.engagement.churn.models import ChurnModel, ChurnPurchase
from services.engagement.churn.settings import ChurnSettings
from services.engagement.scoring import GammaGammaFit, fit_bgnbd, fit_gamma_gamma, summarise
from shared.http import Conflict


class NotEnoughData(Conflict):
    code = "not_enough_data"


@dataclass(frozen=True)
class Purchases:
    customer_ids: list[str]
    days: np.ndarray[Any, np.dtype[np.float64]]
    amounts: np.ndarray[Any, np.dtype[np.float64]]
    currency: str | None


async def refit(
    session: AsyncSession, *, calibration_end: date, config: ChurnSettings
) -> ChurnModel:
    """Fit both models, and the risk combiner, on purchases up to ``calibration_end``
    (inclusive); store the result."""
    data = await _load(session, calibration_end)
    customers = len(set(data.customer_ids))
    needed = config.min_customers_to_fit
    if customers < needed:
        raise NotEnoughData(
            f"{customers} customers bought by {calibration_end}; need at least {needed}"
        )
    if not (data.days < calibration_end.toordinal()).any():
        # Every customer was first seen on the calibration end day: each one's likelihood is
        # 1 whatever the parameters, and the fit would return its starting point as a model.
        raise NotEnoughData(
            f"every purchase up to {calibration_end} is from that day; the model needs "
            "purchases from an earlier day (a refit after the first day of trading)"
        )
    model = await asyncio.to_thread(_fit, data, calibration_end, config)
    session.add(model)
    await session.flush()
    session.info[scores.MODEL_KEY] = model
    return model


async def _load(session: AsyncSession, end: date) -> Purchases:
    rows = (
        await session.execute(
            select(
                ChurnPurchase.customer_id,
                ChurnPurchase.day,
                ChurnPurchase.amount,
                ChurnPurchase.refunded,
                ChurnPurchase.currency,
            ).where(ChurnPurchase.day <= end)
        )
    ).all()
    kept = [r for r in rows if not (r.refunded > 0 and r.refunded >= r.amount)]
    return _arrays(kept)


def _arrays(rows: Sequence[Any]) -> Purchases:
    """Amounts in the most common currency count; others count as purchases worth 0."""
    currency = Counter(r.currency for r in rows).most_common(1)[0][0] if rows else None
    return Purchases(
        customer_ids=[r.customer_id for r in rows],
        days=np.array([r.day.toordinal() for r in rows], dtype=np.float64),
        amounts=np.array(
            [float(r.amount - r.refunded) if r.currency == currency else 0.0 for r in rows],
            dtype=np.float64,
        ),
        currency=currency,
    )


def _fit(data: Purchases, end: date, config: ChurnSettings) -> ChurnModel:
    ids = np.array(data.customer_ids, dtype=object)
    summary = summarise(ids, data.days, data.amounts, float(end.toordinal()))
    fit = fit_bgnbd(summary.x, summary.t_x, summary.T)
    spend = _fit_spend(summary.x, summary.monetary_value)
    p = fit.params
    return ChurnModel(
        calibration_end=end,
        r=p.r,
        alpha=p.alpha,
        a=p.a,
        b=p.b,
        log_likelihood=fit.log_likelihood,
        n_customers=fit.n_customers,
        converged=fit.converged,
        fit_seconds=fit.fit_seconds,
        currency=data.currency,
        spend=_spend_json(spend),
        combiner=_combiner(ids, data.days, end, config),
    )


def _combiner(
    ids: np.ndarray[Any, Any], days: np.ndarray[Any, Any], end: date, config: ChurnSettings
) -> dict[str, Any] | None:
    if not config.calibrate:
        return None
    learned = calibration.learn(
        ids,
        days,
        end,
        horizon_days=config.horizon_days,
        percentile=config.cadence_percentile,
        min_gaps=config.cadence_min_gaps,
        min_customers=config.min_customers_to_fit,
    )
    return learned.to_json() if learned is not None else None


def _fit_spend(x: np.ndarray[Any, Any], z: np.ndarray[Any, Any]) -> GammaGammaFit | None:
    keep = (x > 0) & (z > 0)
    if int(keep.sum()) < 3:
        return None
    return fit_gamma_gamma(x[keep], z[keep])


def _spend_json(fit: GammaGammaFit | None) -> dict[str, Any] | None:
    if fit is None:
        return None
    return {
        "p": fit.params.p,
        "q": fit.params.q,
        "gamma": fit.params.gamma,
        "log_likelihood": fit.log_likelihood,
        "n_customers": fit.n_customers,
        "converged": fit.converged,
    }
