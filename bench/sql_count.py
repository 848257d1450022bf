"""What the ``*_sql`` benchmarks share: feeding events to the consumer runner's batch
transaction without a broker, and counting the statements that reach the driver."""

from __future__ import annotations

import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord
from sqlalchemy import event

from shared.consumer import ConsumerRunner, Handlers, Item
from shared.db import Database
from shared.events import Event
from shared.migrations import upgrade_async
from tools.databases import DatabaseMaker


@asynccontextmanager
async def migrated(backend: str, name: str, migrations: Path) -> AsyncIterator[Database]:
    """A new database ``name`` on ``backend`` (sqlite or postgres) with ``migrations``
    applied; dropped afterwards."""
    with tempfile.TemporaryDirectory(prefix="kw-bench-sql-") as folder:
        maker = DatabaseMaker(Path(folder), backend=backend)
        try:
            url = await maker(name)
            await upgrade_async(migrations, url)
            db = Database(url)
            try:
                yield db
            finally:
                await db.dispose()
        finally:
            await maker.drop_all()


def shape(statement: str) -> str:
    """A statement's first words and table, enough to tell the kinds apart."""
    text = " ".join(statement.split())
    text = re.sub(r"\(\$\d+.*", "(…)", text)
    match = re.match(r"(\w+)(?:.*?\b(?:FROM|INTO|UPDATE)\s+(\w+))?", text)
    if not match:
        return text[:60]
    verb = match.group(1).upper()
    table = match.group(2) or ""
    if verb == "UPDATE":
        table = text.split()[1]
    if "FOR UPDATE" in text:
        verb += " … FOR UPDATE"
    if "ON CONFLICT" in text:
        verb += " … ON CONFLICT"
    return f"{verb} {table}".strip()


def item(e: Event, offset: int) -> Item:
    """``e`` as the runner has it from a poll, at ``offset`` of one partition."""
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "t", 0, offset, 0, 0, e.key, e.to_json(), None, 0, 0, []
    )
    return Item(record, e, None)


def batch_runner(db: Database, handlers: Handlers) -> ConsumerRunner:
    """A runner for its batch transaction only (``_apply_batch``): no broker."""
    return ConsumerRunner(
        db=db,
        consumer=None,  # _apply_batch never touches it
        service="bench-sql",
        topic_prefix="",
        handlers=handlers,
    )


class Counting:
    """Counts what reaches the driver (one per execute or executemany call, i.e. a round
    trip on asyncpg), by shape, the time spent inside it, and the commits."""

    def __init__(self, db: Database) -> None:
        self.seen: list[tuple[str, bool]] = []
        self.waited: Counter[str] = Counter()
        self.transactions = 0
        engine = db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)

    def _before(self, *args: Any) -> None:
        self.seen.append((args[2], bool(args[5])))
        args[0].info["bench.started"] = time.perf_counter()

    def _after(self, *args: Any) -> None:
        started = args[0].info.pop("bench.started", None)
        if started is not None:
            self.waited[self._shape(args[2], args[5])] += time.perf_counter() - started

    def _commit(self, *_args: Any) -> None:
        self.transactions += 1

    @staticmethod
    def _shape(statement: str, many: bool) -> str:
        return shape(statement) + (" [many]" if many else "")

    def reset(self) -> None:
        self.seen.clear()
        self.waited.clear()
        self.transactions = 0

    async def measure(self, work: Awaitable[Any]) -> tuple[float, float]:
        """Count ``work`` alone (from a reset); its wall and CPU seconds in this process."""
        self.reset()
        wall, cpu = time.perf_counter(), time.process_time()
        await work
        return time.perf_counter() - wall, time.process_time() - cpu

    def report(self, label: str, n: int, unit: str, wall: float, cpu: float) -> None:
        shapes = Counter(self._shape(s, m) for s, m in self.seen)
        per = len(self.seen) / max(1, n)
        print(
            f"\n{label}: {n} {unit}, {len(self.seen)} statements ({per:.2f}/{unit[:-1]}), "
            f"{self.transactions} transactions"
        )
        print(
            f"  {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU in this process, "
            f"{sum(self.waited.values()) * 1000:.0f} ms inside statements"
        )
        for kind, k in shapes.most_common():
            print(f"  {k:>6}  {kind:<52}{self.waited[kind] * 1000:>8.1f} ms")
