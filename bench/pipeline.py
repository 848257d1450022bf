"""Purchase pipeline benchmark: `python -m bench.pipeline [--db sqlite|postgres|both]`.

(`make bench` runs it on both databases together with the REST benchmark: bench.all.)
Starts its own broker, SMTP sink and the four services as processes, then prints:
  1. the raw broker floor: produce→consume rate for messages of the same size;
  2. after a warm-up (``WARM_UP`` purchases sent and all their effects waited for, so
     every consumer has joined its group; the seconds that took are printed), sustained
     purchases/s for a burst of N purchases through loyalty (purchase →
     points.earned on Kafka, which implies the points are committed and visible over
     REST), profile (its consumer group has committed every purchase, so the 360° view
     shows them) and engagement (purchase → thank-you accepted by SMTP);
  3. latency percentiles, each purchase stamped with its send time by a producer pacing
     to the offered rate: at 80 % of the slowest of those three rates, and at a fixed
     offered load (``--rate``); a paced run waits up to ``--drain`` seconds for its
     purchases, so a saturated run reports how far behind it fell, not a cut-off sample;
     each paced run is made on a fresh stack, warmed up and given the same burst
     (unless ``--no-fresh-stack``): the test broker's memory storage costs more CPU per
     fetch the more it holds, and a run late in the benchmark paid for all the
     purchases before it; on PostgreSQL a paced run comes after a VACUUM (ANALYZE) of every
     database (unless ``--no-vacuum``; see ``vacuum``);
  4. the sustained rate: the highest offered rate a paced run of ``--seconds`` kept up
     with (see ``Paced.kept_up``), searched from the 80 % run (``sustain``);
     a burst works through a backlog in large batches, so it overstates what the
     pipeline sustains when purchases arrive steadily;
  5. peak RSS of each service (the largest over every stack the benchmark started);
  6. the CPU per purchase of the test's own processes in the burst (broker, SMTP sink,
     load generator), and the rate at which they alone would fill the machine
     (``harness_ceiling``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench import history as purchase_history
from shared.config import ServiceSettings
from shared.db import is_sqlite
from shared.events import all_topics
from shared.events.commerce import PurchaseCompleted, PurchaseCompletedData
from shared.events.common import ContactHint
from shared.events.profile import PROFILE_TOPIC, CustomerRegistered
from shared.kafka import create_topics
from tools import broker as tansu
from tools import smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import SERVICE_NAMES, ServiceProcess, migrate, service_env

REGISTERED: str = CustomerRegistered.model_fields["type"].default

# Purchases sent, and waited for, before the burst: see ``warm_up``.
WARM_UP = 40

# See ``Paced.kept_up``: seconds after a paced run's last send within which every effect
# must be in for the run to count as kept up.
KEPT_UP_AFTER = 1.5

# ``sustain``'s search: its step down (up: divided by it), when it stops, how many runs.
SUSTAIN_STEP = 0.8
SUSTAIN_WITHIN = 0.1
SUSTAIN_PROBES = 4

# The paced producer's linger: Kafka's own producer default since 4.0 (KIP-1030), and
# the services' ``kafka_linger_ms``. Each purchase's latency is measured from just before
# it is handed to the producer, so the linger is part of it.
PACED_LINGER_MS = 5


def make_purchase(customer: str, i: int, tag: str = "B") -> PurchaseCompleted:
    """Purchase ``{tag}-{i}``: every run needs its own tag, or loyalty and engagement
    rightly treat a repeated purchase id as the same purchase and do nothing."""
    return PurchaseCompleted.create(
        subject=customer,
        source="/bench/pos",
        data=PurchaseCompletedData(
            purchase_id=f"{tag}-{i}",
            channel="store",
            store_id="s-1",
            total={"amount": Decimal("25.50"), "currency": "EUR"},
            customer=ContactHint(name=f"Customer {customer}", email=f"{customer}@bench.test"),
        ),
    )


async def follow(
    bootstrap: str,
    topic: str,
    stop: asyncio.Event,
    seen: Callable[[float, ConsumerRecord[bytes, bytes]], None],
) -> None:
    """Read ``topic`` from the start until ``stop``, handing each record to ``seen`` with
    the time its fetch came back."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for r in records:
                    seen(now, r)
    finally:
        await consumer.stop()


