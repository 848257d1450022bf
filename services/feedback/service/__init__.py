"""Feedback domain logic, one module per concern. Takes the caller's session; never commits."""

from __future__ import annotations

from datetime import UTC, datetime

SOURCE = "keepwell/feedback"


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
