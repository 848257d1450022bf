"""CPU per 360° view, in-process: `python -m bench.profile_view [--db postgres]`.

Deterministic companion to ``bench.rest``: no broker, no sockets, no load generator.
Seeds ``--customers`` customers with a generated history (every kind of event, through
the handlers), then sends ``--views`` GETs of ``/v1/customers/{id}`` through the whole
app (middleware, authentication, dependencies, the read-only transaction, the response)
with ``httpx.ASGITransport``, one at a time, in ``--rounds`` rounds, and prints per
round the CPU time of this process per view (``time.process_time``, which counts
aiosqlite's worker threads too), the wall time per view and the statements per view.
``--staff`` uses a staff token, whose reads are written to the access log. The rate
limit is off, as in ``bench.rest``.
The client's own share (httpx building the request and parsing the response) is
included; it is the same before and after a change of the service.

``--gaps 0,3`` leaves the given milliseconds between views, cycling through the list
round by round, so one process measures views back to back and spaced out. The gap is
idle (``asyncio.sleep``: the process waits in the event loop's poll, as a service does
between requests that come one at a time) or, with ``--spin``, a busy loop that keeps the
core running. The rounds then also print the CPU of the event loop's thread during the
views alone (``time.thread_time`` around each request), which leaves the spinning out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from services.profile.config import ProfileSettings
from services.profile.main import MIGRATIONS, create_app
from shared.auth import issue_token
from shared.db import Database
from shared.migrations import upgrade_async
from tests.helpers import TEST_SECRET
from tests.profile.history import customer_ids, history
from tests.profile.support import handle
from tools.databases import DatabaseMaker


async def seed(url: str, ids: list[str]) -> None:
    db = Database(url)
    try:
        await handle(db, *history(ids))
    finally:
        await db.dispose()


async def run(
    url: str,
    ids: list[str],
    views: int,
    rounds: int,
    staff: bool,
    gaps: list[float],
    spin: bool = False,
) -> None:
    settings = ProfileSettings(
        auth_secret=TEST_SECRET,
        database_url=url,
        relay_enabled=False,
        consumer_enabled=False,
        http_rate_limit_per_minute=0,  # as bench.rest runs the services
    )
    app = create_app(settings)
    token = issue_token(secret=TEST_SECRET, subject="bench", scopes=["customers:read"], staff=staff)
    statements = 0

    def counted(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"authorization": f"Bearer {token}"},
        ) as client,
    ):
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the client's line per request
        db = app.state.runtime.db
        for engine in {db.engine, db.read_engine, db.quick_read_engine}:
            event.listen(engine.sync_engine, "before_cursor_execute", counted)
        for n in range(200):  # warm up: statement caches, pools, imports
            (await client.get(f"/v1/customers/{ids[n % len(ids)]}")).raise_for_status()
        for r in range(rounds):
            gap = gaps[r % len(gaps)]
            statements, in_views = 0, 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            for n in range(views):
                started = time.thread_time()
                response = await client.get(f"/v1/customers/{ids[(n * 7) % len(ids)]}")
                in_views += time.thread_time() - started
                response.raise_for_status()
                if gap and spin:
                    until = time.perf_counter() + gap / 1000
                    while time.perf_counter() < until:
                        pass
                elif gap:
                    await asyncio.sleep(gap / 1000)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            shown = f"gap {gap:g} ms{' spinning' if gap and spin else ''}"
            print(
                f"round {r + 1}: {views} views, {shown}, "
                f"CPU {cpu / views * 1000:.3f} ms/view "
                f"({in_views / views * 1000:.3f} on the loop's thread in views), "
                f"wall {wall / views * 1000:.3f} ms/view with the gap, "
                f"{statements / views:.2f} statements/view"
            )


async def main(args: argparse.Namespace) -> None:
    maker = DatabaseMaker(Path(tempfile.mkdtemp(prefix="kw-bench-view-")), backend=args.db)
    try:
        url = await maker("profile")
        await upgrade_async(MIGRATIONS, url)
        ids = customer_ids(args.customers, prefix="v")
        await seed(url, ids)
        gaps = [float(g) for g in args.gaps.split(",")]
        await run(url, ids, args.views, args.rounds, args.staff, gaps, args.spin)
    finally:
        await maker.drop_all()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--views", type=int, default=2000, help="views per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--staff", action="store_true", help="a staff token (access log)")
    parser.add_argument(
        "--gaps", default="0", help="ms between views, cycled round by round (e.g. 0,3)"
    )
    parser.add_argument("--spin", action="store_true", help="spin through the gaps, not idle")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
