"""Reading ahead over a run of purchases in a consumer batch.

Per purchase, earning needs to know whether the purchase id is already recorded,
whether refunds wait for it, and the member locked. One query each costs two
round trips per purchase; instead, the first purchase of a *run* (the purchases
the runner hands over back to back, up to the next event of another type, see
``shared.consumer.batch``) reads them for the whole run in three statements:

1. which of the run's purchase ids are recorded, and which have refunds waiting;
2. the members of the purchases that will earn (not recorded, first of their id
   in the run, not seen earlier in the batch), locked — created if new — in one
   statement, in customer id order, into the transaction's lock cache;
3. (1) again, now under those locks: on PostgreSQL a refund handled by another
   consumer at the same time locks the member before it records itself as waiting,
   so what (1) read before the locks may have missed it. Not on SQLite, whose write
   transactions run one at a time (``BEGIN IMMEDIATE``): nothing commits meanwhile.

Exactness: inside a run only purchase handlers run, and a purchase changes none
of this for any *other* purchase id (it records its own id, which the batch's
``earning.SEEN`` set already tracks, and applies only its own refunds), so the
answers read at the start of the run are the ones a query per purchase would
get. Members it locks are exactly the ones those purchases would lock, each once.
A run ends at the first event of another kind, so a purchase after it is not
covered and reads ahead afresh, from where it stands; other handlers also drop the
read-ahead (``forget``), so nothing another kind of event may change (a refund
waiting, a merge, an erasure) is ever answered from before it. Merges and erasures
drop the lock cache themselves (``repository.forget_locks``). Outside the runner
(no batch, or an event not in it) every purchase falls back to its own query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from shared.consumer import run_from
from shared.events.commerce import PurchaseCompleted

_KEY = "loyalty.prefetched"


@dataclass
class _Run:
    covered: set[str] = field(default_factory=set)
    recorded: set[str] = field(default_factory=set)
    waiting: set[str] = field(default_factory=set)


def forget(session: AsyncSession) -> None:
    """Drop the read-ahead: a handler of another kind may change what it answered."""
    session.info.pop(_KEY, None)


async def purchase_state(
    session: AsyncSession, event: PurchaseCompleted, seen: set[str]
) -> tuple[bool, bool]:
    """(recorded, refunds waiting) for the event's purchase, as ``repository.purchase_state``.

    ``seen`` are the purchase ids this transaction already counted (they are skipped
    before this is asked, and their members are locked already).
    """
    purchase_id = event.data.purchase_id
    run = session.info.get(_KEY)
    if not isinstance(run, _Run) or purchase_id not in run.covered:
        run = await _read_ahead(session, event, seen)
    if run is None:
        known, waiting = await repository.purchase_state(session, purchase_id)
        if known:
            return known, waiting
        # Read again under the member's lock: a refund of this purchase that committed
        # while the lock was awaited (another consumer, PostgreSQL) is waiting now.
        await repository.lock_member(session, event.subject)
        return await repository.purchase_state(session, purchase_id)
    return purchase_id in run.recorded, purchase_id in run.waiting


async def _read_ahead(
    session: AsyncSession, event: PurchaseCompleted, seen: set[str]
) -> _Run | None:
    purchases = run_from(session, event)
    if purchases is None:
        return None
    run = _Run(covered={p.data.purchase_id for p in purchases})
    run.recorded, run.waiting = await repository.purchases_state(session, run.covered)
    earning: set[str] = set()
    members: list[str] = []
    for p in purchases:
        purchase_id = p.data.purchase_id
        if purchase_id in run.recorded or purchase_id in seen or purchase_id in earning:
            continue
        earning.add(purchase_id)
        members.append(p.subject)
    await repository.lock_members(session, members)
    if members and session.get_bind().dialect.name != "sqlite":
        # Again under the members' locks: a refund that committed while they were awaited
        # (another consumer, PostgreSQL) waits for its purchase now. SQLite runs one
        # writer at a time (BEGIN IMMEDIATE): nothing can commit meanwhile there.
        run.recorded, run.waiting = await repository.purchases_state(session, run.covered)
    session.info[_KEY] = run
    return run
