"""Fixtures for real infrastructure: the Tansu broker, a database, an SMTP sink.

The database is SQLite by default; set KEEPWELL_TEST_DB=postgres to run the same
tests against PostgreSQL (KEEPWELL_TEST_PG_URL, default the CI machine's server).
Every test gets fresh databases and its own topic prefix, so tests don't share state.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from shared.config import ServiceSettings
from shared.events import all_topics
from shared.kafka import create_topics
from tools import broker as tansu
from tools import smtp_sink
from tools.databases import DatabaseMaker
from tools.stack import SERVICE_NAMES

# The service apps started in this process share one large pytest process, where the
# start-up freeze (shared.gc_tuning) would collect all of it at every start; the
# service processes that tools.stack starts run with the default (service_env sets it).
for _service in SERVICE_NAMES:
    os.environ.setdefault(f"{_service.upper()}_GC_FREEZE_AFTER_START", "false")

TEST_DB = os.environ.get("KEEPWELL_TEST_DB", "sqlite")
PG_URL = os.environ.get("KEEPWELL_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A Tansu broker on a free port for the whole session; yields bootstrap servers."""
    port = tansu.free_port()
    log_dir = Path(os.environ.get("KEEPWELL_TEST_LOGS", "var/test-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = tansu.start(port, log_path=log_dir / "tansu.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        tansu.stop(proc)


async def new_topic_prefix(bootstrap: str, partitions: int = 4) -> str:
    """A fresh topic prefix with every Keepwell topic created under it."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    await create_topics(settings, all_topics(prefix), partitions=partitions)
    return prefix


@pytest.fixture
async def topics(broker: str) -> str:
    """A fresh topic prefix with every Keepwell topic created (4 partitions each)."""
    return await new_topic_prefix(broker)


DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """Factory: a fresh, empty database for the named service; returns its async URL."""
    maker = DatabaseMaker(tmp_path, backend=TEST_DB, pg_url=PG_URL)
    yield maker
    await maker.drop_all()


@pytest.fixture
def smtp() -> Iterator[tuple[int, smtp_sink.SinkHandler]]:
    port = tansu.free_port()
    controller, handler = smtp_sink.start(port)
    try:
        yield port, handler
    finally:
        controller.stop()


def pytest_report_header() -> str:
    return f"keepwell: database={TEST_DB}"
