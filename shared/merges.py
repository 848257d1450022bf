"""Customer ids absorbed by a merge, whose later events a service applies to the survivor.

Profile publishes ``customer.merged`` (``data.merged_id`` folds into ``subject``) and,
when an operator undoes one, ``customer.unmerged`` (``data.restored_id`` is a separate
customer again). A till or an app may go on naming the absorbed id for a while; a
service that keeps a customer's history under one id applies such events to the
survivor, so fatigue rules, caps and histories see one person.

Each such service declares the ``merged_customers`` table in its own metadata
(``merged_customers_table``; its migrations create it) and goes through ``Merges``:

- ``record`` on ``customer.merged``: the absorbed id now stands for the survivor, and
  ids that stood for the absorbed one follow it (chains are kept flat, one hop);
- ``forget`` on ``customer.unmerged`` (the restored id), ``forget_everywhere`` on
  ``customer.erased`` (rows naming the erased id on either side);
- ``as_survivor``: an event as the customer it now concerns; ``for_survivor``: a
  handler given such events;
- ``survivor_of`` / ``survivors``: one id, or a batch's ids in one statement;
- ``named``: the id an event named before it was given its survivor's, for a service
  that records where a row came from, so an undone merge can give it back.

Inside the consumer runner's batch transaction, ``survivor_of`` (and ``survivors``, for ids
of the batch's subjects, as a read-ahead over a run asks) reads the survivors of
every subject in the batch (``shared.consumer.batch``) in one statement the first time
it is asked, and answers the batch's later questions from that; ``record``, ``forget``
and ``forget_everywhere`` drop what was read, so a question after a merge or an undo in
the same batch reads again and sees it. Only this class writes the table, so that is
everything that can change it within the transaction; a merge another replica commits
while the batch runs is seen by the next batch (a per-event query might have seen it a
few events earlier: the merge and those events were concurrent either way). Outside a
batch each question is its own statement.

Only the ids are kept here: what moved at the merge stays where the service put it, unless
the service records each row's origin (``named``) and gives rows back itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Column, MetaData, String, Table, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.consumer import Handler, batch
from shared.db import UtcDateTime
from shared.events import Event
from shared.key_lists import one_of

E = TypeVar("E", bound=Event)

# session.info key of what ``Merges`` read for the batch: (the batch's events, the
# subjects asked about, absorbed id -> survivor among them).
_READ = "keepwell.merges.batch"
# session.info key: event id -> the subject the event named, for events given their
# survivor's id in this transaction.
_NAMED = "keepwell.merges.named"


def merged_customers_table(metadata: MetaData) -> Table:
    """The ``merged_customers`` table in a service's own metadata."""
    return Table(
        "merged_customers",
        metadata,
        Column("customer_id", String(64), primary_key=True),
        Column("survivor_id", String(64), nullable=False, index=True),
        Column("merged_at", UtcDateTime, nullable=False),
    )


class Merges:
    """Reads and writes of one service's ``merged_customers`` table."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def survivor_of(self, session: AsyncSession, customer_id: str) -> str | None:
        """The customer ``customer_id`` was merged into, if it was."""
        read = await self._batch_read(session)
        if read is not None and customer_id in read[1]:
            return read[2].get(customer_id)
        t = self.table
        found: str | None = await session.scalar(
            select(t.c.survivor_id).where(t.c.customer_id == customer_id)
        )
        return found

    async def survivors(self, session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, str]:
        """Absorbed id -> survivor, for those of ``customer_ids`` that were merged."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        read = await self._batch_read(session)
        if read is not None and read[1].issuperset(ids):
            return {i: read[2][i] for i in ids if i in read[2]}
        return await self._select(session, ids)

    async def _select(self, session: AsyncSession, ids: list[str]) -> dict[str, str]:
        t = self.table
        stmt = select(t.c.customer_id, t.c.survivor_id).where(one_of(t.c.customer_id, ids))
        return {old: new for old, new in (await session.execute(stmt)).all()}

    async def _batch_read(
        self, session: AsyncSession
    ) -> tuple[Sequence[Event], frozenset[str], dict[str, str]] | None:
        """The survivors of the batch's subjects, read once per batch (and again after a
        change); None outside the runner's batch."""
        events = batch(session)
        if not events:
            return None
        key = (_READ, self.table.name)
        read = session.info.get(key)
        if read is None or read[0] is not events:
            subjects = frozenset(e.subject for e in events)
            read = (events, subjects, await self._select(session, sorted(subjects)))
            session.info[key] = read
        return read

    def _changed(self, session: AsyncSession) -> None:
        session.info.pop((_READ, self.table.name), None)

    async def as_survivor(self, session: AsyncSession, event: E) -> E:
        """The event as the customer it now concerns: an absorbed id's names its survivor."""
        survivor = await self.survivor_of(session, event.subject)
        return event if survivor is None else self.rewritten(session, event, survivor)

    @staticmethod
    def rewritten(session: AsyncSession, event: E, survivor: str) -> E:
        """``event`` naming ``survivor`` instead; ``named`` still tells the id it named."""
        session.info.setdefault(_NAMED, {}).setdefault(event.id, event.subject)
        return event.model_copy(update={"subject": survivor})

    @staticmethod
    def named(session: AsyncSession, event: Event) -> str:
        """The customer id ``event`` named, before ``as_survivor`` (or ``rewritten``) gave
        it its survivor's; its subject if it was not given another."""
        named: dict[str, str] = session.info.get(_NAMED, {})
        return named.get(event.id, event.subject)

    def for_survivor(self, handler: Handler) -> Handler:
        """``handler``, given each event as ``as_survivor`` makes it."""

        async def handle(session: AsyncSession, event: Event) -> None:
            await handler(session, await self.as_survivor(session, event))

        return handle

    async def record(self, session: AsyncSession, *, old: str, new: str, at: datetime) -> None:
        """``old`` now stands for ``new``; ids that stood for ``old`` follow it to ``new``."""
        self._changed(session)
        t = self.table
        await session.execute(update(t).where(t.c.survivor_id == old).values(survivor_id=new))
        await session.execute(delete(t).where(t.c.customer_id.in_((old, new))))
        await session.execute(insert(t).values(customer_id=old, survivor_id=new, merged_at=at))

    async def forget(self, session: AsyncSession, customer_id: str) -> None:
        """An undone merge: the restored id speaks for itself again."""
        self._changed(session)
        t = self.table
        await session.execute(delete(t).where(t.c.customer_id == customer_id))

    async def forget_everywhere(self, session: AsyncSession, customer_id: str) -> None:
        """An erasure: no row names the id, as the absorbed one or as the survivor."""
        self._changed(session)
        t = self.table
        await session.execute(
            delete(t).where(or_(t.c.customer_id == customer_id, t.c.survivor_id == customer_id))
        )
