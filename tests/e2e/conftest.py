"""The four services as real processes on the real broker, databases and SMTP sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, TEST_DB, new_topic_prefix
from tests.helpers import TEST_SECRET, auth_headers
from tools import broker as tansu
from tools import smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import SERVICE_NAMES, ServiceProcess, migrate, service_env

LOG_DIR = Path("var/test-logs")
# Notice a killed consumer quickly, so a restarted one gets its partitions back soon.
FAST_GROUP = {"KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "1000"}


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    services: dict[str, ServiceProcess]
    sink: smtp_sink.SinkHandler
    client: httpx.AsyncClient

    def topic(self, name: str) -> str:
        return self.prefix + name

    async def get(self, service: str, path: str) -> httpx.Response:
        return await self.client.get(self.services[service].url + path)

    async def get_json_if_ok(self, service: str, path: str) -> Any:
        response = await self.get(service, path)
        return response.json() if response.status_code == 200 else None

    def mails_to(self, address: str) -> list[smtp_sink.ReceivedMail]:
        return [m for m in self.sink.messages if address in m.rcpt_tos]

    async def restart(self, name: str) -> None:
        service = self.services[name]
        service.stop()
        service.start()
        await asyncio.to_thread(service.wait_ready)


async def launch(
    name: str,
    url: str,
    *,
    broker: str,
    prefix: str,
    smtp_port: int,
    extra: dict[str, str] | None = None,
    port: int | None = None,
) -> ServiceProcess:
    """Migrate ``name``'s database at ``url`` and start the service on it (not yet ready:
    ``wait_ready``); its log goes to ``LOG_DIR``."""
    await asyncio.to_thread(migrate, name, url)
    env = service_env(
        name,
        bootstrap=broker,
        prefix=prefix,
        database_url=url,
        smtp_port=smtp_port,
        auth_secret=TEST_SECRET,
        extra=extra,
    )
    log = LOG_DIR / f"{prefix}{name}.log"
    return ServiceProcess(name=name, port=port or tansu.free_port(), env=env, log_path=log).start()


@pytest.fixture(scope="module")
async def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    prefix = await new_topic_prefix(broker)
    databases = DatabaseMaker(tmp_path_factory.mktemp("e2e"), backend=TEST_DB, pg_url=PG_URL)
    smtp_port = tansu.free_port()
    controller, sink = smtp_sink.start(smtp_port)
    services: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICE_NAMES:
            extra = {f"{name.upper()}_{k}": v for k, v in FAST_GROUP.items()}
            services[name] = await launch(
                name,
                await databases(name),
                broker=broker,
                prefix=prefix,
                smtp_port=smtp_port,
                extra=extra,
            )
        for service in services.values():
            await asyncio.to_thread(service.wait_ready)
        headers = auth_headers("admin", subject="e2e")
        async with httpx.AsyncClient(timeout=10, headers=headers) as client:
            yield Stack(broker, prefix, services, sink, client)
    finally:
        for service in services.values():
            service.stop()
        controller.stop()
        await databases.drop_all()