@dataclass
class Watch:
    """Consumes loyalty.events and records when each purchase's points arrived, and when
    loyalty's relay produced them (the record's timestamp, set by the producer)."""

    bootstrap: str
    topic: str
    arrived: dict[str, float] = field(default_factory=dict)
    relayed: dict[str, float] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        await follow(self.bootstrap, self.topic, stop, self._seen)

    def _seen(self, now: float, record: ConsumerRecord[bytes, bytes]) -> None:
        # Two fields of an event the service has validated: read, not validated again
        # (the benchmark's own CPU counts against the two cores it measures).
        purchase = json.loads(record.value or b"{}").get("data", {}).get("source_event_id")
        if purchase is not None and purchase not in self.arrived:
            self.arrived[purchase] = now
            self.relayed[purchase] = record.timestamp / 1000


@dataclass
class ContactWatch:
    """Consumes profile.events and records when profile's relay produced each new
    customer's ``customer.registered``: engagement needs it (the address and consents)
    before it can send a first-time customer's thank-you."""

    bootstrap: str
    topic: str
    relayed: dict[str, float] = field(default_factory=dict)  # by customer id

    async def run(self, stop: asyncio.Event) -> None:
        await follow(self.bootstrap, self.topic, stop, self._seen)

    def _seen(self, now: float, record: ConsumerRecord[bytes, bytes]) -> None:
        event = json.loads(record.value or b"{}")
        if event.get("type") == REGISTERED:
            self.relayed.setdefault(event["subject"], record.timestamp / 1000)


async def group_caught_up(bootstrap: str, group: str, topic: str, partitions: int = 4) -> bool:
    """Whether ``group`` has committed every message of ``topic`` (a probe never joins it)."""
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        ends = await probe.end_offsets(parts)
        for tp, end in ends.items():
            if (await probe.committed(tp) or 0) < end:
                return False
        return True
    finally:
        await probe.stop()


async def raw_floor(bootstrap: str, topic: str, n: int, size: int) -> float:
    payload = os.urandom(size // 2).hex().encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await producer.start()
    await consumer.start()
    started = time.time()
    for i in range(n):
        await producer.send(topic, payload, key=str(i % 1000).encode())
    await producer.flush()
    got = 0
    while got < n:
        got += sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())
    elapsed = time.time() - started
    await producer.stop()
    await consumer.stop()
    return n / elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


REST = "rest of machine"  # PostgreSQL, the kernel, anything else running
# The test's own processes: stand-ins for what a deployment runs on other machines (the
# Kafka cluster, the mail relay) and the load generator, none of them Keepwell's.
HARNESS = ("broker", "SMTP sink", "benchmark")


def harness_ceiling(cpu_ms: dict[str, float], cpus: int) -> tuple[float, float]:
    """The test's own processes' CPU per purchase (ms, ``HARNESS``), and the purchases/s
    ``cpus`` CPUs could take at that cost alone: what no change to the services can pass
    on this machine, since they share its CPUs."""
    ms = sum(cpu_ms.get(name, 0.0) for name in HARNESS)
    return ms, (cpus * 1000 / ms if ms > 0 else float("inf"))


@dataclass(frozen=True)
class CpuMark:
    """CPU used so far by each process of ``pids`` and by the whole machine."""

    processes: dict[str, float]  # seconds
    busy: float  # seconds, all CPUs
    total: float  # seconds, all CPUs, busy or idle

    @classmethod
    def now(cls, pids: dict[str, int]) -> CpuMark:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + fields[4]  # idle and iowait
        return cls(cpu_now(pids), (sum(fields) - idle) / tick, sum(fields) / tick)

    def since(self, before: CpuMark, n: int) -> tuple[dict[str, float], float]:
        """Per purchase (ms) by process, plus REST; and the machine's busy share."""
        used = {k: self.processes[k] - before.processes[k] for k in self.processes}
        busy = self.busy - before.busy
        per = {k: v * 1000 / max(1, n) for k, v in used.items()}
        per[REST] = max(0.0, busy - sum(used.values())) * 1000 / max(1, n)
        return per, busy / max(1e-9, self.total - before.total)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Burst:
    points: float  # purchases/s
    profile: float
    mail: float
    mails: int
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per purchase, by process
    busy: float = float("nan")  # share of the machine's CPUs busy during the burst

    @property
    def end_to_end(self) -> float:
        return min(self.points, self.profile, self.mail)


