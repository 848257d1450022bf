"""REST latency benchmark (issue 9): `make bench-rest`, or run it directly for options:

    PYTHONPATH=. .venv/bin/python -m bench.rest [--db sqlite|postgres] [--rate 500]
        [--seconds 20] [--customers 10000] [--redeem-rate 50] [--connections 16]
        [--no-vacuum]

Starts its own Tansu broker and the profile and loyalty services as processes, seeds
``--customers`` customers with purchases through Kafka (so the 360° view has content and
every member holds points), creates a cheap reward, on PostgreSQL vacuums and analyses
the seeded databases (unless ``--no-vacuum``), then drives the services with
``wrk`` (the Debian package: ``apt-get install -y wrk``) and prints, per scenario, the
achieved request rate, p50 / p99 latency, non-2xx answers (by status), the load
generator's own CPU use and the service's:

  * 360° view (``GET /v1/customers/{id}`` on profile): closed loop (the ceiling) and
    paced at ``--rate``;
  * redemption (``POST /v1/members/{id}/redemptions`` on loyalty, a fresh
    ``Idempotency-Key`` each): paced at ``--redeem-rate`` and closed loop.

The services are pinned to one core and wrk (one thread) to another, so the load
generator never takes CPU from the server. The broker is not pinned.

Plain wrk 4 has no fixed-rate mode (``-R`` is wrk2's). The paced scenarios use a Lua
``delay()`` instead: each request takes the next slot of one schedule, 1/rate apart,
and waits for it. wrk times a request from when it is actually sent, so if the
server falls behind, sends start late and the printed latency understates what a
client on that schedule would see (coordinated omission). The "lag p99" column says
how late sends started against their slot: near 0 means the schedule held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench import metrics
from bench.pipeline import make_purchase, peak_rss_mb, vacuum
from shared.auth import issue_token
from shared.config import ServiceSettings
from shared.events import all_topics
from shared.kafka import create_topics
from shared.plumbing import processed_events
from tools import broker as tansu
from tools.databases import DatabaseMaker
from tools.stack import ServiceProcess, migrate, service_env

SERVICES = ("profile", "loyalty")
PURCHASES_EACH = 2  # 25.50 EUR each: 2 orders in the view, about 50 points per member
REWARD_ID = "bench-voucher"
REWARD_COST = 10
ID_PREFIX = "rest-"
CLK_TCK = os.sysconf("SC_CLK_TCK")

LUA = r"""
-- Written by bench/rest.py for one run. One wrk thread; args:
--   mode (view|redeem), customers, id prefix, offered req/s (0 = closed loop),
--   reward id, run id, bearer token
local threads = {}

function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

statuses = {}  -- HTTP status -> count
late = {}      -- whole ms a send started after its slot -> count (paced only)
local mode, customers, prefix, interval, run_id
local sent = 0

function init(args)
  mode, customers, prefix = args[1], tonumber(args[2]), args[3]
  local rate = tonumber(args[4])
  interval = rate > 0 and 1000 / rate or 0
  run_id = args[6] .. "-" .. tostring(thread_no)
  wrk.headers["Authorization"] = "Bearer " .. args[7]
  if mode == "redeem" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"reward_id":"' .. args[5] .. '"}'
  end
end

function request()
  sent = sent + 1
  local id = prefix .. tostring(sent % customers)  -- round robin over the customers
  if mode == "view" then
    return wrk.format(nil, "/v1/customers/" .. id)
  end
  wrk.headers["Idempotency-Key"] = run_id .. "-" .. tostring(sent)
  return wrk.format(nil, "/v1/members/" .. id .. "/redemptions")
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      io.write(string.format("KW status %d %d\n", status, n))
    end
    for ms, n in pairs(thread:get("late")) do
      io.write(string.format("KW late %d %d\n", ms, n))
    end
  end
end
"""

# Only in the paced script: wrk calls delay() before each send when it is defined.
LUA_PACING = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } kw_timespec;
int clock_gettime(int clk_id, kw_timespec *tp);
]]
local clock = ffi.new("kw_timespec")
local next_slot = nil

local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

-- Each send takes the next slot of one fixed schedule, whichever connection is free.
function delay()
  local now = now_ms()
  local slot = next_slot or now
  next_slot = slot + interval
  if slot >= now then
    late[0] = (late[0] or 0) + 1
    return slot - now
  end
  local ms = math.floor(now - slot)
  late[ms] = (late[ms] or 0) + 1
  return 0
end
"""


