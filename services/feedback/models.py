"""Feedback's tables: survey definitions, and the purchases surveys will ask about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SurveyCandidate(Base):
    """A customer's latest purchase: whom to invite, and which store/channel to credit."""

    __tablename__ = "survey_candidates"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_purchase_id: Mapped[str] = mapped_column(String(128))
    last_purchase_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[str | None] = mapped_column(String(64))
