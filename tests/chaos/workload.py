"""A seeded chaos workload and the oracle computed from it alone.

The workload is a list of raw Kafka messages in the order they are sent: purchases
(keyed by customer, event times shuffled so delivery is out of order), refunds of a
share of them (some sent before their purchase, some twice under a new event id),
duplicates re-sent with the same event id, and a burst of garbage on every input
topic. The oracle says what the system must show afterwards; it knows only the
workload and the documented rules (docs/loyalty.md: floor(amount * points per unit)
points per purchase; a refund takes back purchase points x refunded / total, the
running total rounded half-up and capped at the purchase's points, once per refund
id; one order and one thank-you e-mail per distinct purchase), never the services'
code. Redemptions go through REST while the run is under way (tests/chaos/redeem.py);
their outcome is only known then, so the driver adds them to the oracle.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from shared.events.base import Event
from shared.events.commerce import (
    PURCHASES_TOPIC,
    PurchaseCompleted,
    PurchaseCompletedData,
    PurchaseRefunded,
    PurchaseRefundedData,
)
from shared.events.common import ContactHint

POINTS_PER_UNIT = Decimal(1)  # the services are started with LOYALTY_POINTS_PER_UNIT=1
INPUT_TOPICS = (
    "commerce.purchases",
    "customer.interactions",
    "profile.events",
    "loyalty.events",
    "engagement.events",
    "feedback.events",
)
GARBAGE_KINDS = ("not-json", "empty", "json-array", "no-type", "unknown-type", "bad-field")


@dataclass(frozen=True)
class Message:
    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Spec:
    seed: int = 9
    purchases: int = 10_000
    customers: int = 1_000
    duplicate_ratio: float = 0.05
    refund_ratio: float = 0.1  # of purchases refunded (a third of those twice, partially)
    refund_resend_ratio: float = 0.2  # of refunds sent again under a new event id
    garbage_per_topic: int = 12
    email_ratio: float = 0.7


@dataclass
class Oracle:
    """What must be true once the system has drained, computed from the workload."""

    earned: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    purchase_ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # purchase id -> points its refunds take back in all (only purchases with refunds)
    reversed: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    # filled by the redemption driver from the answers it got: customer -> redemption ids
    redemptions: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    emails: dict[str, int] = field(default_factory=dict)
    garbage: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))

    def balance(self, customer: str) -> int:
        taken = sum(self.reversed[customer].values()) if customer in self.reversed else 0
        spent = sum(self.redemptions[customer].values()) if customer in self.redemptions else 0
        return self.earned[customer] - taken - spent

    @property
    def total_points(self) -> int:
        return sum(self.earned.values())


@dataclass
class Workload:
    spec: Spec
    messages: list[Message]
    oracle: Oracle
    counts: Counter[str]


def points_for(amount: Decimal) -> int:
    return int((amount * POINTS_PER_UNIT).to_integral_value(rounding=ROUND_FLOOR))


def customer_ids(spec: Spec) -> list[str]:
    return [f"chaos-{spec.seed}-{i:05d}" for i in range(spec.customers)]


def contact_of(rng: random.Random, spec: Spec, customer: str) -> ContactHint | None:
    if rng.random() >= spec.email_ratio:
        return None
    return ContactHint(name=f"Customer {customer[-5:]}", email=f"{customer}@chaos.example")


def make_purchase(
    rng: random.Random, customer: str, hint: ContactHint | None, now: datetime
) -> PurchaseCompleted:
    cents = rng.randint(100, 40_000)
    return PurchaseCompleted.create(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        subject=customer,
        source="/pos/chaos",
        time=now - timedelta(seconds=rng.uniform(0, 3 * 3600)),  # shuffled: out of order
        data=PurchaseCompletedData(
            purchase_id=f"p-{rng.getrandbits(64):016x}",
            channel="store",
            store_id="store-chaos",
            total={"amount": Decimal(cents) / 100, "currency": "EUR"},
            customer=hint,
        ),
    )


def make_refunds(rng: random.Random, purchase: PurchaseCompleted) -> list[PurchaseRefunded]:
    """One full or partial refund, or two partial ones, some seconds after the purchase."""
    total = purchase.data.total.amount
    cents = int(total * 100)
    if rng.random() < 1 / 3 and cents >= 2:
        first = rng.randint(1, cents - 1)
        parts = [first, rng.randint(1, cents - first)]
    else:
        parts = [cents if rng.random() < 0.5 else rng.randint(1, cents)]
    return [
        PurchaseRefunded.create(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            subject=purchase.subject,
            source="/pos/chaos",
            time=purchase.time + timedelta(minutes=index + 1),
            data=PurchaseRefundedData(
                refund_id=f"r-{rng.getrandbits(64):016x}",
                purchase_id=purchase.data.purchase_id,
                amount={"amount": Decimal(part) / 100, "currency": "EUR"},
            ),
        )
        for index, part in enumerate(parts)
    ]


def reversal(points: int, total: Decimal, refunded: Decimal) -> int:
    """Points all of a purchase's refunds take back: half-up on the running total, capped."""
    exact = Decimal(points) * refunded / total
    return min(points, int(exact.to_integral_value(rounding=ROUND_HALF_UP)))