@dataclass
class Drive:
    """When a batch of purchases, sent as fast as the producer goes, had all its effects."""

    started: float
    points_done: float  # the last points.earned consumed (NaN: not all arrived)
    profile_done: float  # profile's group committed them all
    mail_done: float  # the last thank-you accepted (NaN: not all arrived)
    mails: int


async def drive(
    bootstrap: str,
    prefix: str,
    watch: Watch,
    sink: smtp_sink.ArrivalSink,
    events: list[PurchaseCompleted],
    give_up_after: float = 600,
) -> Drive:
    mails_before = len(sink.messages)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.time()
    for e in events:
        await producer.send(prefix + "commerce.purchases", e.to_json(), key=e.key)
    await producer.flush()
    await producer.stop()
    ids = [e.id for e in events]
    deadline = time.time() + give_up_after
    profile_done = float("nan")
    while time.time() < deadline:
        if profile_done != profile_done and await group_caught_up(
            bootstrap, prefix + "profile", prefix + "commerce.purchases"
        ):
            profile_done = time.time()
        if profile_done == profile_done and all(i in watch.arrived for i in ids):
            break
        await asyncio.sleep(0.2)
    points_done = max(watch.arrived.get(i, float("nan")) for i in ids)
    n = len(events)
    await asyncio.to_thread(sink.wait_for, mails_before + n, max(1.0, deadline - time.time()))
    mails = len(sink.messages) - mails_before
    mail_done = time.time() if mails >= n else float("nan")
    return Drive(started, points_done, profile_done, mail_done, mails)


async def warm_up(
    bootstrap: str, prefix: str, watch: Watch, sink: smtp_sink.ArrivalSink, n: int
) -> float:
    """Seconds until ``n`` purchases sent right after start-up had all three effects.

    The burst measures a running platform: until this returns, consumers may still be
    joining their groups (one service's join took about 5 s here, which the burst then
    counted as its own time), and statement caches and templates are cold."""
    events = [make_purchase(f"warm-{i}-{uuid.uuid4().hex[:4]}", i, tag="W") for i in range(n)]
    done = await drive(bootstrap, prefix, watch, sink, events, give_up_after=120)
    return max(done.points_done, done.profile_done, done.mail_done) - done.started


async def burst(
    bootstrap: str,
    prefix: str,
    watch: Watch,
    sink: smtp_sink.ArrivalSink,
    n: int,
    pids: dict[str, int],
) -> Burst:
    events = [make_purchase(f"burst-{i % 1000}-{uuid.uuid4().hex[:4]}", i) for i in range(n)]
    cpu_before = CpuMark.now(pids)
    done = await drive(bootstrap, prefix, watch, sink, events)
    cpu_ms, busy = CpuMark.now(pids).since(cpu_before, n)
    return Burst(
        points=n / (done.points_done - done.started),
        profile=n / (done.profile_done - done.started),
        mail=n / (done.mail_done - done.started),
        mails=done.mails,
        cpu_ms=cpu_ms,
        busy=busy,
    )


