"""Faults injected at seeded random moments while the workload flows.

Every fault ends with the system whole again (restarted, resumed, reachable), except
the killed loyalty replica: its partitions must move to the survivor.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.chaos.harness import REPLICA, SESSION_TIMEOUT_MS, ChaosStack
from tools.stack import SERVICE_NAMES

DB_OUTAGE_SECONDS = float(os.environ.get("CHAOS_DB_OUTAGE_SECONDS", "8"))
# Longer than SQLite's 30 s busy timeout, so loyalty's writers fail and must retry.
LONG_DB_OUTAGE_SECONDS = float(os.environ.get("CHAOS_LONG_DB_OUTAGE_SECONDS", "35"))
BROKER_PAUSE_SECONDS = SESSION_TIMEOUT_MS / 1000 + 4
# Longer than engagement's SMTP timeout (harness.SERVICE_TUNING), so sends time out
# after the whole message was handed over.
SMTP_STALL_SECONDS = float(os.environ.get("CHAOS_SMTP_STALL_SECONDS", "8"))


@dataclass
class Fault:
    kind: str
    target: str
    at: float
    action: Callable[[ChaosStack], Awaitable[None]]
    alongside: bool = False  # runs at its moment, not after the fault before it


@dataclass
class FaultLog:
    done: list[tuple[str, str, float, float]] = field(default_factory=list)

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind, *_ in self.done:
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def kill_and_restart(*names: str, rng: random.Random) -> Callable[[ChaosStack], Awaitable[None]]:
    down_for = rng.uniform(0.5, 3.0)

    async def act(stack: ChaosStack) -> None:
        await stack.kill(*names)
        await asyncio.sleep(down_for)
        await stack.restart(*names)

    return act


def kill_while_sending(rng: random.Random) -> Callable[[ChaosStack], Awaitable[None]]:
    """SIGKILL engagement the moment the SMTP sink has stored a thank-you, before it has
    answered 250: the sender then has messages handed over and not yet recorded, the
    moment its journal covers. Waits up to 15 s for one; then kills it anyway."""
    down_for = rng.uniform(0.5, 3.0)

    async def act(stack: ChaosStack) -> None:
        await asyncio.to_thread(stack.sink.wait_for, len(stack.sink.messages) + 1, 15)
        await stack.kill("engagement")
        await asyncio.sleep(down_for)
        await stack.restart("engagement")

    return act


async def stall_smtp(stack: ChaosStack) -> None:
    """The SMTP sink stores each message at once but answers none of them until
    ``SMTP_STALL_SECONDS`` are over: the sender's sessions time out waiting for the
    reply to a message the relay already has."""
    stack.sink.stall(SMTP_STALL_SECONDS)
    await asyncio.sleep(SMTP_STALL_SECONDS)


async def pause_broker(stack: ChaosStack) -> None:
    stack.pause_broker()
    try:
        await asyncio.sleep(BROKER_PAUSE_SECONDS)
    finally:
        stack.resume_broker()


async def kill_replica_mid_batch(stack: ChaosStack) -> None:
    """SIGKILL the second loyalty replica right after it is seen handling events.

    Its own HTTP client: at 10,000 purchases the redemption driver can hold every
    connection of the shared pool through an outage. A /metrics read that fails counts
    as "not seen busy yet"; after 15 s the replica is killed anyway.
    """
    replica = stack.services[REPLICA]
    async with httpx.AsyncClient(timeout=5) as client:
        before = await consumed(client, replica.url)
        deadline = time.monotonic() + 15
        busy = False
        while not busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = await consumed(client, replica.url)
            busy = before is not None and now is not None and now > before
            before = now if before is None else before
    await stack.kill(REPLICA)


async def consumed(client: httpx.AsyncClient, url: str) -> float | None:
    """Events the service has consumed, from its metrics; None if it did not answer."""
    try:
        response = await client.get(url + "/metrics")
    except httpx.TransportError:
        return None
    lines = [
        ln for ln in response.text.splitlines() if ln.startswith("keepwell_events_consumed_total{")
    ]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def database_outage(service: str, seconds: float) -> Callable[[ChaosStack], Awaitable[None]]:
    async def act(stack: ChaosStack) -> None:
        url = make_url(stack.database_urls[service])
        if url.get_backend_name() == "sqlite":
            assert url.database
            await asyncio.to_thread(_lock_sqlite, Path(url.database), seconds)
        else:
            await _block_postgres(url.render_as_string(hide_password=False), seconds)

    return act


def _lock_sqlite(path: Path, seconds: float) -> None:
    """Take SQLite's write lock and chmod the files read-only for ``seconds``.

    chmod alone does nothing here: a service's open connections keep their file
    descriptors, and root ignores file modes. Holding the write lock is what makes
    every writer wait (and fail after its 30 s busy timeout) until it is released.
    """
    files = [f for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if f.exists()]
    modes = {f: f.stat().st_mode for f in files}
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        _grab_write_lock(conn, path)
        for f in files:
            f.chmod(0o444)
        try:
            time.sleep(seconds)
        finally:
            for f, mode in modes.items():
                f.chmod(mode)
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def _grab_write_lock(conn: sqlite3.Connection, path: Path, limit: float = 600.0) -> None:
    """BEGIN EXCLUSIVE, polling every 2 ms: a busy service's writers hand the lock to each
    other while SQLite's own busy handler backs off to 100 ms sleeps (a 10,000-purchase run
    starved a 60 s busy timeout), so the injector asks far more often than they release."""
    started = time.monotonic()
    while True:
        try:
            conn.execute("BEGIN EXCLUSIVE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() - started > limit:
                raise
            time.sleep(0.002)


async def _block_postgres(url: str, seconds: float) -> None:
    """Refuse new connections to this one database and end the open ones; then re-allow."""
    target = make_url(url)
    name = target.database
    admin_dsn = target.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await asyncio.sleep(seconds)
        finally:
            await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await conn.close()


def schedule(rng: random.Random, window: float) -> list[Fault]:
    """Every fault once, each at a seeded random moment within ``window`` seconds."""
    faults = [Fault("sigkill", s, 0.0, kill_and_restart(s, rng=rng)) for s in SERVICE_NAMES]
    pair = tuple(rng.sample(SERVICE_NAMES, 2))
    faults.append(Fault("sigkill-pair", "+".join(pair), 0.0, kill_and_restart(*pair, rng=rng)))
    faults.append(Fault("broker-pause", f"{BROKER_PAUSE_SECONDS:.0f}s", 0.0, pause_broker))
    for s in SERVICE_NAMES:
        seconds = LONG_DB_OUTAGE_SECONDS if s == "loyalty" else DB_OUTAGE_SECONDS
        faults.append(Fault("db-outage", f"{s} {seconds:.0f}s", 0.0, database_outage(s, seconds)))
    faults.append(Fault("replica-kill", REPLICA, 0.0, kill_replica_mid_batch))
    for fault in faults:
        fault.at = rng.uniform(1.0, window)
    # Drawn after the others, so their moments stay what they were for a seed.
    at = rng.uniform(1.0, window)
    faults.append(Fault("sigkill-sending", "engagement", at, kill_while_sending(rng)))
    at = rng.uniform(1.0, window)
    faults.append(Fault("smtp-stall", f"{SMTP_STALL_SECONDS:.0f}s", at, stall_smtp, True))
    return sorted(faults, key=lambda f: f.at)


async def inject(
    stack: ChaosStack, faults: list[Fault], log: FaultLog, say: Callable[[str], None]
) -> None:
    """Run the faults one after another, each at its moment (or as soon as the last ends);
    a fault marked ``alongside`` at its own moment, whatever else is running."""
    started = time.monotonic()

    async def run(fault: Fault) -> None:
        await asyncio.sleep(max(0.0, fault.at - (time.monotonic() - started)))
        begun = time.monotonic() - started
        say(f"fault {fault.kind} {fault.target} begins at {begun:.1f} s")
        await fault.action(stack)
        log.done.append((fault.kind, fault.target, begun, time.monotonic() - started))
        say(f"fault {fault.kind} {fault.target} over at {time.monotonic() - started:.1f} s")

    alongside = [asyncio.create_task(run(f)) for f in faults if f.alongside]
    try:
        for fault in faults:
            if not fault.alongside:
                await run(fault)
    finally:
        await asyncio.gather(*alongside)
