"""An e-mail opt-out given on one identity survives a merge: engagement sends nothing.

A till knows a customer by phone and records an e-mail opt-out; the web shop
knows the same person by e-mail. An app login reveals both, profile merges them
(strictest consent wins), and a purchase follows — under the survivor's id and
under the absorbed id. A control pair, merged the same way without the opt-out,
gets its thank-you e-mail, so the silence of the first pair is a decision, not a
slow stack: engagement records the first pair's thank-you as suppressed (and
publishes no outreach.sent for it).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from shared.events import decode
from tests.e2e.conftest import Stack
from tests.helpers import produce, purchase, read_topic, wait_until

pytestmark = pytest.mark.e2e


async def resolve(stack: Stack, **identities: str) -> dict[str, Any]:
    body = {"identities": [{"kind": k, "value": v} for k, v in identities.items()]}
    response = await stack.client.post(
        stack.services["profile"].url + "/v1/customers/resolve", json=body
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def merged_pair(stack: Stack, *, opt_out: bool) -> tuple[str, str, str]:
    """(survivor id, absorbed id, e-mail) of a phone customer merged with an e-mail one."""
    tag = uuid.uuid4().hex[:8]
    email, phone = f"pair-{tag}@example.com", f"09{int(tag, 16) % 10**8:08d}"
    at_till = (await resolve(stack, phone=phone))["customer_id"]
    if opt_out:
        change = {"source": "pos", "consents": {"email": "opt_out"}}
        url = stack.services["profile"].url + f"/v1/customers/{at_till}/preferences"
        assert (await stack.client.put(url, json=change)).status_code == 200
    on_web = (await resolve(stack, email=email))["customer_id"]
    login = await resolve(stack, phone=phone, email=email)
    assert login["merge_ids"], login
    survivor = login["customer_id"]
    assert survivor == at_till  # the older customer survives
    view = (await stack.get("profile", f"/v1/customers/{on_web}")).json()
    assert view["customer_id"] == survivor
    assert view["email"] == email
    expected = "opt_out" if opt_out else None
    assert (view["preferences"]["consents"].get("email") or {}).get("status") == expected
    return survivor, on_web, email


async def silent_after_purchase(stack: Stack, *, buy_as_absorbed: bool) -> None:
    """Merge a quiet (opted-out) and a loud pair, buy, and check who was written to."""
    quiet_survivor, quiet_absorbed, quiet_email = await merged_pair(stack, opt_out=True)
    loud_survivor, loud_absorbed, loud_email = await merged_pair(stack, opt_out=False)
    await asyncio.sleep(2.0)  # profile's events (consent, merge) reach engagement first
    buyer = quiet_absorbed if buy_as_absorbed else quiet_survivor
    control = loud_absorbed if buy_as_absorbed else loud_survivor
    sales = [purchase(buyer, "30.00"), purchase(control, "30.00")]
    topic = stack.topic("commerce.purchases")
    await produce(stack.bootstrap, topic, *[(e.key, e.to_json()) for e in sales])

    await wait_until(lambda: _now(stack.mails_to(loud_email)), timeout=30)
    quiet = (quiet_survivor, quiet_absorbed)

    async def quiet_outcomes() -> list[tuple[str, str]]:
        records = await read_topic(
            stack.bootstrap, stack.topic("engagement.events"), expect=2, timeout=3
        )
        events = [decode(r.value) for r in records]
        return [(e.type, e.subject) for e in events if e.subject in quiet]

    await wait_until(quiet_outcomes, timeout=30, interval=0.5)
    await asyncio.sleep(2.0)  # a wrongly sent mail would arrive in this window
    outcomes = await quiet_outcomes()
    assert stack.mails_to(quiet_email) == []
    assert {kind for kind, _ in outcomes} == {"outreach.suppressed"}, outcomes
    assert len(stack.mails_to(loud_email)) == 1


async def test_a_purchase_under_the_merged_id_sends_nothing(stack: Stack) -> None:
    await silent_after_purchase(stack, buy_as_absorbed=False)


async def test_a_purchase_under_the_absorbed_id_sends_nothing(stack: Stack) -> None:
    await silent_after_purchase(stack, buy_as_absorbed=True)


async def _now(value: object) -> object:
    return value