@dataclass
class Paced:
    rate: float
    sent: int
    points: list[float]  # seconds from send to points.earned consumed
    mails: list[float]  # seconds from send to the e-mail accepted by the sink
    waited: float  # seconds after the last send until every sample was in (or gave up)
    # purchase → points split at loyalty's relay producing points.earned, seconds each
    hops: dict[str, list[float]] = field(default_factory=dict)
    # purchase → e-mail split at profile's relay producing the new customer's registration
    mail_hops: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per purchase, by process
    busy: float = float("nan")  # share of the machine's CPUs busy during the run

    @property
    def kept_up(self) -> bool:
        """Whether the pipeline kept up with the offered rate: every purchase had its
        points and its thank-you within ``KEPT_UP_AFTER`` seconds of the last send. A
        pipeline that falls behind ends the run with a backlog, which this catches once
        it exceeds that much work; over a 15 s run, a rate up to about 10 % over what
        the pipeline sustains can still pass (the last purchase's own latency counts
        against the same allowance)."""
        complete = len(self.points) == self.sent and len(self.mails) == self.sent
        return complete and self.waited <= KEPT_UP_AFTER

    @property
    def achieved(self) -> float:
        """Purchases/s the pipeline got through, from the first send until every effect
        was in (an upper bound for a run that gave up waiting)."""
        return self.sent / (self.sent / self.rate + self.waited)


async def paced(
    bootstrap: str,
    prefix: str,
    watch: Watch,
    contacts: ContactWatch,
    sink: smtp_sink.ArrivalSink,
    rate: float,
    seconds: int,
    drain: float,
    pids: dict[str, int],
    linger_ms: int = PACED_LINGER_MS,
) -> Paced:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms)
    await producer.start()
    sent: dict[str, tuple[float, str]] = {}
    run = uuid.uuid4().hex[:6]
    # Built before the clock starts, so the run's CPU is the pipeline's, not the events'.
    purchases = []
    for i in range(int(rate * seconds)):
        customer = f"paced-{run}-{i}"
        e = make_purchase(customer, i, tag=f"P{run}")
        purchases.append((e.id, e.to_json(), e.key, f"{customer}@bench.test"))
    topic = prefix + "commerce.purchases"
    cpu_before = CpuMark.now(pids)
    start = time.time()
    for i, (event_id, value, key, address) in enumerate(purchases):
        due = start + i / rate
        if (delay := due - time.time()) > 0:
            await asyncio.sleep(delay)
        sent[event_id] = (time.time(), address)
        await producer.send(topic, value, key=key)
    await producer.stop()
    finished = time.time()
    addresses = {a for _, a in sent.values()}
    while time.time() - finished < drain:
        got = {r for m in list(sink.messages) for r in m.rcpt_tos} & addresses
        if len(got) == len(addresses) and all(i in watch.arrived for i in sent):
            break
        await asyncio.sleep(0.2)
    waited = time.time() - finished
    cpu_ms, busy = CpuMark.now(pids).since(cpu_before, len(sent))
    mail_at = {m.rcpt_tos[0]: m.received_at.timestamp() for m in list(sink.messages)}
    points = [watch.arrived[i] - t for i, (t, _) in sent.items() if i in watch.arrived]
    mails = [mail_at[a] - t for (t, a) in sent.values() if a in mail_at]
    hops: dict[str, list[float]] = {"to loyalty's relay": [], "relay to consumer": []}
    for purchase, (t, _) in sent.items():
        if purchase in watch.relayed:
            hops["to loyalty's relay"].append(watch.relayed[purchase] - t)
            hops["relay to consumer"].append(watch.arrived[purchase] - watch.relayed[purchase])
    mail_hops: dict[str, list[float]] = {"to profile's relay": [], "relay to accepted": []}
    for t, address in sent.values():
        customer = address.split("@")[0]
        if customer in contacts.relayed and address in mail_at:
            mail_hops["to profile's relay"].append(contacts.relayed[customer] - t)
            mail_hops["relay to accepted"].append(mail_at[address] - contacts.relayed[customer])
    return Paced(rate, len(sent), points, mails, waited, hops, mail_hops, cpu_ms, busy)


