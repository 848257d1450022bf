"""Every route but the probes (and documented public ones) demands a credential.

For each service app, each route is called with no token (→ 401) and with a valid
token carrying no scope (→ 403). Authentication is checked before anything else
runs, so the apps need no database or broker for this test.
"""

from __future__ import annotations

import re
from importlib import import_module

import httpx
import pytest

from tests.helpers import TEST_SECRET, auth_headers
from tools.stack import settings_for

SERVICES = ("profile", "loyalty", "engagement", "feedback")
OPEN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
# Customer-facing routes where a signed token in the request is the credential.
PUBLIC = {("POST", "/v1/responses")}


def app_for(service: str):
    settings = settings_for(service, auth_secret=TEST_SECRET)
    return import_module(f"services.{service}.main").create_app(settings)


def protected_routes(service: str) -> list[tuple[str, str]]:
    paths = app_for(service).openapi()["paths"]
    found = [(m.upper(), p) for p, ops in paths.items() for m in ops]
    return sorted(r for r in found if r not in OPEN | PUBLIC)


def cases() -> list[tuple[str, str, str]]:
    return [(s, m, p) for s in SERVICES for m, p in protected_routes(s)]


@pytest.mark.parametrize(("service", "method", "path"), cases())
async def test_no_credential_is_401_and_no_scope_is_403(
    service: str, method: str, path: str
) -> None:
    url = re.sub(r"\{[^}]+\}", "x", path)
    app = app_for(service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        anonymous = await client.request(method, url)
        assert anonymous.status_code == 401, anonymous.text
        scopeless = await client.request(method, url, headers=auth_headers())
        assert scopeless.status_code == 403, scopeless.text


def test_every_service_has_protected_routes() -> None:
    for service in SERVICES:
        assert protected_routes(service), service