def garbage(rng: random.Random, topic: str, index: int, kind: str) -> Message:
    key = f"garbage-{topic}-{index:03d}".encode()
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    base = {"specversion": "1.0", "id": event_id, "source": "/chaos", "subject": "x"}
    bodies: dict[str, bytes] = {
        "not-json": b"{chaos " + key,
        "empty": b"",
        "json-array": json.dumps([key.decode(), 1, 2]).encode(),
        "no-type": json.dumps({**base, "data": {}}).encode(),
        "unknown-type": json.dumps({**base, "type": "chaos.unknown", "data": {}}).encode(),
        "bad-field": json.dumps(
            {**base, "type": "purchase.completed", "time": "yesterday", "data": {"total": "x"}}
        ).encode(),
    }
    return Message(topic, key, bodies[kind])


def build(
    spec: Spec, consumers: dict[str, tuple[str, ...]], now: datetime | None = None
) -> Workload:
    """The messages to send, in order, and the oracle. ``consumers``: service → input topics."""
    rng = random.Random(spec.seed)
    now = now or datetime.now(UTC)
    customers = customer_ids(spec)
    hints = {c: contact_of(rng, spec, c) for c in customers}
    events = [_purchase_for(rng, customers, hints, now) for _ in range(spec.purchases)]
    messages = [Message(PURCHASES_TOPIC, e.key, e.to_json()) for e in events]
    refunds = _refunds(rng, events, spec.refund_ratio)
    resent = _scatter_refunds(rng, messages, refunds, spec.refund_resend_ratio)
    duplicates = _insert_duplicates(rng, messages, spec.duplicate_ratio)
    bursts = [_burst(rng, topic, spec.garbage_per_topic) for topic in INPUT_TOPICS]
    for burst in bursts:
        at = rng.randrange(len(messages) + 1)
        messages[at:at] = burst
    oracle = _oracle(events, refunds, hints, [m for b in bursts for m in b], consumers)
    counts = Counter(
        purchases=len(events),
        refunds=len(refunds),
        refunds_resent=resent,
        duplicates=duplicates,
        garbage=sum(len(b) for b in bursts),
    )
    return Workload(spec, messages, oracle, counts)


def _purchase_for(
    rng: random.Random,
    customers: list[str],
    hints: dict[str, ContactHint | None],
    now: datetime,
) -> PurchaseCompleted:
    customer = rng.choice(customers)
    return make_purchase(rng, customer, hints[customer], now)


def _refunds(
    rng: random.Random, events: list[PurchaseCompleted], ratio: float
) -> list[PurchaseRefunded]:
    picks = rng.sample(events, int(len(events) * ratio))
    return [refund for purchase in picks for refund in make_refunds(rng, purchase)]


def _scatter_refunds(
    rng: random.Random, messages: list[Message], refunds: list[PurchaseRefunded], resend: float
) -> int:
    """Insert each refund anywhere in the stream: before its purchase as often as after.

    A share is sent a second time under a new event id (a till re-sending the same
    refund): the refund id, not the event id, must make it count once."""
    resent = 0
    for refund in refunds:
        copies: list[Event] = [refund]
        if rng.random() < resend:
            copies.append(
                refund.model_copy(
                    update={"id": str(uuid.UUID(int=rng.getrandbits(128), version=4))}
                )
            )
            resent += 1
        for copy in copies:
            messages.insert(
                rng.randrange(len(messages) + 1), Message(PURCHASES_TOPIC, copy.key, copy.to_json())
            )
    return resent


def _insert_duplicates(rng: random.Random, messages: list[Message], ratio: float) -> int:
    """Re-send a share of the purchases, byte for byte, somewhere after the original."""
    picks = rng.sample(range(len(messages)), int(len(messages) * ratio))
    for index in sorted(picks, reverse=True):
        at = rng.randrange(index + 1, len(messages) + 1)
        messages.insert(at, messages[index])
    return len(picks)


def _burst(rng: random.Random, topic: str, size: int) -> list[Message]:
    return [garbage(rng, topic, i, GARBAGE_KINDS[i % len(GARBAGE_KINDS)]) for i in range(size)]


def _oracle(
    events: list[PurchaseCompleted],
    refunds: list[PurchaseRefunded],
    hints: dict[str, ContactHint | None],
    junk: list[Message],
    consumers: dict[str, tuple[str, ...]],
) -> Oracle:
    oracle = Oracle()
    for customer in hints:
        oracle.earned[customer] = 0
        oracle.orders[customer] = 0
    for event in events:
        customer = event.subject
        oracle.earned[customer] += points_for(event.data.total.amount)
        oracle.orders[customer] += 1
        oracle.purchase_ids[customer].add(event.data.purchase_id)
    refunded: dict[str, Decimal] = defaultdict(Decimal)
    for refund in refunds:
        refunded[refund.data.purchase_id] += refund.data.amount.amount
    for event in events:
        purchase_id = event.data.purchase_id
        if purchase_id in refunded:
            total = event.data.total.amount
            taken = reversal(points_for(total), total, refunded[purchase_id])
            oracle.reversed[event.subject][purchase_id] = taken
    for customer, hint in hints.items():
        if hint is not None and hint.email and oracle.orders[customer]:
            oracle.emails[hint.email] = oracle.orders[customer]
    for service, topics in consumers.items():
        oracle.garbage[service] = [m for m in junk if m.topic in topics]
    return oracle