@dataclass
class Scenario:
    label: str
    mode: str  # view | redeem
    connections: int
    rate: int  # offered req/s; 0 = closed loop


@dataclass
class Outcome:
    scenario: Scenario
    requests: int = 0
    rps: float = 0.0
    percentiles: dict[str, float] = field(default_factory=dict)  # "50" -> ms
    statuses: Counter[int] = field(default_factory=Counter)
    socket_errors: dict[str, int] = field(default_factory=dict)
    late: Counter[int] = field(default_factory=Counter)
    wrk_cpu: float = 0.0  # % of one core
    server_cpu: float = 0.0
    core_busy: dict[int, float] = field(default_factory=dict)
    wrk_non_2xx: int = 0
    loop_lag: dict[float, float] = field(default_factory=dict)  # le (s) -> wake-ups, this run

    def stalls(self, over: float) -> int:
        """The server's event-loop wake-ups more than ``over`` seconds late in this run."""
        if not self.loop_lag:
            return 0
        within = min((n for le, n in self.loop_lag.items() if le >= over), default=0.0)
        return int(max(self.loop_lag.values()) - within)

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def lag_p99(self) -> float | None:
        total = sum(self.late.values())
        if not total:
            return None
        seen = 0
        for ms in sorted(self.late):
            seen += self.late[ms]
            if seen >= 0.99 * total:
                return float(ms)
        return float(max(self.late))


