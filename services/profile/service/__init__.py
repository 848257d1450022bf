"""Profile domain logic. Takes the caller's session; flushes, never commits."""

from __future__ import annotations

from services.profile.service.customers import (
    CustomerNotFound,
    CustomerView,
    details,
    find_customer,
    get_customer_view,
    net_spend,
)
from services.profile.service.identities import IdentityIn, IdentityRejected, Resolved, resolve
from services.profile.service.ingest import (
    MAX_INGEST_BATCH,
    EventRejected,
    MalformedBody,
    ingest,
    parse_ingest,
)
from services.profile.service.merging import MergeNotFound, MergeNotUndoable, undo
from services.profile.service.preferences import (
    PreferencesChange,
    PreferencesRejected,
    update_preferences,
)
from services.profile.service.privacy import erase, export
from services.profile.service.view import (
    record_churn,
    record_complaint,
    record_interaction,
    record_outreach,
    record_points,
    record_purchase,
    record_refund,
    record_response,
    record_tier,
)

__all__ = [
    "MAX_INGEST_BATCH",
    "CustomerNotFound",
    "CustomerView",
    "EventRejected",
    "IdentityIn",
    "IdentityRejected",
    "MalformedBody",
    "MergeNotFound",
    "MergeNotUndoable",
    "PreferencesChange",
    "PreferencesRejected",
    "Resolved",
    "details",
    "erase",
    "export",
    "find_customer",
    "get_customer_view",
    "ingest",
    "net_spend",
    "parse_ingest",
    "record_churn",
    "record_complaint",
    "record_interaction",
    "record_outreach",
    "record_points",
    "record_purchase",
    "record_refund",
    "record_response",
    "record_tier",
    "resolve",
    "undo",
    "update_preferences",
]
