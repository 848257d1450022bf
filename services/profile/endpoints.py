from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository, service
from services.profile.models import AccessLog
from services.profile.schemas import (
    CustomerRead,
    CustomerSummaryRead,
    ErasureCreate,
    IngestedEventRead,
    MembersRead,
    MergeRead,
    PreferencesUpdate,
    ResolveCreate,
    ResolvedRead,
    SegmentCreate,
    SegmentRead,
    SegmentsReport,
    TimelineEntryRead,
    TimelineRead,
    customer_json,
)
from services.profile.service import normalise, reports, segments
from shared.access_log import audited_read_session, record_apart, staff_reads
from shared.app import ReadSessionDep, RuntimeDep, SessionDep
from shared.auth import Principal, require
from shared.http import AppError
from shared.timers import wall_clock

READ = [Depends(require("customers:read"))]
WRITE = [Depends(require("customers:write"))]
ADMIN = [Depends(require("admin"))]
# Customer-scoped routes: a staff principal's call is written to the access log (in the
# route's own transaction for writes, in one of its own after a read-only route, whose
# session comes with it).
AUDITED = Depends(staff_reads(AccessLog))
AuditedReadSessionDep = Annotated[AsyncSession, audited_read_session(AccessLog)]
# One customer's view or a page of its timeline: reads by key (Database.read_only(quick=True)).
QuickAuditedReadSessionDep = Annotated[AsyncSession, audited_read_session(AccessLog, quick=True)]

customers_router = APIRouter(prefix="/v1/customers", tags=["customers"])
segments_router = APIRouter(prefix="/v1/segments", tags=["segments"])
merges_router = APIRouter(prefix="/v1/merges", tags=["merges"], dependencies=ADMIN)
reports_router = APIRouter(prefix="/v1/reports", tags=["reports"])
events_router = APIRouter(
    prefix="/v1/events", tags=["events"], dependencies=[Depends(require("events:write"))]
)

INGEST_BODY = {
    "description": (
        "One CloudEvent (structured JSON, as POS terminals put on Kafka) of type "
        "purchase.completed, purchase.refunded or interaction.recorded, or an array of up "
        f"to {service.MAX_INGEST_BATCH}. All or nothing: one invalid event rejects the "
        "request (422, naming its index). Re-posting an event (same source and id) is safe: "
        "consumers de-duplicate by them."
    ),
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"type": "object"},
                    {
                        "type": "array",
                        "items": {"type": "object"},
                        "maxItems": service.MAX_INGEST_BATCH,
                    },
                ]
            }
        }
    },
}


class BadQuery(AppError):
    status_code = 422
    code = "invalid_query"


@customers_router.post("/resolve", response_model=ResolvedRead, dependencies=WRITE)
async def resolve_customer(
    body: ResolveCreate, session: SessionDep, runtime: RuntimeDep
) -> ResolvedRead:
    region = getattr(runtime.settings, "default_phone_region", "VN")
    resolved = await service.resolve(
        session, identities=body.to_domain(), region=region, now=wall_clock()
    )
    return ResolvedRead.from_domain(resolved)


@customers_router.get("", response_model=list[CustomerSummaryRead])
async def search_customers(
    request: Request,
    principal: Annotated[Principal, Depends(require("customers:read"))],
    session: ReadSessionDep,
    runtime: RuntimeDep,
    identity: Annotated[str | None, Query(description="kind:value, e.g. phone:0901234567")] = None,
    name_prefix: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    segment: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CustomerSummaryRead]:
    if identity is not None:
        region = getattr(runtime.settings, "default_phone_region", "VN")
        found = await repository.find_by_identity(session, *_identity(identity, region))
        rows = [found] if found is not None else []
    elif name_prefix is None and segment is None:
        raise BadQuery("give identity, name_prefix or segment")
    else:
        rows = list(
            await repository.search_customers(
                session, name_prefix=name_prefix, segment=segment, limit=limit
            )
        )
    ids = [c.customer_id for c in rows]
    await record_apart(runtime, AccessLog, principal=principal, request=request, customer_ids=ids)
    return [
        CustomerSummaryRead(customer_id=c.customer_id, name=c.name, email=c.email, phone=c.phone)
        for c in rows
    ]


def _identity(raw: str, region: str) -> tuple[str, str]:
    kind, _, value = raw.partition(":")
    if kind not in normalise.NORMALISERS or not value:
        kinds = ", ".join(normalise.NORMALISERS)
        raise BadQuery(f"identity must be kind:value with kind one of {kinds}")
    try:
        return kind, normalise.normalise(kind, value, region=region)  # type: ignore[arg-type]
    except normalise.InvalidIdentity as exc:
        raise BadQuery(str(exc)) from exc


@customers_router.get("/{customer_id}", response_model=CustomerRead, dependencies=READ)
async def get_customer(customer_id: str, session: QuickAuditedReadSessionDep) -> Response:
    view = await service.get_customer_view(session, customer_id=customer_id)
    return Response(customer_json(view), media_type="application/json")


