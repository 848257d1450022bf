"""The pipeline's messaging alone, as a floor: `python -m bench.floor`.

What the purchase pipeline costs with no database and no business logic. Each service
is stood in for by a process (``--role``) that does only its messaging, with the
service's own settings and parts:

- it consumes the service's input topics (``INPUT_TOPICS`` of its ``consumers``) in the
  service's group, with ``shared.kafka.make_consumer``, batches spaced as the service's
  (``consumer_batch_spacing_ms``) and offsets committed as often
  (``kafka_commit_interval_ms``);
- it decodes every message with the event contract (``shared.events.decode``);
- per purchase it publishes what the service publishes per purchase in
  ``bench.pipeline``'s run (``bench.paced`` counts one event each for three of them):
  loyalty ``points.earned``, profile the new customer's ``customer.registered``,
  engagement ``outreach.sent`` once the thank-you has been accepted by the SMTP server,
  sent over engagement's own SMTP client (``SmtpConnection``, one session per worker,
  ``sender_concurrency`` workers, the next envelope announced as the sender does);
  feedback publishes nothing.

The broker, the SMTP sink, the purchases, the watchers and the measurement are
``bench.pipeline``'s: a warm-up, a burst, then a paced run at each ``--rate``, each on a
fresh stack, warmed up, and judged by ``Paced.kept_up``. What a stand-in leaves out (SQL,
the inbox, the outbox, rules, templates, a thank-you's wait for the customer's
registration) could only add CPU. So the CPU per purchase printed here is a floor under
any implementation of this event flow on these parts (aiokafka, the contract's models,
this SMTP client, the test broker and sink), and what is left of the machine is the
budget for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Final, Self, TypeVar

import uvloop
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from bench.pipeline import (
    KEPT_UP_AFTER,
    WARM_UP,
    Burst,
    ContactWatch,
    Paced,
    Stack,
    Watch,
    burst,
    harness_ceiling,
    latency,
    paced,
    warm_up,
)
from services.engagement.composing import Mail, Part
from services.engagement.config import EngagementSettings
from services.engagement.mailer import SmtpMailer
from shared.config import ServiceSettings
from shared.events import decode
from shared.events.base import Event
from shared.events.commerce import PurchaseCompleted
from shared.events.engagement import OutreachSent, OutreachSentData
from shared.events.loyalty import PointsEarned, PointsEarnedData
from shared.events.profile import CustomerDetails, CustomerRegistered
from tools.stack import SERVICE_NAMES, ServiceProcess, service_env

READY: Final = "floor role ready"
T = TypeVar("T")
SENDER: Final = "hello@keepwell.local"


def service_parts(name: str) -> tuple[type[ServiceSettings], tuple[str, ...]]:
    """The service ``name``'s settings class and the topics it consumes (unprefixed)."""
    if name not in SERVICE_NAMES:
        raise ValueError(f"no such service: {name}")
    config = importlib.import_module(f"services.{name}.config")
    consumers = importlib.import_module(f"services.{name}.consumers")
    settings: type[ServiceSettings] = getattr(config, f"{name.capitalize()}Settings")
    return settings, tuple(consumers.INPUT_TOPICS)


def published(name: str, purchase: PurchaseCompleted) -> Event | None:
    """What the service ``name`` publishes for a new customer's purchase, besides an
    e-mail (engagement's ``outreach.sent`` follows the SMTP server's answer)."""
    if name == "loyalty":
        return PointsEarned.create(
            subject=purchase.subject,
            source="/loyalty",
            data=PointsEarnedData(
                points=25,
                balance=25,
                reason="base earning",
                source_event_id=purchase.id,
                purchase_id=purchase.data.purchase_id,
                rule_id="base",
            ),
        )
    if name == "profile":
        hint = purchase.data.customer
        return CustomerRegistered.create(
            subject=purchase.subject,
            source="/profile",
            data=CustomerDetails(
                name=hint.name if hint else None,
                email=hint.email if hint else None,
                consents={"email": "opt_in"},
            ),
        )
    return None


