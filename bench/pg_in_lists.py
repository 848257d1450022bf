"""`IN (…)` lists against `= ANY(array)` on PostgreSQL: `python -m bench.pg_in_lists`.

The consumers' read-aheads and claims select by lists of keys (``column.in_(values)``),
one statement per batch. SQLAlchemy renders an expanding ``IN`` with one placeholder per
value at every execution, so each list length is a new SQL text: asyncpg prepares it
again (a round trip, and a parse on the server) and SQLAlchemy renders the placeholders
again. ``column = ANY(:values)`` with one array parameter keeps one text whatever the
length. This measures both on a scratch table in ``--url``: ``--statements`` SELECTs,
each by a random list of 1 to ``--longest`` keys, and prints this process's CPU and the
wall time per statement, with the table freshly loaded (no statistics yet) and after
ANALYZE, and with the server's default plan cache and with ``force_custom_plan``
(a prepared ``ANY`` may otherwise settle on a generic plan that ignores the array's
length: a sequential scan for a long list).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from sqlalchemy import Column, MetaData, String, Table, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROWS = 20_000
metadata = MetaData()
keys = Table("bench_in_lists", metadata, Column("id", String(64), primary_key=True))


async def run(engine: AsyncEngine, form: str, lengths: list[int]) -> tuple[float, float]:
    rng = random.Random(7)
    async with engine.connect() as conn:
        cpu, wall = time.process_time(), time.perf_counter()
        for n in lengths:
            wanted = [f"k{rng.randrange(ROWS * 2)}" for _ in range(n)]
            if form == "IN":
                stmt = select(keys.c.id).where(keys.c.id.in_(wanted))
            else:
                values = bindparam("wanted", wanted, type_=ARRAY(String))
                stmt = select(keys.c.id).where(keys.c.id == any_(values))
            (await conn.execute(stmt)).all()
        return (time.process_time() - cpu) / len(lengths), (time.perf_counter() - wall) / len(
            lengths
        )


async def main(args: argparse.Namespace) -> None:
    lengths = [random.Random(1).randint(1, args.longest) for _ in range(args.statements)]
    print(
        f"{args.statements} SELECTs by 1 to {args.longest} keys from {ROWS:,} rows; ms a statement"
    )
    print(f"{'table':<14} {'plan cache':<18} {'form':<5} {'CPU':>7} {'wall':>7}")
    for plan_cache in ("auto", "force_custom_plan"):
        engine = create_async_engine(
            args.url, connect_args={"server_settings": {"plan_cache_mode": plan_cache}}
        )
        try:
            for analysed in (False, True):
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.drop_all)
                    await conn.run_sync(metadata.create_all)
                    await conn.execute(keys.insert(), [{"id": f"k{i}"} for i in range(ROWS)])
                    if analysed:
                        await conn.execute(text(f"ANALYZE {keys.name}"))
                for form in ("IN", "ANY"):
                    cpu, wall = await run(engine, form, lengths)
                    state = "analysed" if analysed else "no statistics"
                    figures = f"{cpu * 1000:>7.3f} {wall * 1000:>7.3f}"
                    print(f"{state:<14} {plan_cache:<18} {form:<5} {figures}")
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all)
        finally:
            await engine.dispose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--longest", type=int, default=300)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
