"""HTTP plumbing every service mounts: errors, probes, metrics, request ids."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import logs, metrics
from shared.consumer import is_transient


class AppError(Exception):
    """An expected failure with its HTTP status; subclasses name the thing that failed."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class EscapedJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: renders any string, even an
    unpaired surrogate (``"\\ud800"`` is valid JSON but cannot be encoded as UTF-8)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


async def _invalid_request_handler(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422 body, written so that echoing the bad input can never fail."""
    assert isinstance(exc, RequestValidationError)
    return EscapedJSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})


async def _app_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return JSONResponse(
        status_code=exc.status_code,
        content={"error": {"code": exc.code, "message": exc.message}},
        headers=exc.headers or None,
    )


async def _database_error_handler(_request: Request, exc: Exception) -> Response:
    """A database that is down, locked or restarting is a 503 to retry, not a 500."""
    if not is_transient(exc):
        raise exc
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": "1"},
        content={"error": {"code": "unavailable", "message": "storage busy; retry shortly"}},
    )


Check = Callable[[], Awaitable[None]]


def probes_router(checks: dict[str, Check]) -> APIRouter:
    """/healthz (the process is alive), /readyz (its dependencies answer), /metrics."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported in the response body
                results[name] = f"{type(exc).__name__}: {exc}"[:200]
        ready = all(v == "ok" for v in results.values())
        return JSONResponse(
            status_code=200 if ready else 503,
            content={"status": "ready" if ready else "not ready", "checks": results},
        )

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class ObservabilityMiddleware:
    """Request id in logs and in the response; latency histogram by route template."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:64] or uuid.uuid4().hex
        token = logs.request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            logs.request_id.reset(token)
            metrics.HTTP_REQUEST_SECONDS.labels(
                self.service, scope["method"], _route_template(scope), str(status)
            ).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    """The matched route's path template (set by the router), so labels stay bounded."""
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def install(app: FastAPI, *, service: str, checks: dict[str, Check]) -> None:
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _invalid_request_handler)
    app.add_exception_handler(sa_exc.DBAPIError, _database_error_handler)
    app.add_exception_handler(sa_exc.TimeoutError, _database_error_handler)
    app.add_middleware(ObservabilityMiddleware, service=service)
    app.include_router(probes_router(checks))
