"""Operators' templates: create, change, delete (each audited), validation and preview.

A template is checked on every write: it must compile in Jinja's sandbox and
render its journey's sample data with strict undefined variables, so a typo in a
variable name is refused at the desk, not found by the sender at 3 a.m. Takes
the caller's session; flushes, never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import catalog
from services.engagement.models import MessageTemplate
from services.engagement.rendering import RenderedMessage, Renderer, StoredTemplate
from services.engagement.repository import config as repo
from shared.http import AppError, Conflict, NotFound

_RENDERER = Renderer()
_FIELDS = ("subject", "body", "html")


class TemplateNotFound(NotFound):
    code = "template_not_found"


class InvalidTemplate(AppError):
    status_code = 422
    code = "invalid_template"


class TemplateExists(Conflict):
    code = "template_exists"


class TemplateVersionConflict(Conflict):
    code = "version_conflict"


def snapshot(row: MessageTemplate) -> StoredTemplate:
    return StoredTemplate(
        id=row.id,
        name=row.name,
        language=row.language,
        channel=row.channel,
        subject=row.subject,
        body=row.body,
        html=row.html,
        version=row.version,
    )


def validate(template: StoredTemplate) -> RenderedMessage:
    """Compile and render with the journey's sample data; raises ``InvalidTemplate``."""
    if "\n" in template.subject.strip():
        raise InvalidTemplate("the subject is one line")
    try:
        for field in _FIELDS:
            source = getattr(template, field)
            if source is not None:
                _RENDERER.check(source, html=field == "html")
        context = catalog.sample_context(template.name) | {"name": "Lan"}
        return _RENDERER.render_stored(template, context=context)
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise InvalidTemplate(f"{type(exc).__name__}{where}: {exc}") from exc


async def get(
    session: AsyncSession, template_id: str, *, for_update: bool = False
) -> MessageTemplate:
    row = await repo.get_template(session, template_id, for_update=for_update)
    if row is None:
        raise TemplateNotFound(f"no template {template_id!r}")
    return row


async def create(
    session: AsyncSession, values: dict[str, Any], *, actor: str, now: datetime
) -> MessageTemplate:
    if values["channel"] not in catalog.CHANNELS:
        raise InvalidTemplate(f"unknown channel {values['channel']!r}")
    row = MessageTemplate(
        id=str(uuid.uuid4()), **values, version=1, updated_at=now, updated_by=actor
    )
    validate(snapshot(row))
    if await repo.find_template(session, name=row.name, language=row.language, channel=row.channel):
        raise TemplateExists(f"{row.name}/{row.language}/{row.channel} exists; change that one")
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:  # a concurrent create of the same key
        raise TemplateExists(f"{row.name}/{row.language}/{row.channel} exists") from exc
    await _audit(session, row, "create", before=None, after=_content(row), actor=actor, now=now)
    return row


async def update(
    session: AsyncSession,
    template_id: str,
    changes: dict[str, Any],
    *,
    expected_version: int | None,
    actor: str,
    now: datetime,
) -> MessageTemplate:
    row = await get(session, template_id, for_update=True)
    if expected_version is not None and expected_version != row.version:
        raise TemplateVersionConflict(
            f"template {template_id!r} is at version {row.version}, not {expected_version}"
        )
    before = _content(row)
    candidate = snapshot(row)
    merged = {**{f: getattr(candidate, f) for f in _FIELDS}, **changes}
    validate(StoredTemplate(**{**_snapshot_fields(candidate), **merged}))
    for key, value in merged.items():
        setattr(row, key, value)
    row.version += 1
    row.updated_at, row.updated_by = now, actor
    await session.flush()
    await _audit(session, row, "update", before=before, after=_content(row), actor=actor, now=now)
    return row


async def delete(session: AsyncSession, template_id: str, *, actor: str, now: datetime) -> None:
    row = await get(session, template_id, for_update=True)
    await _audit(session, row, "delete", before=_content(row), after=None, actor=actor, now=now)
    await session.delete(row)
    await session.flush()


async def list_all(session: AsyncSession, *, name: str | None) -> Sequence[MessageTemplate]:
    return await repo.list_templates(session, names=None if name is None else [name])


def _snapshot_fields(template: StoredTemplate) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "language": template.language,
        "channel": template.channel,
        "version": template.version,
    }


def _content(row: MessageTemplate) -> dict[str, Any]:
    return {f: getattr(row, f) for f in ("name", "language", "channel", *_FIELDS)}


async def _audit(
    session: AsyncSession,
    row: MessageTemplate,
    action: str,
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor: str,
    now: datetime,
) -> None:
    await repo.record_change(
        session,
        kind="template",
        target=row.id,
        action=action,
        version=row.version,
        changed_by=actor,
        changed_at=now,
        before=before,
        after=after,
    )
