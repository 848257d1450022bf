"""Small things every part of the loyalty domain uses."""

from __future__ import annotations

from datetime import datetime

from shared.db import as_utc as utc

__all__ = ["SOURCE", "maybe_utc", "utc"]

SOURCE = "keepwell/loyalty"


def maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)
