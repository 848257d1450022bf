"""Every query loyalty runs (the reports' in ``repository.reports``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, literal, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty.models import (
    CampaignUsage,
    LedgerEntry,
    Lot,
    Member,
    Purchase,
    Redemption,
    Refund,
    RuleSet,
    TierChange,
)
from services.loyalty.repository.lots import (
    lots_by_id,
    lots_due,
    lots_to_release,
    lots_to_warn,
    lots_with_points,
    next_expiry,
    next_release,
)
from services.loyalty.repository.redemptions import (
    claim_request,
    forget_requests,
    get_redemption,
    get_reward,
    list_redemptions,
    list_rewards,
    lock_reward,
    prune_requests,
    redemption_by_key,
    redemption_lots,
)
from shared.db import dialect_insert, per_dialect
from shared.key_lists import one_of

MAX_MERGE_HOPS = 8


async def get_member(session: AsyncSession, customer_id: str) -> Member | None:
    return await session.get(Member, customer_id)


LOCKED = "loyalty.locked_members"
USAGE = "loyalty.locked_usage"


def _locked(session: AsyncSession) -> dict[str, Member]:
    """Members this transaction already holds the lock of (a consumer batch locks once)."""
    cache: dict[str, Member] = session.info.setdefault(LOCKED, {})
    return cache


def forget_locks(session: AsyncSession) -> None:
    """Call after expiring or expunging objects: the cached members and usages are stale then.

    Flush first: a cached object's unflushed changes are what later calls rely on.
    """
    session.info.pop(LOCKED, None)
    session.info.pop(USAGE, None)


async def _lock(session: AsyncSession, customer_id: str) -> Member | None:
    stmt = select(Member).where(Member.customer_id == customer_id).with_for_update()
    result = await session.execute(stmt.execution_options(populate_existing=True))
    return result.scalar_one_or_none()


async def _create_and_lock(session: AsyncSession, customer_id: str) -> Member:
    """One round trip: insert the member if new; either way return it, locked."""
    insert = dialect_insert(session)
    stmt = (
        insert(Member)
        .values(customer_id=customer_id, balance=0, lifetime_earned=0, purchase_count=0)
        .on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"customer_id": insert(Member).excluded.customer_id},
        )
        .returning(Member)
    )
    result = await session.execute(stmt, execution_options={"populate_existing": True})
    member: Member = result.scalar_one()
    return member


@per_dialect
def _lock_members_statement(insert: Any) -> Any:
    """Built once per dialect (a statement object keeps its cache key)."""
    return (
        insert(Member)
        .on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"customer_id": insert(Member).excluded.customer_id},
        )
        .returning(Member)
    )


async def lock_members(session: AsyncSession, customer_ids: Iterable[str]) -> None:
    """Lock several members at once (creating the new ones), in customer id order.

    One round trip for what ``lock_member`` does one id at a time; the members join
    the transaction's lock cache, so ``lock_member`` then finds them (and follows a
    merge to the survivor as usual). Ids already locked are left alone: their
    in-memory changes are newer than the database's.
    """
    cache = _locked(session)
    wanted = sorted({c for c in customer_ids if c not in cache})
    if not wanted:
        return
    stmt = _lock_members_statement(session)
    for chunk in _chunks(wanted):
        rows = [
            {"customer_id": c, "balance": 0, "lifetime_earned": 0, "purchase_count": 0}
            for c in chunk
        ]
        result = await session.execute(stmt, rows, execution_options={"populate_existing": True})
        for member in result.scalars():
            cache[member.customer_id] = member


async def lock_existing_members(session: AsyncSession, customer_ids: Iterable[str]) -> None:
    """Lock the members among ``customer_ids`` that exist (creating none), in id order.

    One statement for what ``lock_member_or_none`` does one id at a time; they join the
    transaction's lock cache. Ids already locked are left alone, as in ``lock_members``.
    """
    cache = _locked(session)
    wanted = sorted({c for c in customer_ids if c not in cache})
    for chunk in _chunks(wanted):
        stmt = (
            select(Member)
            .where(one_of(Member.customer_id, chunk))
            .order_by(Member.customer_id)
            .with_for_update()
        )
        result = await session.execute(stmt, execution_options={"populate_existing": True})
        for member in result.scalars():
            cache[member.customer_id] = member


def _chunks(values: list[str], size: int = 1000) -> list[list[str]]:
    """Pieces small enough for the drivers' bound-parameter limits (32,767 on asyncpg)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def locked_member(session: AsyncSession, customer_id: str) -> Member | None:
    """The member if this transaction holds its lock already (its in-memory state is newer)."""
    return _locked(session).get(customer_id)


