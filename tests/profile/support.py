"""Shared plumbing for profile tests: a migrated database, the handlers, the app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from services.profile import consumers
from services.profile.config import ProfileSettings
from services.profile.main import create_app
from shared.db import Database
from shared.events import Event
from shared.plumbing import outbox
from tests.helpers import TEST_SECRET, auth_headers

HANDLERS = consumers.handlers(ProfileSettings())
ALL_SCOPES = ("customers:read", "customers:write", "events:write", "admin")


async def handle(db: Database, *events: Event) -> None:
    """Each event in its own transaction, as the runner would commit them."""
    for event in events:
        async with db.unit_of_work() as session:
            await HANDLERS[type(event)](session, event)


async def queued(db: Database, *types: str) -> list[dict[str, Any]]:
    """Events in the outbox (optionally only of these types), oldest first."""
    async with db.unit_of_work() as session:
        rows = await session.execute(select(outbox).order_by(outbox.c.id))
        found = [{"type": r.event_type, "key": r.key, "event": json.loads(r.value)} for r in rows]
    return [f for f in found if not types or f["type"] in types]


@asynccontextmanager
async def app_client(url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app on ``url`` without relay or consumer: what requests do stays in the db."""
    options: dict[str, Any] = {"relay_enabled": False, "consumer_enabled": False, **overrides}
    app = create_app(ProfileSettings(auth_secret=TEST_SECRET, database_url=url, **options))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers=auth_headers(*ALL_SCOPES),
        ) as client,
    ):
        yield client


async def resolve(client: httpx.AsyncClient, **identities: str) -> dict[str, Any]:
    body = {"identities": [{"kind": k, "value": v} for k, v in identities.items()]}
    response = await client.post("/v1/customers/resolve", json=body)
    assert response.status_code == 200, response.text
    resolved: dict[str, Any] = response.json()
    return resolved


async def view(client: httpx.AsyncClient, customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found
