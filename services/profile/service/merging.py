"""Merging two customers into the older one, and undoing it.

On merge the survivor's view combines both: counters add, first/last times take
min/max, channels union, identities and timeline move over, and consent is the
strictest per channel (an opt-out on either side stays an opt-out). The points
balance is not summed here: loyalty combines balances on ``customer.merged`` and
its next event for the survivor carries the combined balance.

Undo moves back the identities and timeline entries that came from the absorbed
id (``origin_id``) and recomputes both customers' purchase figures, channels,
open complaints and latest tier / churn / NPS / outreach / points from their
timelines (``restoring``). Consent on the survivor is left as it is
(an undo never loosens consent); the restored customer gets its own back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository
from services.profile.models import Customer, Merge
from services.profile.service import restoring, segments
from services.profile.service.customers import (
    SOURCE,
    announce,
    details,
    earliest,
    is_current,
    latest,
    live_customer,
)
from shared import outbox
from shared.events.profile import (
    ConsentChanged,
    CustomerDetails,
    CustomerMerged,
    CustomerMergedData,
    CustomerUnmerged,
    CustomerUnmergedData,
    CustomerUpdated,
)
from shared.http import AppError, NotFound

ADDITIVE = ("order_count", "gross_spend", "refunded_spend", "open_complaints")
STAMPED = (
    ("tier_updated_at", ("tier",)),
    ("churn_updated_at", ("churn_risk", "churn_band", "clv", "clv_currency")),
    ("last_nps_at", ("last_nps",)),
    ("last_outreach_at", ("last_outreach_journey",)),
)
FILLED = (
    "name", "name_folded", "email", "phone", "language", "timezone", "birthday",
    "preferred_channel",
)  # fmt: skip


class MergeNotFound(NotFound):
    code = "merge_not_found"


class MergeNotUndoable(AppError):
    status_code = 409
    code = "merge_not_undoable"


async def merge(
    session: AsyncSession, survivor: Customer, absorbed: Customer, *, now: datetime
) -> Merge:
    """Fold ``absorbed`` into ``survivor`` and publish ``customer.merged``."""
    record = Merge(
        merge_id=uuid.uuid4().hex,
        survivor_id=survivor.customer_id,
        absorbed_id=absorbed.customer_id,
        absorbed_snapshot=details(absorbed).model_dump(mode="json"),
        merged_at=now,
    )
    session.add(record)
    _combine(survivor, absorbed)
    await repository.move_customer_rows(session, absorbed.customer_id, survivor.customer_id)
    await _strictest_consent(session, survivor, absorbed, record, now)
    absorbed.merged_into = survivor.customer_id
    await segments.leave_all(session, absorbed.customer_id, now=now)
    await segments.reevaluate(session, survivor, now=now)
    await outbox.enqueue(session, _merged_event(record))
    await announce(session, CustomerUpdated, survivor, event_id=_id("updated", record), at=now)
    return record


def _combine(survivor: Customer, absorbed: Customer) -> None:
    for field in ADDITIVE:
        setattr(survivor, field, getattr(survivor, field) + getattr(absorbed, field))
    if survivor.spend_currency is None:
        survivor.spend_currency = absorbed.spend_currency
    elif absorbed.spend_currency not in (None, survivor.spend_currency):
        survivor.gross_spend -= absorbed.gross_spend  # other currency: counted, not summed
        survivor.refunded_spend -= absorbed.refunded_spend
    survivor.first_purchase_at = earliest(survivor.first_purchase_at, absorbed.first_purchase_at)
    survivor.last_purchase_at = latest(survivor.last_purchase_at, absorbed.last_purchase_at)
    for stamp, fields in STAMPED:
        theirs = getattr(absorbed, stamp)
        if theirs is not None and is_current(getattr(survivor, stamp), theirs):
            for field in (stamp, *fields):
                setattr(survivor, field, getattr(absorbed, field))
    for field in FILLED:
        if getattr(survivor, field) is None:
            setattr(survivor, field, getattr(absorbed, field))
    if survivor.quiet_start is None:
        survivor.quiet_start, survivor.quiet_end = absorbed.quiet_start, absorbed.quiet_end


async def _strictest_consent(
    session: AsyncSession, survivor: Customer, absorbed: Customer, record: Merge, now: datetime
) -> None:
    """Per channel the strictest status wins; each change is published."""
    mine = {c.channel: c for c in await repository.list_consents(session, survivor.customer_id)}
    for theirs in await repository.list_consents(session, absorbed.customer_id):
        current = mine.get(theirs.channel)
        if current is not None and (current.status == "opt_out" or theirs.status == "opt_in"):
            continue
        await repository.set_consent(
            session, survivor.customer_id, theirs.channel, theirs.status, "merge", now
        )
        await outbox.enqueue(
            session,
            ConsentChanged.create(
                id=_id(f"consent:{theirs.channel}", record),
                subject=survivor.customer_id,
                source=SOURCE,
                time=now,
                data={"channel": theirs.channel, "status": theirs.status, "source": "merge",
                      "changed_at": now},
            ),
        )  # fmt: skip


def _merged_event(record: Merge) -> CustomerMerged:
    return CustomerMerged.create(
        id=_id("merged", record),
        subject=record.survivor_id,
        source=SOURCE,
        time=record.merged_at,
        data=CustomerMergedData(merge_id=record.merge_id, merged_id=record.absorbed_id),
    )


def _id(what: str, record: Merge) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keepwell:profile:{what}:{record.merge_id}"))


# --- undo -------------------------------------------------------------------------


async def undo(session: AsyncSession, *, merge_id: str, now: datetime) -> Merge:
    record = await repository.get_merge_for_update(session, merge_id)
    if record is None:
        raise MergeNotFound(f"no merge with id {merge_id!r}")
    if record.undone_at is not None:
        raise MergeNotUndoable(f"merge {merge_id!r} was already undone")
    survivor = await live_customer(session, record.survivor_id)
    if survivor.customer_id != record.survivor_id:
        raise MergeNotUndoable(
            f"{record.survivor_id!r} was merged again since; undo that merge first"
        )
    restored = await repository.lock_customer(session, record.absorbed_id)
    assert restored is not None  # merged customers are never deleted
    restored.merged_into = None
    await repository.move_back(session, record.absorbed_id, record.survivor_id)
    for customer in (survivor, restored):
        await recompute_from_timeline(session, customer)
        await segments.reevaluate(session, customer, now=now)
    record.undone_at = now
    consents = await repository.list_consents(session, restored.customer_id)
    await outbox.enqueue(session, _unmerged_event(record, now, details(restored, consents)))
    return record


async def recompute_from_timeline(session: AsyncSession, customer: Customer) -> None:
    """Purchase figures, channels and open complaints as the timeline says."""
    cid = customer.customer_id
    figures = await repository.purchase_figures(session, cid, customer.spend_currency)
    customer.order_count = figures.orders
    customer.gross_spend = figures.gross or Decimal(0)
    customer.refunded_spend = figures.refunded or Decimal(0)
    customer.first_purchase_at, customer.last_purchase_at = figures.first, figures.last
    customer.open_complaints = await repository.count_open_complaints(session, cid)
    await repository.rebuild_channels(session, cid)
    await restoring.restore_latest(session, customer)


def _unmerged_event(record: Merge, now: datetime, restored: CustomerDetails) -> CustomerUnmerged:
    """Keyed by the survivor, like the merge; the restored customer's details ride along
    (not as a ``customer.updated`` of their own, which would go to the restored id's
    partition and could be applied while consumers still map that id to the survivor)."""
    return CustomerUnmerged.create(
        id=_id("unmerged", record),
        subject=record.survivor_id,
        source=SOURCE,
        time=now,
        data=CustomerUnmergedData(
            merge_id=record.merge_id, restored_id=record.absorbed_id, restored=restored
        ),
    )
