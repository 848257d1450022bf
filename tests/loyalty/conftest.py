from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.loyalty.config import LoyaltySettings
from services.loyalty.main import MIGRATIONS, create_app
from shared.db import Database
from shared.migrations import upgrade_async
from tests.conftest import DatabaseFactory
from tests.helpers import TEST_SECRET
from tests.loyalty.support import Loyalty


@pytest.fixture
async def db(database_url: DatabaseFactory) -> AsyncIterator[Database]:
    url = await database_url("loyalty")
    await upgrade_async(MIGRATIONS, url)
    database = Database(url)
    yield database
    await database.dispose()


@pytest.fixture
def loyalty(db: Database) -> Loyalty:
    return Loyalty(db)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The loyalty app in-process on the test database (no broker: consumer and relay off)."""
    settings = LoyaltySettings(
        database_url=db.url,
        auth_secret=TEST_SECRET,
        consumer_enabled=False,
        relay_enabled=False,
        expiry_days=None,
        log_json=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
