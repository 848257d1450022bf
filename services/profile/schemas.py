from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from services.profile.models import Merge, TimelineEntry
from services.profile.service import CustomerView, IdentityIn, PreferencesChange, Resolved
from services.profile.service.normalise import IdentityKind
from shared.events import Event
from shared.events.common import Language
from shared.events.profile import ConsentStatus, ContactChannel, QuietHours


class MoneyRead(BaseModel):
    amount: Decimal
    currency: str


class LifetimeRead(BaseModel):
    order_count: int
    total_spend: MoneyRead | None
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None


class PointsRead(BaseModel):
    points_balance: int
    updated_at: datetime


class OutreachRead(BaseModel):
    at: datetime
    journey: str


class ConsentRead(BaseModel):
    status: ConsentStatus
    source: str
    changed_at: datetime


class PreferencesRead(BaseModel):
    language: str | None
    timezone: str | None
    preferred_channel: str | None
    quiet_hours: QuietHours | None
    consents: dict[str, ConsentRead]


class ChurnRead(BaseModel):
    risk: float
    band: str
    clv: MoneyRead | None
    updated_at: datetime


class FeedbackRead(BaseModel):
    last_nps: int | None
    last_nps_at: datetime | None
    open_complaints: int


class CustomerRead(BaseModel):
    """The 360° view of one customer (an id absorbed by a merge shows its survivor)."""

    customer_id: str
    name: str | None
    email: str | None
    phone: str | None
    language: str | None
    timezone: str | None
    birthday: date | None
    created_at: datetime
    erased: bool
    preferences: PreferencesRead
    lifetime: LifetimeRead
    channels: list[str]
    loyalty: PointsRead | None
    tier: str | None
    churn: ChurnRead | None
    feedback: FeedbackRead
    last_outreach: OutreachRead | None
    segments: list[str]

    @classmethod
    def from_view(cls, view: CustomerView) -> CustomerRead:
        return cls.model_validate(view_fields(view))


def customer_json(view: CustomerView) -> bytes:
    """``CustomerRead.from_view(view).model_dump_json()``, byte for byte, without building
    and validating the eleven models: ``view_fields`` serialised by pydantic's own encoder
    in one call. The 360° view's GET answers with it; the model documents it."""
    return to_json(view_fields(view))


def view_fields(view: CustomerView) -> dict[str, Any]:
    """The 360° view as plain values, in ``CustomerRead``'s field order (trusted: they
    come from the database's typed columns)."""
    c = view.customer
    spend = view.total_spend
    quiet = {"start": c.quiet_start, "end": c.quiet_end} if c.quiet_start and c.quiet_end else None
    churn = None
    if c.churn_risk is not None and c.churn_band is not None and c.churn_updated_at is not None:
        clv = (
            {"amount": c.clv, "currency": c.clv_currency}
            if c.clv is not None and c.clv_currency
            else None
        )
        churn = {"risk": c.churn_risk, "band": c.churn_band, "clv": clv,
                 "updated_at": c.churn_updated_at}  # fmt: skip
    return {
        "customer_id": c.customer_id,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "language": c.language,
        "timezone": c.timezone,
        "birthday": c.birthday,
        "created_at": c.created_at,
        "erased": c.erased_at is not None,
        "preferences": {
            "language": c.language,
            "timezone": c.timezone,
            "preferred_channel": c.preferred_channel,
            "quiet_hours": quiet,
            "consents": {
                x.channel: {"status": x.status, "source": x.source, "changed_at": x.changed_at}
                for x in view.consents
            },
        },
        "lifetime": {
            "order_count": c.order_count,
            "total_spend": {"amount": spend.amount, "currency": spend.currency} if spend else None,
            "first_purchase_at": c.first_purchase_at,
            "last_purchase_at": c.last_purchase_at,
        },
        "channels": view.channels,
        "loyalty": {"points_balance": c.points_balance, "updated_at": c.points_updated_at}
        if c.points_balance is not None and c.points_updated_at is not None
        else None,
        "tier": c.tier,
        "churn": churn,
        "feedback": {
            "last_nps": c.last_nps,
            "last_nps_at": c.last_nps_at,
            "open_complaints": c.open_complaints,
        },
        "last_outreach": {"at": c.last_outreach_at, "journey": c.last_outreach_journey}
        if c.last_outreach_at is not None and c.last_outreach_journey is not None
        else None,
        "segments": view.segments,
    }