# --- processes and CPU -------------------------------------------------------------------


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench.rest needs wrk, the HTTP load generator: apt-get install -y wrk")
    if shutil.which("taskset") is None:
        sys.exit("bench.rest needs taskset (util-linux) to pin wrk to its own core")
    found = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (found.stdout + found.stderr).split(" Copyright")[0].strip()


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and of its children (threads started later inherit it)."""
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cpus)
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    pin(int(child), cpus)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            found[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return found


def start_service(name: str, env: dict[str, str]) -> ServiceProcess:
    service = ServiceProcess(
        name=name,
        port=tansu.free_port(),
        env=env,
        log_path=Path("var/bench-logs") / f"rest-{name}.log",
    )
    return service.start()


# --- seeding -----------------------------------------------------------------------------


async def count_processed(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            query = select(func.count()).select_from(processed_events)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def produce_purchases(bootstrap: str, prefix: str, customers: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        pending = []
        for i in range(customers):
            for j in range(PURCHASES_EACH):
                event = make_purchase(f"{ID_PREFIX}{i}", i * PURCHASES_EACH + j)
                pending.append(
                    await producer.send(
                        prefix + "commerce.purchases", event.to_json(), key=event.key
                    )
                )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return customers * PURCHASES_EACH


async def wait_consumed(urls: dict[str, str], purchases: int, limit: float = 900) -> None:
    """Until each service processed at least every purchase and its count stood still 2 s."""
    started = time.monotonic()
    last: dict[str, int] = {}
    still, shown = 0, 0.0
    while time.monotonic() - started < limit:
        counts = {name: await count_processed(url) for name, url in urls.items()}
        settled = all(n >= purchases for n in counts.values()) and counts == last
        still = still + 1 if settled else 0
        if still >= 4:
            return
        last = counts
        if (elapsed := time.monotonic() - started) >= shown + 15:
            shown = elapsed
            print(f"  seeding, {elapsed:.0f}s: processed events {counts}", flush=True)
        await asyncio.sleep(0.5)
    raise TimeoutError(f"seed not consumed after {limit:.0f}s: {last}")


async def spot_check(profile: str, loyalty: str, token: str, customers: int) -> list[str]:
    """Problems found in a sample of seeded customers (empty when all look right)."""
    problems = []
    headers = {"Authorization": f"Bearer {token}"}
    sample = {0, customers - 1, *random.sample(range(customers), min(20, customers))}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        for i in sorted(sample):
            cid = f"{ID_PREFIX}{i}"
            view = await client.get(f"{profile}/v1/customers/{cid}")
            member = await client.get(f"{loyalty}/v1/members/{cid}")
            if view.status_code != 200 or view.json()["lifetime"]["order_count"] != PURCHASES_EACH:
                problems.append(f"profile {cid}: {view.status_code} {view.text[:200]}")
            elif view.json()["loyalty"] is None:
                problems.append(f"profile {cid}: no loyalty points in the view yet")
            if member.status_code != 200 or member.json()["spendable"] < REWARD_COST:
                problems.append(f"loyalty {cid}: {member.status_code} {member.text[:200]}")
    return problems


# --- wrk ---------------------------------------------------------------------------------

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$")
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str, outcome: Outcome) -> None:
    for line in text.splitlines():
        if m := PERCENTILE.match(line):
            outcome.percentiles[m[1]] = float(m[2]) * UNITS[m[3]]
        elif m := re.match(r"^\s*(\d+) requests in ", line):
            outcome.requests = int(m[1])
        elif m := re.match(r"^Requests/sec:\s+([\d.]+)", line):
            outcome.rps = float(m[1])
        elif m := SOCKET_ERRORS.search(line):
            kinds = ("connect", "read", "write", "timeout")
            outcome.socket_errors = {k: int(v) for k, v in zip(kinds, m.groups(), strict=True)}
        elif m := re.match(r"^KW status (\d+) (\d+)$", line):
            outcome.statuses[int(m[1])] += int(m[2])
        elif m := re.match(r"^KW late (\d+) (\d+)$", line):
            outcome.late[int(m[1])] += int(m[2])
        elif m := re.match(r"^\s*Non-2xx or 3xx responses: (\d+)", line):
            outcome.wrk_non_2xx = int(m[1])  # wrk's own count: statuses above 399


@dataclass
class Wrk:
    binary: str
    scripts: dict[bool, Path]  # paced? -> script
    token: str
    customers: int
    wrk_core: int | None
    seconds: int

    def run(
        self, scenario: Scenario, service: ServiceProcess, seconds: int | None = None
    ) -> Outcome:
        assert service.proc is not None
        pid = service.proc.pid
        seconds = seconds or self.seconds
        run_id = uuid.uuid4().hex[:8]
        args = [scenario.mode, str(self.customers), ID_PREFIX, str(scenario.rate)]
        args += [REWARD_ID, run_id, self.token]
        taskset = ["taskset", "-c", str(self.wrk_core)] if self.wrk_core is not None else []
        command = [
            *taskset,
            self.binary,
            "-t1",
            f"-c{scenario.connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(self.scripts[scenario.rate > 0]),
            f"{service.url}/",
            "--",
            *args,
        ]
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        lag_before = loop_lag_buckets(service)
        server_before, cores_before = cpu_seconds(pid), core_times()
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        server_after, cores_after = cpu_seconds(pid), core_times()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        lag_after = loop_lag_buckets(service)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        outcome = Outcome(scenario)
        parse_wrk(done.stdout, outcome)
        outcome.loop_lag = {le: n - lag_before.get(le, 0.0) for le, n in lag_after.items()}
        wrk_cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        outcome.wrk_cpu = 100 * wrk_cpu / wall
        outcome.server_cpu = 100 * (server_after - server_before) / wall
        for core, (busy, total) in cores_after.items():
            busy0, total0 = cores_before.get(core, (busy, total))
            outcome.core_busy[core] = 100 * (busy - busy0) / max(1, total - total0)
        return outcome


def write_scripts(folder: Path) -> dict[bool, Path]:
    closed, paced = folder / "closed.lua", folder / "paced.lua"
    closed.write_text(LUA)
    paced.write_text(LUA + LUA_PACING)
    return {False: closed, True: paced}


# --- the run -----------------------------------------------------------------------------


def cores() -> tuple[int | None, int | None]:
    """The server's core and wrk's, or (None, None) when there is only one to use."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None, None
    return usable[0], usable[1]


@dataclass
class RestResult:
    db: str
    outcomes: list[Outcome]
    rss: dict[str, float]


LOOP_LAG_INTERVAL_MS = 20  # the services' loop-lag sampling in this benchmark


def loop_lag_buckets(service: ServiceProcess) -> dict[float, float]:
    """The service's ``keepwell_event_loop_lag_seconds`` buckets so far: le -> wake-ups."""
    return {
        float(s.labels["le"]): s.value
        for s in metrics.samples(service.url)
        if s.name == "keepwell_event_loop_lag_seconds_bucket"
    }


