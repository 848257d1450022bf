"""The stack under chaos: its own broker (so pausing it hurts no other test), the four
services, a second loyalty replica in the same consumer group, and the SMTP sink."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from shared.config import ServiceSettings
from shared.events import all_topics
from shared.kafka import create_topics
from shared.plumbing import outbox
from tests.chaos.workload import Message
from tests.helpers import TEST_SECRET, auth_headers
from tools import broker as tansu
from tools import smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import SERVICE_NAMES, ServiceProcess, migrate, service_env

LOG_DIR = Path(os.environ.get("KEEPWELL_TEST_LOGS", "var/test-logs")) / "chaos"
SESSION_TIMEOUT_MS = 6000
TUNING = {
    "KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
    "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    "HTTP_RATE_LIMIT_PER_MINUTE": "0",  # the checks read every member; not a load test
    "RETRY_BACKOFF_MAX_MS": "2000",  # recover within seconds of a fault ending
    "LOG_LEVEL": "WARNING",
    "DATABASE_POOL_SIZE": "3",  # five processes on a PostgreSQL server others share
}
SERVICE_TUNING = {
    "loyalty": {"LOYALTY_POINTS_PER_UNIT": "1"},
    # A send interrupted by SIGKILL is retried after the sending timeout: keep it short.
    "engagement": {
        "ENGAGEMENT_SMTP_TIMEOUT_SECONDS": "5",
        "ENGAGEMENT_SENDING_TIMEOUT_SECONDS": "10",
        "ENGAGEMENT_SEND_RETRY_INITIAL_SECONDS": "1",
        "ENGAGEMENT_SEND_RETRY_MAX_SECONDS": "5",
    },
}
REPLICA = "loyalty-b"
READY_TIMEOUT = 180.0  # a busy 2-core CI machine starts five services slowly


def consumed_topics() -> dict[str, tuple[str, ...]]:
    """Each service's declared input topics (its consumer contract)."""
    return {s: tuple(import_module(f"services.{s}.consumers").INPUT_TOPICS) for s in SERVICE_NAMES}


@dataclass
class ChaosStack:
    bootstrap: str
    prefix: str
    broker: subprocess.Popen[bytes]
    services: dict[str, ServiceProcess]
    database_urls: dict[str, str]
    sink: smtp_sink.SinkHandler
    client: httpx.AsyncClient
    producer: AIOKafkaProducer
    down: set[str] = field(default_factory=set)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def url(self, service: str) -> str:
        return self.services[service].url

    async def send(self, messages: list[Message]) -> None:
        futures = [
            await self.producer.send(self.topic(m.topic), value=m.value, key=m.key)
            for m in messages
        ]
        await asyncio.gather(*futures)

    async def kill(self, *names: str) -> None:
        self.down.update(names)
        for name in names:
            self.services[name].kill()

    async def restart(self, *names: str) -> None:
        for name in names:
            self.services[name].start()
        await asyncio.gather(
            *(asyncio.to_thread(self.services[n].wait_ready, READY_TIMEOUT) for n in names)
        )
        self.down.difference_update(names)

    def pause_broker(self) -> None:
        self.broker.send_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        self.broker.send_signal(signal.SIGCONT)

    async def outbox_rows(self, service: str) -> int:
        engine = create_async_engine(self.database_urls[service])
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(select(func.count()).select_from(outbox))
                return int(rows.scalar_one())
        finally:
            await engine.dispose()


def _env(name: str, bootstrap: str, prefix: str, db: str, smtp_port: int) -> dict[str, str]:
    p = name.upper() + "_"
    extra = {p + k: v for k, v in TUNING.items()} | SERVICE_TUNING.get(name, {})
    return service_env(
        name,
        bootstrap=bootstrap,
        prefix=prefix,
        database_url=db,
        smtp_port=smtp_port,
        auth_secret=TEST_SECRET,
        extra=extra,
    )


async def _services(
    bootstrap: str, prefix: str, databases: DatabaseMaker, smtp_port: int
) -> tuple[dict[str, ServiceProcess], dict[str, str]]:
    services: dict[str, ServiceProcess] = {}
    urls: dict[str, str] = {}
    for name in SERVICE_NAMES:
        urls[name] = await databases(name)
        await asyncio.to_thread(migrate, name, urls[name])
        env = _env(name, bootstrap, prefix, urls[name], smtp_port)
        log = LOG_DIR / f"{prefix}{name}.log"
        services[name] = ServiceProcess(name, tansu.free_port(), env, log)
    replica = services["loyalty"]
    log = LOG_DIR / f"{prefix}{REPLICA}.log"
    services[REPLICA] = ServiceProcess("loyalty", tansu.free_port(), replica.env, log)
    return services, urls


@asynccontextmanager
async def chaos_stack(folder: Path, backend: str, pg_url: str) -> AsyncIterator[ChaosStack]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    port = tansu.free_port()
    broker = tansu.start(port, log_path=LOG_DIR / f"tansu-{port}.log")
    bootstrap = f"127.0.0.1:{port}"
    prefix = "chaos."
    databases = DatabaseMaker(folder, backend=backend, pg_url=pg_url)
    smtp_port = tansu.free_port()
    controller, sink = smtp_sink.start(smtp_port)
    services: dict[str, ServiceProcess] = {}
    try:
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
        await create_topics(settings, all_topics(prefix), partitions=4)
        services, urls = await _services(bootstrap, prefix, databases, smtp_port)
        for service in services.values():
            service.start()
        await asyncio.gather(
            *(asyncio.to_thread(s.wait_ready, READY_TIMEOUT) for s in services.values())
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        headers = auth_headers("admin", subject="chaos")
        try:
            async with httpx.AsyncClient(timeout=30, headers=headers) as client:
                yield ChaosStack(bootstrap, prefix, broker, services, urls, sink, client, producer)
        finally:
            await producer.stop()
    finally:
        broker.send_signal(signal.SIGCONT)  # never leave it stopped, whatever failed
        for service in services.values():
            service.stop()
        controller.stop()
        tansu.stop(broker)
        await databases.drop_all()