class IngestedEventRead(BaseModel):
    """An accepted event: queued for ``topic`` (without the deployment's prefix)."""

    id: str
    type: str
    topic: str

    @classmethod
    def from_event(cls, event: Event) -> IngestedEventRead:
        return cls(id=event.id, type=event.type, topic=event.TOPIC)


class IdentityCreate(BaseModel):
    kind: IdentityKind
    value: str = Field(min_length=1, max_length=254)


class ResolveCreate(BaseModel):
    """Any identities a POS terminal or app knows at the start of a visit."""

    identities: list[IdentityCreate] = Field(min_length=1, max_length=20)

    def to_domain(self) -> list[IdentityIn]:
        return [IdentityIn(kind=i.kind, value=i.value) for i in self.identities]


class ResolvedRead(BaseModel):
    customer_id: str
    created: bool
    merge_ids: list[str]

    @classmethod
    def from_domain(cls, resolved: Resolved) -> ResolvedRead:
        return cls(
            customer_id=resolved.customer.customer_id,
            created=resolved.created,
            merge_ids=[m.merge_id for m in resolved.merges],
        )


class PreferencesUpdate(BaseModel):
    """Fields left out are unchanged; ``null`` clears a preference."""

    model_config = ConfigDict(extra="forbid")

    language: Language | None = None
    timezone: str | None = Field(default=None, max_length=64)
    birthday: date | None = Field(default=None, description="YYYY-MM-DD, 1900 to today")
    preferred_channel: ContactChannel | None = None
    quiet_hours: QuietHours | None = None
    consents: dict[ContactChannel, ConsentStatus] = Field(default_factory=dict)
    source: str = Field(min_length=1, max_length=64, description="e.g. web-preferences, pos")

    def to_domain(self) -> PreferencesChange:
        sent = self.model_fields_set
        fields: dict[str, str | date | None] = {
            f: getattr(self, f)
            for f in ("language", "timezone", "birthday", "preferred_channel")
            if f in sent
        }
        if "quiet_hours" in sent:
            quiet = self.quiet_hours
            fields["quiet_start"] = quiet.start if quiet else None
            fields["quiet_end"] = quiet.end if quiet else None
        return PreferencesChange(fields=fields, consents=dict(self.consents), source=self.source)


class TimelineEntryRead(BaseModel):
    occurred_at: datetime
    kind: str
    channel: str | None
    summary: str | None
    ref: str | None
    details: dict[str, Any]
    cursor: str = Field(description="Pass as `before` to get the entries after this one")

    @classmethod
    def from_row(cls, row: TimelineEntry) -> TimelineEntryRead:
        return cls(
            occurred_at=row.occurred_at,
            kind=row.kind,
            channel=row.channel,
            summary=row.summary,
            ref=row.ref,
            details=row.details,
            cursor=f"{row.occurred_at.isoformat()}~{row.seq}",
        )


class TimelineRead(BaseModel):
    entries: list[TimelineEntryRead]
    next_before: str | None


class MergeRead(BaseModel):
    merge_id: str
    survivor_id: str
    absorbed_id: str
    merged_at: datetime
    undone_at: datetime | None

    @classmethod
    def from_row(cls, row: Merge) -> MergeRead:
        return cls(
            merge_id=row.merge_id,
            survivor_id=row.survivor_id,
            absorbed_id=row.absorbed_id,
            merged_at=row.merged_at,
            undone_at=row.undone_at,
        )


class CustomerSummaryRead(BaseModel):
    customer_id: str
    name: str | None
    email: str | None
    phone: str | None


class ErasureCreate(BaseModel):
    reason: str | None = Field(default=None, max_length=200)


class SegmentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, examples=["gold-at-risk"])
    expression: str = Field(
        min_length=1,
        max_length=1000,
        examples=['tier = "Gold" and churn_risk >= 0.6 and last_purchase_before 60d'],
    )


class SegmentRead(BaseModel):
    name: str
    expression: str
    created_at: datetime


class MembersRead(BaseModel):
    customer_ids: list[str]
    next_after: str | None


class SegmentFigures(BaseModel):
    segment: str
    name: str
    expression: str
    customers: int = Field(description="Current members")
    orders: int = Field(description="Their purchases in the range")
    revenue: Decimal = Field(description="Purchases minus refunds in the range")
    currency: str
    aov: Decimal | None = Field(description="revenue / orders; null without orders")
    orders_per_customer: float | None


class SegmentsReport(BaseModel):
    report: str
    from_: date = Field(alias="from")
    to: date
    generated_at: datetime
    segments: list[SegmentFigures]
