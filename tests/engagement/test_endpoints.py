"""GET /v1/customers/{id}/outreach over HTTP, against a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.engagement import endpoints
from shared import http
from shared.auth import TokenVerifier
from shared.db import Database
from tests.engagement.support import handle, outreach_rows, purchase, settings
from tests.helpers import TEST_SECRET, auth_headers

pytestmark = pytest.mark.db


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    http.install(app, service="engagement", checks={})
    app.include_router(endpoints.router)
    app.state.runtime = SimpleNamespace(db=db)  # all SessionDep needs
    app.state.verifier = TokenVerifier(settings(auth_secret=TEST_SECRET))
    transport = httpx.ASGITransport(app=app)
    headers = auth_headers("engagement:read")
    async with httpx.AsyncClient(
        transport=transport, base_url="http://engagement", headers=headers
    ) as c:
        yield c


async def test_history_is_newest_first_and_pages(db: Database, client: httpx.AsyncClient) -> None:
    for n in range(3):
        await handle(db, purchase("c-1", purchase_id=f"p-{n}"))
    await handle(db, purchase("c-2"))
    by_purchase = {r.context["purchase_id"]: r.id for r in await outreach_rows(db, "c-1")}
    first = (await client.get("/v1/customers/c-1/outreach", params={"limit": 2})).json()
    assert [i["id"] for i in first["items"]] == [by_purchase["p-2"], by_purchase["p-1"]]
    assert first["next_before_id"] == by_purchase["p-1"]
    params = {"limit": 2, "before_id": first["next_before_id"]}
    second = (await client.get("/v1/customers/c-1/outreach", params=params)).json()
    assert [i["id"] for i in second["items"]] == [by_purchase["p-0"]]
    assert second["next_before_id"] is None


async def test_history_items_say_what_happened(db: Database, client: httpx.AsyncClient) -> None:
    await handle(db, purchase("c-1"))
    response = await client.get("/v1/customers/c-1/outreach")
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["status"] == "pending"
    assert (item["journey"], item["channel"], item["template"]) == (
        "thank_you",
        "email",
        "thank_you",
    )
    assert item["attempts"] == 0
    assert item["last_error"] is None
    assert item["sent_at"] is None
    assert datetime.fromisoformat(item["created_at"]).tzinfo is not None


async def test_a_customer_with_no_outreach_has_an_empty_history(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/customers/nobody/outreach")
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_before_id": None}


async def test_a_cursor_from_another_customer_is_not_found(
    db: Database, client: httpx.AsyncClient
) -> None:
    await handle(db, purchase("c-2"))
    [other] = await outreach_rows(db, "c-2")
    response = await client.get("/v1/customers/c-1/outreach", params={"before_id": other.id})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "outreach_not_found"


async def test_limit_is_bounded(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/customers/c-1/outreach", params={"limit": 0})
    assert response.status_code == 422