async def sustain(
    first: Paced, run: Callable[[float], Awaitable[Paced]], ceiling: float, floor: float = 10.0
) -> list[Paced]:
    """Paced runs (``run(rate)``) searching for the highest rate kept up with, starting
    from ``first``, a run already made. Until a run has kept up, each offers
    ``SUSTAIN_STEP`` of the last one's rate, or what that run achieved if less (see
    ``Paced.achieved``), and the search stops below ``floor``/s; until one has fallen
    behind, each offers the last one's rate divided by ``SUSTAIN_STEP``, up to
    ``ceiling``/s (the burst's rate). Between the two, it halves the gap (stepping up
    by no more than that) until the gap is within ``SUSTAIN_WITHIN`` of the rate kept
    up with. At most ``SUSTAIN_PROBES`` runs besides ``first``. Returns the new runs in
    the order made."""
    kept = first.rate if first.kept_up else None
    behind = None if first.kept_up else first.rate
    last = first
    runs: list[Paced] = []
    while len(runs) < SUSTAIN_PROBES:
        if kept is None:
            assert behind is not None
            rate = min(behind * SUSTAIN_STEP, last.achieved)
        elif behind is None:
            rate = min(kept / SUSTAIN_STEP, ceiling)
        else:
            rate = min((kept + behind) / 2, kept / SUSTAIN_STEP)
        if rate < floor or (kept is not None and rate - kept <= SUSTAIN_WITHIN * kept):
            break
        last = await run(rate)
        runs.append(last)
        if last.kept_up:
            kept = rate
        else:
            behind = rate
    return runs


@dataclass
class PipelineResult:
    db: str
    size: int
    floor: float
    warm_up: float  # seconds from the first purchases after start-up to all their effects
    n: int
    burst: Burst
    runs: list[Paced]  # at 80 % of the burst's rate, then at the fixed rate
    rss: dict[str, float]
    probes: list[Paced] = field(default_factory=list)  # ``sustain``'s runs

    @property
    def sustained(self) -> Paced | None:
        """The fastest paced run kept up with (the 80 % and fixed-rate runs count too)."""
        kept = [r for r in [*self.probes, *self.runs] if r.kept_up]
        return max(kept, key=lambda r: r.rate) if kept else None


@dataclass
class Stack:
    """What a benchmark runs against: Tansu, the SMTP sink, a fresh database per service
    and (after ``start_services``) the four services as processes, plus the watchers of
    points and of new customers' registrations once ``watch`` has started them."""

    db: str
    bootstrap: str
    broker: subprocess.Popen[bytes]
    sink: smtp_sink.ArrivalSink
    databases: DatabaseMaker
    prefix: str = "bench."
    services: list[ServiceProcess] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # each service's database
    points: Watch | None = None
    contacts: ContactWatch | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, db: str, *, extra_topics: tuple[str, ...] = ()) -> Stack:
        port = tansu.free_port()
        broker = tansu.start(port)
        bootstrap = f"127.0.0.1:{port}"
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        await create_topics(settings, [*all_topics(cls.prefix), *extra_topics], partitions=4)
        sink = smtp_sink.ArrivalSink(tansu.free_port())
        databases = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-")), backend=db)
        return cls(db, bootstrap, broker, sink, databases)

    async def start_services(self, overrides: dict[str, str] | None = None) -> None:
        """The four services on fresh databases; ``overrides``: settings for every
        service, named without their ``<SERVICE>_`` prefix."""
        for name in SERVICE_NAMES:
            url = await self.databases(name)
            self.urls[name] = url
            await asyncio.to_thread(migrate, name, url)
            p = name.upper() + "_"
            extra = {f"{p}LOG_LEVEL": "WARNING"} | {p + k: v for k, v in (overrides or {}).items()}
            env = service_env(
                name,
                bootstrap=self.bootstrap,
                prefix=self.prefix,
                database_url=url,
                smtp_port=self.sink.port,
                extra=extra,
            )
            log = Path("var/bench-logs") / f"{name}.log"
            self.services.append(
                ServiceProcess(name=name, port=tansu.free_port(), env=env, log_path=log).start()
            )
        for s in self.services:
            await asyncio.to_thread(s.wait_ready)

    def watch(self) -> tuple[Watch, ContactWatch]:
        self.points = Watch(self.bootstrap, self.prefix + "loyalty.events")
        self.contacts = ContactWatch(self.bootstrap, self.prefix + PROFILE_TOPIC)
        self._watchers = [
            asyncio.create_task(self.points.run(self._stop)),
            asyncio.create_task(self.contacts.run(self._stop)),
        ]
        return self.points, self.contacts

    @property
    def pids(self) -> dict[str, int]:
        """The processes whose CPU a benchmark reports."""
        pids = {s.name: s.proc.pid for s in self.services if s.proc}
        return pids | {
            "broker": self.broker.pid,
            "SMTP sink": self.sink.pid,
            "benchmark": os.getpid(),
        }

    async def close(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._watchers)
        for s in self.services:
            s.stop()
        self.sink.stop()
        tansu.stop(self.broker)
        await self.databases.drop_all()


