"""One paced run and what it cost per purchase: `python -m bench.paced --rate 200`.

Starts the stack as ``bench.pipeline`` does (broker, SMTP sink, the four services on
fresh PostgreSQL databases), warms it up, gives it ``--history`` customers' year of
purchases and a churn model fitted on them as ``bench.pipeline`` does (0 for none),
analyses the databases (``bench.pipeline.vacuum``: a lookup by key on a table without
statistics is a sequential scan), measures 5 s of idling, then paces purchases at
``--rate`` for ``--seconds`` and prints, per service and per purchase: consumer batches,
relay batches, events consumed and published, and database transactions (from
``pg_stat_database``, whose counters PostgreSQL flushes about once a second); latency to
points and to the thank-you e-mail; CPU per purchase by process and the machine's busy
share. ``--set NAME=VALUE`` sets ``<SERVICE>_NAME`` for every service, to compare a
setting's values back to back (e.g. ``--set CONSUMER_BATCH_SPACING_MS=0``).
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg
import uvloop
from sqlalchemy.engine import make_url

from bench import metrics
from bench.pipeline import (
    HISTORY_CUSTOMERS,
    WARM_UP,
    CpuMark,
    Stack,
    paced,
    pct,
    seed_history,
    vacuum,
    warm_up,
)
from tools.databases import DEFAULT_PG_URL
from tools.stack import SERVICE_NAMES

COUNTERS = {
    "consumer batches": "keepwell_consumer_batch_duration_seconds_count",
    "relay batches": "keepwell_outbox_relay_batch_duration_seconds_count",
    "consumed": "keepwell_events_consumed_total",
    "published": "keepwell_outbox_published_total",
}


def counters(url: str) -> dict[str, float]:
    """The service's counters above, summed over their labels."""
    by_metric = {metric: name for name, metric in COUNTERS.items()}
    totals = dict.fromkeys(COUNTERS, 0.0)
    for sample in metrics.samples(url, timeout=5):
        if sample.name in by_metric:
            totals[by_metric[sample.name]] += sample.value
    return totals


async def transactions(databases: dict[str, str]) -> dict[str, int]:
    """Transactions committed or rolled back so far, by service (its database)."""
    admin = make_url(DEFAULT_PG_URL).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        rows = await conn.fetch(
            "SELECT datname, xact_commit + xact_rollback AS n FROM pg_stat_database"
        )
    finally:
        await conn.close()
    by_name = {r["datname"]: int(r["n"]) for r in rows}
    return {service: by_name.get(name, 0) for service, name in databases.items()}


async def main(
    rate: float, seconds: int, drain: float, overrides: dict[str, str], history: int
) -> None:
    stack = await Stack.open("postgres")
    try:
        await stack.start_services(overrides)
        databases = {name: str(make_url(url).database) for name, url in stack.urls.items()}
        services = stack.services
        bootstrap, prefix, sink = stack.bootstrap, stack.prefix, stack.sink
        watch, contacts = stack.watch()
        await warm_up(bootstrap, prefix, watch, sink, WARM_UP)
        if history:
            print(await seed_history(stack, history), flush=True)
        print(f"VACUUM (ANALYZE): {await vacuum(stack.urls):.1f}s", flush=True)
        pids = stack.pids

        idle_from = CpuMark.now(pids)
        await asyncio.sleep(5)
        idle_cpu, idle_busy = CpuMark.now(pids).since(idle_from, 5)  # ms per second
        print(
            "idle, % of a core: "
            + ", ".join(f"{k} {v / 10:.1f}" for k, v in idle_cpu.items())
            + f"; machine {idle_busy:.0%} busy"
        )

        before = {s.name: counters(s.url) for s in services}
        xacts_before = await transactions(databases)
        run = await paced(bootstrap, prefix, watch, contacts, sink, rate, seconds, drain, pids)
        await asyncio.sleep(1.5)  # PostgreSQL flushes its statistics about once a second
        after = {s.name: counters(s.url) for s in services}
        xacts_after = await transactions(databases)

        n = max(1, run.sent)
        print(f"paced at {rate:g}/s for {seconds}s: {run.sent} purchases; per purchase:")
        for name in SERVICE_NAMES:
            per = {k: (after[name][k] - before[name][k]) / n for k in COUNTERS}
            xacts = (xacts_after[name] - xacts_before[name]) / n
            print(
                f"  {name:<11}"
                + "  ".join(f"{k} {v:.2f}" for k, v in per.items())
                + f"  database transactions {xacts:.2f}"
            )
        for label, values in (("points", run.points), ("e-mail", run.mails)):
            print(
                f"purchase → {label}: p50 {pct(values, 50):.0f} ms, p99 {pct(values, 99):.0f} ms"
                f" ({len(values)}/{run.sent} in)"
                if values
                else f"purchase → {label}: no samples"
            )
        print(
            "CPU per purchase: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in run.cpu_ms.items())
            + f"; machine {run.busy:.0%} busy"
        )
    finally:
        await stack.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="purchases/s")
    parser.add_argument("--seconds", type=int, default=10, help="length of the paced run")
    parser.add_argument("--drain", type=float, default=20, help="wait for the run's tail")
    parser.add_argument(
        "--history",
        type=int,
        default=HISTORY_CUSTOMERS,
        help="customers in the year of history given before the run (0: none)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every service, without its prefix",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    overrides = dict(item.split("=", 1) for item in args.set)
    uvloop.run(main(args.rate, args.seconds, args.drain, overrides, args.history))
