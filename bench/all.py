"""The whole benchmark of issue 9 in one command: `make bench`.

Runs the purchase pipeline (bench.pipeline) and the REST latency benchmark (bench.rest,
wrk pinned to one core, the services to the other) on SQLite and then on PostgreSQL,
each against its own freshly started stack, then the messaging floor (bench.floor, no
database), prints each benchmark's own table as it goes, and at the end one summary
table with a column per database and the targets.

    PYTHONPATH=. .venv/bin/python -m bench.all [--db sqlite|postgres|both]
        [--purchases 3000] [--rate 200] [--seconds 15] [--drain 120] [--customers 2000]
        [--floor-rate 1000]

It took about 9.5 minutes on the 2-core machine in the eighth session (a fresh stack for
each paced run, the sustained rate's search included: up to four more paced runs per
database), before the floor was added. Needs wrk (`apt-get install -y wrk`)
and, for the PostgreSQL column, PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth),
where it creates and drops its own databases.
"""

from __future__ import annotations

import argparse
import os
import time

import uvloop

from bench import floor, pipeline, rest

TARGETS = {
    "end to end": "≥ 1,000/s",
    "points p99 @200": "< 500 ms",
    "e-mail p99 @200": "< 1,000 ms",
    "view p99": "< 20 ms at 500 req/s",
    "rss": "< 300 MB each",
}


_NO_REST = rest.RestResult("", [], {})


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """bench.pipeline's options (``--seconds`` also sets each wrk run), on both databases
    unless told otherwise, and the REST benchmark's seed size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pipeline.add_options(parser)
    parser.set_defaults(db="both")
    parser.add_argument("--customers", type=int, default=2000, help="REST seed size")
    parser.add_argument(
        "--floor-rate",
        type=float,
        default=1000.0,
        help="the messaging floor's paced rate (bench.floor; 0 skips the floor)",
    )
    return parser.parse_args(argv)


def _ms(values: list[float], q: float) -> str:
    return f"{pipeline.pct(values, q):,.0f}" if values else "-"


def _lat(run: pipeline.Paced | None, values_of: str) -> str:
    if run is None:
        return "-"
    values: list[float] = getattr(run, values_of)
    shown = "/".join(_ms(values, q) for q in (50, 95, 99))
    return f"{shown} ({len(values)}/{run.sent})"


def _cpu(per_process: dict[str, float], busy: float) -> str:
    """The machine's CPU per purchase (every process, PostgreSQL and the kernel)."""
    return f"{sum(per_process.values()):.1f} ({busy:.0%} busy)"


def _harness(per_process: dict[str, float]) -> str:
    """The broker's, SMTP sink's and benchmark's CPU per purchase, and the rate those alone
    would fill the machine at (``pipeline.harness_ceiling``)."""
    ms, ceiling = pipeline.harness_ceiling(per_process, os.cpu_count() or 1)
    return f"{ms:.1f} ({ceiling:,.0f}/s)"


def _rest(result: rest.RestResult, mode: str, paced: bool) -> str:
    for o in result.outcomes:
        if o.scenario.mode == mode and bool(o.scenario.rate) == paced:
            p50, p99 = o.percentiles.get("50"), o.percentiles.get("99")
            if p50 is None or p99 is None:
                return f"{o.rps:.0f}/s, no percentiles"
            return f"{o.rps:.0f}/s {p50:.1f}/{p99:.1f} ms, wrk {o.wrk_cpu:.0f}%"
    return "-"


def _sustained(p: pipeline.PipelineResult) -> str:
    kept = p.sustained
    if kept is None:
        return "no paced run kept up"
    return f"{kept.rate:,.0f} ({kept.rate / p.floor:.2%})"


def _hops(run: pipeline.Paced | None) -> str:
    if run is None or not all(run.mail_hops.values()):
        return "-"
    return " / ".join(f"{pipeline.pct(v, 99):,.0f}" for v in run.mail_hops.values())