async def vacuum(urls: dict[str, str]) -> float:
    """VACUUM (ANALYZE) each PostgreSQL database; seconds taken. SQLite's are left alone.

    A database in service has statistics: autovacuum analyses a table once a tenth of it
    has changed, within a minute or so. A benchmark's databases are minutes old, and
    autovacuum may not have come round to them. Until it does, PostgreSQL has no row count
    for a table (``reltuples`` -1), estimates it from the declared widths, and plans a
    lookup by key in a table of 10,000 rows as a sequential scan; a statement prepared
    while its table was small keeps such a plan. Without statistics a 50/s paced run read
    about 400,000 rows a second in engagement's database alone (2026-12-06).
    """
    started = time.monotonic()
    for url in urls.values():
        if is_sqlite(url):
            continue
        engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("VACUUM (ANALYZE)"))
        finally:
            await engine.dispose()
    return time.monotonic() - started


async def start_warm(stack: Stack, history: int = 0) -> float:
    """Start ``stack``'s services and watchers and warm them up; the warm-up's seconds.
    Then, if ``history``, give it that many customers' history and a churn model
    (``seed_history``)."""
    await stack.start_services()
    watch, _ = stack.watch()
    print(f"[{stack.db}] warming up with {WARM_UP} purchases …", flush=True)
    took = await warm_up(stack.bootstrap, stack.prefix, watch, stack.sink, WARM_UP)
    if history:
        print(f"[{stack.db}] {await seed_history(stack, history)}", flush=True)
    return took


async def ready(db: str, history: int = 0) -> Stack:
    """A fresh stack with the services started, watched and warmed up (and ``history``)."""
    stack = await Stack.open(db)
    try:
        await start_warm(stack, history)
    except BaseException:
        await stack.close()
        raise
    return stack


HISTORY_CUSTOMERS = 600
QUIET_SHARE = 0.15  # of a core, all four services together: a stack done with its backlog
QUIET_WITHIN = 120.0


async def seed_history(stack: Stack, customers: int) -> str:
    """``customers`` customers' year of purchases (``bench.history``), sent and waited for
    (every service's group has committed them, and the services have gone quiet: what the
    history sets off, such as loyalty's warnings of old points expiring and engagement's
    messages about them, is done), then engagement's churn model fitted on them. A line
    saying what was done."""
    started = time.time()
    events = purchase_history.purchases(customers, now=datetime.now(UTC))
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for e in events:
            await producer.send(stack.prefix + PurchaseCompleted.TOPIC, e.to_json(), key=e.key)
        await producer.flush()
    finally:
        await producer.stop()
    topic = stack.prefix + PurchaseCompleted.TOPIC
    deadline = time.time() + QUIET_WITHIN
    for name in SERVICE_NAMES:
        while not await group_caught_up(stack.bootstrap, stack.prefix + name, topic):
            if time.time() > deadline:
                raise TimeoutError(f"{name} had not consumed the history in {QUIET_WITHIN}s")
            await asyncio.sleep(0.5)
    services = {name: pid for name, pid in stack.pids.items() if name in SERVICE_NAMES}
    while True:
        mark = CpuMark.now(services)
        await asyncio.sleep(2.0)
        ms, _ = CpuMark.now(services).since(mark, 1)
        share = sum(ms[name] for name in services) / 2000
        if share < QUIET_SHARE:
            break
        if time.time() > deadline:
            raise TimeoutError(f"the services still used {share:.0%} of a core after the history")
    fitted = await purchase_history.fit(stack.urls["engagement"])
    return f"history: {len(events)} purchases by {customers} customers; {fitted}; " + (
        f"{time.time() - started:.1f}s"
    )