_BIRTHDAYS = select(
    Member.__table__.c.customer_id, Member.__table__.c.birthday, Member.__table__.c.merged_into
).where(one_of(Member.__table__.c.customer_id, param="ids"))


async def member_birthdays(
    session: AsyncSession, customer_ids: Iterable[str]
) -> dict[str, tuple[date | None, str | None]]:
    """(birthday, merged_into) of the members among ``customer_ids``, as committed; no lock.

    One cached statement for any number of ids (``one_of``: the ids are one parameter).
    """
    found: dict[str, tuple[date | None, str | None]] = {}
    for chunk in _chunks(sorted(set(customer_ids))):
        for customer_id, birthday, merged_into in await session.execute(_BIRTHDAYS, {"ids": chunk}):
            found[customer_id] = (birthday, merged_into)
    return found


_PURCHASES_STATE = union_all(
    select(Purchase.purchase_id, literal(True).label("recorded")).where(
        one_of(Purchase.purchase_id, param="ids")
    ),
    select(Refund.purchase_id, literal(False).label("recorded"))
    .where(one_of(Refund.purchase_id, param="ids"), Refund.applied.is_(False))
    .distinct(),
)


async def purchases_state(
    session: AsyncSession, purchase_ids: Iterable[str]
) -> tuple[set[str], set[str]]:
    """``purchase_state`` for several purchases in one query: (recorded, with refunds waiting).

    One cached statement for any number of ids (``one_of``: the ids are one parameter).
    """
    known: set[str] = set()
    refunds: set[str] = set()
    for ids in _chunks(sorted(set(purchase_ids))):
        for purchase_id, is_recorded in await session.execute(_PURCHASES_STATE, {"ids": ids}):
            (known if is_recorded else refunds).add(purchase_id)
    return known, refunds


async def lock_member(session: AsyncSession, customer_id: str, *, create: bool = True) -> Member:
    """The member (the survivor, if it was merged), locked until the transaction ends."""
    member = await lock_member_or_none(session, customer_id, create=create)
    assert member is not None
    return member


async def lock_member_or_none(
    session: AsyncSession, customer_id: str, *, create: bool = False
) -> Member | None:
    cache = _locked(session)
    member = cache.get(customer_id)
    if member is None:
        member = await (_create_and_lock if create else _lock)(session, customer_id)
    for _ in range(MAX_MERGE_HOPS):
        if member is None:
            return None
        cache[member.customer_id] = member
        if member.merged_into is None:
            return member
        member = cache.get(member.merged_into) or await _lock(session, member.merged_into)
    raise RuntimeError(f"merge chain of {customer_id!r} is too long")


async def lock_member_row(session: AsyncSession, customer_id: str) -> Member | None:
    """The member row of ``customer_id`` itself (not its survivor), locked; None if none."""
    member = _locked(session).get(customer_id) or await _lock(session, customer_id)
    if member is not None:
        _locked(session)[customer_id] = member
    return member


async def purchase_state(session: AsyncSession, purchase_id: str) -> tuple[bool, bool]:
    """Whether the purchase is already recorded, and whether refunds wait for it."""
    known = select(Purchase.purchase_id).where(Purchase.purchase_id == purchase_id).exists()
    waiting = (
        select(Refund.refund_id)
        .where(Refund.purchase_id == purchase_id, Refund.applied.is_(False))
        .exists()
    )
    row = (await session.execute(select(known, waiting))).one()
    return bool(row[0]), bool(row[1])


async def alias_ids(session: AsyncSession, customer_id: str) -> list[str]:
    """The customer id and every id merged into it."""
    stmt = select(Member.customer_id).where(Member.merged_into == customer_id)
    return [customer_id, *(await session.execute(stmt)).scalars()]