def summary(
    pipes: list[pipeline.PipelineResult],
    rests: list[rest.RestResult],
    floored: floor.FloorResult | None = None,
) -> None:
    dbs = [p.db for p in pipes]
    rows: list[tuple[str, list[str], str]] = []

    def add(label: str, values: list[str], target: str = "") -> None:
        rows.append((label, values, target))

    add("raw broker produce→consume, msg/s", [f"{p.floor:,.0f}" for p in pipes])
    add(
        f"warm-up: first {pipeline.WARM_UP} purchases → all effects, s",
        [f"{p.warm_up:.1f}" for p in pipes],
    )
    add("burst: purchase → points, /s", [f"{p.burst.points:,.1f}" for p in pipes])
    add("burst: purchase → 360° view, /s", [f"{p.burst.profile:,.1f}" for p in pipes])
    add("burst: purchase → e-mail, /s", [f"{p.burst.mail:,.1f}" for p in pipes])
    add(
        "burst: end to end, /s (ratio to raw)",
        [f"{p.burst.end_to_end:,.1f} ({p.burst.end_to_end / p.floor:.2%})" for p in pipes],
    )
    add(
        "sustained end to end, /s (ratio to raw)",
        [_sustained(p) for p in pipes],
        TARGETS["end to end"],
    )
    add(
        "sustained: paced runs, /s (+ kept up, - fell behind)",
        [
            " ".join(f"{r.rate:.0f}{'+' if r.kept_up else '-'}" for r in [*p.runs, *p.probes])
            for p in pipes
        ],
    )
    if floored is not None:  # no database: the same for every column
        for label, value, note in floor.summary_rows(floored, os.cpu_count() or 1):
            add(label, [value for _ in pipes], note)
    kept = [p.sustained for p in pipes]
    add("sustained: → points p50/p95/p99 ms", [_lat(r, "points") for r in kept])
    add("sustained: → e-mail p50/p95/p99 ms", [_lat(r, "mails") for r in kept])
    add(
        "sustained: CPU ms per purchase, all (busy)",
        [_cpu(r.cpu_ms, r.busy) if r else "-" for r in kept],
    )
    for index, label in ((0, "80 % of max"), (1, "fixed rate")):
        runs = [p.runs[index] if len(p.runs) > index else None for p in pipes]
        rate = next((f"{r.rate:.0f}/s" for r in runs if r is not None), "")
        target = TARGETS["points p99 @200"] if index else ""
        add(f"{label} {rate}: → points p50/p95/p99 ms", [_lat(r, "points") for r in runs], target)
        target = TARGETS["e-mail p99 @200"] if index else ""
        add(f"{label} {rate}: → e-mail p50/p95/p99 ms", [_lat(r, "mails") for r in runs], target)
        add(
            f"{label} {rate}: → e-mail by hop: to profile's relay / then accepted, p99 ms",
            [_hops(r) for r in runs],
        )
        add(
            f"{label} {rate}: CPU ms per purchase, all (busy)",
            [_cpu(r.cpu_ms, r.busy) if r else "-" for r in runs],
        )
    by_db = {r.db: r for r in rests}
    for mode, paced, label in (
        ("view", False, "360° view, closed loop"),
        ("view", True, "360° view, paced"),
        ("redeem", True, "redemption, paced"),
        ("redeem", False, "redemption, closed loop"),
    ):
        add(
            f"REST {label}: rate p50/p99",
            [_rest(by_db[db], mode, paced) if db in by_db else "-" for db in dbs],
            TARGETS["view p99"] if (mode, paced) == ("view", True) else "",
        )
    add(
        "burst: CPU ms per purchase, all (busy)",
        [_cpu(p.burst.cpu_ms, p.burst.busy) for p in pipes],
    )
    add(
        "burst: the test's own processes, CPU ms per purchase (ceiling /s)",
        [_harness(p.burst.cpu_ms) for p in pipes],
        "ceiling ≥ 1,000/s needed",
    )
    for name in pipes[0].burst.cpu_ms:
        add(
            f"burst CPU per purchase, {name}, ms",
            [f"{p.burst.cpu_ms.get(name, float('nan')):.1f}" for p in pipes],
            "",
        )
    for name in pipes[0].rss:
        add(
            f"peak RSS {name}, MB (pipeline / REST)",
            [
                f"{p.rss.get(name, float('nan')):.0f} / "
                + (f"{by_db[p.db].rss[name]:.0f}" if name in by_db.get(p.db, _NO_REST).rss else "-")
                for p in pipes
            ],
            TARGETS["rss"],
        )

    width = max(len(label) for label, _, _ in rows)
    cols = [max(len(db), *(len(v[i]) for _, v, _ in rows)) for i, db in enumerate(dbs)]
    head = f"{'':<{width}}  " + "  ".join(f"{db:<{c}}" for db, c in zip(dbs, cols, strict=True))
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"\nKeepwell benchmark summary — {os.cpu_count()} CPUs, {when}")
    print(head + "  target")
    print("-" * (len(head) + 8))
    for label, values, target in rows:
        cells = "  ".join(f"{v:<{c}}" for v, c in zip(values, cols, strict=True))
        print(f"{label:<{width}}  {cells}  {target}")


async def run(args: argparse.Namespace) -> None:
    pipes = await pipeline.run_all(args)
    rests = []
    for db in [p.db for p in pipes]:
        rest_args = rest.parse(
            ["--db", db, "--customers", str(args.customers), "--seconds", str(args.seconds)]
        )
        rests.append(await rest.main(rest_args))
    floored = None
    if args.floor_rate > 0:
        print("[floor] the messaging alone, no database …", flush=True)
        floored = await floor.measure(args.purchases, [args.floor_rate], args.seconds, args.drain)
        floor.report(floored)
    summary(pipes, rests, floored)


if __name__ == "__main__":
    # uvloop, as the services run: the benchmark's own CPU counts against the machine.
    uvloop.run(run(parse()))