def note_rss(stack: Stack, rss: dict[str, float]) -> None:
    """Keep in ``rss`` the largest peak RSS each service of ``stack`` has reached."""
    for s in stack.services:
        if s.proc:
            rss[s.name] = max(rss.get(s.name, 0.0), peak_rss_mb(s.proc.pid))


async def main(
    db: str,
    n: int,
    rate: int,
    seconds: int,
    drain: float,
    *,
    settle: bool = True,
    fresh: bool = True,
    history: int = 0,
) -> PipelineResult:
    """The burst on one stack, then the paced runs, each on a fresh stack if ``fresh``
    (see ``add_options``); every stack given ``history`` customers' history first."""
    rss: dict[str, float] = {}
    stack: Stack | None = None
    try:
        stack = await Stack.open(db, extra_topics=("raw-floor",))
        sample = make_purchase("sample-customer", 1).to_json()
        # Before the services start: the broker alone, as the physical floor.
        floor = await raw_floor(stack.bootstrap, "raw-floor", 50_000, len(sample))
        warmed = await start_warm(stack, history)
        print(f"[{db}] burst of {n} purchases …", flush=True)
        assert stack.points is not None
        measured = await burst(
            stack.bootstrap, stack.prefix, stack.points, stack.sink, n, stack.pids
        )

        async def run(offered: float) -> Paced:
            nonlocal stack
            assert stack is not None
            if fresh:
                note_rss(stack, rss)
                old, stack = stack, None
                await old.close()
                stack = await ready(db, history)
                # The same burst as the first stack's, so the databases hold what they held
                # there (PostgreSQL's statistics included, see ``vacuum``).
                print(f"[{db}] burst of {n} purchases before the paced run …", flush=True)
                assert stack.points is not None
                await burst(stack.bootstrap, stack.prefix, stack.points, stack.sink, n, stack.pids)
            if settle and db == "postgres":
                took = await vacuum(stack.urls)
                print(f"[{db}] VACUUM (ANALYZE): {took:.1f}s", flush=True)
            print(f"[{db}] paced at {offered:.0f}/s for {seconds}s …", flush=True)
            assert stack.points is not None
            assert stack.contacts is not None
            done = await paced(
                stack.bootstrap,
                stack.prefix,
                stack.points,
                stack.contacts,
                stack.sink,
                offered,
                seconds,
                drain,
                stack.pids,
            )
            print(
                f"[{db}]   {'kept up' if done.kept_up else 'fell behind'}: every effect in "
                f"{done.waited:.1f}s after the last send",
                flush=True,
            )
            return done

        runs: list[Paced] = []
        probes: list[Paced] = []
        top = 0.8 * measured.end_to_end
        if top == top and top >= 1.0:  # NaN: the burst never completed
            runs.append(await run(top))
            probes = await sustain(runs[0], run, ceiling=measured.end_to_end)
        if rate >= 1:
            runs.append(await run(float(rate)))
        note_rss(stack, rss)
        result = PipelineResult(db, len(sample), floor, warmed, n, measured, runs, rss, probes)
        report(result, fresh=fresh)
        return result
    finally:
        if stack is not None:
            await stack.close()


def latency(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {pct(values, 50):8.1f} ms  p95 {pct(values, 95):8.1f} ms  "
        f"p99 {pct(values, 99):8.1f} ms"
    )


