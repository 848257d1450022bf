"""Redemption over HTTP: concurrency, idempotency, stock, cancellation, access."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.loyalty.models import RedemptionRequest
from tests.helpers import auth_headers
from tests.loyalty.support import Loyalty, erased

pytestmark = pytest.mark.db

ADMIN = auth_headers("loyalty:admin", subject="ops-ana")
TILL = auth_headers("loyalty:redeem", subject="till-7")
READ = auth_headers("loyalty:read")


async def credit(api: httpx.AsyncClient, customer_id: str, points: int) -> None:
    body = {"points": points, "reason": "welcome gift", "reference": uuid.uuid4().hex}
    response = await api.post(f"/v1/members/{customer_id}/adjustments", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text


async def reward(api: httpx.AsyncClient, reward_id: str, cost: int, **extra: Any) -> None:
    body = {"name": reward_id.title(), "points_cost": cost, **extra}
    response = await api.put(f"/v1/rewards/{reward_id}", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text


async def redeem(
    api: httpx.AsyncClient, customer_id: str, reward_id: str, key: str | None = None
) -> httpx.Response:
    headers = {**TILL, "Idempotency-Key": key or uuid.uuid4().hex}
    return await api.post(
        f"/v1/members/{customer_id}/redemptions", json={"reward_id": reward_id}, headers=headers
    )


async def balance(api: httpx.AsyncClient, customer_id: str) -> int:
    response = await api.get(f"/v1/members/{customer_id}", headers=READ)
    return int(response.json()["balance"])


async def test_fifty_concurrent_redemptions_spend_the_balance_exactly_once(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await credit(api, "c", 100)
    await reward(api, "coffee", 10)
    responses = await asyncio.gather(*(redeem(api, "c", "coffee") for _ in range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 10 + [409] * 40
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "insufficient_points"
    }
    assert len({r.json()["code"] for r in responses if r.status_code == 201}) == 10
    assert await balance(api, "c") == 0
    await loyalty.check_invariants()


async def test_concurrent_redemptions_never_take_stock_below_zero(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await reward(api, "bike", 5, stock=3)
    for customer in ("a", "b", "c", "d"):
        await credit(api, customer, 50)
    calls = [redeem(api, c, "bike") for c in ("a", "b", "c", "d") for _ in range(3)]
    responses = await asyncio.gather(*calls)
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * 9
    listed = (await api.get("/v1/rewards", headers=READ)).json()
    assert listed[0]["stock"] == 0
    await loyalty.check_invariants()


async def test_an_idempotency_key_replays_the_original_response(api: httpx.AsyncClient) -> None:
    await credit(api, "c", 30)
    await reward(api, "cake", 10)
    await reward(api, "tea", 5)
    first = await redeem(api, "c", "cake", key="k-1")
    again = await redeem(api, "c", "cake", key="k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await balance(api, "c") == 20
    other = await redeem(api, "c", "tea", key="k-1")
    assert other.status_code == 422
    assert "different redemption request" in other.json()["error"]["message"]
    missing = await api.post("/v1/members/c/redemptions", json={"reward_id": "tea"}, headers=TILL)
    assert missing.status_code == 422


async def test_insufficient_points_and_unknown_things_are_clear_errors(
    api: httpx.AsyncClient,
) -> None:
    await credit(api, "c", 5)
    await reward(api, "lamp", 50)
    short = await redeem(api, "c", "lamp")
    assert short.status_code == 409
    assert short.json()["error"]["message"] == "balance 5 is less than the 50 points 'Lamp' costs"
    assert (await redeem(api, "c", "nothing")).status_code == 404
    assert (await redeem(api, "nobody", "lamp")).status_code == 404


async def test_tier_restricted_and_inactive_rewards(api: httpx.AsyncClient) -> None:
    await credit(api, "c", 100)
    await reward(api, "lounge", 10, tiers=["Gold"])
    await reward(api, "old", 10, active=False)
    vip = await redeem(api, "c", "lounge")
    assert vip.status_code == 409
    assert "reserved for tiers Gold" in vip.json()["error"]["message"]
    assert (await redeem(api, "c", "old")).status_code == 409


async def test_a_cancelled_redemption_restores_points_and_stock(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await credit(api, "c", 40)
    await reward(api, "bag", 25, stock=1)
    made = (await redeem(api, "c", "bag")).json()
    assert await balance(api, "c") == 15
    url = f"/v1/members/c/redemptions/{made['id']}/cancel"
    cancelled = await api.post(url, headers=TILL)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await api.post(url, headers=TILL)).status_code == 200  # idempotent
    assert await balance(api, "c") == 40
    assert (await api.get("/v1/rewards", headers=READ)).json()[0]["stock"] == 1
    kinds = [e.kind for e in await loyalty.entries("c")]
    assert kinds == ["adjust", "redeem", "cancel"]
    [event] = await loyalty.published("redemption.cancelled")
    assert event["data"]["points"] == 25
    assert (
        await api.post("/v1/members/c/redemptions/nope/cancel", headers=TILL)
    ).status_code == 404
    await loyalty.check_invariants()


async def test_scopes_guard_every_route(api: httpx.AsyncClient) -> None:
    await credit(api, "c", 10)
    assert (await api.get("/v1/members/c")).status_code == 401
    assert (
        await api.post(
            "/v1/members/c/redemptions",
            json={"reward_id": "x"},
            headers={**READ, "Idempotency-Key": "k"},
        )
    ).status_code == 403
    assert (await api.put("/v1/rules", json={}, headers=TILL)).status_code == 403
    assert (
        await api.post(
            "/v1/members/c/adjustments",
            json={"points": 1, "reason": "x", "reference": "y"},
            headers=TILL,
        )
    ).status_code == 403
    assert (await api.get("/v1/reports/liability", headers=READ)).status_code == 403


async def test_a_refusal_is_the_answer_for_its_key_for_good(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    """The chaos-found race: a retry is refused, a late attempt with the same key lands
    after the points arrive. It must be refused too, or the client's "no" becomes a yes."""
    await reward(api, "mug", 20)
    nobody = await redeem(api, "c", "mug", key="k-1")
    assert (nobody.status_code, nobody.json()["error"]["code"]) == (404, "member_not_found")
    assert "Idempotent-Replayed" not in nobody.headers
    await credit(api, "c", 10)
    short = await redeem(api, "c", "mug", key="k-2")
    assert (short.status_code, short.json()["error"]["code"]) == (409, "insufficient_points")
    await credit(api, "c", 50)
    for key, refused in (("k-1", nobody), ("k-2", short)):
        late = await redeem(api, "c", "mug", key=key)
        assert (late.status_code, late.json()) == (refused.status_code, refused.json())
        assert late.headers["Idempotent-Replayed"] == "true"
    assert await balance(api, "c") == 60
    assert (await redeem(api, "c", "mug", key="k-3")).status_code == 201
    assert await balance(api, "c") == 40
    other = await redeem(api, "c", "nothing", key="k-2")  # a refused key, another body
    assert other.status_code == 422
    assert (await redeem(api, "c", "nothing", key="k-4")).status_code == 404
    assert (await redeem(api, "c", "nothing", key="k-4")).headers["Idempotent-Replayed"] == "true"
    await loyalty.check_invariants()


