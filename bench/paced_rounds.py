"""The same paced run again and again on one stack: `python -m bench.paced_rounds`.

Starts the stack as ``bench.pipeline`` does, warms it up, then makes ``--rounds`` paced
runs at ``--rate`` for ``--seconds`` each and prints, per run, every process's CPU in %
of a core. With the offered rate constant, a process whose share grows from run to run
pays for what the earlier runs left behind (see docs/performance.md, "2026-12-06, sixth
session": the test broker's fetches cost more as its partitions grow).
"""

from __future__ import annotations

import argparse

import uvloop

from bench.pipeline import WARM_UP, Stack, paced, warm_up


async def main(args: argparse.Namespace) -> None:
    stack = await Stack.open(args.db)
    try:
        await stack.start_services()
        watch, contacts = stack.watch()
        await warm_up(stack.bootstrap, stack.prefix, watch, stack.sink, WARM_UP)
        for n in range(args.rounds):
            run = await paced(
                stack.bootstrap,
                stack.prefix,
                watch,
                contacts,
                stack.sink,
                args.rate,
                args.seconds,
                args.drain,
                stack.pids,
            )
            shares = ", ".join(f"{k} {v * args.rate / 10:.0f}" for k, v in run.cpu_ms.items())
            print(f"run {n + 1} at {args.rate:g}/s, % of a core: {shares}; machine {run.busy:.0%}")
    finally:
        await stack.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--drain", type=float, default=30)
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse()))
