"""Previews: what a template or a journey would send to a customer, without sending it.

With a customer, the context is that of their latest message of the journey
(falling back to the journey's sample data) with their name and language; the
caller may override any variable. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement import catalog, journey_config, repository, templates_store
from services.engagement.config import EngagementSettings
from services.engagement.rendering import RenderedMessage, Renderer
from services.engagement.repository import config as repo
from shared.http import AppError, NotFound

_RENDERER = Renderer()


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class PreviewFailed(AppError):
    status_code = 422
    code = "preview_failed"


@dataclass(frozen=True, slots=True)
class Preview:
    message: RenderedMessage
    data: str  # "customer" or "sample"
    language: str | None


async def _context(
    session: AsyncSession, journey: str, customer_id: str | None, overrides: dict[str, Any]
) -> tuple[dict[str, Any], str, str | None]:
    sample = catalog.sample_context(journey)
    if customer_id is None:
        return sample | {"name": "Lan"} | overrides, "sample", None
    contact = await repository.get_contact(session, customer_id)
    if contact is None:
        raise CustomerNotFound(f"engagement knows no customer {customer_id!r}")
    latest = await repo.latest_context(session, customer_id, journey)
    context = (latest or sample) | {"name": contact.name} | overrides
    return context, "customer" if latest else "sample", contact.language


async def template(
    session: AsyncSession,
    template_id: str,
    *,
    customer_id: str | None,
    overrides: dict[str, Any],
) -> Preview:
    row = await templates_store.get(session, template_id)
    context, data, _ = await _context(session, row.name, customer_id, overrides)
    stored = templates_store.snapshot(row)
    message = _render(lambda: _RENDERER.render_stored(stored, context=context))
    return Preview(message, data, row.language)


async def journey(
    session: AsyncSession,
    name: str,
    *,
    customer_id: str | None,
    language: str | None,
    channel: str | None,
    overrides: dict[str, Any],
    settings: EngagementSettings,
) -> Preview:
    """What the journey sends now (its template, stored or built-in, in their language)."""
    current = await journey_config.effective(session, name, settings)
    context, data, customer_language = await _context(session, name, customer_id, overrides)
    chosen = language or customer_language
    rows = await repo.list_templates(session, names=[current.template])
    stored = {(r.name, r.language, r.channel): templates_store.snapshot(r) for r in rows}
    message = _render(
        lambda: _RENDERER.render(
            current.template,
            language=chosen,
            context=context,
            channel=channel or current.channels[0],
            stored=stored,
        )
    )
    return Preview(message, data, chosen)


def _render(render: Any) -> RenderedMessage:
    try:
        result: RenderedMessage = render()
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise PreviewFailed(f"cannot render: {type(exc).__name__}: {exc}") from exc
    return result
