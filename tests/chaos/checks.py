"""The invariants, compared with the oracle once the system has drained.

Each check returns a list of human-readable mismatches; the test asserts the total
is zero and prints them, so a failure says which customer and by how much.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import dead_letter_topic
from tests.chaos.harness import ChaosStack
from tests.chaos.workload import Message, Oracle
from tools.stack import SERVICE_NAMES

T = TypeVar("T")
PARALLEL = 8


async def gather_limited(items: Iterable[T], fn: Callable[[T], Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(item: T) -> Any:
        async with gate:
            try:
                return await fn(item)
            except httpx.HTTPError as exc:  # unreadable counts as a mismatch, with the reason
                return f"{item}: could not read ({type(exc).__name__}: {exc})"

    return list(await asyncio.gather(*(one(i) for i in items)))


async def lag_by_partition(stack: ChaosStack, topics: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """``service topic[partition]`` → messages its group has not committed yet."""
    lag: dict[str, int] = {}
    for service, names in topics.items():
        parts = [TopicPartition(stack.topic(t), p) for t in names for p in range(4)]
        probe = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap,
            group_id=stack.prefix + service,  # never subscribes, so never joins the group
            enable_auto_commit=False,
        )
        await probe.start()
        try:
            ends = await probe.end_offsets(parts)
            for tp, end in ends.items():
                behind = end - (await probe.committed(tp) or 0)
                # After the faults Tansu (memory storage) can report an end offset
                # below offsets it has already served and the group committed (seen
                # on every group alike): a commit at or past the end is caught up.
                if behind > 0:
                    lag[f"{service} {tp.topic}[{tp.partition}]"] = behind
        finally:
            await probe.stop()
    return lag


def distinct_mails(stack: ChaosStack) -> dict[str, set[str]]:
    by_recipient: dict[str, set[str]] = {}
    for mail in list(stack.sink.messages):
        for rcpt in mail.rcpt_tos:
            by_recipient.setdefault(rcpt, set()).add(str(mail.message["Message-ID"]))
    return by_recipient


DRAIN_REPORT_SECONDS = 3.0


async def wait_drained(
    stack: ChaosStack,
    oracle: Oracle,
    topics: dict[str, tuple[str, ...]],
    timeout: float,
    say: Callable[[str], None] | None = None,
) -> tuple[float, str]:
    """Seconds until nothing is left to consume, publish or send (or ``timeout``), and
    what was still pending when the time ran out ("" when drained). ``say`` is told what
    is pending every few seconds, for the log of a slow drain."""
    started = time.monotonic()
    told = started
    expected_mails = sum(oracle.emails.values())
    pending = "nothing checked yet"
    while time.monotonic() - started < timeout:
        mails = sum(len(ids) for ids in distinct_mails(stack).values())
        lag = await lag_by_partition(stack, topics)
        backlog = {s: n for s in SERVICE_NAMES if (n := await stack.outbox_rows(s))}
        if mails >= expected_mails and not lag and not backlog:
            return time.monotonic() - started, ""
        pending = f"e-mails {mails}/{expected_mails}; uncommitted {lag}; outbox rows {backlog}"
        if say is not None and time.monotonic() - told >= DRAIN_REPORT_SECONDS:
            told = time.monotonic()
            say(f"draining for {told - started:.0f} s: {pending}")
        await asyncio.sleep(1.0)
    return time.monotonic() - started, pending


async def balances(stack: ChaosStack, oracle: Oracle) -> list[str]:
    async def check(customer: str) -> str | None:
        response = await stack.client.get(f"{stack.url('loyalty')}/v1/members/{customer}")
        earned = oracle.earned[customer]
        if response.status_code == 404:
            return None if earned == 0 else f"{customer}: no member, expected {earned}"
        member = response.json()
        got = (member["balance"], member["lifetime_earned"], member["purchase_count"])
        want = (oracle.balance(customer), earned, oracle.orders[customer])
        return None if got == want else f"{customer}: (balance, earned, purchases) {got} != {want}"

    return [m for m in await gather_limited(oracle.earned, check) if m]


class LedgerUnreadable(Exception):
    pass


async def ledger_entries(stack: ChaosStack, customer: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        query = "?limit=200" + (f"&before_id={before}" if before else "")
        url = f"{stack.url('loyalty')}/v1/members/{customer}/ledger{query}"
        response = await stack.client.get(url)
        if response.status_code != 200:
            raise LedgerUnreadable(f"ledger: HTTP {response.status_code}")
        page = response.json()
        entries.extend(page["items"])
        before = page["next_before_id"]
        if before is None:
            return entries


def ledger_problems(entries: list[dict[str, Any]], oracle: Oracle, customer: str) -> list[str]:
    """Everything wrong with one member's ledger, compared with the oracle."""
    total = sum(e["points"] for e in entries)
    newest = entries[0]["balance_after"] if entries else 0
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_kind.setdefault(entry["kind"], []).append(entry)
    problems = []
    if total != oracle.balance(customer) or newest != total:
        problems.append(f"ledger sum {total}, newest balance_after {newest}")
    earns = Counter(e["purchase_id"] for e in by_kind.pop("earn", []))
    if earns != Counter(oracle.purchase_ids[customer]):
        problems.append(f"earn entries per purchase {dict(earns)}")
    reversed_: Counter[str] = Counter()
    for entry in by_kind.pop("reverse", []):
        reversed_[entry["purchase_id"]] -= entry["points"]
    if +reversed_ != +Counter(oracle.reversed.get(customer, {})):  # + drops the zeros
        problems.append(f"points reversed per purchase {dict(reversed_)}")
    redeems = by_kind.pop("redeem", [])
    made = Counter(e["reference"] for e in redeems)
    if made != Counter(oracle.redemptions.get(customer, {}).keys()):
        problems.append(f"redeem entries {dict(made)} != answered {oracle.redemptions[customer]}")
    problems += [
        f"redemption {e['reference']} overdrew: {e['balance_after']}"
        for e in redeems
        if e["balance_after"] < 0
    ]
    if by_kind:
        problems.append(f"unexpected entries {sorted(by_kind)}")
    return problems


