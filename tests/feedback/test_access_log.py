"""Staff reads of complaint cases land in feedback's access log; machine reads do not."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.feedback.config import FeedbackSettings
from tests.feedback.conftest import running
from tests.helpers import auth_headers

pytestmark = pytest.mark.db

WRITER = auth_headers("feedback:write", subject="crm-sync")
AGENT = auth_headers("feedback:read", subject="agent-7", staff=True)
SERVICE = auth_headers("feedback:read", subject="bi-export")
ADMIN = auth_headers("admin", subject="ops-ana")


def case(customer_id: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "category": "delivery",
        "severity": "high",
        "channel": "web",
    }


async def entries(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/access-log", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["entries"]
    return found


async def test_staff_reads_of_cases_are_logged_for_each_customer_shown(
    settings: FeedbackSettings,
) -> None:
    async with running(settings) as client:
        first = (await client.post("/v1/complaints", json=case("c-1"), headers=WRITER)).json()
        await client.post("/v1/complaints", json=case("c-2"), headers=WRITER)
        one = await client.get(f"/v1/complaints/{first['id']}", headers=AGENT)
        listed = await client.get("/v1/complaints", headers=AGENT)
        by_machine = await client.get("/v1/complaints", headers=SERVICE)
        missing = await client.get("/v1/complaints/nope", headers=AGENT)
        log_c1 = await entries(client, customer_id="c-1")
        log_c2 = await entries(client, customer_id="c-2")
        everything = await entries(client)
        denied = await client.get("/v1/access-log", headers=AGENT)
    assert (one.status_code, listed.status_code, by_machine.status_code) == (200, 200, 200)
    assert missing.status_code == 404
    assert [e["route"] for e in log_c1] == ["/v1/complaints", "/v1/complaints/{case_id}"]
    assert [e["route"] for e in log_c2] == ["/v1/complaints"]
    assert {e["actor"] for e in everything} == {"agent-7"}
    assert len(everything) == 3
    assert denied.status_code == 403
