"""The staff access log: which staff member read which customer, when, through which route.

A service adopts it in three steps:

1. its models declare the table: ``AccessLog = access_log_table(Base.metadata)``
   (plus an Alembic revision creating it);
2. customer-scoped routes add ``Depends(staff_reads(AccessLog))`` after their
   ``require(scope)`` dependency (the customer id comes from the ``customer_id``
   path parameter), and routes returning several customers call ``record``;
3. its app mounts ``access_log_router(AccessLog)``: ``GET /v1/access-log`` for admins.

The row is written in the request's own unit of work, so a read that commits is
always logged, and a read that fails (404, 422, a crash) leaves no row and
revealed nothing. Routes reading through a read-only session (``ReadSessionDep``,
which cannot write) use ``audited_read(AccessLog)`` instead of ``staff_reads`` (or take
their session from ``audited_read_session(AccessLog)``, the two in one): once
the route has answered without error, the row is written in a unit of work of its
own, before the response leaves (a failure to write it fails the request). Routes
returning several customers call ``record_apart`` after their read. Only principals
whose token carries ``staff: true`` are logged: machine clients (POS, storefront) are
not people reading a customer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import logs
from shared.app import ReadSessionDep, Runtime, RuntimeDep, SessionDep, get_runtime
from shared.auth import Principal, current_principal, require
from shared.db import UtcDateTime
from shared.http import AppError

MAX_PAGE = 500


def access_log_table(metadata: MetaData) -> Table:
    """The ``access_log`` table in a service's own metadata (its migrations create it)."""
    return Table(
        "access_log",
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("at", UtcDateTime, nullable=False),
        Column("actor", String(256), nullable=False, comment="The token's subject"),
        Column("customer_id", String(64), nullable=False, comment="As named in the request"),
        Column("method", String(8), nullable=False),
        Column("route", String(200), nullable=False, comment="Route template, not the raw path"),
        Column("request_id", String(64), nullable=True),
        Index("ix_access_log_customer_at", "customer_id", "at"),
        Index("ix_access_log_actor_at", "actor", "at"),
        Index("ix_access_log_at", "at"),
    )


def route_template(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))[:200]


async def record(
    session: AsyncSession,
    table: Table,
    *,
    principal: Principal,
    request: Request,
    customer_ids: Iterable[str],
    at: datetime | None = None,
) -> int:
    """Log a staff principal's read of ``customer_ids``; returns the rows written."""
    if not principal.staff:
        return 0
    common = {
        "at": at or datetime.now(UTC),
        "actor": principal.subject,
        "method": request.method[:8],
        "route": route_template(request),
        "request_id": logs.request_id.get(),
    }
    rows = [{**common, "customer_id": cid[:64]} for cid in dict.fromkeys(customer_ids)]
    if rows:
        await session.execute(insert(table), rows)
    return len(rows)


def staff_reads(table: Table, *, param: str = "customer_id") -> Callable[..., Awaitable[None]]:
    """A route dependency logging a staff read of the customer named by path ``param``."""

    async def log_staff_read(
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        session: SessionDep,
    ) -> None:
        customer_id = request.path_params.get(param)
        if customer_id:
            await record(
                session, table, principal=principal, request=request, customer_ids=[customer_id]
            )

    return log_staff_read


async def record_apart(
    runtime: Runtime,
    table: Table,
    *,
    principal: Principal,
    request: Request,
    customer_ids: Iterable[str],
) -> int:
    """``record`` in a unit of work of its own (for routes whose session is read-only)."""
    if not principal.staff:
        return 0
    async with runtime.db.unit_of_work() as session:
        return await record(
            session, table, principal=principal, request=request, customer_ids=customer_ids
        )


def audited_read(table: Table, *, param: str = "customer_id") -> Any:
    """Like ``Depends(staff_reads(table))``, for routes whose session is read-only.

    Declare it in the route's ``dependencies`` (so it is entered before the route's
    session and left after it): the row is written only if the route and its read
    transaction ended without error, and before the response is sent.
    """

    async def log_staff_read_after(
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        runtime: RuntimeDep,
    ) -> AsyncIterator[None]:
        yield
        await _record_named(runtime, table, principal=principal, request=request, param=param)

    return Depends(log_staff_read_after, scope="function")


def audited_read_session(table: Table, *, param: str = "customer_id", quick: bool = False) -> Any:
    """``ReadSessionDep`` and ``audited_read(table)`` as one dependency, for a route's
    session parameter: ``session: Annotated[AsyncSession, audited_read_session(T)]``.
    ``quick`` for a route of a few short reads (``Database.read_only(quick=True)``).

    The same order as the pair: the read-only transaction ends first, and only if it
    and the route ended without error is the staff read written, in a unit of work of
    its own, before the response is sent. One dependency instead of three (the session,
    the audit and the runtime it needs) is less work for FastAPI on every request.
    """

    async def read_session_audited(
        request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> AsyncIterator[AsyncSession]:
        runtime = get_runtime(request)
        async with runtime.db.read_only(quick=quick) as session:
            yield session
        await _record_named(runtime, table, principal=principal, request=request, param=param)

    return Depends(read_session_audited, scope="function")


async def _record_named(
    runtime: Runtime, table: Table, *, principal: Principal, request: Request, param: str
) -> None:
    """Log a staff read of the customer named by path ``param`` (in its own unit of work)."""
    customer_id = request.path_params.get(param)
    if customer_id:
        await record_apart(
            runtime, table, principal=principal, request=request, customer_ids=[customer_id]
        )


class AccessRead(BaseModel):
    id: int
    at: datetime
    actor: str
    customer_id: str
    method: str
    route: str
    request_id: str | None


class AccessPage(BaseModel):
    entries: list[AccessRead]
    next_before: int | None


class BadRange(AppError):
    status_code = 422
    code = "invalid_query"


def access_log_router(table: Table, *, prefix: str = "/v1/access-log") -> APIRouter:
    """``GET /v1/access-log``: admins page through staff reads, newest first."""
    router = APIRouter(prefix=prefix, tags=["access log"])

    @router.get("", response_model=AccessPage, dependencies=[Depends(require("admin"))])
    async def list_access(
        session: ReadSessionDep,
        customer_id: Annotated[
            str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
        ] = None,
        actor: Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")] = None,
        since: Annotated[AwareDatetime | None, Query(description="Inclusive")] = None,
        until: Annotated[AwareDatetime | None, Query(description="Exclusive")] = None,
        before: Annotated[
            int | None, Query(ge=1, le=2**63 - 1, description="next_before of a page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> AccessPage:
        if since is not None and until is not None and since >= until:
            raise BadRange("since must be earlier than until")
        filters: dict[str, Any] = {"customer_id": customer_id, "actor": actor}
        stmt = select(table)
        for column, value in filters.items():
            if value is not None:
                stmt = stmt.where(table.c[column] == value)
        if since is not None:
            stmt = stmt.where(table.c.at >= since)
        if until is not None:
            stmt = stmt.where(table.c.at < until)
        if before is not None:
            stmt = stmt.where(table.c.id < before)
        rows = (await session.execute(stmt.order_by(table.c.id.desc()).limit(limit))).all()
        entries = [AccessRead.model_validate(r, from_attributes=True) for r in rows]
        more = len(entries) == limit
        return AccessPage(entries=entries, next_before=entries[-1].id if more else None)

    return router
