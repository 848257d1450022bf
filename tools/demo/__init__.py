"""`make demo`: a simulated retailer driven through the public entry points of a running stack.

A few hundred customers with their own purchase rhythms over the last 18 months (event
time): regulars, monthly and occasional buyers, one-off buyers, newcomers, and customers who
drift away. Purchases and refunds go to profile's ``POST /v1/events`` (as a storefront would),
then survey answers and complaints to feedback, reward redemptions to loyalty, a churn refit
to engagement, and a few customers come back today. Prints the dashboard's address.

Needs `make run` up (ports from KEEPWELL_PORT_BASE, token from var/dev-token).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tools.demo.simulation import LOCAL, Shopper, purchase, simulate
from tools.stack import ROOT, SERVICE_NAMES

REWARD = "demo-coffee"
STARTED = [time.monotonic()]


def say(message: str) -> None:
    print(f"  {time.monotonic() - STARTED[0]:5.1f} s  {message}", flush=True)


SURVEY = "demo-nps"


@dataclass
class Stack:
    profile: str
    loyalty: str
    engagement: str
    feedback: str
    token: str

    @classmethod
    def local(cls) -> Stack:
        base = int(os.environ.get("KEEPWELL_PORT_BASE", "8000"))
        urls = {n: f"http://127.0.0.1:{base + i + 1}" for i, n in enumerate(SERVICE_NAMES)}
        token = (ROOT / "var" / "dev-token").read_text().strip()
        return cls(**urls, token=token)

    @property
    def dashboard(self) -> str:
        return f"{self.engagement}/dashboard#token={self.token}"


async def call(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """One request; a 503 (a service busy or its database locked) is retried for a while."""
    for attempt in range(8):
        response = await client.request(method, url, **kw)
        if response.status_code != 503:
            break
        await asyncio.sleep(min(0.2 * 2**attempt, 3.0))
    return response


async def post_events(client: httpx.AsyncClient, stack: Stack, events: list[Any]) -> None:
    batches = [events[i : i + 500] for i in range(0, len(events), 500)]
    limit = asyncio.Semaphore(4)

    async def post(batch: list[Any]) -> None:
        body = "[" + b",".join(e.to_json() for e in batch).decode() + "]"
        async with limit:
            r = await call(client, "POST", f"{stack.profile}/v1/events", content=body)
        r.raise_for_status()

    await asyncio.gather(*(post(b) for b in batches))


async def until(what: str, check: Callable[[], Awaitable[bool]], within: float = 60) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            say(f"{what}: done")
            return True
        await asyncio.sleep(0.5)
    say(f"gave up waiting for {what} after {within:.0f} s")
    return False


Step = Callable[[httpx.AsyncClient, Stack, list[Shopper], random.Random], Awaitable[None]]


async def step(name: str, run: Step, *args: Any) -> None:
    """A side step that a misbehaving service must not stop: the demo says so and goes on."""
    try:
        await run(*args)
    except httpx.HTTPStatusError as exc:
        r = exc.response
        say(f"{name} skipped: {r.request.method} {r.url.path} answered {r.status_code}: {r.text}")


async def answers(
    client: httpx.AsyncClient, stack: Stack, shoppers: list[Shopper], rng: random.Random
) -> None:
    question = {
        "id": "nps",
        "kind": "nps",
        "text": {"en": "Would you recommend us?", "vi": "Bạn có giới thiệu chúng tôi?"},
    }
    survey = {"id": SURVEY, "name": "Demo NPS", "kind": "nps", "questions": [question]}
    r = await call(client, "POST", f"{stack.feedback}/v1/surveys", json=survey)
    if r.status_code not in (201, 409):
        r.raise_for_status()
    answered = 0
    for s in rng.sample(shoppers, len(shoppers) * 2 // 5):
        low = s.persona in ("drifter", "one-off")
        score = rng.choice([2, 4, 6, 7, 8]) if low else rng.choice([7, 8, 9, 9, 10, 10])
        body = {
            "customer_id": s.customer_id,
            "survey_id": SURVEY,
            "answers": {"nps": score},
            "idempotency_key": f"{SURVEY}-{s.customer_id}",
        }
        r = await call(client, "POST", f"{stack.feedback}/v1/responses/staff", json=body)
        r.raise_for_status()
        answered += 1
    say(f"feedback: {answered} NPS answers")


async def complaints(
    client: httpx.AsyncClient, stack: Stack, shoppers: list[Shopper], rng: random.Random
) -> None:
    opened = 0
    for s in rng.sample(shoppers, max(3, len(shoppers) // 20)):
        body = {
            "customer_id": s.customer_id,
            "category": rng.choice(["delivery", "quality", "billing"]),
            "severity": rng.choice(["low", "medium", "high"]),
            "channel": "phone",
            "summary": "demo complaint",
        }
        r = await call(client, "POST", f"{stack.feedback}/v1/complaints", json=body)
        r.raise_for_status()
        opened += 1
        if rng.random() < 0.5:
            done = await call(
                client,
                "POST",
                f"{stack.feedback}/v1/complaints/{r.json()['id']}/status",
                json={"status": "resolved"},
            )
            done.raise_for_status()
    say(f"feedback: {opened} complaints, about half of them resolved")


async def redemptions(
    client: httpx.AsyncClient, stack: Stack, shoppers: list[Shopper], rng: random.Random
) -> None:
    reward = {"name": "Free coffee", "points_cost": 50}
    (
        await call(client, "PUT", f"{stack.loyalty}/v1/rewards/{REWARD}", json=reward)
    ).raise_for_status()
    loyal = [s for s in shoppers if s.persona in ("regular", "monthly")]
    done = refused = 0
    for s in rng.sample(loyal, min(len(loyal), max(3, len(shoppers) // 8))):
        r = await call(
            client,
            "POST",
            f"{stack.loyalty}/v1/members/{s.customer_id}/redemptions",
            json={"reward_id": REWARD},
            headers={"Idempotency-Key": f"{REWARD}-{s.customer_id}"},
        )
        if r.status_code in (404, 409):  # not a member yet, or not enough points
            refused += 1
        else:
            r.raise_for_status()
            done += 1
    say(f"loyalty: {done} rewards redeemed ({refused} refused: too few points)")


async def report(client: httpx.AsyncClient, stack: Stack, name: str, since: datetime) -> Any:
    to = (datetime.now(UTC) + timedelta(days=1)).date()
    r = await call(
        client,
        "GET",
        f"{stack.engagement}/v1/reports/{name}",
        params={"from": str(since.date()), "to": str(to)},
    )
    return r.json() if r.status_code == 200 else None


async def run(stack: Stack, *, customers: int = 300, seed: int = 7) -> None:
    STARTED[0] = time.monotonic()
    now = datetime.now(UTC)
    rng = random.Random(seed)
    shoppers = simulate(customers, seed, now)
    events = sorted((e for s in shoppers for e in s.events), key=lambda e: e.time)
    since = now - timedelta(days=600)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as client:
        await post_events(client, stack, events)
        say(f"purchases: {len(events)} purchase and refund events for {customers} customers")
        buyers = sum(1 for s in shoppers if s.kept)

        async def engagement_has_them() -> bool:
            body = await report(client, stack, "value", since)
            return body is not None and body["customers"] >= buyers

        await until("engagement recording every purchase", engagement_has_them, within=240)
        for name, side in (("answers", answers), ("complaints", complaints)):
            await step(name, side, client, stack, shoppers, rng)
        await step("redemptions", redemptions, client, stack, shoppers, rng)
        (
            await call(client, "POST", f"{stack.engagement}/v1/models/refit", json={})
        ).raise_for_status()

        async def scored() -> bool:
            body = await report(client, stack, "engagement", since)
            return body is not None and body["at_risk"]["high_now"] > 0

        await until("churn scores after the refit", scored, within=30)
        back = [s for s in shoppers if s.persona == "drifter"][: max(2, customers // 30)]
        recent = [s for s in shoppers if s.last and s.last > now - timedelta(days=5)][:10]
        today = [purchase(rng, s, datetime.now(LOCAL), 999, now)[0] for s in back + recent]
        await post_events(client, stack, today)
        say(f"comebacks: {len(back)} drifting and {len(recent)} recent customers bought today")
    say(f"done. The dashboard:\n\n  {stack.dashboard}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not (ROOT / "var" / "dev-token").exists():
        raise SystemExit("no var/dev-token: start the platform first (`make run`)")
    stack = Stack.local()
    print(f"Driving a simulated retailer against {stack.profile} .. {stack.feedback}")
    try:
        asyncio.run(run(stack, customers=args.customers, seed=args.seed))
    except httpx.ConnectError as exc:
        raise SystemExit(f"cannot reach a service ({exc}): is `make run` up and ready?") from exc


__all__ = ["Stack", "main", "run", "simulate"]
