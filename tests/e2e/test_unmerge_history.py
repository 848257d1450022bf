"""A merge undone through profile's API gives each customer its own churn history back.

A till knows a customer by phone, the web shop another by e-mail; each buys. An app login
reveals both, profile merges them, and engagement's churn statistics count the purchases
of both under the survivor. A till that still knows the absorbed id sells again: that
counts for the survivor too. Then an operator undoes the merge (``POST
/v1/merges/{id}/undo``): engagement, told by ``customer.unmerged``, gives the absorbed
customer back its purchases, the one made while merged included, and each customer's
statistics are its own again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_optout_merge import resolve
from tests.helpers import produce, purchase, wait_until

pytestmark = pytest.mark.e2e


async def _scores(stack: Stack, customer_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await stack.get_json_if_ok(
        "engagement", f"/v1/customers/{customer_id}/scores"
    )
    return found


async def _buy(stack: Stack, customer_id: str, amount: str, days_ago: int) -> None:
    sale = purchase(customer_id, amount, when=datetime.now(UTC) - timedelta(days=days_ago))
    await produce(stack.bootstrap, stack.topic("commerce.purchases"), (sale.key, sale.to_json()))


async def _purchase_days(stack: Stack, customer_id: str, days: int | None) -> bool:
    """Whether engagement counts ``days`` purchase days for the customer (None: no row)."""
    found = await _scores(stack, customer_id)
    return (found is None) if days is None else (found or {}).get("purchase_days") == days


async def test_an_undone_merge_gives_each_customer_its_purchase_history(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    email, phone = f"undo-{tag}@example.com", f"08{int(tag, 16) % 10**8:08d}"
    at_till = (await resolve(stack, phone=phone))["customer_id"]
    on_web = (await resolve(stack, email=email))["customer_id"]
    await _buy(stack, at_till, "10.00", days_ago=30)
    await _buy(stack, on_web, "20.00", days_ago=20)
    await _buy(stack, on_web, "40.00", days_ago=10)
    await wait_until(lambda: _purchase_days(stack, on_web, 2), timeout=30, interval=0.3)
    await wait_until(lambda: _purchase_days(stack, at_till, 1), timeout=30, interval=0.3)

    login = await resolve(stack, phone=phone, email=email)
    assert login["customer_id"] == at_till  # the older customer survives
    (merge_id,) = login["merge_ids"]
    await wait_until(lambda: _purchase_days(stack, at_till, 3), timeout=30, interval=0.3)
    assert await _scores(stack, on_web) is None
    await _buy(stack, on_web, "60.00", days_ago=5)  # a till that knows the absorbed id
    await wait_until(lambda: _purchase_days(stack, at_till, 4), timeout=30, interval=0.3)

    undo = await stack.client.post(stack.services["profile"].url + f"/v1/merges/{merge_id}/undo")
    assert undo.status_code == 200, undo.text
    await wait_until(lambda: _purchase_days(stack, on_web, 3), timeout=30, interval=0.3)
    await wait_until(lambda: _purchase_days(stack, at_till, 1), timeout=30, interval=0.3)
    restored, survivor = await _scores(stack, on_web), await _scores(stack, at_till)
    assert restored is not None
    assert survivor is not None
    # the restored customer bought on three days, from 20 to 5 days ago; the survivor once,
    # 30 days ago, before any of them
    assert survivor["first_purchase"] == survivor["last_purchase"] < restored["first_purchase"]
    assert restored["first_purchase"] < restored["last_purchase"]
    assert float(restored["average_order_value"]) == 40.0  # (20 + 40 + 60) / 3
    assert float(survivor["average_order_value"]) == 10.0
