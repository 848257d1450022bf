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

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from shared.config import ServiceSettings
from shared.events import all_topics
from shared.kafka import create_topics
from tools import broker as tansu
from tools import smtp_sink

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


@pytest.fixture
async def topics(broker: str) -> str:
    """A fresh topic prefix with every Keepwell topic created (4 partitions each)."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = ServiceSettings(kafka_bootstrap_servers=broker)
    await create_topics(settings, all_topics(prefix), partitions=4)
    return prefix


DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[DatabaseFactory]:
    """Factory: a fresh, empty database for the named service; returns its async URL."""
    created: list[str] = []

    async def make(service: str) -> str:
        if TEST_DB != "postgres":
            return f"sqlite+aiosqlite:///{tmp_path}/{service}-{uuid.uuid4().hex[:6]}.db"
        name = f"kw_{service}_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(_plain_dsn(PG_URL))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return str(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))

    yield make
    if created:
        conn = await asyncpg.connect(_plain_dsn(PG_URL))
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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