def report(r: PipelineResult, *, fresh: bool = True) -> None:
    b = r.burst
    print(
        f"\nKeepwell purchase pipeline — database: {r.db}, message size {r.size} bytes, "
        f"{os.cpu_count()} CPUs; paced runs each on "
        + ("a fresh stack" if fresh else "the burst's stack")
    )
    print(f"{'raw broker produce→consume':<50} {r.floor:>10,.0f} msg/s")
    print(f"{f'first {WARM_UP} purchases after start-up: all effects':<50} {r.warm_up:>10,.1f} s")
    for label, value in (
        ("purchase → points (loyalty)", b.points),
        ("purchase → 360° view (profile committed)", b.profile),
        ("purchase → thank-you accepted by SMTP", b.mail),
        ("end to end (slowest of the three)", b.end_to_end),
    ):
        print(
            f"{f'burst of {r.n}: {label}':<50} {value:>10,.1f} purchases/s"
            f"   ({value / r.floor:.2%} of raw)"
        )
    for run in [*r.runs, *r.probes]:
        for label, values in (("points", run.points), ("e-mail", run.mails)):
            print(
                f"{f'at {run.rate:.0f}/s: purchase → {label}':<50} {latency(values)}"
                f"  ({len(values)}/{run.sent} in, {run.waited:.0f}s after the last send)"
            )
        for label, hops in (("points", run.hops), ("e-mail", run.mail_hops)):
            print(
                f"{'':<10}{label}, by hop: "
                + "; ".join(
                    f"{hop} p50 {pct(v, 50):.0f} / p99 {pct(v, 99):.0f} ms"
                    for hop, v in hops.items()
                    if v
                )
            )
        print(
            f"{'':<10}CPU per purchase: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in run.cpu_ms.items())
            + f"; machine {run.busy:.0%} busy"
        )
    probed = ", ".join(
        f"{p.rate:.0f}/s {'kept up' if p.kept_up else 'fell behind'}" for p in [*r.runs, *r.probes]
    )
    kept = r.sustained
    print(
        f"{'sustained end to end (highest paced rate kept up)':<50} "
        + (f"{kept.rate:>10,.1f} purchases/s" if kept else f"{'none':>10}")
        + f"   (runs: {probed}; kept up = every effect within {KEPT_UP_AFTER:g}s of the last send)"
    )
    print(
        "CPU per purchase in the burst (until the last e-mail): "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in b.cpu_ms.items())
        + f"; machine {b.busy:.0%} busy"
    )
    harness, ceiling = harness_ceiling(b.cpu_ms, os.cpu_count() or 1)
    print(
        f"the test's own processes ({', '.join(HARNESS)}) in the burst: {harness:.1f} ms of "
        f"CPU per purchase; on {os.cpu_count()} CPUs at most {ceiling:,.0f} purchases/s "
        "were the services free"
    )
    print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in r.rss.items()))


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of this benchmark, which bench.all takes too (and hands to ``run_all``)."""
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--purchases", type=int, default=3000, help="burst size")
    parser.add_argument("--rate", type=int, default=200, help="fixed offered load, purchases/s")
    parser.add_argument("--seconds", type=int, default=15, help="length of each paced run")
    parser.add_argument("--drain", type=float, default=120, help="wait for a paced run's tail")
    parser.add_argument(
        "--vacuum",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="VACUUM (ANALYZE) PostgreSQL before the paced runs (see vacuum())",
    )
    parser.add_argument(
        "--fresh-stack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each paced run on a fresh broker, databases and services, warmed up and "
        "given the same burst: the "
        "test broker's memory storage costs more CPU per fetch the more it holds, which a "
        "Kafka cluster does not (see docs/performance.md)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=HISTORY_CUSTOMERS,
        help="customers whose year of purchases each stack is given after its warm-up, "
        "and its churn model fitted on them, so that engagement scores every purchase as "
        "a deployment past its first day does (bench.history; 0: none, no model)",
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace) -> list[PipelineResult]:
    dbs = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    return [
        await main(
            db,
            args.purchases,
            args.rate,
            args.seconds,
            args.drain,
            settle=args.vacuum,
            fresh=args.fresh_stack,
            history=args.history,
        )
        for db in dbs
    ]


if __name__ == "__main__":
    uvloop.run(run_all(parse()))  # as the services: less of the benchmark's own CPU
