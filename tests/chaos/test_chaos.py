"""Issue 9, "Prove it": no loss and no double counting while things break.

A seeded workload (CHAOS_PURCHASES purchases across 1,000 customers, duplicates,
out-of-order delivery, garbage on every input topic) flows through the real stack
while faults are injected at seeded random moments; after the system drains, every
invariant is compared with the oracle computed from the workload alone.
See docs/chaos.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from tests.chaos import checks, redeem
from tests.chaos.faults import FaultLog, inject, schedule
from tests.chaos.harness import LOG_DIR, ChaosStack, consumed_topics
from tests.chaos.workload import Message, Spec, Workload, build

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("CHAOS_SEED", "9"))
# The issue asks for 10,000; a 10,000 run on this 2-core machine has not drained yet
# (docs/chaos.md, "Size and time"), so the default is 1,000 (about three minutes).
PURCHASES = int(os.environ.get("CHAOS_PURCHASES", "1000"))
PRODUCE_SECONDS = float(os.environ.get("CHAOS_PRODUCE_SECONDS", "30"))
DRAIN_TIMEOUT = float(os.environ.get("CHAOS_DRAIN_TIMEOUT", "120"))
CHUNK = 100


async def produce_paced(stack: ChaosStack, messages: list[Message], seconds: float) -> None:
    """Send the workload in chunks spread evenly over ``seconds``."""
    started = time.monotonic()
    chunks = [messages[i : i + CHUNK] for i in range(0, len(messages), CHUNK)]
    for index, chunk in enumerate(chunks):
        await asyncio.sleep(max(0.0, index * seconds / len(chunks) - (time.monotonic() - started)))
        await stack.send(chunk)


def summary(
    workload: Workload,
    log: FaultLog,
    redemptions: redeem.RedemptionLog,
    drain: float,
    mismatches: dict[str, list[str]],
    resent: int,
) -> str:
    rows = [
        ("purchases (distinct)", workload.counts["purchases"]),
        ("refunds (distinct)", workload.counts["refunds"]),
        ("refunds re-sent under a new event id", workload.counts["refunds_resent"]),
        *((f"redemptions: {kind}", n) for kind, n in sorted(redemptions.counts.items())),
        ("duplicates re-sent", workload.counts["duplicates"]),
        ("garbage messages", workload.counts["garbage"]),
        ("messages sent", len(workload.messages)),
        *((f"fault: {kind}", n) for kind, n in sorted(log.by_kind().items())),
        ("seconds to drain", f"{drain:.1f}"),
        ("e-mail copies re-sent (same Message-ID)", resent),
        *((f"mismatches: {name}", len(found)) for name, found in mismatches.items()),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += [f"  {kind} {target}: {a:.1f}s → {b:.1f}s" for kind, target, a, b in log.done]
    for name, found in mismatches.items():
        lines += [f"  {name}: {m}" for m in found[:10]]
    return "\n".join(lines)


async def test_no_loss_and_no_double_counting_under_faults(
    chaos: ChaosStack, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = consumed_topics()
    workload = build(Spec(seed=SEED, purchases=PURCHASES), topics)
    faults = schedule(random.Random(SEED), PRODUCE_SECONDS)
    log = FaultLog()
    await redeem.create_reward(chaos)
    attempts = max(1, PURCHASES // 10)
    _, _, redemptions = await asyncio.gather(
        produce_paced(chaos, workload.messages, PRODUCE_SECONDS),
        inject(chaos, faults, log),
        redeem.drive(chaos, workload.oracle, SEED, attempts, PRODUCE_SECONDS),
    )
    assert not chaos.down - {"loyalty-b"}, f"still down after the faults: {chaos.down}"
    drain, pending = await checks.wait_drained(chaos, workload.oracle, topics, DRAIN_TIMEOUT)
    oracle = workload.oracle
    mail_problems, resent = checks.emails(chaos, oracle)
    mismatches = {
        "balances": await checks.balances(chaos, oracle),
        "ledgers": await checks.ledgers(chaos, oracle),
        "order counts": await checks.order_counts(chaos, oracle),
        "e-mails": mail_problems,
        "dead letters": await checks.dead_letters(chaos, oracle),
        "outboxes": await checks.outboxes(chaos),
        "redemption answers": redemptions.problems,
        "not drained in time": [pending] if pending else [],
    }
    report = summary(workload, log, redemptions, drain, mismatches, resent)
    (LOG_DIR / f"summary-seed{SEED}.txt").write_text(report + "\n")
    with capsys.disabled():
        print("\n" + report)
    assert len(log.done) == len(faults)
    assert sum(len(found) for found in mismatches.values()) == 0, report
