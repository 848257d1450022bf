"""Redeeming rewards: never spends the same points twice, never takes stock below zero.

The request's Idempotency-Key row is claimed first, then the member row is locked
(SELECT … FOR UPDATE on PostgreSQL; SQLite runs one writer at a time with BEGIN
IMMEDIATE), then the reward row. The balance check, the stock check, the lots consumed
and the ledger entry all happen under those locks, and the answer (redemption or
refusal) is recorded on the key's row in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.loyalty import repository
from services.loyalty.config import LoyaltySettings
from services.loyalty.models import Member, Redemption, RedemptionLot, RedemptionRequest, Reward
from services.loyalty.service import ledger, rulebook, schedule
from services.loyalty.service.common import SOURCE, maybe_utc, utc
from services.loyalty.service.errors import (
    IdempotencyKeyReused,
    InsufficientPoints,
    MemberNotFound,
    RedemptionClosed,
    RedemptionNotFound,
    RewardNotFound,
    RewardUnavailable,
)
from services.loyalty.service.ledger import Why
from services.loyalty.service.rules import Rules
from shared import outbox, retention
from shared.db import Database
from shared.events import derived_id
from shared.events.loyalty import (
    PointsRedeemed,
    PointsRedeemedData,
    RedemptionCancelled,
    RedemptionCancelledData,
)
from shared.http import AppError, Conflict

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_code() -> str:
    """A code a till can show or scan: 12 characters, no look-alikes (0/O, 1/I)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))


def request_hash(reward_id: str) -> str:
    return hashlib.sha256(f"reward_id={reward_id}".encode()).hexdigest()


async def member_locked(session: AsyncSession, customer_id: str) -> Member:
    member = await repository.lock_member_or_none(session, customer_id)
    if member is None:
        raise MemberNotFound(f"no loyalty member with customer id {customer_id!r}")
    return member


# Refusals that describe the request and the member's state when it was decided. They
# are remembered under the Idempotency-Key, like a redemption is: an attempt that was
# held up by a fault and lands after the client was told "no" must not then say "yes".
REMEMBERED: tuple[type[AppError], ...] = (
    MemberNotFound,
    RewardNotFound,
    RewardUnavailable,
    InsufficientPoints,
)


@dataclass(frozen=True)
class Outcome:
    """What a redemption request was answered: a redemption or a refusal, maybe replayed.

    A refusal is recorded in the session, so the caller commits it and then raises it
    (``result``): a rolled-back refusal would let a late attempt with the same key
    redeem after the client was refused.
    """

    redemption: Redemption | None
    replayed: bool
    refusal: AppError | None = None

    def result(self) -> Redemption:
        if self.refusal is not None:
            raise self.refusal
        assert self.redemption is not None
        return self.redemption


async def redeem(
    session: AsyncSession,
    *,
    customer_id: str,
    reward_id: str,
    idempotency_key: str,
    operator: str,
    now: datetime,
    settings: LoyaltySettings,
) -> Outcome:
    """Redeem once per Idempotency-Key: every attempt under a key gets the first answer.

    The key's row is claimed (inserted or locked) before anything else, so attempts under
    one key run one after another, and each finds what the previous one decided.
    """
    digest = request_hash(reward_id)
    request = await repository.claim_request(session, customer_id, idempotency_key, digest, now)
    if request.request_hash != digest:
        raise _key_reused()
    if request.refusal_code is not None:
        return Outcome(None, True, _replayed_refusal(request))
    if request.redemption_id is not None:
        return Outcome(await _earlier(session, request.redemption_id), True)
    try:
        checked = await _checked(
            session, customer_id, reward_id, idempotency_key, digest, now, settings
        )
    except REMEMBERED as refusal:
        request.refusal_status = refusal.status_code
        request.refusal_code = refusal.code
        request.refusal_message = refusal.message[:500]
        return Outcome(None, False, refusal)
    if isinstance(checked, Redemption):  # redeemed before keys had rows of their own
        request.redemption_id = checked.id
        return Outcome(checked, True)
    member, reward, rules = checked
    made = await _grant(session, member, reward, rules, idempotency_key, digest, operator, now)
    request.redemption_id = made.id
    return Outcome(made, False)


def _key_reused() -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        "this Idempotency-Key was already used for a different redemption request; "
        "use a new key for a new request"
    )


