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


async def record(session: AsyncSession, *, event: CustomerRegistered | CustomerUpdated) -> None:
    """Store the birthday (only that) and move the member's birthday timer to match."""
    birthday = event.data.birthday
    member = await repository.lock_member_or_none(
        session, event.subject, create=birthday is not None
    )
    if member is None or member.birthday == birthday:
        return
    member.birthday = birthday
    await arm(session, member, since=utc(event.time).date())


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
    """One birthday and one bonus a year after a merge; True if the survivor adopted one."""
    years = [y for y in (merged.birthday_bonus_year, survivor.birthday_bonus_year) if y]
    survivor.birthday_bonus_year = max(years, default=None)
    adopted = survivor.birthday is None and merged.birthday is not None
    if adopted:
        survivor.birthday = merged.birthday
    merged.birthday = None
    return adopted
