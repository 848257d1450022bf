"""Staff reads of a member's balance, ledger and redemptions land in loyalty's access log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.helpers import auth_headers
from tests.loyalty.support import Loyalty, purchase

pytestmark = pytest.mark.db

AGENT = auth_headers("loyalty:read", subject="agent-7", staff=True)
OTHER_AGENT = auth_headers("loyalty:read", subject="agent-9", staff=True)
TILL = auth_headers("loyalty:read", "loyalty:redeem", subject="pos-fleet")
ADMIN = auth_headers("admin", subject="ops-ana")


async def access_log(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await api.get("/v1/access-log", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_a_staff_read_of_a_member_is_logged_per_route(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await loyalty.handle(purchase("c-1", "40"))
    before = datetime.now(UTC)
    for path in ("", "/ledger", "/redemptions"):
        response = await api.get(f"/v1/members/c-1{path}", headers=AGENT)
        assert response.status_code == 200, response.text
    entries = await access_log(api, customer_id="c-1")
    assert [e["route"] for e in entries] == [
        "/v1/members/{customer_id}/redemptions",
        "/v1/members/{customer_id}/ledger",
        "/v1/members/{customer_id}",
    ]
    assert {(e["actor"], e["customer_id"], e["method"]) for e in entries} == {
        ("agent-7", "c-1", "GET")
    }
    at = datetime.fromisoformat(entries[0]["at"])
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)


async def test_machine_clients_and_failed_reads_leave_no_row(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await loyalty.handle(purchase("c-1", "40"))
    assert (await api.get("/v1/members/c-1", headers=TILL)).status_code == 200
    assert (await api.get("/v1/members/c-1/ledger", headers=TILL)).status_code == 200
    assert (await api.get("/v1/members/nobody", headers=AGENT)).status_code == 404
    bad_page = await api.get("/v1/members/c-1/redemptions?before=nope", headers=AGENT)
    assert bad_page.status_code == 400
    assert await access_log(api) == []


async def test_the_log_filters_by_customer_and_is_for_admins_only(
    api: httpx.AsyncClient, loyalty: Loyalty
) -> None:
    await loyalty.handle(purchase("c-1", "40"), purchase("c-2", "10"))
    await api.get("/v1/members/c-1", headers=AGENT)
    await api.get("/v1/members/c-2/ledger", headers=OTHER_AGENT)
    await api.get("/v1/members/c-1/ledger", headers=OTHER_AGENT)
    first = await access_log(api, customer_id="c-1")
    assert [e["actor"] for e in first] == ["agent-9", "agent-7"]
    assert [e["customer_id"] for e in await access_log(api, customer_id="c-2")] == ["c-2"]
    assert [e["customer_id"] for e in await access_log(api, actor="agent-7")] == ["c-1"]
    for headers in (AGENT, auth_headers("loyalty:admin", subject="ops", staff=True)):
        denied = await api.get("/v1/access-log", headers=headers)
        assert denied.status_code == 403, denied.text
    assert (await api.get("/v1/access-log")).status_code == 401


@pytest.mark.parametrize(
    "query",
    ["before=32589158477190044730", "customer_id=c%00", "actor=agent%0A7", "limit=0"],
)
async def test_bad_log_queries_are_422s(api: httpx.AsyncClient, query: str) -> None:
    response = await api.get(f"/v1/access-log?{query}", headers=ADMIN)
    assert response.status_code == 422, response.text
