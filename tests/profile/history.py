"""A generated, reproducible history of events for many customers (rebuild test, bench)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from shared.events import Event
from shared.events.common import Channel, ContactHint
from shared.events.engagement import ChurnRiskChanged, OutreachSent
from shared.events.feedback import ComplaintOpened, ComplaintResolved, ResponseRecorded
from shared.events.interactions import InteractionRecorded
from shared.events.loyalty import PointsEarned, PointsRedeemed, TierChanged
from tests.profile.builders import purchase, refund

START = datetime(2026, 1, 1, tzinfo=UTC)
DUE = datetime(2026, 12, 1, tzinfo=UTC)
CHANNELS: tuple[Channel, ...] = ("store", "web", "app", "phone")


def customer_ids(count: int, prefix: str = "h") -> list[str]:
    return [f"{prefix}-{n:05d}" for n in range(count)]


def history(ids: list[str], *, seed: int = 7, wave: int = 0) -> list[Event]:
    """Events about ``ids`` from every producer, in an order a broker might interleave."""
    rng = random.Random(seed + wave)
    events = [e for cid in ids for e in _customer(rng, cid, wave)]
    rng.shuffle(events)
    return events


def _customer(rng: random.Random, cid: str, wave: int) -> list[Event]:
    def when() -> datetime:
        return START + timedelta(days=wave * 30 + rng.randint(0, 29), minutes=rng.randint(0, 1439))

    hint = (
        ContactHint(name=f"Name {cid}", email=f"{cid}@example.com") if rng.random() < 0.5 else None
    )
    events: list[Event] = [
        purchase(
            cid, f"{rng.randint(5, 200)}.50", when=when(), hint=hint, channel=rng.choice(CHANNELS)
        )
        for _ in range(rng.randint(1, 3))
    ]
    if rng.random() < 0.3:
        events.append(refund(cid, "3.00", when=when()))
    events.append(_interaction(cid, rng.choice(CHANNELS), when()))
    events += _loyalty(rng, cid, when)
    events += _engagement(rng, cid, when())
    events += _feedback(rng, cid, when)
    return events


def _interaction(cid: str, channel: str, at: datetime) -> InteractionRecorded:
    data = {"channel": channel, "kind": "page_view", "summary": "viewed shoes"}
    return InteractionRecorded.create(subject=cid, source="/web", time=at, data=data)


def _loyalty(rng: random.Random, cid: str, when: Callable[[], datetime]) -> list[Event]:
    src = "keepwell/loyalty"
    balance = rng.randint(10, 500)
    earned = PointsEarned.create(
        subject=cid,
        source=src,
        time=when(),
        data={"points": balance, "balance": balance, "reason": "base", "source_event_id": cid},
    )
    out: list[Event] = [earned]
    if rng.random() < 0.3:
        out.append(
            PointsRedeemed.create(
                subject=cid,
                source=src,
                time=when(),
                data={"points": 5, "balance": balance - 5, "redemption_id": cid, "reward_id": "r"},
            )
        )
    tier = rng.choice(["Silver", "Gold"])
    out.append(
        TierChanged.create(
            subject=cid,
            source=src,
            time=when(),
            data={"old_tier": "Bronze", "new_tier": tier, "direction": "up", "reason": "spend"},
        )
    )
    return out


def _engagement(rng: random.Random, cid: str, at: datetime) -> list[Event]:
    src = "keepwell/engagement"
    risk = round(rng.random(), 2)
    band = "high" if risk >= 0.6 else "low"
    data = {"risk": risk, "band": band, "previous_band": "medium", "clv": Decimal("12.5"),
            "currency": "EUR"}  # fmt: skip
    sent = {"outreach_id": f"o-{cid}", "journey": "thank_you", "channel": "email",
            "template": "t"}  # fmt: skip
    return [
        ChurnRiskChanged.create(subject=cid, source=src, time=at, data=data),
        OutreachSent.create(subject=cid, source=src, time=at + timedelta(hours=1), data=sent),
    ]


def _feedback(rng: random.Random, cid: str, when: Callable[[], datetime]) -> list[Event]:
    src = "keepwell/feedback"
    score = rng.randint(0, 10)
    answer = {"response_id": f"r-{cid}-{score}", "survey_id": "s", "kind": "nps",
              "score": score, "channel": "email"}  # fmt: skip
    out: list[Event] = [ResponseRecorded.create(subject=cid, source=src, time=when(), data=answer)]
    if score < 5:
        case = {"case_id": f"k-{cid}", "category": "c", "severity": "low", "channel": "email",
                "first_response_due": DUE, "resolution_due": DUE}  # fmt: skip
        out.append(ComplaintOpened.create(subject=cid, source=src, time=when(), data=case))
        if score < 2:
            done = {"case_id": f"k-{cid}"}
            out.append(ComplaintResolved.create(subject=cid, source=src, time=when(), data=done))
    return out
