"""Scoring customers with the current model; publishing band changes.

``churn.risk_changed`` is enqueued only when a customer's band differs from the stored one
(including the first band a customer gets), never on a re-score that keeps the band.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.calibration import Combiner
from services.engagement.churn.models import ChurnBandChange, ChurnCustomer, ChurnModel
from services.engagement.churn.risk import History, Population, Score, score
from services.engagement.churn.settings import ChurnSettings
from services.engagement.scoring import BgNbdParams, GammaGammaParams
from shared.events import derived_id
from shared.events.engagement import ChurnRiskChanged, ChurnRiskChangedData
from shared.outbox import enqueue

SOURCE = "keepwell/engagement"
# A customer not scored yet counts as "low": the first event is sent only when the first band
# is medium or high. (``previous_band`` cannot be null on the wire: the contract requires it
# and ``Event.to_json`` drops null fields.)
NO_BAND = "low"
HISTORY_COLUMNS = (
    ChurnCustomer.customer_id,
    ChurnCustomer.first_day,
    ChurnCustomer.last_day,
    ChurnCustomer.repeat_purchases,
    ChurnCustomer.repeat_average_value,
    ChurnCustomer.currency,
    ChurnCustomer.gap_count,
    ChurnCustomer.gap_median_days,
    ChurnCustomer.gap_p90_days,
    ChurnCustomer.detractor_at,
    ChurnCustomer.detractor_score,
    ChurnCustomer.open_complaints,
    ChurnCustomer.band,
)


MODEL_KEY = "churn.current_model"


async def current_model(session: AsyncSession) -> ChurnModel | None:
    """The newest fitted model, read once per transaction (a consumer batch re-uses it)."""
    if MODEL_KEY not in session.info:
        session.info[MODEL_KEY] = await session.scalar(
            select(ChurnModel).order_by(ChurnModel.id.desc()).limit(1)
        )
    model: ChurnModel | None = session.info[MODEL_KEY]
    return model


def population(model: ChurnModel) -> Population:
    spend = model.spend
    return Population(
        model_id=model.id,
        bgnbd=BgNbdParams(r=model.r, alpha=model.alpha, a=model.a, b=model.b),
        spend=GammaGammaParams(p=spend["p"], q=spend["q"], gamma=spend["gamma"]) if spend else None,
        currency=model.currency,
        combiner=Combiner.from_json(model.combiner) if model.combiner else None,
    )


def history(row: Any) -> History:
    """A ``History`` from a customer row (ORM object or a row of ``HISTORY_COLUMNS``)."""
    return History(
        first_day=row.first_day,
        last_day=row.last_day,
        repeat_purchases=row.repeat_purchases,
        repeat_average_value=row.repeat_average_value,
        currency=row.currency,
        gap_count=row.gap_count,
        gap_median_days=row.gap_median_days,
        gap_p90_days=row.gap_p90_days,
        detractor_day=row.detractor_at.date() if row.detractor_at else None,
        detractor_score=row.detractor_score,
        open_complaints=row.open_complaints,
    )


# A re-score to make: the customer's row (an ORM object or a held copy, changed in place),
# the history to score (None: no purchase is left and the scores are cleared) and the time.
Step = tuple[Any, History | None, datetime]


async def rescore_customer(
    session: AsyncSession, customer: ChurnCustomer, *, config: ChurnSettings, now: datetime
) -> None:
    """Score one customer as of ``now`` with the current model (if there is one)."""
    known = customer.first_day is not None
    await rescore(session, [(customer, history(customer) if known else None, now)], config=config)
    await session.flush()


async def rescore(session: AsyncSession, steps: Sequence[Step], *, config: ChurnSettings) -> None:
    """Make the re-scores in their order, as one ``rescore_customer`` after another would
    (a customer's band as each left it, a band change published and kept each time it
    changes), scoring all of them in one ``score`` per day."""
    scored = [h for _, h, _ in steps if h is not None]
    model = await current_model(session) if scored else None
    results = iter(_score(model, steps, config) if model is not None else [])
    changed: list[ChurnRiskChanged] = []
    kept: list[tuple[str, str, str, datetime]] = []
    for row, known, now in steps:
        if known is None:
            _clear(row)
            continue
        if model is None:
            continue
        result = next(results)
        previous = row.band or NO_BAND
        _assign(row, result, model.id, now)
        if previous != result.band:
            changed.append(_changed(row.customer_id, result, previous, known, now))
            kept.append((row.customer_id, result.band, previous, now))
    if changed:
        await enqueue(session, *changed)
        await _record_changes(session, kept)


def _score(model: ChurnModel, steps: Sequence[Step], config: ChurnSettings) -> list[Score]:
    """The scores of the steps with a history, in their order: one ``score`` per day."""
    by_day: dict[date, list[int]] = {}
    histories: list[History] = []
    for _, known, now in steps:
        if known is not None:
            by_day.setdefault(now.date(), []).append(len(histories))
            histories.append(known)
    people = population(model)
    results: list[Score | None] = [None] * len(histories)
    for day, indices in by_day.items():
        for i, result in zip(
            indices, score(people, [histories[i] for i in indices], day, config), strict=True
        ):
            results[i] = result
    return [r for r in results if r is not None]


def _clear(customer: ChurnCustomer) -> None:
    customer.risk = customer.band = customer.p_alive = customer.expected_purchases = None
    customer.clv = customer.model_id = None
    customer.reasons = []


def _assign(customer: ChurnCustomer, result: Score, model_id: int, now: datetime) -> None:
    for name, value in _values(result, model_id, now).items():
        setattr(customer, name, value)


def _values(result: Score, model_id: int, now: datetime) -> dict[str, Any]:
    return {
        "risk": result.risk,
        "band": result.band,
        "reasons": result.reasons,
        "p_alive": result.p_alive,
        "expected_purchases": result.expected_purchases,
        "clv": result.clv,
        "model_id": model_id,
        "scored_at": now,
    }


def _changed(
    customer_id: str, result: Score, previous: str, row: Any, now: datetime
) -> ChurnRiskChanged:
    return ChurnRiskChanged.create(
        subject=customer_id,
        source=SOURCE,
        time=now,
        id=derived_id("churn.risk_changed", customer_id, previous, result.band, now.isoformat()),
        data=ChurnRiskChangedData(
            risk=round(result.risk, 6),
            band=result.band,
            previous_band=previous,
            reasons=result.reasons,
            clv=result.clv,
            currency=row.currency if result.clv is not None else None,
        ),
    )


async def rescore_all(session: AsyncSession, *, config: ChurnSettings, now: datetime) -> int:
    """Re-score every customer with purchases as of ``now``, chunk after chunk in this one
    transaction; returns how many changed band. The scheduled re-score runs one chunk per
    transaction instead (``churn.timers``)."""
    changed, after = 0, None
    while True:
        done = await rescore_chunk(session, after=after, config=config, now=now)
        changed += done.changed
        if done.next_after is None:
            return changed
        after = done.next_after


@dataclass(frozen=True, slots=True)
class Chunk:
    """What ``rescore_chunk`` did: band changes, and the key to go on after (None: done)."""

    changed: int
    next_after: str | None


async def rescore_chunk(
    session: AsyncSession, *, after: str | None, config: ChurnSettings, now: datetime
) -> Chunk:
    """Re-score, as of ``now``, the next ``config.rescore_chunk`` customers with purchases
    in key order after ``after`` (from the first when None).

    On PostgreSQL the chunk's rows are locked as they are read (``FOR UPDATE``, in key
    order) and stay locked while they are scored and written: a purchase handled meanwhile
    waits for this transaction and is then scored on top of it, instead of having its
    fresher score replaced by one computed from the history before it. (SQLite's one writer
    at a time gives the same.) Chunks keep those waits short, a fraction of a second.
    """
    model = await current_model(session)
    if model is None:
        return Chunk(0, None)
    stmt = select(*HISTORY_COLUMNS).where(ChurnCustomer.first_day.is_not(None))
    if after is not None:
        stmt = stmt.where(ChurnCustomer.customer_id > after)
    stmt = stmt.order_by(ChurnCustomer.customer_id).limit(config.rescore_chunk)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    rows = (await session.execute(stmt)).all()
    if not rows:
        return Chunk(0, None)
    results = await asyncio.to_thread(
        score, population(model), [history(r) for r in rows], now.date(), config
    )
    await _store(session, rows, results, model.id, now)
    changed = [
        _changed(r.customer_id, s, r.band or NO_BAND, r, now)
        for r, s in zip(rows, results, strict=True)
        if (r.band or NO_BAND) != s.band
    ]
    await enqueue(session, *changed)
    await _record_changes(
        session,
        [(e.subject, e.data.band, e.data.previous_band or NO_BAND, now) for e in changed],
    )
    more = len(rows) == config.rescore_chunk
    return Chunk(len(changed), rows[-1].customer_id if more else None)


async def _record_changes(
    session: AsyncSession, changes: list[tuple[str, str, str, datetime]]
) -> None:
    """Keep each band change (the reports count customers entering ``high`` and won back)."""
    rows = [
        {"customer_id": c, "band": band, "previous_band": previous, "changed_at": at}
        for c, band, previous, at in changes
    ]
    for start in range(0, len(rows), 5000):
        await session.execute(insert(ChurnBandChange), rows[start : start + 5000])


async def _store(
    session: AsyncSession, rows: Sequence[Any], results: list[Score], model_id: int, now: datetime
) -> None:
    params = [
        {"customer_id": r.customer_id, **_values(s, model_id, now)}
        for r, s in zip(rows, results, strict=True)
    ]
    for start in range(0, len(params), 5000):
        await session.execute(update(ChurnCustomer), params[start : start + 5000])
