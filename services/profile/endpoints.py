from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from services.profile import service
from services.profile.schemas import CustomerRead, IngestedEventRead
from shared.app import SessionDep
from shared.auth import require

customers_router = APIRouter(
    prefix="/v1/customers", tags=["customers"], dependencies=[Depends(require("customers:read"))]
)
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


@customers_router.get("/{customer_id}", response_model=CustomerRead)
async def get_customer(customer_id: str, session: SessionDep) -> CustomerRead:
    view = await service.get_customer_view(session, customer_id=customer_id)
    return CustomerRead.from_view(view)


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
