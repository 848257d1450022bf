"""Scores and model routes over HTTP, against a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.engagement.churn import endpoints, scores
from services.engagement.churn.settings import churn_settings
from shared import http
from shared.auth import TokenVerifier
from shared.db import Database
from shared.timers import pending
from tests.engagement.churn.support import Clock, at, handle, population_events
from tests.engagement.support import settings
from tests.helpers import TEST_SECRET, auth_headers

pytestmark = pytest.mark.db

READ = auth_headers("engagement:read")
ADMIN = auth_headers("engagement:admin")


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    http.install(app, service="engagement", checks={})
    app.include_router(endpoints.router)
    app.state.runtime = SimpleNamespace(db=db)
    app.state.verifier = TokenVerifier(settings(auth_secret=TEST_SECRET))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://engagement") as c:
        yield c


async def test_refit_then_model_and_scores_are_visible(
    db: Database, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/v1/models/current", headers=READ)).status_code == 404
    await handle(db, *population_events(), batch=50, clock=Clock(at(date(2025, 7, 1))))
    body = {"calibration_end": "2025-06-30"}
    refit = await client.post("/v1/models/refit", json=body, headers=ADMIN)
    assert refit.status_code == 201, refit.text
    model = refit.json()
    assert model["calibration_end"] == "2025-06-30"
    assert model["n_customers"] == 40
    assert model["spend"]["n_customers"] > 0
    assert model["fit_seconds"] > 0
    combiner = model["combiner"]  # 40 customers: the backtest window is half the history
    assert (combiner["as_of"], combiner["days"], combiner["customers"]) == ("2025-04-04", 87, 40)
    assert combiner["model"] > 0
    current = (await client.get("/v1/models/current", headers=READ)).json()
    assert current == model
    async with db.unit_of_work() as session:
        assert await pending(session, key=f"churn.rescore:model-{model['id']}") is not None
        await scores.rescore_all(session, config=churn_settings(), now=at(date(2025, 7, 1)))
    scored = (await client.get("/v1/customers/pop-1/scores", headers=READ)).json()
    assert 0 <= scored["risk"] <= 1
    assert scored["band"] in ("low", "medium", "high")
    assert scored["reasons"][0].endswith("%)")
    assert 0 <= scored["p_alive"] <= 1
    assert scored["expected_purchases"] >= 0
    assert float(scored["clv"]) > 0
    assert scored["currency"] == "EUR"


async def test_unknown_customer_and_bad_input_are_4xx(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/customers/nobody/scores", headers=READ)
    assert missing.status_code == 404
    bad_date = await client.post(
        "/v1/models/refit", json={"calibration_end": "soon"}, headers=ADMIN
    )
    assert bad_date.status_code == 422
    too_few = await client.post("/v1/models/refit", headers=ADMIN)
    assert too_few.status_code == 409
    assert "need at least" in too_few.json()["error"]["message"]


async def test_refit_needs_the_admin_scope(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/models/refit", headers=READ)).status_code == 403
