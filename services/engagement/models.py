"""Engagement's tables: what we know to reach a customer, and every message we plan or send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.access_log import access_log_table
from shared.auth import SUBJECT_MAX_LENGTH
from shared.db import UtcDateTime, new_metadata
from shared.merges import merged_customers_table

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"


class Base(DeclarativeBase):
    metadata = new_metadata()


class Contact(Base):
    """A customer's contact details as profile last announced them.

    ``updated_at`` is the time of the profile event that set them, so an older
    event delivered late never overwrites a newer one.
    """

    __tablename__ = "contacts"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32), comment="E.164, for SMS")
    language: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64), comment="IANA zone")
    quiet_start: Mapped[str | None] = mapped_column(String(5), comment="HH:MM local, or none")
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Consent(Base):
    """A customer's consent on one channel; the newest statement wins.

    Kept apart from ``contacts`` because it has two sources with their own times:
    the full state in customer.registered/updated, and ``consent.changed``.
    """

    __tablename__ = "consents"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), comment="opt_in or opt_out")
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class MergedCustomer(Base):
    """A customer id profile merged into another: its later events act for the survivor.

    Events keyed by an absorbed id (a till upload that still names the old POS
    customer) are applied to ``survivor_id``, so its consent, contact and
    frequency cap are the ones that count. Chains are kept flat: merging the
    survivor in turn re-points every id that pointed at it. An undo
    (``customer.unmerged``) removes the row.
    """

    __table__ = merged_customers_table(Base.metadata)

    customer_id: Mapped[str]
    survivor_id: Mapped[str]
    merged_at: Mapped[datetime]


class ItemPair(Base):
    """How many purchases held both ``sku`` and ``other_sku``: "often bought together".

    Kept incrementally from the purchase stream, both directions stored.
    """

    __tablename__ = "item_pairs"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    other_sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    other_name: Mapped[str | None] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)


class Outreach(Base):
    """One message of one journey step to one customer, from planned to its outcome.

    Life cycle: pending → sending → sent, or back to pending (transient failure,
    or a claim that outlived ``sending_timeout``), or failed / suppressed.
    ``attempts`` counts claims and doubles as the claim's fencing token.
    """

    __tablename__ = "outreach"
    __table_args__ = (Index("ix_outreach_status_due_at", "status", "due_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    journey: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    trigger_event_id: Mapped[str | None] = mapped_column(String(128))
    dedupe_key: Mapped[str] = mapped_column(String(400), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    recipient: Mapped[str | None] = mapped_column(String(254))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    provider_message_id: Mapped[str | None] = mapped_column(
        String(255), comment="The provider's reply on acceptance; names its queue id"
    )
    to_address: Mapped[str | None] = mapped_column(
        String(254), comment="Fixed recipient (a staff alert): no contact, consent or quiet hours"
    )
    trigger_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime(), index=True, comment="Event time of the trigger (statistics)"
    )


class ItemSequence(Base):
    """How many times a customer bought ``next_sku`` in the purchase after one holding ``sku``:
    "often bought after". Kept incrementally from the purchase stream."""

    __tablename__ = "item_sequences"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_name: Mapped[str | None] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)


class LastBasket(Base):
    """The items of a customer's latest purchase (event time), to link it to the next one."""

    __tablename__ = "last_baskets"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purchase_key: Mapped[str] = mapped_column(String(400))
    skus: Mapped[list[str]] = mapped_column(JSON)
    purchased_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CountedPurchase(Base):
    """A sale counted into the item pairs and sequences, by ``source:purchase_id``: the
    same sale re-sent under a new event id (or replayed after the inbox forgot its event)
    counts once. Kept for good, like the statistics it guards (docs/engagement.md)."""

    __tablename__ = "counted_purchases"

    purchase_key: Mapped[str] = mapped_column(String(400), primary_key=True)
    purchased_at: Mapped[datetime] = mapped_column(UtcDateTime(), comment="Event time")


class JourneyConfig(Base):
    """An operator's settings for one journey; a journey with no row runs on its defaults."""

    __tablename__ = "journey_configs"

    journey: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    delay_seconds: Mapped[float] = mapped_column(Float)
    channels: Mapped[list[str]] = mapped_column(JSON, comment="Channel order, first usable wins")
    template: Mapped[str] = mapped_column(String(64))
    max_lateness_seconds: Mapped[float | None] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))


class MessageTemplate(Base):
    """An operator-written template; it overrides the built-in file of the same name."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("name", "language", "channel"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))


class ConfigChange(Base):
    """The audit trail of journey and template changes: who, when, before and after."""

    __tablename__ = "config_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), comment="journey or template")
    target: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    changed_by: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Conversion(Base):
    """A purchase attributed to the last message the customer was sent within the window."""

    __tablename__ = "conversions"

    purchase_key: Mapped[str] = mapped_column(String(400), primary_key=True)
    outreach_id: Mapped[str] = mapped_column(String(36), index=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    purchased_at: Mapped[datetime] = mapped_column(UtcDateTime())


# The churn/CLV tables live beside their code but on this Base (one metadata, one
# migration history); imported last because they subclass Base.
from services.engagement.churn import models as _churn_models  # noqa: E402, F401

# Staff reads of customers (shared.access_log): who looked at whom, when, through which route.
AccessLog = access_log_table(Base.metadata)
