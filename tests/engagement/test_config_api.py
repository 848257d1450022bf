"""Journeys and templates over HTTP: settings, template CRUD with validation, preview, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.engagement import config_endpoints
from services.engagement.sender import Sender
from shared import http
from shared.auth import TokenVerifier
from shared.db import Database
from tests.engagement.support import customer, handle, only_outreach, purchase, settings
from tests.helpers import LONGEST_SUBJECT, TEST_SECRET, auth_headers
from tools.smtp_sink import SinkHandler

pytestmark = pytest.mark.db

WIN_BACK_VI = {
    "name": "win_back",
    "language": "vi",
    "channel": "email",
    "subject": "Lâu rồi không gặp, {{ name }}",
    "body": "Chào {{ name }}, mức rủi ro {{ risk }}.",
}


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    app = FastAPI()
    http.install(app, service="engagement", checks={})
    app.include_router(config_endpoints.router)
    app.state.runtime = SimpleNamespace(db=db, settings=settings())
    app.state.verifier = TokenVerifier(settings(auth_secret=TEST_SECRET))
    clients: list[httpx.AsyncClient] = []

    def as_(scope: str, subject: str | None = None) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://engagement",
            headers=auth_headers(*_with_read(scope), subject=subject or f"ops-{scope}"),
        )
        clients.append(c)
        return c

    yield as_
    for c in clients:
        await c.aclose()


def _with_read(scope: str) -> tuple[str, ...]:
    """An operator who may change things may read them too (they are distinct scopes)."""
    return (scope,) if scope == "engagement:read" else (scope, "engagement:read")


async def test_journeys_list_their_defaults(client: Callable[[str], httpx.AsyncClient]) -> None:
    response = await client("engagement:read").get("/v1/journeys")
    assert response.status_code == 200
    journeys = {j["name"]: j for j in response.json()}
    assert {"survey_invitation", "after_sales", "service_recovery", "support_alert"} <= set(
        journeys
    )
    win_back = journeys["win_back"]
    assert (win_back["enabled"], win_back["delay_seconds"], win_back["version"]) == (
        True,
        86400.0,
        0,
    )
    assert win_back["channels"] == ["email", "sms"]
    assert win_back["marketing"] is True


async def test_changing_a_journey_is_versioned_and_audited(
    client: Callable[[str], httpx.AsyncClient],
) -> None:
    admin, reader = client("engagement:admin"), client("engagement:read")
    change = {"delay_seconds": 3600, "channels": ["sms", "email"], "expected_version": 0}
    response = await admin.patch("/v1/journeys/win_back", json=change)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["delay_seconds"], body["channels"], body["version"]) == (
        3600.0,
        ["sms", "email"],
        1,
    )
    assert body["updated_by"] == "ops-engagement:admin"
    stale = await admin.patch(
        "/v1/journeys/win_back", json={"enabled": False, "expected_version": 0}
    )
    assert stale.status_code == 409
    [entry] = (await reader.get("/v1/config/changes", params={"target": "win_back"})).json()
    assert (entry["kind"], entry["version"], entry["changed_by"]) == (
        "journey",
        1,
        "ops-engagement:admin",
    )
    assert (entry["before"]["delay_seconds"], entry["after"]["delay_seconds"]) == (86400.0, 3600.0)
    assert entry["after"]["channels"] == ["sms", "email"]


@pytest.mark.parametrize(
    "change",
    [
        {"channels": ["email", "email"]},
        {"channels": ["fax"]},
        {"template": "no_such_template"},
        {"channels": None},
        {"delay_seconds": None},
        {"enabled": None, "template": None},
        {"max_lateness_seconds": 1.39e308},  # beyond any timedelta: was a 500
        {"delay_seconds": 1e300},
    ],
)
async def test_bad_journey_settings_are_refused(
    client: Callable[[str], httpx.AsyncClient], change: dict[str, object]
) -> None:
    response = await client("engagement:admin").patch("/v1/journeys/win_back", json=change)
    assert response.status_code == 422, response.text


async def test_a_reader_cannot_change_a_journey(
    client: Callable[[str], httpx.AsyncClient],
) -> None:
    response = await client("engagement:read").patch("/v1/journeys/win_back", json={})
    assert response.status_code == 403
    missing = await client("engagement:read").get("/v1/journeys/nope")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("field", "source", "fragment"),
    [
        ("body", "Hi {{ name }", "TemplateSyntaxError"),
        ("body", "Hi {{ nmae }}", "UndefinedError"),
        ("subject", "{{ ''.__class__.__mro__ }}", "SecurityError"),
    ],
)
async def test_a_broken_template_is_refused_on_write(
    client: Callable[[str], httpx.AsyncClient], field: str, source: str, fragment: str
) -> None:
    response = await client("engagement:admin").post(
        "/v1/templates", json=WIN_BACK_VI | {field: source}
    )
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]


async def test_template_life_cycle_with_audit(
    client: Callable[[str], httpx.AsyncClient],
) -> None:
    admin, reader = client("engagement:admin"), client("engagement:read")
    created = await admin.post("/v1/templates", json=WIN_BACK_VI)
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    again = await admin.post("/v1/templates", json=WIN_BACK_VI)
    assert again.status_code == 409
    updated = await admin.patch(
        f"/v1/templates/{template_id}",
        json={"subject": "Quay lại nhé, {{ name }}", "expected_version": 1},
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["body"]) == (2, WIN_BACK_VI["body"])
    conflict = await admin.patch(
        f"/v1/templates/{template_id}", json={"body": "x", "expected_version": 1}
    )
    assert conflict.status_code == 409
    assert (await admin.delete(f"/v1/templates/{template_id}")).status_code == 204
    assert (await reader.get(f"/v1/templates/{template_id}")).status_code == 404
    history = (await reader.get("/v1/config/changes", params={"target": template_id})).json()
    assert [h["action"] for h in history] == ["delete", "update", "create"]
    assert history[1]["before"]["subject"] == WIN_BACK_VI["subject"]
    assert history[1]["after"]["subject"] == "Quay lại nhé, {{ name }}"


async def test_preview_renders_for_a_customer_without_sending(
    db: Database, client: Callable[[str], httpx.AsyncClient], smtp: tuple[int, SinkHandler]
) -> None:
    admin = client("engagement:admin")
    template_id = (await admin.post("/v1/templates", json=WIN_BACK_VI)).json()["id"]
    await handle(db, customer("c-1", name="Minh", language="vi"))
    sample = await admin.post(f"/v1/templates/{template_id}/preview", json={})
    assert sample.status_code == 200, sample.text
    assert (sample.json()["subject"], sample.json()["data"]) == ("Lâu rồi không gặp, Lan", "sample")
    personal = await admin.post(
        f"/v1/templates/{template_id}/preview",
        json={"customer_id": "c-1", "context": {"risk": 0.9}},
    )
    assert personal.json()["subject"] == "Lâu rồi không gặp, Minh"
    assert "0.9" in personal.json()["text"]
    unknown = await admin.post(f"/v1/templates/{template_id}/preview", json={"customer_id": "x"})
    assert unknown.status_code == 404
    journey = await admin.post(
        "/v1/journeys/thank_you/preview", json={"customer_id": "c-1", "language": "en"}
    )
    assert journey.status_code == 200, journey.text
    assert journey.json()["subject"] == "Thank you for your purchase, Minh"
    assert smtp[1].messages == []


async def test_the_sender_uses_a_stored_template_and_the_journey_settings(
    db: Database, client: Callable[[str], httpx.AsyncClient], smtp: tuple[int, SinkHandler]
) -> None:
    port, sink = smtp
    admin = client("engagement:admin")
    stored = WIN_BACK_VI | {
        "name": "thank_you",
        "subject": "Cảm ơn {{ name }} vì đơn {{ purchase_id }}",
        "body": "Tổng: {{ total | money }}",
    }
    assert (await admin.post("/v1/templates", json=stored)).status_code == 201
    await handle(
        db, customer("c-1", name="Minh", language="vi"), purchase("c-1", purchase_id="p-7")
    )
    await Sender(db=db, settings=settings(smtp_port=port)).run_once()
    [mail] = sink.wait_for(1, timeout=5)
    assert mail.subject == "Cảm ơn Minh vì đơn p-7"
    off = await admin.patch("/v1/journeys/thank_you", json={"enabled": False})
    assert off.status_code == 200
    await handle(db, customer("c-2"), purchase("c-2"))
    with pytest.raises(AssertionError):
        await only_outreach(db, "c-2")


async def test_journey_stats_over_http(
    db: Database, client: Callable[[str], httpx.AsyncClient]
) -> None:
    reader = client("engagement:read")
    await handle(db, customer("c-1"), purchase("c-1"))
    period = {"start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}
    response = await reader.get("/v1/journey-stats", params=period)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "journey": "thank_you",
            "channel": "email",
            "sent": 0,
            "suppressed": 0,
            "failed": 0,
            "conversions": 0,
        }
    ]
    backwards = {"start": period["end"], "end": period["start"]}
    assert (await reader.get("/v1/journey-stats", params=backwards)).status_code == 422
    naive = {"start": "2020-01-01T00:00:00", "end": "2100-01-01T00:00:00"}
    assert (await reader.get("/v1/journey-stats", params=naive)).status_code == 422


async def test_null_resets_a_journeys_lateness_but_not_a_templates_text(
    client: Callable[[str], httpx.AsyncClient],
) -> None:
    admin = client("engagement:admin")
    set_it = await admin.patch("/v1/journeys/win_back", json={"max_lateness_seconds": 60})
    reset = await admin.patch("/v1/journeys/win_back", json={"max_lateness_seconds": None})
    assert (set_it.status_code, reset.status_code) == (200, 200), reset.text
    assert (set_it.json()["max_lateness_seconds"], reset.json()["max_lateness_seconds"]) == (
        60,
        None,
    )
    created = await admin.post("/v1/templates", json=WIN_BACK_VI)
    nulled = await admin.patch(f"/v1/templates/{created.json()['id']}", json={"body": None})
    assert nulled.status_code == 422
    assert "body may be left out but not null" in nulled.text


async def test_an_operator_with_the_longest_subject_is_recorded_whole(
    client: Callable[..., httpx.AsyncClient],
) -> None:
    """Journey and template changes by a 255-character subject (OpenID Connect's limit) are
    stored and audited whole, on PostgreSQL too."""
    admin = client("engagement:admin", LONGEST_SUBJECT)
    journey = await admin.patch(
        "/v1/journeys/win_back", json={"enabled": False, "expected_version": 0}
    )
    template = await admin.post("/v1/templates", json=WIN_BACK_VI)
    changes = await admin.get("/v1/config/changes")
    assert journey.status_code == 200, journey.text
    assert template.status_code == 201, template.text
    assert journey.json()["updated_by"] == template.json()["updated_by"] == LONGEST_SUBJECT
    assert [c["changed_by"] for c in changes.json()] == [LONGEST_SUBJECT] * 2
