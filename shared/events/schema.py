"""The published event schema, generated from the models: `make schema`.

POS and app developers read docs/events.schema.json (JSON Schema 2020-12): one
definition per event type, the topic each travels on, and the envelope rules.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from shared.events import ALL_EVENTS, AnyEvent
from shared.events.base import CONTRACT_VERSION


def build() -> dict[str, Any]:
    schema = TypeAdapter(AnyEvent).json_schema(mode="validation")
    topics: dict[str, list[str]] = {}
    for cls in ALL_EVENTS:
        topics.setdefault(cls.TOPIC, []).append(cls.model_fields["type"].default)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://keepwell.dev/schemas/events/v{CONTRACT_VERSION}.json",
        "title": "Keepwell events",
        "description": (
            "CloudEvents 1.0 in structured JSON mode. Produce one JSON object per Kafka "
            "message; the message key is the customer id (the `subject`). `time` is when "
            "it happened (RFC 3339 with an offset). Money amounts are decimal strings. "
            "Unknown fields are ignored; a message missing a required field is parked "
            "in the consumer's dead-letter topic. Topic names may carry a deployment prefix."
        ),
        "x-contract-version": CONTRACT_VERSION,
        "x-topics": topics,
        "x-kafka-key": "subject (customer id), UTF-8",
        **schema,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
