"""What an earning publishes: ``points.earned`` (one per event) and ``reward.unlocked``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import LedgerEntry, Member
from services.loyalty.service.common import SOURCE
from services.loyalty.service.rules import Milestone, Rules
from shared import outbox
from shared.events import Event, derived_id
from shared.events.loyalty import PointsEarned, PointsEarnedData, RewardUnlocked, RewardUnlockedData


@dataclass
class Earning:
    """The entries one event posts, summed into one points.earned."""

    entries: list[LedgerEntry] = field(default_factory=list)
    unlocked: list[Milestone] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(e.points for e in self.entries)


async def publish(
    session: AsyncSession,
    member: Member,
    rules: Rules,
    earning: Earning,
    event: Event,
    at: datetime,
    pending_until: datetime | None,
) -> None:
    events: list[Event] = []
    if earning.points > 0:
        first = earning.entries[0]
        data = PointsEarnedData(
            points=earning.points,
            balance=member.spendable,
            reason="; ".join(e.reason for e in earning.entries),
            source_event_id=event.id,
            purchase_id=first.purchase_id,
            rule_id=f"{first.rule_id}@v{rules.version}",
            pending_until=pending_until,
        )
        events.append(
            PointsEarned.create(
                id=derived_id("points.earned", event.source, event.id),
                subject=member.customer_id,
                source=SOURCE,
                time=at,
                data=data,
            )
        )
    for milestone in earning.unlocked:
        events.append(_unlocked(member, milestone, event, at))
    await outbox.enqueue(session, *events)


def _unlocked(member: Member, milestone: Milestone, event: Event, at: datetime) -> RewardUnlocked:
    name = milestone.reward_name or milestone.id
    return RewardUnlocked.create(
        id=derived_id("reward.unlocked", event.source, event.id, milestone.id),
        subject=member.customer_id,
        source=SOURCE,
        time=at,
        data=RewardUnlockedData(
            reward_id=f"milestone:{milestone.id}",
            reward_name=name,
            reason=f"milestone: purchase number {milestone.nth_purchase}",
        ),
    )
