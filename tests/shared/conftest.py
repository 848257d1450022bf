from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.db import Database
from shared.plumbing import plumbing_metadata
from tests.conftest import DatabaseFactory


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    """A fresh database holding the shared plumbing tables (outbox, inbox, timers…)."""
    database = Database(await database_url("shared"))
    async with database.engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
    yield database
    await database.dispose()