async def list_ledger(
    session: AsyncSession, customer_ids: Sequence[str], *, limit: int, before_id: int | None
) -> Sequence[LedgerEntry]:
    stmt = select(LedgerEntry).where(one_of(LedgerEntry.customer_id, customer_ids))
    if before_id is not None:
        stmt = stmt.where(LedgerEntry.id < before_id)
    stmt = stmt.order_by(LedgerEntry.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


_LATEST_RULE_SET = select(RuleSet).order_by(RuleSet.version.desc()).limit(1)


async def latest_rule_set(session: AsyncSession) -> RuleSet | None:
    return (await session.execute(_LATEST_RULE_SET)).scalar_one_or_none()


async def pending_refunds(session: AsyncSession, purchase_id: str) -> Sequence[Refund]:
    stmt = (
        select(Refund)
        .where(Refund.purchase_id == purchase_id, Refund.applied.is_(False))
        .order_by(Refund.occurred_at, Refund.refund_id)
    )
    return (await session.execute(stmt)).scalars().all()


async def qualifying(
    session: AsyncSession,
    customer_ids: Sequence[str],
    *,
    basis: str,
    since: datetime,
    until: datetime,
) -> Decimal:
    """Points earned (net of reversals) or net spend in the window (since, until]."""
    stmt: Select[Any]
    if basis == "spend":
        stmt = select(func.coalesce(func.sum(Purchase.total), 0)).where(
            one_of(Purchase.customer_id, customer_ids),
            Purchase.occurred_at > since,
            Purchase.occurred_at <= until,
        )
        spend = Decimal((await session.execute(stmt)).scalar_one())
        return spend - await _refunded(session, customer_ids, since=since, until=until)
    stmt = select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
        one_of(LedgerEntry.customer_id, customer_ids),
        LedgerEntry.kind.in_(("earn", "reverse")),
        LedgerEntry.occurred_at > since,
        LedgerEntry.occurred_at <= until,
    )
    return Decimal((await session.execute(stmt)).scalar_one())


async def _refunded(
    session: AsyncSession, customer_ids: Sequence[str], *, since: datetime, until: datetime
) -> Decimal:
    stmt = select(func.coalesce(func.sum(Refund.amount), 0)).where(
        one_of(Refund.customer_id, customer_ids),
        Refund.applied.is_(True),
        Refund.occurred_at > since,
        Refund.occurred_at <= until,
    )
    return Decimal((await session.execute(stmt)).scalar_one())


async def lock_campaign_usage(
    session: AsyncSession, campaign_id: str, customer_id: str
) -> CampaignUsage:
    """The usage row, locked until the transaction ends (created at 0 if new).

    Locked once per transaction, like members: later calls get the same object, whose
    in-memory points are then newer than the database's (no flush needed to re-read).
    """
    usages: dict[tuple[str, str], CampaignUsage] = session.info.setdefault(USAGE, {})
    usage = usages.get((campaign_id, customer_id))
    if usage is None:
        usage = usages[(campaign_id, customer_id)] = await _lock_campaign_usage(
            session, campaign_id, customer_id
        )
    return usage


async def _lock_campaign_usage(
    session: AsyncSession, campaign_id: str, customer_id: str
) -> CampaignUsage:
    await session.execute(
        dialect_insert(session)(CampaignUsage)
        .values(campaign_id=campaign_id, customer_id=customer_id, points=0)
        .on_conflict_do_nothing(index_elements=["campaign_id", "customer_id"])
    )
    stmt = (
        select(CampaignUsage)
        .where(CampaignUsage.campaign_id == campaign_id, CampaignUsage.customer_id == customer_id)
        .with_for_update()
    )
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one()


async def combine_campaign_usage(session: AsyncSession, old: str, new: str) -> None:
    """A merge: what campaigns gave ``old`` counts against ``new``'s per-member budget."""
    stmt = select(CampaignUsage).where(CampaignUsage.customer_id == old)
    for used in (await session.execute(stmt)).scalars().all():
        survivor = await lock_campaign_usage(session, used.campaign_id, new)
        survivor.points += used.points
        await session.delete(used)
    await session.flush()


async def campaign_used(session: AsyncSession, campaign_id: str, customer_id: str) -> int:
    row = await session.get(CampaignUsage, (campaign_id, customer_id))
    return row.points if row is not None else 0


async def reassign(session: AsyncSession, old: str, new: str) -> None:
    """Move everything that belongs to ``old`` (except its ledger history) to ``new``."""
    for model in (Lot, Purchase, Refund, Redemption):
        await session.execute(update(model).where(model.customer_id == old).values(customer_id=new))
    await session.execute(update(Member).where(Member.merged_into == old).values(merged_into=new))


async def anonymise(session: AsyncSession, old: str, anonymous: str) -> None:
    """Replace a customer id everywhere, the ledger included (its amounts stay)."""
    for model in (LedgerEntry, Lot, Purchase, Refund, Redemption, CampaignUsage, TierChange):
        await session.execute(
            update(model).where(model.customer_id == old).values(customer_id=anonymous)
        )
    await session.execute(
        update(Member).where(Member.customer_id == old).values(customer_id=anonymous)
    )


__all__ = [
    "claim_request",
    "forget_requests",
    "get_redemption",
    "get_reward",
    "list_redemptions",
    "list_rewards",
    "lock_reward",
    "lots_by_id",
    "lots_due",
    "lots_to_release",
    "lots_to_warn",
    "lots_with_points",
    "next_expiry",
    "next_release",
    "prune_requests",
    "redemption_by_key",
    "redemption_lots",
]
