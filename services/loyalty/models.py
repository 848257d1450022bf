"""Loyalty's tables.

``ledger_entries`` is append-only (amounts never change; erasure only rewrites the
customer id to an anonymous one). ``members`` is the balance projection, ``lots``
the spendable remainder of each earning with its expiry, ``purchases`` and
``refunds`` what refunds are reversed against.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, orm_insert_sentinel

from shared.access_log import access_log_table
from shared.auth import SUBJECT_MAX_LENGTH
from shared.db import UtcDateTime, new_metadata

BigId = BigInteger().with_variant(Integer(), "sqlite")
Tz = UtcDateTime()


# Ledger entry keys (``earn:<purchase_id>:base`` …) are at most 208 characters from the
# longest ids the event contract allows (docs/events.md); a longer one is refused.
ENTRY_KEY_LENGTH = 300


class Base(DeclarativeBase):
    metadata = new_metadata()


class Member(Base):
    __tablename__ = "members"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    pending: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", comment="Part of the balance not yet spendable"
    )
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[str | None] = mapped_column(String(64))
    tier_since: Mapped[datetime | None] = mapped_column(Tz)
    next_expiry_at: Mapped[datetime | None] = mapped_column(Tz)
    next_notice_at: Mapped[datetime | None] = mapped_column(Tz)
    next_review_at: Mapped[datetime | None] = mapped_column(Tz)
    next_release_at: Mapped[datetime | None] = mapped_column(Tz)
    birthday: Mapped[date | None] = mapped_column(
        Date, comment="From profile; nothing else personal"
    )
    next_birthday_at: Mapped[datetime | None] = mapped_column(Tz)
    birthday_bonus_year: Mapped[int | None] = mapped_column(
        Integer, comment="Last calendar year a birthday bonus was awarded"
    )
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)
    erased_at: Mapped[datetime | None] = mapped_column(Tz)
    created_at: Mapped[datetime] = mapped_column(Tz, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Tz, server_default=func.now(), onupdate=func.now())

    @property
    def spendable(self) -> int:
        return self.balance - (self.pending or 0)


class LedgerEntry(Base):
    """One movement of points. The balance is their sum."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_customer_time", "customer_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(300))
    entry_key: Mapped[str] = mapped_column(
        String(ENTRY_KEY_LENGTH), unique=True, comment="Idempotency key"
    )
    source_event_id: Mapped[str | None] = mapped_column(String(128))
    purchase_id: Mapped[str | None] = mapped_column(String(128))
    rule_id: Mapped[str | None] = mapped_column(String(100))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    operator: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LENGTH))
    reference: Mapped[str | None] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(Tz)
    created_at: Mapped[datetime] = mapped_column(Tz, server_default=func.now())
    # Lets SQLite insert a batch's entries in one statement (RETURNING order unknown there).
    _sentinel: Mapped[int] = orm_insert_sentinel()


class Lot(Base):
    """Points earned together: spent oldest-expiry first, expiring together."""

    __tablename__ = "lots"
    __table_args__ = (Index("ix_lots_customer_expiry", "customer_id", "expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    entry_key: Mapped[str] = mapped_column(
        String(ENTRY_KEY_LENGTH), comment="The ledger entry it came from"
    )
    purchase_id: Mapped[str | None] = mapped_column(String(128), index=True)
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(Tz)
    expires_at: Mapped[datetime | None] = mapped_column(Tz)
    pending_until: Mapped[datetime | None] = mapped_column(
        Tz, comment="Not spendable before this time; NULL once released"
    )
    warned: Mapped[bool] = mapped_column(Boolean, default=False)
    _sentinel: Mapped[int] = orm_insert_sentinel()


class Purchase(Base):
    __tablename__ = "purchases"

    purchase_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime] = mapped_column(Tz)
    total: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    currency: Mapped[str] = mapped_column(String(3))
    points: Mapped[int] = mapped_column(BigInteger, comment="Points a full refund takes back")
    reversed_points: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_exact: Mapped[Decimal] = mapped_column(Numeric(28, 8), default=Decimal(0))
    unit_points: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tier: Mapped[str | None] = mapped_column(String(64), comment="Member's tier when it was made")


class Refund(Base):
    """A refund as received; applied when its purchase is known (it may come first)."""

    __tablename__ = "refunds"

    refund_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(String(128), index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    lines: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source_event_id: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(Tz)
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class RuleSet(Base):
    """One version of the earning rules; the highest version is in force."""

    __tablename__ = "rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(Tz, server_default=func.now())


class CampaignUsage(Base):
    """Points a campaign has given: per member, and in total (customer_id '*')."""

    __tablename__ = "campaign_usage"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger, default=0)


class Reward(Base):
    __tablename__ = "rewards"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int | None] = mapped_column(BigInteger, comment="NULL = unlimited")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    valid_from: Mapped[datetime | None] = mapped_column(Tz)
    valid_until: Mapped[datetime | None] = mapped_column(Tz)
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list, comment="Empty = every tier")
    created_at: Mapped[datetime] = mapped_column(Tz, server_default=func.now())


class Redemption(Base):
    __tablename__ = "redemptions"
    __table_args__ = (UniqueConstraint("customer_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    reward_id: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(Tz)
    cancelled_at: Mapped[datetime | None] = mapped_column(Tz)
    expires_at: Mapped[datetime | None] = mapped_column(Tz, comment="Code unusable after this")
    used_at: Mapped[datetime | None] = mapped_column(Tz)


class RedemptionRequest(Base):
    """Every Idempotency-Key a redemption was asked under, and the answer it got.

    Attempts under one key serialise on this row (it is inserted or locked first), so
    a retry, a double tap or an attempt that waited out a fault all get the first
    answer: the redemption it made, or the refusal (no member, no such reward, not
    enough points, unavailable) it was given. Nothing here is personal beyond the
    customer id, and erasure deletes the rows. Rows older than
    ``redemption_key_retention_days`` are pruned: a granted redemption still answers
    a late retry of its key from the redemption row itself.
    """

    __tablename__ = "redemption_requests"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    redemption_id: Mapped[str | None] = mapped_column(String(36))
    refusal_status: Mapped[int | None] = mapped_column(SmallInteger)
    refusal_code: Mapped[str | None] = mapped_column(String(64))
    refusal_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(Tz, index=True)  # for pruning by age


class RedemptionLot(Base):
    """Which lots a redemption consumed, so a cancellation can put the points back."""

    __tablename__ = "redemption_lots"

    redemption_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)


class TierChange(Base):
    """Every tier.changed, kept for the tier movements report."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    old_tier: Mapped[str | None] = mapped_column(String(64))
    new_tier: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(300))
    occurred_at: Mapped[datetime] = mapped_column(Tz, index=True)


class DailyPoints(Base):
    """Points per UTC day of event time and ledger kind: the report's rollup of the ledger.

    Written with the entries (at commit, one upsert per transaction); ``shard`` spreads
    concurrent writers of the same day over several rows.
    """

    __tablename__ = "daily_points"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger, default=0)


class DailyRevenue(Base):
    """Purchases per UTC day, tier at purchase time ('' = none) and currency."""

    __tablename__ = "daily_revenue"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tier: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    orders: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[Decimal] = mapped_column(Numeric(20, 4), default=Decimal(0))


# Staff reads of customers (shared.access_log): who looked at whom, when, through which route.
AccessLog = access_log_table(Base.metadata)
