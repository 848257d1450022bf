"""Redemptions over REST while faults are injected, as a careful till would make them.

Each attempt carries an Idempotency-Key and is retried with that same key until the
answer is definite (201, or 404/409 for "no member yet" / "not enough points"), so a
request cut off by a SIGKILL or a database outage either happened once or not at all.
Some attempts are doubled on purpose:

* the same key twice at once (a double tap): both must get one answer, the same
  redemption or the same refusal (a refusal is remembered under its key);
* two keys at once for the same member (two tills racing): each may succeed only if
  the balance covers it; the ledger check proves no redemption overdrew.

What succeeded goes into the oracle: it is the client's own record, not the service's.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.harness import ChaosStack
from tests.chaos.workload import Oracle

REWARD_ID = "chaos-voucher"
REWARD_COST = 150
# A member waits out any one fault, and a 10,000-purchase run on two cores keeps loyalty
# busy for minutes after its database outage; longer means a stuck service.
ATTEMPT_DEADLINE = float(os.environ.get("CHAOS_REDEEM_DEADLINE", "900"))
RETRYABLE = {429, 500, 502, 503, 504}
# Attempts in flight at once. A fleet of tills has a bounded number of requests open; and
# a thousand requests queued inside one httpx pool (100 connections) cost the test
# process a core in httpcore's request-to-connection matching at 10,000 purchases.
IN_FLIGHT = 32


class RedemptionUnanswered(Exception):
    pass


@dataclass
class RedemptionLog:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


async def create_reward(stack: ChaosStack) -> None:
    body = {"name": "Chaos voucher", "points_cost": REWARD_COST}
    response = await stack.client.put(f"{stack.url('loyalty')}/v1/rewards/{REWARD_ID}", json=body)
    response.raise_for_status()


async def redeem(stack: ChaosStack, customer: str, key: str) -> tuple[int, dict[str, Any]]:
    """The definite answer to one redemption, retrying the same key through faults."""
    url = f"{stack.url('loyalty')}/v1/members/{customer}/redemptions"
    started = time.monotonic()
    while time.monotonic() - started < ATTEMPT_DEADLINE:
        try:
            response = await stack.client.post(
                url, json={"reward_id": REWARD_ID}, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError:
            await asyncio.sleep(0.5)
            continue
        if response.status_code in RETRYABLE:
            await asyncio.sleep(0.5)
            continue
        return response.status_code, response.json()
    raise RedemptionUnanswered(f"{customer} {key}: no definite answer in {ATTEMPT_DEADLINE:.0f} s")


def _record(oracle: Oracle, log: RedemptionLog, customer: str, status: int, body: Any) -> None:
    if status == 201:
        oracle.redemptions[customer][body["id"]] = body["points"]
        log.counts["succeeded"] += 1
    elif status in (404, 409):
        log.counts["refused"] += 1
        log.counts[f"refused: {body['error']['code']}"] += 1
    else:
        log.problems.append(f"{customer}: unexpected HTTP {status}: {body}")


async def attempt(
    stack: ChaosStack,
    oracle: Oracle,
    log: RedemptionLog,
    rng: random.Random,
    n: int,
    slots: asyncio.Semaphore,
) -> None:
    customer = rng.choice(sorted(oracle.earned))
    mode = rng.choices(("single", "double-tap", "race"), weights=(6, 2, 2))[0]
    log.counts[mode] += 1
    keys = [f"chaos-{n}-a"] * (2 if mode == "double-tap" else 1)
    if mode == "race":
        keys.append(f"chaos-{n}-b")
    async with slots:  # the seeded choices above are made in attempt order
        answers = await asyncio.gather(*(redeem(stack, customer, k) for k in keys))
    if mode == "double-tap":
        ids = {body.get("id") for status, body in answers if status == 201}
        if len(ids) > 1:
            log.problems.append(f"{customer}: one key, two redemptions {sorted(map(str, ids))}")
        if len({status for status, _ in answers}) > 1:
            log.problems.append(f"{customer}: one key, two answers {answers}")
        made = [(s, b) for s, b in answers if s == 201]
        answers = made[:1] or answers[:1]  # one key is one redemption at most
    for status, body in answers:
        _record(oracle, log, customer, status, body)


async def drive(
    stack: ChaosStack, oracle: Oracle, seed: int, count: int, seconds: float
) -> RedemptionLog:
    """``count`` attempts spread over ``seconds``, each allowed to outlive the window."""
    rng = random.Random(seed * 7919)
    log = RedemptionLog()
    tasks: list[asyncio.Task[None]] = []
    slots = asyncio.Semaphore(IN_FLIGHT)
    started = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, n * seconds / max(count, 1) - (time.monotonic() - started)))
        tasks.append(asyncio.create_task(attempt(stack, oracle, log, rng, n, slots)))
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            log.problems.append(f"{type(outcome).__name__}: {outcome}")
    return log