@customers_router.get("/{customer_id}/timeline", response_model=TimelineRead, dependencies=READ)
async def get_timeline(
    customer_id: str,
    session: QuickAuditedReadSessionDep,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    before: Annotated[str | None, Query(description="A cursor from a previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TimelineRead:
    customer = await service.find_customer(session, customer_id)
    rows = await repository.list_timeline(
        session,
        customer.customer_id,
        channel=channel,
        kind=kind,
        before=_cursor(before),
        limit=limit,
    )
    entries = [TimelineEntryRead.from_row(r) for r in rows]
    more = len(entries) == limit
    return TimelineRead(entries=entries, next_before=entries[-1].cursor if more else None)


def _cursor(raw: str | None) -> tuple[datetime, int] | None:
    if raw is None:
        return None
    at, _, seq = raw.rpartition("~")
    try:
        when = datetime.fromisoformat(at)
        return (when, int(seq)) if when.tzinfo is not None else _bad_cursor(raw)
    except ValueError:
        return _bad_cursor(raw)


def _bad_cursor(raw: str) -> tuple[datetime, int]:
    raise BadQuery(f"before={raw!r} is not a timeline cursor")


@customers_router.put(
    "/{customer_id}/preferences", response_model=CustomerRead, dependencies=[*WRITE, AUDITED]
)
async def update_preferences(
    customer_id: str, body: PreferencesUpdate, session: SessionDep
) -> CustomerRead:
    customer = await service.update_preferences(
        session, customer_id=customer_id, change=body.to_domain(), now=wall_clock()
    )
    view = await service.get_customer_view(session, customer_id=customer.customer_id)
    return CustomerRead.from_view(view)


@customers_router.get("/{customer_id}/export", dependencies=READ)
async def export_customer(customer_id: str, session: AuditedReadSessionDep) -> dict[str, Any]:
    return await service.export(session, customer_id=customer_id)


@customers_router.delete("/{customer_id}", status_code=204, dependencies=[*ADMIN, AUDITED])
async def erase_customer(
    customer_id: str, session: SessionDep, body: ErasureCreate | None = None
) -> None:
    reason = body.reason if body else None
    await service.erase(session, customer_id=customer_id, reason=reason, now=wall_clock())


@merges_router.post("/{merge_id}/undo", response_model=MergeRead)
async def undo_merge(merge_id: str, session: SessionDep) -> MergeRead:
    return MergeRead.from_row(await service.undo(session, merge_id=merge_id, now=wall_clock()))


@events_router.post(
    "",
    status_code=202,
    response_model=IngestedEventRead | list[IngestedEventRead],
    openapi_extra={"requestBody": INGEST_BODY},
)
async def ingest_events(
    request: Request, session: SessionDep
) -> IngestedEventRead | list[IngestedEventRead]:
    body = await _json_body(request)
    events = await service.ingest(session, body=body)
    accepted = [IngestedEventRead.from_event(e) for e in events]
    return accepted if isinstance(body, list) else accepted[0]


async def _json_body(request: Request) -> Any:
    """The raw JSON body, so that validation errors come from the event contract."""
    try:
        return await request.json()
    except (ValueError, RecursionError) as exc:
        raise service.MalformedBody(f"the body is not valid JSON: {exc}") from exc


@segments_router.post("", status_code=201, response_model=SegmentRead, dependencies=WRITE)
async def create_segment(body: SegmentCreate, session: SessionDep) -> SegmentRead:
    segment = await segments.create_segment(
        session, name=body.name, expression=body.expression, now=wall_clock()
    )
    return SegmentRead.model_validate(segment, from_attributes=True)


@segments_router.get("", response_model=list[SegmentRead], dependencies=READ)
async def list_segments(session: ReadSessionDep) -> list[SegmentRead]:
    rows = await repository.list_segments(session)
    return [SegmentRead.model_validate(s, from_attributes=True) for s in rows]


@segments_router.get("/{name}/members", response_model=MembersRead, dependencies=READ)
async def list_segment_members(
    name: str,
    session: ReadSessionDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembersRead:
    await segments.get_segment(session, name)
    ids = list(await repository.list_members(session, name, after=after, limit=limit))
    return MembersRead(customer_ids=ids, next_after=ids[-1] if len(ids) == limit else None)


@reports_router.get(
    "/segments", response_model=SegmentsReport, dependencies=[Depends(require("reports:read"))]
)
async def segments_report(
    session: ReadSessionDep,
    runtime: RuntimeDep,
    start: Annotated[date | None, Query(alias="from", description="Inclusive, YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(alias="to", description="Exclusive, YYYY-MM-DD")] = None,
) -> dict[str, Any]:
    """Each segment's current members and what they bought in [from, to), in event time."""
    now = wall_clock()
    when = reports.period(start, end, today=now.date())
    currency = getattr(runtime.settings, "report_currency", "EUR")
    return await reports.segments_report(session, when, currency=currency, now=now)
