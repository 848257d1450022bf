from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.profile.main import MIGRATIONS
from shared.db import Database
from shared.migrations import upgrade_async
from tests.conftest import DatabaseFactory


@pytest.fixture
async def profile_url(database_url: DatabaseFactory) -> str:
    url = await database_url("profile")
    await upgrade_async(MIGRATIONS, url)
    return url


@pytest.fixture
async def profile_db(profile_url: str) -> AsyncIterator[Database]:
    database = Database(profile_url)
    yield database
    await database.dispose()
