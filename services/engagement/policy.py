"""The contact policy's pure rules: quiet hours in the customer's zone.

Consent is applied in the database (``repository.suppress_opted_out``); what is
left here needs no I/O and is tested on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

QUIET_HOURS = "quiet hours"


def known_zone(name: str | None) -> str | None:
    """``name`` if it is an IANA zone this host knows, else None (quiet hours then use UTC)."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def in_window(local: time, start: time, end: time) -> bool:
    """Whether ``local`` falls in [start, end); a window may wrap past midnight."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(
    now: datetime, *, zone: str | None, start: str | None, end: str | None
) -> datetime | None:
    """When the customer's quiet hours end (UTC), if ``now`` is inside them; else None."""
    if start is None or end is None:
        return None
    tz = ZoneInfo(known_zone(zone) or "UTC")
    local = now.astimezone(tz)
    start_at, end_at = _clock(start), _clock(end)
    if not in_window(local.time(), start_at, end_at):
        return None
    ends = datetime.combine(local.date(), end_at, tzinfo=tz)
    if ends <= local:
        ends = datetime.combine(local.date() + timedelta(days=1), end_at, tzinfo=tz)
    return ends.astimezone(UTC)
