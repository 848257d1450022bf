"""Load past transactions as purchase.completed events, so churn scores start from history.

    python -m tools.import_history history.csv --bootstrap 127.0.0.1:9092 [--topic-prefix dev.]
        [--currency EUR] [--source /import/history] [--dry-run]

The CSV holds one transaction per row: ``customer, date, amount[, currency]``, with or
without a header row naming those columns (any order when named). ``date`` is a day
(``2024-03-31`` or ``20240331``, taken as noon UTC) or an RFC 3339 time with an offset
(``2024-03-31T18:20:00+07:00``). The whole file is validated before anything is sent: a bad
row stops the import with its line number.

Event and purchase ids are derived from the row's content (and its occurrence number among
identical rows), so importing the same file again produces the same events and engagement's
de-duplication ignores them. Events go to ``<prefix>commerce.purchases`` keyed by customer.
Purchases older than the thank-you age limit get no thank-you e-mail.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import ValidationError

from shared.config import ServiceSettings
from shared.events import Money, derived_id
from shared.events.commerce import PURCHASES_TOPIC, PurchaseCompleted, PurchaseCompletedData
from shared.kafka import make_producer

COLUMNS = ("customer", "date", "amount", "currency")


class BadRow(ValueError):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True)
class Row:
    line: int
    customer: str
    when: datetime
    amount: Decimal
    currency: str


def parse_when(text: str) -> datetime:
    text = text.strip()
    if len(text) in (8, 10):
        return datetime.combine(date.fromisoformat(text), time(12), tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time needs an offset (e.g. +07:00 or Z)")
    return moment


def read_rows(lines: Iterable[str], default_currency: str) -> list[Row]:
    records = [
        (n, r) for n, r in enumerate(csv.reader(lines), start=1) if any(c.strip() for c in r)
    ]
    if not records:
        return []
    positions = {name: i for i, name in enumerate(COLUMNS)}
    header = [c.strip().lower() for c in records[0][1]]
    if "customer" in header:
        positions = {name: header.index(name) for name in COLUMNS if name in header}
        records = records[1:]
        missing = {"customer", "date", "amount"} - positions.keys()
        if missing:
            raise BadRow(1, f"header lacks {sorted(missing)}")
    return [_row(n, cells, positions, default_currency) for n, cells in records]


def _row(line: int, cells: list[str], pos: dict[str, int], default_currency: str) -> Row:
    def cell(name: str) -> str | None:
        i = pos.get(name)
        return cells[i].strip() if i is not None and i < len(cells) and cells[i].strip() else None

    customer, when, amount = cell("customer"), cell("date"), cell("amount")
    if not customer or not when or amount is None:
        raise BadRow(line, "needs customer, date and amount")
    try:
        return Row(
            line, customer, parse_when(when), Decimal(amount), cell("currency") or default_currency
        )
    except (ValueError, InvalidOperation) as exc:
        raise BadRow(line, f"{exc}") from exc


def to_events(rows: Sequence[Row], *, source: str) -> list[PurchaseCompleted]:
    seen: Counter[tuple[str, str, str, str]] = Counter()
    events = []
    for row in rows:
        content = (row.customer, row.when.isoformat(), str(row.amount), row.currency)
        seen[content] += 1
        key = derived_id("import_history", *content, str(seen[content]))
        try:
            events.append(_event(row, key, source))
        except ValidationError as exc:
            raise BadRow(row.line, str(exc.errors()[0]["msg"])) from exc
    return events


def _event(row: Row, key: str, source: str) -> PurchaseCompleted:
    return PurchaseCompleted.create(
        subject=row.customer,
        source=source,
        id=key,
        time=row.when,
        data=PurchaseCompletedData(
            purchase_id=f"hist-{key}",
            channel="other",
            total=Money(amount=row.amount, currency=row.currency),
        ),
    )


async def produce(events: Sequence[PurchaseCompleted], settings: ServiceSettings) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        topic = settings.topic(PURCHASES_TOPIC)
        sent = [await producer.send(topic, value=e.to_json(), key=e.key) for e in events]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument("--currency", default="EUR", help="when the row names none")
    parser.add_argument("--source", default="/import/history")
    parser.add_argument("--dry-run", action="store_true", help="validate only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        with args.csv.open(newline="") as handle:
            events = to_events(read_rows(handle, args.currency), source=args.source)
    except (BadRow, OSError, UnicodeDecodeError) as exc:
        print(f"{args.csv}: {exc}; nothing was sent", file=sys.stderr)
        return 2
    if not args.dry_run:
        settings = ServiceSettings(
            kafka_bootstrap_servers=args.bootstrap, topic_prefix=args.topic_prefix
        )
        asyncio.run(produce(events, settings))
    verb = "checked" if args.dry_run else "sent"
    print(f"{len(events)} purchases {verb} to {args.topic_prefix}{PURCHASES_TOPIC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
