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
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from shared import taskdump
from tests.chaos import checks, redeem
from tests.chaos.faults import FaultLog, inject, schedule
from tests.chaos.harness import LOG_DIR, ChaosStack, consumed_topics
from tests.chaos.workload import Message, Spec, Workload, build

pytestmark = pytest.mark.chaos

SEED = int(os.environ.get("CHAOS_SEED", "9"))
# The size; CHAOS_PURCHASES=1000 CHAOS_PRODUCE_SECONDS=30 for a quick run.
PURCHASES = int(os.environ.get("CHAOS_PURCHASES", "10000"))
PRODUCE_SECONDS = float(os.environ.get("CHAOS_PRODUCE_SECONDS", "60"))
DRAIN_TIMEOUT = float(os.environ.get("CHAOS_DRAIN_TIMEOUT", "1200"))
# Producing, the faults and the redemptions together; past this the test fails and
# prints where each unfinished part was waiting instead of hanging.
PHASE_TIMEOUT = float(os.environ.get("CHAOS_PHASE_TIMEOUT", "1800"))
CHUNK = 100


def say(text: str) -> None:
    """Progress, live: to the real stderr, past the test's capsys capture."""
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.__stderr__, flush=True)


def dump_tasks() -> None:
    """On SIGUSR1: where every task of the test process is waiting."""
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        say(f"task {task.get_name()}: " + " -> ".join(taskdump.await_chain(task)))


async def workload_phase(*parts: tuple[str, Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run the parts together; if they are not all done in PHASE_TIMEOUT, fail naming
    the unfinished ones and where each waits."""
    tasks = {asyncio.create_task(coro, name=name): name for name, coro in parts}
    _, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT)
    if pending:
        where = [f"{tasks[t]}: {' -> '.join(taskdump.await_chain(t))}" for t in pending]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        pytest.fail(f"not done after {PHASE_TIMEOUT:.0f} s:\n" + "\n".join(where))
    return [t.result() for t in tasks]


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
    reparked: int,
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
        ("dead-letter copies re-published by a relay", reparked),
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
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    say(f"{len(workload.messages)} messages over {PRODUCE_SECONDS:.0f} s, {len(faults)} faults")
    _, _, redemptions = await workload_phase(
        ("produce", produce_paced(chaos, workload.messages, PRODUCE_SECONDS)),
        ("faults", inject(chaos, faults, log, say)),
        ("redemptions", redeem.drive(chaos, workload.oracle, SEED, attempts, PRODUCE_SECONDS)),
    )
    assert not chaos.down - {"loyalty-b"}, f"still down after the faults: {chaos.down}"
    say("workload and faults done; waiting for the drain")
    drain, pending = await checks.wait_drained(chaos, workload.oracle, topics, DRAIN_TIMEOUT, say)
    say(f"drain: {drain:.0f} s {pending or 'drained'}; checking invariants")
    oracle = workload.oracle
    parking_problems, reparked = await checks.dead_letters(chaos, oracle)
    mismatches = {
        "balances": await checks.balances(chaos, oracle),
        "ledgers": await checks.ledgers(chaos, oracle),
        "order counts": await checks.order_counts(chaos, oracle),
        "e-mails": checks.emails(chaos, oracle),
        "e-mails sent twice": checks.email_copies(chaos),
        "dead letters": parking_problems,
        "outboxes": await checks.outboxes(chaos),
        "redemption answers": redemptions.problems,
        "not drained in time": [pending] if pending else [],
    }
    report = summary(workload, log, redemptions, drain, mismatches, reparked)
    (LOG_DIR / f"summary-seed{SEED}.txt").write_text(report + "\n")
    with capsys.disabled():
        print("\n" + report)
    assert len(log.done) == len(faults)
    assert sum(len(found) for found in mismatches.values()) == 0, report