def _replayed_refusal(request: RedemptionRequest) -> AppError:
    refusal = AppError(request.refusal_message or "", headers={"Idempotent-Replayed": "true"})
    refusal.status_code = request.refusal_status or Conflict.status_code
    refusal.code = request.refusal_code or Conflict.code
    return refusal


async def _earlier(session: AsyncSession, redemption_id: str) -> Redemption:
    earlier = await repository.get_redemption(session, redemption_id)
    assert earlier is not None, f"redemption {redemption_id} of a recorded request is gone"
    return earlier


async def _checked(
    session: AsyncSession,
    customer_id: str,
    reward_id: str,
    key: str,
    digest: str,
    now: datetime,
    settings: LoyaltySettings,
) -> tuple[Member, Reward, Rules] | Redemption:
    """Locks and checks, writing nothing: (member, reward, rules) if it may go ahead, or
    the earlier redemption under this key; raises the refusal otherwise."""
    member = await member_locked(session, customer_id)
    earlier = await repository.redemption_by_key(session, member.customer_id, key)
    if earlier is not None:
        if earlier.request_hash != digest:
            raise _key_reused()
        return earlier
    reward = await repository.get_reward(session, reward_id, lock_stock=True)
    if reward is None:
        raise RewardNotFound(f"no reward {reward_id!r}")
    rules = await rulebook.current(session, settings)
    _check_available(reward, member, rules, now)
    if member.spendable < reward.points_cost:
        have = f"balance {member.spendable}"
        if member.pending:
            have = f"spendable {have} ({member.pending} more pending)"
        raise InsufficientPoints(
            f"{have} is less than the {reward.points_cost} points {reward.name!r} costs"
        )
    return member, reward, rules


async def _grant(
    session: AsyncSession,
    member: Member,
    reward: Reward,
    rules: Rules,
    key: str,
    digest: str,
    operator: str,
    now: datetime,
) -> Redemption:
    redemption = _spend(session, member, reward, key, digest, operator, now)
    if rules.body.redemption_code_days:
        redemption.expires_at = now + timedelta(days=rules.body.redemption_code_days)
        await schedule.code_expiry(session, redemption.id, at=redemption.expires_at)
    taken = await ledger.take(session, member, reward.points_cost, spendable_only=True)
    session.add_all(
        RedemptionLot(redemption_id=redemption.id, lot_id=lot.id, points=n) for lot, n in taken
    )
    await outbox.enqueue(session, _redeemed(member, reward, redemption, now))
    return redemption


def _check_available(reward: Reward, member: Member, rules: Rules, now: datetime) -> None:
    if not reward.active:
        raise RewardUnavailable(f"reward {reward.id!r} is not offered any more")
    starts, ends = maybe_utc(reward.valid_from), maybe_utc(reward.valid_until)
    if (starts is not None and now < starts) or (ends is not None and now >= ends):
        raise RewardUnavailable(f"reward {reward.id!r} is not redeemable at this time")
    if reward.tiers:
        tier = rules.tier(member.tier)
        name = tier.name if tier is not None else member.tier
        if name not in reward.tiers:
            raise RewardUnavailable(
                f"reward {reward.id!r} is reserved for tiers {', '.join(reward.tiers)}"
            )
    if reward.stock is not None and reward.stock <= 0:
        raise RewardUnavailable(f"reward {reward.id!r} is out of stock")


def _spend(
    session: AsyncSession,
    member: Member,
    reward: Reward,
    key: str,
    digest: str,
    operator: str,
    now: datetime,
) -> Redemption:
    if reward.stock is not None:
        reward.stock -= 1
    redemption = Redemption(
        id=str(uuid.uuid4()),
        customer_id=member.customer_id,
        reward_id=reward.id,
        points=reward.points_cost,
        code=new_code(),
        status="issued",
        idempotency_key=key,
        request_hash=digest,
        created_at=now,
    )
    session.add(redemption)
    why = Why(
        reason=f"redeemed {reward.name}",
        key=f"redeem:{redemption.id}",
        rule_id=f"reward:{reward.id}",
        operator=operator,
        reference=redemption.id,
    )
    ledger.post(session, member, kind="redeem", points=-reward.points_cost, why=why, at=now)
    return redemption


