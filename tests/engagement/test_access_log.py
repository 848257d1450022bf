"""Staff reads of a customer's scores, messages or a preview for them land in engagement's
access log; machine clients and failed reads leave no row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.engagement import config_endpoints, endpoints
from services.engagement.churn import endpoints as churn_endpoints
from services.engagement.models import AccessLog
from shared import http
from shared.access_log import access_log_router
from shared.auth import TokenVerifier
from shared.db import Database
from tests.engagement.support import customer, handle, purchase, settings
from tests.helpers import TEST_SECRET, auth_headers

pytestmark = pytest.mark.db

AGENT = auth_headers("engagement:read", subject="agent-7", staff=True)
MACHINE = auth_headers("engagement:read", subject="crm-export")
ADMIN = auth_headers("admin", subject="ops-ana")


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    config = settings(auth_secret=TEST_SECRET)
    app = FastAPI()
    http.install(app, service="engagement", checks={})
    for router in (
        endpoints.router,
        churn_endpoints.router,
        config_endpoints.router,
        access_log_router(AccessLog),
    ):
        app.include_router(router)
    app.state.runtime = SimpleNamespace(db=db, settings=config)
    app.state.verifier = TokenVerifier(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://engagement") as client:
        yield client


async def logged(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await api.get("/v1/access-log", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_staff_reads_of_a_customer_are_logged_per_route(
    db: Database, api: httpx.AsyncClient
) -> None:
    await handle(db, customer("c-1"), purchase("c-1"))
    assert (await api.get("/v1/customers/c-1/outreach", headers=AGENT)).status_code == 200
    assert (await api.get("/v1/customers/c-1/scores", headers=AGENT)).status_code == 200
    preview = await api.post(
        "/v1/journeys/thank_you/preview", json={"customer_id": "c-1"}, headers=AGENT
    )
    assert preview.status_code == 200, preview.text
    sample = await api.post("/v1/journeys/thank_you/preview", json={}, headers=AGENT)
    assert sample.status_code == 200, sample.text
    entries = await logged(api)
    assert [(e["actor"], e["customer_id"], e["route"]) for e in entries] == [
        ("agent-7", "c-1", "/v1/journeys/{name}/preview"),
        ("agent-7", "c-1", "/v1/customers/{customer_id}/scores"),
        ("agent-7", "c-1", "/v1/customers/{customer_id}/outreach"),
    ]


async def test_machine_clients_and_failed_reads_leave_no_row(
    db: Database, api: httpx.AsyncClient
) -> None:
    await handle(db, customer("c-1"), purchase("c-1"))
    assert (await api.get("/v1/customers/c-1/scores", headers=MACHINE)).status_code == 200
    assert (await api.get("/v1/customers/nobody/scores", headers=AGENT)).status_code == 404
    assert await logged(api) == []
    assert (await api.get("/v1/access-log", headers=AGENT)).status_code == 403
