"""Timer handlers of the churn/CLV part (scheduled re-scoring, refits)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn import fitting, schedule, scores
from services.engagement.churn.settings import ChurnSettings, churn_settings
from shared.config import ServiceSettings
from shared.timers import Clock, Timer, TimerHandler, wall_clock

log = logging.getLogger(__name__)


async def on_rescore(
    session: AsyncSession, timer: Timer, *, config: ChurnSettings, clock: Clock
) -> None:
    """One chunk of a re-score per transaction: the timer that fires scores the first
    chunk and schedules the next, due at once, until every customer is scored. Each chunk
    is scored as of when it runs, and a chain cut short by a crash goes on from its last
    committed chunk."""
    now = clock()
    done = await scores.rescore_chunk(
        session, after=timer.payload.get("after"), config=config, now=now
    )
    if done.next_after is not None:
        await schedule.rescore_goes_on(session, timer, after=done.next_after, now=now)
    await schedule.schedule_next(session, schedule.RESCORE, config=config, now=now)


async def on_refit(
    session: AsyncSession, timer: Timer, *, config: ChurnSettings, clock: Clock
) -> None:
    now = clock()
    try:
        await fitting.refit(session, calibration_end=now.date(), config=config)
    except fitting.NotEnoughData as exc:
        log.info("scheduled refit skipped: %s", exc.message)  # tried again next slot
    await schedule.schedule_next(session, schedule.REFIT, config=config, now=now)
    await schedule.rescore_soon(session, reason=f"refit-{now.isoformat()}", now=now)


def timer_handlers(
    settings: ServiceSettings, config: ChurnSettings | None = None, clock: Clock = wall_clock
) -> Mapping[str, TimerHandler]:
    cfg = config or churn_settings(settings)
    return {
        schedule.RESCORE: partial(on_rescore, config=cfg, clock=clock),
        schedule.REFIT: partial(on_refit, config=cfg, clock=clock),
    }
