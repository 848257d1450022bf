"""After-purchase invitations over a consumer batch: read ahead once, write once.

Per purchase, ``invitations.invite_after_purchase`` used to ask the database for the
active after-purchase survey and for the customer's last invitation, then insert the
invitation (an ORM flush) and its ``survey.invitation_created`` outbox row. Inside
the runner's batch transaction (``shared.consumer.batch``) the first purchase of a
*run* (the purchases the runner hands over back to back, up to the next event of
another kind) instead asks for the whole run in one statement (``UNION ALL``, built
once, rows rather than ORM objects):

1. the after-purchase surveys whose active window overlaps the run's purchase
   times, in the per-purchase query's order (newest first, then id); each purchase
   takes the first whose window contains its own time, as that query's ``WHERE``
   and ``LIMIT 1`` would;
2. the run's customers' last invitation time (``max(created_at)``, any survey).

Invitations the run issues are held here and written with one ``executemany`` when
the transaction commits (their outbox rows wait too: ``shared.outbox.defer``).

Exactness: inside a run only purchase handlers run. The only thing a purchase
changes that a later one reads is its customer's last invitation time: the run
raises its copy as it issues invitations (to the later of the two, as ``max`` would),
so fatigue within a run — several purchases of one customer — is decided as one at
a time. Surveys change only through the API, in other transactions: a run sees the
surveys committed when it began, as if its purchases had been handled at that
moment. Every other handler (merges, erasures, answers looking up invitations, …)
first writes what is held (``write``), and a run ends at the first event of another
kind, so a purchase after it reads ahead afresh from what that handler left. A
failed batch replayed one message at a time reads ahead over runs of one. Outside
the runner (no batch, or an event not in it) every purchase asks and writes alone,
as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, literal_column, null, or_, select, union_all
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.feedback import repository
from services.feedback.models import Invitation, Survey
from services.feedback.service import as_utc
from shared.consumer import run_from
from shared.events.commerce import PurchaseCompleted
from shared.key_lists import one_of

_RUN = "feedback.run"
_HELD = "feedback.held_invitations"
AFTER_PURCHASE = "after_purchase"


@dataclass(frozen=True, slots=True)
class SurveyRow:
    """What a purchase needs of an after-purchase survey: its window, id and version."""

    id: str
    version: int
    active_from: datetime | None
    active_until: datetime | None


@dataclass
class Run:
    covered: set[tuple[str, str]] = field(default_factory=set)  # (source, id) of its events
    surveys: list[SurveyRow] = field(default_factory=list)  # newest first, then id
    last_invited: dict[str, datetime | None] = field(default_factory=dict)
    survivors: dict[str, str] = field(default_factory=dict)  # merged-away id -> survivor

    def customer(self, customer_id: str) -> str:
        """Whom a purchase naming ``customer_id`` concerns (its survivor, if merged)."""
        return self.survivors.get(customer_id, customer_id)

    def active_survey(self, at: datetime) -> SurveyRow | None:
        """``repository.get_active_survey(session, "after_purchase", at)``, from the run."""
        for survey in self.surveys:
            if survey.active_from is not None and survey.active_from > at:
                continue
            if survey.active_until is not None and survey.active_until <= at:
                continue
            return survey
        return None

    def fatigued(self, customer_id: str, at: datetime, fatigue_days: int) -> bool:
        last = self.last_invited[customer_id]
        return last is not None and last > at - timedelta(days=fatigue_days)

    def invited(self, customer_id: str, at: datetime) -> None:
        last = self.last_invited.get(customer_id)
        if last is None or at > last:
            self.last_invited[customer_id] = at


async def read_ahead(session: AsyncSession, event: PurchaseCompleted) -> Run | None:
    """The run ``event`` belongs to, read ahead now if it was not yet; None outside one."""
    run = session.info.get(_RUN)
    if isinstance(run, Run) and (event.source, event.id) in run.covered:
        return run
    purchases = run_from(session, event)
    if purchases is None:
        return None
    await write(session)  # what earlier runs hold, before reading invitations back
    times = [as_utc(p.time) for p in purchases]
    run = Run(covered={(p.source, p.id) for p in purchases})
    run.survivors = await repository.MERGES.survivors(session, (p.subject for p in purchases))
    customers = sorted({run.customer(p.subject) for p in purchases})
    run.last_invited = dict.fromkeys(customers)
    params = {"first": min(times), "last": max(times), "customers": customers}
    for what, key, version, at, until, _ in await session.execute(_READ_AHEAD, params):
        if what == "survey":
            since = None if at is None else as_utc(at)
            until = None if until is None else as_utc(until)
            run.surveys.append(SurveyRow(key, version, since, until))
        else:
            run.last_invited[key] = None if at is None else as_utc(at)
    session.info[_RUN] = run
    return run


def _read_ahead_statement() -> Any:
    """The surveys a run may take (newest first, then id) and its customers' last
    invitation times, in one statement: ``(what, key, version, at, until, created)``."""
    s, i = Survey, Invitation
    surveys: Any = select(
        literal_column("'survey'").label("what"),
        s.id.label("key"),
        s.version.label("version"),
        s.active_from.label("at"),
        s.active_until.label("until"),
        s.created_at.label("created"),
    ).where(
        s.audience == AFTER_PURCHASE,
        or_(s.active_from.is_(None), s.active_from <= bindparam("last", type_=s.active_from.type)),
        or_(
            s.active_until.is_(None), s.active_until > bindparam("first", type_=s.active_until.type)
        ),
    )
    invited: Any = (
        select(
            literal_column("'invited'"),
            i.customer_id,
            null(),
            func.max(i.created_at),
            null(),
            null(),
        )
        .where(one_of(i.customer_id, param="customers"))
        .group_by(i.customer_id)
    )
    return union_all(surveys, invited).order_by(
        literal_column("what").desc(), literal_column("created").desc(), literal_column("key")
    )


_READ_AHEAD = _read_ahead_statement()


def hold(session: AsyncSession, invitation: Invitation) -> None:
    """Write ``invitation`` when the transaction commits (or before anything reads them)."""
    sync = session.sync_session
    held = sync.info.get(_HELD)
    if held is None:
        held = sync.info[_HELD] = []
        sa_event.listen(sync, "before_commit", _write_held)
        sa_event.listen(sync, "after_rollback", _drop)
    held.append(_row(invitation))


async def write(session: AsyncSession) -> None:
    """Write the held invitations now and drop the read-ahead: another kind of event is
    about to read or change invitations."""
    session.info.pop(_RUN, None)
    if session.sync_session.info.get(_HELD):
        await session.run_sync(_write_held)


_COLUMNS = tuple(c.key for c in Invitation.__table__.columns)


def _row(invitation: Invitation) -> dict[str, Any]:
    return {name: getattr(invitation, name) for name in _COLUMNS}


def _write_held(sync: Session) -> None:
    held = sync.info.get(_HELD)
    if held:
        sync.info[_HELD] = []
        sync.execute(insert(Invitation), held)


def _drop(sync: Session) -> None:
    if sync.info.get(_HELD):
        sync.info[_HELD] = []