async def test_attempts_under_one_key_all_get_one_answer_while_points_arrive(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    """Taps under one key race a credit that makes the redemption affordable: whatever
    the first attempt decided, every other attempt under that key answers the same."""
    await reward(api, "cap", 30)
    for n in range(8):
        customer = f"c-{n}"
        await credit(api, customer, 10)
        taps = [redeem(api, customer, "cap", key=f"tap-{n}") for _ in range(6)]
        answers = await asyncio.gather(*taps[:3], credit(api, customer, 40), *taps[3:])
        statuses = {a.status_code for a in answers if a is not None}
        bodies = {str(a.json()) for a in answers if a is not None}
        assert len(statuses) == 1, statuses
        assert len(bodies) == 1, bodies
        expected = 20 if statuses == {201} else 50
        assert await balance(api, customer) == expected
    await loyalty.check_invariants()


async def test_erasure_forgets_the_keys_and_their_answers(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await reward(api, "pen", 5)
    await credit(api, "c", 10)
    assert (await redeem(api, "c", "pen", key="k-1")).status_code == 201
    assert (await redeem(api, "c", "lamp", key="k-2")).status_code == 404
    assert await requests_held(loyalty) == [("c", "k-1"), ("c", "k-2")]
    await loyalty.handle(erased("c"))
    assert await requests_held(loyalty) == []


async def requests_held(loyalty: Loyalty) -> list[tuple[str, str]]:
    async with loyalty.db.unit_of_work() as session:
        rows = await session.execute(
            select(RedemptionRequest.customer_id, RedemptionRequest.idempotency_key).order_by(
                RedemptionRequest.idempotency_key
            )
        )
        return [(c, k) for c, k in rows.all()]