async def ledgers(stack: ChaosStack, oracle: Oracle) -> list[str]:
    """Ledger sums to the projection; exactly the earn, reverse and redeem entries due."""

    async def check(customer: str) -> str | None:
        if not oracle.orders[customer] and customer not in oracle.redemptions:
            return None
        try:
            entries = await ledger_entries(stack, customer)
        except LedgerUnreadable as exc:
            return f"{customer}: {exc}"
        problems = ledger_problems(entries, oracle, customer)
        return f"{customer}: {'; '.join(problems)}" if problems else None

    return [m for m in await gather_limited(oracle.earned, check) if m]


async def order_counts(stack: ChaosStack, oracle: Oracle) -> list[str]:
    async def check(customer: str) -> str | None:
        response = await stack.client.get(f"{stack.url('profile')}/v1/customers/{customer}")
        expected = oracle.orders[customer]
        if response.status_code == 404:
            return None if expected == 0 else f"{customer}: no profile, expected {expected} orders"
        got = response.json()["lifetime"]["order_count"]
        return None if got == expected else f"{customer}: {got} orders in profile != {expected}"

    return [m for m in await gather_limited(oracle.orders, check) if m]


def emails(stack: ChaosStack, oracle: Oracle) -> list[str]:
    """One distinct thank-you (Message-ID) per purchase, to those who gave an address."""
    distinct = distinct_mails(stack)
    problems = [
        f"{rcpt}: {len(distinct.get(rcpt, ()))} distinct e-mails != {want}"
        for rcpt, want in oracle.emails.items()
        if len(distinct.get(rcpt, ())) != want
    ]
    strangers = sorted(set(distinct) - set(oracle.emails))
    problems += [f"{rcpt}: e-mailed but never gave an address" for rcpt in strangers]
    return problems


def email_copies(stack: ChaosStack) -> list[str]:
    """Each thank-you the server received more than once (the same Message-ID): the
    journey step sent twice."""
    received = Counter(
        (rcpt, str(mail.message["Message-ID"]))
        for mail in list(stack.sink.messages)
        for rcpt in mail.rcpt_tos
    )
    return [f"{rcpt}: {mid} received {n} times" for (rcpt, mid), n in received.items() if n > 1]


async def dead_letters(stack: ChaosStack, oracle: Oracle) -> tuple[list[str], int]:
    """Every garbage message parked, nothing else parked; also counts re-published copies.

    Each garbage message is distinct (its key names its topic and index). The consumer
    enqueues its dead letter once (a marker in the same transaction), but the relay
    publishes at least once: killed or cut off from its database between the send and the
    delete, it sends the batch again, as it does any event. Such copies are counted, as
    e-mail copies are; a message parked that is not garbage is a mismatch."""
    problems, copies = [], 0
    for service in SERVICE_NAMES:
        parked = await read_all(stack, stack.topic(dead_letter_topic(service)))
        got = Counter((r.topic, r.key, r.value) for r in parked)
        want = {(stack.topic(m.topic), m.key, m.value) for m in oracle.garbage[service]}
        missing, extra = want - set(got), set(got) - want
        copies += sum(got.values()) - len(got)
        if missing:
            problems.append(f"{service}: {len(missing)} garbage message(s) not parked")
        if extra:
            problems.append(f"{service}: {len(extra)} unexpected dead letter(s)")
    return problems, copies


async def read_all(stack: ChaosStack, topic: str) -> list[Message]:
    """Every record of ``topic``, tagged with the topic it was taken from (x-original-topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[Message] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(_original(r.headers, r.key, r.value) for r in batch)
        return records
    finally:
        await consumer.stop()


def _original(headers: Any, key: bytes | None, value: bytes | None) -> Message:
    origin = dict(headers).get("x-original-topic", b"").decode()
    return Message(origin, key or b"", value or b"")


async def outboxes(stack: ChaosStack) -> list[str]:
    rows = {s: await stack.outbox_rows(s) for s in SERVICE_NAMES}
    return [f"{s}: {n} row(s) left in the outbox" for s, n in rows.items() if n]
