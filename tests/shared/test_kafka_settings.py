"""The Kafka settings reach the clients ``shared.kafka`` makes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import ServiceSettings
from shared.kafka import make_consumer


async def test_the_fetch_settings_reach_the_consumer() -> None:
    settings = ServiceSettings(
        service_name="svc",
        kafka_fetch_min_bytes=65_536,
        kafka_fetch_max_wait_ms=250,
        kafka_max_poll_records=42,
    )
    consumer = make_consumer(settings, "t")
    # aiokafka keeps them until start() hands them to its fetcher
    assert consumer._fetch_min_bytes == 65_536
    assert consumer._fetch_max_wait_ms == 250
    assert consumer._max_poll_records == 42
    assert make_consumer(ServiceSettings(service_name="svc"), "t")._fetch_min_bytes == 1


@pytest.mark.parametrize("value", [0, -1, 10_485_761])
def test_a_fetch_minimum_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="kafka_fetch_min_bytes"):
        ServiceSettings(service_name="svc", kafka_fetch_min_bytes=value)
