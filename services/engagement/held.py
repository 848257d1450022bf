"""Writes a consumer batch holds and writes once, at commit.

Per event, the outreach side used to write: a contact upsert and one consent upsert
per channel for every ``customer.registered`` / ``customer.updated``; and for every
purchase its thank-you (``INSERT … ON CONFLICT (dedupe_key) DO NOTHING``), its pair
counts, its sequence counts and the customer's latest basket.
Inside the runner's batch transaction (``shared.consumer.batch``) these are held here
instead, reduced as the database would reduce them, and written with one
``executemany`` per table when the transaction commits (``repository.write_held_sync``),
in key order (so two replicas' batches lock rows in the same order):

* a contact (a consent) keeps the held row of the newest event, the later of two
  equally new ones, and is written under the same "stored one not newer" condition
  as one by one: several upserts with that condition end as the one of the newest;
* pair and sequence counts add up per (sku, other sku), the name of the last one wins
  (as ``count + 1`` and ``excluded.other_name`` one by one);
* the latest basket is the run's (``prefetch``), which only ever replaces it with a
  newer purchase;
* thank-yous are held once per dedupe key; the purchase's run knows which keys
  exist already (``prefetch``), so "planned once" is decided as the insert would
  decide it, and the insert still skips a key another transaction wrote meanwhile.

Held rows are written before anything in the transaction reads those tables: a
purchase run reads ahead only after writing them (``prefetch.read_ahead``), and every
handler of another kind of event (merges, erasures, journeys, …) runs after them
(``consumers.handlers``). Inside a run, the reads that must see earlier purchases'
counts (the thank-you's recommendations) use the run's copy, kept up to date here
(``recommendations``). A rolled-back transaction writes none of it. Outside the
runner (tests, direct calls) every write goes to the database at once, as before.

The keys of the sales counted into pairs and sequences (``counted_purchases``) are not
held: a run claims them when it reads ahead (``prefetch``), so that a batch overlapping
this one (a partition handed over mid-batch) waits for this one's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.engagement import repository
from shared.consumer import batch

_KEY = "engagement.held"


@dataclass
class Held:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    consents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pairs: dict[tuple[str, str], tuple[int, str | None]] = field(default_factory=dict)
    sequences: dict[tuple[str, str], tuple[int, str | None]] = field(default_factory=dict)
    baskets: dict[str, dict[str, Any]] = field(default_factory=dict)
    outreach: dict[str, dict[str, Any]] = field(default_factory=dict)  # by dedupe key

    def __bool__(self) -> bool:
        return bool(
            self.contacts
            or self.consents
            or self.pairs
            or self.sequences
            or self.baskets
            or self.outreach
        )

    def contact(self, values: dict[str, Any]) -> None:
        """An upsert of ``repository.upsert_contact``'s values: the newest event's stays."""
        held = self.contacts.get(values["customer_id"])
        if held is None or held["updated_at"] <= values["updated_at"]:
            self.contacts[values["customer_id"]] = values

    def consent(self, values: dict[str, Any]) -> None:
        """An upsert of ``repository.upsert_consent``'s values: the newest statement stays."""
        key = (values["customer_id"], values["channel"])
        held = self.consents.get(key)
        if held is None or held["changed_at"] <= values["changed_at"]:
            self.consents[key] = values

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Each kind's rows for ``repository.write_held_sync``, in key order."""
        return {
            "contact": [self.contacts[k] for k in sorted(self.contacts)],
            "consent": [self.consents[k] for k in sorted(self.consents)],
            "pair": [
                {"sku": sku, "other_sku": other, "other_name": name, "count": count}
                for (sku, other), (count, name) in sorted(self.pairs.items())
            ],
            "sequence": [
                {"sku": sku, "next_sku": after, "next_name": name, "count": count}
                for (sku, after), (count, name) in sorted(self.sequences.items())
            ],
            "basket": [self.baskets[k] for k in sorted(self.baskets)],
            "outreach": [self.outreach[k] for k in sorted(self.outreach)],
        }


def of(session: AsyncSession) -> Held | None:
    """This transaction's held writes when it handles a consumer batch, else None (write
    at once)."""
    if not batch(session):
        return None
    sync = session.sync_session
    held = sync.info.get(_KEY)
    if isinstance(held, Held):
        return held
    held = sync.info[_KEY] = Held()
    sa_event.listen(sync, "before_commit", _write_at_commit)
    sa_event.listen(sync, "after_rollback", _drop)
    return held


async def write(session: AsyncSession) -> None:
    """Write the held rows now: something in this transaction is about to read them."""
    if session.sync_session.info.get(_KEY):
        await session.run_sync(_write_at_commit)


def _write_at_commit(sync: Session) -> None:
    held = sync.info.get(_KEY)
    if not held:
        return
    sync.info[_KEY] = Held()
    repository.write_held_sync(sync, held.rows())


def _drop(sync: Session) -> None:
    if sync.info.get(_KEY):
        sync.info[_KEY] = Held()
