"""The birthday bonus: ``birthday_bonus`` points once a calendar year, on the birthday.

Loyalty keeps only the birthday from profile's ``customer.registered`` /
``customer.updated`` (no other personal data). Each member with a birthday has one
durable timer at 00:00 UTC of their next birthday (29 February falls on 28 February
in other years). When it fires, the member earns the bonus of the *current* calendar
year if the rule is on and that year's birthday has come; the timer then moves to the
next birthday. A timer that fires late still awards the current year once; one whose
year is already over awards nothing for that year (missed years are never paid, so
downtime can never pay two years at once). A rule switched on after this year's
birthday pays from the next birthday on (no retroactive award). Once per member and
year is kept by ``birthday_bonus_year`` and the entry key ``birthday:<id>:<year>``.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Member
from services.loyalty.service import ledger, rulebook, schedule, tiers
from services.loyalty.service.common import SOURCE, utc
from services.loyalty.service.ledger import Why
from services.loyalty.service.rules import Rules
from shared import outbox
from shared.consumer import batch_from
from shared.events import derived_id
from shared.events.loyalty import PointsEarned, PointsEarnedData
from shared.events.profile import CustomerRegistered, CustomerUpdated
from shared.timers import Clock, Timer

RULE_ID = "birthday"


def occurrence(birthday: date, year: int) -> date:
    """The birthday in ``year``: 29 February is 28 February in a non-leap year."""
    if (birthday.month, birthday.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def next_occurrence(birthday: date, since: date) -> date:
    """The first birthday on or after ``since``."""
    this_year = occurrence(birthday, since.year)
    return this_year if this_year >= since else occurrence(birthday, since.year + 1)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


Details = CustomerRegistered | CustomerUpdated


async def record(session: AsyncSession, *, event: Details) -> None:
    """Store the birthday (only that) and move the member's birthday timer to match."""
    if not await _may_change(session, event):
        return
    birthday = event.data.birthday
    member = await repository.lock_member_or_none(
        session, event.subject, create=birthday is not None
    )
    if member is None or member.birthday == birthday:
        return
    member.birthday = birthday
    await arm(session, member, since=utc(event.time).date())


# Reading ahead over a run of details events (``customer.registered`` / ``.updated``
# back to back in a consumer batch, up to the next event of another type). Profile
# announces every new customer and every change of contact details, so loyalty sees
# about one such event per purchase; nearly all of them leave the birthday as it is.
# One event at a time, each locks its member (a locking SELECT) to find that out. The
# run's first event instead reads the birthdays of the run's members in one statement
# without a lock and plays the run through in memory: an event that finds the birthday
# it carries (or no member, and no birthday) changes nothing and is skipped. The members
# of the events that do change something are locked together (one locking SELECT for
# those that exist, one upsert for those the run creates, each in id order), and those
# events then run as one at a time would, from the lock cache.
#
# Exactness: inside a run only details handlers run, and they change nothing but
# birthdays and birthday timers; the play-through applies each event's birthday to the
# member it lands on (merges followed) as ``record`` would. A member this transaction
# holds already is read from memory, not from the database. A skipped event reads
# committed state without waiting for a lock: on SQLite (one writer at a time) that is
# the state a lock would give; on PostgreSQL a transaction changing the same member's
# birthday at that moment (another partition's merge; a rebalance) is ordered after the
# skipped event instead of before it, the outcome of one of the two orders either way.

_AHEAD = "loyalty.details_ahead"


def forget(session: AsyncSession) -> None:
    """Drop the read-ahead of the details run (another handler may change birthdays)."""
    session.info.pop(_AHEAD, None)


async def _may_change(session: AsyncSession, event: Details) -> bool:
    """False if the read-ahead of the event's run shows the event changes nothing."""
    ahead = session.info.get(_AHEAD)
    known = ahead.get(id(event)) if isinstance(ahead, dict) else None
    if known is None or known[0] is not event:
        ahead = await _read_ahead(session, event)
        if ahead is None:
            return True  # not in a batch: the event runs as it is
        session.info[_AHEAD] = ahead
        known = ahead[id(event)]
    return known[1]


def _run(session: AsyncSession, event: Details) -> list[Details] | None:
    """The event and the details events right after it in the batch (either type)."""
    following = batch_from(session, event)
    if following is None:
        return None
    run: list[Details] = []
    for e in following:
        if not isinstance(e, CustomerRegistered | CustomerUpdated):
            break
        run.append(e)
    return run


Known = dict[str, tuple[date | None, str | None] | None]  # id -> (birthday, merged_into)


