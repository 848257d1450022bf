"""Calls to the other services on the caller's behalf (their bearer token, forwarded).

Each answer becomes a *panel*: ``{"ok": true, "data": ...}`` or ``{"ok": false, "status",
"error"}``, so a service that is down or refuses shows as unavailable on the page instead
of failing the whole dashboard.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)
Panel = dict[str, Any]


def ok(data: Any) -> Panel:
    return {"ok": True, "data": data}


def unavailable(status: int | None, error: str) -> Panel:
    return {"ok": False, "status": status, "error": error}


async def fetch(
    client: httpx.AsyncClient, url: str, *, authorization: str, params: dict[str, str]
) -> Panel:
    try:
        response = await client.get(url, params=params, headers={"Authorization": authorization})
    except httpx.HTTPError as exc:
        log.warning("dashboard: %s unreachable: %s", url, exc)
        return unavailable(None, f"unreachable ({type(exc).__name__})")
    if response.status_code != 200:
        return unavailable(response.status_code, _message(response))
    try:
        return ok(response.json())
    except ValueError:
        return unavailable(response.status_code, "the answer was not JSON")


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") or error.get("code") or response.reason_phrase)
    except (ValueError, AttributeError):
        return response.reason_phrase or f"HTTP {response.status_code}"
