"""The dashboard: public page shells and assets, and two data routes (scope reports:read).

* ``GET /dashboard`` and ``GET /dashboard/customers/{id}``: HTML shells (no data in them);
* ``GET /dashboard/static/{file}``: the page's script and style, and plotly.js as shipped
  in the ``plotly`` package (no CDN);
* ``GET /v1/dashboard/overview``: every report the page shows, one panel per report;
* ``GET /v1/dashboard/customers/{id}``: the 360° view from profile, with loyalty's member
  and engagement's own scores.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path as FilePath
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Header, Path
from fastapi.responses import FileResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.engagement.churn.models import ChurnCustomer
from services.engagement.config import EngagementSettings
from services.engagement.dashboard.upstream import Panel, fetch, ok, unavailable
from services.engagement.models import AccessLog
from services.engagement.reports import activity, retention, value
from services.engagement.reports.endpoints import PeriodDep
from services.engagement.reports.period import Period
from services.engagement.reports.value import money
from shared.access_log import staff_reads
from shared.app import Runtime, RuntimeDep, SessionDep
from shared.auth import require
from shared.http import NotFound

router = APIRouter(tags=["dashboard"])
STATIC = FilePath(__file__).parent / "static"
# plotly.js exactly as the PyPI ``plotly`` package ships it
PLOTLY_JS = FilePath(str(files("plotly") / "package_data" / "plotly.min.js"))
ASSETS = {
    "dashboard.js": STATIC / "dashboard.js",
    "customer.js": STATIC / "customer.js",
    "common.js": STATIC / "common.js",
    "dashboard.css": STATIC / "dashboard.css",
    "plotly.min.js": PLOTLY_JS,
}
READ = [Depends(require("reports:read"))]
CustomerPath = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")


class NoSuchAsset(NotFound):
    code = "asset_not_found"


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-store"})


@router.get("/dashboard/customers/{customer_id}", include_in_schema=False)
async def customer_page(customer_id: str = CustomerPath) -> FileResponse:
    return FileResponse(STATIC / "customer.html", headers={"Cache-Control": "no-store"})


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise NoSuchAsset(f"no dashboard asset {name!r}")
    return FileResponse(path, headers={"Cache-Control": "max-age=3600"})


@router.get("/v1/dashboard/overview", dependencies=READ)
async def overview(
    p: PeriodDep,
    session: SessionDep,
    runtime: RuntimeDep,
    authorization: Annotated[str, Header()],
) -> dict[str, Panel]:
    """The engagement reports, and the other services' reports fetched with the caller's token."""
    config = _settings(runtime)
    params = {"from": p.start.isoformat(), "to": p.end.isoformat()}
    remote = {
        "loyalty": f"{config.loyalty_url}/v1/reports/loyalty",
        "feedback": f"{config.feedback_url}/v1/reports/feedback",
        "segments": f"{config.profile_url}/v1/reports/segments",
    }
    async with httpx.AsyncClient(timeout=config.upstream_timeout_seconds) as client:
        calls = [
            fetch(client, u, authorization=authorization, params=params) for u in remote.values()
        ]
        fetched = asyncio.gather(*calls)
        local = await _local(session, p)
        panels = dict(zip(remote, await fetched, strict=True))
    return {"period": ok(params), **local, **panels}


async def _local(session: AsyncSession, p: Period) -> dict[str, Panel]:
    return {
        "retention": ok(await retention.retention(session, p)),
        "value": ok(await value.value(session, p)),
        "engagement": ok(await activity.engagement(session, p)),
    }


@router.get(
    "/v1/dashboard/customers/{customer_id}",
    dependencies=[*READ, Depends(staff_reads(AccessLog))],
)
async def customer_view(
    session: SessionDep,
    runtime: RuntimeDep,
    authorization: Annotated[str, Header()],
    customer_id: str = CustomerPath,
) -> dict[str, Panel]:
    config = _settings(runtime)
    async with httpx.AsyncClient(timeout=config.upstream_timeout_seconds) as client:
        profile, member = await asyncio.gather(
            fetch(
                client,
                f"{config.profile_url}/v1/customers/{customer_id}",
                authorization=authorization,
                params={},
            ),
            fetch(
                client,
                f"{config.loyalty_url}/v1/members/{customer_id}",
                authorization=authorization,
                params={},
            ),
        )
    return {"profile": profile, "loyalty": member, "scores": await _scores(session, customer_id)}


async def _scores(session: AsyncSession, customer_id: str) -> Panel:
    c = await session.get(ChurnCustomer, customer_id)
    if c is None:
        return unavailable(404, f"no purchases recorded for {customer_id}")
    return ok(_score_fields(c))


def _score_fields(c: ChurnCustomer) -> dict[str, Any]:
    return {
        "risk": c.risk,
        "band": c.band,
        "reasons": list(c.reasons or []),
        "clv": money(c.clv),
        "currency": c.currency,
        "p_alive": c.p_alive,
        "expected_purchases": c.expected_purchases,
        "purchase_days": c.purchase_days,
        "first_purchase": c.first_day.isoformat() if c.first_day else None,
        "last_purchase": c.last_day.isoformat() if c.last_day else None,
        "usual_gap_days": c.gap_median_days,
    }


def _settings(runtime: Runtime) -> EngagementSettings:
    settings = runtime.settings
    assert isinstance(settings, EngagementSettings)
    return settings
