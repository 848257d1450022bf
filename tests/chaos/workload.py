"""A seeded chaos workload and the oracle computed from it alone.

The workload is a list of raw Kafka messages in the order they are sent: purchases
(keyed by customer, event times shuffled so delivery is out of order), duplicates
re-sent with the same event id, and a burst of garbage on every input topic. The
oracle says what the system must show afterwards; it knows only the workload and
the documented rules (floor(amount * points per unit) points per purchase, one
order and one thank-you e-mail per distinct purchase), never the services' code.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseCompletedData
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
    garbage_per_topic: int = 12
    email_ratio: float = 0.7


@dataclass
class Oracle:
    """What must be true once the system has drained, computed from the workload."""

    balance: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    purchase_ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    emails: dict[str, int] = field(default_factory=dict)
    garbage: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))

    @property
    def total_points(self) -> int:
        return sum(self.balance.values())


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
    duplicates = _insert_duplicates(rng, messages, spec.duplicate_ratio)
    bursts = [_burst(rng, topic, spec.garbage_per_topic) for topic in INPUT_TOPICS]
    for burst in bursts:
        at = rng.randrange(len(messages) + 1)
        messages[at:at] = burst
    oracle = _oracle(events, hints, [m for b in bursts for m in b], consumers)
    counts = Counter(
        purchases=len(events), duplicates=duplicates, garbage=sum(len(b) for b in bursts)
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
    hints: dict[str, ContactHint | None],
    junk: list[Message],
    consumers: dict[str, tuple[str, ...]],
) -> Oracle:
    oracle = Oracle()
    for customer in hints:
        oracle.balance[customer] = 0
        oracle.orders[customer] = 0
    for event in events:
        customer = event.subject
        oracle.balance[customer] += points_for(event.data.total.amount)
        oracle.orders[customer] += 1
        oracle.purchase_ids[customer].add(event.data.purchase_id)
    for customer, hint in hints.items():
        if hint is not None and hint.email and oracle.orders[customer]:
            oracle.emails[hint.email] = oracle.orders[customer]
    for service, topics in consumers.items():
        oracle.garbage[service] = [m for m in junk if m.topic in topics]
    return oracle