def _redeemed(
    member: Member, reward: Reward, redemption: Redemption, now: datetime
) -> PointsRedeemed:
    return PointsRedeemed.create(
        id=derived_id("points.redeemed", redemption.id),
        subject=member.customer_id,
        source=SOURCE,
        time=now,
        data=PointsRedeemedData(
            points=redemption.points,
            balance=member.spendable,
            redemption_id=redemption.id,
            reward_id=reward.id,
            reward_name=reward.name,
        ),
    )


async def cancel(
    session: AsyncSession,
    *,
    customer_id: str,
    redemption_id: str,
    operator: str,
    now: datetime,
    settings: LoyaltySettings,
) -> Redemption:
    """Cancel an issued redemption: points back into the lots they came from, stock back."""
    member = await member_locked(session, customer_id)
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None or redemption.customer_id != member.customer_id:
        raise RedemptionNotFound(f"no redemption {redemption_id!r} for {customer_id!r}")
    if redemption.status in ("cancelled", "expired"):
        return redemption  # its points are back already
    if redemption.status == "used":
        raise RedemptionClosed(f"redemption {redemption.id!r} was used and cannot be cancelled")
    why = Why(
        reason=f"redemption {redemption.id} cancelled",
        key=f"cancel:{redemption.id}",
        rule_id=f"reward:{redemption.reward_id}",
        operator=operator,
        reference=redemption.id,
    )
    await give_back(session, member, redemption, why=why, now=now, settings=settings)
    return redemption


async def give_back(
    session: AsyncSession,
    member: Member,
    redemption: Redemption,
    *,
    why: Why,
    now: datetime,
    settings: LoyaltySettings,
    status: str = "cancelled",
) -> None:
    """Close an issued redemption: its points back into their lots, its stock back."""
    redemption.status, redemption.cancelled_at = status, now
    reward = await repository.get_reward(session, redemption.reward_id, lock_stock=True)
    if reward is not None and reward.stock is not None:
        reward.stock += 1
    ledger.post(session, member, kind="cancel", points=redemption.points, why=why, at=now)
    await _restore_lots(session, member, redemption, settings)
    await outbox.enqueue(session, _cancelled(member, redemption, now))


async def _restore_lots(
    session: AsyncSession, member: Member, redemption: Redemption, settings: LoyaltySettings
) -> None:
    """Put points back where they came from (a debt, if any, keeps its share)."""
    restorable = min(redemption.points, max(0, member.balance))
    used = await repository.redemption_lots(session, redemption.id)
    lots = await repository.lots_by_id(session, [u.lot_id for u in used])
    notice = (await rulebook.current(session, settings)).body.expiring_notice_days
    for use in used:
        lot = lots.get(use.lot_id)
        if lot is None or restorable <= 0:
            continue
        back = min(use.points, restorable)
        lot.remaining += back
        restorable -= back
        if lot.expires_at is not None and lot.customer_id == member.customer_id:
            await schedule.expiry(
                session, member, expires_at=utc(lot.expires_at), notice_days=notice
            )


def _cancelled(member: Member, redemption: Redemption, now: datetime) -> RedemptionCancelled:
    return RedemptionCancelled.create(
        id=derived_id("redemption.cancelled", redemption.id),
        subject=member.customer_id,
        source=SOURCE,
        time=now,
        data=RedemptionCancelledData(
            redemption_id=redemption.id,
            points=redemption.points,
            balance=member.spendable,
            reason="code_expired" if redemption.status == "expired" else "cancelled",
        ),
    )


log = logging.getLogger(__name__)


async def prune_keys(db: Database, settings: LoyaltySettings, *, now: datetime) -> int:
    """Forget the Idempotency-Keys first used more than ``redemption_key_retention_days``
    before ``now``, a batch per transaction (``shared.retention.prune``); returns how many."""
    before = now - timedelta(days=settings.redemption_key_retention_days)

    async def delete_batch(session: AsyncSession, limit: int) -> int:
        return await repository.prune_requests(session, before=before, limit=limit)

    pruned = await retention.prune(
        db, delete_batch, service=settings.service_name, table="redemption_requests"
    )
    if pruned:
        log.info("pruned %d Idempotency-Keys used before %s", pruned, before.isoformat())
    return pruned
