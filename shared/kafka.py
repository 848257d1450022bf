"""Producer and consumer construction from settings; the only place that knows aiokafka."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.config import ServiceSettings


def connection_options(settings: ServiceSettings) -> dict[str, Any]:
    """Broker address and security options, identical for producers, consumers and admin."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        opts["ssl_context"] = context
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        opts["sasl_plain_password"] = password.get_secret_value() if password else None
    return opts


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=f"{settings.service_name}-producer",
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=15_000,
    )


def make_consumer(settings: ServiceSettings, *topics: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **connection_options(settings),
        client_id=f"{settings.service_name}-consumer",
        group_id=settings.consumer_group(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed"
        if settings.kafka_enable_idempotence
        else "read_uncommitted",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        fetch_min_bytes=settings.kafka_fetch_min_bytes,
        max_poll_records=settings.kafka_max_poll_records,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
    )


async def create_topics(
    settings: ServiceSettings, names: list[str], *, partitions: int, replication: int = 1
) -> list[str]:
    """Create the topics that don't exist yet; returns the names it created."""
    admin = AIOKafkaAdminClient(**connection_options(settings), request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # Another process may create them between list and create: same outcome.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(n, num_partitions=partitions, replication_factor=replication)
                        for n in missing
                    ]
                )
        return missing
    finally:
        await admin.close()
