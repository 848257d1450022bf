"""Routes to configure journeys and templates, preview them, audit changes, read statistics.

Reading needs ``engagement:read``; changing needs ``engagement:admin``. Every change
bumps the journey's or template's version and is kept in ``/v1/config/changes``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.engagement import catalog, journey_config, preview, repository, templates_store
from services.engagement.config import EngagementSettings
from services.engagement.config_schemas import (
    ChangeRead,
    JourneyPreviewRequest,
    JourneyRead,
    JourneyStatsRead,
    JourneyUpdate,
    PreviewRead,
    PreviewRequest,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
)
from services.engagement.models import AccessLog
from services.engagement.repository import config as config_repo
from shared.access_log import record
from shared.app import RuntimeDep, SessionDep
from shared.auth import Principal, require
from shared.http import AppError

router = APIRouter(tags=["journeys"])
Reader = Annotated[Principal, Depends(require("engagement:read"))]
Admin = Annotated[Principal, Depends(require("engagement:admin"))]


class BadPeriod(AppError):
    status_code = 422
    code = "bad_period"


def _settings(runtime: Any) -> EngagementSettings:
    settings = runtime.settings
    assert isinstance(settings, EngagementSettings)
    return settings


def _journey(current: journey_config.JourneySettings) -> JourneyRead:
    journey = catalog.JOURNEYS[current.name]
    lateness = current.max_lateness
    return JourneyRead(
        name=current.name,
        trigger=journey.trigger,
        description=journey.description,
        marketing=journey.marketing,
        enabled=current.enabled,
        delay_seconds=current.delay.total_seconds(),
        channels=list(current.channels),
        template=current.template,
        max_lateness_seconds=None if lateness is None else lateness.total_seconds(),
        version=current.version,
        updated_at=current.updated_at,
        updated_by=current.updated_by,
    )


@router.get("/v1/journeys")
async def list_journeys(_: Reader, session: SessionDep, runtime: RuntimeDep) -> list[JourneyRead]:
    configured = await journey_config.all_effective(session, _settings(runtime))
    return [_journey(c) for c in configured.values()]


@router.get("/v1/journeys/{name}")
async def get_journey(
    name: str, _: Reader, session: SessionDep, runtime: RuntimeDep
) -> JourneyRead:
    return _journey(await journey_config.effective(session, name, _settings(runtime)))


@router.patch("/v1/journeys/{name}")
async def update_journey(
    name: str, body: JourneyUpdate, who: Admin, session: SessionDep, runtime: RuntimeDep
) -> JourneyRead:
    """Change a journey's settings; fields left out keep their value."""
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    converted = journey_config.changes_from_api(changes)
    updated = await journey_config.update(
        session,
        name,
        converted,
        actor=who.subject,
        now=datetime.now(UTC),
        settings=_settings(runtime),
        expected_version=body.expected_version,
    )
    return _journey(updated)


@router.post("/v1/journeys/{name}/preview")
async def preview_journey(
    name: str,
    body: JourneyPreviewRequest,
    who: Reader,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
) -> PreviewRead:
    """What the journey would send (to the customer, or with sample data); nothing is sent."""
    result = await preview.journey(
        session,
        name,
        customer_id=body.customer_id,
        language=body.language,
        channel=body.channel,
        overrides=body.context,
        settings=_settings(runtime),
    )
    await _log_read(session, who, request, body.customer_id)
    return _preview(result)


@router.get("/v1/templates")
async def list_templates(
    _: Reader, session: SessionDep, name: Annotated[str | None, Query(max_length=64)] = None
) -> list[TemplateRead]:
    rows = await templates_store.list_all(session, name=name)
    return [TemplateRead.model_validate(r) for r in rows]


@router.post("/v1/templates", status_code=status.HTTP_201_CREATED)
async def create_template(body: TemplateCreate, who: Admin, session: SessionDep) -> TemplateRead:
    """Store a template (checked against its journey's sample data); 409 if it exists."""
    row = await templates_store.create(
        session, body.model_dump(), actor=who.subject, now=datetime.now(UTC)
    )
    return TemplateRead.model_validate(row)


@router.get("/v1/templates/{template_id}")
async def get_template(template_id: str, _: Reader, session: SessionDep) -> TemplateRead:
    return TemplateRead.model_validate(await templates_store.get(session, template_id))


@router.patch("/v1/templates/{template_id}")
async def update_template(
    template_id: str, body: TemplateUpdate, who: Admin, session: SessionDep
) -> TemplateRead:
    row = await templates_store.update(
        session,
        template_id,
        body.model_dump(exclude_unset=True, exclude={"expected_version"}),
        expected_version=body.expected_version,
        actor=who.subject,
        now=datetime.now(UTC),
    )
    return TemplateRead.model_validate(row)


@router.delete("/v1/templates/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(template_id: str, who: Admin, session: SessionDep) -> Response:
    """Remove a stored template; the built-in one of the same name applies again."""
    await templates_store.delete(session, template_id, actor=who.subject, now=datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/templates/{template_id}/preview")
async def preview_template(
    template_id: str, body: PreviewRequest, who: Reader, request: Request, session: SessionDep
) -> PreviewRead:
    """Render the template for a customer (or with sample data); nothing is sent."""
    result = await preview.template(
        session, template_id, customer_id=body.customer_id, overrides=body.context
    )
    await _log_read(session, who, request, body.customer_id)
    return _preview(result)


async def _log_read(
    session: SessionDep, who: Principal, request: Request, customer_id: str | None
) -> None:
    """A preview for a real customer shows their data: a staff caller's read is logged."""
    if customer_id is not None:
        await record(session, AccessLog, principal=who, request=request, customer_ids=[customer_id])


@router.get("/v1/config/changes")
async def list_changes(
    _: Reader,
    session: SessionDep,
    kind: Literal["journey", "template"] | None = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ChangeRead]:
    """Who changed what, newest first, with the values before and after."""
    rows = await config_repo.list_changes(session, kind=kind, target=target, limit=limit)
    return [ChangeRead.model_validate(r) for r in rows]


@router.get("/v1/journey-stats")
async def journey_stats(
    _: Reader, session: SessionDep, start: datetime, end: datetime
) -> list[JourneyStatsRead]:
    """Per journey and channel: sent, suppressed, failed, conversions ([start, end), event time)."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise BadPeriod("start and end need a time zone, and end must be after start")
    rows = await repository.list_journey_stats(
        session, start=start.astimezone(UTC), end=end.astimezone(UTC)
    )
    return [JourneyStatsRead.model_validate(r) for r in rows]


def _preview(result: preview.Preview) -> PreviewRead:
    message = result.message
    return PreviewRead(
        subject=message.subject,
        text=message.text,
        html=message.html,
        language=result.language,
        data=result.data,
    )
