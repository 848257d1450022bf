"""The 360° view's GET answers with ``customer_json``: the same bytes as the model.

``customer_json`` skips building ``CustomerRead``; this checks, for customers with and
without every optional part, that the wire body equals
``CustomerRead.from_view(view).model_dump_json()`` exactly (fields, order, formats).
"""

from __future__ import annotations

from typing import Any

import pytest

from services.profile import service
from services.profile.schemas import CustomerRead
from shared.db import Database
from shared.events.engagement import ChurnRiskChanged
from tests.profile.builders import at
from tests.profile.history import customer_ids, history
from tests.profile.support import app_client, handle, resolve

pytestmark = pytest.mark.db

OPTIONAL = ("birthday", "loyalty", "tier", "churn", "last_outreach")


async def test_the_views_wire_body_is_the_models_json(
    profile_url: str, profile_db: Database
) -> None:
    ids = customer_ids(30)
    await handle(profile_db, *history(ids))
    async with app_client(profile_url) as client:
        await client.post("/v1/segments", json={"name": "loyal", "expression": "order_count >= 2"})
        bare = (await resolve(client, phone="0901234567"))["customer_id"]  # no events at all
        preferences = {
            "source": "web",
            "language": "vi",
            "birthday": "1990-03-10",
            "timezone": "Asia/Ho_Chi_Minh",
            "preferred_channel": "sms",
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "consents": {"email": "opt_in", "sms": "opt_out"},
        }
        put = await client.put(f"/v1/customers/{ids[0]}/preferences", json=preferences)
        assert put.status_code == 200, put.text
        merged = await resolve(client, email=f"{ids[1]}@example.com", phone="0907654321")
        absorbed = await resolve(client, email=f"{ids[2]}@example.com", phone="0907654321")
        assert absorbed["merge_ids"], absorbed
        assert (await client.delete(f"/v1/customers/{ids[3]}")).status_code == 204
        await handle(profile_db, _churn_without_clv(ids[4]))
        shown = [*ids, bare, merged["customer_id"], ids[2]]

        bodies = {}
        for cid in shown:
            response = await client.get(f"/v1/customers/{cid}")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            bodies[cid] = response.content

    async with profile_db.read_only() as session:
        for cid in shown:
            view = await service.get_customer_view(session, customer_id=cid)
            assert bodies[cid] == CustomerRead.from_view(view).model_dump_json().encode(), cid

    seen = [CustomerRead.model_validate_json(b).model_dump(mode="json") for b in bodies.values()]
    _assert_covers_every_optional_part(seen)


def _assert_covers_every_optional_part(seen: list[dict[str, Any]]) -> None:
    """Each optional part is both present and absent among the customers compared."""
    parts: dict[str, list[Any]] = {
        **{name: [v[name] for v in seen] for name in OPTIONAL},
        "total_spend": [v["lifetime"]["total_spend"] for v in seen],
        "clv": [v["churn"]["clv"] for v in seen if v["churn"]],
        "last_nps": [v["feedback"]["last_nps"] for v in seen],
        "quiet_hours": [v["preferences"]["quiet_hours"] for v in seen],
        "consents": [v["preferences"]["consents"] or None for v in seen],
        "segments": [v["segments"] or None for v in seen],
        "channels": [v["channels"] or None for v in seen],
        "name": [v["name"] for v in seen],
    }
    for name, values in parts.items():
        assert any(x is None for x in values), name
        assert any(x is not None for x in values), name
    assert {v["erased"] for v in seen} == {True, False}


def _churn_without_clv(cid: str) -> ChurnRiskChanged:
    data = {"risk": 0.25, "band": "low", "previous_band": "medium"}
    return ChurnRiskChanged.create(
        subject=cid, source="keepwell/engagement", time=at(24 * 400), data=data
    )
