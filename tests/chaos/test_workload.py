"""The workload and its oracle, checked without any infrastructure (fast)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from types import SimpleNamespace
from typing import cast

import pytest

from shared.events import InvalidEvent, decode
from shared.events.commerce import PurchaseCompleted, PurchaseRefunded
from tests.chaos import checks
from tests.chaos.harness import ChaosStack
from tests.chaos.workload import INPUT_TOPICS, Message, Spec, build, points_for, reversal
from tools.smtp_sink import ReceivedMail

CONSUMERS = {"a": ("commerce.purchases", "profile.events"), "b": ("loyalty.events",)}
SPEC = Spec(seed=3, purchases=400, customers=50, garbage_per_topic=6)
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_points_are_floored_per_purchase() -> None:
    assert [points_for(Decimal(a)) for a in ("1.00", "1.99", "399.99")] == [1, 1, 399]


def test_the_same_seed_gives_the_same_workload() -> None:
    assert build(SPEC, CONSUMERS, NOW).messages == build(SPEC, CONSUMERS, NOW).messages
    other = build(Spec(seed=4, purchases=400, customers=50), CONSUMERS, NOW)
    assert other.messages != build(SPEC, CONSUMERS, NOW).messages


def test_the_oracle_counts_each_distinct_purchase_once() -> None:
    workload = build(SPEC, CONSUMERS, NOW)
    purchases = [m for m in workload.messages if m.topic == "commerce.purchases"]
    events = {}
    for message in purchases:
        try:
            event = decode(message.value)
        except InvalidEvent:
            continue
        if isinstance(event, PurchaseCompleted):
            events[event.id] = event
    assert len(events) == SPEC.purchases
    refunds = workload.counts["refunds"] + workload.counts["refunds_resent"]
    duplicated = int((SPEC.purchases + refunds) * SPEC.duplicate_ratio)
    assert workload.counts["duplicates"] == duplicated
    sent = Counter(m.value for m in purchases)
    assert sum(n - 1 for n in sent.values() if n > 1) == workload.counts["duplicates"]
    expected = sum(points_for(e.data.total.amount) for e in events.values())
    assert workload.oracle.total_points == expected
    assert sum(workload.oracle.orders.values()) == SPEC.purchases


def test_deliveries_are_out_of_event_time_order() -> None:
    workload = build(SPEC, CONSUMERS, NOW)
    times = [decode(m.value).time for m in workload.messages if m.key.startswith(b"chaos-")]
    assert times != sorted(times)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_every_garbage_message_fails_to_decode(topic: str) -> None:
    burst = [m for m in build(SPEC, CONSUMERS, NOW).messages if m.key.startswith(b"garbage-")]
    mine = [m for m in burst if m.topic == topic]
    assert len(mine) == SPEC.garbage_per_topic
    for message in mine:
        with pytest.raises(InvalidEvent):
            decode(message.value)


def test_garbage_is_expected_in_the_dead_letters_of_each_consumer_of_its_topic() -> None:
    oracle = build(SPEC, CONSUMERS, NOW).oracle
    assert {m.topic for m in oracle.garbage["a"]} == {"commerce.purchases", "profile.events"}
    assert {m.topic for m in oracle.garbage["b"]} == {"loyalty.events"}
    assert len(oracle.garbage["a"]) == 2 * SPEC.garbage_per_topic


def test_only_customers_with_an_address_expect_mail() -> None:
    oracle = build(SPEC, CONSUMERS, NOW).oracle
    assert 0 < len(oracle.emails) < SPEC.customers
    for address, count in oracle.emails.items():
        assert count == oracle.orders[address.split("@")[0]] > 0


def test_a_refund_takes_back_its_share_rounded_half_up_and_capped() -> None:
    assert reversal(100, Decimal("40.00"), Decimal("10.00")) == 25
    assert reversal(3, Decimal("2.00"), Decimal("0.50")) == 1  # 0.75 rounds up
    assert reversal(3, Decimal("6.00"), Decimal("0.50")) == 0  # 0.25 rounds down
    assert reversal(7, Decimal("7.00"), Decimal("7.00")) == 7


def _refunds_and_purchases(
    messages: list[Message],
) -> tuple[list[PurchaseCompleted | PurchaseRefunded], dict[str, PurchaseCompleted]]:
    order: list[PurchaseCompleted | PurchaseRefunded] = []
    purchases: dict[str, PurchaseCompleted] = {}
    for message in messages:
        if message.key.startswith(b"chaos-"):
            event = decode(message.value)
            assert isinstance(event, PurchaseCompleted | PurchaseRefunded)
            order.append(event)
            if isinstance(event, PurchaseCompleted):
                purchases[event.data.purchase_id] = event
    return order, purchases


def test_refunds_arrive_before_and_after_their_purchase_and_some_twice() -> None:
    workload = build(SPEC, CONSUMERS, NOW)
    order, _ = _refunds_and_purchases(workload.messages)
    refunds = list({e.id: e for e in order if isinstance(e, PurchaseRefunded)}.values())
    assert len({r.data.refund_id for r in refunds}) == workload.counts["refunds"] > 0
    assert len(refunds) == workload.counts["refunds"] + workload.counts["refunds_resent"]
    seen: set[str] = set()
    early = 0
    for event in order:
        if isinstance(event, PurchaseCompleted):
            seen.add(event.data.purchase_id)
        elif event.data.purchase_id not in seen:
            early += 1
    assert 0 < early < len(refunds)
    twice = Counter(r.data.refund_id for r in refunds)
    assert sum(n - 1 for n in twice.values()) == workload.counts["refunds_resent"]


def test_the_oracle_takes_back_each_refunded_share_once() -> None:
    workload = build(SPEC, CONSUMERS, NOW)
    order, purchases = _refunds_and_purchases(workload.messages)
    refunded: dict[str, Decimal] = {}
    for refund in {e.data.refund_id: e for e in order if isinstance(e, PurchaseRefunded)}.values():
        pid = refund.data.purchase_id
        refunded[pid] = refunded.get(pid, Decimal(0)) + refund.data.amount.amount
    want = {
        pid: reversal(
            points_for(purchases[pid].data.total.amount), purchases[pid].data.total.amount, amount
        )
        for pid, amount in refunded.items()
    }
    got = {pid: n for per in workload.oracle.reversed.values() for pid, n in per.items()}
    assert got == want
    customer = purchases[next(iter(refunded))].subject
    assert workload.oracle.balance(customer) == workload.oracle.earned[customer] - sum(
        workload.oracle.reversed[customer].values()
    )


def test_a_thank_you_received_twice_is_a_mismatch_and_two_thank_yous_are_not() -> None:
    def received(rcpt: str, message_id: str) -> ReceivedMail:
        message = EmailMessage()
        message["Message-ID"] = message_id
        return ReceivedMail("hello@keepwell.local", (rcpt,), message, NOW)

    sink = SimpleNamespace(
        messages=[
            received("lan@example.com", "<o-1@keepwell.local>"),
            received("lan@example.com", "<o-2@keepwell.local>"),  # her second purchase
            received("lan@example.com", "<o-1@keepwell.local>"),  # the first, re-sent
            received("minh@example.com", "<o-3@keepwell.local>"),
        ]
    )
    stack = cast(ChaosStack, SimpleNamespace(sink=sink))
    assert checks.email_copies(stack) == ["lan@example.com: <o-1@keepwell.local> received 2 times"]
