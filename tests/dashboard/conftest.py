"""The four services as real processes, engagement told where the other three are, seeded
by the demo's simulated retailer; and a headless Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.auth import issue_token
from tests.conftest import PG_URL, TEST_DB, new_topic_prefix
from tests.e2e.conftest import launch
from tests.helpers import TEST_SECRET
from tools import broker as tansu
from tools import demo, smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import SERVICE_NAMES, ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path("var/test-artifacts")
CUSTOMERS = 150

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package 'chromium')"
)


class Dashboard:
    def __init__(self, services: dict[str, ServiceProcess], token: str) -> None:
        self.services = services
        self.token = token

    @property
    def url(self) -> str:
        return f"{self.services['engagement'].url}/dashboard#token={self.token}"


@pytest.fixture(scope="module")
async def dashboard(
    broker: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Dashboard]:
    prefix = await new_topic_prefix(broker)
    databases = DatabaseMaker(tmp_path_factory.mktemp("dashboard"), backend=TEST_DB, pg_url=PG_URL)
    smtp_port = tansu.free_port()
    controller, _sink = smtp_sink.start(smtp_port)
    ports = {name: tansu.free_port() for name in SERVICE_NAMES}
    where = {
        f"ENGAGEMENT_{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}"
        for name in ("profile", "loyalty", "feedback")
    }
    services: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICE_NAMES:
            services[name] = await launch(
                name,
                await databases(name),
                broker=broker,
                prefix=prefix,
                smtp_port=smtp_port,
                extra=where if name == "engagement" else None,
                port=ports[name],
            )
        for service in services.values():
            await asyncio.to_thread(service.wait_ready)
        token = admin_token()
        urls = {name: s.url for name, s in services.items()}
        await demo.run(demo.Stack(**urls, token=token), customers=CUSTOMERS, seed=7)
        yield Dashboard(services, token)
    finally:
        for service in services.values():
            service.stop()
        controller.stop()
        await databases.drop_all()


def admin_token() -> str:
    return issue_token(secret=TEST_SECRET, subject="dashboard-test", scopes=["admin"], staff=True)
