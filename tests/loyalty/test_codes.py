"""Redemption codes: listed per member, used at the till, expiring unused with points back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.loyalty.support import FakeClock, Loyalty
from tests.loyalty.test_redemption import READ, TILL, balance, credit, redeem, reward

pytestmark = pytest.mark.db


async def fire_all(loyalty: Loyalty, when: datetime) -> None:
    scheduler = loyalty.scheduler(FakeClock(when))
    while await scheduler.fire_due():
        pass


async def use(api: httpx.AsyncClient, customer_id: str, redemption_id: str) -> httpx.Response:
    return await api.post(
        f"/v1/members/{customer_id}/redemptions/{redemption_id}/use", headers=TILL
    )


async def test_an_unused_code_expires_and_gives_the_points_back_once(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await loyalty.publish_rules(expiry_days=None, redemption_code_days=7)
    await credit(api, "c", 100)
    await reward(api, "mug", 30, stock=5)
    kept = (await redeem(api, "c", "mug")).json()
    lapsed = (await redeem(api, "c", "mug")).json()
    assert lapsed["expires_at"] is not None
    assert (await use(api, "c", kept["id"])).json()["status"] == "used"
    assert await balance(api, "c") == 40
    later = datetime.now(UTC) + timedelta(days=8)
    await fire_all(loyalty, later)
    await fire_all(Loyalty(loyalty.db), later)  # a restarted scheduler finds nothing left
    assert await balance(api, "c") == 70  # the used code's points stay spent
    gone = await use(api, "c", lapsed["id"])
    assert gone.status_code == 409
    assert "expired" in gone.json()["error"]["message"]
    cancel = await api.post(f"/v1/members/c/redemptions/{lapsed['id']}/cancel", headers=TILL)
    assert cancel.json()["status"] == "expired"
    assert await balance(api, "c") == 70  # cancelling an expired code gives nothing twice
    back = [e for e in await loyalty.entries("c") if e.kind == "cancel"]
    assert [e.points for e in back] == [30]
    [event] = await loyalty.published("redemption.cancelled")
    assert event["data"]["reason"] == "code_expired"
    stock = (await api.get("/v1/rewards", headers=READ)).json()[0]["stock"]
    assert stock == 4  # the expired one went back on the shelf
    await loyalty.check_invariants()


async def test_a_used_code_cannot_be_cancelled_and_using_twice_is_harmless(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await credit(api, "c", 50)
    await reward(api, "mug", 30)
    made = (await redeem(api, "c", "mug")).json()
    assert made["expires_at"] is None  # no code lifetime configured
    assert (await use(api, "c", made["id"])).status_code == 200
    again = await use(api, "c", made["id"])
    assert again.status_code == 200
    assert again.json()["used_at"] is not None
    cancel = await api.post(f"/v1/members/c/redemptions/{made['id']}/cancel", headers=TILL)
    assert cancel.status_code == 409
    assert cancel.json()["error"]["code"] == "redemption_closed"
    assert (await use(api, "someone-else", made["id"])).status_code == 404
    assert await balance(api, "c") == 20


async def test_a_member_lists_their_redemptions_newest_first_page_by_page(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await credit(api, "c", 100)
    await credit(api, "d", 100)
    await reward(api, "pen", 10)
    made = [(await redeem(api, "c", "pen")).json()["id"] for _ in range(5)]
    await redeem(api, "d", "pen")
    seen: list[str] = []
    url = "/v1/members/c/redemptions?limit=2"
    while url:
        page = (await api.get(url, headers=READ)).json()
        seen += [item["id"] for item in page["items"]]
        assert all(item["customer_id"] == "c" for item in page["items"])
        cursor = page["next_before"]
        url = f"/v1/members/c/redemptions?limit=2&before={cursor}" if cursor else ""
    assert seen == made[::-1]
    foreign = (await api.get("/v1/members/d/redemptions", headers=READ)).json()["items"][0]["id"]
    wrong = await api.get(f"/v1/members/c/redemptions?before={foreign}", headers=READ)
    assert wrong.status_code == 400
    assert (await api.get("/v1/members/nobody/redemptions", headers=READ)).status_code == 404
    assert (await api.get("/v1/members/c/redemptions", headers=TILL)).status_code == 403