def thank_you(purchase: PurchaseCompleted, sender: str) -> tuple[Mail, str]:
    """A plain thank-you of a real one's size, written without a template."""
    hint = purchase.data.customer
    if hint is None or hint.email is None:
        raise ValueError(f"purchase {purchase.id} names no e-mail address")
    text = (
        f"Hello {hint.name or 'there'},\n\nThank you for your purchase "
        f"{purchase.data.purchase_id} of {purchase.data.total.amount} "
        f"{purchase.data.total.currency}.\n\n" + "We look forward to seeing you again.\n" * 8
    )
    body = text.replace("\n", "\r\n").encode()
    head = (
        f"From: Keepwell <{sender}>\r\nTo: {hint.email}\r\nSubject: Thank you\r\n"
        f"Date: {format_datetime(purchase.time)}\r\n"
        f"Message-ID: <{purchase.id}@keepwell.local>\r\n"
    ).encode()
    mail = Mail(head=head, parts=(Part("plain", "7bit", body, text.encode()),), utf8=False)
    return mail, hint.email


@dataclass
class Role:
    """One service's messaging, in this process."""

    name: str
    settings: ServiceSettings
    topics: tuple[str, ...]  # unprefixed

    async def run(self) -> None:
        from shared.kafka import make_consumer, make_producer

        s = self.settings
        consumer = make_consumer(s, *(s.topic(t) for t in self.topics))
        producer = make_producer(s)
        await producer.start()
        await consumer.start()
        mails: asyncio.Queue[PurchaseCompleted] = asyncio.Queue()
        workers: list[asyncio.Task[None]] = []
        if isinstance(s, EngagementSettings):
            mailer = SmtpMailer(s)
            workers = [
                asyncio.create_task(self._send_mails(mailer, mails, producer))
                for _ in range(s.sender_concurrency)
            ]
        print(READY, flush=True)
        spacing = s.consumer_batch_spacing_ms / 1000
        commit_every = s.kafka_commit_interval_ms / 1000
        last_start = last_commit = time.monotonic()
        uncommitted = False
        try:
            while True:
                if (wait := last_start + spacing - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                polled = await consumer.getmany(
                    timeout_ms=1000, max_records=s.kafka_max_poll_records
                )
                if polled:
                    last_start = time.monotonic()
                    await self._handle(polled, producer, mails)
                    uncommitted = True
                if uncommitted and time.monotonic() - last_commit >= commit_every:
                    await consumer.commit()
                    last_commit, uncommitted = time.monotonic(), False
        finally:
            for w in workers:
                w.cancel()
            await consumer.stop()
            await producer.stop()

    async def _handle(
        self,
        polled: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        producer: AIOKafkaProducer,
        mails: asyncio.Queue[PurchaseCompleted],
    ) -> None:
        sends = []
        for record in itertools.chain.from_iterable(polled.values()):
            # Only valid events are sent in this run: an invalid one is a bug and stops
            # the stand-in (the real runner dead-letters it).
            event = decode(record.value)
            if not isinstance(event, PurchaseCompleted):
                continue
            if self.name == "engagement":
                mails.put_nowait(event)
            elif (out := published(self.name, event)) is not None:
                topic = self.settings.topic(type(out).TOPIC)
                sends.append(await producer.send(topic, out.to_json(), key=out.key))
        if sends:
            await asyncio.gather(*sends)

    async def _send_mails(
        self,
        mailer: SmtpMailer,
        mails: asyncio.Queue[PurchaseCompleted],
        producer: AIOKafkaProducer,
    ) -> None:
        """One worker: as engagement's sender, it names the next message's envelope with
        this one's content when it already has the next (``smtp_announce_next``)."""
        assert isinstance(self.settings, EngagementSettings)
        announce = self.settings.smtp_announce_next
        connection = mailer.connection()
        try:
            purchase = await mails.get()
            mail = thank_you(purchase, SENDER)
            while True:
                following = None
                if announce and not mails.empty():
                    following = mails.get_nowait()
                then = None if following is None else thank_you(following, SENDER)
                await connection.send(mail[0], recipient=mail[1], then=then)
                sent = OutreachSent.create(
                    subject=purchase.subject,
                    source="/engagement",
                    data=OutreachSentData(
                        outreach_id=purchase.id,
                        journey="thank_you",
                        channel="email",
                        template="thank_you",
                        trigger_event_id=purchase.id,
                    ),
                )
                topic = self.settings.topic(OutreachSent.TOPIC)
                await producer.send(topic, sent.to_json(), key=sent.key)
                if following is None or then is None:  # both or neither (for the types)
                    purchase = await mails.get()
                    mail = thank_you(purchase, SENDER)
                else:
                    purchase, mail = following, then
        finally:
            await connection.close()


async def serve(name: str) -> None:
    from shared import gc_tuning

    settings_class, topics = service_parts(name)
    settings = settings_class()  # from the environment tools.stack.service_env writes
    with gc_tuning.tuned(
        service=name,
        gen0_threshold=settings.gc_gen0_threshold,
        freeze=settings.gc_freeze_after_start,
    ):
        await Role(name, settings, topics).run()


@dataclass
class RoleProcess(ServiceProcess):
    """A stand-in in its own process, started and stopped as a service is."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.floor", "--role", self.name]

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # ``wait_ready`` looks for READY in this run's log
        return super().start()

    def answers_ready(self) -> bool:
        return READY in self.log_path.read_text(errors="replace")


@dataclass
class FloorResult:
    burst: Burst
    runs: list[Paced]
    warm_up: float


async def measure(n: int, rates: list[float], seconds: int, drain: float) -> FloorResult:
    """A burst of ``n`` on a stack of stand-ins, then a paced run at each rate, each on a
    fresh stack (as ``bench.pipeline`` does: the test broker's fetches cost more the more
    it holds), every stack warmed up first."""
    warmed, measured = await _on_fresh_stack(
        lambda stack, watch, _: burst(
            stack.bootstrap, stack.prefix, watch, stack.sink, n, stack.pids
        )
    )
    runs = [(await _on_fresh_stack(_paced_at(rate, seconds, drain)))[1] for rate in rates]
    return FloorResult(measured, runs, warmed)


def _paced_at(
    rate: float, seconds: int, drain: float
) -> Callable[[Stack, Watch, ContactWatch], Awaitable[Paced]]:
    def run(stack: Stack, watch: Watch, contacts: ContactWatch) -> Awaitable[Paced]:
        args = (stack.bootstrap, stack.prefix, watch, contacts, stack.sink)
        return paced(*args, rate, seconds, drain, stack.pids)

    return run


async def _on_fresh_stack(
    run: Callable[[Stack, Watch, ContactWatch], Awaitable[T]],
) -> tuple[float, T]:
    """``run`` on a fresh broker, SMTP sink and stand-ins, once they are warmed up, with
    the warm-up's seconds; if a stand-in exits meanwhile, an error naming it, not a wait
    for effects that won't come."""
    stack = await Stack.open("sqlite")  # no database is made: the stand-ins have none
    try:
        for name in SERVICE_NAMES:
            env = service_env(
                name, bootstrap=stack.bootstrap, prefix=stack.prefix, smtp_port=stack.sink.port
            )
            log = Path("var/bench-logs") / f"floor-{name}.log"
            stack.services.append(RoleProcess(name=name, port=0, env=env, log_path=log).start())
        for s in stack.services:
            await asyncio.to_thread(s.wait_ready)

        async def warm_then_run() -> tuple[float, T]:
            watch, contacts = stack.watch()
            took = await warm_up(stack.bootstrap, stack.prefix, watch, stack.sink, WARM_UP)
            return took, await run(stack, watch, contacts)

        task = asyncio.create_task(warm_then_run())
        watchdog = asyncio.create_task(_first_exit(stack.services))
        await asyncio.wait((task, watchdog), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            raise RuntimeError(f"{watchdog.result()}: the run would wait for it in vain")
        watchdog.cancel()
        return task.result()
    finally:
        await stack.close()


async def _first_exit(processes: list[ServiceProcess]) -> str:
    """Which stand-in exited first (its log says why); waits until one does."""
    while True:
        for p in processes:
            if not p.alive:
                return f"the {p.name} stand-in exited; see {p.log_path}"
        await asyncio.sleep(0.5)


def _cpu(cpu_ms: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu_ms.items())


def report(r: FloorResult) -> None:
    b = r.burst
    cpus = os.cpu_count() or 1
    stand_ins = sum(b.cpu_ms.get(name, 0.0) for name in SERVICE_NAMES)
    print(f"\nThe messaging floor (no database, no business logic), {cpus} CPUs")
    print(f"first {WARM_UP} purchases after start-up: {r.warm_up:.1f} s")
    print(
        f"burst: to points {b.points:.0f}/s, to profile {b.profile:.0f}/s, "
        f"to e-mail {b.mail:.0f}/s; end to end {b.end_to_end:.0f}/s ({b.mails} e-mails)"
    )
    print(f"  CPU per purchase, ms: {_cpu(b.cpu_ms)}; machine {b.busy:.0%} busy")
    harness_ms, ceiling = harness_ceiling(b.cpu_ms, cpus)
    print(
        f"  the four stand-ins {stand_ins:.2f} ms, the test's own processes {harness_ms:.2f} ms"
        f" (alone they would fill the machine at {ceiling:.0f}/s)"
    )
    for run in r.runs:
        verdict = "kept up" if run.kept_up else f"fell behind (got through {run.achieved:.0f}/s)"
        stand_ins = sum(run.cpu_ms.get(name, 0.0) for name in SERVICE_NAMES)
        print(
            f"paced at {run.rate:g}/s: {verdict}; {len(run.points)}/{run.sent} points,"
            f" {len(run.mails)}/{run.sent} e-mails, last in {run.waited:.1f} s after the last"
            f" send (kept up: within {KEPT_UP_AFTER} s)"
        )
        print(f"  points {latency(run.points)}; e-mail {latency(run.mails)}")
        print(f"  CPU per purchase, ms: {_cpu(run.cpu_ms)}; machine {run.busy:.0%} busy")
        print(f"  the four stand-ins {stand_ins:.2f} ms per purchase")


def summary_rows(r: FloorResult, cpus: int) -> list[tuple[str, str, str]]:
    """``bench.all``'s rows for the floor (label, value, note): its burst, and each paced
    run with what its stand-ins and the test's own processes took per purchase, against
    what ``cpus`` CPUs give per purchase at that rate."""
    rows = [
        ("messaging floor, no database: burst end to end, /s", f"{r.burst.end_to_end:,.0f}", "")
    ]
    for run in r.runs:
        stand_ins = sum(run.cpu_ms.get(name, 0.0) for name in SERVICE_NAMES)
        harness_ms, _ = harness_ceiling(run.cpu_ms, cpus)
        verdict = "kept up" if run.kept_up else f"fell behind ({run.achieved:,.0f}/s)"
        rows.append(
            (
                f"messaging floor at {run.rate:,.0f}/s: stand-ins + harness ms (busy)",
                f"{verdict}, {stand_ins:.2f} + {harness_ms:.2f} ({run.busy:.0%})",
                f"the machine: {cpus * 1000 / run.rate:.2f} ms per purchase",
            )
        )
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=SERVICE_NAMES, help="run one stand-in (internal)")
    parser.add_argument("--purchases", type=int, default=3000, help="burst size")
    parser.add_argument(
        "--rate", type=float, action="append", help="paced rate, purchases/s (repeatable)"
    )
    parser.add_argument("--seconds", type=int, default=15, help="length of each paced run")
    parser.add_argument("--drain", type=float, default=30, help="wait for a paced run's tail")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.role:
        uvloop.run(serve(args.role))
        return
    rates = args.rate or [1000.0]
    report(uvloop.run(measure(args.purchases, rates, args.seconds, args.drain)))


if __name__ == "__main__":
    main()
