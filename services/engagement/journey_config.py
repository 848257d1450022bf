"""Journey settings: the defaults, an operator's overrides, and the audit of every change.

Takes the caller's session; flushes, never commits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import catalog
from services.engagement.config import EngagementSettings
from services.engagement.models import JourneyConfig
from services.engagement.rendering import builtin_names
from services.engagement.repository import config as repo
from shared.http import AppError, Conflict, NotFound


class JourneyNotFound(NotFound):
    code = "journey_not_found"


class InvalidJourney(AppError):
    status_code = 422
    code = "invalid_journey"


class VersionConflict(Conflict):
    code = "version_conflict"


@dataclass(frozen=True, slots=True)
class JourneySettings:
    name: str
    enabled: bool
    delay: timedelta
    channels: tuple[str, ...]
    template: str
    max_lateness: timedelta | None
    version: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


def _from_row(
    name: str, row: JourneyConfig | None, settings: EngagementSettings
) -> JourneySettings:
    if row is None:
        d = catalog.defaults(name, settings)
        return JourneySettings(name, d.enabled, d.delay, d.channels, d.template, d.max_lateness)
    lateness = row.max_lateness_seconds
    return JourneySettings(
        name=name,
        enabled=row.enabled,
        delay=timedelta(seconds=row.delay_seconds),
        channels=tuple(row.channels),
        template=row.template,
        max_lateness=None if lateness is None else timedelta(seconds=lateness),
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _known(name: str) -> None:
    if name not in catalog.JOURNEYS:
        raise JourneyNotFound(f"no journey {name!r}")


async def effective(
    session: AsyncSession, name: str, settings: EngagementSettings
) -> JourneySettings:
    """What the journey runs on now: the operator's settings, else the defaults."""
    _known(name)
    return _from_row(name, await repo.get_journey_config(session, name), settings)


async def all_effective(
    session: AsyncSession, settings: EngagementSettings
) -> dict[str, JourneySettings]:
    rows = await repo.journey_configs(session)
    return {name: _from_row(name, rows.get(name), settings) for name in catalog.JOURNEYS}


async def update(
    session: AsyncSession,
    name: str,
    changes: dict[str, Any],
    *,
    actor: str,
    now: datetime,
    settings: EngagementSettings,
    expected_version: int | None = None,
) -> JourneySettings:
    """Apply an operator's changes; the new version and the before/after go to the audit."""
    _known(name)
    row = await repo.get_journey_config(session, name, for_update=True)
    before = _from_row(name, row, settings)
    if expected_version is not None and expected_version != before.version:
        raise VersionConflict(
            f"journey {name!r} is at version {before.version}, not {expected_version}"
        )
    after = replace(before, **changes, version=before.version + 1, updated_at=now, updated_by=actor)
    await _validate(session, after)
    values = _row_values(after)
    if row is None:
        session.add(JourneyConfig(journey=name, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    await repo.record_change(
        session,
        kind="journey",
        target=name,
        action="update",
        version=after.version,
        changed_by=actor,
        changed_at=now,
        before=_audit(before),
        after=_audit(after),
    )
    return after


async def _validate(session: AsyncSession, journey: JourneySettings) -> None:
    unknown = [c for c in journey.channels if c not in catalog.CHANNELS]
    if not journey.channels or unknown or len(set(journey.channels)) != len(journey.channels):
        raise InvalidJourney(
            f"channels must be distinct, non-empty, among {list(catalog.CHANNELS)}; "
            f"got {list(journey.channels)}"
        )
    if journey.name == catalog.SUPPORT_ALERT and journey.channels != (catalog.EMAIL,):
        raise InvalidJourney("the support alert goes to the support address by e-mail only")
    known = builtin_names() | await repo.template_names(session)
    if journey.template not in known:
        raise InvalidJourney(f"no template named {journey.template!r}")


def _row_values(journey: JourneySettings) -> dict[str, Any]:
    return {
        "enabled": journey.enabled,
        "delay_seconds": journey.delay.total_seconds(),
        "channels": list(journey.channels),
        "template": journey.template,
        "max_lateness_seconds": (
            None if journey.max_lateness is None else journey.max_lateness.total_seconds()
        ),
        "version": journey.version,
        "updated_at": journey.updated_at,
        "updated_by": journey.updated_by,
    }


def _audit(journey: JourneySettings) -> dict[str, Any]:
    values = _row_values(journey)
    values.pop("updated_at")
    values.pop("updated_by")
    return values


def as_dict(journey: JourneySettings) -> dict[str, Any]:
    return asdict(journey)


def changes_from_api(changes: dict[str, Any]) -> dict[str, Any]:
    """The API's field names and units (seconds, lists) as ``JourneySettings`` fields."""
    converted: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "delay_seconds":
            converted["delay"] = timedelta(seconds=value)
        elif key == "max_lateness_seconds":
            converted["max_lateness"] = None if value is None else timedelta(seconds=value)
        elif key == "channels":
            converted["channels"] = tuple(value)
        elif value is not None:
            converted[key] = value
    return converted
