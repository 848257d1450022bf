"""Durable schedule of re-scoring and refitting (``shared.timers``).

Each kind runs in slots of its interval; a timer's key names its slot, so scheduling the same
slot twice is a no-op. A firing timer schedules the slot after *now*: after downtime the
overdue timer fires once, re-scores as of now (the gap since each customer's last purchase is
measured to now, in event time) and the schedule continues from there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.settings import ChurnSettings
from shared import timers

RESCORE = "churn.rescore"
REFIT = "churn.refit"


def _interval(kind: str, config: ChurnSettings) -> int:
    return config.rescore_interval_seconds if kind == RESCORE else config.refit_interval_seconds


def next_slot(kind: str, config: ChurnSettings, now: datetime) -> tuple[str, datetime]:
    interval = _interval(kind, config)
    slot = int(now.timestamp()) // interval + 1
    return f"{kind}:{slot}", datetime.fromtimestamp(slot * interval, UTC)


async def schedule_next(
    session: AsyncSession, kind: str, *, config: ChurnSettings, now: datetime
) -> None:
    key, due_at = next_slot(kind, config, now)
    payload: dict[str, Any] = {}
    await timers.schedule(session, kind=kind, key=key, due_at=due_at, payload=payload)


class Bootstrap:
    """Makes sure the next slots are scheduled, once per slot and process.

    The purchase handler calls it so a fresh database starts its schedule; remembering the
    slots already requested keeps it to one statement per slot instead of one per event. (If
    that transaction rolls back, the slot is requested again by the timer chain or the next
    slot's first purchase.)
    """

    def __init__(self) -> None:
        self._done: set[str] = set()

    async def __call__(
        self, session: AsyncSession, *, config: ChurnSettings, now: datetime
    ) -> None:
        for kind in (RESCORE, REFIT):
            key, _ = next_slot(kind, config, now)
            if key not in self._done:
                await schedule_next(session, kind, config=config, now=now)
                self._done = {k for k in self._done if not k.startswith(kind)} | {key}


async def rescore_goes_on(
    session: AsyncSession, timer: timers.Timer, *, after: str, now: datetime
) -> None:
    """The next chunk of the re-score ``timer`` belongs to, due at once: customers after
    ``after``. Its key names the re-score's first timer and the chunk's number, so a chunk
    is scheduled once however often the one before it is retried."""
    first = timer.payload.get("first", timer.key)
    chunk = int(timer.payload.get("chunk", 0)) + 1
    await timers.schedule(
        session,
        kind=RESCORE,
        key=f"{first}#{chunk}",
        due_at=now,
        payload={"first": first, "chunk": chunk, "after": after},
    )


async def rescore_soon(session: AsyncSession, *, reason: str, now: datetime) -> None:
    """A one-off re-score (e.g. after a refit), due at once."""
    await timers.schedule(
        session,
        kind=RESCORE,
        key=f"{RESCORE}:{reason}",
        due_at=now - timedelta(seconds=1),
        payload={},
    )
