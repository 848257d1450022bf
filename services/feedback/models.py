"""Feedback's tables: surveys and their versions, invitations, responses, complaint cases."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Index, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.access_log import access_log_table
from shared.auth import SUBJECT_MAX_LENGTH
from shared.db import UtcDateTime, new_metadata
from shared.merges import merged_customers_table


class Base(DeclarativeBase):
    metadata = new_metadata()


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    languages: Mapped[list[str]] = mapped_column(JSON)
    audience: Mapped[str] = mapped_column(
        String(32), comment="after_purchase, follow_up, periodic, manual"
    )
    segment: Mapped[str | None] = mapped_column(String(100), comment="Who a periodic survey asks")
    period_days: Mapped[int | None] = mapped_column(Integer, comment="How often it asks")
    active_from: Mapped[datetime | None] = mapped_column(UtcDateTime())
    active_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), server_default=func.now())


class SurveyVersion(Base):
    """Every version's questions, so an answer is always read against what was asked."""

    __tablename__ = "survey_versions"

    survey_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), server_default=func.now())


class SegmentMember(Base):
    """Segment membership as profile announces it (for periodic surveys)."""

    __tablename__ = "segment_members"

    segment: Mapped[str] = mapped_column(String(100), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Invitation(Base):
    """A customer asked to answer one survey version; the token is signed over this row."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_customer_created", "customer_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(64))
    survey_version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(String(64), comment="Current owner (after merges)")
    signed_customer_id: Mapped[str] = mapped_column(String(64), comment="Owner the token names")
    reason: Mapped[str] = mapped_column(String(32))
    purchase_id: Mapped[str | None] = mapped_column(String(128))
    case_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(16))
    store_id: Mapped[str | None] = mapped_column(String(64))
    product_category: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Response(Base):
    """One answer to one survey; ``dedupe_key`` makes every channel's repeats one row."""

    __tablename__ = "responses"
    __table_args__ = (
        # NPS / CSAT over a time range from the index alone (index-only scan in PostgreSQL)
        Index("ix_responses_submitted_scores", "submitted_at", "nps_score", "csat_score"),
        Index("ix_responses_survey_submitted", "survey_id", "submitted_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(400), unique=True)
    invitation_id: Mapped[str | None] = mapped_column(String(64))
    survey_id: Mapped[str] = mapped_column(String(64))
    survey_version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(16), comment="token, staff or event")
    channel: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[str | None] = mapped_column(String(64))
    product_category: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(8))
    nps_score: Mapped[int | None] = mapped_column(Integer)
    csat_score: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(16))
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON, comment="NULL once erased")
    comment: Mapped[str | None] = mapped_column(Text, comment="Verbatim; NULL once erased")
    submitted_by: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LENGTH))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ResponseDay(Base):
    """Score counts per UTC day of ``submitted_at``, kept with every response write.

    ``shard`` (0-7, from the response id) spreads one day's increments over a few
    rows so concurrent answers do not queue on a single row lock.
    """

    __tablename__ = "response_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    nps_responses: Mapped[int] = mapped_column(Integer, default=0)
    promoters: Mapped[int] = mapped_column(Integer, default=0)
    detractors: Mapped[int] = mapped_column(Integer, default=0)
    csat_responses: Mapped[int] = mapped_column(Integer, default=0)
    satisfied: Mapped[int] = mapped_column(Integer, default=0)


class Complaint(Base):
    """A complaint case with its SLA clock (first response, resolution)."""

    __tablename__ = "complaints"
    __table_args__ = (Index("ix_complaints_opened_at", "opened_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    response_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    interaction_id: Mapped[str | None] = mapped_column(
        String(128), comment="The support-channel interaction event that opened the case"
    )
    category: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    first_response_due: Mapped[datetime] = mapped_column(UtcDateTime())
    resolution_due: Mapped[datetime] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolution: Mapped[str | None] = mapped_column(String(1000))
    first_response_breached: Mapped[bool] = mapped_column(default=False)
    resolution_breached: Mapped[bool] = mapped_column(default=False)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    opened_by: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LENGTH))


# Staff reads of customers (shared.access_log): who looked at whom, when, through which route.
AccessLog = access_log_table(Base.metadata)
# Ids absorbed by a merge: their later events act for the survivor (shared.merges).
MergedCustomers = merged_customers_table(Base.metadata)
