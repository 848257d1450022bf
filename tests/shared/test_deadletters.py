"""Operators can list parked messages and redrive them to where they came from, once."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from services.loyalty.config import LoyaltySettings
from tests.helpers import headers_of, purchase, read_topic
from tools import deadletters

pytestmark = pytest.mark.kafka


async def park(
    bootstrap: str, prefix: str, value: bytes, key: bytes, *, offset: int = 41, copies: int = 1
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        headers = [
            ("content-type", b"application/cloudevents+json"),
            ("x-dead-letter-reason", b"handler failed: ValueError: price list missing"),
            ("x-original-topic", f"{prefix}commerce.purchases".encode()),
            ("x-original-partition", b"2"),
            ("x-original-offset", str(offset).encode()),
        ]
        for _ in range(copies):
            await producer.send_and_wait(
                f"{prefix}loyalty.deadletter", value, key=key, headers=headers
            )
    finally:
        await producer.stop()


async def test_redrive_republishes_each_dead_letter_once(broker: str, topics: str, capsys) -> None:
    settings = LoyaltySettings(kafka_bootstrap_servers=broker, topic_prefix=topics)
    event = purchase("c-dlq")
    await park(broker, topics, event.to_json(), b"c-dlq")

    assert await deadletters.list_letters(settings, limit=10) == 1
    assert "price list missing" in capsys.readouterr().out
    assert await deadletters.redrive(settings, dry_run=True) == 1
    assert await read_topic(broker, f"{topics}commerce.purchases", expect=0, timeout=1) == []

    assert await deadletters.redrive(settings, dry_run=False) == 1
    back = await read_topic(broker, f"{topics}commerce.purchases", expect=1)
    assert [(r.key, r.value) for r in back] == [(b"c-dlq", event.to_json())]
    headers = headers_of(back[0])
    assert headers["x-redriven-from"] == f"{topics}loyalty.deadletter@0"
    assert "x-dead-letter-reason" not in headers
    assert headers["content-type"] == "application/cloudevents+json"

    assert await deadletters.redrive(settings, dry_run=False) == 0  # already redriven


async def test_copies_of_one_dead_letter_are_listed_and_redriven_once(
    broker: str, topics: str, capsys
) -> None:
    """A relay killed between its send and its delete parks a message twice: both copies
    name the same original position, so the operator sees it once and redrives it once."""
    settings = LoyaltySettings(kafka_bootstrap_servers=broker, topic_prefix=topics)
    first, second = purchase("c-1"), purchase("c-2")
    await park(broker, topics, first.to_json(), b"c-1", offset=41, copies=2)
    await park(broker, topics, second.to_json(), b"c-2", offset=42)

    assert await deadletters.list_letters(settings, limit=10) == 2
    out = capsys.readouterr().out
    assert "copies: offsets 1\n" in out
    assert "2 dead letter(s) shown" in out
    assert "(and 1 copies of them, listed with each)" in out

    assert await deadletters.redrive(settings, dry_run=False) == 2
    assert "offset 1: a copy of offset 0, not redriven" in capsys.readouterr().out
    back = await read_topic(broker, f"{topics}commerce.purchases", expect=2)
    assert sorted(r.key for r in back) == [b"c-1", b"c-2"]  # read_topic reads on past 2
