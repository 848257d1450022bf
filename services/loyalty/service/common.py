"""Small things every part of the loyalty domain uses."""

from __future__ import annotations

from datetime import UTC, datetime

SOURCE = "keepwell/loyalty"


def utc(value: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes, which we always store as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)