async def _read_ahead(
    session: AsyncSession, event: Details
) -> dict[int, tuple[Details, bool]] | None:
    """For each event of the run: whether it may change anything; its members locked."""
    run = _run(session, event)
    if run is None:
        return None
    known = await _birthdays(session, {e.subject for e in run})
    ahead: dict[int, tuple[Details, bool]] = {}
    existing: set[str] = set()
    created: set[str] = set()
    for e in run:
        birthday = e.data.birthday
        chain = _chain(known, e.subject)
        live = known.get(chain[-1])
        if live is None:  # no member (or the chain ends at none)
            if birthday is None:
                ahead[id(e)] = (e, False)  # and none to make
                continue
            created.add(e.subject)
            chain = [e.subject]
        elif live[0] == birthday:
            ahead[id(e)] = (e, False)
            continue
        else:
            existing.update(chain)
        known[chain[-1]] = (birthday, None)
        ahead[id(e)] = (e, True)
    if existing:
        await repository.lock_existing_members(session, existing)
    if created:
        await repository.lock_members(session, created)
    return ahead


async def _birthdays(session: AsyncSession, customer_ids: set[str]) -> Known:
    """Birthday and merge of each id and of the survivors it was merged into.

    A member this transaction holds is taken from memory (newer than the database),
    the others as committed, without a lock.
    """
    known: Known = {}
    wanted = customer_ids
    for _ in range(repository.MAX_MERGE_HOPS + 1):
        unread = set()
        for customer_id in wanted:
            held = repository.locked_member(session, customer_id)
            if held is not None:
                known[customer_id] = (held.birthday, held.merged_into)
            else:
                unread.add(customer_id)
        if unread:
            read = await repository.member_birthdays(session, unread)
            known.update({c: read.get(c) for c in unread})
        wanted = {m for v in known.values() if v and (m := v[1]) is not None and m not in known}
        if not wanted:
            break
    return known


def _chain(known: Known, customer_id: str) -> list[str]:
    """The ids from ``customer_id`` to the member its events land on (or to none)."""
    chain = [customer_id]
    for _ in range(repository.MAX_MERGE_HOPS):
        state = known.get(chain[-1])
        if state is None or state[1] is None:
            return chain
        chain.append(state[1])
    raise RuntimeError(f"merge chain of {customer_id!r} is too long")


async def arm(
    session: AsyncSession, member: Member, *, since: date, fired: str | None = None
) -> None:
    """Point the member's birthday timer at their first birthday on or after ``since``."""
    due = None
    if member.birthday is not None:
        due = midnight(next_occurrence(member.birthday, since))
    await schedule.move(session, schedule.BIRTHDAY, member, due, fired=fired)


async def award_due(
    session: AsyncSession, timer: Timer, *, settings: LoyaltySettings, clock: Clock
) -> None:
    customer_id = timer.payload["customer_id"]
    member = await repository.lock_member_or_none(session, customer_id)
    if member is None or member.customer_id != customer_id or member.birthday is None:
        return  # merged away (the survivor has its own timer), erased, or no birthday
    today = utc(clock()).date()
    birthday = occurrence(member.birthday, today.year)
    if birthday <= today:
        rules = await rulebook.current(session, settings)
        await _award(session, member, rules, year=today.year, at=midnight(birthday))
    await arm(session, member, since=today + timedelta(days=1), fired=timer.key)


async def _award(
    session: AsyncSession, member: Member, rules: Rules, *, year: int, at: datetime
) -> None:
    points = rules.body.birthday_bonus
    if not points or (member.birthday_bonus_year or 0) >= year:
        return
    member.birthday_bonus_year = year
    key = f"birthday:{member.customer_id}:{year}"
    why = Why(
        reason="birthday bonus",
        key=key,
        source_event_id=key,
        rule_id=RULE_ID,
        rule_version=rules.version,
    )
    entry = ledger.post(session, member, kind="earn", points=points, why=why, at=at)
    await ledger.add_lot(
        session,
        member,
        entry,
        points=points,
        expiry_days=rules.body.expiry_days,
        notice_days=rules.body.expiring_notice_days,
    )
    await outbox.enqueue(
        session,
        PointsEarned.create(
            id=derived_id("points.earned", key),
            subject=member.customer_id,
            source=SOURCE,
            time=at,
            data=PointsEarnedData(
                points=points,
                balance=member.spendable,
                reason="birthday bonus",
                source_event_id=key,
                rule_id=f"{RULE_ID}@v{rules.version}",
            ),
        ),
    )
    await tiers.on_earn(session, member, rules, at=at)


def merge(merged: Member, survivor: Member) -> bool:
    """One birthday and one bonus a year after a merge; True if the survivor adopted one.

    The merged member keeps its own birthday, unused while it is merged (its events and
    timers land on the survivor), so that an undone merge can arm its timer again."""
    years = [y for y in (merged.birthday_bonus_year, survivor.birthday_bonus_year) if y]
    survivor.birthday_bonus_year = max(years, default=None)
    adopted = survivor.birthday is None and merged.birthday is not None
    if adopted:
        survivor.birthday = merged.birthday
    return adopted
