"""The event contract: what POS and app developers can rely on."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import EVENT_TYPES, InvalidEvent, decode, schema
from shared.events.commerce import PurchaseCompleted
from tests.helpers import purchase

ROOT = Path(__file__).resolve().parents[2]

VALID: dict[str, Any] = {
    "specversion": "1.0",
    "id": "7f7c2c1e-1",
    "source": "/pos/store-12/till-3",
    "type": "purchase.completed",
    "time": "2026-03-01T09:30:00+07:00",
    "subject": "cus_123",
    "data": {
        "purchase_id": "R-0001",
        "channel": "store",
        "total": {"amount": "125000.50", "currency": "VND"},
        "lines": [{"sku": "TEA-1", "quantity": 2, "unit_price": "62500.25"}],
    },
}


def test_published_schema_matches_the_models() -> None:
    committed = (ROOT / "docs" / "events.schema.json").read_text()
    assert committed == schema.render(), "run `make schema` and commit docs/events.schema.json"


def test_every_event_type_is_in_the_published_schema() -> None:
    published = json.loads((ROOT / "docs" / "events.schema.json").read_text())
    listed = {t for types in published["x-topics"].values() for t in types}
    assert listed == set(EVENT_TYPES)


def test_a_valid_purchase_decodes_with_exact_money_and_its_own_time() -> None:
    event = decode(json.dumps(VALID))
    assert isinstance(event, PurchaseCompleted)
    assert event.data.total.amount == Decimal("125000.50")
    assert event.occurred_at.utcoffset() is not None
    assert event.occurred_at.isoformat() == "2026-03-01T09:30:00+07:00"
    assert event.key == b"cus_123"


def test_unknown_fields_are_tolerated() -> None:
    doc = {**VALID, "traceparent": "00-abc", "data": {**VALID["data"], "loyalty_note": "x"}}
    assert isinstance(decode(json.dumps(doc)), PurchaseCompleted)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["data"].pop("total"), "data.total: Field required"),
        (lambda d: d.pop("subject"), "subject: Field required"),
        (lambda d: d.update(type="purchase.exploded"), "unknown event type"),
        (lambda d: d.pop("type"), "missing 'type'"),
        (lambda d: d.update(time="2026-03-01T09:30:00"), "must carry a time zone"),
        (lambda d: d["data"]["total"].update(amount="-1"), "greater than or equal to 0"),
        (lambda d: d["data"]["total"].update(currency="dong"), "total.currency"),
        (lambda d: d.update(specversion="0.3"), "specversion"),
        (lambda d: d["data"]["lines"][0].update(quantity=0), "quantity"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(mutate, reason: str) -> None:
    doc = json.loads(json.dumps(VALID))
    mutate(doc)
    with pytest.raises(InvalidEvent) as caught:
        decode(json.dumps(doc))
    assert reason in caught.value.reason


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[]", b"null", b'"text"', b"{"])
def test_garbage_bytes_are_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode(raw)


def test_events_are_immutable_and_round_trip() -> None:
    event = purchase("c-9", "10.10")
    with pytest.raises(ValidationError):
        event.subject = "someone-else"  # type: ignore[misc]
    assert decode(event.to_json()) == event


def test_the_human_readable_topic_table_lists_every_type() -> None:
    table = (ROOT / "docs" / "events.md").read_text()
    missing = [t for t in EVENT_TYPES if f"`{t}`" not in table]
    assert missing == [], "add them to the topic table in docs/events.md"


def test_a_first_tier_and_a_first_band_survive_the_round_trip() -> None:
    from shared.events.engagement import ChurnRiskChanged, ChurnRiskChangedData
    from shared.events.loyalty import TierChanged, TierChangedData

    tier = TierChanged.create(
        subject="c-1",
        source="keepwell/loyalty",
        data=TierChangedData(old_tier=None, new_tier="Silver", direction="up", reason="earned"),
    )
    band = ChurnRiskChanged.create(
        subject="c-1",
        source="keepwell/engagement",
        data=ChurnRiskChangedData(risk=0.7, band="high", previous_band=None),
    )
    assert decode(tier.to_json()) == tier
    assert decode(band.to_json()) == band
