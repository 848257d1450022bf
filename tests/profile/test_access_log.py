"""Staff reads of customers land in the access log, which admins can page and filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.helpers import auth_headers
from tests.profile.support import app_client, resolve

pytestmark = pytest.mark.db

AGENT = auth_headers("customers:read", "customers:write", subject="agent-7", staff=True)
OTHER_AGENT = auth_headers("customers:read", subject="agent-9", staff=True)
POS = auth_headers("customers:read", subject="pos-fleet")


async def access_log(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/access-log", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_a_staff_read_is_logged_with_who_what_and_when(profile_url: str) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, email="lan@example.com"))["customer_id"]
        before = datetime.now(UTC)
        for path in ("", "/timeline", "/export"):
            response = await client.get(f"/v1/customers/{cid}{path}", headers=AGENT)
            assert response.status_code == 200, response.text
        entries = (await access_log(client, customer_id=cid))["entries"]
    assert [e["route"] for e in entries] == [
        "/v1/customers/{customer_id}/export",
        "/v1/customers/{customer_id}/timeline",
        "/v1/customers/{customer_id}",
    ]
    assert {(e["actor"], e["customer_id"], e["method"]) for e in entries} == {
        ("agent-7", cid, "GET")
    }
    at = datetime.fromisoformat(entries[0]["at"])
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
    assert all(e["request_id"] for e in entries)


async def test_machine_clients_and_failed_reads_are_not_logged(profile_url: str) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, phone="0901234567"))["customer_id"]
        assert (await client.get(f"/v1/customers/{cid}", headers=POS)).status_code == 200
        missing = await client.get("/v1/customers/nobody", headers=AGENT)
        assert missing.status_code == 404
        assert (await access_log(client))["entries"] == []


async def test_a_staff_search_logs_every_customer_it_returns(profile_url: str) -> None:
    async with app_client(profile_url) as client:
        cid = (await resolve(client, phone="0901234567"))["customer_id"]
        found = await client.get(
            "/v1/customers", params={"identity": "phone:0901234567"}, headers=AGENT
        )
        assert [c["customer_id"] for c in found.json()] == [cid]
        change = {"consents": {"email": "opt_out"}, "source": "support-desk"}
        put = await client.put(f"/v1/customers/{cid}/preferences", json=change, headers=AGENT)
        assert put.status_code == 200, put.text
        entries = (await access_log(client, actor="agent-7"))["entries"]
    assert [(e["method"], e["route"], e["customer_id"]) for e in entries] == [
        ("PUT", "/v1/customers/{customer_id}/preferences", cid),
        ("GET", "/v1/customers", cid),
    ]


async def test_the_log_filters_by_customer_actor_and_time_and_pages(profile_url: str) -> None:
    async with app_client(profile_url) as client:
        first = (await resolve(client, email="a@example.com"))["customer_id"]
        second = (await resolve(client, email="b@example.com"))["customer_id"]
        for _ in range(3):
            await client.get(f"/v1/customers/{first}", headers=AGENT)
        await client.get(f"/v1/customers/{second}", headers=OTHER_AGENT)
        assert len((await access_log(client, customer_id=first))["entries"]) == 3
        by_other = (await access_log(client, actor="agent-9"))["entries"]
        assert [e["customer_id"] for e in by_other] == [second]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert (await access_log(client, since=future))["entries"] == []
        assert len((await access_log(client, since=past, until=future))["entries"]) == 4
        assert (await access_log(client, until=past))["entries"] == []
        page = await access_log(client, limit=3)
        rest = await access_log(client, limit=3, before=page["next_before"])
    assert len(page["entries"]) == 3
    assert page["next_before"] is not None
    assert [e["customer_id"] for e in rest["entries"]] == [first]
    assert rest["next_before"] is None


async def test_bad_ranges_are_422_and_only_admins_may_read(profile_url: str) -> None:
    async with app_client(profile_url) as client:
        now = datetime.now(UTC).isoformat()
        backwards = await client.get("/v1/access-log", params={"since": now, "until": now})
        assert backwards.status_code == 422
        naive = await client.get("/v1/access-log", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
        staff = await client.get("/v1/access-log", headers=AGENT)
        assert staff.status_code == 403
