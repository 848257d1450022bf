"""The first vertical slice, end to end: a purchase on Kafka becomes points, a
fuller 360° view and a thank-you e-mail — exactly once, whatever the broker delivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import pytest

from shared.events import decode
from tests.e2e.conftest import Stack
from tests.helpers import headers_of, produce, purchase, read_topic, wait_until

pytestmark = pytest.mark.e2e


def new_customer() -> tuple[str, str]:
    cid = f"cus-{uuid.uuid4().hex[:10]}"
    return cid, f"{cid}@example.com"


async def test_a_purchase_becomes_points_a_fuller_view_and_a_thank_you_mail(stack: Stack) -> None:
    cid, email = new_customer()
    event = purchase(cid, "123.45", name="Lan Nguyen", email=email)
    await produce(
        stack.bootstrap, stack.topic("commerce.purchases"), (cid.encode(), event.to_json())
    )

    member = await wait_until(lambda: stack.get_json_if_ok("loyalty", f"/v1/members/{cid}"))
    assert member["balance"] == 123

    async def view_with_points():
        # The view hears the purchase and loyalty's points on different topics, in
        # either order: wait for both.
        view = await stack.get_json_if_ok("profile", f"/v1/customers/{cid}")
        ready = view and view.get("loyalty") and view["lifetime"]["order_count"]
        return view if ready else None

    view = await wait_until(view_with_points)
    assert view["name"] == "Lan Nguyen"
    assert view["email"] == email
    assert view["lifetime"]["order_count"] == 1
    assert view["lifetime"]["total_spend"] == {"amount": "123.4500", "currency": "EUR"}
    assert view["loyalty"]["points_balance"] == 123
    assert "store" in view["channels"]

    mail = await wait_until(lambda: _async(stack.mails_to(email)))
    assert len(mail) == 1
    assert "Lan" in mail[0].text()

    sent = await read_topic(stack.bootstrap, stack.topic("engagement.events"), expect=1)
    outreach = [decode(r.value) for r in sent if r.key == cid.encode()]
    assert [o.type for o in outreach] == ["outreach.sent"]


async def test_the_same_purchase_delivered_three_times_counts_once(stack: Stack) -> None:
    cid, email = new_customer()
    raw = purchase(cid, "50.00", name="Minh", email=email).to_json()
    marker = purchase(cid, "7.00")  # a later purchase tells us the duplicates were consumed
    topic = stack.topic("commerce.purchases")
    await produce(
        stack.bootstrap, topic, *[(cid.encode(), raw)] * 3, (cid.encode(), marker.to_json())
    )

    async def both_counted():
        member = await stack.get_json_if_ok("loyalty", f"/v1/members/{cid}")
        return member if member and member["lifetime_earned"] >= 57 else None

    member = await wait_until(both_counted)
    ledger = (await stack.get("loyalty", f"/v1/members/{cid}/ledger")).json()["items"]
    assert member["balance"] == 57
    assert sorted(e["points"] for e in ledger) == [7, 50]

    async def view_with_two_orders():
        view = await stack.get_json_if_ok("profile", f"/v1/customers/{cid}")
        return view if view and view["lifetime"]["order_count"] >= 2 else None

    view = await wait_until(view_with_two_orders)
    assert view["lifetime"]["order_count"] == 2
    await wait_until(lambda: _async(len(stack.mails_to(email)) >= 2))
    await asyncio.sleep(1.0)  # a duplicate thank-you would arrive in this window
    assert len(stack.mails_to(email)) == 2  # one per distinct purchase, not per delivery


async def test_garbage_between_two_purchases_is_dead_lettered_and_nothing_stops(
    stack: Stack,
) -> None:
    cid, _ = new_customer()
    first, second = purchase(cid, "10"), purchase(cid, "20")
    no_total = json.loads(first.to_json())
    del no_total["data"]["total"]
    no_total["id"] = str(uuid.uuid4())
    unknown = {**json.loads(first.to_json()), "id": str(uuid.uuid4()), "type": "purchase.beamed"}
    garbage = [b"this is not json {", json.dumps(no_total).encode(), json.dumps(unknown).encode()]
    key = cid.encode()
    await produce(
        stack.bootstrap,
        stack.topic("commerce.purchases"),
        (key, first.to_json()),
        *[(key, g) for g in garbage],
        (key, second.to_json()),
    )

    async def both_processed():
        member = await stack.get_json_if_ok("loyalty", f"/v1/members/{cid}")
        return member if member and member["balance"] == 30 else None

    await wait_until(both_processed)
    for service in ("loyalty", "profile", "engagement", "feedback"):
        dead = await read_topic(
            stack.bootstrap, stack.topic(f"{service}.deadletter"), expect=3, timeout=20
        )
        mine = [d for d in dead if d.key == key]
        assert [d.value for d in mine] == garbage, service
        reasons = [headers_of(d)["x-dead-letter-reason"] for d in mine]
        assert "Invalid JSON" in reasons[0]
        assert "data.total: Field required" in reasons[1]
        assert "unknown event type: 'purchase.beamed'" in reasons[2]
        assert stack.services[service].alive, f"{service} died"


async def test_a_consumer_killed_mid_stream_loses_and_doubles_nothing(stack: Stack) -> None:
    customers = [f"kill-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    events = [purchase(c, f"{(i % 7) + 1}.00") for i in range(30) for c in customers]
    expected: dict[str, int] = {}
    for e in events:
        expected[e.subject] = expected.get(e.subject, 0) + int(e.data.total.amount)
    topic = stack.topic("commerce.purchases")
    await produce(stack.bootstrap, topic, *[(e.key, e.to_json()) for e in events[:150]])

    async def some_points():
        member = await stack.get_json_if_ok("loyalty", f"/v1/members/{customers[0]}")
        return member if member and member["balance"] > 0 else None

    await wait_until(some_points, interval=0.01)
    stack.services[
        "loyalty"
    ].kill()  # right after it consumed: effects committed, offsets maybe not
    await produce(stack.bootstrap, topic, *[(e.key, e.to_json()) for e in events[150:]])
    await stack.restart("loyalty")

    async def all_balances():
        got = {}
        for c in customers:
            member = await stack.get_json_if_ok("loyalty", f"/v1/members/{c}")
            got[c] = member["balance"] if member else 0
        return got if got == expected else None

    # On timeout, fall through to the exact comparison below, which shows the difference.
    with contextlib.suppress(AssertionError):
        await wait_until(all_balances, timeout=60, interval=0.5)
    got = {
        c: (await stack.get_json_if_ok("loyalty", f"/v1/members/{c}") or {}).get("balance")
        for c in customers
    }
    assert got == expected
    for c in customers[:3]:
        ledger = (await stack.get("loyalty", f"/v1/members/{c}/ledger?limit=200")).json()["items"]
        assert len(ledger) == 30  # one entry per purchase: none lost, none doubled


async def _async(value):
    return value