async def main(args: argparse.Namespace) -> RestResult:
    wrk_version = require_wrk()
    server_core, wrk_core = cores()
    port = tansu.free_port()
    broker_proc = tansu.start(port)
    bootstrap = f"127.0.0.1:{port}"
    prefix = "benchrest."
    secret = secrets.token_hex(16)
    folder = Path(tempfile.mkdtemp(prefix="kw-bench-rest-"))
    databases = DatabaseMaker(folder, backend=args.db)
    services: dict[str, ServiceProcess] = {}
    try:
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        await create_topics(settings, all_topics(prefix), partitions=4)
        urls = {}
        for name in SERVICES:
            urls[name] = url = await databases(name)
            await asyncio.to_thread(migrate, name, url)
            up = name.upper()
            extra = {
                f"{up}_LOG_LEVEL": "WARNING",
                f"{up}_HTTP_RATE_LIMIT_PER_MINUTE": "0",
                f"{up}_LOOP_LAG_INTERVAL_MS": str(LOOP_LAG_INTERVAL_MS),
            }
            env = service_env(
                name,
                bootstrap=bootstrap,
                prefix=prefix,
                database_url=url,
                auth_secret=secret,
                extra=extra,
            )
            services[name] = start_service(name, env)
        for s in services.values():
            await asyncio.to_thread(s.wait_ready)
        scopes = ["customers:read", "loyalty:read", "loyalty:redeem", "loyalty:admin"]
        token = issue_token(secret=secret, subject="bench-rest", scopes=scopes, ttl_seconds=86400)
        profile, loyalty = services["profile"], services["loyalty"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            body = {"name": "Bench voucher", "points_cost": REWARD_COST}
            (
                await client.put(f"{loyalty.url}/v1/rewards/{REWARD_ID}", json=body)
            ).raise_for_status()

        print(f"seeding {args.customers:,} customers x {PURCHASES_EACH} purchases …", flush=True)
        started = time.monotonic()
        purchases = await produce_purchases(bootstrap, prefix, args.customers)
        await wait_consumed(urls, purchases)
        seed_seconds = time.monotonic() - started
        problems = await spot_check(profile.url, loyalty.url, token, args.customers)
        print(f"  seeded in {seed_seconds:.0f}s; spot check: {problems or 'all as expected'}")
        if args.vacuum:
            print(f"  VACUUM (ANALYZE) after the seed: {await vacuum(urls):.1f}s", flush=True)

        if server_core is not None:
            for s in services.values():
                assert s.proc is not None
                pin(s.proc.pid, {server_core})
        wrk = Wrk(
            binary=shutil.which("wrk") or "wrk",
            scripts=write_scripts(folder),
            token=token,
            customers=args.customers,
            wrk_core=wrk_core,
            seconds=args.seconds,
        )
        paced_view = max(8, args.rate // 10)
        paced_redeem = max(8, args.redeem_rate // 10)
        plan = [
            (Scenario("360° view, closed loop", "view", args.connections, 0), profile),
            (Scenario(f"360° view at {args.rate}/s", "view", paced_view, args.rate), profile),
            (
                Scenario(
                    f"redemption at {args.redeem_rate}/s", "redeem", paced_redeem, args.redeem_rate
                ),
                loyalty,
            ),
            (Scenario("redemption, closed loop", "redeem", args.connections, 0), loyalty),
        ]
        # warm-up (not reported): connection pools, caches
        await asyncio.to_thread(wrk.run, plan[0][0], profile, 2)
        outcomes = []
        for scenario, service in plan:
            if server_core is not None:  # threads started since the last pin
                for s in services.values():
                    assert s.proc is not None
                    pin(s.proc.pid, {server_core})
            print(f"  running: {scenario.label} ({args.seconds}s) …", flush=True)
            outcomes.append(await asyncio.to_thread(wrk.run, scenario, service))
            await asyncio.sleep(1)
        rss = {s.name: peak_rss_mb(s.proc.pid) for s in services.values() if s.proc}
        report(args, wrk_version, server_core, wrk_core, seed_seconds, outcomes, rss)
        return RestResult(args.db, outcomes, rss)
    finally:
        for s in services.values():
            s.stop()
        tansu.stop(broker_proc)
        await databases.drop_all()
        shutil.rmtree(folder, ignore_errors=True)


def describe_non_2xx(o: Outcome) -> str:
    text = str(o.non_2xx)
    by_status = [f"HTTP {s}: {n}" for s, n in sorted(o.statuses.items()) if not 200 <= s < 300]
    if by_status:
        text += f" ({', '.join(by_status)})"
    if errors := sum(o.socket_errors.values()):
        text += f" +{errors} sock err {o.socket_errors}"
    return text


def report(
    args: argparse.Namespace,
    wrk_version: str,
    server_core: int | None,
    wrk_core: int | None,
    seed_seconds: float,
    outcomes: list[Outcome],
    rss: dict[str, float],
) -> None:
    pinning = (
        f"services pinned to cpu {server_core}, wrk (1 thread) to cpu {wrk_core}, "
        f"broker{' and PostgreSQL' if args.db == 'postgres' else ''} not pinned"
        if server_core is not None
        else "NOT pinned (one usable core): wrk competes with the server"
    )
    print(
        f"\nKeepwell REST latency — database: {args.db}, {os.cpu_count()} CPUs, {pinning}\n"
        f"{args.customers:,} customers x {PURCHASES_EACH} purchases (seeded via Kafka in "
        f"{seed_seconds:.0f}s); {args.seconds}s a scenario; {wrk_version}"
    )
    core_cols = sorted(outcomes[0].core_busy) if outcomes else []
    head = (
        f"{'scenario':<26} {'conns':>5} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'lag p99':>7} {'wrk CPU':>8} {'srv CPU':>8} "
        + " ".join(f"{f'cpu{c}':>6}" for c in core_cols)
        + "  non-2xx"
    )
    print(head)
    print("-" * len(head))
    for o in outcomes:
        lag = o.lag_p99()
        print(
            f"{o.scenario.label:<26} {o.scenario.connections:>5} {o.requests:>8} {o.rps:>8.1f} "
            f"{o.percentiles.get('50', float('nan')):>8.2f} "
            f"{o.percentiles.get('99', float('nan')):>8.2f} "
            f"{'-' if lag is None else f'{lag:.0f} ms':>7} "
            f"{o.wrk_cpu:>7.1f}% {o.server_cpu:>7.1f}% "
            + " ".join(f"{o.core_busy.get(c, 0):>5.0f}%" for c in core_cols)
            + f"  {describe_non_2xx(o)}"
        )
    print(
        "closed loop: each connection sends its next request when the last is answered "
        "(the ceiling).\n"
        "paced: plain wrk has no -R (wrk2 only), so a Lua delay() gives each send the next "
        "slot of a\n  fixed schedule (1/rate apart); latency is timed from the actual send, "
        "'lag p99' is how late\n  sends started against their slot (near 0: the schedule "
        "held, the latency is not understated).\n"
        "wrk CPU / srv CPU: % of one core over the run (srv = the service under test; "
        "cpuN = whole core busy)."
    )
    print(
        f"event-loop stalls of the service under test (a timer every {LOOP_LAG_INTERVAL_MS} ms "
        "woke more than 25 / 100 / 250 ms late):"
    )
    for o in outcomes:
        samples = int(max(o.loop_lag.values(), default=0))
        print(
            f"  {o.scenario.label:<26} {o.stalls(0.025):>4} / {o.stalls(0.1):>4} / "
            f"{o.stalls(0.25):>4}  of {samples} wake-ups"
        )
    for o in outcomes:
        counted = sum(o.statuses.values())
        over_399 = sum(n for status, n in o.statuses.items() if status > 399)
        if counted != o.requests or over_399 != o.wrk_non_2xx:
            print(
                f"warning: {o.scenario.label}: the script counted {counted} answers "
                f"({over_399} above 399), wrk {o.requests} ({o.wrk_non_2xx} above 399)"
            )
    print("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))
    view = next((o for o in outcomes if o.scenario.mode == "view" and o.scenario.rate), None)
    if view is not None and "99" in view.percentiles:
        met = view.percentiles["99"] < 20 and view.rps >= 0.97 * view.scenario.rate
        print(
            f"target (360° view p99 < 20 ms at {view.scenario.rate} req/s): "
            f"{'met' if met else 'NOT met'} — p99 {view.percentiles['99']:.2f} ms "
            f"at {view.rps:.1f} req/s achieved"
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rate", type=int, default=500, help="paced 360° view req/s")
    parser.add_argument("--redeem-rate", type=int, default=50, help="paced redemptions/s")
    parser.add_argument("--seconds", type=int, default=20, help="length of each scenario")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument(
        "--vacuum",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="VACUUM (ANALYZE) PostgreSQL after the seed (see vacuum())",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
